r"""The statistics of the unified normalizer of Ren et al. (ICLR 2017), by strategy.

.. math::
    v = x - E_A[x], \qquad y = \frac{v}{\sqrt{\sigma^2 + E_B[v^2]}}

A is the summation field, B the suppression field (see `divnorm._src.fields`). A strategy
is a leaf function ``(x, a, b, *, border, mask, axis_name) -> Stats`` that computes
``E_A[x]`` and ``E_B[v^2]`` for a pair of resolved fields, in the statistics dtype
(`stat_dtype`); `pick_statistics` chooses one:

- `two_pass` (the default, every pair of fields): ``E_A[x]``, then ``E_B[v^2]`` from the
  centered values.
- `corrected_two_pass` (the default for windowed fields over equal whole axes: divisive
  norm across channels): two passes centered on every position's own rough mean, faster
  there than `two_pass`.
- `one_pass` (``fast_variance=True``, Flax's default): sums of ``x`` and ``x^2`` in one
  read, for fields whose whole (and grouped) axes are the same in A and B, without windows
  in A (``True`` takes `corrected_two_pass` there). On XLA's CPU backend it first takes the
  sums without a shift (``k = 0``), which XLA computes faster, and keeps them where every
  field's mean is near 0 (`PLAIN_LIMIT`); elsewhere the shifted sums
  (`shifted_one_pass`, every other backend's).
- `row_two_pass` (a CUDA GPU, the last axis alone, either ``fast_variance``): two passes
  around the row's maximum, the chain XLA's GPU backend fuses into one kernel per row,
  differentiated by JAX; `core.box_normalized` chooses it where the program is lowered.
- `short_row_two_pass` (XLA's CPU backend, the last axis alone of fewer than
  `PLAIN_MIN_FIELD` entries, either ``fast_variance``): two passes around the row's first
  entry as one chain without copies, which XLA fuses; with the core's derivative.
- `weighted` (weighted fields, or the generalized suppression of `divnorm.normalize`):
  weighted means ``E_A[x]`` and a weighted mean or sum ``P_B[|v|^alpha]`` over kernels and
  mixings (`divnorm._src.weighted_fields`); its ``var`` is that pool. The box strategies
  above serve the paper's formula (``alpha = 2``, ``epsilon = 1/2``, a mean, centered) over
  boxes, and stay the fastest path there.

All work around a shift ``k``: one entry of the data per span of A (`shift`) for `two_pass`
and `one_pass` (0 in `one_pass` on XLA's CPU backend, where the means are near 0), each
position's rough mean for `corrected_two_pass`, the row's maximum for `row_two_pass`, its
first entry for `short_row_two_pass`, the mean of A's span for `weighted`. ``E_A[x] = k +
E_A[x - k]``, and the sums of ``x - k`` are sums of small numbers when ``|E[x]| >>
std(x)``. A strategy returns ``k`` and ``E_A[x - k]`` apart (`Stats`), because ``v = (x -
k) - E_A[x - k]`` keeps the digits of the small second term that ``x - (k + E_A[x - k])``
rounds away at large offsets.
Float32 error against float64 (``python -m benchmarks.numerics``, offset + N(0, 1), every
preset): at most 8.1e-7 for the two-pass strategies and 1.0e-6 for `one_pass`, at offsets 0,
1e4 and 1e6; flax's one-pass is off by 40 at 1e4, its two-pass by 1e-3 at 1e4 and 0.15 at
1e6 (README, "Numerics").

Further rules every strategy keeps:

- A mask selects (`reductions.select`) before any arithmetic, so nothing outside it, NaN
  and inf included, reaches a sum; ``k`` is a masked-in entry (or a mean of them).
- ``k`` is under ``stop_gradient``: the result does not depend on it, only its rounding.
- The box strategies take `x` in its own dtype, and each expression of the input's size
  reads its own float32 copy (`widened`): a bfloat16 input is converted inside every
  kernel that reads it, never written to memory as float32 once for all of them
  (`short_row_two_pass` writes its ``x - k`` once: faster there).
- An empty field (count 0, e.g. all masked out) gives statistics 0, never NaN.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.export import is_symbolic_dim

from divnorm._src import explicit
from divnorm._src.checks import check_bool, is_concrete
from divnorm._src.fields import Field
from divnorm._src.reductions import (
  border_count,
  divide_by_count,
  field_count,
  field_sum,
  pooled_sums,
  psum,
  select,
  stat_dtype,
  window_sum,
)
from divnorm._src.shift import shift
from divnorm._src.weighted_fields import (
  WeightedField,
  border_weight,
  divide_by_weight,
  weight_count,
  weighted_mean,
  weighted_sum,
)


class Stats(NamedTuple):
  """What a strategy returns, in the statistics dtype (whole axes kept as size 1).

  Attributes:
    shift: ``k``, close to the data (each strategy's: see the module docstring).
    mean: ``E_A[x] - k``, small where ``k`` is close to the data.
    var: ``E_B[v^2]`` with ``v = (x - k) - mean`` (a variance when A == B).
    pooled: ``sum (x - k)`` over A's whole and grouped axes at every position, before A's
      windows: the box strategies take it on the way to `mean`, and the derivative of a
      windowed field reuses it (`core.normalized`); 0 for `weighted`.
  """

  shift: jax.Array
  mean: jax.Array
  var: jax.Array
  pooled: jax.Array


class Moments(NamedTuple):
  """The statistics of a field pair, in the statistics dtype (whole axes kept as size 1).

  Attributes:
    mean: ``E_A[x]``.
    var: ``E_B[v^2]`` (a variance when A == B; each position centered by its own mean).
    v: the centered input ``x - E_A[x]``, 0 outside the mask.
  """

  mean: jax.Array
  var: jax.Array
  v: jax.Array


Strategy = Callable[..., Stats]


def variance_floor(dtype) -> float:
  """A floor added to ``sigma^2 + E_B[v^2]``: ``finfo(dtype).tiny ** (1/3)``.

  About 2e-13 in float32 and 3e-103 in float64, large enough that ``rsqrt`` and its
  derivatives stay finite, so a constant field gives ``y = 0`` with finite gradients even at
  ``sigma = 0``. It is the variance of a standard deviation of 4.8e-7 in float32, so it
  shows in data nearly that flat: layer norm over 256 entries of standard deviation 1e-4 is
  within 4.9e-5 of float64, of 1e-6 off by 0.29-0.45 (two draws; README, "sigma and Flax's
  epsilon").
  """
  return float(np.finfo(dtype).tiny) ** (1.0 / 3.0)


def overflow_to_nan(s: jax.Array) -> jax.Array:
  """`s`, NaN where it overflowed to inf (``rem(s, inf)``: finite values unchanged), so that
  ``rsqrt`` of a sum of squares past the dtype's range is NaN, never a silent 0."""
  return lax.rem(s, np.asarray(np.inf, s.dtype))


def inverse_scale(var: jax.Array, sigma, dt=None) -> jax.Array:
  """``1 / sqrt(sigma^2 + var)`` in `dt` (default: var's dtype), finite at ``var = sigma = 0``.

  NaN where `var` overflowed to inf (a spread beyond the statistics dtype's range; see
  `divnorm.normalize`): ``rsqrt(inf) = 0`` would return 0 silently. The guard is
  ``rem(d, inf)``, which is ``d`` for finite ``d`` and NaN for inf: one more operation on
  the statistics' chain, with no second use of ``var``, no compare and no select:
  - where JAX differentiates through `r` (`rms_norm`), a select's derivative kept XLA's CPU
    backend from fusing the backward as it fuses flax's (bfloat16 `rms_norm`: 1.23-1.26x
    flax's time before, 0.90x after);
  - on a GPU, XLA makes a row normalization one Triton kernel only where the statistics
    reach the output through a chain of operations of one operand each; a guard that reads
    ``var`` a second time kept `rms_norm`'s forward at 2-3 kernels against flax's one (H200:
    1.45x flax's time; ``python -m benchmarks.gpu_fusion``, BENCHMARKS.md "GPU").
  """
  dt = var.dtype if dt is None else dt
  d = var + jnp.square(jnp.asarray(sigma, dt)) + np.asarray(variance_floor(dt), dt)
  return lax.rsqrt(overflow_to_nan(d))


def is_half(epsilon) -> bool:
  """Whether `epsilon` is the paper's exponent 1/2 (a concrete scalar)."""
  return is_concrete(epsilon) and np.ndim(epsilon) == 0 and float(epsilon) == 0.5


def scale(v: jax.Array, var: jax.Array, sigma, epsilon=0.5) -> jax.Array:
  """``v / (sigma^2 + var)^epsilon``: applies the statistics, in the dtype of `v`.

  ``epsilon = 1/2`` is `inverse_scale`. Other exponents (GDN's, IGDN's negative ones,
  learned ones) get the same floor (`variance_floor`), so the result and its gradients
  stay finite where the denominator is 0.
  """
  if is_half(epsilon):
    return v * inverse_scale(var, sigma, v.dtype)
  dt = v.dtype
  d = var + jnp.square(jnp.asarray(sigma, dt)) + np.asarray(variance_floor(dt), dt)
  if is_concrete(epsilon) and np.ndim(epsilon) == 0:
    special = {-0.5: jnp.sqrt, 1.0: lambda d: 1.0 / d, -1.0: lambda d: d}
    if float(epsilon) in special:
      return v * special[float(epsilon)](d).astype(dt)
  return v * jnp.exp(-jnp.asarray(epsilon).astype(dt) * jnp.log(d))


def abs_power(v: jax.Array, alpha) -> jax.Array:
  """``|v|^alpha``, with finite values and gradients at ``v = 0`` for a learned `alpha`.

  Its derivative at ``v = 0`` is 0 for every `alpha` (``|v|`` as ``v * sign(v)``: JAX's
  ``abs`` takes +1 there), the symmetric subgradient, as tensorflow_compression's GDN."""
  if is_concrete(alpha) and np.ndim(alpha) == 0 and float(alpha) in (1.0, 2.0):
    return v * v if float(alpha) == 2.0 else v * jnp.sign(v)
  a = jnp.abs(v)
  positive = a > 0
  safe = jnp.where(positive, a, jnp.ones((), a.dtype))
  alpha = jnp.asarray(alpha).astype(a.dtype)
  return jnp.where(positive, jnp.exp(alpha * jnp.log(safe)), jnp.zeros((), a.dtype))


def stats_shape(shape: tuple[int, ...], *fields: Field | WeightedField | None
                ) -> tuple[int, ...]:
  """The shape of the statistics: `shape` with the fields' whole axes set to 1."""
  bases = [f.base if isinstance(f, WeightedField) else f for f in fields if f is not None]
  whole = {axis for f in bases for axis in f.whole}
  return tuple(1 if axis in whole else n for axis, n in enumerate(shape))


def copies(t, n: int):
  """`n` copies of `t` (a pytree) behind one optimization barrier.

  XLA cannot identify the copies with one another, so each input-sized expression built
  from one copy (``x - k`` in a sum, in the output) has that one consumer, and XLA's CPU
  backend fuses it there instead of writing it to memory once for all of them.
  """
  return lax.optimization_barrier((t,) * n)


def widened(x: jax.Array, t=None, n: int = 1) -> list:
  """`n` pairs ``(x_i, t_i)``, one per consumer: `x` in the statistics dtype, and copies of
  `t` (a pytree, or None) behind one optimization barrier (`copies`).

  In the statistics dtype already (float32), `x` is `x` itself (and `t` itself for one
  consumer: the program of a float32 input is unchanged). A narrower `x` (bfloat16,
  float16) is copied with `t` behind that barrier and each copy converted: XLA's CPU
  backend converts it inside every YNNPACK kernel that reads it, where one converted copy
  read by several kernels is a kernel of its own that writes it to memory. At 8x512x768
  in bfloat16, the sums of ``x`` and ``x^2`` took 0.07 ms each from their own copies,
  against 0.3-0.5 ms for the two and 0.8-5.3 ms for the shared conversion alone.
  Forward+backward in bfloat16, the functions took 0.62-0.84x their time with the shared
  copy and the linen layers 0.37-0.98x (``python -m benchmarks.against_rev --rev
  e66b5e4``; BENCHMARKS.md, "Narrow inputs converted in every kernel that reads them").
  """
  dt = stat_dtype(x.dtype)
  if x.dtype != dt:
    return [(c.astype(dt), u) for c, u in copies((x, t), n)]
  return [(x, u) for u in (copies(t, n) if t is not None and n > 1 else (t,) * n)]


def whole_alone(a: Field, b: Field) -> bool:
  """Whether the summation and suppression fields are one field of whole axes alone (layer,
  instance, batch norm): the fields whose statistics' arithmetic runs `at_positions`."""
  return a == b and not (a.windows or a.groups)


def at_positions(stats, a: Field, ndim: int):
  """`stats` (statistics, counts or sigmas of an input of rank `ndim`, over a field of whole
  axes alone) without those axes.

  Their arithmetic (a mean, the variance from sums, the derivative's terms) then runs at
  the rank of the positions. XLA's CPU backend fuses that arithmetic into the YNNPACK
  reduction that makes the sums, and there it runs several times slower per entry on
  arrays with axes of size 1 after the positions' (layer norm over the last axis). With it,
  layer norm over 16 features took 0.46-0.76x its time before, forward+backward, 0.70-0.94x
  over 64 and 0.93-1.01x over 768, the same numbers to the bit (``python -m
  benchmarks.against_rev --rev 7ff6729 --cases LN --shapes 64x1024x16,64x1024x64,8x512x768``;
  BENCHMARKS.md). A sigma of lower rank is aligned as broadcasting aligns it. `expanded`
  puts the axes back.
  """
  def squeezed(t):
    if np.ndim(t) == 0:
      return t
    lib = np if isinstance(t, np.ndarray) else jnp
    t = lib.reshape(t, (1,) * (ndim - np.ndim(t)) + np.shape(t))  # broadcasting's alignment
    return lib.squeeze(t, axis=a.whole)

  return tuple(squeezed(t) for t in stats)


def expanded(stats, a: Field):
  """`at_positions`' inverse: the statistics with `a`'s whole axes, of size 1, back."""
  return tuple(jnp.expand_dims(t, a.whole) for t in stats)


# ---- strategies --------------------------------------------------------------------------


def suppression_count(shape, a: Field, b: Field, *, border: str, mask=None, axis_name=None,
                      dtype=np.float32):
  """The divisor of ``E_B[v^2]``: B's count (A's with ``"zeros_with_divisor_bug"``, which
  reproduces the reference code's division by the summation window's size)."""
  divisor = a if border == "zeros_with_divisor_bug" else b
  return field_count(shape, divisor, border=border, mask=mask, axis_name=axis_name,
                     dtype=dtype)


def _mean(pooled, k, shape, a: Field, *, border: str, mask, axis_name, differences=None):
  """``E_A[x - k]`` from ``sum (x - k)`` over A's whole and grouped axes (`pooled`); with
  a shift `k` that varies along the windows, plus its `differences` within each window
  (`_neighbour_differences`)."""
  dt = pooled.dtype
  total = window_sum(pooled, a.windows)
  if differences is not None:
    total = total + differences
  if border != "valid":  # zero padding: entries x = 0 past the border, i.e. x - k = -k
    total = total - k * border_count(shape, a, border, axis_name=axis_name, dtype=dt)
  count = field_count(shape, a, border=border, mask=mask, axis_name=axis_name, dtype=dt)
  return divide_by_count(total, count)


def two_pass(x: jax.Array, a: Field, b: Field, *, border: str, mask=None,
             axis_name=None) -> Stats:
  """``E_A[x - k]``, then ``E_B[v^2]`` from ``v = (x - k) - E_A[x - k]``: any fields.

  The corrected two-pass algorithm around a shift from the data (`shift`): every sum is of
  small numbers, so the float32 error is that of values of size ``std(x)``, at any offset
  shared by the span. Data far from ``k`` within a span (a band far above the rest) is
  rounded at its distance: about ``eps * |x - k| / std`` in the output, where windows
  meet it (`corrected_two_pass` centers each position at its own mean instead).
  `mask` is boolean of `x`'s shape (or None).

  A first pass without the shift, kept by a ``lax.cond`` as `one_pass`'s sums are, took
  0.78-0.91x this time forward+backward on XLA's CPU backend, but under ``vmap`` (every
  equinox layer, whose default this is) the cond runs both: 1.10-1.27x. Not kept
  (BENCHMARKS.md, "Sums without a shift where the mean is near 0").
  """
  dt = stat_dtype(x.dtype)
  k = shift(x, a, mask=mask, axis_name=axis_name)
  (x1, k1), (x2, k2) = widened(x, k, 2)
  pooled = field_sum(x1 - k1, a.pooled, mask=mask, axis_name=axis_name)
  m = _mean(pooled, k, x.shape, a, border=border, mask=mask, axis_name=axis_name)
  # (k - x) + m is exactly -v: a distinct expression from the output's (x - k) - m, so
  # XLA fuses each into its consumer; with a mask XLA writes both to memory, and v serves
  # both. Selected before the square: a finite JAX gradient.
  u = (k2 - x2) + copies(m, 1)[0] if mask is None else select((x.astype(dt) - k) - m, mask)
  count_b = suppression_count(x.shape, a, b, border=border, mask=mask, axis_name=axis_name,
                              dtype=dt)
  var = divide_by_count(field_sum(u * u, b, axis_name=axis_name), count_b)  # u is selected
  return Stats(k, m, var, pooled)


def row_two_pass(x: jax.Array, a: Field, b: Field, *, border: str, mask=None,
                 axis_name=None) -> Stats:
  """`two_pass` for XLA's GPU backend, over the last axis alone (layer norm of features).

  For ``A = B`` = the last axis, whole, with no mask and no mapped axis (`core.row_field`),
  written as the chain that XLA's GPU backend fuses into one Triton kernel per row, which
  reads the row once for every statistic:
  - the shift ``k`` is the row's maximum: a reduce, fused with the others, where
    `shift`'s two entries would be a slice, a kernel of its own. It is a value of the
    row, as `shift`'s is, so ``x - k`` is exact at any offset and every sum is of numbers
    of the row's spread; float32 error against float64 at offsets 0, 1e4 and 1e6 as
    `two_pass`'s (``tests/test_gpu_rows.py``). Where the maximum is an outlier, the other
    entries' ``x - k`` round at the outlier's scale: 1023 N(0, 1) entries and one at 1e6
    keep 8% of their own spread, against 0.06% with `two_pass`'s first entries, both
    within a few ulps of the row's largest output;
  - no guard on ``k``: a row holding inf or NaN is NaN either way, and no other row reads
    its ``k``;
  - one ``v = (x - k) - m`` feeds the variance and the output, with no optimization
    barrier (`copies` serves XLA's CPU backend).
  Differentiated by JAX (`core.box_normalized`). Compiled for an H200, layer norm over
  768 features is then one kernel forward and forward+backward, as flax's two-pass, against
  5-7 for `two_pass` and `one_pass` (``python -m benchmarks.gpu_kernels``; BENCHMARKS.md,
  "GPU").
  """
  x = x.astype(stat_dtype(x.dtype))  # a GPU fuses the conversion into each kernel
  return _row_statistics(x, lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True)), a, b,
                         border)


