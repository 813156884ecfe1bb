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

from divnorm._src import gdn
from divnorm._src.batch import BatchStats, batch_norm_factors
from divnorm._src.checks import (
  axis_index,
  channel_axis_index,
  check_axis_name,
  check_bool,
  check_device_groups,
  check_floating_dtype,
  check_int,
  check_learn_sigma,
  check_nonnegative,
  check_positive,
  check_scalar,
  check_sigma,
  fewer_entries,
)
from divnorm._src.core import normalize_factors, shifted_input
from divnorm._src.fields import Field, grouped_field
from divnorm._src.presets import group_count
from divnorm._src.reductions import DeviceGroups, plain_field_mean, select, stat_dtype
from divnorm._src.rms import RmsRead, rms_factors, rms_normalized
from divnorm._src.statistics import inverse_scale, stats_shape

Axes = int | Sequence[int]


def canonical_axes(axes: Axes | None, ndim: int, name: str = "axes") -> tuple[int, ...]:
  """Sorted, deduplicated, non-negative axes (flax's convention), or an error naming `name`."""
  axes = () if axes is None else axes if isinstance(axes, Iterable) else (axes,)
  return tuple(sorted({axis_index(a, ndim, name) for a in axes}))


def sigma_of(epsilon, sigma=None, module=None, name: str = "epsilon",
             added_to: str = "the variance"):
  """The core's `sigma` for `epsilon` (any number flax takes, `added_to` something; errors
  name it `name`), or divnorm's `sigma`, with `epsilon` then at its default in `module`'s
  signature."""
  if sigma is not None:
    default = inspect.signature(type(module).__init__).parameters[name].default
    if not (isinstance(epsilon, int | float) and epsilon == default):
      raise ValueError(f"got {name}={epsilon!r} and sigma={sigma!r}: two spellings of one "
                       f"setting ({name} == sigma**2); pass only one.")
    check_nonnegative(sigma, "sigma", f" (the paper's smoothing term: {name} == sigma**2)")
    return sigma
  check_nonnegative(epsilon, name, f" (it is added to {added_to}: {name} == sigma**2)")
  if isinstance(epsilon, jax.Array):
    return jnp.sqrt(epsilon)
  return math.sqrt(epsilon) if np.ndim(epsilon) == 0 else np.sqrt(epsilon)


def epsilon_of(epsilon, sigma=None, module=None, name: str = "epsilon",
               added_to: str = "the variance"):
  """Flax's (or equinox's) `epsilon` as a layer keeps it: checked, or ``sigma**2``."""
  sigma_of(epsilon, name=name, added_to=added_to)
  return epsilon if sigma is None else sigma_of(epsilon, sigma, module, name) ** 2


def log_sigma_init(sigma, dtype) -> jax.Array:
  """A learned sigma is ``exp(log_sigma)``, one per layer, starting from `sigma` > 0."""
  if np.ndim(sigma):
    raise ValueError(f"learn_sigma=True learns one sigma per layer, a scalar; got sigma of shape "
                     f"{np.shape(sigma)}: pass a scalar, e.g. sigma=0.5.")
  check_learn_sigma(sigma)
  return jnp.log(jnp.asarray(sigma, dtype))


def check_options(learn_sigma, l1_alpha, fast_variance=None) -> None:
  """divnorm's own options of a layer, checked (flax's own flags take any truthy value)."""
  check_bool(learn_sigma, "learn_sigma")
  if fast_variance is not None:
    check_bool(fast_variance, "fast_variance")
  check_nonnegative(l1_alpha, "l1_alpha", " (the weight of the L1 penalty)")
  check_scalar(l1_alpha, "l1_alpha", "one weight")


def check_channels(layer, num_features: int, x, channel_axis: int) -> None:
  """`x` has on `channel_axis` the `num_features` channels `layer` was built with."""
  check_features(layer, f"num_features={num_features}", num_features, jnp.shape(x),
                 canonical_axes(channel_axis, jnp.ndim(x), "channel_axis"))


def check_no_sigma(layer, sigma, learn_sigma) -> None:
  """`layer` subtracts the mean only: a `sigma` other than None or 0, or `learn_sigma`, would
  have no effect, so it is an error rather than ignored."""
  if check_bool(learn_sigma, "learn_sigma") or not (
      sigma is None or (np.ndim(sigma) == 0 and sigma == 0)):
    raise ValueError(f"{type(layer).__name__} subtracts the mean only, so sigma={sigma!r} and "
                     f"learn_sigma={learn_sigma!r} would have no effect; leave both unset.")


