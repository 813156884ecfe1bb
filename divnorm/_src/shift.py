"""The shift ``k`` of the statistics: a value from the data per span of A.

Every strategy (`divnorm._src.statistics`) sums ``x - k`` rather than ``x``, with ``k``
constant over every field of A, so that its sums are of small numbers when
``|E[x]| >> std(x)``. Without a mask ``k`` is read from a span's first two entries; with
one it is the span's first masked-in entry, which must be found.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.export import is_symbolic_dim

from divnorm._src import explicit
from divnorm._src.fields import Field
from divnorm._src.reductions import field_count, group_min, psum, stat_dtype

# How many entries of a span's last axis the masked shift searches first, on XLA's CPU
# backend (`_first_masked_position`). A mask that keeps a fraction p of the entries at
# random leaves all of them out with probability (1 - p)^64: 6e-7 at p = 0.2.
SEARCH_PREFIX = 64


def shift(x: jax.Array, a: Field, *, mask=None, axis_name=None) -> jax.Array:
  """``k``: a value from the data per span of A, constant over every field of A.

  The span is A with its windows widened to whole axes (`Field.span`). ``k`` is the mean of
  the span's first two entries (`_leading_mean`), or with a mask its first masked-in entry:
  a few entries of `x`, not a pass over it. A span whose ``k`` is not finite, or that has no
  masked-in entry, gets ``k = 0``: it loses the shift's accuracy at large offsets, and a NaN
  or inf reaches no output whose fields do not hold it. With `axis_name` the mapped axis is
  part of every span: ``k`` is the mean of the members' entries, the same on all of them.
  ``k`` is in the statistics dtype (`x` may be narrower).
  """
  span = a.span
  if mask is None or any(not is_symbolic_dim(n) and n == 0 for n in x.shape):
    k, found = _leading_mean(x, span), None  # an empty `x`: no entry to search the mask for
  else:
    k, found = _first_masked_entry(x, span, mask)
  usable = jnp.isfinite(k) if found is None else found & jnp.isfinite(k)
  k = jnp.where(usable, k, jnp.zeros((), k.dtype))
  if axis_name is not None:
    n = psum(usable.astype(k.dtype), axis_name)
    k = psum(k, axis_name) / jnp.maximum(n, np.asarray(1, k.dtype))
  return lax.stop_gradient(k)


def _leading_mean(x: jax.Array, span: Field) -> jax.Array:
  """The mean of the first two entries of every span (its only entry if it has one),
  broadcastable to `x`.

  A reduce of two entries, not a slice of one: XLA's CPU backend fuses a slice into every
  consumer, recomputed per element, which stops the consumer's vectorization (6x slower
  inside an RNN's scan); a reduce is a kernel of its own whose result the consumers read
  (BENCHMARKS.md, "The LSTM's DN"). The mean of two is also half as far from the span's
  mean as one entry, in expected square.
  """
  # A symbolic size (jax.export's) may be 1: its span takes the first entry alone.
  whole = [a for a in span.whole if not is_symbolic_dim(x.shape[a]) and x.shape[a] > 1]
  k = explicit.leading(x, {a: 2 if whole and a == whole[-1] else 1 for a in span.whole})
  k = k.astype(stat_dtype(x.dtype))
  if whole:
    k = jnp.mean(k, axis=whole[-1], keepdims=True)
  for axis, size in span.groups:
    k = explicit.first_of_groups(k, axis, size)
  return k


def _first_masked_entry(x: jax.Array, span: Field, mask: jax.Array):
  """``(entry, found)``: the first masked-in entry of every span (row-major over its axes),
  and whether there is one. Reads the mask (`_first_masked_position`), and gathers one
  entry of `x` per span."""
  ndim = x.ndim
  dt = stat_dtype(x.dtype)
  first, size = _first_masked_position(span, mask, dt)
  found = first < size
  rest = jnp.minimum(first, size - 1)
  index = [_iota(x.shape, axis) for axis in range(ndim)]
  for axis, group in reversed(span.groups):
    index[axis] = index[axis] // group * group + rest % group
    rest = rest // group
  for axis in reversed(span.whole):
    index[axis] = rest % x.shape[axis]
    rest = rest // x.shape[axis]
  return explicit.gather(x, tuple(index), span.whole).astype(dt), found


def _iota(shape: tuple[int, ...], axis: int) -> jax.Array:
  """The index along `axis`, int32, of size 1 on every other axis."""
  return lax.broadcasted_iota(jnp.int32, tuple(n if i == axis else 1 for i, n in
                                               enumerate(shape)), axis)


def _first_masked_position(span: Field, mask: jax.Array, dtype):
  """``(first, size)``: the row-major position of every span's first masked-in entry
  (int32, ``size`` where there is none), and the span's size.

  On XLA's CPU backend the search first reads the span's first entries in row-major
  order: every whole axis at its first index, with the channels of each group, or without
  groups the first `SEARCH_PREFIX` entries of the last whole axis. It searches the whole
  span (`_searched_position`) under a ``lax.cond`` only where a span with masked-in entries
  has none among them, so the position is the same. Under ``vmap`` the cond runs both.
  Elsewhere, and for a span without whole axes, the whole search: a GPU reads a cond's
  condition back to the host. Forward+backward with a mask, the whole search took a
  masked layer norm over 8x512x768 to 1.28x flax's time, where reading the prefix alone
  took 1.10x; batch norm over 100x32x32x32, 1.09x and 0.82x (scratch runs; BENCHMARKS.md,
  "Masked layers at or below flax's time", has the ratios of the final code).
  """
  size = 1
  for axis in span.whole:
    size *= mask.shape[axis]
  for _, group in span.groups:
    size *= group
  if not span.whole or is_symbolic_dim(size):
    return _searched_position(span, mask, size), size
  # The span's first entries in row-major order: every whole axis at its first index, and
  # the channels of each group, or (no groups) the first entries of the last whole axis.
  last = None if span.groups else span.whole[-1]
  prefix = explicit.leading(mask, {a: min(SEARCH_PREFIX, mask.shape[a]) if a == last else 1
                                   for a in span.whole})
  in_prefix = _searched_position(span, prefix, size)  # their positions in the whole span
  # The strategies' count of the span (`dtype`: theirs), which XLA computes once for both.
  count = field_count(mask.shape, span, mask=mask, dtype=dtype)
  missed = jnp.any((in_prefix == size) & (count > 0))

  def on_cpu(mask, in_prefix, missed):
    return lax.cond(missed, lambda: _searched_position(span, mask, size), lambda: in_prefix)

  def elsewhere(mask, in_prefix, missed):
    return _searched_position(span, mask, size)

  position = lax.platform_dependent(mask, in_prefix, missed, cpu=on_cpu, default=elsewhere)
  return position, size


def _searched_position(span: Field, mask: jax.Array, size: int) -> jax.Array:
  """`_first_masked_position` by a minimum over every entry of the span.

  Over the batch axis and others before the last (batch norm's span), the positions are
  float32 where it holds them all exactly (at most 2^24 entries): XLA's CPU backend
  reduces float32 there in one YNNPACK kernel and int32 in two passes (a reduce-window,
  then a reduce). A masked BatchNorm over 64x32x32x64 took 0.87x (float32) and 0.89x
  (bfloat16) its time before, forward+backward; instance norm's span, without the batch
  axis, took 1.05-1.07x in float32, and keeps int32 (BENCHMARKS.md).
  """
  ndim = mask.ndim
  position = jnp.zeros((1,) * ndim, jnp.int32)
  for axis in span.whole:
    position = position * mask.shape[axis] + _iota(mask.shape, axis)
  for axis, group in span.groups:
    position = position * group + _iota(mask.shape, axis) % group
  leading = 0 in span.whole and ndim - 1 not in span.whole and not span.groups
  exact = not is_symbolic_dim(size) and size <= 2**24
  dt = jnp.float32 if leading and exact else jnp.int32
  position = jnp.where(mask, position.astype(dt), jnp.asarray(size, dt))
  first = jnp.min(position, axis=span.whole, keepdims=True) if span.whole else position
  return group_min(first, span.groups).astype(jnp.int32)
