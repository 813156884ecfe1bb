"""Flax NNX modules for every divnorm normalizer: thin wrappers over the functions.

Activation normalizers take the shape of their per-feature parameters up front, as NNX
needs (``num_features``: an int, or a tuple for several `feature_axes`; may be None for
a module with no affine and no running statistics), and share these options with
`divnorm.linen`:

  sigma: smoothing term (Flax's ``epsilon`` is ``sigma ** 2``).
  learn_sigma: learn sigma as ``exp(log_sigma)`` (a `Param`), initialised at `sigma` > 0.
  use_scale, use_bias, scale_init, bias_init, param_dtype: the affine after normalizing.
  l1_alpha: if > 0, every call adds ``l1_alpha * mean(|v|)`` to a `Penalty` variable of
    the module; `pop_penalties(model)` returns their sum and resets them (call it inside
    the loss so the gradient flows, once per step).

Modules with running statistics (BatchNorm, MeanOnlyBatchNorm, BatchRenorm,
BatchInstanceNorm, SwitchableNorm) keep them as `nnx.BatchStat` ``mean``/``var``; they
update in training (``use_running_average=False``) and stay put in evaluation;
``model.train()`` / ``model.eval()`` switch them, as for ``nnx.BatchNorm``.

Weight normalizers wrap a layer and use a transformed ``param_name`` kernel each call
(the layer's own kernel stays the parameter): WeightNorm, SpectralNorm,
WeightStandardization.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from divnorm._src import gdn as gdn_lib
from divnorm._src import mixtures
from divnorm._src import weights as weights_lib
from divnorm._src.batch import BatchStats, batch_norm
from divnorm._src.core import normalize
from divnorm._src.fields import resolve_field
from divnorm._src.lrn import check_lrn_args, local_response_norm
from divnorm._src.penalty import l1_penalty
from divnorm._src.presets import divisive_norm, group_norm, instance_norm, layer_norm, rms_norm

Axes = int | Sequence[int]
Initializer = Callable[..., jax.Array]


class Penalty(nnx.Variable):
  """The L1 penalties a normalizer accumulated since the last `pop_penalties`."""


def pop_penalties(model: nnx.Module) -> jax.Array:
  """Sum of every `Penalty` in `model` (float32 scalar); resets them to zero."""
  total = jnp.zeros((), jnp.float32)
  for _, node in nnx.iter_graph(model):
    if isinstance(node, Penalty):
      total = total + node[...].astype(jnp.float32)
      node[...] = jnp.zeros_like(node[...])
  return total


def _key(rngs: nnx.Rngs | None) -> jax.Array:
  return rngs.params() if rngs is not None else jax.random.key(0)


def _shape(num_features) -> tuple[int, ...]:
  return (num_features,) if isinstance(num_features, int) else tuple(num_features)


class _Norm(nnx.Module):
  """Shared options: sigma, learned sigma, the affine and the L1 penalty."""

  def __init__(
      self,
      num_features: int | Sequence[int] | None,
      *,
      sigma: float = 0.0,
      learn_sigma: bool = False,
      use_scale: bool = True,
      use_bias: bool = True,
      scale_init: Initializer = nnx.initializers.ones,
      bias_init: Initializer = nnx.initializers.zeros,
      param_dtype: Any = jnp.float32,
      l1_alpha: float = 0.0,
      rngs: nnx.Rngs | None = None,
  ):
    if sigma < 0:
      raise ValueError(f"sigma={sigma} must be >= 0 (Flax's epsilon is sigma**2).")
    if l1_alpha < 0:
      raise ValueError(f"l1_alpha={l1_alpha} must be >= 0.")
    if (use_scale or use_bias) and num_features is None:
      raise ValueError(
          f"{type(self).__name__}: use_scale/use_bias need num_features (the shape of the "
          f"feature axes); pass it, or use_scale=False, use_bias=False.")
    self.sigma = sigma
    self.learn_sigma = learn_sigma
    self.l1_alpha = l1_alpha
    self.num_features = num_features
    if learn_sigma:
      if not sigma > 0:
        raise ValueError(
            f"learn_sigma=True learns sigma = exp(log_sigma) and starts from sigma, which "
            f"must be > 0 (got sigma={sigma}); e.g. sigma=0.5 as in the paper's ResNet code.")
      self.log_sigma = nnx.Param(jnp.log(jnp.asarray(sigma, param_dtype)))
    else:
      self.log_sigma = None
    shape = None if num_features is None else _shape(num_features)
    self.scale = nnx.Param(scale_init(_key(rngs), shape, param_dtype)) if use_scale else None
    self.bias = nnx.Param(bias_init(_key(rngs), shape, param_dtype)) if use_bias else None
    self.penalty = Penalty(jnp.zeros((), jnp.float32)) if l1_alpha else None

  def _sigma(self):
    return jnp.exp(self.log_sigma[...]) if self.log_sigma is not None else self.sigma

  def _finish(self, y, v, feature_axes: Axes, mask):
    """Adds the L1 penalty of `v`, then applies the affine over `feature_axes`."""
    if self.penalty is not None:
      self.penalty[...] = self.penalty[...] + l1_penalty(v, self.l1_alpha, mask=mask).astype(
          jnp.float32)
    if self.scale is None and self.bias is None:
      return y
    axes = resolve_field(feature_axes, y.ndim, role="feature_axes").whole
    shape = tuple(y.shape[a] for a in axes)
    bshape = tuple(y.shape[a] if a in axes else 1 for a in range(y.ndim))
    for p in (self.scale, self.bias):
      if p is not None and tuple(p.shape) != shape:
        raise ValueError(
            f"{type(self).__name__} was built with num_features={self.num_features} but x of "
            f"shape {y.shape} has features {shape} on axes {axes}.")
    if self.scale is not None:
      y = y * self.scale[...].reshape(bshape).astype(y.dtype)
    if self.bias is not None:
      y = y + self.bias[...].reshape(bshape).astype(y.dtype)
    return y


class _RunningNorm(_Norm):
  """A normalizer with running batch statistics (``mean``, ``var``: `nnx.BatchStat`)."""

  def __init__(self, num_features, *, use_running_average: bool = False,
               momentum: float = 0.99, axis_name: str | None = None, stats_shape=None,
               stats_fields=("mean", "var"), **kwargs):
    super().__init__(num_features, **kwargs)
    if not 0.0 <= momentum <= 1.0:
      raise ValueError(f"momentum={momentum} must be in [0, 1] (Flax's default is 0.99).")
    self.use_running_average = use_running_average
    self.momentum = momentum
    self.axis_name = axis_name
    shape = _shape(num_features if stats_shape is None else stats_shape)
    self.mean = nnx.BatchStat(jnp.zeros(shape, jnp.float32))
    self.var = nnx.BatchStat(jnp.ones(shape, jnp.float32)) if "var" in stats_fields else None

  def _training(self, use_running_average) -> bool:
    use_ra = self.use_running_average if use_running_average is None else use_running_average
    return not use_ra

  def _stats(self) -> BatchStats:
    return BatchStats(self.mean[...], self.var[...])

  def _store(self, stats, training: bool) -> None:
    if training:
      self.mean[...] = stats.mean
      if self.var is not None:
        self.var[...] = stats.var


# ---- the core normalizers --------------------------------------------------------------


class BatchNorm(_RunningNorm):
  """Batch normalization (`divnorm.batch_norm`); ``feature_axes`` as Flax's ``axis``."""

  def __init__(self, num_features: int | Sequence[int], *, feature_axes: Axes = -1,
               fast_variance: bool | None = None, **kwargs):
    super().__init__(num_features, **kwargs)
    self.feature_axes, self.fast_variance = feature_axes, fast_variance

  def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
    training = self._training(use_running_average)
    (y, v), stats = batch_norm(
        x, self._stats(), training=training, feature_axes=self.feature_axes,
        momentum=self.momentum, sigma=self._sigma(), axis_name=self.axis_name, mask=mask,
        return_centered=True, fast_variance=self.fast_variance)
    self._store(stats, training)
    return self._finish(y, v, self.feature_axes, mask)


