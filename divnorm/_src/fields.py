"""Fields: which entries of a tensor a statistic averages over.

A field is a dict ``{axis: None | width}``. ``None`` reduces that axis whole; an odd
``width`` averages over a centered window of that many entries along the axis (stride 1,
so the statistic has the shape of the input along that axis). A tuple of axes is
shorthand for all-``None``. Negative axes count from the end.

Examples on NHWC input: batch norm ``(0, 1, 2)``; layer norm ``(1, 2, 3)``; the paper's
divisive norm ``{3: None, 1: 5, 2: 5}`` (all channels, a 5x5 spatial box).

A third kind, built by `grouped_field` (group norm uses it), splits an axis into
contiguous groups of equal size and averages each position over its own group, like a
whole axis cut into blocks; the statistic keeps the axis's full size, constant within a
group. It lets XLA reduce the input in its own layout instead of a reshaped
``[..., groups, size]`` view (`reductions.group_sum`: with the reshaped sums, group norm's
forward+backward took 1.6-1.9x as long on 128x32x32x64 on CPU).

Windows wider than their axis are allowed: a window is clipped to the entries that exist
(``border="valid"``) or zero padded (``border="zeros"``). With ``width >= 2 * size - 1``
every position's window covers the whole axis, and ``border="valid"`` then equals
reducing that axis whole.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import NamedTuple, TypeAlias

import jax
import numpy as np
from jax.export import is_symbolic_dim

from divnorm._src.checks import Int, axis_range, check_int, describe, is_concrete


class Field(NamedTuple):
  """A resolved field: non-negative axes, checked against a rank.

  Attributes:
    whole: axes reduced whole, sorted.
    windows: ``(axis, width)`` pairs, sorted by axis; every width odd and >= 1.
    groups: ``(axis, size)`` pairs, sorted by axis: the axis is cut into contiguous
      groups of `size` entries, each averaged whole (see `grouped_field`).
  """

  whole: tuple[int, ...]
  windows: tuple[tuple[int, int], ...]
  groups: tuple[tuple[int, int], ...] = ()

  @property
  def axes(self) -> tuple[int, ...]:
    return tuple(sorted(
        self.whole + tuple(a for a, _ in self.windows) + tuple(a for a, _ in self.groups)))

  @property
  def span(self) -> Field:
    """The field with its windows widened to whole axes: every entry a position's field can
    reach along its axes (a shift constant over the span is constant over every field)."""
    return Field(tuple(sorted(self.whole + tuple(a for a, _ in self.windows))), (), self.groups)

  @property
  def pooled(self) -> Field:
    """The whole and grouped part alone (reduced first, in the input's own layout)."""
    return Field(self.whole, (), self.groups)


# What `normalize` and `resolve_field` take as a field (an int is one axis, reduced whole).
FieldSpec: TypeAlias = Mapping[int, int | None] | Sequence[int] | int | Field


def _as_int(value) -> int | None:
  """`value` as an int if it is a Python, NumPy or concrete JAX integer (not a bool)."""
  if isinstance(value, bool | np.bool_) or not is_concrete(value):
    return None
  try:
    return operator.index(value)
  except TypeError:
    return None


def _axis(axis, ndim: int, role: str) -> int:
  a = _as_int(axis)
  if a is None:
    static = "" if is_concrete(axis) else " (static: not a traced value)"
    raise TypeError(f"{role}: axes must be ints{static}, got {describe(axis)} "
                    f"({type(axis).__name__}).")
  if not -ndim <= a < ndim:
    raise ValueError(
        f"{role}: axis {a} is out of range for an input of rank {ndim}; {axis_range(ndim)}.")
  return a % ndim


def _width(width, axis: int, role: str) -> int:
  w = _as_int(width)
  if w is None:
    raise TypeError(
        f"{role}: the window on axis {axis} must be an odd int or None (whole axis), "
        f"got {describe(width)}.")
  width = w
  if width < 1 or width % 2 == 0:
    hint = f"use {width + 1} or {width - 1}" if width > 1 else "use 1, 3, 5, ..."
    raise ValueError(
        f"{role}: the window on axis {axis} has width {width}; windows are centered, so "
        f"the width must be odd and positive ({hint}), or None to reduce the axis whole.")
  return int(width)


def resolve_field(field: FieldSpec, ndim: Int, *, role: str = "field") -> Field:
  """Checks `field` against an input of rank `ndim` and returns its canonical form.

  Args:
    field: ``{axis: None | odd width}``, a tuple of axes, or one axis.
    ndim: rank of the input the field applies to.
    role: name used in error messages (``"summation"``, ``"suppression"``).

  Raises:
    TypeError: non-int axes or widths, or a field of another type.
    ValueError: an axis out of range, the same axis twice, an even or non-positive width.
  """
  ndim = check_int(ndim, "ndim", minimum=0, context="resolve_field")
  if isinstance(field, Field):
    return _checked(field, ndim, role)
  if isinstance(field, np.ndarray | jax.Array) and field.ndim == 1 and is_concrete(field):
    field = field.tolist()  # axes as a NumPy or JAX vector, like a list
  if _as_int(field) is not None:
    items = [(field, None)]
  elif isinstance(field, Mapping):
    items = list(field.items())
  elif isinstance(field, Sequence) and not isinstance(field, str):
    items = [(a, None) for a in field]
  else:
    raise TypeError(
        f"{role}: a field is a dict {{axis: None | odd width}} or a tuple of axes, "
        f"got {field!r}.")
  seen: dict[int, object] = {}
  whole, windows = [], []
  for axis, width in items:
    a = _axis(axis, ndim, role)
    if a in seen:
      raise ValueError(
          f"{role}: axis {a} appears twice (as {seen[a]!r} and {axis!r}) for an input of "
          f"rank {ndim}; name each axis once.")
    seen[a] = axis
    if width is None:
      whole.append(a)
    else:
      windows.append((a, _width(width, a, role)))
  return Field(tuple(sorted(whole)), tuple(sorted(windows)))


def _checked(field: Field, ndim: int, role: str) -> Field:
  """A `Field` built by hand, checked as `resolve_field` checks a spec (negative axes made
  non-negative, each axis once)."""
  try:
    whole, windows, groups = (tuple(part) for part in field)
    windows, groups = [(a, w) for a, w in windows], [(a, n) for a, n in groups]
  except (TypeError, ValueError):
    raise TypeError(f"{role}: {field!r} is not a Field of axes, (axis, width) windows and "
                    f"(axis, size) groups; build fields with resolve_field or grouped_field."
                    ) from None
  whole = [_axis(a, ndim, role) for a in whole]
  windows = [(_axis(a, ndim, role), w) for a, w in windows]
  groups = [(_axis(a, ndim, role), n) for a, n in groups]
  axes = whole + [a for a, _ in windows] + [a for a, _ in groups]
  for a in axes:
    if axes.count(a) > 1:
      raise ValueError(f"{role}: axis {a} appears twice in {field} for an input of rank "
                       f"{ndim}; name each axis once.")
  return Field(tuple(sorted(whole)),
               tuple(sorted((a, _width(w, a, role)) for a, w in windows)),
               tuple(sorted((a, check_int(n, "size", minimum=1, context=role))
                            for a, n in groups)))


def check_tiles(field: Field, shape: tuple[int, ...], role: str = "field") -> Field:
  """`field` (resolved), whose groups must tile their axes of an input of `shape`: a `Field`
  built by hand may hold groups that do not, which `grouped_field` refuses."""
  for a, size in field.groups:
    if not is_symbolic_dim(shape[a]) and shape[a] % size:
      raise ValueError(
          f"{role}: groups of {size} entries do not tile axis {a} of length {shape[a]}; use a "
          f"positive divisor of {shape[a]} (divnorm.grouped_field checks this for a shape).")
  return field


def resolve_axes(axes, ndim: int, *, role: str) -> tuple[int, ...]:
  """`axes` (an axis or a tuple of them; `role` names them in errors) as sorted
  non-negative whole axes: a window there is an error, not dropped."""
  field = resolve_field(axes, ndim, role=role)
  if field.windows or field.groups:
    raise ValueError(f"{role}={axes!r} names windows; {role} takes whole axes only, e.g. "
                     f"{role}={field.axes!r}.")
  return field.whole


def grouped_field(
    field: FieldSpec, axis: Int, size: Int, shape: tuple[int, ...], *, role: str = "field"
) -> Field:
  """`field` plus `axis` cut into contiguous groups of `size` entries, each averaged whole.

  ``grouped_field((1, 2), -1, C // G, x.shape)`` is group norm's field on NHWC input:
  the spatial axes whole and each channel's group of ``C // G``. With ``size`` equal to
  the axis length this is the axis reduced whole; with ``size == 1`` it is no reduction.

  Raises:
    ValueError: `axis` already in `field`, or `size` not a positive divisor of its length.
  """
  if not isinstance(shape, Sequence) or isinstance(shape, str):
    raise TypeError(f"{role}: shape={shape!r} is not a shape; pass the input's, x.shape.")
  for n in shape:  # ints >= 0, or jax.export's symbolic sizes
    if not is_symbolic_dim(n):
      check_int(n, "shape", minimum=0, context=role)
  ndim = len(shape)
  base = resolve_field(field, ndim, role=role)
  a = _axis(axis, ndim, role)
  if a in base.axes:
    raise ValueError(f"{role}: axis {a} is already in the field {base}; group it or "
                     f"reduce it, not both.")
  n = shape[a]
  size = check_int(size, "size", context=role, hint=" (the number of entries in a group)")
  if size < 1 or n % size:
    raise ValueError(
        f"{role}: groups of {size} entries do not tile axis {a} of length {n}; use a "
        f"positive divisor of {n}.")
  return Field(base.whole, base.windows, tuple(sorted(base.groups + ((a, size),))))
