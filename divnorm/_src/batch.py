"""Batch normalization (Ioffe & Szegedy, 2015) with running statistics as explicit state.

A = B = every axis but the feature axes (the batch, and the spatial positions of a CNN).
In training the batch statistics normalize and update moving averages; in evaluation the
moving averages normalize. Under ``jit`` with a batch-sharded input the statistics are
global by themselves; inside ``shard_map`` pass the mesh axis as `axis_name`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from divnorm._src.checks import (
  Bool,
  Int,
  check_bool,
  check_broadcasts,
  check_floating_dtype,
  check_input,
  check_int,
  check_mask,
  check_momentum,
  check_nonempty,
  check_sigma,
  describe,
)
from divnorm._src.core import normalize_factors, shifted_input
from divnorm._src.fields import Field, resolve_axes, resolve_field
from divnorm._src.reductions import field_count, select, stat_dtype
from divnorm._src.statistics import inverse_scale, stats_shape


class BatchStats(NamedTuple):
  """Moving averages of per-feature batch statistics (biased variance, as in Flax)."""

  mean: jax.Array
  var: jax.Array


_INIT = {"BatchStats": "batch_stats_init", "MeanStats": "mean_stats_init"}


def _feature_axes(feature_axes: int | Sequence[int], ndim: int) -> tuple[int, ...]:
  return resolve_axes(feature_axes, ndim, role="feature_axes")


def feature_shape(x_or_shape, feature_axes: int | Sequence[int], name: str) -> tuple[int, ...]:
  """The shape of per-feature statistics for inputs like `x_or_shape` (an array or a shape)."""
  shape = getattr(x_or_shape, "shape", x_or_shape)
  if not isinstance(shape, tuple | list):
    raise TypeError(
        f"{name}: x_or_shape={describe(x_or_shape)} is neither an array nor a shape; pass a "
        f"batch like the ones to normalize, or its shape, e.g. {name}(x) or {name}((32, 10)).")
  shape = tuple(check_int(n, "x_or_shape", context=name, minimum=0) for n in shape)
  return tuple(shape[a] for a in _feature_axes(feature_axes, len(shape)))


def check_state_dtype(dtype, name: str):
  """`dtype` itself, if floating (`check_floating_dtype`, its error naming `name`)."""
  check_floating_dtype(dtype, "dtype", context=name,
                       hint=" running statistics are averages: use e.g. dtype=jnp.float32.")
  return dtype


def batch_stats_init(
    x_or_shape, *, feature_axes: Int | Sequence[Int] = -1, dtype=jnp.float32
) -> BatchStats:
  """Initial running statistics (mean 0, variance 1) for inputs like `x_or_shape`."""
  features = feature_shape(x_or_shape, feature_axes, "batch_stats_init")
  dtype = check_state_dtype(dtype, "batch_stats_init")
  return BatchStats(jnp.zeros(features, dtype), jnp.ones(features, dtype))


def check_stats(stats, kind: type, x: jax.Array, features: tuple[int, ...], feature_axes,
                name: str) -> tuple[int, ...]:
  """`stats` must be a `kind` (`BatchStats`, `MeanStats`) of floating per-feature arrays.

  A bare ``(mean, var)`` tuple or Flax's ``{"mean": ..., "var": ...}`` dict is refused
  rather than converted: the functions return a `kind`, and a state that changes its type
  between steps breaks ``lax.scan`` and ``jit`` caches. Returns the features' shape.
  """
  init = _INIT[kind.__name__]
  if not isinstance(stats, kind):
    wrap = ", ".join(kind._fields)
    raise TypeError(
        f"{name}: stats must be a divnorm.{kind.__name__}, got {describe(stats)} "
        f"({type(stats).__name__}); create them with divnorm.{init}(x, feature_axes=...) and "
        f"pass the returned stats back in each step (to wrap arrays you hold: "
        f"divnorm.{kind.__name__}({wrap})).")
  shape = tuple(x.shape[a] for a in features)
  for field, value in zip(stats._fields, stats, strict=True):
    if tuple(jnp.shape(value)) != shape:
      raise ValueError(
          f"{name}: stats.{field} has shape {tuple(jnp.shape(value))} but x of shape "
          f"{x.shape} has features {shape} on axes {features}; create the statistics with "
          f"{init}(x, feature_axes={feature_axes!r}).")
    if not jnp.issubdtype(jnp.result_type(value), jnp.floating):
      raise TypeError(
          f"{name}: stats.{field} has dtype {jnp.result_type(value)}; running statistics are "
          f"floating: create them with {init}(x, feature_axes={feature_axes!r}).")
  return shape


def ema(old: jax.Array, batch: jax.Array, momentum, seen=None) -> jax.Array:
  """``momentum * old + (1 - momentum) * batch`` in the dtype of `old` (a fixed point of the
  update, so a jitted step never retraces), or in `batch`'s if it is complex (flax's complex
  BatchNorm). A Python momentum stays weakly typed, as in Flax; a NumPy or JAX one is cast
  to that dtype (no promotion, even under strict rules). Where `seen` (`seen_features`) is
  False, the batch had no entry of the feature and `old` stays."""
  if jnp.iscomplexobj(batch):
    old = old.astype(batch.dtype)
  momentum = check_broadcasts(momentum, old.shape, "momentum", "the running statistics' shape")
  if not isinstance(momentum, int | float):
    momentum = jnp.asarray(momentum).astype(old.dtype)
  new = momentum * old + (1.0 - momentum) * batch.reshape(old.shape).astype(old.dtype)
  return new if seen is None else jnp.where(seen, new, old)


def seen_features(mask, shape: tuple[int, ...], features: tuple[int, ...], axis_name=None):
  """Per feature (the running statistics' shape): whether the batch has a masked-in entry of
  it (over `axis_name` too); None without a mask, where every feature has its entries."""
  if mask is None:
    return None
  reduction = Field(tuple(a for a in range(len(shape)) if a not in features), ())
  count = field_count(shape, reduction, mask=jnp.broadcast_to(mask, shape), axis_name=axis_name)
  return (count > 0).reshape(tuple(shape[a] for a in features))


def running_var(var: jax.Array, dt) -> jax.Array:
  """A stored variance in `dt`, clamped at 0.

  A running variance is >= 0 by construction, but one restored from a damaged checkpoint or
  written by hand may not be, and ``rsqrt`` of a negative is NaN (flax issue 1491). Flax
  clamps batch variances at 0 in the same way.
  """
  return jnp.maximum(var.astype(dt), jnp.zeros((), dt))


def batch_norm(
    x: ArrayLike,
    stats: BatchStats,
    *,
    training: Bool,
    feature_axes: Int | Sequence[Int] = -1,
    momentum: ArrayLike = 0.99,
    sigma: ArrayLike = 0.0,
    axis_name=None,
    mask: ArrayLike | None = None,
    return_centered: Bool = False,
    fast_variance: Bool | None = None,
) -> tuple[Any, BatchStats]:
  """Batch normalization of `x` with running statistics `stats`.

  Args:
    x: ``[B, ..., C]``; statistics reduce every axis but `feature_axes`.
    stats: a `BatchStats` from `batch_stats_init` (shape of the feature axes). A bare
      ``(mean, var)`` pair is refused: wrap it, ``BatchStats(mean, var)``. In evaluation a
      negative stored variance (a damaged checkpoint) counts as 0.
    training: a bool. True normalizes with the batch's statistics and updates `stats`;
      False normalizes with `stats` and returns them unchanged. Under ``jit`` it must be
      static.
    feature_axes: axes that keep their own statistics.
    momentum: ``new = momentum * old + (1 - momentum) * batch`` (Flax's convention; the
      paper's code uses 0.9).
    sigma: smoothing term; Flax's ``epsilon`` is ``sigma ** 2``.
    axis_name: also average over this named axis (``shard_map``); not needed under ``jit``.
    mask: boolean, broadcastable to `x`; statistics use only its True entries. A feature
      with none keeps its running statistics.
    return_centered: return ``(y, v)`` in place of ``y``.
    fast_variance: ``True``: one-pass batch statistics, as Flax's default
      (``use_fast_variance=True``), but sums of ``x - k`` and ``(x - k)^2`` around a shift
      ``k`` from the data, accurate at large offsets where Flax's ``E[x^2] - E[x]^2`` is
      not; ``None`` (default) or ``False``: two-pass (see `divnorm.normalize`).

  Returns:
    ``(y, new_stats)``, or ``((y, v), new_stats)`` with `return_centered`.
  """
  return checked_batch_norm(
      x, stats, training=training, feature_axes=feature_axes, momentum=momentum, sigma=sigma,
      axis_name=axis_name, mask=mask, return_centered=return_centered,
      fast_variance=fast_variance, name="batch_norm")


def checked_batch_norm(x, stats, *, training, feature_axes, momentum, sigma, axis_name, mask,
                       return_centered, fast_variance, name: str, source=None):
  """`batch_norm`, whose errors name the function that the user called, `name`. `source`:
  the narrower values whose float32 conversion `x` is (`batch_norm_factors`), for a caller
  that also normalizes `x` otherwise (its gradient then rounded once)."""
  x = check_input(x)
  training = check_bool(training, "training")
  return_centered = check_bool(return_centered, "return_centered")
  if fast_variance is not None:  # checked in evaluation too, where it picks nothing
    check_bool(fast_variance, "fast_variance")
  features = _feature_axes(feature_axes, x.ndim)
  check_stats(stats, BatchStats, x, features, feature_axes, name)
  reduction = tuple(a for a in range(x.ndim) if a not in features)
  sigma = check_sigma(sigma, stats_shape(x.shape, resolve_field(reduction, x.ndim)))
  mask = check_mask(mask, x.shape)
  (y, v, _), stats = batch_norm_factors(
      x.astype(stat_dtype(x.dtype)), stats, training=training, features=features,
      momentum=momentum, sigma=sigma, mask=mask, axis_name=axis_name,
      fast_variance=fast_variance, name=name, source=x if source is None else source)
  y = y.astype(x.dtype)
  return ((y, v.astype(x.dtype)) if return_centered else y), stats


def batch_norm_factors(x: jax.Array, stats: BatchStats, *, training: bool,
                       features: tuple[int, ...], momentum, sigma, mask=None, axis_name=None,
                       fast_variance: bool | None = None, name: str = "batch_norm",
                       source: jax.Array | None = None):
  """``((y, v, (u, m, r)), new stats)``: `batch_norm` of `x` (already in its statistics
  dtype) with ``y = v * r = (u - m) * r``, `m` (None: 0) and `r` at the statistics' size, as
  `core.normalize_factors` gives them for a layer's fold of its affine step. An empty batch
  is an error that names the caller, `name`. `source`: `x`'s narrower values, which the
  batch statistics read (`core.normalize_factors`).

  Complex `x` as flax's BatchNorm: a complex mean and the variance ``E[|x - E[x]|^2]``.
  """
  check_momentum(momentum)
  field = Field(tuple(a for a in range(x.ndim) if a not in features), ())
  shape = tuple(n if a in features else 1 for a, n in enumerate(x.shape))
  if training:
    check_nonempty(x, field.whole, name)
  if training and not jnp.iscomplexobj(x):
    y, v, r, batch = normalize_factors(x, field, sigma=sigma, mask=mask, axis_name=axis_name,
                                       fast_variance=fast_variance, source=source)
    seen = seen_features(mask, x.shape, features, axis_name)
    stats = BatchStats(ema(stats.mean, batch.shift + batch.mean, momentum, seen),
                       ema(stats.var, batch.var, momentum, seen))
    u = shifted_input(x, x if source is None else source, batch.shift)
    return (y, v, (u, batch.mean, r)), stats
  if training:  # the batch statistics of the real and imaginary parts
    re, im = (normalize_factors(part, field, sigma=sigma, mask=mask, axis_name=axis_name,
                                fast_variance=fast_variance)[3]
              for part in (jnp.real(x), jnp.imag(x)))
    mean, var = lax.complex(re.shift + re.mean, im.shift + im.mean), re.var + im.var
    seen = seen_features(mask, x.shape, features, axis_name)
    stats = BatchStats(ema(stats.mean, mean, momentum, seen), ema(stats.var, var, momentum, seen))
  else:
    mean, var = stats
  r = inverse_scale(running_var(var.reshape(shape), jnp.real(x).dtype), sigma)
  v = select(x - mean.reshape(shape).astype(x.dtype), mask)
  return (select(v * r, mask), v, (v, None, r)), stats
