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
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from divnorm._src import flax_semantics as fs
from divnorm._src.batch import BatchStats
from divnorm._src.checks import check_learn_sigma
from divnorm._src.core import normalize
from divnorm._src.fields import resolve_field
from divnorm._src.module_specs import (
  BATCH_NORM,
  GROUP_NORM,
  INSTANCE_NORM,
  LAYER_NORM,
  RMS_NORM,
  ModuleSpec,
)
from divnorm._src.penalty import l1_penalty
from divnorm._src.presets import divisive_norm

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


# ---- the Flax-named modules: Flax 0.12.8's signatures, from divnorm._src.module_specs ----


class _FlaxNorm(nn.Module):
  """The call logic shared by the Flax-named normalizers; fields come from a `ModuleSpec`."""

  spec: ClassVar[ModuleSpec]

  def _sigma(self):
    sigma = fs.resolve_sigma(self.spec.name, self.epsilon, self.sigma,
                             self.spec.default_epsilon)
    if not self.learn_sigma:
      return sigma
    check_learn_sigma(sigma)
    log_sigma = self.param("log_sigma", lambda _: jnp.log(jnp.asarray(sigma, self.param_dtype)))
    return jnp.exp(log_sigma)

  def _axis_name(self):
    fs.check_axis_index_groups(self.spec.name, self.axis_index_groups)
    # As Flax's BatchNorm: init outside a mapped context has no axis to average over.
    if self.is_initializing() and not fs.axis_name_bound(self.axis_name):
      return None
    return self.axis_name

  def _fast_variance(self):
    return fs.fast_variance_mode(self.use_fast_variance, self.fast_variance)

  def _affine_params(self, shape):
    scale = bias = None
    if self.use_scale:
      scale = self.param("scale", self.scale_init, shape, self.param_dtype)
    if getattr(self, "use_bias", False):
      bias = self.param("bias", self.bias_init, shape, self.param_dtype)
    return scale, bias

  def _finish(self, x, y, v, features, mask):
    """Sows the L1 penalty of `v`, applies the affine over `features`, casts as Flax."""
    if self.l1_alpha:
      self.sow("losses", "l1", l1_penalty(v, self.l1_alpha, mask=mask))
    scale, bias = self._affine_params(fs.feature_shape(x.shape, features))
    y = fs.affine(y, scale, bias, features)
    return y.astype(fs.result_dtype(x, scale, bias, dtype=self.dtype))

  def _normalize(self, x, reduction, features, mask, *, center=True, num_groups=None):
    xc = x.astype(fs.stats_dtype(x.dtype, self.dtype))
    kwargs = dict(sigma=self._sigma(), mask=mask, axis_name=self._axis_name(),
                  fast_variance=self._fast_variance(), center=center)
    if num_groups is None:
      y, v = fs.normalize_over(xc, reduction, **kwargs)
    else:
      y, v = fs.group_normalize(xc, reduction, num_groups, **kwargs)
    return self._finish(x, y, v, features, mask)


def _flax_module(spec: ModuleSpec, call, base=_FlaxNorm):
  """A linen module with `spec`'s fields (Flax's, then divnorm's keyword-only) and `call`."""
  body = spec.linen_fields()
  body.update(__call__=call, __doc__=spec.docstring("linen"), __module__=__name__,
              __qualname__=spec.name, spec=spec)
  return type(spec.name, (base,), body)


@nn.compact
def _batch_norm(self, x, use_running_average: bool | None = None, *, mask=None):
  """Normalizes `x` with the batch's statistics (training) or the running ones."""
  use_ra = nn.merge_param("use_running_average", self.use_running_average, use_running_average)
  x = jnp.asarray(x)
  axis = fs.resolve_alias("BatchNorm", "axis", self.axis, -1, "feature_axes", self.feature_axes)
  features = fs.canonical_axes(axis, x.ndim, "axis")
  shape = fs.feature_shape(x.shape, features)
  dt = jnp.float32 if self.force_float32_reductions else self.param_dtype
  ra_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, dt), shape)
  ra_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, dt), shape)
  (y, v), stats = fs.batch_normalize(
      x.astype(fs.stats_dtype(x.dtype, self.dtype)), BatchStats(ra_mean.value, ra_var.value),
      training=not use_ra, feature_axes=features, momentum=self.momentum, sigma=self._sigma(),
      mask=mask, axis_name=self._axis_name(), fast_variance=self._fast_variance())
  if not use_ra and not self.is_initializing():
    ra_mean.value, ra_var.value = stats.mean, stats.var
  return self._finish(x, y, v, features, mask)


@nn.compact
def _layer_norm(self, x, *, mask=None):
  """Normalizes `x` over `reduction_axes`."""
  x = jnp.asarray(x)
  return self._normalize(
      x, fs.canonical_axes(self.reduction_axes, x.ndim, "reduction_axes"),
      fs.canonical_axes(self.feature_axes, x.ndim, "feature_axes"), mask)


@nn.compact
def _rms_norm(self, x, *, mask=None):
  """Divides `x` by its root mean square over `reduction_axes`."""
  x = jnp.asarray(x)
  return self._normalize(
      x, fs.canonical_axes(self.reduction_axes, x.ndim, "reduction_axes"),
      fs.canonical_axes(self.feature_axes, x.ndim, "feature_axes"), mask, center=False)


@nn.compact
def _group_norm(self, x, *, mask=None):
  """Normalizes `x` over `reduction_axes` and the channels of each group."""
  x, mask, reduction, channel = fs.group_layout(x, mask, self.channel_axis,
                                                self.reduction_axes)
  num_groups = fs.check_groups(self.num_groups, self.group_size, x.shape[-1])
  y = self._normalize(x, reduction, (x.ndim - 1,), mask, num_groups=num_groups)
  return jnp.moveaxis(y, -1, channel)


@nn.compact
def _instance_norm(self, x, *, mask=None):
  """Normalizes `x` over every axis but the batch (0) and `feature_axes`."""
  x = jnp.asarray(x)
  feature_axes = fs.resolve_alias("InstanceNorm", "feature_axes", self.feature_axes, -1,
                                  "channel_axis", self.channel_axis)
  reduction = fs.instance_reduction_axes(feature_axes, x.ndim)
  return self._normalize(x, reduction, fs.canonical_axes(feature_axes, x.ndim), mask)


BatchNorm = _flax_module(BATCH_NORM, _batch_norm)
LayerNorm = _flax_module(LAYER_NORM, _layer_norm)
RMSNorm = _flax_module(RMS_NORM, _rms_norm)
GroupNorm = _flax_module(GROUP_NORM, _group_norm)
InstanceNorm = _flax_module(INSTANCE_NORM, _instance_norm)


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
