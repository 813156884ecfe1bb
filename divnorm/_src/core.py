r"""The unified normalizer of Ren et al. (ICLR 2017), `divnorm.normalize`.

.. math::
    v = x - E_A[x], \qquad y = \frac{v}{\sqrt{\sigma^2 + E_B[v^2]}}

`normalize` checks the call (`divnorm._src.checks`), resolves ``summation`` and
``suppression`` into `Field` s, picks a statistics strategy (`divnorm._src.statistics`) and
hands them to `normalized`, which holds the two lines above and their derivative.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from divnorm._src.checks import check_bool, check_border, check_input, check_mask, check_sigma
from divnorm._src.fields import Field, FieldSpec, resolve_field
from divnorm._src.reductions import (
  divide_by_count,
  field_count,
  field_sum,
  select,
  stat_dtype,
  window_sum,
)
from divnorm._src.statistics import (
  Stats,
  Strategy,
  copies,
  inverse_scale,
  pick_statistics,
  scale,
  stats_shape,
  suppression_count,
)


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

  ``E_B[v^2]`` is centered: each position is centered by its own mean ``E_A`` first. With
  local windows it is not a variance and could not be computed as ``E[x^2] - E[x]^2``.
  Both statistics are taken around a shift, one entry of the data per field, so an offset
  far larger than the spread costs no digits (`divnorm._src.statistics`).

  Args:
    x: floating input of any rank.
    summation: field A, ``{axis: None | odd width}`` or a tuple of axes
      (see `divnorm.resolve_field`).
    suppression: field B; None means the same as `summation`.
    sigma: smoothing term (``sigma ** 2`` is Flax's ``epsilon``): finite and >= 0, a
      float or an array (e.g. a learned parameter) that broadcasts to the statistics'
      shape (`x`'s shape with A and B's whole axes set to 1).
    border: ``"valid"`` (default) averages only the entries that exist;
      ``"zeros"`` reproduces the paper's TensorFlow code (zero padding, division by the
      full window); ``"zeros_with_divisor_bug"`` also reproduces that code's division of
      the suppression sum by the summation window's size (differs from ``"zeros"`` only
      when the windows differ).
    mask: boolean, broadcastable to `x`; statistics use only entries where it is True,
      whatever the others hold (NaN and inf included). Masked-out outputs (and centered
      values) are 0, with zero gradient.
    axis_name: treat this named axis (``jax.shard_map``, ``vmap(axis_name=...)``) as one
      more whole axis of both fields. Under plain ``jit`` with a sharded input, XLA
      computes global statistics by itself: no argument is needed.
    return_centered: also return ``v`` (e.g. for `divnorm.l1_penalty`).
    fast_variance: ``None`` (the library default) and ``False``: two-pass statistics
      (`statistics.two_pass`; `statistics.corrected_two_pass` for windowed fields over the
      same whole axes). ``True`` (Flax's ``use_fast_variance=True``): one-pass sums
      (`statistics.one_pass`), which read `x` once for both statistics, for fields whose
      whole and grouped axes are the same in A and B (BN, LN, IN, GN, and divisive norm
      across channels, whose windows may differ). Both keep float32 accuracy at large
      offsets: measured error against float64 at offsets 0, 1e4 and 1e6 (unit spread, every
      preset) at most 9.5e-7 two-pass and 6.5e-6 one-pass, where Flax's one-pass is off
      by 40 at 1e4 (``python -m benchmarks.numerics``; README, "Numerics").

  Returns:
    ``y`` with the shape and dtype of `x`, or ``(y, v)`` with `return_centered`.
    Statistics are computed in ``promote_types(x.dtype, float32)``.

  Range: the offset costs nothing (the shift takes it out before anything is squared), but
  the squares of the centered values are summed in the statistics dtype: in float32 a
  field of ``n`` entries holds a spread ``|x - E_A[x]|`` up to about ``1.8e19 / sqrt(n)``
  (1e17 for 32768 entries). Beyond it the statistics overflow and `y` is NaN, never a
  silent 0; scale such inputs down by a power of two first (exact, and ``y`` is unchanged
  when sigma is scaled with them).

  Raises:
    TypeError: integer `x`, non-boolean mask, malformed field, a non-bool flag.
    ValueError: bad axes or windows; NaN, inf, negative or shape-changing sigma; unknown
      border; mask shape; ``fast_variance=True`` for fields it does not serve.
  """
  x = check_input(x)
  a = resolve_field(summation, x.ndim, role="summation")
  b = a if suppression is None else resolve_field(suppression, x.ndim, role="suppression")
  check_border(border)
  sigma = check_sigma(sigma, stats_shape(x.shape, b))
  mask = check_mask(mask, x.shape)
  return_centered = check_bool(return_centered, "return_centered")
  dt = stat_dtype(x.dtype)
  y, v, _ = normalized(x.astype(dt), jnp.asarray(sigma, dt), mask,
                       pick_statistics(a, b, fast_variance), a, b, border, axis_name)
  if return_centered:
    return y.astype(x.dtype), v.astype(x.dtype)
  return y.astype(x.dtype)


