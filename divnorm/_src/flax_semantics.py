"""Flax's (and equinox's) module semantics on the functional core, in one place; no Flax.

`divnorm.linen`, `divnorm.nnx` and `divnorm.equinox` own the parameters and call these, so
their layers compute the same numbers: ``epsilon == sigma**2`` (`sigma_of`),
``use_fast_variance`` (`core_options`), axes and groups as fields, dtypes, the call into the
core and the affine step.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from divnorm._src.batch import BatchStats, batch_norm_factors
from divnorm._src.checks import (
  axis_index,
  check_device_groups,
  check_learn_sigma,
  check_nonnegative,
)
from divnorm._src.core import normalize_factors
from divnorm._src.fields import Field, grouped_field
from divnorm._src.presets import group_count, rms_factors
from divnorm._src.reductions import DeviceGroups, stat_dtype

Axes = int | Sequence[int]


def canonical_axes(axes: Axes | None, ndim: int, name: str = "axes") -> tuple[int, ...]:
  """Sorted, deduplicated, non-negative axes (flax's convention), or an error naming `name`."""
  axes = () if axes is None else axes if isinstance(axes, Iterable) else (axes,)
  return tuple(sorted({axis_index(a, ndim, name) for a in axes}))


def sigma_of(epsilon, sigma=None, module=None, name: str = "epsilon"):
  """The core's `sigma` for `epsilon` (any number flax takes; errors name it `name`), or
  divnorm's `sigma`, with `epsilon` then at its default in `module`'s signature."""
  if sigma is not None:
    default = inspect.signature(type(module).__init__).parameters[name].default
    if not (isinstance(epsilon, int | float) and epsilon == default):
      raise ValueError(f"got {name}={epsilon!r} and sigma={sigma!r}: two spellings of one "
                       f"setting ({name} == sigma**2); pass only one.")
    check_nonnegative(sigma, "sigma", f" (the paper's smoothing term: {name} == sigma**2)")
    return sigma
  check_nonnegative(epsilon, name, f" (it is added to the variance: {name} == sigma**2)")
  if isinstance(epsilon, jax.Array):
    return jnp.sqrt(epsilon)
  return math.sqrt(epsilon) if np.ndim(epsilon) == 0 else np.sqrt(epsilon)


def epsilon_of(epsilon, sigma=None, module=None, name: str = "epsilon"):
  """Flax's (or equinox's) `epsilon` as a layer keeps it: checked, or ``sigma**2``."""
  sigma_of(epsilon, name=name)
  return epsilon if sigma is None else sigma_of(epsilon, sigma, module, name) ** 2


def log_sigma_init(sigma, dtype) -> jax.Array:
  """A learned sigma is ``exp(log_sigma)``, starting from `sigma` > 0."""
  check_learn_sigma(sigma)
  return jnp.log(jnp.asarray(sigma, dtype))


def core_options(module, mask, initializing: bool = False) -> dict:
  """The core's arguments for a flax layer's `epsilon` (or `sigma`), `axis_name` and
  `use_fast_variance` (True, flax's default: one-pass; `fast_variance` overrides it)."""
  fast = module.use_fast_variance if module.fast_variance is None else module.fast_variance
  return dict(sigma=sigma_of(module.epsilon, module.sigma, module), mask=mask,
              axis_name=axis_name_of(module.axis_name, module.axis_index_groups, initializing),
              fast_variance=bool(fast))


def alias(name: str, value, default, other: str, other_value):
  """Flax's argument `name`, or divnorm's alias `other` of it (an error if both are set)."""
  if other_value is not None and value != default and value != other_value:
    raise ValueError(f"got {name}={value!r} and {other}={other_value!r}, two names of one "
                     f"argument; pass only {name}=... (flax's name).")
  return value if other_value is None else other_value


def axis_name_of(axis_name, axis_index_groups, initializing: bool = False):
  """Flax's `axis_name`, in `axis_index_groups` (pmap only, as flax) if given: a
  `DeviceGroups`; None while `initializing` unmapped (flax's BatchNorm)."""
  if axis_name is None or not (initializing or axis_index_groups is not None):
    return axis_name
  try:  # the mapped axis' size (several names: their product)
    size = math.prod(lax.axis_size(n) for n in (
        axis_name if isinstance(axis_name, tuple | list) else (axis_name,)))
  except NameError:  # unbound: the collective will say so, unless initializing
    size = None
  groups = None if axis_index_groups is None else check_device_groups(axis_index_groups, size)
  if initializing and size is None:
    return None
  if groups is None:
    return axis_name
  return DeviceGroups(tuple(axis_name) if isinstance(axis_name, list) else axis_name, groups)


def group_field(shape, num_groups, group_size, reduction_axes, channel_axis: int = -1) -> Field:
  """Flax's GroupNorm: `reduction_axes` (default: all but the batch axis 0), the channel
  axis among them in groups (`fields.grouped_field`: no reshape)."""
  c = canonical_axes(channel_axis, len(shape), "channel_axis")[0]
  axes = canonical_axes(sorted(set(range(1, len(shape))) | {c}) if reduction_axes is None
                        else reduction_axes, len(shape), "reduction_axes")
  if c not in axes:
    raise ValueError(
        f"The reduction axes must include the final dimension as this is assumed to be the "
        f"feature axis (got reduction_axes={reduction_axes!r} for an input of rank "
        f"{len(shape)}).")
  size = shape[c] // group_count(num_groups, group_size, shape[c])
  return grouped_field(tuple(a for a in axes if a != c), c, size, shape)


def instance_axes(feature_axes, ndim: int) -> tuple[int, ...]:
  """Flax's InstanceNorm: every axis but the batch axis (0) and `feature_axes`."""
  features = canonical_axes(feature_axes, ndim, "feature_axes")
  if 0 in features:
    raise ValueError(
        "The channel axes cannot include the leading dimension as this is assumed to be the "
        f"batch axis (got feature_axes={feature_axes!r}).")
  return tuple(a for a in range(1, ndim) if a not in features)


def result_dtype(*arrays, dtype=None) -> np.dtype:
  """Flax's output dtype: `dtype`, else the promoted dtype of `arrays` (made inexact)."""
  if dtype is not None:
    return np.dtype(dtype)
  with jax.numpy_dtype_promotion("standard"):
    out = jnp.result_type(*[jnp.asarray(a).dtype for a in arrays if a is not None])
    return np.dtype(out if jnp.issubdtype(out, jnp.inexact) else jnp.float32)


def normalized(x, field: Field, *, sigma, mask, axis_name, fast_variance, center=True,
               dtype=None):
  """``(y, v, factors)``: `x` in flax's statistics dtype normalized over `field` by the core
  (`normalize_factors`), or not centered (RMS norm); ``factors = (u, m, r)``,
  ``y = (u - m) * r``, for `affine` (None with a mask). An empty `field` gives flax's zeros."""
  x = jnp.asarray(x)
  x = x.astype(stat_dtype(x.dtype if dtype is None else dtype))
  if center:
    y, v, r, stats = normalize_factors(x, field, sigma=sigma, mask=mask, axis_name=axis_name,
                                       fast_variance=fast_variance and bool(field.axes))
    return y, v, _factors(x - stats.shift, stats.mean, r, mask)
  v, r = rms_factors(x, field, sigma=sigma, mask=mask, axis_name=axis_name)
  return v * r, v, _factors(v, None, r, mask)


def _factors(u, m, r, mask):
  """``(u, m, r)`` for `affine`'s fold; None with a mask (masked-out outputs are `bias`)."""
  return None if mask is not None else (u, m, r)


def batch_normalized(x, stats: BatchStats, *, training: bool, feature_axes, momentum, sigma,
                     mask, axis_name, fast_variance, dtype=None):
  """``((y, v, factors), new stats)`` as `normalized`: flax's BatchNorm
  (`batch.batch_norm_factors`), with the batch's statistics or the running ones (then
  without the mask, as flax). With no batch axis in `x` (one example under `vmap` with
  `axis_name`, or a rank-1 input), the statistics are two-pass, as `normalized`'s."""
  x, mask = jnp.asarray(x), mask if training else None
  x = x.astype(stat_dtype(x.dtype if dtype is None else dtype))
  local = len(feature_axes) < x.ndim  # else only the mapped axis (or nothing): two-pass
  (y, v, factors), stats = batch_norm_factors(
      x, stats, training=training, features=feature_axes, momentum=momentum, sigma=sigma,
      mask=mask, axis_name=axis_name, fast_variance=fast_variance and local, name="BatchNorm")
  return (y, v, _factors(*factors, mask)), stats


def affine(y: jax.Array, scale, bias, feature_axes: tuple[int, ...], factors=None):
  """``y * scale + bias`` (each if not None) over `feature_axes`, in flax's dtypes.

  With `factors` ``(u, m, r)``, ``y = (u - m) * r`` (``m`` None: 0), where ``r * scale`` is
  smaller than `y`: flax's fold ``u * mul + (bias - m * mul)``, ``mul = r * scale``, whose
  gradient sums at the statistics' size (BENCHMARKS.md, issue 22).
  """
  shape = tuple(n if a in feature_axes else 1 for a, n in enumerate(y.shape))
  with jax.numpy_dtype_promotion("standard"):
    bias = None if bias is None else jnp.reshape(bias, shape)
    if scale is not None:
      scale = jnp.reshape(scale, shape)
      u, m, r = (None, None, None) if factors is None else factors
      if r is None or math.prod(np.broadcast_shapes(jnp.shape(r), shape)) >= y.size:
        y = y * scale
      else:
        mul = r * scale
        y, bias = u * mul, (0 if bias is None else bias) - (0 if m is None else m * mul)
    return y if bias is None else y + bias


def matches(variable_filter, name: str) -> bool:
  """Flax linen's `variable_filter`: empty or None selects all; else any substring of `name`."""
  if isinstance(variable_filter, str):
    variable_filter = (variable_filter,)
  return not variable_filter or any(f in name for f in variable_filter)


def missing_kernel_error(layer, variable_filter, names) -> ValueError:
  return ValueError(
      f"{type(layer).__name__} has no variable selected by variable_filter={variable_filter!r} "
      f"to normalize (its variables: {sorted(names)}); pass variable_filter=... naming its "
      f"weights, e.g. {{'kernel'}}.")