def shape_of_sizes(num_features, name: str = "num_features") -> tuple[int, ...]:
  """`num_features` (an int, a sequence or other iterable of them for several feature axes,
  as equinox's ``tuple(shape)`` reads it, or None) as a shape."""
  several = isinstance(num_features, Iterable) and not isinstance(num_features, str) and (
      np.ndim(num_features) > 0 or not isinstance(num_features, np.ndarray | jax.Array))
  sizes = () if num_features is None else tuple(num_features) if several else (num_features,)
  return tuple(check_int(n, name, minimum=0, hint=" or a sequence of ints (a shape)")
               for n in sizes)


def check_features(layer, built: str, size, x_shape, axes: tuple[int, ...]) -> None:
  """A ValueError unless x has the features `layer` was `built` with on `axes`: the shape
  `size`, or for an int its size (flax reshapes the parameters)."""
  shape = tuple(x_shape[a] for a in axes)
  if not (math.prod(shape) == size if np.ndim(size) == 0 else shape == tuple(size)):
    raise ValueError(f"{type(layer).__name__} was built with {built} but x of shape "
                     f"{tuple(x_shape)} has features {shape} on axes {axes}; pass inputs with "
                     f"the layer's features, or build one for these.")


def core_options(module, mask, initializing: bool = False) -> dict:
  """The core's arguments for a flax layer's `epsilon` (or `sigma`), `axis_name` and
  `use_fast_variance` (True, flax's default: one-pass; `fast_variance` overrides it)."""
  fast = module.use_fast_variance if module.fast_variance is None else module.fast_variance
  return dict(sigma=sigma_of(module.epsilon, module.sigma, module), mask=mask,
              axis_name=mapped_axis(module, initializing),
              fast_variance=bool(fast), sigma_name="epsilon" if module.sigma is None else "sigma")


def alias(name: str, value, default, other: str, other_value):
  """Flax's argument `name`, or divnorm's alias `other` of it (an error if both are set)."""
  if other_value is not None and value != default and value != other_value:
    raise ValueError(f"got {name}={value!r} and {other}={other_value!r}, two names of one "
                     f"argument; pass only {name}=... (flax's name).")
  return value if other_value is None else other_value


def mapped_axis(module, initializing: bool = False):
  """The mapped axis a layer's statistics pool (`axis_name_of` its `axis_name` and
  `axis_index_groups`; None for a layer without them), which its L1 penalty's mean covers
  too."""
  return axis_name_of(getattr(module, "axis_name", None),
                      getattr(module, "axis_index_groups", None), initializing)


def axis_name_of(axis_name, axis_index_groups, initializing: bool = False):
  """Flax's `axis_name`, in `axis_index_groups` (pmap only, as flax) if given: a
  `DeviceGroups`; None while `initializing` unmapped (flax's BatchNorm)."""
  if axis_name is None or not (initializing or axis_index_groups is not None):
    return axis_name
  axis_name = check_axis_name(axis_name)  # a list as a tuple
  try:  # the mapped axis' size (several names: their product)
    size = math.prod(lax.axis_size(n) for n in (
        axis_name if isinstance(axis_name, tuple) else (axis_name,)))
  except NameError:  # unbound: the collective will say so, unless initializing
    size = None
  groups = None if axis_index_groups is None else check_device_groups(axis_index_groups, size)
  if initializing and size is None:
    return None
  if groups is None:
    return axis_name
  return DeviceGroups(axis_name, groups)


def group_field(shape, num_groups, group_size, reduction_axes, channel_axis: int = -1) -> Field:
  """Flax's GroupNorm: `reduction_axes` (default: all but the batch axis 0), the channel
  axis among them in groups (`fields.grouped_field`: no reshape)."""
  c = (channel_axis_index(channel_axis, len(shape), "GroupNorm") if len(shape) > 1 else
       canonical_axes(channel_axis, len(shape), "channel_axis")[0])  # rank 1: flax's
  axes = canonical_axes(sorted(set(range(1, len(shape))) | {c}) if reduction_axes is None
                        else reduction_axes, len(shape), "reduction_axes")
  if c not in axes and c == len(shape) - 1:  # flax's message
    raise ValueError(
        f"The reduction axes must include the final dimension as this is assumed to be the "
        f"feature axis (got reduction_axes={reduction_axes!r} for an input of rank "
        f"{len(shape)}).")
  if c not in axes:
    raise ValueError(
        f"The reduction axes must include the channel axis {c} (channel_axis={channel_axis!r}), "
        f"whose groups GroupNorm normalizes (got reduction_axes={reduction_axes!r} for an "
        f"input of rank {len(shape)}).")
  size = shape[c] // group_count(num_groups, group_size, shape[c])
  return grouped_field(tuple(a for a in axes if a != c), c, size, shape)