class LayerNorm(_Norm):
  """Layer normalization over `reduction_axes`; affine over `feature_axes`."""

  def __init__(self, num_features, *, reduction_axes: Axes = -1, feature_axes: Axes = -1,
               fast_variance: bool | None = None, **kwargs):
    super().__init__(num_features, **kwargs)
    self.reduction_axes, self.feature_axes = reduction_axes, feature_axes
    self.fast_variance = fast_variance

  def __call__(self, x, *, mask=None):
    y, v = layer_norm(x, reduction_axes=self.reduction_axes, sigma=self._sigma(), mask=mask,
                      return_centered=True, fast_variance=self.fast_variance)
    return self._finish(y, v, self.feature_axes, mask)


class InstanceNorm(_Norm):
  """Instance normalization: statistics over the spatial axes of each channel."""

  def __init__(self, num_features, *, channel_axis: int = -1, fast_variance: bool | None = None,
               **kwargs):
    super().__init__(num_features, **kwargs)
    self.channel_axis, self.fast_variance = channel_axis, fast_variance

  def __call__(self, x, *, mask=None):
    y, v = instance_norm(x, channel_axis=self.channel_axis, sigma=self._sigma(), mask=mask,
                         return_centered=True, fast_variance=self.fast_variance)
    return self._finish(y, v, self.channel_axis, mask)


