r"""Weighted fields: today's fields, plus kernels along some of their axes.

A field spec maps axes to how each is pooled:

- ``None``: the axis whole; ``w`` (an odd int): a box window of width w (as in
  `divnorm.resolve_field`);
- a `Kernel` (`gaussian`, `exponential`, `center_surround`, `kernel`, `learned_kernel`, ...):
  a weighted window; a key that is a tuple of axes applies a multi-dimensional kernel to
  them jointly, e.g. ``{(1, 2): center_surround(3, ndim=2, dilation=2)}``;
- a `Mixing` (`mixing`, `learned_mixing`): a matrix along the axis (GDN's channel pool).

``{1: gaussian(7, sigma=1.5), 2: gaussian(7, sigma=1.5), 3: None}`` is the paper's divisive
normalization with a Gaussian instead of a box over the image. Boxes keep their fast path:
``{1: 5}`` and ``{1: box(5)}`` are the same field.

A weighted field's statistic is a weighted sum, or a weighted mean

.. math::
    E_w[t]_p = \frac{\sum_q w_{pq}\, t_q}{\sum_q w_{pq}}

whose denominator is exact at the border and under masks: ``border="valid"`` divides by the
weight of the entries that exist (and are masked in); ``border="zeros"`` (the paper's code)
counts the kernel's weight past the border as zeros, i.e. divides by the kernel's whole
weight. The operations are applied in one order: whole axes, groups and boxes first (on
the input's own layout, which shrinks it), then kernels, then mixings. A kernel that differs
along an axis that a mixing pools (one kernel per channel, then a channel mixing) is
therefore the kernel of the pooled entry j, not of the entry i the pool is for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.export import is_symbolic_dim
from jax.typing import ArrayLike

from divnorm._src.checks import (
  check_border,
  check_input,
  check_int,
  check_mask,
  check_nonnegative,
  is_concrete,
)
from divnorm._src.fields import Field, check_tiles, resolve_field
from divnorm._src.kernels import Kernel, Mixing
from divnorm._src.reductions import (
  border_count,
  divide_by_count,
  field_count,
  field_sum,
  plain_field_mean,
  psum,
  select,
  stat_dtype,
)
from divnorm._src.weighted import apply, full_mass


class WeightedField(NamedTuple):
  """A resolved weighted field.

  Attributes:
    base: the whole axes, groups and box windows (a `Field`).
    ops: ``(axes, Kernel | Mixing)`` pairs, kernels before mixings.
  """

  base: Field
  ops: tuple[tuple[tuple[int, ...], Kernel | Mixing], ...] = ()

  @property
  def axes(self) -> tuple[int, ...]:
    return tuple(sorted(self.base.axes + tuple(a for axes, _ in self.ops for a in axes)))


def _is_box(op) -> bool:
  """A static, undilated, 1-D box: served by the box windows' fast path."""
  return (isinstance(op, Kernel) and op.static and op.along is None and op.dilation == 1
          and op.ndim == 1 and bool(np.all(op.weights == 1)))


def _axis(axis, ndim: int, role: str) -> int:
  # The box part's resolution checks types and ranges the same way.
  return resolve_field({axis: None}, ndim, role=role).whole[0]


