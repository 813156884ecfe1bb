"""Sums, counts and means over fields: whole axes, local windows, masks and collectives.

Masks select: an entry outside the mask is replaced by zero with ``jnp.where`` before any
arithmetic touches it, so a NaN or inf there (``NaN * 0`` is NaN) cannot reach a sum.

Local sums are separable: one 1-D ``lax.reduce_window`` per windowed axis. That form is
differentiable (its gradient is another window sum) and measured fastest and most accurate
on CPU: divisive norm 5x5 on 100x32x32x32, forward+backward, took 1.3x its time with a 2-D
``reduce_window``, 1.5x with cumulative sums (summed-area tables, which also lost 25-50x
precision in float32) and 3.4x with a depthwise convolution (BENCHMARKS.md, "Window sums").
One exception earns its lines: a window at least a fifth as wide as a short minor axis (the
RNN's width 61 over 128 units) is a product with a banded 0/1 matrix, 0.4-1.0x the
reduce_window's time there (BENCHMARKS.md, "Window sums along a short minor axis").

Border handling (``border``):
  - ``"valid"``: a window at the border averages only the entries that exist.
  - ``"zeros"``: the paper's TensorFlow code: zero padding, division by the full window.
    Positions outside the input count as entries of value zero, so border statistics are
    pulled toward zero (badly when the data has a mean offset).
  - ``"zeros_with_divisor_bug"``: as ``"zeros"``; only `normalize` treats it differently
    (see there).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Hashable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.export import is_symbolic_dim
from jax.typing import ArrayLike

from divnorm._src import explicit
from divnorm._src.checks import check_axis_name, check_border, check_input, check_mask
from divnorm._src.fields import Field, FieldSpec, check_tiles, resolve_field


@dataclasses.dataclass(frozen=True)
class DeviceGroups:
  """A mapped axis whose collectives sum within groups of its members: flax's
  ``axis_index_groups``, which JAX supports under ``pmap`` only. Every `axis_name` of the
  statistics may be one."""

  axis_name: Hashable
  groups: tuple[tuple[int, ...], ...]


def psum(x, axis_name):
  """`lax.psum` of `x` over the named axis, or within each of its `DeviceGroups`."""
  if isinstance(axis_name, DeviceGroups):
    return lax.psum(x, check_axis_name(axis_name.axis_name), axis_index_groups=axis_name.groups)
  return lax.psum(x, check_axis_name(axis_name))


def stat_dtype(dtype) -> np.dtype:
  """The dtype statistics are computed in: `dtype` promoted to at least float32.

  Computed under standard promotion rules, so callers who set strict promotion still work.
  """
  with jax.numpy_dtype_promotion("standard"):
    return np.dtype(jnp.promote_types(dtype, jnp.float32))


def window_sum(x: ArrayLike, windows: Sequence[tuple[int, int]]) -> jax.Array:
  """Sums `x` over centered windows, zero padded, one 1-D window per axis.

  Args:
    x: any numeric array.
    windows: ``(axis, odd width)`` pairs.

  Returns:
    An array of the shape of `x`; entry ``i`` is the sum of the entries of `x` within
    ``width // 2`` of ``i`` along every windowed axis.

  Raises:
    TypeError, ValueError: `x` not numeric, `windows` not pairs, an axis out of range or
      twice, a width not odd and positive.
  """
  try:
    x = jnp.asarray(x)
  except (TypeError, ValueError):
    raise TypeError(f"window_sum: x={x!r:.60} is not an array; pass a jax or NumPy array.") \
        from None
  if x.dtype == bool:
    raise TypeError("window_sum: x is boolean, which has no sums; count with "
                    "x.astype(jnp.int32) or sum x.astype(jnp.float32).")
  pairs = tuple(windows) if isinstance(windows, list | tuple) else None
  if pairs is None or not all(isinstance(p, list | tuple) and len(p) == 2 for p in pairs):
    raise TypeError(f"window_sum: windows={windows!r:.80} must be a sequence of (axis, width) "
                    f"pairs, e.g. ((1, 5), (2, 5)) for 5x5 windows over axes 1 and 2.")
  if any(width is None for _, width in pairs):
    raise ValueError(f"window_sum: windows={windows!r:.80} gives a width of None (a whole "
                     f"axis); window_sum sums windows only: give each axis an odd width.")
  checked = resolve_field(dict(pairs), x.ndim, role="window_sum")
  if len(checked.windows) != len(pairs):
    raise ValueError(f"window_sum: windows={windows!r} name an axis twice; give each axis "
                     f"one (axis, width) pair.")
  for axis, width in checked.windows:
    if width == 1:
      continue
    # Under an Explicit mesh, a padded axis its devices do not divide, summed whole.
    x = explicit.whole_while(functools.partial(_windows_along, axis=axis, width=width), x,
                             (axis,), explicit.pads_unevenly(x, axis, width))
  return x


def _windows_along(x: jax.Array, axis: int, width: int) -> jax.Array:
  """`window_sum` along one axis."""
  if _banded_pays(x, axis, width):
    return _banded_window_sum(x, width)
  dims = [1] * x.ndim
  dims[axis] = width
  padding = [(0, 0)] * x.ndim
  padding[axis] = (width // 2, width // 2)
  return lax.reduce_window(x, np.zeros((), x.dtype), lax.add, dims, (1,) * x.ndim, padding)


def _banded_pays(x: jax.Array, axis: int, width: int) -> bool:
  """Whether the window along `axis` is summed faster as a banded matrix product.

  Measured on CPU (`python -m benchmarks.strategies`): a reduce_window costs about
  rows x n x width, the product rows x n x n at BLAS speed; the product wins once the width
  reaches a fifth of a minor axis of 32 to 1024 entries. Floating types of at least 32 bits
  only, so that the product accumulates as the reduce_window does.
  """
  n = x.shape[axis]
  return (axis == x.ndim - 1 and not is_symbolic_dim(n) and 5 * width >= n and 32 <= n <= 1024
          and x.dtype in (np.dtype(np.float32), np.dtype(np.float64)))


def _banded_window_sum(x: jax.Array, width: int) -> jax.Array:
  """`window_sum` along the last axis as ``x @ band``, band[i, j] = 1 where |i - j| <= width // 2.

  The band is symmetric, so the gradient is a product with the same band. HIGHEST precision
  keeps accelerators from rounding the operands to bfloat16. A NaN or inf reaches the whole
  row (``0 * NaN`` is NaN), not only the windows that hold it. A guard that sent such an
  input to the reduce_window (``lax.cond`` on its sum being finite) cost 1.04-1.20x the
  product's time, and JAX cannot transpose it where a custom JVP sums tangents with it.
  """
  n = x.shape[-1]
  rows = lax.broadcasted_iota(np.int32, (n, n), 0)
  cols = lax.broadcasted_iota(np.int32, (n, n), 1)
  band = (jnp.abs(rows - cols) <= width // 2).astype(x.dtype)
  return jnp.matmul(x, band, precision=lax.Precision.HIGHEST)


def in_bounds(size: int, width: int) -> np.ndarray | jax.Array:
  """How many entries of an axis of `size` fall in the centered window at each position
  (a jax.Array where `size` is symbolic, as in ``jax.export``)."""
  xp = jnp if is_symbolic_dim(size) else np
  p = xp.arange(size)
  h = width // 2
  return xp.minimum(p + h, size - 1) - xp.maximum(p - h, 0) + 1


def _window_counts(shape: tuple[int, ...], field: Field) -> np.ndarray:
  """Product over windowed axes of the in-bounds counts, broadcastable to `shape`."""
  counts = np.ones((1,) * len(shape))
  for axis, width in field.windows:
    bshape = [1] * len(shape)
    bshape[axis] = shape[axis]
    counts = counts * in_bounds(shape[axis], width).reshape(bshape)
  return counts


def group_sum(t: jax.Array, groups: tuple[tuple[int, int], ...]) -> jax.Array:
  """Sums `t` within contiguous groups of ``size`` entries along each ``(axis, size)``.

  The result has the shape of `t`: every entry holds its group's sum. `t` is usually a
  statistic (the input's whole axes already reduced to size 1). Along its last axis
  (channels last) the groups are summed over the ``[..., n / size, size]`` view and sent back
  to their entries by the outer product with a vector of ones: a dot, which XLA's CPU
  backend keeps apart from the input's sums and the output. Broadcasting back instead let
  it fuse group norm's derivative into one YNNPACK kernel, 1.15-1.17x slower on 128x32x32x64
  (``python -m benchmarks.strategies``). Summing into the groups by a product with the ones
  as well (before 2026-12-07) took the same time, and a training step of 20 GroupNorm
  blocks compiled in 4.4x flax's time, against 2.5x now (``python -m
  benchmarks.trace_time``; BENCHMARKS.md, "Group norm's compile time"). Every sum stays
  within a group, so a NaN or inf in one group reaches no other: the 0/1 membership matrix
  ``[n, n / size]`` used before spread it to every group (``0 * NaN``; BENCHMARKS.md, "Sums
  without a shift where the mean is near 0"). Both layouts sum with `jnp.sum`, which widens
  integer and boolean `t` (every caller passes floating statistics).

  Along an earlier axis (channels first, as ``group_norm(channel_axis=1)`` and equinox's
  ``GroupNorm`` under ``vmap`` have them), XLA's CPU backend miscompiled the membership
  matmuls. It fused the sums over the input's minor axes, the two matmuls and the output
  into one YNNPACK kernel whose result was wrong: group norm's gradient on 8x768x512 was off
  by up to 0.07 where its entries reach 5, and took 5.7x equinox's time. There the groups are
  summed over the ``[..., n / size, size]`` view and gathered back to their entries. The
  gather (a scatter-add in the gradient) is no YNNPACK operation, so the sums and the
  output stay apart (``tests/test_grouped_fields.py``; BENCHMARKS.md, "Group sums:
  wrong gradients from XLA").
  """
  for axis, size in groups:
    if size == 1:
      continue  # every entry is its own group
    # Under an Explicit mesh whose devices hold parts of a group, summed with the axis whole.
    t = explicit.whole_while(functools.partial(_within_groups, axis=axis, size=size), t,
                             (axis,), explicit.splits_groups(t, axis, size))
  return t


def _within_groups(t: jax.Array, axis: int, size: int) -> jax.Array:
  """`group_sum` along one axis."""
  n = t.shape[axis]
  # summed over the [..., n / size, size, ...] view
  s = jnp.sum(t.reshape(t.shape[:axis] + (n // size, size) + t.shape[axis + 1:]),
              axis=axis + 1)
  if axis == t.ndim - 1:  # back to the entries by the outer product with a vector of ones
    ones = jnp.ones((size,), t.dtype)
    return lax.dot_general(s[..., None], ones[None], (((axis + 1,), (0,)), ((), ())),
                           precision=lax.Precision.HIGHEST).reshape(t.shape)
  return jnp.take(s, np.arange(n) // size, axis=axis, mode="clip")  # each entry's gathered


def group_min(t: jax.Array, groups: tuple[tuple[int, int], ...]) -> jax.Array:
  """The minimum of `t` within contiguous groups of ``size`` entries along each
  ``(axis, size)``, in every entry of the group (`group_sum`'s shape)."""
  for axis, size in groups:
    n = t.shape[axis]
    split = t.shape[:axis] + (n // size, size) + t.shape[axis + 1:]
    s = jnp.min(t.reshape(split), axis=axis + 1, keepdims=True)
    t = jnp.broadcast_to(s, split).reshape(t.shape)
  return t


def select(t: jax.Array, mask: jax.Array | None) -> jax.Array:
  """`t` where `mask` is True and 0 elsewhere (a select: NaN or inf outside stays outside)."""
  if mask is None:
    return t
  return jnp.where(mask, t, np.zeros((), t.dtype))


def field_sum(t: jax.Array, field: Field, *, mask=None, axis_name=None) -> jax.Array:
  """Sums `t` over `field` (whole axes kept as size 1), zero outside the input.

  Entries outside `mask` (boolean, `t`'s shape) are selected away first. Whole axes are
  reduced first, in `t`'s own layout, so that groups and windows work on the small result.
  """
  t = select(t, mask)
  s = jnp.sum(t, axis=field.whole, keepdims=True) if field.whole else t
  s = group_sum(s, field.groups)
  s = window_sum(s, field.windows)
  if axis_name is not None:
    s = psum(s, axis_name)
  return s


def pooled_sums(t: jax.Array, u: jax.Array, field: Field, *, mask=None,
                axis_name=None) -> tuple[jax.Array, jax.Array]:
  """``(sum t, sum u)`` over the whole and grouped axes of `field` by one two-output reduce.

  XLA's CPU backend then reads the input once. For short sums at many positions (over the
  channels at every pixel, as divisive norm takes them) that takes 0.35-0.86x the time of
  two reductions; for long sums (whole images, a batch) up to 4x, and `field_sum` of each
  is the faster way (``python -m benchmarks.strategies``; BENCHMARKS.md, issue 21).
  """
  t, u = select(t, mask), select(u, mask)
  if field.whole:
    shape = tuple(1 if a in field.whole else n for a, n in enumerate(t.shape))
    zero = np.zeros((), t.dtype)
    t, u = lax.reduce((t, u), (zero, zero), lambda p, q: (p[0] + q[0], p[1] + q[1]),
                      field.whole)
    t, u = t.reshape(shape), u.reshape(shape)
  t, u = group_sum(t, field.groups), group_sum(u, field.groups)
  if axis_name is not None:
    t, u = psum((t, u), axis_name)
  return t, u


def border_count(shape: tuple[int, ...], field: Field, border: str, *, axis_name=None,
                 dtype=np.float32):
  """How many positions past the input's border each field counts as zeros.

  0 for ``border="valid"``; for the zero modes, the full field's size minus the entries
  that exist (the zero padding the paper's code divides by). With `axis_name`, every
  member of the mapped axis (a whole axis of the field) has its own such positions.
  """
  if border == "valid" or not field.windows:
    return np.zeros((1,) * len(shape), dtype)
  whole = math.prod(shape[a] for a in field.whole) * math.prod(n for _, n in field.groups)
  full = math.prod(w for _, w in field.windows)
  count = (whole * (full - _window_counts(shape, field))).astype(dtype)
  if axis_name is not None:
    count = count * psum(np.asarray(1, dtype), axis_name)
  return count


def field_count(
    shape: tuple[int, ...],
    field: Field,
    *,
    border: str = "valid",
    mask: jax.Array | None = None,
    axis_name=None,
    dtype=np.float32,
):
  """How many entries each position's field averages over.

  Args:
    shape: shape of the input.
    field: the resolved field.
    border: ``"valid"`` counts entries that exist; the zero modes also count the
      positions past the border (`border_count`).
    mask: optional boolean array of the input's shape, True for entries that count.
    axis_name: also sum the count over this named axis.
    dtype: dtype of the result.

  Returns:
    A NumPy array (static: no mask and no `axis_name`) or a jax.Array, broadcastable to
    the field's statistics.
  """
  if mask is None:
    whole = math.prod(shape[a] for a in field.whole) * math.prod(n for _, n in field.groups)
    count = (whole * _window_counts(shape, field)).astype(dtype)
  else:
    count = field_sum(mask.astype(dtype), field)
  if axis_name is not None:
    count = psum(count, axis_name)
  return count + border_count(shape, field, border, axis_name=axis_name, dtype=dtype)


def divide_by_count(s: jax.Array, count) -> jax.Array:
  """``s / count``; a position with an empty field (count 0) gets 0, never NaN."""
  if isinstance(count, np.ndarray):
    inverse = np.where(count > 0, 1.0 / np.maximum(count, 1), 0.0)
    return s * inverse.astype(s.dtype)
  return s / jnp.maximum(count, 1.0).astype(s.dtype)


def plain_field_mean(t: jax.Array, field: FieldSpec, *, border: str = "valid", mask=None,
                     axis_name=None) -> jax.Array:
  """`divnorm.field_mean` over a field of whole axes, groups and box windows (no kernels)."""
  t = check_input(t, "t")
  field, border = check_tiles(resolve_field(field, t.ndim), t.shape), check_border(border)
  mask = check_mask(mask, t.shape, nonzero=True)
  u = t.astype(stat_dtype(t.dtype))
  s = field_sum(u, field, mask=mask, axis_name=axis_name)
  count = field_count(
      t.shape, field, border=border, mask=mask, axis_name=axis_name, dtype=u.dtype)
  return divide_by_count(s, count).astype(t.dtype)