class GroupNorm(_Norm):
  """Group normalization over channel groups (give `num_groups` or `group_size`)."""

  def __init__(self, num_features, *, num_groups: int | None = 32,
               group_size: int | None = None, channel_axis: int = -1,
               fast_variance: bool | None = None, **kwargs):
    super().__init__(num_features, **kwargs)
    self.num_groups, self.group_size, self.channel_axis = num_groups, group_size, channel_axis
    self.fast_variance = fast_variance

  def __call__(self, x, *, mask=None):
    y, v = group_norm(x, num_groups=self.num_groups, group_size=self.group_size,
                      channel_axis=self.channel_axis, sigma=self._sigma(), mask=mask,
                      return_centered=True, fast_variance=self.fast_variance)
    return self._finish(y, v, self.channel_axis, mask)


class RMSNorm(_Norm):
  """RMS normalization (no centering; the L1 penalty, if any, is on the input)."""

  def __init__(self, num_features, *, reduction_axes: Axes = -1, feature_axes: Axes = -1,
               use_bias: bool = False, **kwargs):
    super().__init__(num_features, use_bias=use_bias, **kwargs)
    self.reduction_axes, self.feature_axes = reduction_axes, feature_axes

  def __call__(self, x, *, mask=None):
    y = rms_norm(x, reduction_axes=self.reduction_axes, sigma=self._sigma(), mask=mask)
    return self._finish(y, x, self.feature_axes, mask)


class DivisiveNorm(_Norm):
  """Divisive normalization with local windows (`divnorm.divisive_norm`); no affine."""

  def __init__(self, num_features=None, *, summation_window, suppression_window=None,
               channel_axis: int = -1, across_channels: bool = True, border: str = "valid",
               use_scale: bool = False, use_bias: bool = False, **kwargs):
    super().__init__(num_features, use_scale=use_scale, use_bias=use_bias, **kwargs)
    self.summation_window, self.suppression_window = summation_window, suppression_window
    self.channel_axis, self.across_channels, self.border = channel_axis, across_channels, border

  def __call__(self, x, *, mask=None):
    y, v = divisive_norm(
        x, summation_window=self.summation_window, suppression_window=self.suppression_window,
        sigma=self._sigma(), channel_axis=self.channel_axis,
        across_channels=self.across_channels, border=self.border, mask=mask,
        return_centered=True)
    return self._finish(y, v, self.channel_axis, mask)


class Normalize(_Norm):
  """The unified normalizer over arbitrary fields (`divnorm.normalize`); no affine."""

  def __init__(self, num_features=None, *, summation, suppression=None, border: str = "valid",
               feature_axes: Axes = -1, axis_name: str | None = None, use_scale: bool = False,
               use_bias: bool = False, **kwargs):
    super().__init__(num_features, use_scale=use_scale, use_bias=use_bias, **kwargs)
    self.summation, self.suppression, self.border = summation, suppression, border
    self.feature_axes, self.axis_name = feature_axes, axis_name

  def __call__(self, x, *, mask=None):
    y, v = normalize(x, self.summation, self.suppression, sigma=self._sigma(),
                     border=self.border, mask=mask, axis_name=self.axis_name,
                     return_centered=True)
    return self._finish(y, v, self.feature_axes, mask)


# ---- batch-norm variants and mixtures --------------------------------------------------


class MeanOnlyBatchNorm(_RunningNorm):
  """Mean-only batch norm (Salimans & Kingma, 2016); bias but no scale by default."""

  def __init__(self, num_features, *, feature_axes: Axes = -1, use_scale: bool = False,
               **kwargs):
    super().__init__(num_features, use_scale=use_scale, stats_fields=("mean",), **kwargs)
    self.feature_axes = feature_axes

  def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
    training = self._training(use_running_average)
    y, stats = mixtures.mean_only_batch_norm(
        x, mixtures.MeanStats(self.mean[...]), training=training,
        feature_axes=self.feature_axes, momentum=self.momentum, axis_name=self.axis_name,
        mask=mask)
    self._store(stats, training)
    return self._finish(y, y, self.feature_axes, mask)