def _check_fit(axes, op, shape, whole, role: str) -> None:
  """A clear error where `op` cannot apply to `axes` of an input of `shape`."""
  ndim = len(shape)
  # A Kernel or Mixing built directly (not by divnorm.kernels' constructors): the same rules.
  weights = op.matrix if isinstance(op, Mixing) else op.weights
  check_nonnegative(weights, f"{role}: the {type(op).__name__.lower()}'s weights",
                    " (a pool weighs entries; learned_kernel and learned_mixing keep learned "
                    "weights nonnegative)")
  if isinstance(op, Kernel):
    check_int(op.dilation, "dilation", minimum=1, context=role)
  if isinstance(op, Mixing):
    if len(axes) != 1:
      raise ValueError(f"{role}: a mixing applies to one axis, got the axes {axes}.")
    n = shape[axes[0]]
    if np.shape(op.matrix) != (n, n):
      raise ValueError(
          f"{role}: the mixing on axis {axes[0]} has shape {np.shape(op.matrix)}, but that "
          f"axis has {n} entries; give a ({n}, {n}) matrix.")
    return
  if op.ndim != len(axes):
    raise ValueError(
        f"{role}: a kernel with a {op.ndim}-D window {op.window} cannot apply to the "
        f"{len(axes)} axes {axes}; give one axis per kernel dimension (a tuple key for "
        f"several).")
  if op.along is not None:
    if not -ndim <= op.along < ndim:
      raise ValueError(f"{role}: along={op.along} is out of range for an input of rank {ndim}.")
    along = op.along % ndim
    if along in axes or along in whole:
      raise ValueError(
          f"{role}: the kernel on {axes} differs along axis {along}, which the same field "
          f"{'windows' if along in axes else 'reduces whole'}; a per-entry kernel needs an "
          f"axis the field keeps.")
    if np.shape(op.weights)[-1] != shape[along]:
      raise ValueError(
          f"{role}: the kernel's weights have {np.shape(op.weights)[-1]} entries along axis "
          f"{along}, which has {shape[along]}; give weights of shape "
          f"{op.window + (shape[along],)}.")


def check_pools_weigh(field, role: str, shape=None, border: str = "zeros") -> None:
  """A ValueError where a concrete kernel or mixing of `field` gives some entry's pool no
  weight at all: its weighted mean (`E_A`, or `E_B` with ``pool="mean"``) would divide by 0.
  With ``border="valid"``, also where a position of an input of `shape` has none of its
  kernel's weight inside the input (a dilated surround past both ends of a short axis)."""
  ops = getattr(field, "ops", ())
  concrete = all(is_concrete(op.matrix if isinstance(op, Mixing) else op.weights)
                 for _, op in ops)
  for axes, op in ops:
    weights = op.matrix if isinstance(op, Mixing) else op.weights
    if not is_concrete(weights):
      continue  # learned weights under a transformation: nonnegative, checked eagerly
    w = np.asarray(weights, np.float64)
    if isinstance(op, Mixing):
      totals = w.sum(axis=1)  # row i: the pool of entry i
    else:
      totals = w.reshape(-1, w.shape[-1]).sum(0) if op.along is not None else w.sum()
    if np.any(totals <= 0):
      who = "an entry" if np.ndim(totals) else "every entry"
      other = " (or pool='sum', a weighted sum)" if role == "suppression" else ""
      raise ValueError(
          f"{role}: the {type(op).__name__.lower()} on axes {axes} gives {who} a pool of zero "
          f"total weight, whose weighted mean would divide by 0; give each pool a positive "
          f"weight{other}.")
  if (border != "valid" or shape is None or not ops or not concrete
      or any(is_symbolic_dim(n) for n in shape)):  # jax.export's symbolic sizes
    return
  with jax.ensure_compile_time_eval():  # the field's weights and the shape are static
    inside = np.asarray(_inside(tuple(shape), field, np.float32))
  if np.any(inside <= 0):
    kernels = [axes for axes, op in ops if isinstance(op, Kernel)]
    on = f"axes {kernels[0]}" if len(kernels) == 1 else f"the axes {kernels}"
    raise ValueError(
        f"{role}: with border='valid', the kernel on {on} "
        f"puts none of its weight inside an input of shape {tuple(shape)} at some positions "
        f"(its taps all fall past the border there), so their weighted mean would divide by "
        f"0; pass border='zeros' (the kernel's whole weight), a kernel that reaches inside "
        f"(e.g. a smaller dilation), or a longer axis.")


def is_weighted(spec) -> bool:
  """Whether `spec` names a kernel or a mixing (else it is `divnorm.resolve_field`'s)."""
  return isinstance(spec, WeightedField) or isinstance(spec, Mapping) and any(
      isinstance(key, tuple) or isinstance(value, Kernel | Mixing)
      for key, value in spec.items())


