r"""The statistics of the unified normalizer of Ren et al. (ICLR 2017), and their use.

.. math::
    v = x - E_A[x], \qquad y = \frac{v}{\sqrt{\sigma^2 + E_B[v^2]}}

A is the summation field, B the suppression field, sigma the smoothing term (Flax's
``epsilon`` is ``sigma ** 2``). Batch, layer, instance, group and divisive normalization
are choices of A and B (see `divnorm._src.fields`). Two functions hold the paper:

- `moments`: the statistics of a field pair, ``E_A[x]`` and ``E_B[v^2]`` (and ``v``);
- `scale`: applies them, ``v / sqrt(sigma^2 + E_B[v^2])``.

`divnorm.normalize` (`divnorm._src.core`) checks the call, resolves the fields once and
composes the two; `divnorm._src.fast` holds the optional speed paths.

How `moments` stays exact at the edges:

- A mask selects (`reductions.select`) before any arithmetic, so nothing outside it, NaN
  and inf included, reaches a sum.
- ``E_A[x]`` is computed around a shift ``k`` (`shift`): ``E_A[x] = k + E_A[x - k]`` for any
  ``k`` constant over every field of A, and the sums of ``x - k`` lose far less to rounding
  when ``|E[x]| >> std(x)``. ``k`` is the mean of the finite, masked-in entries of A's span
  (A with its windows widened to whole axes), so it is a value of the data, never an entry
  outside the mask, and a NaN or inf somewhere cannot spread through it. With whole fields
  this is the corrected two-pass algorithm (``k`` the plain mean, ``E_A[x - k]`` its
  correction). ``v = (x - k) - E_A[x - k]`` keeps the digits of that small correction: at
  an offset of 1e4 (std 1, float32) divisive norm across channels and layer norm stay
  within ~1e-6 of float64.
- ``k`` is under ``stop_gradient``: the result does not depend on it, only its rounding.
- An empty field (count 0, e.g. all masked out) gives statistics 0, never NaN.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from divnorm._src.fields import Field
from divnorm._src.reductions import (
    border_count,
    divide_by_count,
    field_count,
    field_sum,
    select,
    stat_dtype,
)


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


def variance_floor(dtype) -> float:
  """A floor added to ``sigma^2 + E_B[v^2]``: ``finfo(dtype).tiny ** (1/3)``.

  About 2e-13 in float32 and 3e-103 in float64: far below any variance that carries
  information, yet large enough that ``rsqrt`` and its derivatives stay finite, so a
  constant field gives ``y = 0`` with finite gradients even at ``sigma = 0``.
  """
  return float(np.finfo(dtype).tiny) ** (1.0 / 3.0)


def inverse_scale(var: jax.Array, sigma, dt=None) -> jax.Array:
  """``1 / sqrt(sigma^2 + var)`` in `dt` (default: var's dtype), finite at ``var = sigma = 0``."""
  dt = var.dtype if dt is None else dt
  return lax.rsqrt(var + jnp.square(jnp.asarray(sigma, dt)) + np.asarray(variance_floor(dt), dt))


def scale(v: jax.Array, var: jax.Array, sigma) -> jax.Array:
  """``v / sqrt(sigma^2 + var)``: applies the statistics, in the dtype of `v`."""
  return v * inverse_scale(var, sigma, v.dtype)


def shift(x: jax.Array, a: Field, *, mask=None, axis_name=None) -> jax.Array:
  """``k``: a value of the data, constant over every field of A (0 where none is finite).

  The mean of each span of A (A with its windows widened to whole axes), of its
  masked-in entries. ``E_A[x] = k + E_A[x - k]`` exactly for any such ``k``; only the
  rounding of the sums depends on it. A span holding a NaN or inf gets ``k = 0``: its
  positions lose the shift's accuracy at large offsets, and the non-finite entry reaches
  no output whose fields do not hold it. (Selecting the finite entries instead would cost
  XLA's CPU backend two input-sized temporaries.)
  """
  span = a.span
  total = field_sum(x, span, mask=mask, axis_name=axis_name)
  count = field_count(x.shape, span, mask=mask, axis_name=axis_name, dtype=x.dtype)
  k = divide_by_count(total, count)
  return lax.stop_gradient(jnp.where(jnp.isfinite(k), k, jnp.zeros((), k.dtype)))


def moments(
    x: jax.Array,
    a: Field,
    b: Field,
    *,
    border: str = "valid",
    mask: jax.Array | None = None,
    axis_name=None,
) -> Moments:
  """``E_A[x]``, ``E_B[v^2]`` and ``v`` of `x` over resolved fields `a` and `b` (two-pass).

  Args:
    x: floating input; the statistics are computed in ``stat_dtype(x.dtype)``.
    a, b: the summation and suppression fields (`resolve_field`).
    border: ``"valid"``, ``"zeros"`` or ``"zeros_with_divisor_bug"`` (see `normalize`).
    mask: boolean of `x`'s shape (already checked), or None.
    axis_name: a named axis reduced whole in both fields.
  """
  x = x.astype(stat_dtype(x.dtype))
  k, m, var = centered_moments(x, a, b, border=border, mask=mask, axis_name=axis_name)
  return Moments(k + m, var, select(centered(x, k, m)[0], mask))


def suppression_count(shape, a: Field, b: Field, *, border: str, mask=None, axis_name=None,
                      dtype=np.float32):
  """The divisor of ``E_B[v^2]``: B's count (A's with ``"zeros_with_divisor_bug"``, which
  reproduces the reference code's division by the summation window's size)."""
  divisor = a if border == "zeros_with_divisor_bug" else b
  return field_count(shape, divisor, border=border, mask=mask, axis_name=axis_name,
                     dtype=dtype)


def centered_moments(x, a: Field, b: Field, *, border: str, mask=None, axis_name=None):
  """``(k, m, var)``: ``E_A[x] = k + m`` (`shift` and the mean of ``x - k``), ``E_B[v^2]``.

  `x` is in the statistics dtype. ``v = (x - k) - m`` (`centered`) keeps the digits of the
  small ``m`` where ``k + m`` would round them away.
  """
  dt = x.dtype
  k = shift(x, a, mask=mask, axis_name=axis_name)
  count_a = field_count(x.shape, a, border=border, mask=mask, axis_name=axis_name, dtype=dt)
  # With zero borders the positions past the border are entries x = 0, i.e. x - k = -k.
  outside = border_count(x.shape, a, border).astype(dt)
  m = divide_by_count(
      field_sum(x - fresh(k), a, mask=mask, axis_name=axis_name) - k * outside, count_a)
  u = centered(x, k, m)[1]
  count_b = suppression_count(x.shape, a, b, border=border, mask=mask, axis_name=axis_name,
                              dtype=dt)
  var = divide_by_count(field_sum(u * u, b, mask=mask, axis_name=axis_name), count_b)
  return k, m, var


def centered(x, k, m):
  """``(v, -v)`` with ``v = (x - k) - m``, each recomputed where it is used (`fresh`).

  ``(k - x) + m`` is exactly ``-v`` (IEEE subtraction is antisymmetric): ``u * u == v * v``.
  """
  c = fresh((k, m))
  return (x - k) - m, (c[0] - x) + c[1]


def fresh(stats):
  """`stats` behind an optimization barrier: a value XLA cannot identify with the original.

  Each input-sized expression of the statistics then has one consumer, and XLA's CPU backend
  fuses it into that consumer (a reduction, the output) instead of writing it to memory.
  """
  return lax.optimization_barrier(stats)


def stats_shape(shape: tuple[int, ...], *fields: Field) -> tuple[int, ...]:
  """The shape of the statistics: `shape` with the fields' whole axes set to 1."""
  whole = {axis for f in fields for axis in f.whole}
  return tuple(1 if axis in whole else n for axis, n in enumerate(shape))