def short_row_two_pass(x: jax.Array, a: Field, b: Field, *, border: str, mask=None,
                       axis_name=None) -> Stats:
  """`two_pass` for XLA's CPU backend over a short last axis alone (layer norm of few
  features), either ``fast_variance``.

  For `row_two_pass`'s fields (`core.row_field`) with rows of fewer than `PLAIN_MIN_FIELD`
  entries, where `one_pass` keeps its shifted sums. `two_pass` reads such a row in kernels
  of their own, each from a copy of `x` behind an optimization barrier (`copies`: the
  shift's two entries, ``E_A[x - k]``, the centered squares), which serves long rows. Here
  ``k`` is the row's first entry and one ``x - k``, from one copy of `x` (`widened`), feeds
  both sums and the centered values: a chain that XLA's CPU backend fuses as it fuses
  flax's two-pass (its kernels: the slice, the sums, the overflow guard, the output).

  ``k`` is a value of the row, as `shift`'s, so ``x - k`` is exact at any offset and every
  sum is of numbers of the row's spread. No guard on ``k``: a row holding inf or NaN is NaN
  either way, and no other row reads it. It is sliced from `x` in its own dtype: XLA
  recomputes a slice inside each consumer, and a slice of the float32 copy converts again
  per entry there (in bfloat16 the forward took 0.76-0.96x its time with this one). The
  derivative is `core.normalized`'s.

  Against `one_pass` and `two_pass` (``python -m benchmarks.against_rev --cases LN
  --shapes 64x1024x8,64x1024x16,64x1024x24,8x1024x31``, one core), float32 and bfloat16,
  both modes: the linen LayerNorm took 0.61-0.92x their time forward+backward, the function
  0.75-1.03x, the forward alone 0.46-0.84x (8 and 16 features). In bfloat16 the chain
  writes ``x - k`` in float32 once for both sums; read from a copy of its own per sum, as
  `two_pass` reads it, it took 0.87-1.05x `two_pass`'s time. Over 32 features, where
  `one_pass` takes the plain sums, this chain took 1.14-1.26x its time forward+backward and
  1.35-2.13x the forward alone (a trial; BENCHMARKS.md, "Short rows").
  """
  k = lax.stop_gradient(explicit.leading(x, {x.ndim - 1: 1})).astype(stat_dtype(x.dtype))
  ((x, _),) = widened(x)
  return _row_statistics(x, k, a, b, border)


