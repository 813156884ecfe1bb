"""Flax linen modules: thin wrappers that own parameters and call the functions.

Every module shares these fields:

  sigma: smoothing term (Flax's ``epsilon`` is ``sigma ** 2``).
  learn_sigma: learn sigma as ``exp(log_sigma)`` (positive), initialised at `sigma`.
  use_scale, use_bias: learned per-feature affine after normalizing.
  l1_alpha: if > 0, sow ``l1_alpha * mean(|v|)`` into the ``"losses"`` collection.

Penalties are sown with Flax's default (append), so a module applied at every time step
counts at every step. ``init`` also returns a ``"losses"`` collection: pass variables
through `apply_with_penalty`, which drops it and sums each penalty exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from divnorm._src.batch import BatchStats, batch_norm, batch_stats_init
from divnorm._src.core import normalize
from divnorm._src.fields import resolve_field
from divnorm._src.penalty import l1_penalty
from divnorm._src.presets import divisive_norm, group_norm, instance_norm, layer_norm, rms_norm

Initializer = Callable[..., jax.Array]
Axes = int | Sequence[int]


def sum_penalties(losses) -> jax.Array:
  """The sum of every leaf of a ``"losses"`` collection, as a float32 scalar."""
  total = jnp.zeros((), jnp.float32)
  for leaf in jax.tree_util.tree_leaves(losses):
    total = total + jnp.sum(jnp.asarray(leaf).astype(jnp.float32))
  return total


def apply_with_penalty(module: nn.Module, variables, *args, mutable=False, **kwargs):
  """``module.apply`` that also returns the sum of the sown penalties, counted once.

  Args:
    module: a linen module whose submodules may sow into ``"losses"``.
    variables: as returned by ``init`` (a ``"losses"`` entry there is ignored).
    *args: passed to ``apply``.
    mutable: other collections to update (e.g. ``["batch_stats"]``), as in ``apply``.
    **kwargs: passed to ``apply`` (``rngs``, ``method``, module arguments).

  Returns:
    ``(out, penalty, updates)``: the module's output, the float32 sum of the penalties,
    and the updated collections other than ``"losses"`` (``{}`` if `mutable` is False).
  """
  variables = {k: v for k, v in variables.items() if k != "losses"}
  if mutable is True:
    collections = True
  elif mutable is False:
    collections = ["losses"]
  else:
    collections = ["losses", *([mutable] if isinstance(mutable, str) else mutable)]
  out, updates = module.apply(variables, *args, mutable=collections, **kwargs)
  updates = dict(updates)
  penalty = sum_penalties(updates.pop("losses", {}))
  return out, penalty, updates


class _Norm(nn.Module):
  """Shared parameters of the normalization modules; subclasses call the functions."""

  sigma: float = 0.0
  learn_sigma: bool = False
  use_scale: bool = True
  use_bias: bool = True
  scale_init: Initializer = nn.initializers.ones
  bias_init: Initializer = nn.initializers.zeros
  param_dtype: Any = jnp.float32
  l1_alpha: float = 0.0

  def _sigma(self):
    if not self.learn_sigma:
      return self.sigma
    if not self.sigma > 0:
      raise ValueError(
          f"learn_sigma=True learns sigma = exp(log_sigma) and starts from sigma, which must "
          f"be > 0 (got sigma={self.sigma}); e.g. sigma=0.5 as in the paper's ResNet code.")
    log_sigma = self.param(
        "log_sigma", lambda _: jnp.log(jnp.asarray(self.sigma, self.param_dtype)))
    return jnp.exp(log_sigma)

  def _finish(self, y, v, feature_axes: Axes, mask):
    """Sows the L1 penalty of `v`, then applies the affine over `feature_axes`."""
    if self.l1_alpha:
      self.sow("losses", "l1", l1_penalty(v, self.l1_alpha, mask=mask))
    if not (self.use_scale or self.use_bias):
      return y
    axes = resolve_field(feature_axes, y.ndim, role="feature_axes").whole
    shape = tuple(y.shape[a] for a in axes)
    bshape = tuple(y.shape[a] if a in axes else 1 for a in range(y.ndim))
    if self.use_scale:
      gamma = self.param("scale", self.scale_init, shape, self.param_dtype)
      y = y * gamma.reshape(bshape).astype(y.dtype)
    if self.use_bias:
      beta = self.param("bias", self.bias_init, shape, self.param_dtype)
      y = y + beta.reshape(bshape).astype(y.dtype)
    return y


class BatchNorm(_Norm):
  """Batch normalization; running statistics in the ``"batch_stats"`` collection.

  Attributes:
    use_running_average: normalize with the running statistics (evaluation).
    feature_axes: axes with their own statistics (Flax's ``axis``).
    momentum: decay of the running averages.
    axis_name: named axis to average over (``shard_map``); not needed under ``jit``.
    fast_variance: True: one-pass (Flax's ``use_fast_variance``); False: two-pass; None
      (default): one-pass where safe (see `divnorm.normalize`).
  """

  use_running_average: bool | None = None
  feature_axes: Axes = -1
  momentum: float = 0.99
  axis_name: str | None = None
  fast_variance: bool | None = None

  @nn.compact
  def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
    use_ra = nn.merge_param("use_running_average", self.use_running_average, use_running_average)
    init = batch_stats_init(x, feature_axes=self.feature_axes)
    ra_mean = self.variable("batch_stats", "mean", lambda: init.mean)
    ra_var = self.variable("batch_stats", "var", lambda: init.var)
    (y, v), stats = batch_norm(
        x,
        BatchStats(ra_mean.value, ra_var.value),
        training=not use_ra,
        feature_axes=self.feature_axes,
        momentum=self.momentum,
        sigma=self._sigma(),
        axis_name=self.axis_name,
        mask=mask,
        return_centered=True,
        fast_variance=self.fast_variance,
    )
    if not use_ra and not self.is_initializing():
      ra_mean.value, ra_var.value = stats.mean, stats.var
    return self._finish(y, v, self.feature_axes, mask)


class LayerNorm(_Norm):
  """Layer normalization over `reduction_axes`; affine over `feature_axes`."""

  reduction_axes: Axes = -1
  feature_axes: Axes = -1
  fast_variance: bool | None = None

  @nn.compact
  def __call__(self, x, *, mask=None):
    y, v = layer_norm(
        x, reduction_axes=self.reduction_axes, sigma=self._sigma(), mask=mask,
        return_centered=True, fast_variance=self.fast_variance)
    return self._finish(y, v, self.feature_axes, mask)


class InstanceNorm(_Norm):
  """Instance normalization: statistics over the spatial axes of each channel."""

  channel_axis: int = -1
  fast_variance: bool | None = None

  @nn.compact
  def __call__(self, x, *, mask=None):
    y, v = instance_norm(
        x, channel_axis=self.channel_axis, sigma=self._sigma(), mask=mask, return_centered=True,
        fast_variance=self.fast_variance)
    return self._finish(y, v, self.channel_axis, mask)


class GroupNorm(_Norm):
  """Group normalization over channel groups (give `num_groups` or `group_size`)."""

  num_groups: int | None = 32
  group_size: int | None = None
  channel_axis: int = -1
  fast_variance: bool | None = None

  @nn.compact
  def __call__(self, x, *, mask=None):
    y, v = group_norm(
        x, num_groups=self.num_groups, group_size=self.group_size,
        channel_axis=self.channel_axis, sigma=self._sigma(), mask=mask, return_centered=True,
        fast_variance=self.fast_variance)
    return self._finish(y, v, self.channel_axis, mask)


class RMSNorm(_Norm):
  """RMS normalization (no centering; the L1 penalty, if any, is on the input)."""

  reduction_axes: Axes = -1
  feature_axes: Axes = -1
  use_bias: bool = False

  @nn.compact
  def __call__(self, x, *, mask=None):
    y = rms_norm(x, reduction_axes=self.reduction_axes, sigma=self._sigma(), mask=mask)
    return self._finish(y, x, self.feature_axes, mask)


class DivisiveNorm(_Norm):
  """Divisive normalization with local windows (see `divnorm.divisive_norm`).

  No affine by default, as in the paper's CIFAR and PTB models.
  """

  summation_window: int | Sequence[int] | None = None
  suppression_window: int | Sequence[int] | None = None
  channel_axis: int = -1
  across_channels: bool = True
  border: str = "valid"
  use_scale: bool = False
  use_bias: bool = False

  @nn.compact
  def __call__(self, x, *, mask=None):
    if self.summation_window is None:
      raise ValueError("DivisiveNorm needs summation_window=..., e.g. (5, 5) for NHWC input.")
    y, v = divisive_norm(
        x,
        summation_window=self.summation_window,
        suppression_window=self.suppression_window,
        sigma=self._sigma(),
        channel_axis=self.channel_axis,
        across_channels=self.across_channels,
        border=self.border,
        mask=mask,
        return_centered=True,
    )
    return self._finish(y, v, self.channel_axis, mask)


class Normalize(_Norm):
  """The unified normalizer over arbitrary fields (see `divnorm.normalize`)."""

  summation: Any = None
  suppression: Any = None
  border: str = "valid"
  feature_axes: Axes = -1
  axis_name: str | None = None
  use_scale: bool = False
  use_bias: bool = False

  @nn.compact
  def __call__(self, x, *, mask=None):
    if self.summation is None:
      raise ValueError(
          "Normalize needs summation=..., a field such as (1, 2, 3) or {3: None, 1: 5, 2: 5}.")
    y, v = normalize(
        x, self.summation, self.suppression, sigma=self._sigma(), border=self.border,
        mask=mask, axis_name=self.axis_name, return_centered=True)
    return self._finish(y, v, self.feature_axes, mask)


# The survey's other normalizers (divnorm.linen_extra) are reachable from here too. Lazy,
# because linen_extra builds on this module's _Norm.
_EXTRA = (
  "BatchInstanceNorm",
  "BatchRenorm",
  "GDN",
  "LocalResponseNorm",
  "MeanOnlyBatchNorm",
  "SpectralNorm",
  "SwitchableNorm",
  "WeightNorm",
  "WeightStandardization",
)


def __getattr__(name):
  if name in _EXTRA:
    import divnorm._src.linen_extra as extra

    return getattr(extra, name)
  raise AttributeError(f"module 'divnorm.linen' has no attribute {name!r}")
