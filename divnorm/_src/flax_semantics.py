"""Flax's module semantics on divnorm's functions: axes, dtypes, epsilon, weight wrappers.

Pure functions shared by `divnorm._src.linen` and `divnorm._src.nnx` (no Flax import):
the modules own the parameters and call these, so a linen module and its nnx twin compute
the same values from the same variables. The statistics come from the functional core
(`normalize`, `batch_norm`, `rms_norm`); what lives here is how Flax's arguments map onto
it (which axes, which dtypes, ``epsilon == sigma**2``) and Flax's power iteration.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from divnorm._src.batch import BatchStats, batch_norm
from divnorm._src.checks import check_mask
from divnorm._src.core import normalize
from divnorm._src.presets import rms_norm

Axes = int | Sequence[int]


# ---- arguments -------------------------------------------------------------------------


def canonical_axes(axes: Axes | None, ndim: int, name: str = "axes") -> tuple[int, ...]:
  """Sorted, deduplicated, non-negative axes (Flax's convention); an error if out of range."""
  if axes is None:
    return ()
  if not isinstance(axes, Iterable):
    axes = (axes,)
  out = set()
  for a in axes:
    if isinstance(a, bool) or not isinstance(a, int | np.integer):
      raise TypeError(f"{name}={axes!r} must be ints (axes of the input).")
    if not -ndim <= a < ndim:
      raise ValueError(f"{name}={axes!r} has axis {a}, out of range for rank {ndim}.")
    out.add(int(a) % ndim)
  return tuple(sorted(out))


def resolve_sigma(module: str, epsilon, sigma, default_epsilon: float):
  """The smoothing term from Flax's `epsilon` or the paper's `sigma` (``epsilon == sigma**2``).

  ``epsilon`` left at Flax's default counts as not given, so ``sigma=...`` alone is the
  common divnorm spelling; both given is an error.
  """
  if sigma is None:
    if isinstance(epsilon, jax.Array | np.ndarray):
      return jnp.sqrt(epsilon)
    if not (isinstance(epsilon, int | float) and math.isfinite(epsilon) and epsilon >= 0):
      raise ValueError(f"{module}: epsilon={epsilon!r} must be a finite number >= 0.")
    return math.sqrt(epsilon)
  if epsilon != default_epsilon:
    raise ValueError(
        f"{module} got epsilon={epsilon!r} and sigma={sigma!r}: they are two spellings of one "
        f"setting (epsilon == sigma**2); pass only one, e.g. epsilon={epsilon!r} (Flax's) or "
        f"sigma={sigma!r} (the paper's).")
  return sigma


def resolve_alias(module: str, flax_name: str, flax_value, flax_default, alias: str, value):
  """Flax's argument, or divnorm's alias of it (an error if both are set and differ)."""
  if value is None:
    return flax_value
  if flax_value != flax_default and flax_value != value:
    raise ValueError(
        f"{module} got {flax_name}={flax_value!r} and {alias}={value!r}, two names of one "
        f"argument; pass only {flax_name}=... (Flax's name).")
  return value


def fast_variance_mode(use_fast_variance: bool, fast_variance: bool | None):
  """The core's `fast_variance` for Flax's `use_fast_variance` (see `divnorm.normalize`).

  Flax's True (its default) maps to divnorm's default statistics (None), which keep
  two-pass accuracy at any offset; ``fast_variance=True`` is exactly Flax's one-pass formula.
  """
  if fast_variance is not None:
    return fast_variance
  return None if use_fast_variance else False


def check_axis_index_groups(module: str, axis_index_groups) -> None:
  if axis_index_groups is not None:
    raise NotImplementedError(
        f"{module}: axis_index_groups is not supported by divnorm's statistics (Flax supports "
        f"it under pmap only); normalize each device group in its own mapped axis, e.g. a "
        f"shard_map over a sub-mesh, and pass axis_name=... for it.")


def axis_name_bound(axis_name) -> bool:
  """Whether every name in `axis_name` is bound (inside ``shard_map``, ``pmap``, ``vmap``)."""
  if axis_name is None:
    return False
  names = axis_name if isinstance(axis_name, tuple | list) else (axis_name,)
  try:
    for name in names:
      lax.axis_size(name)
  except NameError:
    return False
  return True


# ---- dtypes ----------------------------------------------------------------------------


def stats_dtype(x_dtype, dtype) -> np.dtype:
  """Flax's statistics dtype: `dtype` (or the input's) promoted to at least float32."""
  with jax.numpy_dtype_promotion("standard"):
    return np.dtype(jnp.promote_types(x_dtype if dtype is None else dtype, jnp.float32))


def result_dtype(*arrays, dtype=None) -> np.dtype:
  """Flax's output dtype: `dtype`, else the promoted dtype of `arrays` (made inexact)."""
  if dtype is not None:
    return np.dtype(dtype)
  with jax.numpy_dtype_promotion("standard"):
    out = jnp.result_type(*[jnp.asarray(a).dtype for a in arrays if a is not None])
    if not jnp.issubdtype(out, jnp.inexact):
      out = jnp.promote_types(jnp.float32, out)
  return np.dtype(out)


def promoted(a: jax.Array, *dtypes) -> jax.Array:
  with jax.numpy_dtype_promotion("standard"):
    return a.astype(jnp.result_type(a.dtype, *dtypes))


# ---- activation normalizers ------------------------------------------------------------


def broadcast_mask(mask, shape) -> jax.Array | None:
  return check_mask(mask, tuple(shape))


def masked_input(x: jax.Array, mask) -> tuple[jax.Array, jax.Array | None]:
  """`x` with its masked-out entries selected away (a NaN there must change nothing).

  The core's outputs there are 0 whatever they hold; selecting first keeps a NaN or inf
  out of every statistic on any path.
  """
  mask = broadcast_mask(mask, x.shape)
  if mask is None:
    return x, None
  return jnp.where(mask, x, jnp.zeros((), x.dtype)), mask


def normalize_over(
    x: jax.Array,
    reduction_axes: tuple[int, ...],
    *,
    sigma,
    mask,
    axis_name,
    fast_variance,
    center: bool = True,
) -> tuple[jax.Array, jax.Array]:
  """``(y, v)``: `x` normalized over `reduction_axes` (layer norm, or RMS if not `center`).

  `x` is already in the statistics dtype. With no axis to reduce (Flax's InstanceNorm of a
  rank-2 input) each entry is its own field: ``v = x - x`` and ``y = v``, Flax's zeros.
  """
  x, mask = masked_input(x, mask)
  if not reduction_axes:
    v = x - x
    return v, v
  if not center:
    if axis_name is not None:
      raise NotImplementedError(
          "RMSNorm with axis_name is not supported by divnorm's rms_norm yet; average "
          "across devices under jit with sharded inputs (no axis_name needed).")
    return rms_norm(x, reduction_axes=reduction_axes, sigma=sigma, mask=mask), x
  return normalize(x, reduction_axes, sigma=sigma, mask=mask, axis_name=axis_name,
                   return_centered=True, fast_variance=fast_variance)


def group_normalize(x, reduction_axes: tuple[int, ...], num_groups: int, **kwargs):
  """Group norm over the last axis split into `num_groups` groups (Flax's GroupNorm).

  `reduction_axes` must include the last axis; the statistics reduce the others in it and
  the channels of each group.
  """
  channels = x.shape[-1]
  grouped = x.shape[:-1] + (num_groups, channels // num_groups)
  mask = kwargs.pop("mask")
  if mask is not None:
    mask = broadcast_mask(mask, x.shape).reshape(grouped)
  axes = tuple(reduction_axes[:-1]) + (x.ndim,)
  y, v = normalize_over(x.reshape(grouped), axes, mask=mask, **kwargs)
  return y.reshape(x.shape), v.reshape(x.shape)


def check_groups(num_groups, group_size, channels: int) -> int:
  """Flax's GroupNorm checks: exactly one of num_groups and group_size, dividing channels."""
  if (num_groups is None) == (group_size is None):
    raise ValueError(
        "Either `num_groups` or `group_size` should be specified. If `group_size` is to be "
        "specified, pass `num_groups=None` as argument to override the default `num_groups` "
        f"value of 32 (got num_groups={num_groups}, group_size={group_size}).")
  divisors = [d for d in range(1, channels + 1) if channels % d == 0]
  if group_size is not None:
    if group_size <= 0 or channels % group_size:
      raise ValueError(
          f"Number of channels ({channels}) is not multiple of the group size ({group_size}); "
          f"try one of {divisors}.")
    return channels // group_size
  if not isinstance(num_groups, int) or num_groups <= 0 or channels % num_groups:
    raise ValueError(
        f"Number of groups ({num_groups}) does not divide the number of channels "
        f"({channels}); try one of {divisors}.")
  return num_groups


def group_reduction_axes(reduction_axes, ndim: int) -> tuple[int, ...]:
  axes = canonical_axes(
      tuple(range(1, ndim - 1)) + (-1,) if reduction_axes is None else reduction_axes, ndim,
      "reduction_axes")
  if not axes or axes[-1] != ndim - 1:
    raise ValueError(
        f"The reduction axes must include the final dimension as this is assumed to be the "
        f"feature axis (got reduction_axes={reduction_axes!r} for rank {ndim}).")
  return axes


def group_layout(x, mask, channel_axis, reduction_axes):
  """``(x, mask, reduction, channel)``: `x` and `mask` with divnorm's `channel_axis` moved
  last (Flax's group-norm layout) and Flax's group-norm reduction axes on that layout;
  move the output back with ``jnp.moveaxis(y, -1, channel)``."""
  x = jnp.asarray(x)
  channel = canonical_axes(channel_axis, x.ndim, "channel_axis")[0]
  if mask is not None:
    mask = jnp.moveaxis(broadcast_mask(mask, x.shape), channel, -1)
  x = jnp.moveaxis(x, channel, -1)
  return x, mask, group_reduction_axes(reduction_axes, x.ndim), channel


def instance_reduction_axes(feature_axes, ndim: int) -> tuple[int, ...]:
  features = canonical_axes(feature_axes, ndim, "feature_axes")
  if 0 in features:
    raise ValueError(
        "The channel axes cannot include the leading dimension as this is assumed to be the "
        f"batch axis (got feature_axes={feature_axes!r}).")
  return tuple(a for a in range(1, ndim) if a not in features)


def batch_normalize(
    x: jax.Array,
    stats: BatchStats,
    *,
    training: bool,
    feature_axes: tuple[int, ...],
    momentum: float,
    sigma,
    mask,
    axis_name,
    fast_variance,
) -> tuple[tuple[jax.Array, jax.Array], BatchStats]:
  """Flax's BatchNorm on divnorm's `batch_norm`: ``((y, v), new running stats)``.

  `x` is already in the statistics dtype. In evaluation the mask is not used (as in Flax).
  Complex `x` follows Flax's definition: the mean is complex and the variance is
  ``E[|x - E[x]|^2]``, the sum of the variances of the real and imaginary parts.
  """
  if training:
    x, mask = masked_input(x, mask)
  if jnp.iscomplexobj(x):
    return _complex_batch_normalize(
        x, stats, training=training, feature_axes=feature_axes, momentum=momentum,
        sigma=sigma, mask=mask, axis_name=axis_name, fast_variance=fast_variance)
  return batch_norm(
      x, stats, training=training, feature_axes=feature_axes, momentum=momentum, sigma=sigma,
      mask=mask if training else None, axis_name=axis_name, return_centered=True,
      fast_variance=fast_variance)


def _complex_batch_normalize(x, stats, *, training, feature_axes, momentum, sigma, mask,
                             axis_name, fast_variance):
  bshape = [1] * x.ndim
  for a in feature_axes:
    bshape[a] = x.shape[a]
  if training:
    parts = []
    for part in (jnp.real(x), jnp.imag(x)):
      zero = BatchStats(jnp.zeros(stats.var.shape, part.dtype),
                        jnp.zeros(stats.var.shape, part.dtype))
      _, batch = batch_norm(part, zero, training=True, feature_axes=feature_axes, momentum=0.0,
                            mask=mask, axis_name=axis_name, fast_variance=fast_variance)
      parts.append(batch)
    mean = lax.complex(parts[0].mean, parts[1].mean)
    var = parts[0].var + parts[1].var
    new_mean = promoted(stats.mean, mean.dtype)
    stats = BatchStats(momentum * new_mean + (1.0 - momentum) * mean,
                       momentum * stats.var + (1.0 - momentum) * var.astype(stats.var.dtype))
  else:
    mean, var = stats.mean, stats.var
  v = x - promoted(mean, x.dtype).reshape(bshape).astype(x.dtype)
  real = jnp.real(x).dtype
  inv = lax.rsqrt(var.astype(real).reshape(bshape) + jnp.square(jnp.asarray(sigma, real)))
  y = v * inv.astype(x.dtype)
  if mask is not None and training:
    mask = broadcast_mask(mask, x.shape)
    zero = jnp.zeros((), x.dtype)
    y, v = jnp.where(mask, y, zero), jnp.where(mask, v, zero)
  return (y, v), stats


def affine(y: jax.Array, scale, bias, feature_axes: tuple[int, ...]) -> jax.Array:
  """``y * scale + bias`` with the per-feature parameters broadcast over `feature_axes`."""
  bshape = [1] * y.ndim
  for a in feature_axes:
    bshape[a] = y.shape[a]
  if scale is not None:
    y = promoted(y, scale.dtype)
    y = y * jnp.reshape(scale, bshape).astype(y.dtype)
  if bias is not None:
    y = promoted(y, bias.dtype)
    y = y + jnp.reshape(bias, bshape).astype(y.dtype)
  return y


def feature_shape(shape, feature_axes: tuple[int, ...]) -> tuple[int, ...]:
  return tuple(shape[a] for a in feature_axes)


# ---- weight wrappers -------------------------------------------------------------------


def missing_kernel_error(layer, variable_filter, names) -> ValueError:
  return ValueError(
      f"{type(layer).__name__} has no variable selected by variable_filter={variable_filter!r} "
      f"to normalize (its variables: {sorted(names)}); pass variable_filter=... naming its "
      f"weights, e.g. {{'kernel'}}.")


def path_name(prefix: str, path) -> str:
  """Flax's variable name of a wrapped weight: the layer's name, then its '/'-joined path."""
  return prefix + "/" + jax.tree_util.keystr(tuple(path), simple=True, separator="/")


def matches(filter_names, name: str) -> bool:
  """Flax linen's `variable_filter`: empty or None selects all; else any substring of `name`."""
  if not filter_names:
    return True
  if isinstance(filter_names, str):
    filter_names = (filter_names,)
  return any(f in name for f in filter_names)


def weight_feature_axes(feature_axes, ndim: int) -> tuple[int, ...]:
  return () if feature_axes is None else canonical_axes(feature_axes, ndim, "feature_axes")


def weight_normalized(value: jax.Array, scale, *, feature_axes, epsilon, dtype) -> jax.Array:
  """``scale * value / sqrt(sum(value^2) + epsilon)``, the sum over the non-feature axes.

  In at least float32; the result has Flax's dtype (`dtype`, else value's and scale's).
  """
  value = jnp.asarray(value)
  features = weight_feature_axes(feature_axes, value.ndim)
  reduction = tuple(a for a in range(value.ndim) if a not in features)
  dt = stats_dtype(value.dtype, None if scale is None else result_dtype(value, scale))
  v = value.astype(dt)
  w = v * lax.rsqrt(jnp.sum(v * v, axis=reduction, keepdims=True) + np.asarray(epsilon, dt))
  if scale is not None:
    bshape = [1] * value.ndim
    for a in features:
      bshape[a] = value.shape[a]
    w = w * jnp.reshape(scale, bshape).astype(dt)
  return w.astype(result_dtype(value, scale, dtype=dtype))


def spectral_matrix_shape(value, error_on_non_matrix: bool) -> tuple[int, int] | None:
  """The matrix a weight is viewed as, or None for a scalar or vector (left unchanged)."""
  if value.ndim <= 1:
    return None
  if value.ndim > 2 and error_on_non_matrix:
    raise ValueError(
        f"Input is {value.ndim}D but error_on_non_matrix is True; pass "
        f"error_on_non_matrix=False to flatten its leading axes into the matrix's rows.")
  return (math.prod(value.shape[:-1]), value.shape[-1])


def spectral_normalized(value: jax.Array, u: jax.Array, *, n_steps: int, epsilon, dtype):
  """Flax's spectral normalization of one weight: ``(value / sigma, new_u, sigma)``.

  `n_steps` power iterations from ``u`` (``[1, out]``) on the weight as a ``[rows, out]``
  matrix, under ``stop_gradient``; ``sigma = v W u^T`` carries the gradient.
  """
  value = jnp.asarray(value)
  dt = stats_dtype(value.dtype, result_dtype(value, u))
  mat = value.reshape(-1, value.shape[-1]).astype(dt)
  eps = np.asarray(epsilon, dt)

  def unit(a):
    return a * lax.rsqrt(jnp.sum(a * a) + eps)

  if n_steps < 1:
    raise ValueError(f"n_steps={n_steps} must be >= 1 here (n_steps=0 leaves weights as they are).")
  u0 = jnp.asarray(u).astype(dt)
  for _ in range(n_steps):
    v0 = unit(u0 @ mat.T)
    u0 = unit(v0 @ mat)
  u0, v0 = lax.stop_gradient(u0), lax.stop_gradient(v0)
  sigma = (v0 @ mat @ u0.T)[0, 0]
  w = (mat / jnp.where(sigma != 0, sigma, jnp.ones((), dt))).reshape(value.shape)
  return w.astype(result_dtype(value, u, dtype=dtype)), u0, sigma


def as_dtype_of(new: jax.Array, old: Any) -> jax.Array:
  """`new` in the dtype of the variable it replaces, so state dtypes never change."""
  return jnp.asarray(new).astype(jnp.asarray(old).dtype)