def instance_axes(feature_axes, ndim: int, channel_axis=None) -> tuple[int, ...]:
  """Flax's InstanceNorm: every axis but the batch axis (0) and `feature_axes` (or divnorm's
  alias `channel_axis`, if given: errors name it)."""
  name, axes = ("feature_axes", feature_axes) if channel_axis is None else (
      "channel_axis", channel_axis)
  features = canonical_axes(axes, ndim, name)
  if 0 in features:
    raise ValueError(
        "The channel axes cannot include the leading dimension as this is assumed to be the "
        f"batch axis (got {name}={axes!r}).")
  return tuple(a for a in range(1, ndim) if a not in features)


def function_dtype(x, affine: bool):
  """The `dtype` a layer asks of `divnorm.normalize`: the statistics dtype where an affine
  step follows (the output reaches it unrounded), else None (`x`'s)."""
  return stat_dtype(jnp.asarray(x).dtype) if affine else None


def result_dtype(*arrays, dtype=None) -> np.dtype:
  """Flax's output dtype: `dtype` (inexact, as flax requires), else the promoted dtype of
  `arrays` (made inexact)."""
  if dtype is not None:
    try:
      out = np.dtype(jnp.dtype(dtype))
    except (TypeError, ValueError):
      out = None
    if out is None or not jnp.issubdtype(out, jnp.inexact):
      shown = repr(dtype) if out is None else out
      raise ValueError(f"dtype={shown} is not an inexact dtype (flax's 'Dtype must be "
                       f"inexact'); pass a floating one, e.g. jnp.float32, or None.")
    return out
  with jax.numpy_dtype_promotion("standard"):  # a Python number is weak: it widens nothing
    out = jnp.result_type(*[a for a in arrays if a is not None])
    return np.dtype(out if jnp.issubdtype(out, jnp.inexact) else jnp.float32)


def normalized(x, field: Field, *, sigma, mask, axis_name, fast_variance, center=True,
               dtype=None, sigma_name="sigma"):
  """``(y, v, factors)``: `x` in flax's statistics dtype normalized over `field` by the core
  (`normalize_factors`), or not centered (RMS norm); ``factors = (u, m, r, mask)``,
  ``y = (u - m) * r`` (``m`` None: 0), for `affine` (RMS norm of a narrower `x`:
  an `rms.RmsRead`, and `affine` multiplies by the scale inside its written derivative).
  An empty `field` gives flax's zeros. Complex `x` as flax: a complex mean, the variance
  ``E[|x - E[x]|^2]``. Errors about sigma name it `sigma_name` (flax's `epsilon`)."""
  source = jnp.asarray(x)
  x = source.astype(stat_dtype(source.dtype if dtype is None else dtype))
  if stat_dtype(source.dtype) != x.dtype:
    source = x  # the statistics read `source`: x's own values where x only widens them
  sigma = check_sigma(sigma, stats_shape(x.shape, field), name=sigma_name)
  if jnp.iscomplexobj(x):
    mean = lambda t: plain_field_mean(t, field, mask=mask, axis_name=axis_name)
    v = select(x - lax.complex(mean(x.real), mean(x.imag)) if center else x, mask)
    r = inverse_scale(mean(jnp.square(v.real) + jnp.square(v.imag)), sigma)
    return select(v * r.astype(v.dtype), mask), v, _factors(v, None, r, mask)
  if center:
    y, v, r, stats = normalize_factors(x, field, sigma=sigma, mask=mask, axis_name=axis_name,
                                       fast_variance=fast_variance and bool(field.axes),
                                       source=source)
    return y, v, _factors(shifted_input(x, source, stats.shift), stats.mean, r, mask)
  if source is not x:  # a narrower x: RMS norm's written derivative
    y = rms_normalized(source, sigma, mask, field, axis_name)
    return y, x, RmsRead(source, sigma, field, axis_name, mask)
  v, r = rms_factors(x, field, sigma=sigma, mask=mask, axis_name=axis_name)
  return v * r, v, _factors(v, None, r, mask)


def _factors(u, m, r, mask):
  """``(u, m, r, mask)`` for `affine`'s fold, `u` selected by `mask` (its masked-out
  entries may hold anything, and reach the scale's gradient)."""
  return (u if mask is None else select(u, mask), m, r, mask)


