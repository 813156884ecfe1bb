"""A few entries of an array, under JAX's explicit sharding too.

Under a mesh with Explicit axes (`jax.make_mesh`'s default), an array's type says which of
its axes are sharded, and JAX refuses to slice a sharded axis down to a size that its devices
do not divide. The statistics' shift (`statistics.shift`) reads the first entries of every
span, whose axes are the ones a mesh shards: the batch (batch norm), the features (layer norm
with tensor parallelism). There the entries are gathered instead, and the result is whole
along those axes on every device (XLA: an all-reduce of the few entries).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
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


def devices_along(x: jax.Array, axis: int) -> int:
  """How many devices an Explicit mesh splits `axis` of `x` over (1 where none does)."""
  sharding = jax.typeof(x).sharding
  names = tuple(sharding.spec)[axis] if axis < len(sharding.spec) else None
  if names is None:
    return 1
  names = names if isinstance(names, tuple) else (names,)
  return math.prod(sharding.mesh.shape[n] for n in names)


def pads_unevenly(x: jax.Array, axis: int, width: int) -> bool:
  """Whether `axis` of `x`, padded for centred windows of `width`, is a length that the
  devices an Explicit mesh splits it over do not divide (JAX's types refuse that pad)."""
  devices = devices_along(x, axis)
  return devices > 1 and (x.shape[axis] + width - 1) % devices != 0


def splits_groups(x: jax.Array, axis: int, size: int) -> bool:
  """Whether the devices an Explicit mesh splits `axis` of `x` over hold parts of a group of
  `size` contiguous entries (JAX's types refuse the reshape into groups there)."""
  devices = devices_along(x, axis)
  return devices > 1 and x.shape[axis] // devices % size != 0


def whole_while(f, x: jax.Array, axes, split: bool) -> jax.Array:
  """``f(x)``, with `x` whole along `axes` for it (and the result sharded back as `x`) where
  `split`: an Explicit mesh's devices hold parts of what `f` reads together along them (a
  group, a padded window), which JAX's types refuse to reshape or pad there."""
  if not split:
    return f(x)
  return sharded_as(f(whole_along(x, axes)), x)


def whole_along(x, axes):
  """`x` (a NumPy array stays one) gathered whole along `axes` on every device."""
  if isinstance(x, np.ndarray):
    return x
  return jax.sharding.reshard(x, _whole_along(x, tuple(axes)))


def sharded_as(y: jax.Array, x: jax.Array) -> jax.Array:
  """`y` resharded as `x` is."""
  return jax.sharding.reshard(y, jax.typeof(x).sharding)