def resolve_weighted_field(spec, shape: tuple[int, ...], *, role: str = "field") -> WeightedField:
  """Checks a (possibly weighted) field spec against an input of `shape`.

  Raises:
    TypeError, ValueError: as `divnorm.resolve_field`, and for kernels that do not fit
      (wrong number of axes, a mixing of the wrong size, weights along an axis of another
      length, the same axis twice).
  """
  if isinstance(spec, WeightedField):
    return spec
  ndim = len(shape)
  if not is_weighted(spec):
    return WeightedField(check_tiles(resolve_field(spec, ndim, role=role), shape, role))
  plain, ops, seen = {}, [], set()
  for key, value in spec.items():
    keys = key if isinstance(key, tuple) else (key,)
    axes = tuple(_axis(a, ndim, role) for a in keys)
    for a in axes:
      if a in seen or axes.count(a) > 1:
        raise ValueError(f"{role}: axis {a} appears twice in the field; name each axis once.")
      seen.add(a)
    if isinstance(value, Kernel | Mixing) and not _is_box(value):
      ops.append((axes, value))
    elif isinstance(key, tuple):
      raise TypeError(
          f"{role}: the tuple key {key} needs a multi-dimensional Kernel, got {value!r}.")
    else:
      plain[axes[0]] = value.window[0] if _is_box(value) else value
  base = resolve_field(plain, ndim, role=role)
  for axes, op in ops:
    _check_fit(axes, op, shape, base.whole, role)
  ops.sort(key=lambda pair: isinstance(pair[1], Mixing))
  ops = [(axes, _normalized_along(op, ndim)) for axes, op in ops]
  return WeightedField(base, tuple(ops))


def _normalized_along(op, ndim: int):
  if isinstance(op, Kernel) and op.along is not None and op.along < 0:
    return Kernel(op.weights, op.dilation, op.along % ndim)
  return op


def weighted_sum(t: jax.Array, field: WeightedField, *, mask=None, axis_name=None) -> jax.Array:
  """``sum_q w_pq t_q`` over `field` at every position (whole axes kept as size 1).

  Entries outside `mask` (boolean, `t`'s shape) are selected away first.
  """
  s = field_sum(t, field.base, mask=mask)
  for axes, op in field.ops:
    s = apply(s, axes, op)
  if axis_name is not None:
    s = psum(s, axis_name)
  return s


def border_weight(shape: tuple[int, ...], field: WeightedField, border: str, dtype=np.float32):
  """The weight past the border that the zero modes count as zeros (0 for ``"valid"``).

  The kernels' whole weight minus the weight inside the input, times the box part's
  (`reductions.border_count` for boxes alone).
  """
  if border == "valid":
    return np.zeros((1,) * len(shape), dtype)
  if not field.ops:
    return border_count(shape, field.base, border).astype(dtype)
  full = _ones(shape, field.ops, dtype)
  for axes, op in field.ops:
    full = apply(full, axes, op) if isinstance(op, Mixing) else full * full_mass(
        shape, axes, op, dtype)
  full = full * jnp.asarray(field_count(shape, field.base, border="zeros", dtype=dtype))
  return full - _inside(shape, field, dtype)


def _inside(shape, field: WeightedField, dtype):
  """The weight inside an input of `shape` at each position (no mask)."""
  # On ones over the axes the ops read or vary along (size 1 elsewhere), in the ops'
  # order: a per-channel kernel before a channel mixing is not separable from it.
  ops = weighted_sum(_ones(shape, field.ops, dtype), WeightedField(Field((), ()), field.ops))
  return jnp.asarray(field_count(shape, field.base, dtype=dtype)) * ops


def weight_count(shape: tuple[int, ...], field: WeightedField, *, border: str = "valid",
                 mask=None, axis_name=None, dtype=np.float32):
  """The denominator of a weighted mean: the weight each position's field averages over.

  ``"valid"``: the weight of the entries that exist (and are masked in). The zero modes
  also count the weight past the border, as zeros (`border_weight`).
  """
  if not field.ops:
    return field_count(shape, field.base, border=border, mask=mask, axis_name=axis_name,
                       dtype=dtype)
  count = _inside(shape, field, dtype) if mask is None else weighted_sum(mask.astype(dtype),
                                                                         field)
  count = count + border_weight(shape, field, border, dtype)
  if axis_name is not None:
    count = psum(count, axis_name)
  return count


