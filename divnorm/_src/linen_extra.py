"""Flax linen modules for the survey's other normalizers, and weight-normalizing wrappers.

Activation normalizers share the fields of `divnorm.linen` (``sigma``, ``learn_sigma``,
``use_scale``, ``use_bias``, ``l1_alpha``, ...) where they apply:

  MeanOnlyBatchNorm, BatchRenorm, BatchInstanceNorm, SwitchableNorm  (running statistics
  in ``"batch_stats"``, as `divnorm.linen.BatchNorm`), LocalResponseNorm, GDN (``inverse``
  for IGDN).

Weight normalizers wrap any layer and transform the variables that ``variable_filter``
selects (kernels by default), nested modules included, each call; WeightNorm and
SpectralNorm take Flax 0.12.8's signatures and name their variables as Flax does:

  WeightNorm(layer) (``<layer>/kernel/scale`` in ``"params"``), SpectralNorm(layer)
  (``<layer>/kernel/u`` and ``.../sigma`` in ``"batch_stats"``), WeightStandardization(layer).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from divnorm._src import flax_semantics as fs
from divnorm._src import gdn as gdn_lib
from divnorm._src import mixtures
from divnorm._src import weights as weights_lib
from divnorm._src.batch import BatchStats, batch_stats_init
from divnorm._src.flax_semantics import missing_kernel_error  # noqa: F401  (public)
from divnorm._src.linen import _flax_module, _Norm
from divnorm._src.lrn import check_lrn_args, local_response_norm
from divnorm._src.module_specs import SPECTRAL_NORM, WEIGHT_NORM

Axes = int | Sequence[int]


class _RunningNorm(_Norm):
  """Shared fields of the modules with running batch statistics."""

  use_running_average: bool | None = None
  momentum: float = 0.99
  axis_name: str | None = None

  def _stats(self, x, feature_axes):
    init = batch_stats_init(x, feature_axes=feature_axes)
    mean = self.variable("batch_stats", "mean", lambda: init.mean)
    var = self.variable("batch_stats", "var", lambda: init.var)
    return mean, var

  def _store(self, variables, stats, training: bool) -> None:
    if training and not self.is_initializing():
      for variable, value in zip(variables, stats, strict=True):
        variable.value = value


class MeanOnlyBatchNorm(_RunningNorm):
  """Mean-only batch norm (Salimans & Kingma, 2016): ``x - E_batch[x]`` (+ bias).

  The L1 penalty (``l1_alpha``) is on the centered output. No scale by default: the
  paper pairs it with `WeightNorm`, which carries the scale.
  """

  feature_axes: Axes = -1
  use_scale: bool = False

  @nn.compact
  def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
    use_ra = nn.merge_param("use_running_average", self.use_running_average, use_running_average)
    init = mixtures.mean_stats_init(x, feature_axes=self.feature_axes)
    mean = self.variable("batch_stats", "mean", lambda: init.mean)
    y, stats = mixtures.mean_only_batch_norm(
        x, mixtures.MeanStats(mean.value), training=not use_ra,
        feature_axes=self.feature_axes, momentum=self.momentum, axis_name=self.axis_name,
        mask=mask)
    self._store((mean,), stats, not use_ra)
    return self._finish(y, y, self.feature_axes, mask)


class BatchRenorm(_RunningNorm):
  """Batch renormalization (Ioffe, 2017); `rmax` and `dmax` may be overridden per call.

  Attributes:
    rmax, dmax: clip limits of r and d (the paper ramps them from 1, 0 to 3, 5: pass
      the current values to ``__call__``).
  """

  feature_axes: Axes = -1
  rmax: float = 3.0
  dmax: float = 5.0

  def __post_init__(self):
    mixtures.check_renorm_limits(self.rmax, self.dmax)
    super().__post_init__()

  @nn.compact
  def __call__(self, x, use_running_average: bool | None = None, *, rmax=None, dmax=None,
               mask=None):
    use_ra = nn.merge_param("use_running_average", self.use_running_average, use_running_average)
    mean, var = self._stats(x, self.feature_axes)
    (y, v), stats = mixtures.batch_renorm(
        x, BatchStats(mean.value, var.value), training=not use_ra,
        rmax=self.rmax if rmax is None else rmax, dmax=self.dmax if dmax is None else dmax,
        feature_axes=self.feature_axes, momentum=self.momentum, sigma=self._sigma(),
        axis_name=self.axis_name, mask=mask, return_centered=True)
    self._store((mean, var), stats, not use_ra)
    return self._finish(y, v, self.feature_axes, mask)


class BatchInstanceNorm(_RunningNorm):
  """Batch-instance norm (Nam & Kim, 2018): a learned per-channel ``rho`` in [0, 1].

  The parameter ``rho`` is clipped to [0, 1] where it is used, so an optimizer step
  past the interval acts as the paper's clipping (and gets no gradient outward).

  Attributes:
    rho_init: initial rho (the paper: 1, pure batch norm); must lie in [0, 1].
  """

  channel_axis: int = -1
  rho_init: float = 1.0

  def __post_init__(self):
    mixtures.check_unit_interval(self.rho_init, "rho_init")
    super().__post_init__()

  @nn.compact
  def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
    use_ra = nn.merge_param("use_running_average", self.use_running_average, use_running_average)
    channels = x.shape[self.channel_axis]
    rho = self.param("rho", nn.initializers.constant(self.rho_init), (channels,),
                     self.param_dtype)
    mean, var = self._stats(x, self.channel_axis)
    (y, v), stats = mixtures.batch_instance_norm(
        x, BatchStats(mean.value, var.value), rho=jnp.clip(rho, 0.0, 1.0),
        training=not use_ra, channel_axis=self.channel_axis, momentum=self.momentum,
        sigma=self._sigma(), axis_name=self.axis_name, mask=mask, return_centered=True)
    self._store((mean, var), stats, not use_ra)
    return self._finish(y, v, self.channel_axis, mask)


class SwitchableNorm(_RunningNorm):
  """Switchable normalization (Luo et al., 2019): softmax-weighted IN, LN, BN statistics.

  Parameters ``mean_logits`` and ``var_logits`` (shape ``(3,)``, order IN, LN, BN) start
  at zero: equal weights.
  """

  channel_axis: int = -1

  @nn.compact
  def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
    use_ra = nn.merge_param("use_running_average", self.use_running_average, use_running_average)
    mean_logits = self.param("mean_logits", nn.initializers.zeros, (3,), self.param_dtype)
    var_logits = self.param("var_logits", nn.initializers.zeros, (3,), self.param_dtype)
    mean, var = self._stats(x, self.channel_axis)
    (y, v), stats = mixtures.switchable_norm(
        x, BatchStats(mean.value, var.value), mean_weights=jax.nn.softmax(mean_logits),
        var_weights=jax.nn.softmax(var_logits), training=not use_ra,
        channel_axis=self.channel_axis, momentum=self.momentum, sigma=self._sigma(),
        axis_name=self.axis_name, mask=mask, return_centered=True)
    self._store((mean, var), stats, not use_ra)
    return self._finish(y, v, self.channel_axis, mask)


class LocalResponseNorm(nn.Module):
  """Local response normalization (``torch.nn.LocalResponseNorm``; no parameters)."""

  size: int = 5
  alpha: float = 1e-4
  beta: float = 0.75
  k: float = 1.0
  channel_axis: int = -1

  def __post_init__(self):
    check_lrn_args(self.size, self.alpha, self.beta, self.k)
    super().__post_init__()

  def __call__(self, x):
    return local_response_norm(
        x, size=self.size, alpha=self.alpha, beta=self.beta, k=self.k,
        channel_axis=self.channel_axis)


class GDN(nn.Module):
  """Generalized divisive normalization (Balle et al., 2016); ``inverse=True`` is IGDN.

  Parameters ``beta`` ``[C]`` and ``gamma`` ``[C, C]`` are raw (reparameterized, see
  `divnorm.gdn`): ``beta = nonnegative(raw, minimum=1e-6)``, ``gamma = nonnegative(raw)``.
  """

  inverse: bool = False
  alpha: float = 2.0
  epsilon: float = 0.5
  beta_init: float = 1.0
  gamma_init: float = 0.1
  channel_axis: int = -1
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    channels = x.shape[self.channel_axis]
    init = gdn_lib.gdn_init(
        channels, beta=self.beta_init, gamma=self.gamma_init, dtype=self.param_dtype)
    beta = self.param("beta", lambda _: init.beta)
    gamma = self.param("gamma", lambda _: init.gamma)
    beta, gamma = gdn_lib.gdn_values(gdn_lib.GDNParams(beta, gamma))
    return gdn_lib.gdn(
        x, beta=beta, gamma=gamma, alpha=self.alpha, epsilon=self.epsilon,
        inverse=self.inverse, channel_axis=self.channel_axis)


# ---- weight normalizers as wrappers (Flax's WeightNorm and SpectralNorm signatures) -------


class _WeightWrapper(nn.Module):
  """Calls ``layer_instance`` with each of its variables passed through ``transform``.

  The transformed variables are named as Flax names them: the layer's name, then the
  variable's '/'-joined path (e.g. ``Dense_0/kernel``; a partitioned kernel's value is
  ``Dense_0/kernel/value``, and its sharding metadata is kept).
  """

  def _wrap(self, transform, args, kwargs, *, mutable=False):
    prefix = self.layer_instance.name
    seen, selected = set(), []

    def one(path, value):
      name = fs.path_name(prefix, path[1:])
      seen.add(name)
      out = transform(name, value)
      if out is not value:
        selected.append(name)
      return out

    out = nn.map_variables(
        lambda layer: layer(*args, **kwargs),
        trans_in_fn=lambda vs: jax.tree_util.tree_map_with_path(one, vs),
        init=self.is_initializing(), mutable=mutable)(self.layer_instance)
    if seen and not selected and self._must_select():
      raise fs.missing_kernel_error(self.layer_instance, self._filter(), seen)
    return out

  def _must_select(self) -> bool:
    return True

  def _filter(self):
    return getattr(self, "variable_filter", None)

  def _epsilon(self):
    if self.sigma is None:
      return self.epsilon
    return fs.resolve_sigma(self.spec.name, self.epsilon, self.sigma,
                            self.spec.default_epsilon) ** 2


@nn.compact
def _weight_norm(self, *args, **kwargs):
  """Calls the layer with its selected variables l2-normalized (and scaled)."""
  epsilon = self._epsilon()

  def transform(name, value):
    if not fs.matches(self.variable_filter, name):
      return value
    value = jnp.asarray(value)
    features = fs.weight_feature_axes(self.feature_axes, value.ndim)
    scale = None
    if self.use_scale:
      scale = self.param(name + "/scale", self.scale_init, fs.feature_shape(value.shape, features),
                         self.param_dtype)
    return fs.weight_normalized(value, scale, feature_axes=self.feature_axes, epsilon=epsilon,
                                dtype=self.dtype)

  return self._wrap(transform, args, kwargs)


@nn.compact
def _spectral_norm(self, *args, update_stats: bool, **kwargs):
  """Calls the layer with each weight matrix divided by its largest singular value."""
  epsilon = self._epsilon()
  collection = self.collection_name

  def transform(name, value):
    value = jnp.asarray(value)
    shape = fs.spectral_matrix_shape(value, self.error_on_non_matrix)
    if shape is None or self.n_steps < 1:
      return value
    u_name, sigma_name = name + "/u", name + "/sigma"
    key = None if self.has_variable(collection, u_name) else self.make_rng("params")
    u = self.variable(collection, u_name, jax.random.normal, key, (1, shape[1]),
                      self.param_dtype)
    sigma = self.variable(collection, sigma_name, jnp.ones, (), self.param_dtype)
    w, new_u, new_sigma = fs.spectral_normalized(value, u.value, n_steps=self.n_steps,
                                                 epsilon=epsilon, dtype=self.dtype)
    if update_stats:
      u.value = fs.as_dtype_of(new_u, u.value)
      sigma.value = fs.as_dtype_of(new_sigma, sigma.value)
    return w

  return self._wrap(transform, args, kwargs, mutable=True)


class _SpectralWrapper(_WeightWrapper):
  def _must_select(self) -> bool:  # Flax's SpectralNorm leaves vectors and scalars alone
    return False


WeightNorm = _flax_module(WEIGHT_NORM, _weight_norm, base=_WeightWrapper)
SpectralNorm = _flax_module(SPECTRAL_NORM, _spectral_norm, base=_SpectralWrapper)


class WeightStandardization(_WeightWrapper):
  """Weight standardization of a layer's weights (Qiao et al., 2019); no parameters.

  Attributes:
    layer_instance: the wrapped layer.
    feature_axes: the weights' output axes; mean and variance reduce the others.
    variable_filter: which variables to standardize, as in `WeightNorm` (default: kernels).
    sigma: smoothing term of the standard deviation.
  """

  layer_instance: nn.Module
  feature_axes: Axes = -1
  variable_filter: Any = dataclasses.field(default_factory=lambda: {"kernel"})
  sigma: float = 0.0

  @nn.compact
  def __call__(self, *args, **kwargs):
    def transform(name, value):
      if not fs.matches(self.variable_filter, name):
        return value
      return weights_lib.weight_standardization(
          jnp.asarray(value), feature_axes=self.feature_axes, sigma=self.sigma)

    return self._wrap(transform, args, kwargs)
