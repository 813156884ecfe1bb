"""The unified normalizer of Ren et al. (ICLR 2017).

    v  = z - E_A[z]                       A: summation field
    z~ = v / sqrt(sigma^2 + E_B[v^2])     B: suppression field, sigma: smoothing term

Batch, layer, instance and divisive normalization are choices of A and B (see
`divnorm.fields`). Flax's ``epsilon`` is ``sigma ** 2``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from divnorm._src.fields import Field, FieldSpec, check_border, resolve_field
from divnorm._src.reductions import divide_by_count, field_count, field_mean, field_sum, stat_dtype


def variance_floor(dtype) -> float:
  """A floor added to ``sigma^2 + E_B[v^2]``: ``finfo(dtype).tiny ** (1/3)``.

  About 2e-13 in float32 and 3e-103 in float64: far below any variance that carries
  information, yet large enough that ``rsqrt`` and its derivatives stay finite, so a
  constant field gives ``y = 0`` with finite gradients even at ``sigma = 0``.
  """
  return float(np.finfo(dtype).tiny) ** (1.0 / 3.0)


def check_input(x) -> jax.Array:
  """`x` as a floating jax.Array, or a TypeError that says how to fix the call."""
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(
        f"normalization needs a floating-point input, got dtype {x.dtype}; cast it first, "
        f"e.g. x.astype(jnp.float32).")
  return x


def check_nonnegative(value, name: str, hint: str = "") -> None:
  """Rejects a concrete negative `value`; a traced one (under jit, or learned) passes."""
  if isinstance(value, jax.core.Tracer):
    return
  array = np.asarray(value)
  if array.size and np.any(array < 0):
    raise ValueError(f"{name}={value} is negative; it must be >= 0{hint}.")


def check_sigma(sigma) -> None:
  """Rejects a concrete negative sigma (a traced one, e.g. a learned parameter, passes)."""
  check_nonnegative(
      sigma, "sigma",
      " (sigma is the smoothing term of sqrt(sigma^2 + E[v^2]); Flax's epsilon is sigma**2, "
      "so pass sigma=sqrt(epsilon))")


def check_mask(mask, shape: tuple[int, ...]) -> jax.Array | None:
  """`mask` broadcast to `shape`, or an error that says how to fix it."""
  if mask is None:
    return None
  mask = jnp.asarray(mask)
  if mask.dtype != jnp.bool_:
    raise TypeError(
        f"mask must be boolean (True marks entries that take part in the statistics), got "
        f"dtype {mask.dtype}; pass e.g. mask.astype(bool) or mask > 0.")
  try:
    ok = np.broadcast_shapes(mask.shape, shape) == tuple(shape)
  except ValueError:
    ok = False
  if not ok:
    raise ValueError(
        f"mask of shape {mask.shape} does not broadcast to the input's shape {tuple(shape)}; "
        f"give it the input's rank with size 1 on the axes it does not vary along.")
  return jnp.broadcast_to(mask, shape)


def inverse_scale(var: jax.Array, sigma, dt=None) -> jax.Array:
  """``1 / sqrt(sigma^2 + var)`` in `dt` (default: var's dtype), finite at ``var = sigma = 0``."""
  dt = var.dtype if dt is None else dt
  return lax.rsqrt(var + jnp.square(jnp.asarray(sigma, dt)) + np.asarray(variance_floor(dt), dt))


def scale(v: jax.Array, var: jax.Array, sigma) -> jax.Array:
  """``v / sqrt(sigma^2 + var)``, in the dtype of `v`, finite at ``var = sigma = 0``."""
  return v * inverse_scale(var, sigma, v.dtype)


def _pivot(x: jax.Array, field: Field, axis_name) -> jax.Array | None:
  """An entry of each summation field, subtracted before summing (a shifted two-pass).

  Any value constant over a position's field shifts ``E_A[x]`` by itself and leaves
  ``v`` unchanged (with valid borders), but sums of ``x - pivot`` lose far less to
  rounding when ``|E[x]| >> std(x)``: with an offset of 1e4 in float32 the error of ``v``
  drops from ~1e-2 to the input's own rounding (~1e-3 * std).
  """
  if not field.axes:
    return None
  spans = field.whole + tuple(a for a, _ in field.windows)
  first = tuple(slice(0, 1) if a in spans else slice(None) for a in range(x.ndim))
  pivot = x[first]
  for axis, size in field.groups:  # each group's first entry, repeated over the group
    pivot = jnp.repeat(lax.slice_in_dim(pivot, 0, None, size, axis), size, axis=axis)
  pivot = lax.stop_gradient(pivot)
  if axis_name is not None:
    pivot = lax.pmean(pivot, axis_name)
  return pivot


def _mean(t: jax.Array, field: Field, count: np.ndarray) -> jax.Array:
  return divide_by_count(field_sum(t, field), count)


# One-pass statistics are used (``fast_variance=None``) only where the rounding error of
# the sums is amplified by at most ``GUARD_AMPLIFICATION``: for whole-axis fields that is
# ``|E[x]| <= GUARD_RATIO * std`` in every field (about 4 bits; layer norm's measured max
# error stays within 2.3x of the two-pass one, see tests/test_presets.py).
GUARD_RATIO = 2.0


# Benchmarks (never the library) set this to True or False to compile one branch of the
# guard alone (False: the two-pass fallback after the guard's sums): XLA's cost analysis
# of a conditional adds up both branches' bytes.
_GUARD_BRANCH: bool | None = None


def guard_amplification() -> float:
  """``1 + (2 * GUARD_RATIO)^2``: the most the one-pass cancellation may cost."""
  return 1.0 + (2.0 * GUARD_RATIO) ** 2


def guarded_one_pass_default() -> bool:
  """Whether ``fast_variance=None`` takes the guarded one-pass path on this backend.

  On CPU (XLA with YNNPACK reductions, jaxlib 0.10) ``sum(x)`` and ``sum(x * x)`` run
  ~4x faster than a reduction of ``x`` against a broadcast statistic, so one-pass
  statistics pay for the guard's branch. On GPU and TPU a conditional needs its
  predicate before it can launch a branch, so the two-pass default stays.
  """
  return jax.default_backend() == "cpu"


def can_guard(a: Field, b: Field) -> bool:
  """One-pass needs a center constant over the whole part of B: equal whole/grouped axes."""
  return a.whole == b.whole and a.groups == b.groups and bool(a.whole or a.groups)


def _two_pass_stats(x, a: Field, b: Field, border: str, count_b):
  """``(hi, lo, var, v)``: the shifted two-pass center (``lo`` zeros for zero borders),
  ``E_B[v^2]`` and the centered input, from one barrier-protected center."""
  hi, lo = _center(x, a, border)
  v, u = _centered(x, hi, lo)
  return hi, jnp.zeros_like(hi) if lo is None else lo, _mean(u * u, b, count_b), v


def _guarded_stats(x, a: Field, b: Field, border: str, branch=None):
  """``(hi, lo, var)``: one-pass where it loses little to cancellation, else two-pass.

  With W the whole (and grouped) axes of A and B, ``S1 = sum_W x`` and ``S2 = sum_W x^2``
  are plain sums of `x` (the fastest reductions), and every other step works on their
  small arrays: ``m = E_A[x]`` is a window sum of ``S1``, and since ``m`` is constant over
  W, ``sum_W (x - m)^2 = S2 - 2 m S1 + |W| m^2 =: T``, whose window sum over B is
  ``E_B[v^2]`` times its count. T's rounding error is at most the sums' times
  ``G = S2 + 2 |m S1| + |W| m^2``; the one-pass result is used when
  ``sum_B G <= guard_amplification() * sum_B T`` at every position (whole fields:
  ``|E[x]| <= 2 std``), and the shifted two-pass statistics of `_center` otherwise
  (e.g. an offset of 1e4 at std 1).
  """
  dt = x.dtype
  count_a, count_b = _stats_counts(x.shape, a, b, border, dt)
  w = Field(a.whole, (), a.groups)
  s1 = field_sum(x, w)
  s2 = field_sum(x * x, w)
  n = np.asarray(field_count(x.shape, w, dtype=dt).reshape(()), dt)
  mean = divide_by_count(field_sum(s1, Field((), a.windows)), count_a)
  ms1 = mean * s1
  two = np.asarray(2.0, dt)
  t = field_sum(s2 - two * ms1 + n * mean * mean, Field((), b.windows))
  g = field_sum(s2 + two * jnp.abs(ms1) + n * mean * mean, Field((), b.windows))
  var = jnp.maximum(divide_by_count(t, count_b), jnp.zeros((), dt))
  safe = jnp.all(g <= np.asarray(guard_amplification(), dt) * t)

  def one_pass(x):
    return mean, jnp.zeros_like(mean), var

  def two_pass(x):
    return _two_pass_stats(x, a, b, border, count_b)[:3]

  if branch:
    return one_pass(x)
  if branch is not None:  # the fallback's work: the guard's sums, then two-pass
    return jax.tree.map(lambda p, q: jnp.where(safe, p, q), one_pass(x), two_pass(x))
  return lax.cond(safe, one_pass, two_pass, x)


def _shifted(field: Field) -> Field:
  """`field` on an input with one more leading axis (a ``vmap``'s batch axis)."""
  return Field(tuple(a + 1 for a in field.whole),
               tuple((a + 1, w) for a, w in field.windows),
               tuple((a + 1, n) for a, n in field.groups))


_GUARD_FNS: dict = {}


def _guarded_vmappable(a: Field, b: Field, border: str):
  """`_guarded_stats` of `x` alone, whose ``vmap`` checks the whole batch at once.

  Batched by plain ``vmap``, the check's ``lax.cond`` would turn into a select that runs
  both branches. The rule instead treats the batch axis as one more axis outside the
  fields and keeps a single conditional: one-pass if every field of every example
  passes.
  """
  key = (a, b, border)
  if key in _GUARD_FNS:
    return _GUARD_FNS[key]

  @jax.custom_batching.custom_vmap
  def stats(x):
    return _guarded_stats(x, a, b, border)

  @stats.def_vmap
  def _rule(axis_size, in_batched, x):
    del axis_size, in_batched  # x is batched along its leading axis
    return _guarded_vmappable(_shifted(a), _shifted(b), border)(x), (True, True, True)

  _GUARD_FNS[key] = stats
  return stats


def _unmasked_stats(x, sigma, a: Field, b: Field, border: str, stats: str = "two_pass"):
  """``(y, hi, lo, var)`` of an unmasked, single-device input, with a hand-written JVP.

  The JVP writes every full-size term from `x` and statistic-shaped arrays only (the
  centered input is recomputed as ``(x - hi) - lo``, never kept), so that reverse mode,
  its transpose, reads `x` and the cotangent a few times and writes one output instead
  of storing centered copies. Numerics of the outputs are those of the autodiff path.
  `stats`: ``"two_pass"``; ``"guarded"`` or ``"one_pass"`` (fields passing `can_guard`):
  `_guarded_stats` with its check, or its one-pass branch alone.
  """
  return _unmasked_stats_jvp_fn(a, b, border, stats)(x, jnp.asarray(sigma, x.dtype))


def _stats_counts(x_shape, a: Field, b: Field, border: str, dt):
  zeros = "valid" if border == "valid" else "zeros"
  count_a = field_count(x_shape, a, border=zeros, dtype=dt)
  divisor = a if border == "zeros_with_divisor_bug" else b
  count_b = field_count(x_shape, divisor, border=zeros, dtype=dt)
  return count_a, count_b


def _center(x, a: Field, border: str, *, mask=None, axis_name=None):
  """``(hi, lo)``: the center ``E_A[x]`` as an unevaluated sum ``hi + lo``.

  With valid borders the mean is a shifted two-pass sum around `_pivot`, and
  ``hi + lo == pivot + mean`` exactly (Fast2Sum, exact while ``|pivot| >= |mean|``), so
  ``(x - hi) - lo`` keeps the accuracy of ``(x - pivot) - mean``. The zero-padded borders
  are not shift invariant and take the plain mean (``lo`` None).
  """
  zeros = "valid" if border == "valid" else "zeros"
  pivot = _pivot(x, a, axis_name) if border == "valid" else None
  if pivot is None:
    return field_mean(x, a, border=zeros, mask=mask, axis_name=axis_name), None
  shifted = field_mean(x - pivot, a, border=zeros, mask=mask, axis_name=axis_name)
  hi = pivot + shifted
  return hi, shifted - (hi - pivot)


def _centered(x, hi, lo):
  """``(v, -v)`` from barrier-protected centers, so XLA fuses them into their consumers.

  XLA's CPU backend then fuses the centering into the ``E_B[v^2]`` reduction and into the
  output instead of writing ``v`` (or a broadcast mean) to memory. ``-v`` is computed as
  ``(hi - x) + lo``, exactly the negation (IEEE subtraction is antisymmetric), so
  ``u * u == v * v`` bit for bit.
  """
  c = lax.optimization_barrier((hi, lo) if lo is not None else hi)
  if lo is None:
    return x - hi, c - x
  return (x - hi) - lo, (c[0] - x) + c[1]


_JVP_FNS: dict = {}


def _unmasked_stats_jvp_fn(a: Field, b: Field, border: str, stats: str):
  branch = {"one_pass": True, "guarded": _GUARD_BRANCH}.get(stats)
  key = (a, b, border, stats, branch)
  if key in _JVP_FNS:
    return _JVP_FNS[key]

  @jax.custom_jvp
  def f(x, sigma):
    if stats == "two_pass":
      _, count_b = _stats_counts(x.shape, a, b, border, x.dtype)
      hi, lo, var, v = _two_pass_stats(x, a, b, border, count_b)
    else:
      if branch is None:  # "guarded", checked at run time
        hi, lo, var = _guarded_vmappable(a, b, border)(x)
      else:
        hi, lo, var = _guarded_stats(x, a, b, border, branch)
      v, _ = _centered(x, hi, lo)
    return scale(v, var, sigma), hi, lo, var

  @f.defjvp
  def f_jvp(primals, tangents):
    x, sigma = primals
    dx, dsigma = tangents
    y, hi, lo, var = f(x, sigma)
    dt = x.dtype
    count_a, count_b = _stats_counts(x.shape, a, b, border, dt)
    v, _ = _centered(x, hi, lo)
    dmean = _mean(dx, a, count_a)
    # dv = dx - dmean, expanded so that no full-size term feeds two consumers: XLA then
    # fuses every reduction of the transposed (reverse-mode) program into its inputs.
    # d var = E_B[2 v dv] = -2 E_B[u dx] + 2 E_B[u dmean], with u = -v.
    # A second barrier keeps this u apart from the forward's, so neither is stored.
    u = _centered(x, *lax.optimization_barrier((hi, lo)))[1]
    two = np.asarray(2.0, dt)
    dvar = -two * _mean(u * dx, b, count_b)
    # + 2 E_B[u dmean]. With A == B whole, that is 2 dmean E_A[u], and E_A[u] = -E_A[v]
    # is 0 up to the rounding of the mean (~eps * std): below float32 rounding of dvar.
    if a != b or a.windows:
      dvar = dvar + two * _mean(u * dmean, b, count_b)
    sigma = jnp.asarray(sigma, dt)
    r = inverse_scale(var, sigma)
    dden = dvar + two * sigma * jnp.asarray(dsigma, dt)
    dr = np.asarray(-0.5, dt) * r * r * r * dden
    dy = dx * r - dmean * r + v * dr
    return (y, hi, lo, var), (dy, dmean, jnp.zeros_like(lo), dvar)

  _JVP_FNS[key] = f
  return f


def check_fast_variance(summation: Field, suppression: Field) -> None:
  """One-pass statistics are a variance only for equal whole-axis fields."""
  if summation != suppression or summation.windows:
    raise ValueError(
        "fast_variance=True computes E[x^2] - E[x]^2, which is E_B[v^2] only when the "
        "summation and suppression fields are the same whole axes (got "
        f"{summation} and {suppression}); windowed fields center each position by its own "
        "mean. Leave fast_variance=False (two-pass) for these fields.")


def _one_pass_stats(x: jax.Array, field: Field, *, sigma, mask, axis_name):
  """``(y, v, mean, var)`` with ``var = max(E[x^2] - E[x]^2, 0)`` (Flax's fast variance).

  Both sums read `x` once, in one fused pass; the price is cancellation when
  ``|E[x]| >> std(x)`` (e.g. an offset of 1e4 at std 1 in float32 leaves no correct digit).
  """
  m = None if mask is None else mask.astype(x.dtype)
  mean = field_mean(x, field, mask=m, axis_name=axis_name)
  mean2 = field_mean(x * x, field, mask=m, axis_name=axis_name)
  var = jnp.maximum(mean2 - mean * mean, jnp.zeros((), x.dtype))
  v = x - mean
  y = scale(v, var, sigma)
  if mask is not None:
    y = jnp.where(mask, y, jnp.zeros((), x.dtype))
    v = jnp.where(mask, v, jnp.zeros((), x.dtype))
  return y, v, mean, var


def normalize_with_stats(
    x: jax.Array,
    summation: Field,
    suppression: Field,
    *,
    sigma,
    border: str,
    mask: jax.Array | None,
    axis_name,
    fast_variance: bool | None = None,
):
  """The unified normalizer on checked arguments, in the statistics dtype.

  Returns:
    ``(y, v, mean, var)`` in ``stat_dtype(x.dtype)``: the output, the centered input, and
    the two statistics ``E_A[z]`` and ``E_B[v^2]`` (whole axes kept as size 1).
  """
  dt = stat_dtype(x.dtype)
  x = x.astype(dt)
  unmasked = mask is None and axis_name is None
  if fast_variance:
    check_fast_variance(summation, suppression)
    if not (unmasked and can_guard(summation, suppression)):
      return _one_pass_stats(x, summation, sigma=sigma, mask=mask, axis_name=axis_name)
  if unmasked:
    if fast_variance:
      stats = "one_pass"  # the same sums, through the hand-written JVP
    elif fast_variance is None and can_guard(summation, suppression) and (
        guarded_one_pass_default()):
      stats = "guarded"
    else:
      stats = "two_pass"
    y, hi, lo, var = _unmasked_stats(x, sigma, summation, suppression, border, stats)
    return y, (x - hi) - lo, hi, var
  m = None if mask is None else mask.astype(dt)
  zeros = "valid" if border == "valid" else "zeros"
  mean, lo = _center(x, summation, border, mask=m, axis_name=axis_name)
  v, u = _centered(x, mean, lo)
  v2 = u * u if m is None else u * u * m
  # The reference code divides the suppression window's sum by the *summation* window's
  # size; "zeros_with_divisor_bug" reproduces that, only to match its numbers.
  divisor = summation if border == "zeros_with_divisor_bug" else suppression
  count = field_count(x.shape, divisor, border=zeros, mask=m, axis_name=axis_name, dtype=dt)
  var = divide_by_count(field_sum(v2, suppression, axis_name=axis_name), count)
  y = scale(v, var, sigma)
  if mask is not None:
    y = jnp.where(mask, y, jnp.zeros((), dt))
    v = jnp.where(mask, v, jnp.zeros((), dt))
  return y, v, mean, var


def normalize(
    x: jax.Array,
    summation: FieldSpec,
    suppression: FieldSpec | None = None,
    *,
    sigma=0.0,
    border: str = "valid",
    mask: jax.Array | None = None,
    axis_name=None,
    return_centered: bool = False,
    fast_variance: bool | None = None,
):
  r"""Normalizes `x` over a summation field and a suppression field.

  .. math::
      v = x - E_A[x], \qquad y = \frac{v}{\sqrt{\sigma^2 + E_B[v^2]}}

  ``E_B[v^2]`` is centered: each position is centered by its own mean ``E_A`` first
  (two-pass, around a pivot), so an offset far larger than the spread costs no digits.
  With local windows it is not a variance and could not be computed as
  ``E[x^2] - E[x]^2`` anyway. For equal whole-axis fields (BN, LN, IN, GN) on CPU the
  default checks whether one pass is safe first (see `fast_variance`).

  Args:
    x: floating input of any rank.
    summation: field A, ``{axis: None | odd width}`` or a tuple of axes
      (see `divnorm.fields`).
    suppression: field B; None means the same as `summation`.
    sigma: smoothing term (``sigma ** 2`` is Flax's ``epsilon``); a float or a scalar
      array (e.g. a learned parameter).
    border: ``"valid"`` (default) averages only the entries that exist;
      ``"zeros"`` reproduces the paper's TensorFlow code (zero padding, division by the
      full window); ``"zeros_with_divisor_bug"`` also reproduces that code's division of
      the suppression sum by the summation window's size (differs from ``"zeros"`` only
      when the windows differ).
    mask: boolean, broadcastable to `x`; statistics use only entries where it is True.
      Masked-out outputs (and centered values) are 0, with zero gradient.
    axis_name: treat this named axis (``jax.shard_map``, ``vmap(axis_name=...)``) as one
      more whole axis of both fields. Under plain ``jit`` with a sharded input, XLA
      computes global statistics by itself: no argument is needed.
    return_centered: also return ``v`` (e.g. for `divnorm.l1_penalty`).
    fast_variance: how the statistics are computed.
      ``False``: always two-pass (shifted, centered). ``True``: always one-pass
      ``max(E[x^2] - E[x]^2, 0)``, Flax's default (``use_fast_variance=True``), for
      equal whole-axis fields only; loses every digit when ``|E[x]| >> std(x)``.
      ``None`` (default): on CPU, for fields whose whole (and grouped) axes are the same
      in A and B (BN, LN, IN, GN, DN across channels; windows allowed), one-pass sums
      where the cancellation is bounded (whole fields: ``|E[x]| <= 2 std(x)`` in every
      field; at most ~4 bits of the sums' rounding, see `_guarded_stats`), checked at
      run time, and two-pass otherwise. Plain sums run ~4x faster than centered ones
      on XLA's CPU backend (`guarded_one_pass_default`); other backends, other fields,
      masks and `axis_name` take the two-pass path. Under ``vmap`` the check covers the
      whole batch (one branch for all examples). ``True`` is an error for windowed or
      unequal fields.
  Returns:
    ``y`` with the shape and dtype of `x`, or ``(y, v)`` with `return_centered`.
    Statistics are computed in ``promote_types(x.dtype, float32)``.

  Raises:
    TypeError: integer `x`, non-boolean mask, malformed field.
    ValueError: bad axes or windows, negative sigma, unknown border, mask shape.
  """
  x = check_input(x)
  a = resolve_field(summation, x.ndim, role="summation")
  b = a if suppression is None else resolve_field(suppression, x.ndim, role="suppression")
  check_border(border)
  check_sigma(sigma)
  mask = check_mask(mask, x.shape)
  y, v, _, _ = normalize_with_stats(
      x, a, b, sigma=sigma, border=border, mask=mask, axis_name=axis_name,
      fast_variance=fast_variance)
  if return_centered:
    return y.astype(x.dtype), v.astype(x.dtype)
  return y.astype(x.dtype)