def _row_statistics(x: jax.Array, k: jax.Array, a: Field, b: Field, border: str) -> Stats:
  """Two passes around `k` over the last axis, each expression used by every consumer."""
  shifted = x - k
  pooled = field_sum(shifted, a.pooled)
  m = _mean(pooled, k, x.shape, a, border=border, mask=None, axis_name=None)
  v = shifted - m
  count_b = suppression_count(x.shape, a, b, border=border, dtype=x.dtype)
  return Stats(k, m, divide_by_count(field_sum(v * v, b), count_b), pooled)


# `one_pass` on XLA's CPU backend keeps the sums of ``x`` and ``x^2`` themselves where every
# field has ``E_A[x]^2 <= PLAIN_LIMIT * var``: there they are as accurate as the shifted sums.
# Forced past the limit, at a mean 1.41 standard deviations from 0: float32 error against
# float64 1.8-2.0e-6 for normal data, 3.8-5.1e-6 for exponential data, against 2.0-2.9e-6
# and 4.4e-6-1.8e-5 with the shift; at 2 standard deviations 3.4-9.7e-6 (``python -m
# benchmarks.plain_sums``; BENCHMARKS.md).
PLAIN_LIMIT = 2.0
# The smallest input that takes them: below it the cond's own cost outweighs the faster sums.
# Forward+backward over the shifted sums alone: 0.97-1.08x at 8192-32768 entries (layer
# norm over 64x128, batch norm over 16x8x8x16, group norm over 8x8x8x64), 0.80-0.86x at
# 65536 and 0.72-0.86x above (``python -m benchmarks.plain_sums --tables sizes``).
PLAIN_MIN_SIZE = 2**16
# And the fewest entries per field: layer norm over 16 features (64x1024x16) took 1.21x the
# shifted sums' time with the plain sums, over 32 to 256 features 0.76-0.87x (1M entries;
# the same command).
PLAIN_MIN_FIELD = 32


