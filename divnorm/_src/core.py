r"""The unified normalizer of Ren et al. (ICLR 2017).

.. math::
    v = x - E_A[x], \qquad y = \frac{v}{\sqrt{\sigma^2 + E_B[v^2]}}

A is the summation field, B the suppression field, sigma the smoothing term (Flax's
``epsilon`` is ``sigma ** 2``). Batch, layer, instance, group and divisive normalization
are choices of A and B (see `divnorm._src.fields`). Three functions:

- `moments`: the statistics of a field pair, ``E_A[x]`` and ``E_B[v^2]`` (and ``v``);
- `scale`: applies them, ``v / sqrt(sigma^2 + E_B[v^2])``;
- `normalize`: checks the call, resolves the fields once, and composes the two.

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

from divnorm._src import fast
from divnorm._src.checks import check_border, check_input, check_mask, check_sigma
from divnorm._src.fields import Field, FieldSpec, resolve_field
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
    fast_variance: bool | None = None,
) -> Moments:
  """``E_A[x]``, ``E_B[v^2]`` and ``v`` of `x` over resolved fields `a` and `b`.

  Args:
    x: floating input; the statistics are computed in ``stat_dtype(x.dtype)``.
    a, b: the summation and suppression fields (`resolve_field`).
    border: ``"valid"``, ``"zeros"`` or ``"zeros_with_divisor_bug"`` (see `normalize`).
    mask: boolean of `x`'s shape (already checked), or None.
    axis_name: a named axis reduced whole in both fields.
    fast_variance: True takes the one-pass statistics of `divnorm._src.fast`.
  """
  dt = stat_dtype(x.dtype)
  x = x.astype(dt)
  divisor = a if border == "zeros_with_divisor_bug" else b
  count_b = field_count(x.shape, divisor, border=border, mask=mask, axis_name=axis_name,
                        dtype=dt)
  if fast_variance:
    fast.check_fast_variance(a, b)
    mean, var, v = fast.one_pass_moments(x, a, b, count_b, border=border, mask=mask,
                                         axis_name=axis_name)
    return Moments(mean, var, v)
  k = shift(x, a, mask=mask, axis_name=axis_name)
  count_a = field_count(x.shape, a, border=border, mask=mask, axis_name=axis_name, dtype=dt)
  # With zero borders the positions past the border are entries x = 0, i.e. x - k = -k.
  outside = border_count(x.shape, a, border).astype(dt)
  m = divide_by_count(
      field_sum(x - _fresh(k), a, mask=mask, axis_name=axis_name) - k * outside, count_a)
  v, u = _centered(x, k, m)
  var = divide_by_count(field_sum(u * u, b, mask=mask, axis_name=axis_name), count_b)
  return Moments(k + m, var, select(v, mask))


def _centered(x, k, m):
  """``(v, -v)`` with ``v = (x - k) - m``, each recomputed where it is used (`_fresh`).

  ``(k - x) + m`` is exactly ``-v`` (IEEE subtraction is antisymmetric): ``u * u == v * v``.
  """
  c = _fresh((k, m))
  return (x - k) - m, (c[0] - x) + c[1]


def _fresh(stats):
  """`stats` behind an optimization barrier: a value XLA cannot identify with the original.

  Each input-sized expression of the statistics then has one consumer, and XLA's CPU backend
  fuses it into that consumer (a reduction, the output) instead of writing it to memory.
  """
  return lax.optimization_barrier(stats)


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
  (two-pass, around a shift taken from the data), so an offset far larger than the spread
  costs no digits. With local windows it is not a variance and could not be computed as
  ``E[x^2] - E[x]^2`` anyway.

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
    fast_variance: ``None`` (the library default) and ``False``: two-pass statistics,
      accurate at any offset. ``True``: one-pass ``E[x^2] - E[x]^2`` sums, clamped at 0
      (Flax's ``use_fast_variance=True``), for fields whose whole and grouped axes are the
      same in A and B (BN, LN, IN, GN, and divisive norm across channels, whose windows
      may differ); it loses digits when ``|E[x]| >> std(x)``.

  Returns:
    ``y`` with the shape and dtype of `x`, or ``(y, v)`` with `return_centered`.
    Statistics are computed in ``promote_types(x.dtype, float32)``.

  Raises:
    TypeError: integer `x`, non-boolean mask, malformed field.
    ValueError: bad axes or windows; NaN, inf, negative or shape-changing sigma; unknown
      border; mask shape; ``fast_variance=True`` for fields it does not serve.
  """
  x = check_input(x)
  a = resolve_field(summation, x.ndim, role="summation")
  b = a if suppression is None else resolve_field(suppression, x.ndim, role="suppression")
  check_border(border)
  sigma = check_sigma(sigma, stats_shape(x.shape, b))
  mask = check_mask(mask, x.shape)
  mean, var, v = moments(x, a, b, border=border, mask=mask, axis_name=axis_name,
                         fast_variance=fast_variance)
  del mean
  y = select(scale(v, var, sigma), mask)
  if return_centered:
    return y.astype(x.dtype), v.astype(x.dtype)
  return y.astype(x.dtype)


def stats_shape(shape: tuple[int, ...], *fields: Field) -> tuple[int, ...]:
  """The shape of the statistics: `shape` with the fields' whole axes set to 1."""
  whole = {axis for f in fields for axis in f.whole}
  return tuple(1 if axis in whole else n for axis, n in enumerate(shape))
