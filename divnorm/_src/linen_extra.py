"""Flax linen modules for the survey's other normalizers, and weight-normalizing wrappers.

Activation normalizers share the fields of `divnorm.linen` (``sigma``, ``learn_sigma``,
``use_scale``, ``use_bias``, ``l1_alpha``, ...) where they apply:

  MeanOnlyBatchNorm, BatchRenorm, BatchInstanceNorm, SwitchableNorm  (running statistics
  in ``"batch_stats"``, as `divnorm.linen.BatchNorm`), LocalResponseNorm, GDN (``inverse``
  for IGDN).

Weight normalizers wrap any layer and transform its kernel (``param_name``) each call:

  WeightNorm(layer), SpectralNorm(layer) (``u`` in ``"batch_stats"``),
  WeightStandardization(layer).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from divnorm._src import gdn as gdn_lib
from divnorm._src import mixtures
from divnorm._src import weights as weights_lib
from divnorm._src.batch import BatchStats, batch_stats_init
from divnorm._src.linen import _Norm
from divnorm._src.lrn import check_lrn_args, local_response_norm

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


# ---- weight normalizers as wrappers ----------------------------------------------------


def missing_kernel_error(layer, param_name: str, names) -> ValueError:
  return ValueError(
      f"{type(layer).__name__} has no parameter {param_name!r} to normalize (its parameters: "
      f"{sorted(names)}); pass param_name=... naming its weight matrix.")


class _KernelWrapper(nn.Module):
  """Calls `layer` with its ``param_name`` parameter replaced by ``transform(kernel)``."""

  layer: nn.Module
  param_name: str = "kernel"
  feature_axes: Axes = -1

  def _forward(self, transform, args, kwargs):
    found = []

    def trans_in(variables):
      params = variables.get("params", {})
      if not params:
        return variables
      if self.param_name not in params:
        raise missing_kernel_error(self.layer, self.param_name, params.keys())
      found.append(True)
      params = {**params, self.param_name: transform(params[self.param_name])}
      return {**variables, "params": params}

    out = nn.map_variables(
        lambda layer: layer(*args, **kwargs), trans_in_fn=trans_in,
        init=self.is_initializing(), mutable=self.is_initializing())(self.layer)
    if not found:
      raise missing_kernel_error(self.layer, self.param_name, ())
    return out


class WeightNorm(_KernelWrapper):
  """Weight normalization of a layer's kernel: ``g * v / ||v||`` (Salimans & Kingma).

  The layer's own kernel is ``v``; this module owns ``g`` (shape of the feature axes),
  initialised at ``||v||`` so the layer starts from its original kernel.
  """

  epsilon: float = 1e-12

  def _transform(self, v):
    g = self.param("g", lambda _: weights_lib.kernel_norm(v, feature_axes=self.feature_axes))
    return weights_lib.weight_norm(v, g, feature_axes=self.feature_axes, epsilon=self.epsilon)

  @nn.compact
  def __call__(self, *args, **kwargs):
    return self._forward(self._transform, args, kwargs)


class WeightStandardization(_KernelWrapper):
  """Weight standardization of a layer's kernel (Qiao et al., 2019); no parameters."""

  sigma: float = 0.0

  def _transform(self, w):
    return weights_lib.weight_standardization(
        w, feature_axes=self.feature_axes, sigma=self.sigma)

  @nn.compact
  def __call__(self, *args, **kwargs):
    return self._forward(self._transform, args, kwargs)


class SpectralNorm(_KernelWrapper):
  """Spectral normalization of a layer's kernel (Miyato et al., 2018).

  The power iteration's vector ``u`` and the estimate ``sigma`` live in the
  ``collection_name`` collection (``"batch_stats"``), updated when ``update_stats``.
  """

  n_steps: int = 1
  epsilon: float = 1e-12
  collection_name: str = "batch_stats"

  def _transform(self, w, update: bool):
    u = self.variable(
        self.collection_name, "u",
        lambda: weights_lib.spectral_norm_init(
            w, self.make_rng("params"), feature_axes=self.feature_axes))
    sigma = self.variable(self.collection_name, "sigma", lambda: jnp.ones((), jnp.float32))
    w_sn, new_u, new_sigma = weights_lib.spectral_norm(
        w, u.value, n_steps=self.n_steps if update else 0,
        feature_axes=self.feature_axes, epsilon=self.epsilon)
    if update and not self.is_initializing():
      u.value = new_u.astype(u.value.dtype)
      sigma.value = jax.lax.stop_gradient(new_sigma).astype(sigma.value.dtype)
    return w_sn

  @nn.compact
  def __call__(self, *args, update_stats: bool, **kwargs):
    return self._forward(lambda w: self._transform(w, update_stats), args, kwargs)