def one_pass(x: jax.Array, a: Field, b: Field, *, border: str, mask=None,
             axis_name=None) -> Stats:
  """Sums of ``x - k`` and ``(x - k)^2`` over the whole (and grouped) axes, in one read.

  For fields whose whole and grouped axes W are the same in A and B, with windows in B
  alone (`pick_statistics`). With ``S1 = sum_W (x - k)``, ``S2 = sum_W (x - k)^2``, ``n``
  the masked-in count and ``m = E_A[x] - k = S1 / n`` at each position of the other axes,
  the sum over W of ``((x - k) - m)^2`` is ``T = S2 - 2 m S1 + n m^2`` (clamped at 0),
  never ``box(x^2) - box(x)^2``. ``E_B[v^2]`` is the window sum of ``T`` over B's windows
  divided by B's count. Around the shift, ``S2 - 2 m S1`` cancels only as far as
  ``(k - E[x])^2 / var`` (a few units, ``k`` being taken from the data), not as far as
  ``E[x]^2 / var`` (1e8 at an offset of 1e4 with unit spread) as Flax's sums do: measured
  float32 error at most 1.0e-6 at offsets 1e4 and 1e6, against 40 for Flax's one-pass at
  1e4 (``python -m benchmarks.numerics``). A ``k`` that is an outlier ``z`` standard
  deviations out costs about ``z^2`` ulps of the variance; `two_pass` is the robust choice.
  Over whole axes alone, the arithmetic on the sums runs without them (`at_positions`).
  Fields with windows in A take `corrected_two_pass` instead (`pick_statistics`), which
  centers each position at its own mean: here ``k`` would be one value per span, and where
  the span holds data far apart the sums cancel completely (an output of 5e6 for a band
  1e4 above the rest).

  On XLA's CPU backend, where `_plain_first` serves (inputs of at least `PLAIN_MIN_SIZE`
  entries, fields of at least `PLAIN_MIN_FIELD`), the sums are first those of ``x`` and
  ``x^2`` themselves (``k = 0``), which XLA's YNNPACK reductions compute 2-3x faster than
  sums with a subtraction inside. They cancel as far as ``E[x]^2 / var``, so
  they are kept where every field has ``E_A[x]^2 <= PLAIN_LIMIT * var`` (and a finite
  ``T``); there they are as accurate as the shifted sums. Elsewhere (an offset, a NaN or
  inf, an overflow) a ``lax.cond`` computes the shifted sums, as before: a second read.
  Forward+backward, layer, batch, instance and group norm took 0.73-0.90x their time with
  the shifted sums alone in float32, 0.83-0.91x in bfloat16 (``python -m
  benchmarks.plain_sums``). Under ``vmap`` the cond is a select and runs both: group norm
  of each example of 8x16x16x1280 took 1.08-1.11x. Other backends fuse the subtraction into
  their reductions for free, and keep the shifted sums.
  """
  def shifted(x, mask):
    return shifted_one_pass(x, a, b, border=border, mask=mask, axis_name=axis_name)

  def plain(x, mask):
    return _one_pass_sums(x, None, a, b, border=border, mask=mask, axis_name=None)

  return _plain_first(x, a, mask, axis_name, plain, shifted)


