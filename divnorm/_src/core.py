r"""The unified normalizer of Ren et al. (ICLR 2017), `divnorm.normalize`.

.. math::
    v = x - E_A[x], \qquad y = \frac{v}{(\sigma^2 + E_B[|v|^\alpha])^{\epsilon}}

with the paper's ``alpha = 2`` and ``epsilon = 1/2`` by default. `normalize` checks the
call (`divnorm._src.checks`), resolves ``summation`` and ``suppression`` into fields (boxes,
`Field`; or with kernels and mixings, `WeightedField`), picks a statistics strategy
(`divnorm._src.statistics`) and hands them to `formula`, which holds the two lines above.
For the box strategies `normalized` adds their derivative, written out once.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.export import is_symbolic_dim
from jax.typing import ArrayLike

from divnorm._src.checks import (
  Bool,
  check_axis_name,
  check_bool,
  check_border,
  check_finite,
  check_floating_dtype,
  check_input,
  check_mask,
  check_positive,
  check_scalar,
  check_sigma,
)
from divnorm._src.fields import Field, FieldSpec
from divnorm._src.reductions import (
  divide_by_count,
  field_count,
  field_sum,
  select,
  stat_dtype,
  window_sum,
)
from divnorm._src.statistics import (
  BOX_STRATEGIES,
  PLAIN_MIN_FIELD,
  POOLS,
  Stats,
  Strategy,
  at_positions,
  copies,
  expanded,
  inverse_scale,
  pick_statistics,
  row_two_pass,
  scale,
  short_row_two_pass,
  stats_shape,
  suppression_count,
  whole_alone,
  widened,
)
from divnorm._src.weighted_fields import check_pools_weigh, resolve_weighted_field


def normalize(
    x: ArrayLike,
    summation: FieldSpec | Mapping | None,
    suppression: FieldSpec | Mapping | None = None,
    *,
    sigma: ArrayLike = 0.0,
    border: str = "valid",
    mask: ArrayLike | None = None,
    axis_name=None,
    return_centered: Bool = False,
    fast_variance: Bool | None = None,
    alpha: ArrayLike = 2.0,
    epsilon: ArrayLike = 0.5,
    pool: str = "mean",
    dtype=None,
) -> Any:  # y, or (y, v) with return_centered (see Returns)
  r"""Normalizes `x` over a summation field and a suppression field.

  .. math::
      v = x - E_A[x], \qquad y = \frac{v}{(\sigma^2 + E_B[|v|^\alpha])^{\epsilon}}

  With the defaults ``alpha = 2``, ``epsilon = 1/2`` this is the paper's
  ``y = v / sqrt(sigma^2 + E_B[v^2])``. ``E_B[v^2]`` is centered: each position is
  centered by its own mean ``E_A`` first. With local windows it is not a variance and
  could not be computed as ``E[x^2] - E[x]^2``. Both statistics are taken around a shift,
  one entry of the data per field, so an offset far larger than the spread costs no digits
  (`divnorm._src.statistics`). Divisive norm across channels (windows, and whole axes
  shared by A and B) centers every position at its own mean, so data far apart in one
  image (a bright band 1e6 above the rest) costs the rest no digits. Other windowed
  fields (windows alone, as divisive norm within channels) take one shift per span (the
  windows widened to whole axes): positions far from it lose digits in proportion, about
  ``eps * |x - k| / std``: 3e-3 with a band 1e4 above the rest, 0.3 at 1e6 (float32,
  3x3 windows within channels).

  Fields are boxes, ``{axis: None | odd width}`` or a tuple of axes (see
  `divnorm.resolve_field`), or weighted: a value may also be a kernel (`divnorm.kernels`:
  ``gaussian``, ``exponential``, ``center_surround``, ``kernel``, ``learned_kernel``) or a
  channel mixing (``mixing``, ``learned_mixing``), and a tuple key applies a
  multi-dimensional kernel to several axes, e.g. the paper's DN with a Gaussian over the
  image, ``{1: gaussian(5, sigma=1.0), 2: gaussian(5, sigma=1.0), 3: None}``. Their
  statistics are weighted means ``sum_q w_pq t_q / sum_q w_pq``, exact at borders and under
  masks. Boxes keep the fastest path.

  Args:
    x: floating input of any rank.
    summation: field A, or None for no centering (``v = x``; GDN and the V1 models).
    suppression: field B; None means the same as `summation`.
    sigma: smoothing term (``sigma ** 2`` is Flax's ``epsilon``, GDN's ``beta``): finite
      and >= 0, a float or an array (e.g. a learned parameter) that broadcasts to the
      statistics' shape (`x`'s shape with A and B's whole axes set to 1).
    border: ``"valid"`` (default) averages only the entries that exist;
      ``"zeros"`` reproduces the paper's TensorFlow code (zero padding, division by the
      full window, or the kernel's whole weight); ``"zeros_with_divisor_bug"`` also
      reproduces that code's division of the suppression sum by the summation window's
      size (boxes only; differs from ``"zeros"`` only when the windows differ).
    mask: boolean, broadcastable to `x`; statistics use only entries where it is True,
      whatever the others hold (NaN and inf included). Masked-out outputs (and centered
      values) are 0, with zero gradient. A kernel whose centre weighs 0 can leave a
      masked-in position no masked-in entry to pool: its mean there is 0, as `field_mean`'s
      (``v = x``; ``y = v / sigma``).
    axis_name: treat this named axis (``jax.shard_map``, ``vmap(axis_name=...)``) as one
      more whole axis of both fields. Under plain ``jit`` with a sharded input, XLA
      computes global statistics by itself: no argument is needed.
    return_centered: also return ``v`` (e.g. for `divnorm.l1_penalty`).
    fast_variance: ``None`` (the library default) and ``False``: two-pass statistics
      (`statistics.two_pass`; `statistics.corrected_two_pass` for windowed fields over the
      same whole axes). ``True`` (Flax's ``use_fast_variance=True``): one-pass sums
      (`statistics.one_pass`), which read `x` once for both statistics, for box fields
      whose whole and grouped axes (`axis_name`'s among them) are the same in A and B, at
      least one (BN, LN, IN, GN; divisive norm across channels, with windows in A, takes the
      corrected two-pass statistics, as by default). On XLA's CPU backend, one-pass inputs
      of at least `statistics.PLAIN_MIN_SIZE` entries first take sums without a shift,
      kept where every field's mean is within 1.41 standard deviations of 0, where they are
      as accurate: 0.73-0.90x the time of the shifted sums, forward+backward in float32
      (``python -m benchmarks.plain_sums``); elsewhere the shifted sums. On a CUDA
      GPU, a field of the last axis alone (layer norm of up to 16384 features, no mask) takes
      `statistics.row_two_pass` in both modes: XLA fuses it into one kernel per row that
      reads `x` once, as flax's two-pass: on an H200, 0.67-0.93x the time of flax's
      one-pass sums (a layer: up to 2^23 entries, `LAYER_FUSED_SIZE`). Both keep float32
      accuracy at large offsets: measured error against float64 at offsets 0, 1e4 and 1e6
      (unit spread, every preset) at most 8.1e-7 two-pass and 1.0e-6 one-pass, where
      Flax's one-pass is off by 40 at 1e4 (``python -m benchmarks.numerics``; README,
      "Numerics").
    alpha: the exponent of ``|v|`` in the suppression (> 0), fixed or learned.
    epsilon: the exponent of the suppression (finite), fixed or learned; a negative one
      multiplies by it (IGDN). Not Flax's ``epsilon``, which is added to the variance:
      that one is ``sigma**2`` here (``epsilon=1e-6`` leaves `x` nearly unscaled).
    pool: ``"mean"`` (``E_B``, the paper's) or ``"sum"`` (a weighted sum, zero padded,
      GDN's ``sum_j gamma_ij |x_j|^alpha``: the weights carry their own scale).
    dtype: the outputs' floating dtype; None (default): `x`'s. A layer whose affine step
      follows asks for the statistics dtype: a bfloat16 `x` is still read in its own
      dtype, and the output reaches the affine step unrounded (its gradient then rounded
      to bfloat16 once, in `x`'s cotangent).

  Returns:
    ``y`` with the shape of `x` and its dtype (or `dtype`), or ``(y, v)`` with
    `return_centered`.
    Statistics are computed in ``promote_types(x.dtype, float32)``.

  Range: the offset costs nothing (the shift takes it out before anything is squared), but
  the squares of the centered values are summed in the statistics dtype: in float32 a
  field of ``n`` entries holds a spread ``|x - E_A[x]|`` up to about ``1.8e19 / sqrt(n)``
  (1e17 for 32768 entries). Beyond it the statistics overflow and `y` is NaN, never a
  silent 0; scale such inputs down by a power of two first (exact, and ``y`` is unchanged
  when sigma is scaled with them).

  Raises:
    TypeError: integer `x`, non-boolean mask, malformed field, a non-bool flag.
    ValueError: bad axes or windows; kernels that do not fit their axes; NaN, inf,
      negative or shape-changing sigma; alpha <= 0; unknown border or pool; mask shape;
      a kernel or mixing that gives a pool no weight (with ``border="valid"``: inside `x`);
      ``fast_variance=True`` for fields it does not serve.
  """
  x, axis_name = check_input(x), check_axis_name(axis_name)
  a, b = resolve_fields(summation, suppression, x.shape)
  check_border(border)
  sigma = check_sigma(sigma, stats_shape(x.shape, a, b))
  mask = check_mask(mask, x.shape)
  return_centered = check_bool(return_centered, "return_centered")
  _check_suppression(alpha, epsilon, pool)
  check_pools_weigh(a, "summation", x.shape, border)
  if pool == "mean":
    check_pools_weigh(b, "suppression", x.shape, border)
  out = x.dtype if dtype is None else check_floating_dtype(dtype, "dtype")
  statistics = pick_statistics(a, b, fast_variance, alpha=alpha, epsilon=epsilon, pool=pool,
                               border=border, mapped=axis_name is not None)
  dt = stat_dtype(x.dtype)
  args = (jnp.asarray(sigma, dt), mask, statistics, a, b, border, axis_name)
  if statistics in BOX_STRATEGIES:  # the paper's formula over boxes: the derivative below
    y, v, _ = box_normalized(x, *args)  # x in its dtype: each kernel converts it (`widened`)
  else:  # weighted fields, generalized suppression: JAX differentiates the formula
    y, v, _ = formula(x.astype(dt), *args, epsilon=epsilon)
  if return_centered:
    return y.astype(out), v.astype(out)
  return y.astype(out)


def normalize_factors(x: jax.Array, field: Field, *, sigma=0.0, mask=None, axis_name=None,
                      fast_variance: bool | None = None, source: jax.Array | None = None):
  """``(y, v, r, stats)`` of `normalize` over one box `field` (A = B): ``y = v * r``, with
  ``r = 1 / sqrt(sigma^2 + E[v^2])`` at the statistics' size, in the statistics dtype.

  `source`, if given, holds the values of `x` in a narrower dtype (`x` is its conversion),
  and is what the statistics read (`statistics.widened`); the derivative is `x`'s. A layer
  that also reads ``x - k`` itself (`shifted_input`) passes both, so that all of `x`'s
  cotangents are summed in float32 and rounded to the input's dtype once.

  For layers with an affine step: flax's ``v * (r * scale) + bias`` sums the gradient of
  ``scale`` at the statistics' size where ``y * scale`` sums ``g * y`` over the input
  (BENCHMARKS.md, "Issue 22: the written-out modules").
  On a CUDA GPU, `row_two_pass` serves layers of at most `LAYER_FUSED_SIZE` entries.
  """
  x, axis_name = check_input(x), check_axis_name(axis_name)
  sigma = check_sigma(sigma, stats_shape(x.shape, field))
  mask = check_mask(mask, x.shape)
  dt = stat_dtype(x.dtype)
  sigma = jnp.asarray(sigma, dt)
  y, v, stats = box_normalized(x, sigma, mask,
                               pick_statistics(field, field, fast_variance,
                                               mapped=axis_name is not None), field, field,
                               "valid", axis_name, fused_size=LAYER_FUSED_SIZE, source=source)
  return y, v, inverse_scale(stats.var, sigma), stats


def resolve_fields(summation, suppression, shape: tuple[int, ...]):
  """``(A, B)``: a `Field` for boxes (the box strategies' fast path), a `WeightedField` for
  kernels and mixings; A is None for no centering, B is A when `suppression` is None."""
  if summation is None and suppression is None:
    raise TypeError(
        "summation: None means no centering (v = x), which needs a suppression field; give "
        "one, or a field for summation, a dict {axis: None | odd width} or a tuple of axes.")

  def resolve(spec, role):
    field = resolve_weighted_field(spec, shape, role=role)
    return field if field.ops else field.base

  a = None if summation is None else resolve(summation, "summation")
  return a, a if suppression is None else resolve(suppression, "suppression")


def _check_suppression(alpha, epsilon, pool) -> None:
  check_positive(alpha, "alpha", " (the exponent of |v| in the suppression; 2 in the paper)")
  for name, value in (("alpha", alpha), ("epsilon", epsilon)):
    check_scalar(value, name, "one exponent")
  check_finite(epsilon, "epsilon", " (the exponent of the suppression; 1/2 in the paper)")
  if not isinstance(pool, str) or pool not in POOLS:
    raise ValueError(f"pool={pool!r} is not a pool; use one of {POOLS}.")


def formula(x: jax.Array, sigma: jax.Array, mask: jax.Array | None, statistics: Strategy,
            a, b, border: str, axis_name, epsilon=0.5) -> tuple[jax.Array, jax.Array, Stats]:
  """``(y, v, Stats)`` of checked `x`, in the statistics dtype, over resolved fields (`x`
  in any float dtype: the box strategies read it in its own, `statistics.widened`).

  ``E_A[x] = stats.shift + stats.mean`` and ``stats.var`` is ``E_B[|v|^alpha]`` (the
  strategy's pool).
  """
  stats = statistics(x, a, b, border=border, mask=mask, axis_name=axis_name)
  ((x, _),) = widened(x)  # in the statistics dtype; narrower, converted where it is read
  v = select((x - stats.shift) - stats.mean, mask)  # v = x - E_A[x]
  y = select(scale(v, stats.var, sigma, epsilon), mask)  # y = v / (sigma^2 + E_B[v^2])^eps
  return y, v, stats


# The longest row XLA's GPU backend fuses into one Triton kernel: compiled for an H200,
# rows of 16384 entries are one kernel, of 16392 and more 7 forward and 13 forward+backward,
# more than the core's path (`python -m benchmarks.gpu_kernels`). Timed on the H200, the
# fused form took 0.57-0.86x the core's time on rows of 4096 and 16384 entries, 1.19-1.51x
# on rows of 16392 to 65536 (`python -m benchmarks.gpu_fusion --row_lengths`; BENCHMARKS.md,
# "GPU").
FUSED_ROW_LIMIT = 2**14

# The largest input a layer (`normalize_factors`) normalizes by `row_two_pass` on a GPU.
# With a trained scale, the fused kernel writes y out for the scale's gradient. On an H200,
# linen's LayerNorm forward+backward took 0.74x flax's time fused and 1.33x on the core's
# path at 8x512x768 (3.1M entries), but 1.59-1.70x fused and 1.02-1.09x on the core's path
# at 8x2048x1024 and 32x2048x1024 (16.8M, 67M; float32, bfloat16); the forward alone there,
# 0.88-0.96x and 1.02-1.05x. Straight lines through the forward+backward times cross near
# 2**23, itself not timed (`python -m benchmarks.gpu_fusion --modules`; BENCHMARKS.md,
# "GPU"). The size is the traced one (per example under `vmap`). Functions fuse at any size.
LAYER_FUSED_SIZE = 2**23


def row_field(x: jax.Array, a, b, border: str, mask, axis_name) -> bool:
  """Whether `row_two_pass` serves these fields on a GPU: ``A = B`` = `x`'s last axis,
  whole, of 1 to `FUSED_ROW_LIMIT` entries (a known number: an exported symbolic one takes
  `normalized`), with no mask, mapped axis or zero border."""
  if not (isinstance(a, Field) and a == b == Field((x.ndim - 1,), ()) and mask is None
          and axis_name is None and border == "valid"):
    return False  # (a scalar's fields are empty: it has no last axis to read)
  n = x.shape[-1]
  return not is_symbolic_dim(n) and 0 < n <= FUSED_ROW_LIMIT


@functools.partial(jax.jit, static_argnames=("statistics", "a", "b", "border", "axis_name",
                                               "fused_size"))
def box_normalized(x: jax.Array, sigma: jax.Array, mask: jax.Array | None,
                   statistics: Strategy, a: Field, b: Field, border: str, axis_name, *,
                   fused_size: int | None = None, source: jax.Array | None = None):
  """`normalized`, or over the last axis alone (`row_field`): on a CUDA GPU, `formula`
  with `row_two_pass` differentiated by JAX; on XLA's CPU backend, for rows of fewer than
  `statistics.PLAIN_MIN_FIELD` entries, `normalized` with `short_row_two_pass`. Either
  replaces the strategy that `fast_variance` picked.

  `x` in any float dtype: `normalized` differentiates its conversion to the statistics
  dtype, and reads `x` itself (or `source`, the narrower values that `x` converts).

  The choice is made where the program is lowered (``lax.platform_dependent``), so one
  jitted function takes each backend's path. XLA's GPU backend makes that row
  normalization one Triton kernel, forward and forward+backward, which reads each row
  once for both statistics, as flax's two-pass; `normalized`, whose derivative is written
  for XLA's CPU backend, is 5-7 kernels there in either mode, and one-pass sums 2-6
  (flax's as ours). On an H200 this path took 0.67-0.93x the time of flax's default
  one-pass and 0.94-1.08x its two-pass, forward and forward+backward (8x512x768,
  32x2048x1024; BENCHMARKS.md, "GPU"). Inputs of more than `fused_size` entries (when
  given) keep `normalized` there. Elsewhere, and on every other field, `normalized`.

  Jitted, so that the layers of one shape in a model share one trace: each traces every
  platform's program and, under ``grad``, its derivative. A training step of 20 layer
  norms traced in 4.5x flax's time, now about 1.1x (BENCHMARKS.md, "Trace time").
  """
  source = x if source is None else source
  x = x.astype(stat_dtype(x.dtype))  # read nowhere: a float32 copy of bfloat16 is dead code

  def default(x, sigma, statistics=statistics):
    return normalized(x, sigma, mask, statistics, a, b, border, axis_name, source)

  def fused_rows(x, sigma):  # a GPU fuses the conversion into each kernel
    return formula(x, sigma, None, row_two_pass, a, b, border, None)

  paths = {}
  if row_field(x, a, b, border, mask, axis_name):
    if x.shape[-1] < PLAIN_MIN_FIELD:
      paths["cpu"] = functools.partial(default, statistics=short_row_two_pass)
    if fused_size is None or not (is_symbolic_dim(x.size) or x.size > fused_size):
      paths["cuda"] = fused_rows
  if not paths:
    return default(x, sigma)
  return lax.platform_dependent(x, sigma, default=default, **paths)


def unfused(stats, r: jax.Array):
  """`stats` (tangents of the statistics' size) where ``r > 0``, and 0 where `r` is NaN.

  ``r = 1 / sqrt(sigma^2 + E_B[v^2])`` is positive wherever it is a number, and where it is
  NaN (the statistics overflowed) the output and its derivative are NaN through the other
  terms, so the value never changes. The select is for XLA's CPU backend, which takes no
  select into its YNNPACK fusions: without it, group norm's derivative (the input's sums, the
  group sums' matmuls and the output) became one fusion, and the function took 1.6-3.2x
  flax's time at 8x16x16x1280, 8x512x768 and 4x256x4096 in float32; with it the sums and the
  output are separate kernels, as in flax's program, and 1.0-1.3x (in bfloat16, where the
  input's float32 copy was then written apart, up to 2x its time before, still below
  flax's; BENCHMARKS.md, "Group sums: wrong gradients from XLA"; since, each kernel
  converts the input itself, `statistics.widened`).
  """
  positive = r > 0
  return tuple(jnp.where(positive, t, jnp.zeros((), t.dtype)) for t in stats)


@functools.partial(jax.custom_jvp, nondiff_argnums=(3, 4, 5, 6, 7))
def normalized(x: jax.Array, sigma: jax.Array, mask: jax.Array | None, statistics: Strategy,
               a: Field, b: Field, border: str, axis_name,
               source: jax.Array | None = None) -> tuple[jax.Array, jax.Array, Stats]:
  """`formula` for the box strategies (the paper's exponents), with its derivative written
  out below: of `x`, in the statistics dtype, whose values are read from `source` when
  given (the narrower input that `x` converts: `statistics.widened`). `source`'s own
  tangent is not used: a bfloat16 input's cotangent comes through `x`'s, in float32."""
  return formula(x if source is None else source, sigma, mask, statistics, a, b, border,
                 axis_name)


@normalized.defjvp
def _normalized_jvp(statistics, a, b, border, axis_name, primals, tangents):
  """The derivative of `normalized`, for every strategy (they compute the same statistics).

  ``dE_A[x] = E_A[dx]``, ``dE_B[v^2] = 2 E_B[v dx] - 2 E_B[v dE_A[x]]`` and
  ``dy = (dx - dE_A[x]) r + v dr`` with ``r = 1 / sqrt(sigma^2 + E_B[v^2])``. Every
  input-sized term is written from `x`, the tangent and statistic-sized arrays (``v`` is
  recomputed, never stored), so reverse mode (the transpose) reads `x` and the cotangent
  a few times and writes one gradient. Its ratio to JAX's own derivative of `normalized`:
  BENCHMARKS.md, "The hand-written JVP".
  """
  x, sigma, mask, source = primals
  dx, dsigma, _, _ = tangents
  y, v, stats = normalized(x, sigma, mask, statistics, a, b, border, axis_name, source)
  x = x if source is None else source  # read in its own dtype (`statistics.widened`)
  k, m = stats.shift, stats.mean
  dt = m.dtype
  count_a = field_count(x.shape, a, border=border, mask=mask, axis_name=axis_name, dtype=dt)
  count_b = suppression_count(x.shape, a, b, border=border, mask=mask, axis_name=axis_name,
                              dtype=dt)
  two = np.asarray(2.0, dt)
  r = inverse_scale(stats.var, sigma)

  def dr_of(dvar, r=r, sigma=sigma, dsigma=dsigma):  # d r = -r^3 (dE_B[v^2] + 2 sigma dsigma) / 2
    return np.asarray(-0.5, dt) * r * r * r * (dvar + two * sigma * dsigma)

  def centered_copies(n):
    # v, n times: recomputed from copies of the statistics, which XLA fuses into each
    # consumer; with a mask XLA's CPU backend writes a selected array to memory anyway
    # (it fuses no select into its YNNPACK sums), so v itself, written once.
    if mask is not None:
      return [v] * n
    return [(xc - c) - d for xc, (c, d) in widened(x, (k, m), n)]

  # dx selected once: every input-sized product below has a factor that is 0 outside the
  # mask, so the sums need no select of their own, and the transpose selects once.
  dx = select(dx, mask)
  pooled = a.pooled
  dx_w = field_sum(dx, pooled, axis_name=axis_name)
  dmean = divide_by_count(window_sum(dx_w, a.windows), count_a)
  dmean_out = dmean  # the centered output's
  if a.windows and not (pooled.whole or pooled.groups or b.whole or b.groups):
    # Windows alone (a 1-D window over an RNN's units): dE_B[v^2] = 2 E_B[v (dx - dE_A[x])].
    # Written with `v` and `r` as the only input-sized factors, so that inside a scan only
    # these two are saved per step for the backward (BENCHMARKS.md, "The LSTM's DN").
    d = select(dx - dmean, mask)
    dvar = two * divide_by_count(field_sum(v * d, b, axis_name=axis_name), count_b)
    dr_over_r3 = np.asarray(-0.5, dt) * (dvar + two * sigma * dsigma)
    dy = r * (d + v * (r * (r * dr_over_r3)))
  elif (a.windows or b.windows) and pooled == b.pooled:
    # Divisive norm across channels: m varies along the windowed axes but is constant
    # over the whole axes W, so sums over W of m * t are m times sums of t: only
    # u * dx = (x - k) * dx is summed at the input's size, and sum_W v = sum_W u - n m
    # comes from the statistics.
    u = [select(xc - c, mask) for xc, c in widened(x, k, 2)]
    n = field_count(x.shape, pooled, mask=mask, axis_name=axis_name, dtype=dt)
    t = (field_sum(u[0] * dx, pooled, axis_name=axis_name) - m * dx_w
         - dmean * (stats.pooled - n * m))
    dvar = two * divide_by_count(window_sum(t, b.windows), count_b)
    dr = dr_of(dvar)
    dy = dx * r + u[1] * dr - (dmean * r + m * dr)
  elif whole_alone(a, b):
    # Whole axes alone (layer, instance, batch norm): the statistics' arithmetic at the
    # positions' rank (`statistics.at_positions`), as the strategies' is.
    centered = centered_copies(2)
    q = field_sum(centered[0] * dx, b, axis_name=axis_name)
    q, count_b, r_, dmean_, sigma_, dsigma_ = at_positions(
        (q, count_b, r, dmean, sigma, dsigma), a, x.ndim)
    dvar = two * divide_by_count(q, count_b)
    dr = dr_of(dvar, r_, sigma_, dsigma_)
    dvar, dr, dmean_r = expanded((dvar, dr, dmean_ * r_), a)
    # r from a copy of its own: with the output's v * r, XLA's CPU backend shares one
    # broadcast of r and writes it to memory (input-sized) for both kernels; apart, each
    # broadcasts its own. Layer norm over 768 features, forward+backward: 0.62-0.77x the
    # time (BENCHMARKS.md, "One broadcast of r").
    dy = dx * copies(r, 1)[0] - dmean_r + centered[1] * dr
  else:
    centered = centered_copies(3)
    dvar = two * divide_by_count(field_sum(centered[0] * dx, b, axis_name=axis_name),
                                 count_b)
    # - 2 E_B[v dE_A[x]]. With A == B and no windows it is 2 dE_A[x] E_A[v], and E_A[v] is
    # 0 up to the rounding of the mean (~eps * std): below the float32 rounding of dvar.
    if a != b:
      dvar = dvar - two * divide_by_count(
          field_sum(centered[1] * dmean, b, axis_name=axis_name), count_b)
    # With groups, a select between the input's sums and the output (`unfused`); the mean's
    # own tangent keeps A's statistics' shape, which may be smaller than r's (B's).
    dmean_out, dvar = unfused((dmean, dvar), r) if a.groups else (dmean, dvar)
    dy = dx * r - dmean_out * r + centered[2] * dr_of(dvar)
  dy = select(dy, mask)
  dv = select(dx - dmean_out, mask)
  return (y, v, stats), (dy, dv, Stats(jnp.zeros_like(k), dmean, dvar, dx_w))


@jax.custom_jvp
def shifted_input(x: jax.Array, source: jax.Array, k: jax.Array) -> jax.Array:
  """``x - k`` in the statistics dtype, read from `source` through a copy of its own
  (`statistics.widened`), differentiated as ``x - k``: the layers' ``u`` of
  ``(u - m) * r``, whose cotangent joins the core's in `x` (`normalize_factors`)."""
  ((c, k1),) = widened(source, k)
  return c - k1


@shifted_input.defjvp
def _shifted_input_jvp(primals, tangents):
  x, source, k = primals
  dx, _, dk = tangents
  return shifted_input(x, source, k), dx - dk