class BatchRenorm(_RunningNorm):
  """Batch renormalization (Ioffe, 2017); `rmax`, `dmax` may be overridden per call."""

  def __init__(self, num_features, *, feature_axes: Axes = -1, rmax: float = 3.0,
               dmax: float = 5.0, **kwargs):
    mixtures.check_renorm_limits(rmax, dmax)
    super().__init__(num_features, **kwargs)
    self.feature_axes, self.rmax, self.dmax = feature_axes, rmax, dmax

  def __call__(self, x, use_running_average: bool | None = None, *, rmax=None, dmax=None,
               mask=None):
    training = self._training(use_running_average)
    (y, v), stats = mixtures.batch_renorm(
        x, self._stats(), training=training, rmax=self.rmax if rmax is None else rmax,
        dmax=self.dmax if dmax is None else dmax, feature_axes=self.feature_axes,
        momentum=self.momentum, sigma=self._sigma(), axis_name=self.axis_name, mask=mask,
        return_centered=True)
    self._store(stats, training)
    return self._finish(y, v, self.feature_axes, mask)


class BatchInstanceNorm(_RunningNorm):
  """Batch-instance norm (Nam & Kim, 2018): a learned per-channel ``rho``, clipped to [0, 1].

  `num_features` is the number of channels.
  """

  def __init__(self, num_features: int, *, channel_axis: int = -1, rho_init: float = 1.0,
               param_dtype: Any = jnp.float32, **kwargs):
    mixtures.check_unit_interval(rho_init, "rho_init")
    super().__init__(num_features, param_dtype=param_dtype, **kwargs)
    self.channel_axis = channel_axis
    self.rho = nnx.Param(jnp.full(_shape(num_features), rho_init, param_dtype))

  def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
    training = self._training(use_running_average)
    (y, v), stats = mixtures.batch_instance_norm(
        x, self._stats(), rho=jnp.clip(self.rho[...], 0.0, 1.0), training=training,
        channel_axis=self.channel_axis, momentum=self.momentum, sigma=self._sigma(),
        axis_name=self.axis_name, mask=mask, return_centered=True)
    self._store(stats, training)
    return self._finish(y, v, self.channel_axis, mask)


class SwitchableNorm(_RunningNorm):
  """Switchable norm (Luo et al., 2019): softmax(logits) over the IN, LN, BN statistics."""

  def __init__(self, num_features: int, *, channel_axis: int = -1,
               param_dtype: Any = jnp.float32, **kwargs):
    super().__init__(num_features, param_dtype=param_dtype, **kwargs)
    self.channel_axis = channel_axis
    self.mean_logits = nnx.Param(jnp.zeros((3,), param_dtype))
    self.var_logits = nnx.Param(jnp.zeros((3,), param_dtype))

  def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
    training = self._training(use_running_average)
    (y, v), stats = mixtures.switchable_norm(
        x, self._stats(), mean_weights=jax.nn.softmax(self.mean_logits[...]),
        var_weights=jax.nn.softmax(self.var_logits[...]), training=training,
        channel_axis=self.channel_axis, momentum=self.momentum, sigma=self._sigma(),
        axis_name=self.axis_name, mask=mask, return_centered=True)
    self._store(stats, training)
    return self._finish(y, v, self.channel_axis, mask)


# ---- LRN and GDN -----------------------------------------------------------------------


class LocalResponseNorm(nnx.Module):
  """Local response normalization (``torch.nn.LocalResponseNorm``; no parameters)."""

  def __init__(self, size: int = 5, *, alpha: float = 1e-4, beta: float = 0.75,
               k: float = 1.0, channel_axis: int = -1):
    check_lrn_args(size, alpha, beta, k)
    self.size, self.alpha, self.beta, self.k = size, alpha, beta, k
    self.channel_axis = channel_axis

  def __call__(self, x):
    return local_response_norm(x, size=self.size, alpha=self.alpha, beta=self.beta,
                               k=self.k, channel_axis=self.channel_axis)


class GDN(nnx.Module):
  """Generalized divisive normalization (Balle et al., 2016); ``inverse=True`` is IGDN.

  ``beta`` ``[C]`` and ``gamma`` ``[C, C]`` are raw reparameterized `Param`s (see
  `divnorm.gdn`).
  """

  def __init__(self, num_features: int, *, inverse: bool = False, alpha: float = 2.0,
               epsilon: float = 0.5, beta_init: float = 1.0, gamma_init: float = 0.1,
               channel_axis: int = -1, param_dtype: Any = jnp.float32):
    init = gdn_lib.gdn_init(num_features, beta=beta_init, gamma=gamma_init, dtype=param_dtype)
    self.beta = nnx.Param(init.beta)
    self.gamma = nnx.Param(init.gamma)
    self.inverse, self.alpha, self.epsilon = inverse, alpha, epsilon
    self.channel_axis = channel_axis

  def __call__(self, x):
    beta, gamma = gdn_lib.gdn_values(gdn_lib.GDNParams(self.beta[...], self.gamma[...]))
    return gdn_lib.gdn(x, beta=beta, gamma=gamma, alpha=self.alpha, epsilon=self.epsilon,
                       inverse=self.inverse, channel_axis=self.channel_axis)