def _plain_first(x: jax.Array, a: Field, mask, axis_name, plain, shifted) -> Stats:
  """``plain(x, mask)``'s statistics where its check holds, else ``shifted(x, mask)``'s.

  `plain` returns ``(Stats, near)``: statistics with ``k = 0`` and whether they are as
  accurate as the shifted ones. On XLA's CPU backend, for inputs of at least
  `PLAIN_MIN_SIZE` entries and fields of at least `PLAIN_MIN_FIELD`, a ``lax.cond`` on
  ``near`` chooses (under ``vmap``, a select: both run). Elsewhere, and with `axis_name`,
  windows in A (one shift per span) or an Explicit sharding (the cond's branches would
  differ in their types' sharding), `shifted` alone.
  """
  entries = [x.shape[axis] for axis in a.whole] + [size for _, size in a.groups]
  if (axis_name is not None or a.windows or explicit.sharded_axes(x)
      or any(map(is_symbolic_dim, [x.size, *entries])) or x.size < PLAIN_MIN_SIZE
      or math.prod(entries) < PLAIN_MIN_FIELD):
    return shifted(x, mask)

  def on_cpu(x, mask):
    stats, near = plain(x, mask)
    return lax.cond(near, lambda: stats, lambda: shifted(x, mask))

  return lax.platform_dependent(x, mask, cpu=on_cpu, default=shifted)