def _ones(shape, ops, dtype) -> jax.Array:
  """Ones with the input's size on every axis the ops read or vary along, 1 elsewhere."""
  small = [1] * len(shape)
  for axes, op in ops:
    along = (op.along,) if isinstance(op, Kernel) and op.along is not None else ()
    for axis in axes + along:
      small[axis] = shape[axis]
  return jnp.ones(small, dtype)


def weighted_mean(t: jax.Array, field: WeightedField, *, border: str = "valid", mask=None,
                  axis_name=None) -> jax.Array:
  """``E_w[t]`` over `field` at every position (whole axes kept as size 1).

  A position whose field has no weight (all masked out, or a kernel of zeros) gets 0.
  """
  s = weighted_sum(select(t, mask), field, axis_name=axis_name)
  count = weight_count(t.shape, field, border=border, mask=mask, axis_name=axis_name,
                       dtype=t.dtype)
  return divide_by_weight(s, count)


def field_mean(t: ArrayLike, field, *, border: str = "valid", mask: ArrayLike | None = None,
               axis_name=None) -> jax.Array:
  """Mean of `t` over `field` at every position (whole axes kept as size 1).

  Args:
    t: a floating array.
    field: any field `divnorm.normalize` takes: `resolve_field`'s spec (whole axes, box
      windows), a resolved `Field`, or a weighted spec with kernels and mixings
      (`divnorm.kernels`), whose mean is ``sum_q w_pq t_q / sum_q w_pq``.
    border: how a window averages at the border of its axis, as in `divnorm.normalize`:
      ``"valid"`` (default) over the entries that exist; ``"zeros"`` (and
      ``"zeros_with_divisor_bug"``, the same here) zero padded, divided by the full window
      (a kernel's whole weight).
    mask: optional array that broadcasts to `t`'s shape: True (or nonzero) where an entry
      counts. It selects: an entry outside it never enters the sum, whatever its value.
    axis_name: also average over this named axis (``shard_map``, ``vmap``).

  Returns:
    The means, in `t`'s dtype; computed in at least float32 (`stat_dtype`). A position whose
    field holds no entry (or no weight) gets 0.

  Raises:
    TypeError: `t` not a floating array, `mask` neither boolean nor real, or a malformed
      `field` (an axis or width that is not an int, a tuple key without a kernel).
    ValueError: a bad `field` (an axis out of range or twice, an even width) or `border`, a
      kernel that does not fit `t`, or a `mask` that does not broadcast to `t`.

  >>> from divnorm import kernels
  >>> point = jnp.zeros((1, 5)).at[0, 2].set(1.0)
  >>> field_mean(point, {1: kernels.kernel([1.0, 2.0, 1.0])}, border="zeros")
  Array([[0.  , 0.25, 0.5 , 0.25, 0.  ]], dtype=float32)
  """
  if not is_weighted(field):
    return plain_field_mean(t, field, border=border, mask=mask, axis_name=axis_name)
  t = check_input(t, "t")
  field, border = resolve_weighted_field(field, t.shape), check_border(border)
  mask = check_mask(mask, t.shape, nonzero=True)
  u = t.astype(stat_dtype(t.dtype))
  return weighted_mean(u, field, border=border, mask=mask, axis_name=axis_name).astype(t.dtype)


def divide_by_weight(s: jax.Array, count) -> jax.Array:
  """``s / count``, 0 where the count is 0 (an empty field), never NaN."""
  if isinstance(count, np.ndarray):  # no kernels, no mask: today's integer counts
    return divide_by_count(s, count)
  # Weighted counts can lie anywhere in (0, inf): select, never clamp to 1.
  has_weight = count > 0
  safe = jnp.where(has_weight, count, jnp.ones((), count.dtype))
  return jnp.where(has_weight, s / safe, jnp.zeros((), s.dtype))