@functools.partial(jax.custom_jvp, nondiff_argnums=(3, 4, 5, 6, 7))
def normalized(x: jax.Array, sigma: jax.Array, mask: jax.Array | None, statistics: Strategy,
               a: Field, b: Field, border: str, axis_name) -> tuple[jax.Array, jax.Array, Stats]:
  """``(y, v, Stats)`` of checked `x`, in the statistics dtype, over resolved fields.

  ``E_A[x] = stats.shift + stats.mean``. The derivative is written out below.
  """
  stats = statistics(x, a, b, border=border, mask=mask, axis_name=axis_name)
  v = select((x - stats.shift) - stats.mean, mask)  # v = x - E_A[x]
  y = select(scale(v, stats.var, sigma), mask)  # y = v / sqrt(sigma^2 + E_B[v^2])
  return y, v, stats


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
  x, sigma, mask = primals
  dx, dsigma, _ = tangents
  y, v, stats = normalized(x, sigma, mask, statistics, a, b, border, axis_name)
  k, m = stats.shift, stats.mean
  dt = x.dtype
  count_a = field_count(x.shape, a, border=border, mask=mask, axis_name=axis_name, dtype=dt)
  count_b = suppression_count(x.shape, a, b, border=border, mask=mask, axis_name=axis_name,
                              dtype=dt)
  two = np.asarray(2.0, dt)
  r = inverse_scale(stats.var, sigma)

  def dr_of(dvar):  # d r = -r^3 (dE_B[v^2] + 2 sigma dsigma) / 2
    return np.asarray(-0.5, dt) * r * r * r * (dvar + two * sigma * dsigma)

  pooled = a.pooled
  dx_w = field_sum(dx, pooled, mask=mask, axis_name=axis_name)
  dmean = divide_by_count(window_sum(dx_w, a.windows), count_a)
  if (a.windows or b.windows) and pooled == b.pooled:
    # Divisive norm across channels: m varies along the windowed axes but is constant
    # over the whole axes W, so sums over W of m * t are m times sums of t: only
    # u * dx = (x - k) * dx is summed at the input's size, and sum_W v = sum_W u - n m
    # comes from the statistics.
    u = [select(x - c, mask) for c in copies(k, 2)]
    n = field_count(x.shape, pooled, mask=mask, axis_name=axis_name, dtype=dt)
    t = (field_sum(u[0] * dx, pooled, mask=mask, axis_name=axis_name) - m * dx_w
         - dmean * (stats.pooled - n * m))
    dvar = two * divide_by_count(window_sum(t, b.windows), count_b)
    dr = dr_of(dvar)
    dy = dx * r + u[1] * dr - (dmean * r + m * dr)
  else:
    centered = [select((x - c) - d, mask) for c, d in copies((k, m), 3)]
    dvar = two * divide_by_count(field_sum(centered[0] * dx, b, mask=mask, axis_name=axis_name),
                                 count_b)
    # - 2 E_B[v dE_A[x]]. With A == B and no windows it is 2 dE_A[x] E_A[v], and E_A[v] is
    # 0 up to the rounding of the mean (~eps * std): below the float32 rounding of dvar.
    if a != b:
      dvar = dvar - two * divide_by_count(
          field_sum(centered[1] * dmean, b, mask=mask, axis_name=axis_name), count_b)
    dy = dx * r - dmean * r + centered[2] * dr_of(dvar)
  dy = select(dy, mask)
  dv = select(dx - dmean, mask)
  return (y, v, stats), (dy, dv, Stats(jnp.zeros_like(k), dmean, dvar, dx_w))