def _within_limit(square: jax.Array, spread: jax.Array) -> jax.Array:
  """Whether ``square <= PLAIN_LIMIT * spread`` everywhere, with `spread` finite (a NaN
  fails the comparison)."""
  limit, inf = np.asarray(PLAIN_LIMIT, spread.dtype), np.asarray(np.inf, spread.dtype)
  return jnp.all((square <= limit * spread) & (spread < inf))


def shifted_one_pass(x: jax.Array, a: Field, b: Field, *, border: str, mask=None,
                     axis_name=None) -> Stats:
  """`one_pass` with the shifted sums alone, on every backend."""
  k = shift(x, a, mask=mask, axis_name=axis_name)
  return _one_pass_sums(x, k, a, b, border=border, mask=mask, axis_name=axis_name)[0]


def _one_pass_sums(x: jax.Array, k: jax.Array | None, a: Field, b: Field, *, border: str,
                   mask, axis_name) -> tuple[Stats, jax.Array]:
  """`one_pass`'s statistics from the sums of ``x - k`` and ``(x - k)^2`` (of ``x`` and
  ``x^2`` where `k` is None: ``k = 0``), and whether every field has
  ``E_A[x - k]^2 <= PLAIN_LIMIT * var`` with a finite ``T``."""
  dt = stat_dtype(x.dtype)
  pooled = a.pooled
  if mask is not None:  # XLA writes a selected t to memory for the sums: once for both
    ((x1, _),) = widened(x)
    t = select(x1 if k is None else x1 - k, mask)
    s1, s2 = (field_sum(u, pooled, axis_name=axis_name) for u in (t, jnp.square(t)))
  elif k is None:  # x * x: XLA's CPU backend sums squares as fast as x itself
    (x1, _), (x2, _) = widened(x, None, 2)
    s1, s2 = field_sum(x1, pooled), field_sum(x2 * x2, pooled)
  else:
    (x1, k1), (x2, k2) = widened(x, k, 2)
    s1 = field_sum(x1 - k1, pooled, axis_name=axis_name)
    s2 = field_sum(jnp.square(k2 - x2), pooled, axis_name=axis_name)
  if k is None:
    k = jnp.zeros_like(s1)
  n = field_count(x.shape, pooled, mask=mask, axis_name=axis_name, dtype=dt)
  two, zero = np.asarray(2.0, dt), np.zeros((), dt)
  count_b = suppression_count(x.shape, a, b, border=border, mask=mask, axis_name=axis_name,
                              dtype=dt)
  if whole_alone(a, b):
    s1_, s2_, n_, count_b = at_positions((s1, s2, n, count_b), a, x.ndim)
    m = divide_by_count(s1_, n_)
    t = jnp.maximum(s2_ - two * m * s1_ + n_ * m * m, zero)
    return (Stats(k, *expanded((m, divide_by_count(t, count_b)), a), s1),
            _within_limit(n_ * m * m, t))
  m = _mean(s1, k, x.shape, a, border=border, mask=mask, axis_name=axis_name)
  t = jnp.maximum(s2 - two * m * s1 + n * m * m, zero)
  return (Stats(k, m, divide_by_count(window_sum(t, b.windows), count_b), s1),
          _within_limit(n * m * m, t))


def corrected_two_pass(x: jax.Array, a: Field, b: Field, *, border: str, mask=None,
                       axis_name=None) -> Stats:
  """Two passes for windowed fields over equal whole axes W (divisive norm across channels).

  Pass 1 is the plain sum over W: a rough mean ``c`` at every position of the windowed
  axes (its rounding is ~eps |x|). Pass 2 takes ``d = sum_W (x - c)`` (the rounding of
  ``c``: the corrected two-pass algorithm) and ``q = sum_W (x - c)^2`` in one reduce
  (`pooled_sums`). Every position is its own shift, ``k = c``: ``E_A[x] - c_p`` is
  ``(sum_A d + sum_A n (c - c_p)) / count``, the second sum taken from differences of
  neighbours (`_neighbour_differences`), and with ``e = c - E_A[x]``,
  ``sum_W (x - E_A[x])^2 = q + 2 e d + n e^2``: terms of the size of the spread within
  the field, never of an offset, however far the rest of the span lies (a band 1e6 above
  the rest costs it no digits). It takes 0.67-0.71x `two_pass`'s time on these fields,
  forward+backward on one core (``python -m benchmarks.strategies``; BENCHMARKS.md).

  The identity needs one rounding of ``c`` in every use. Under ``jit`` XLA computes
  ``/ n`` as ``* (1 / n)`` and recomputes it inside each consumer, where LLVM may fuse
  the product with the subtraction (an FMA, no rounding): 3e-2 off at offset 1e6.
  `lax.reduce_precision` to one bit less stands between the product and every use: a
  rounding that no fusion can skip.
  """
  dt = stat_dtype(x.dtype)
  pooled = a.pooled
  (x1, _), (x2, _) = widened(x, None, 2)
  n = field_count(x.shape, pooled, mask=mask, axis_name=axis_name, dtype=dt)
  finfo = jnp.finfo(dt)
  c = lax.reduce_precision(divide_by_count(field_sum(x1, pooled, mask=mask, axis_name=axis_name),
                                           n), finfo.nexp, finfo.nmant - 1)
  c = lax.stop_gradient(c)
  if mask is not None:
    c = _fill_empty(c, n, a)
  t = select(x2 - c, mask)
  d, q = pooled_sums(t, jnp.square(t), pooled, axis_name=axis_name)  # t is selected
  m = _mean(d, c, x.shape, a, border=border, mask=mask, axis_name=axis_name,
            differences=_neighbour_differences(c, n, a.windows))
  two = np.asarray(2.0, dt)
  count_b = suppression_count(x.shape, a, b, border=border, mask=mask, axis_name=axis_name,
                              dtype=dt)
  var = divide_by_count(window_sum(q - two * m * d + n * m * m, b.windows), count_b)
  # A copy of c as the shift: `x - c` here and the output's `x - shift` stay two fusions
  # (CSE would make them one array, written to memory for both).
  return Stats(copies(c, 1)[0], m, var, d)