# ---- weight normalizers ----------------------------------------------------------------


def _kernel_variable(layer: nnx.Module, param_name: str) -> nnx.Param:
  variable = getattr(layer, param_name, None)
  if not isinstance(variable, nnx.Param):
    names = sorted(str(path[-1]) for path, _ in nnx.to_flat_state(nnx.state(layer, nnx.Param)))
    raise ValueError(
        f"{type(layer).__name__} has no parameter {param_name!r} to normalize (its "
        f"parameters: {names}); pass param_name=... naming its weight matrix.")
  return variable


class _KernelWrapper(nnx.Module):
  """Calls `layer` with its kernel temporarily replaced by a transformed one."""

  def __init__(self, layer: nnx.Module, *, param_name: str, feature_axes: Axes):
    self.layer = layer
    self.param_name = param_name
    self.feature_axes = feature_axes
    _kernel_variable(layer, param_name)

  def _call_with(self, transform, args, kwargs):
    variable = _kernel_variable(self.layer, self.param_name)
    kernel = variable.get_value()
    variable.set_value(transform(kernel))
    try:
      return self.layer(*args, **kwargs)
    finally:
      variable.set_value(kernel)


class WeightNorm(_KernelWrapper):
  """Weight normalization of `layer`'s kernel: ``g * v / ||v||``; the kernel is ``v``.

  ``g`` starts at ``||v||``, so the wrapped layer starts as the original one.
  """

  def __init__(self, layer: nnx.Module, *, param_name: str = "kernel",
               feature_axes: Axes = -1, epsilon: float = 1e-12):
    super().__init__(layer, param_name=param_name, feature_axes=feature_axes)
    kernel = _kernel_variable(layer, param_name).get_value()
    self.g = nnx.Param(weights_lib.kernel_norm(kernel, feature_axes=feature_axes))
    self.epsilon = epsilon

  def __call__(self, *args, **kwargs):
    return self._call_with(
        lambda v: weights_lib.weight_norm(
            v, self.g[...], feature_axes=self.feature_axes, epsilon=self.epsilon),
        args, kwargs)


class WeightStandardization(_KernelWrapper):
  """Weight standardization of `layer`'s kernel (Qiao et al., 2019)."""

  def __init__(self, layer: nnx.Module, *, param_name: str = "kernel",
               feature_axes: Axes = -1, sigma: float = 0.0):
    super().__init__(layer, param_name=param_name, feature_axes=feature_axes)
    self.sigma = sigma

  def __call__(self, *args, **kwargs):
    return self._call_with(
        lambda w: weights_lib.weight_standardization(
            w, feature_axes=self.feature_axes, sigma=self.sigma),
        args, kwargs)


class SpectralNorm(_KernelWrapper):
  """Spectral normalization of `layer`'s kernel (Miyato et al., 2018).

  ``u`` and the estimate ``sigma`` are `nnx.BatchStat`s, advanced by `n_steps` power
  iterations per call in training (``use_running_average=False``) and frozen in
  evaluation, so ``model.eval()`` freezes them too.
  """

  def __init__(self, layer: nnx.Module, *, param_name: str = "kernel",
               feature_axes: Axes = -1, n_steps: int = 1, epsilon: float = 1e-12,
               use_running_average: bool = False, rngs: nnx.Rngs | None = None):
    super().__init__(layer, param_name=param_name, feature_axes=feature_axes)
    kernel = _kernel_variable(layer, param_name).get_value()
    self.u = nnx.BatchStat(
        weights_lib.spectral_norm_init(kernel, _key(rngs), feature_axes=feature_axes))
    self.sigma = nnx.BatchStat(jnp.ones((), jnp.float32))
    self.n_steps, self.epsilon = n_steps, epsilon
    self.use_running_average = use_running_average

  def __call__(self, *args, update_stats: bool | None = None, **kwargs):
    update = not self.use_running_average if update_stats is None else update_stats

    def transform(w):
      w_sn, u, sigma = weights_lib.spectral_norm(
          w, self.u[...], n_steps=self.n_steps if update else 0,
          feature_axes=self.feature_axes, epsilon=self.epsilon)
      if update:
        self.u[...] = u.astype(self.u[...].dtype)
        self.sigma[...] = jax.lax.stop_gradient(sigma).astype(jnp.float32)
      return w_sn

    return self._call_with(transform, args, kwargs)
