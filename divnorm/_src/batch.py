"""Batch normalization (Ioffe & Szegedy, 2015) with running statistics as explicit state.

A = B = every axis but the feature axes (the batch, and the spatial positions of a CNN).
In training the batch statistics normalize and update moving averages; in evaluation the
moving averages normalize. Under ``jit`` with a batch-sharded input the statistics are
global by themselves; inside ``shard_map`` pass the mesh axis as `axis_name`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from divnorm._src.checks import (
  check_input,
  check_mask,
  check_momentum,
  check_nonempty,
  check_sigma,
)
from divnorm._src.core import normalized
from divnorm._src.fields import resolve_field
from divnorm._src.reductions import select, stat_dtype
from divnorm._src.statistics import pick_statistics, scale, stats_shape


class BatchStats(NamedTuple):
  """Moving averages of per-feature batch statistics (biased variance, as in Flax)."""

  mean: jax.Array
  var: jax.Array


def _feature_axes(feature_axes: int | Sequence[int], ndim: int) -> tuple[int, ...]:
  return resolve_field(feature_axes, ndim, role="feature_axes").whole


def batch_stats_init(
    x_or_shape, *, feature_axes: int | Sequence[int] = -1, dtype=jnp.float32
) -> BatchStats:
  """Initial running statistics (mean 0, variance 1) for inputs like `x_or_shape`."""
  shape = tuple(getattr(x_or_shape, "shape", x_or_shape))
  features = tuple(shape[a] for a in _feature_axes(feature_axes, len(shape)))
  return BatchStats(jnp.zeros(features, dtype), jnp.ones(features, dtype))


def batch_norm(
    x: jax.Array,
    stats: BatchStats,
    *,
    training: bool,
    feature_axes: int | Sequence[int] = -1,
    momentum: float = 0.99,
    sigma=0.0,
    axis_name=None,
    mask: jax.Array | None = None,
    return_centered: bool = False,
    fast_variance: bool | None = None,
):
  """Batch normalization of `x` with running statistics `stats`.

  Args:
    x: ``[B, ..., C]``; statistics reduce every axis but `feature_axes`.
    stats: running statistics from `batch_stats_init` (shape of the feature axes).
    training: True normalizes with the batch's statistics and updates `stats`; False
      normalizes with `stats` and returns them unchanged.
    feature_axes: axes that keep their own statistics.
    momentum: ``new = momentum * old + (1 - momentum) * batch`` (Flax's convention; the
      paper's code uses 0.9).
    sigma: smoothing term; Flax's ``epsilon`` is ``sigma ** 2``.
    axis_name: also average over this named axis (``shard_map``); not needed under ``jit``.
    mask: boolean, broadcastable to `x`; statistics use only its True entries.
    return_centered: return ``(y, v)`` in place of ``y``.
    fast_variance: ``True``: one-pass ``E[x^2] - E[x]^2`` batch variance, as Flax's
      default (``use_fast_variance=True``); ``None`` (default) or ``False``: two-pass
      (see `divnorm.normalize`).

  Returns:
    ``(y, new_stats)``, or ``((y, v), new_stats)`` with `return_centered`.
  """
  x = check_input(x)
  features = _feature_axes(feature_axes, x.ndim)
  reduction = tuple(a for a in range(x.ndim) if a not in features)
  feature_shape = tuple(x.shape[a] for a in features)
  if tuple(stats.mean.shape) != feature_shape or tuple(stats.var.shape) != feature_shape:
    raise ValueError(
        f"stats have shapes {tuple(stats.mean.shape)}/{tuple(stats.var.shape)} but x of shape "
        f"{x.shape} has features {feature_shape} on axes {features}; create them with "
        f"batch_stats_init(x, feature_axes={feature_axes!r}).")
  check_momentum(momentum)
  field = resolve_field(reduction, x.ndim)
  sigma = check_sigma(sigma, stats_shape(x.shape, field))
  mask = check_mask(mask, x.shape)
  dt = stat_dtype(x.dtype)
  if training:
    check_nonempty(x, reduction, "batch_norm")
    y, v, batch = normalized(
        x.astype(dt), jnp.asarray(sigma, dt), mask, pick_statistics(field, field, fast_variance),
        field, field, "valid", axis_name)
    mean, var = batch.shift + batch.mean, batch.var
    keep = stats.mean.dtype
    # The batch statistic is cast to the state's dtype first: the state's dtype is a fixed
    # point of the update (no retracing), also for float64 inputs under strict promotion.
    stats = BatchStats(
        momentum * stats.mean + (1.0 - momentum) * mean.reshape(feature_shape).astype(keep),
        momentum * stats.var + (1.0 - momentum) * var.reshape(feature_shape).astype(keep),
    )
  else:
    bshape = [1] * x.ndim
    for a in features:
      bshape[a] = x.shape[a]
    v = select(x.astype(dt) - stats.mean.astype(dt).reshape(bshape), mask)
    y = select(scale(v, stats.var.astype(dt).reshape(bshape), sigma), mask)
  y = y.astype(x.dtype)
  return ((y, v.astype(x.dtype)) if return_centered else y), stats