def _fill_empty(c: jax.Array, n, a: Field) -> jax.Array:
  """`c` with a value near the data at positions with no entries (``n = 0``), which the
  paths of `_neighbour_differences` cross. Such a position carries the entries reached
  along the later windowed axes, so it takes the mean of the finite rough means in the
  window of the last axis around it, else of the last two, ..., else of the span: near
  the entries it carries (its rounding does not matter, only its distance to them).
  """
  zero = jnp.zeros((), c.dtype)
  usable = (n > 0) & jnp.isfinite(c)
  k = _span_mean(c, n, a.span)
  weight = jnp.where(usable, n, zero)
  shifted = jnp.where(usable, c - k, zero) * weight
  fill = k
  for first in range(len(a.windows)):  # the longest suffix first: the shortest one wins
    windows = a.windows[first:]
    count = window_sum(weight, windows)
    fill = jnp.where(count > 0, k + divide_by_count(window_sum(shifted, windows), count), fill)
  return jnp.where(n > 0, c, fill)


def _neighbour_differences(c: jax.Array, n, windows) -> jax.Array:
  """`_differences`, with the axes whose padding an Explicit mesh's devices do not divide
  gathered whole for it (`explicit.pads_unevenly`)."""
  split = tuple(axis for axis, width in windows if explicit.pads_unevenly(c, axis, width))
  if not split:
    return _differences(c, n, windows)
  return explicit.sharded_as(_differences(explicit.whole_along(c, split),
                                          explicit.whole_along(n, split), windows), c)


def _differences(c: jax.Array, n, windows) -> jax.Array:
  """``sum_{q in window(p)} n_q (c_q - c_p)`` at every position p, from differences of
  neighbours only, so its rounding is that of the values within the window.

  Along one axis, ``sum_o n_{p+o} (c_{p+o} - c_p)`` is a sum of `width - 1` shifted
  differences. Over several axes the path from ``c_p`` to ``c_q`` runs one axis at a time
  (all of it inside the window): the differences along axis j, weighted by the counts
  summed over the later axes' windows, then summed over the earlier axes' windows. Counts
  known at trace time (no mask) stay NumPy arrays of their own shape: no constant of the
  input's size for XLA to fold.
  """
  total = jnp.zeros_like(c)
  for j in reversed(range(len(windows))):
    axis, width = windows[j]
    if width == 1:  # no neighbours, and the later counts are unchanged
      continue
    r, size = width // 2, c.shape[axis]
    pad = [(0, 0)] * c.ndim
    pad[axis] = (r, r)
    xp = np if isinstance(n, np.ndarray) and not is_symbolic_dim(size) else jnp
    n = xp.broadcast_to(n, n.shape[:axis] + (size,) + n.shape[axis + 1:])
    padded_c, padded_n = jnp.pad(c, pad), xp.pad(n, pad)

    def at(padded, o, axis=axis, size=size):  # the neighbours at offset o - r (basic slicing)
      return padded[(slice(None),) * axis + (slice(o, o + size),)]

    steps = [at(padded_n, o) * (at(padded_c, o) - c) for o in range(width) if o != r]
    total = total + window_sum(functools.reduce(jnp.add, steps), windows[:j])
    n = sum(at(padded_n, o) for o in range(width))  # the window sum of the counts
  return copies(total, 1)[0]  # computed once, not inside each consumer (every channel)


def _span_mean(c, n, span: Field):
  """The shift of `corrected_two_pass`: the mean of the finite rough means `c` (weighted by
  their counts `n`) over the span's axes, under ``stop_gradient``."""
  usable = jnp.isfinite(c) & (n > 0)
  weight = jnp.where(usable, n, jnp.zeros((), c.dtype))
  total = jnp.sum(jnp.where(usable, c, jnp.zeros((), c.dtype)) * weight, axis=span.whole,
                  keepdims=True)
  k = divide_by_count(total, jnp.sum(weight, axis=span.whole, keepdims=True))
  return lax.stop_gradient(k)


POOLS = ("mean", "sum")


