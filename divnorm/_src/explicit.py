"""A few entries of an array, under JAX's explicit sharding too.

Under a mesh with Explicit axes (`jax.make_mesh`'s default), an array's type says which of
its axes are sharded, and JAX refuses to slice a sharded axis down to a size that its devices
do not divide. The statistics' shift (`statistics.shift`) reads the first entries of every
span, whose axes are the ones a mesh shards: the batch (batch norm), the features (layer norm
with tensor parallelism). There the entries are gathered instead, and the result is whole
along those axes on every device (XLA: an all-reduce of the few entries).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import PartitionSpec


def sharded_axes(x: jax.Array) -> frozenset[int]:
  """The axes of `x` that an Explicit mesh axis shards; none outside such a mesh."""
  return frozenset(a for a, s in enumerate(jax.typeof(x).sharding.spec) if s is not None)


def _whole_along(x: jax.Array, axes) -> jax.sharding.NamedSharding:
  sharding = jax.typeof(x).sharding
  spec = tuple(sharding.spec) + (None,) * (x.ndim - len(sharding.spec))
  return sharding.update(spec=PartitionSpec(*(None if a in axes else s
                                               for a, s in enumerate(spec))))


def leading(x: jax.Array, counts: dict[int, int]) -> jax.Array:
  """``x[:n]`` along every ``axis: n`` of `counts`, every other axis whole."""
  sharded = sharded_axes(x)
  for axis, n in counts.items():
    if axis in sharded:
      index = (slice(None),) * axis + (jnp.arange(n),)
      x = x.at[index].get(out_sharding=_whole_along(x, (axis,)))
  return x[tuple(slice(0, counts[a]) if a in counts and a not in sharded else slice(None)
                 for a in range(x.ndim))]


def first_of_groups(x: jax.Array, axis: int, size: int) -> jax.Array:
  """Every entry along `axis` replaced by the first of its group of `size` contiguous ones."""
  if axis not in sharded_axes(x):
    return jnp.repeat(lax.slice_in_dim(x, 0, None, size, axis), size, axis=axis)
  index = (slice(None),) * axis + (jnp.arange(x.shape[axis]) // size * size,)
  return x.at[index].get(out_sharding=jax.typeof(x).sharding)


def gather(x: jax.Array, index: tuple, axes) -> jax.Array:
  """``x[index]`` (integer arrays), whole along `axes`, the axes its result has size 1 on."""
  if not sharded_axes(x):
    return x[index]
  return x.at[index].get(out_sharding=_whole_along(x, axes))