def batch_normalized(x, stats: BatchStats, *, training: bool, feature_axes, momentum, sigma,
                     mask, axis_name, fast_variance, dtype=None, sigma_name="sigma",
                     source=None):
  """``((y, v, factors), new stats)`` as `normalized`: flax's BatchNorm
  (`batch.batch_norm_factors`), with the batch's statistics or the running ones (then
  without the mask, as flax). With no batch axis in `x` (one example under `vmap` with
  `axis_name`, or a rank-1 input), the statistics are two-pass, as `normalized`'s.
  `source`: the narrower values whose float32 conversion `x` is, for a caller that
  normalizes `x` twice (its gradient then rounded once)."""
  source, mask = jnp.asarray(x if source is None else source), mask if training else None
  x = jnp.asarray(x).astype(stat_dtype(source.dtype if dtype is None else dtype))
  sigma = check_sigma(sigma, tuple(n if a in feature_axes else 1 for a, n in enumerate(x.shape)),
                      name=sigma_name)
  local = len(feature_axes) < x.ndim  # else only the mapped axis (or nothing): two-pass
  (y, v, factors), stats = batch_norm_factors(
      x, stats, training=training, features=feature_axes, momentum=momentum, sigma=sigma,
      mask=mask, axis_name=axis_name, fast_variance=fast_variance and local, name="BatchNorm",
      source=source if stat_dtype(source.dtype) == x.dtype else None)
  return (y, v, _factors(*factors, mask)), stats


def affine(y: jax.Array, scale, bias, feature_axes: tuple[int, ...], factors=None):
  """``y * scale + bias`` (each if not None) over `feature_axes`, in flax's dtypes.

  With `factors` ``(u, m, r[, mask])`` (`_factors`), ``y = (u - m) * r`` (``m`` None: 0), where
  ``r * scale`` is smaller than `y`: flax's fold ``u * mul + (bias - m * mul)``,
  ``mul = r * scale``, whose gradient sums at the statistics' size (BENCHMARKS.md, issue
  22); masked-out outputs are `bias` (0 without): ``where(mask, u * mul - m * mul, 0) +
  bias``, whose transpose selects the cotangent once (1.29x flax's time selecting it twice,
  masked LayerNorm). Without the fold, a mask cost 1.33-1.65x (BatchNorm, GroupNorm).
  Not centered (``m`` None: RMS norm), unmasked and not folded, ``(u * scale) * r``: XLA's
  CPU backend then writes the cotangent times ``r`` once for both gradients, where ``(u * r)
  * scale`` broadcasts ``r`` (0.83x its time, RMSNorm over 8x512x768; centered, 1.05-1.29x,
  and masked, 1.20-1.38x: not so).
  """
  shape = tuple(n if a in feature_axes else 1 for a, n in enumerate(y.shape))
  with jax.numpy_dtype_promotion("standard"):
    bias = None if bias is None else jnp.reshape(bias, shape)
    if isinstance(factors, RmsRead):  # RMS norm of a narrower input: the scale inside
      if scale is not None:
        x, sigma, field, axis_name, mask = factors
        scale = jnp.reshape(scale, shape).astype(y.dtype)
        y = rms_normalized(x, sigma, mask, field, axis_name, scale)
      return y if bias is None else y + bias
    if scale is not None:
      scale = jnp.reshape(scale, shape)
      u, m, r, mask = (None,) * 4 if factors is None else (*factors, None)[:4]
      if r is None or not fewer_entries(jnp.broadcast_shapes(jnp.shape(r), shape), y.shape):
        y = y * scale if r is None or m is not None or mask is not None else u * scale * r
      else:
        mul = r * scale
        if mask is None:
          return u * mul + ((0 if bias is None else bias) - (0 if m is None else m * mul))
        inner = u * mul if m is None else u * mul - m * mul
        inner = jnp.where(mask, inner, jnp.zeros((), inner.dtype))
        return inner if bias is None else inner + bias
    return y if bias is None else y + bias


def gdn_init(channels, beta_init, gamma_init, dtype, name: str) -> gdn.GDNParams:
  """`gdn.gdn_init` for a GDN layer, with errors that name its arguments (`name`: channels')."""
  check_int(channels, name, minimum=1)
  dtype = check_floating_dtype(dtype, "param_dtype", hint=" give one, e.g. jnp.float32.")
  check_positive(beta_init, "beta_init", " (the pool's constant; GDN divides by it at x = 0)")
  check_nonnegative(gamma_init, "gamma_init", " (the pool's weights)")
  return gdn.gdn_init(channels, beta=beta_init, gamma=gamma_init, dtype=dtype)


def matches(variable_filter, name: str) -> bool:
  """Flax linen's `variable_filter`: empty or None selects all; else any substring of `name`."""
  if isinstance(variable_filter, str):
    variable_filter = (variable_filter,)
  return not variable_filter or any(f in name for f in variable_filter)


def missing_kernel_error(layer, variable_filter, names) -> ValueError:
  """The ValueError of the weight wrappers (WeightNorm, SpectralNorm, WeightStandardization)
  when `variable_filter` selects none of `layer`'s variable `names`: it lists the names."""
  return ValueError(
      f"{type(layer).__name__} has no variable selected by variable_filter={variable_filter!r} "
      f"to normalize (its variables: {sorted(names)}); pass variable_filter=... naming its "
      f"weights, e.g. {{'kernel'}}.")