def weighted(x: jax.Array, a: WeightedField | None, b: WeightedField, *, border: str,
             mask=None, axis_name=None, alpha=2.0, pool: str = "mean") -> Stats:
  """``E_A[x]`` and ``P_B[|v|^alpha]`` over weighted fields; A None means no centering.

  ``E_A[x]`` is a weighted mean taken around a shift ``k``, the mean of A's span (A's
  windows and kernels widened to whole axes), so large offsets cost no digits. The pool
  is the weighted mean ``E_B`` (``pool="mean"``: the paper's, exact at borders and under
  masks) or the weighted sum (``pool="sum"``: GDN's, zero padded; the weights carry their
  own scale, which a mean would divide away). ``pooled`` is not used by this strategy's
  derivative (JAX's own) and is 0.
  """
  dt = x.dtype
  zero = jnp.zeros((), dt)
  a, b = (WeightedField(f) if isinstance(f, Field) else f for f in (a, b))
  if a is None:
    k = m = zero
  else:
    whole = set(a.base.span.whole) | {axis for axes, _ in a.ops for axis in axes}
    span = WeightedField(a.base.span._replace(whole=tuple(sorted(whole))))
    k = lax.stop_gradient(weighted_mean(x, span, mask=mask, axis_name=axis_name))
    k = jnp.where(jnp.isfinite(k), k, zero)
    # With zero borders the entries past the border are x = 0, i.e. x - k = -k.
    outside = border_weight(x.shape, a, border, dt)
    if axis_name is not None:
      outside = psum(outside, axis_name)
    count = weight_count(x.shape, a, border=border, mask=mask, axis_name=axis_name, dtype=dt)
    m = divide_by_weight(weighted_sum(select(x - k, mask), a, axis_name=axis_name)
                         - k * outside, count)
    m = jnp.where(count > 0, m, -k)  # an empty field's E_A[x] = k + m is 0, not k
  t = abs_power(select((x - k) - m, mask), alpha)
  if pool == "sum":
    p = weighted_sum(select(t, mask), b, axis_name=axis_name)
  else:
    p = weighted_mean(t, b, border=border, mask=mask, axis_name=axis_name)
  return Stats(k, m, p, zero)


def pick_statistics(a: Field | WeightedField | None, b: Field | WeightedField,
                    fast_variance: bool | None, *, alpha=2.0, epsilon=0.5,
                    pool: str = "mean", border: str = "valid", mapped: bool = False) -> Strategy:
  """The strategy for the fields and `fast_variance` (`mapped`: an `axis_name` is given,
  one more whole axis of both fields).

  Boxes (`Field` s) in the paper's formula: `two_pass` (None, False; `corrected_two_pass`
  for windowed fields over equal whole axes) or `one_pass` (True). Weighted fields, no
  centering (A None) or a generalized suppression (`alpha`, `epsilon`, `pool` other than
  2, 1/2, ``"mean"``): `weighted`, with `alpha` and `pool` bound.

  Raises:
    TypeError: `fast_variance` neither None nor a bool.
    ValueError: ``fast_variance=True`` for fields whose one-pass sums are not ``E_B[v^2]``.
  """
  if fast_variance is not None:
    fast_variance = check_bool(fast_variance, "fast_variance")
  boxes = isinstance(a, Field) and isinstance(b, Field)
  paper = (is_concrete(alpha) and np.ndim(alpha) == 0 and float(alpha) == 2.0
           and is_half(epsilon) and pool == "mean")
  if not (boxes and paper):
    if fast_variance:
      raise ValueError(
          "fast_variance=True computes one-pass sums over box fields in the paper's formula; "
          f"these fields or exponents (alpha={alpha}, epsilon={epsilon}, pool={pool!r}, "
          "weighted or uncentered fields) are served by weighted two-pass statistics. Leave "
          "fast_variance=None.")
    if border == "zeros_with_divisor_bug":
      raise ValueError('border="zeros_with_divisor_bug" reproduces a bug of the paper\'s '
                       'code for box windows in its formula only; use "zeros".')
    return functools.partial(weighted, alpha=alpha, pool=pool)
  if not fast_variance:
    windowed = a.windows and a.pooled == b.pooled and (a.whole or a.groups)
    return corrected_two_pass if windowed else two_pass
  if a.whole != b.whole or a.groups != b.groups or not (a.whole or a.groups or mapped):
    raise ValueError(
        "fast_variance=True computes one-pass sums of x and x^2 over the whole axes, which "
        "give E_B[v^2] only when the summation and suppression fields have the same whole "
        f"(and grouped) axes, and at least one (got {a} and {b}); windows may differ. "
        "Leave fast_variance=None (two-pass) for these fields.")
  # With windows in A, `one_pass`'s shift is one value per span, far from some of its
  # fields in data with distant parts; `corrected_two_pass` centers every position.
  return corrected_two_pass if a.windows else one_pass


BOX_STRATEGIES = (two_pass, corrected_two_pass, one_pass)


def moments(x: jax.Array, a: Field, b: Field, *, border: str = "valid", mask=None,
            axis_name=None, fast_variance: bool | None = None) -> Moments:
  """``E_A[x]``, ``E_B[v^2]`` and ``v`` of `x` over resolved fields `a` and `b`.

  Args:
    x: floating input; the statistics are computed in ``stat_dtype(x.dtype)``.
    a, b: the summation and suppression fields (`resolve_field`).
    border: ``"valid"``, ``"zeros"`` or ``"zeros_with_divisor_bug"`` (see `normalize`).
    mask: boolean of `x`'s shape (already checked), or None.
    axis_name: a named axis reduced whole in both fields.
    fast_variance: the strategy (`pick_statistics`).
  """
  x = x.astype(stat_dtype(x.dtype))
  k, m, var, _ = pick_statistics(a, b, fast_variance)(
      x, a, b, border=border, mask=mask, axis_name=axis_name)
  return Moments(k + m, var, select((x - k) - m, mask))
