r"""The unified formula with weighted fields and a generalized suppression.

.. math::
    v = x - E_A[x], \qquad y = v \,\bigl(\sigma^2 + P_B[|v|^\alpha]\bigr)^{-\epsilon}

With box fields, ``alpha = 2``, ``epsilon = 1/2`` and ``P_B = E_B`` (a mean) this is the
paper's formula. The families of divisive normalization around it change one piece each:

- weighted fields A and B (`divnorm._src.weighted_fields`): Gaussian, exponential and
  centre-surround windows, given or learned kernels, channel mixings;
- ``P_B`` a weighted *sum* (``pool="sum"``): GDN's ``sum_j gamma_ij |x_j|^alpha``, whose
  weights carry their own scale, where a mean would divide it away;
- the exponents ``alpha`` and ``epsilon``, fixed or learned; ``epsilon < 0`` multiplies by
  the pool instead of dividing (IGDN);
- no centering (``summation=None``: ``v = x``), as in GDN and every V1 model.

``sigma`` may be an array (per channel: GDN's ``beta = sigma^2``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from divnorm._src.checks import check_border, check_input, check_mask, check_sigma, is_concrete
from divnorm._src.reductions import select, stat_dtype
from divnorm._src.statistics import variance_floor
from divnorm._src.weighted_fields import (
  WeightedField,
  border_weight,
  divide_by_weight,
  resolve_weighted_field,
  weight_count,
  weighted_mean,
  weighted_sum,
)

POOLS = ("mean", "sum")


class PooledMoments(NamedTuple):
  """``E_A[x]`` (0 without centering), ``P_B[|v|^alpha]`` and ``v``, in the statistics dtype."""

  mean: jax.Array
  pool: jax.Array
  v: jax.Array


def abs_power(v: jax.Array, alpha) -> jax.Array:
  """``|v|^alpha``, with finite values and gradients at ``v = 0`` for a learned `alpha`."""
  if is_concrete(alpha) and np.ndim(alpha) == 0:
    if float(alpha) == 2.0:
      return v * v
    if float(alpha) == 1.0:
      return jnp.abs(v)
  a = jnp.abs(v)
  positive = a > 0
  safe = jnp.where(positive, a, jnp.ones((), a.dtype))
  alpha = jnp.asarray(alpha).astype(a.dtype)
  return jnp.where(positive, jnp.exp(alpha * jnp.log(safe)), jnp.zeros((), a.dtype))


def power_scale(v: jax.Array, denominator: jax.Array, epsilon) -> jax.Array:
  """``v * denominator^(-epsilon)``, finite (with its gradients) at a zero denominator.

  The denominator gets the floor of `statistics.variance_floor`, as in `normalize`.
  """
  dt = v.dtype
  d = denominator + np.asarray(variance_floor(dt), dt)
  if is_concrete(epsilon) and np.ndim(epsilon) == 0:
    e = float(epsilon)
    special = {0.5: lax.rsqrt, -0.5: jnp.sqrt, 1.0: lambda d: 1.0 / d, -1.0: lambda d: d}
    if e in special:
      return v * special[e](d).astype(dt)
  return v * jnp.exp(-jnp.asarray(epsilon).astype(dt) * jnp.log(d))


def pooled_moments(x: jax.Array, a: WeightedField | None, b: WeightedField, *, alpha=2.0,
                   pool: str = "mean", border: str = "valid", mask=None,
                   axis_name=None) -> PooledMoments:
  """The statistics of the generalized formula for resolved fields (None: no centering).

  ``E_A[x]`` is taken around a shift ``k``, the mean of A's span (A's windows and kernels
  widened to whole axes), so large offsets cost no digits (as `statistics.moments`).
  """
  x = x.astype(stat_dtype(x.dtype))
  if a is None:
    mean = jnp.zeros((), x.dtype)
    v = select(x, mask)
  else:
    span = WeightedField(a.base.span._replace(
        whole=tuple(sorted(set(a.base.span.whole) | {ax for axes, _ in a.ops for ax in axes}))))
    k = lax.stop_gradient(weighted_mean(x, span, mask=mask, axis_name=axis_name))
    k = jnp.where(jnp.isfinite(k), k, jnp.zeros((), x.dtype))
    # With zero borders the entries past the border are x = 0, i.e. x - k = -k.
    count = weight_count(x.shape, a, border=border, mask=mask, axis_name=axis_name,
                         dtype=x.dtype)
    outside = border_weight(x.shape, a, border, x.dtype)
    if axis_name is not None:
      outside = lax.psum(outside, axis_name)
    m = divide_by_weight(weighted_sum(select(x - k, mask), a, axis_name=axis_name)
                         - k * outside, count)
    mean = k + m
    v = select((x - k) - m, mask)
  t = abs_power(v, alpha)
  if pool == "sum":
    p = weighted_sum(select(t, mask), b, axis_name=axis_name)
  else:
    p = weighted_mean(t, b, border=border, mask=mask, axis_name=axis_name)
  return PooledMoments(mean, p, v)


def _stats_shape(shape, *fields) -> tuple[int, ...]:
  whole = {axis for f in fields if f is not None for axis in f.base.whole}
  return tuple(1 if axis in whole else n for axis, n in enumerate(shape))


def weighted_normalize(
    x: jax.Array,
    summation,
    suppression=None,
    *,
    sigma=0.0,
    alpha=2.0,
    epsilon=0.5,
    pool: str = "mean",
    border: str = "valid",
    mask: jax.Array | None = None,
    axis_name=None,
    return_centered: bool = False,
):
  r"""``y = v (sigma^2 + P_B[|v|^alpha])^(-epsilon)``, ``v = x - E_A[x]``, weighted fields.

  Args:
    x: floating input.
    summation: field A (`divnorm.resolve_field`'s specs, plus kernels and mixings:
      see `divnorm._src.weighted_fields`), or None for no centering (``v = x``).
    suppression: field B; None means the same as `summation`.
    sigma: ``sigma^2`` is added to the pool; a float or an array broadcastable to the
      statistics' shape (e.g. per channel).
    alpha: exponent of ``|v|`` in the pool (2: the paper), fixed or learned (> 0).
    epsilon: exponent of the pool (1/2: the paper); negative multiplies by the pool.
    pool: ``"mean"`` (``E_B``, the paper) or ``"sum"`` (GDN's weighted sum, zero
      padded: the kernels' weights carry their own scale).
    border: ``"valid"`` or ``"zeros"``, for the means (see `divnorm.normalize`).
    mask, axis_name, return_centered: as in `divnorm.normalize`.
  """
  x = check_input(x)
  check_border(border)
  if border == "zeros_with_divisor_bug":
    raise ValueError(
        'border="zeros_with_divisor_bug" reproduces a bug of box windows only; use "zeros".')
  if pool not in POOLS:
    raise ValueError(f"pool={pool!r} is not a pool; use one of {POOLS}.")
  if is_concrete(alpha) and np.any(np.asarray(alpha) <= 0):
    raise ValueError(f"alpha={alpha} must be > 0 (the exponent of |v| in the pool).")
  a = None if summation is None else resolve_weighted_field(summation, x.shape, role="summation")
  if suppression is None and a is None:
    raise ValueError("without centering (summation=None) give the suppression field.")
  b = a if suppression is None else resolve_weighted_field(suppression, x.shape,
                                                           role="suppression")
  sigma = check_sigma(sigma, _stats_shape(x.shape, a, b))
  mask = check_mask(mask, x.shape)
  stats = pooled_moments(x, a, b, alpha=alpha, pool=pool, border=border, mask=mask,
                         axis_name=axis_name)
  dt = stats.v.dtype
  y = select(power_scale(stats.v, stats.pool + jnp.square(jnp.asarray(sigma, dt)), epsilon),
             mask)
  if return_centered:
    return y.astype(x.dtype), stats.v.astype(x.dtype)
  return y.astype(x.dtype)
