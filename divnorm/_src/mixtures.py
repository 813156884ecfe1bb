"""Batch-norm variants and adaptive mixtures of the core normalizers.

| function              | source                         | what it does                            |
|-----------------------|--------------------------------|-----------------------------------------|
| mean_only_batch_norm  | Salimans & Kingma (2016)       | subtract the batch mean, no division    |
| batch_renorm          | Ioffe (2017)                   | BN corrected toward the moving averages |
| batch_instance_norm   | Nam & Kim (2018)               | ``rho * BN + (1 - rho) * IN``           |
| switchable_norm       | Luo et al. (2019)              | weighted IN, LN and BN statistics       |

All statistics come from `divnorm._src.statistics.moments` and the running
statistics are `divnorm.BatchStats`, so these share every numerical rule of the core.
Where statistics of several fields meet (a mixture, a batch mean against the running one)
they are taken of ``x - k``, one shift `k` from the data (`_data_shift`), so that a large
offset shared by the data costs no digits there either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from divnorm._src.batch import (
  BatchStats,
  batch_norm,
  check_state_dtype,
  check_stats,
  checked_batch_norm,
  ema,
  feature_shape,
  running_var,
  seen_features,
)
from divnorm._src.checks import (
  Bool,
  Int,
  channel_axis_index,
  check_array,
  check_bool,
  check_broadcasts,
  check_finite,
  check_floating_dtype,
  check_input,
  check_mask,
  check_momentum,
  check_nonempty,
  check_nonnegative,
  check_renorm_limits,
  check_sigma,
  check_unit_interval,
)
from divnorm._src.core import normalize_factors
from divnorm._src.fields import Field, resolve_axes, resolve_field
from divnorm._src.reductions import plain_field_mean, select, stat_dtype
from divnorm._src.shift import shift
from divnorm._src.statistics import moments, scale, stats_shape, variance_floor


def _data_shift(x: jax.Array, mask, axis_name) -> jax.Array:
  """One value from the data for all of `x` (the same on every member of `axis_name`),
  under ``stop_gradient`` (`shift.shift` over every axis)."""
  return shift(x, Field(tuple(range(x.ndim)), ()), mask=mask, axis_name=axis_name)


class MeanStats(NamedTuple):
  """Moving average of the per-feature batch mean (mean-only batch norm)."""

  mean: jax.Array


def _features(x, feature_axes) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
  """(feature axes, reduction axes, broadcast shape of a per-feature statistic)."""
  features = resolve_axes(feature_axes, x.ndim, role="feature_axes")
  reduction = tuple(a for a in range(x.ndim) if a not in features)
  bshape = tuple(x.shape[a] if a in features else 1 for a in range(x.ndim))
  return features, reduction, bshape


def mean_stats_init(x_or_shape, *, feature_axes: Int | Sequence[Int] = -1,
                    dtype=jnp.float32) -> MeanStats:
  """Initial running mean (zeros) for inputs like `x_or_shape`."""
  features = feature_shape(x_or_shape, feature_axes, "mean_stats_init")
  return MeanStats(jnp.zeros(features, check_state_dtype(dtype, "mean_stats_init")))


def mean_only_batch_norm(
    x: ArrayLike,
    stats: MeanStats,
    *,
    training: Bool,
    feature_axes: Int | Sequence[Int] = -1,
    momentum: ArrayLike = 0.99,
    axis_name=None,
    mask: ArrayLike | None = None,
    return_centered: Bool = False,
    dtype=None,
) -> tuple[Any, MeanStats]:
  """Mean-only batch normalization (Salimans & Kingma, 2016): ``y = x - E_batch[x]``.

  The companion of weight normalization: centering comes from the batch, scale from the
  weights. The output is its own centered value, so its L1 penalty is ``l1_penalty(y)``.

  Args:
    x: ``[B, ..., C]``; the mean reduces every axis but `feature_axes`.
    stats: a `MeanStats` from `mean_stats_init`.
    training: a (static) bool: True subtracts the batch mean and updates `stats`; False
      subtracts ``stats.mean``.
    feature_axes: axes that keep their own mean.
    momentum: ``new = momentum * old + (1 - momentum) * batch``.
    axis_name: also average over this named axis (``shard_map``).
    mask: boolean, broadcastable to `x`; the mean uses only its True entries, and
      masked-out outputs are 0.
    return_centered: return ``(y, y)`` in place of ``y`` (the output is its centered input),
      as the other normalizers return ``(y, v)``.
    dtype: the outputs' dtype; None: `x`'s (see `divnorm.normalize`).

  Returns:
    ``(y, new_stats)``, or ``((y, y), new_stats)`` with `return_centered`.
  """
  x = check_input(x)
  training = check_bool(training, "training")
  return_centered = check_bool(return_centered, "return_centered")
  features, reduction, bshape = _features(x, feature_axes)
  check_stats(stats, MeanStats, x, features, feature_axes, "mean_only_batch_norm")
  out = x.dtype if dtype is None else check_floating_dtype(dtype, "dtype")
  check_momentum(momentum)
  mask = check_mask(mask, x.shape)
  dt = stat_dtype(x.dtype)
  x32 = x.astype(dt)
  if training:
    check_nonempty(x, reduction, "mean_only_batch_norm")
    k = _data_shift(x32, mask, axis_name)
    m = plain_field_mean(x32 - k, resolve_field(reduction, x.ndim), mask=mask,
                         axis_name=axis_name)
    stats = MeanStats(ema(stats.mean, k + m, momentum,
                          seen_features(mask, x.shape, features, axis_name)))
  else:
    k, m = np.zeros((), dt), stats.mean.astype(dt).reshape(bshape)
  y = select((x32 - k) - m, mask).astype(out)
  return ((y, y) if return_centered else y), stats


def batch_renorm(
    x: ArrayLike,
    stats: BatchStats,
    *,
    training: Bool,
    rmax: ArrayLike = 3.0,
    dmax: ArrayLike = 5.0,
    feature_axes: Int | Sequence[Int] = -1,
    momentum: ArrayLike = 0.99,
    sigma: ArrayLike = 0.0,
    axis_name=None,
    mask: ArrayLike | None = None,
    return_centered: Bool = False,
    dtype=None,
) -> tuple[Any, BatchStats]:
  r"""Batch renormalization (Ioffe, 2017).

  .. math::
      y = \frac{x - \mu_B}{\sigma_B} r + d, \quad
      r = \mathrm{clip}\big(\tfrac{\sigma_B}{\sigma}, \tfrac{1}{r_{max}}, r_{max}\big), \quad
      d = \mathrm{clip}\big(\tfrac{\mu_B - \mu}{\sigma}, -d_{max}, d_{max}\big)

  with ``r`` and ``d`` under ``stop_gradient``; ``mu`` and ``sigma`` are moving averages of
  ``mu_B`` and ``sigma_B = sqrt(var_B + sigma_smoothing^2)``, as in the paper's Algorithm 1
  (of ``sigma``, not of the variance as batch norm's). `stats` keep them as batch norm's
  do: ``mean = mu`` and ``var = sigma^2 - sigma_smoothing^2``, so that evaluation, which
  equals batch norm's, divides by ``sigma``. With ``rmax=1, dmax=0`` the output is
  `divnorm.batch_norm`'s.

  Args:
    x: ``[B, ..., C]``.
    stats: running statistics (`divnorm.batch_stats_init`).
    training: use batch statistics (corrected by r, d) and update `stats`.
    rmax: upper clip of ``r`` (>= 1); a float or a traced scalar (schedules are the
      caller's: the paper ramps it from 1 to 3).
    dmax: clip of ``|d|`` (>= 0); the paper ramps it from 0 to 5.
    feature_axes, momentum, sigma, axis_name, mask, return_centered: as in
      `divnorm.batch_norm`.
    dtype: the outputs' dtype; None: `x`'s (see `divnorm.normalize`).

  Returns:
    ``(y, new_stats)``, or ``((y, v), new_stats)`` with `return_centered`.
  """
  check_renorm_limits(rmax, dmax)
  x = check_input(x)
  out = x.dtype if dtype is None else check_floating_dtype(dtype, "dtype")
  if not check_bool(training, "training"):  # batch norm's, in `out` (read in x's dtype)
    y, stats = batch_norm(
        x if out == x.dtype else x.astype(stat_dtype(x.dtype)), stats, training=False,
        feature_axes=feature_axes, momentum=momentum, sigma=sigma, axis_name=axis_name,
        mask=mask, return_centered=return_centered)
    return jax.tree.map(lambda a: a.astype(out), y), stats
  return_centered = check_bool(return_centered, "return_centered")
  features, reduction, bshape = _features(x, feature_axes)
  check_stats(stats, BatchStats, x, features, feature_axes, "batch_renorm")
  check_momentum(momentum)
  field = resolve_field(reduction, x.ndim)
  sigma = check_sigma(sigma, stats_shape(x.shape, field))
  mask = check_mask(mask, x.shape)
  check_nonempty(x, reduction, "batch_renorm")
  dt = stat_dtype(x.dtype)
  k = _data_shift(x.astype(dt), mask, axis_name)
  mean, var, v = moments(x.astype(dt) - k, field, field, mask=mask, axis_name=axis_name)
  y = scale(v, var, sigma)
  extra = jnp.square(jnp.asarray(sigma, dt)) + np.asarray(variance_floor(dt), dt)
  extra = jnp.broadcast_to(extra, bshape)  # a sigma array (or a learned one) as a Python float
  run_mean = stats.mean.astype(dt).reshape(bshape) - k  # as `mean`, of x - k
  run_std = jnp.sqrt(running_var(stats.var, dt).reshape(bshape) + extra)
  batch_std = jnp.sqrt(var + extra)
  rmax, dmax = (jnp.asarray(check_broadcasts(value, bshape, name, "the statistics' shape")
                             ).astype(dt) for name, value in (("rmax", rmax), ("dmax", dmax)))
  r = lax.stop_gradient(jnp.clip(batch_std / run_std, 1.0 / rmax, rmax))
  d = lax.stop_gradient(jnp.clip((mean - run_mean) / run_std, -dmax, dmax))
  y = select(y * r + d, mask)
  # Ioffe's moving average is of sigma, kept as the variance whose sqrt(var + sigma^2) it is.
  seen = seen_features(mask, x.shape, features, axis_name)
  new_std = ema(run_std.reshape(stats.var.shape), batch_std, momentum)
  new_var = jnp.maximum(jnp.square(new_std) - extra.reshape(stats.var.shape),
                        jnp.zeros((), dt)).astype(stats.var.dtype)
  new_var = new_var if seen is None else jnp.where(seen, new_var, stats.var)
  stats = BatchStats(ema(stats.mean, k + mean, momentum, seen), new_var)
  y = y.astype(out)
  return ((y, v.astype(out)) if return_centered else y), stats


def batch_instance_norm(
    x: ArrayLike,
    stats: BatchStats,
    *,
    rho,
    training: Bool,
    channel_axis: Int = -1,
    momentum: ArrayLike = 0.99,
    sigma: ArrayLike = 0.0,
    axis_name=None,
    mask: ArrayLike | None = None,
    return_centered: Bool = False,
    dtype=None,
) -> tuple[Any, BatchStats]:
  """Batch-instance normalization (Nam & Kim, 2018): ``rho * BN(x) + (1 - rho) * IN(x)``.

  Args:
    x: ``[B, *spatial, C]`` (rank >= 3; channels at `channel_axis`). Axis 0 is the batch
      axis, also under a ``vmap`` over examples with `axis_name`: there pass ``x[None]``.
    stats: running statistics of the batch-norm half (one entry per channel).
    rho: the mixing weight in [0, 1], a scalar or one per channel (shape ``[C]``).
      A concrete value outside [0, 1] is an error; modules clip their learned rho.
    training: batch norm uses batch statistics and updates `stats`, or the running ones.
    channel_axis, momentum, sigma, axis_name, mask: as in `divnorm.batch_norm` and
      `divnorm.instance_norm` (`axis_name` only affects the batch-norm half).
    return_centered: also return ``rho * v_BN + (1 - rho) * v_IN``.
    dtype: the outputs' dtype; None: `x`'s (see `divnorm.normalize`).

  Returns:
    ``(y, new_stats)``, or ``((y, v), new_stats)`` with `return_centered`.
  """
  x = check_input(x)
  if x.ndim < 3:
    raise ValueError(
        f"batch_instance_norm needs spatial axes between batch and channels (rank >= 3), "
        f"got shape {x.shape}.")
  training = check_bool(training, "training")
  return_centered = check_bool(return_centered, "return_centered")
  check_unit_interval(rho, "rho")
  c = channel_axis_index(channel_axis, x.ndim, "batch_instance_norm")
  rho = jnp.asarray(rho)
  if rho.shape not in ((), (x.shape[c],)):
    raise ValueError(
        f"rho has shape {rho.shape}; give a scalar or one weight per channel, shape "
        f"({x.shape[c]},).")
  out = x.dtype if dtype is None else check_floating_dtype(dtype, "dtype")
  dt = stat_dtype(x.dtype)  # both halves in it, the mixture rounded once to `out`
  x32 = x.astype(dt)  # differentiated once; both halves read x itself (`source`)
  (y_bn, v_bn), stats = checked_batch_norm(
      x32, stats, training=training, feature_axes=c, momentum=momentum, sigma=sigma,
      axis_name=axis_name, mask=mask, return_centered=True, fast_variance=None,
      name="batch_instance_norm", source=x)
  field = Field(tuple(a for a in range(1, x.ndim) if a != c), ())  # instance norm's
  y_in, v_in, _, _ = normalize_factors(x32, field, sigma=sigma, mask=mask, source=x)
  bshape = tuple(x.shape[c] if a == c else 1 for a in range(x.ndim))
  rho = rho.astype(dt).reshape(bshape if rho.ndim else (1,) * x.ndim)
  y = rho * y_bn.astype(dt) + (1.0 - rho) * y_in.astype(dt)
  if not return_centered:
    return y.astype(out), stats
  v = rho * v_bn.astype(dt) + (1.0 - rho) * v_in.astype(dt)
  return (y.astype(out), v.astype(out)), stats


@jax.custom_jvp
def learned_rho(rho):
  """A learned batch-instance `rho` as the modules use it: clipped to [0, 1], with the
  gradient of `rho` itself (straight-through). With `jnp.clip`'s gradient, 0 outside the
  interval, a channel whose rho an update carried past 0 or 1 (from the default 1, the
  first step that favours batch norm) never learned again; the paper projects rho back
  after each step instead (an optax projection on the parameter does that)."""
  return jnp.clip(rho, 0.0, 1.0)


@learned_rho.defjvp
def _learned_rho_jvp(primals, tangents):
  return learned_rho(*primals), tangents[0]


SWITCHABLE_STATISTICS = ("instance", "layer", "batch")


def _check_weights(w, name: str) -> jax.Array:
  hint = f" (3 weights for the {SWITCHABLE_STATISTICS} statistics)"
  w = check_array(w, name, hint)
  if w.shape != (3,):
    raise ValueError(
        f"{name} has shape {w.shape}; give 3 weights for the {SWITCHABLE_STATISTICS} "
        f"statistics, e.g. jax.nn.softmax(logits) of shape (3,).")
  # A variance mixed with a negative weight can be negative, and rsqrt of it NaN.
  (check_nonnegative if name == "var_weights" else check_finite)(w, name, hint)
  return w


def switchable_norm(
    x: ArrayLike,
    stats: BatchStats,
    *,
    mean_weights,
    var_weights,
    training: Bool,
    channel_axis: Int = -1,
    momentum: ArrayLike = 0.99,
    sigma: ArrayLike = 0.0,
    axis_name=None,
    mask: ArrayLike | None = None,
    return_centered: Bool = False,
    dtype=None,
) -> tuple[Any, BatchStats]:
  r"""Switchable normalization (Luo et al., 2019): weighted IN, LN and BN statistics.

  .. math::
      \mu = \sum_k w_k \mu_k, \quad \sigma^2 = \sum_k w'_k \sigma_k^2, \quad
      y = \frac{x - \mu}{\sqrt{\sigma_{smooth}^2 + \sigma^2}}, \quad k \in (IN, LN, BN)

  Args:
    x: ``[B, *spatial, C]`` (rank >= 3; channels at `channel_axis`). Axis 0 is the batch
      axis, also under a ``vmap`` over examples with `axis_name`: there pass ``x[None]``
      (the BN statistics then pool the mapped axis; IN and LN stay per example).
    stats: running batch statistics (per channel); in evaluation they replace the BN
      statistics, in training they are updated with them.
    mean_weights: shape ``(3,)``, weights of the (IN, LN, BN) means; modules pass
      ``softmax`` of learned logits, and one-hot weights give each normalizer exactly.
    var_weights: shape ``(3,)``, weights of the (IN, LN, BN) variances.
    training, channel_axis, momentum, sigma, axis_name, mask, return_centered: as in
      `divnorm.batch_norm` (`axis_name` affects the batch statistics only).
    dtype: the outputs' dtype; None: `x`'s (see `divnorm.normalize`).

  Returns:
    ``(y, new_stats)``, or ``((y, v), new_stats)`` with `return_centered`.
  """
  x = check_input(x)
  if x.ndim < 3:
    raise ValueError(
        f"switchable_norm needs spatial axes between batch and channels (rank >= 3), got "
        f"shape {x.shape}; for [batch, features] use layer_norm or batch_norm.")
  c = channel_axis_index(channel_axis, x.ndim, "switchable_norm")
  training = check_bool(training, "training")
  return_centered = check_bool(return_centered, "return_centered")
  check_momentum(momentum)
  mask = check_mask(mask, x.shape)
  wm = _check_weights(mean_weights, "mean_weights")
  wv = _check_weights(var_weights, "var_weights")
  features, _, bshape = _features(x, c)
  check_stats(stats, BatchStats, x, features, c, "switchable_norm")
  out = x.dtype if dtype is None else check_floating_dtype(dtype, "dtype")
  spatial = tuple(a for a in range(1, x.ndim) if a != c)
  # The mixture's statistics have the shape of instance norm's (batch and channels kept).
  sigma = check_sigma(sigma, tuple(x.shape[a] if a in (0, c) else 1 for a in range(x.ndim)))

  dt = stat_dtype(x.dtype)
  # Every statistic is of x - k, so the mixture adds no offset's rounding. Training pools
  # batch norm's over the batch and `axis_name`: one k for all. Evaluating, one per example,
  # so that each output depends on its example alone, and no mapped axis needs to be bound.
  k = _data_shift(x.astype(dt), mask, axis_name) if training else shift(
      x.astype(dt), Field(tuple(range(1, x.ndim)), ()), mask=mask)
  xs = x.astype(dt) - k

  def stats_of(axes, name=None):
    field = resolve_field(axes, x.ndim)
    mean, var, _ = moments(xs, field, field, mask=mask, axis_name=name)
    return mean, var

  mean_in, var_in = stats_of(spatial)
  mean_ln, var_ln = stats_of(tuple(range(1, x.ndim)))
  if training:
    check_nonempty(x, (0, *spatial), "switchable_norm")
    mean_bn, var_bn = stats_of((0, *spatial), axis_name)
    seen = seen_features(mask, x.shape, (c,), axis_name)
    stats = BatchStats(ema(stats.mean, k + mean_bn, momentum, seen),
                       ema(stats.var, var_bn, momentum, seen))
  else:
    mean_bn = stats.mean.astype(dt).reshape(bshape) - k
    var_bn = running_var(stats.var, dt).reshape(bshape)
  wm, wv = wm.astype(dt), wv.astype(dt)
  # sum_k w_k (k + mean_k): the shift k enters with the weights' sum, 1 for softmax weights.
  mean = wm[0] * mean_in + wm[1] * mean_ln + wm[2] * mean_bn - (1.0 - jnp.sum(wm)) * k
  var = wv[0] * var_in + wv[1] * var_ln + wv[2] * var_bn
  v = select(xs - mean, mask)
  y = select(scale(v, var, sigma), mask)
  y = y.astype(out)
  return ((y, v.astype(out)) if return_centered else y), stats
