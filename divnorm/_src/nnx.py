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

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.module import first_from

from divnorm._src import flax_semantics as fs
from divnorm._src import gdn as gdn_lib
from divnorm._src import mixtures
from divnorm._src import weights as weights_lib
from divnorm._src.batch import BatchStats
from divnorm._src.checks import check_learn_sigma
from divnorm._src.core import normalize
from divnorm._src.fields import resolve_field
from divnorm._src.lrn import check_lrn_args, local_response_norm
from divnorm._src.module_specs import (
  BATCH_NORM,
  GROUP_NORM,
  INSTANCE_NORM,
  LAYER_NORM,
  RMS_NORM,
  SPECTRAL_NORM,
  WEIGHT_NORM,
  ModuleSpec,
  bind_nnx,
)
from divnorm._src.penalty import l1_penalty
from divnorm._src.presets import divisive_norm

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


# ---- the Flax-named modules: Flax 0.12.8's signatures, from divnorm._src.module_specs ----


class _FlaxModule(nnx.Module):
  """Binds the constructor's arguments with `spec`'s signature (Flax's, then divnorm's)."""

  spec: ClassVar[ModuleSpec]

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    if "spec" not in cls.__dict__:
      return
    spec = cls.spec

    def __init__(self, *args, **kwargs):
      self._setup(**bind_nnx(spec, args, kwargs))

    __init__.__signature__ = spec.nnx_signature()
    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = __init__
    cls.__doc__ = spec.docstring("nnx")

  def _epsilon_sigma(self, epsilon, sigma):
    return fs.resolve_sigma(self.spec.name, epsilon, sigma, self.spec.default_epsilon)


class _FlaxNorm(_FlaxModule):
  """The activation normalizers: options, affine parameters, penalty and the call logic."""

  def _setup(self, *, num_features, rngs=None, scale_metadata=None, bias_metadata=None,
             sigma=None, learn_sigma=False, l1_alpha=0.0, **options):
    for name, value in options.items():
      setattr(self, name, value)
    self.num_features = num_features
    self.sigma = self._epsilon_sigma(options["epsilon"], sigma)
    self.learn_sigma, self.l1_alpha = learn_sigma, l1_alpha
    if l1_alpha < 0:
      raise ValueError(f"l1_alpha={l1_alpha} must be >= 0.")
    if learn_sigma:
      check_learn_sigma(self.sigma)
      self.log_sigma = nnx.Param(jnp.log(jnp.asarray(self.sigma, options["param_dtype"])))
    else:
      self.log_sigma = nnx.data(None)
    if num_features is None and (options.get("use_scale") or options.get("use_bias")):
      raise ValueError(
          f"{self.spec.name}: use_scale/use_bias need num_features (the size of the feature "
          f"axis); pass it, or use_scale=False, use_bias=False.")
    rngs = nnx.Rngs(0) if rngs is None else rngs
    shape = (num_features,) if isinstance(num_features, int) else tuple(num_features or ())
    self.scale = nnx.data(None)
    self.bias = nnx.data(None)
    if options.get("use_scale"):
      self.scale = nnx.Param(options["scale_init"](rngs.params(), shape, options["param_dtype"]),
                             **(scale_metadata or {}))
    if options.get("use_bias"):
      self.bias = nnx.Param(options["bias_init"](rngs.params(), shape, options["param_dtype"]),
                            **(bias_metadata or {}))
    self.penalty = Penalty(jnp.zeros((), jnp.float32)) if l1_alpha else nnx.data(None)

  def _sigma(self):
    return jnp.exp(self.log_sigma[...]) if self.log_sigma is not None else self.sigma

  def _params(self):
    return (None if self.scale is None else self.scale[...],
            None if self.bias is None else self.bias[...])

  def _fast_variance(self):
    return fs.fast_variance_mode(self.use_fast_variance, self.fast_variance)

  def _axis_name(self):
    fs.check_axis_index_groups(self.spec.name, self.axis_index_groups)
    return self.axis_name

  def _finish(self, x, y, v, scale, bias, features, mask):
    if self.penalty is not None:
      self.penalty[...] = self.penalty[...] + l1_penalty(v, self.l1_alpha, mask=mask).astype(
          jnp.float32)
    shape = fs.feature_shape(x.shape, features)
    for p in (scale, bias):
      if p is not None and p.size != math.prod(shape):
        raise ValueError(
            f"{self.spec.name} was built with num_features={self.num_features} but x of "
            f"shape {x.shape} has features {shape} on axes {features}.")
    y = fs.affine(y, scale, bias, features)
    return y.astype(fs.result_dtype(x, scale, bias, dtype=self.dtype))

  def _normalize(self, x, reduction, features, mask, *, center=True, num_groups=None):
    scale, bias = self._params()
    x, scale, bias = self.promote_dtype((x, scale, bias), dtype=self.dtype)
    x = jnp.asarray(x)
    xc = x.astype(fs.stats_dtype(x.dtype, self.dtype))
    kwargs = dict(sigma=self._sigma(), mask=mask, axis_name=self._axis_name(),
                  fast_variance=self._fast_variance(), center=center)
    if num_groups is None:
      y, v = fs.normalize_over(xc, reduction, **kwargs)
    else:
      y, v = fs.group_normalize(xc, reduction, num_groups, **kwargs)
    return self._finish(x, y, v, scale, bias, features, mask)


class BatchNorm(_FlaxNorm):
  spec = BATCH_NORM

  def _setup(self, *, feature_axes=None, **options):
    options["axis"] = fs.resolve_alias("BatchNorm", "axis", options["axis"], -1,
                                       "feature_axes", feature_axes)
    super()._setup(**options)
    shape = (self.num_features,) if isinstance(self.num_features, int) else tuple(
        self.num_features)
    self.mean = nnx.BatchStat(jnp.zeros(shape, jnp.float32))
    self.var = nnx.BatchStat(jnp.ones(shape, jnp.float32))

  def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
    """Normalizes `x` with the batch's statistics (training) or the running ones."""
    use_ra = first_from(
        use_running_average, self.use_running_average,
        error_msg="No `use_running_average` argument was provided to BatchNorm; pass it to "
                  "the constructor or the call, or use model.train()/model.eval().")
    scale, bias = self._params()
    x, mean, var, scale, bias = self.promote_dtype(
        (x, self.mean[...], self.var[...], scale, bias), dtype=self.dtype)
    x = jnp.asarray(x)
    features = fs.canonical_axes(self.axis, x.ndim, "axis")
    # Running averages update from their own values (Flax's), not the promoted copies.
    stats = BatchStats(self.mean[...], self.var[...]) if not use_ra else BatchStats(mean, var)
    (y, v), stats = fs.batch_normalize(
        x.astype(fs.stats_dtype(x.dtype, self.dtype)), stats, training=not use_ra,
        feature_axes=features, momentum=self.momentum, sigma=self._sigma(), mask=mask,
        axis_name=self._axis_name(), fast_variance=self._fast_variance())
    if not use_ra:
      self.mean[...] = jax.lax.stop_gradient(stats.mean)
      self.var[...] = jax.lax.stop_gradient(stats.var)
    return self._finish(x, y, v, scale, bias, features, mask)

  def set_view(self, use_running_average: bool | None = None):
    """Used by ``nnx.view``, as Flax's BatchNorm."""
    if use_running_average is not None:
      self.use_running_average = use_running_average


class LayerNorm(_FlaxNorm):
  spec = LAYER_NORM

  def __call__(self, x, *, mask=None):
    """Normalizes `x` over `reduction_axes`."""
    ndim = jnp.ndim(x)
    return self._normalize(x, fs.canonical_axes(self.reduction_axes, ndim, "reduction_axes"),
                           fs.canonical_axes(self.feature_axes, ndim, "feature_axes"), mask)


class RMSNorm(_FlaxNorm):
  spec = RMS_NORM

  def __call__(self, x, mask=None):
    """Divides `x` by its root mean square over `reduction_axes`."""
    ndim = jnp.ndim(x)
    return self._normalize(x, fs.canonical_axes(self.reduction_axes, ndim, "reduction_axes"),
                           fs.canonical_axes(self.feature_axes, ndim, "feature_axes"), mask,
                           center=False)


class GroupNorm(_FlaxNorm):
  spec = GROUP_NORM

  def _setup(self, *, num_groups, group_size, **options):
    channels = options["num_features"]
    self.num_groups = fs.check_groups(num_groups, group_size, channels)
    self.group_size = channels // self.num_groups
    super()._setup(**options)

  def __call__(self, x, *, mask=None):
    """Normalizes `x` over `reduction_axes` and the channels of each group."""
    x, mask, reduction, channel = fs.group_layout(x, mask, self.channel_axis,
                                                  self.reduction_axes)
    fs.check_groups(self.num_groups, None, x.shape[-1])
    y = self._normalize(x, reduction, (x.ndim - 1,), mask, num_groups=self.num_groups)
    return jnp.moveaxis(y, -1, channel)


class InstanceNorm(_FlaxNorm):
  spec = INSTANCE_NORM

  def _setup(self, *, channel_axis=None, **options):
    options["feature_axes"] = fs.resolve_alias("InstanceNorm", "feature_axes",
                                               options["feature_axes"], -1, "channel_axis",
                                               channel_axis)
    super()._setup(**options)

  def __call__(self, x, *, mask=None):
    """Normalizes `x` over every axis but the batch (0) and `feature_axes`."""
    ndim = jnp.ndim(x)
    reduction = fs.instance_reduction_axes(self.feature_axes, ndim)
    return self._normalize(x, reduction, fs.canonical_axes(self.feature_axes, ndim), mask)


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


# ---- weight normalizers (Flax's WeightNorm and SpectralNorm signatures) -----------------


class _WeightWrapper(nnx.Module):
  """Calls ``layer_instance`` with some of its variables temporarily transformed.

  The wrapped layer's own variables stay the parameters (Flax's nnx wrappers overwrite
  them with the transformed values at every call).
  """

  def _call_with(self, transforms: dict, call):
    state = nnx.to_flat_state(nnx.state(self.layer_instance))
    swapped = []
    for path, variable in state:
      if path in transforms:
        old = variable.get_value()
        new = transforms[path](old)
        variable.set_value(new)
        swapped.append((variable, old, new))
    try:
      return call()
    finally:
      for variable, old, new in swapped:
        if variable.get_value() is new:  # the layer did not update it itself
          variable.set_value(old)


_KERNELS = nnx.PathContains("kernel")


def _selected(layer, predicate, variable_type=nnx.Variable):
  return [(path, var) for path, var in nnx.to_flat_state(nnx.state(layer, variable_type))
          if predicate(path, var)]


class WeightNorm(_FlaxModule, _WeightWrapper):
  spec = WEIGHT_NORM

  def _setup(self, *, layer_instance, feature_axes, use_scale, scale_init, epsilon, dtype,
             param_dtype, variable_filter, promote_dtype, rngs=None, sigma=None):
    self.layer_instance = layer_instance
    self.feature_axes = () if feature_axes is None else feature_axes
    self.use_scale, self.scale_init = use_scale, scale_init
    self.epsilon = epsilon if sigma is None else self._epsilon_sigma(epsilon, sigma) ** 2
    self.dtype, self.param_dtype, self.promote_dtype = dtype, param_dtype, promote_dtype
    self.variable_filter = nnx.filterlib.to_predicate(variable_filter)
    selected = _selected(layer_instance, self.variable_filter, nnx.Param)
    if not selected:
      names = ["/".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(layer_instance))]
      raise fs.missing_kernel_error(layer_instance, variable_filter, names)
    rngs = nnx.Rngs(0) if rngs is None else rngs
    scales = {}
    if use_scale:
      for path, param in selected:
        features = fs.weight_feature_axes(self.feature_axes, param.ndim)
        scales[path] = nnx.Param(scale_init(
            rngs.params(), fs.feature_shape(param.shape, features), param_dtype))
    self.scales = nnx.data(scales if use_scale else None)

  def _transform(self, path):
    def transform(value):
      scale = self.scales[path][...] if self.use_scale else None
      return fs.weight_normalized(value, scale, feature_axes=self.feature_axes,
                                  epsilon=self.epsilon, dtype=self.dtype)
    return transform

  def __call__(self, x, *args, **kwargs):
    """Calls the layer with its selected variables l2-normalized (and scaled)."""
    paths = [p for p, _ in _selected(self.layer_instance, self.variable_filter)]
    for p in paths:
      if self.use_scale and p not in self.scales:
        raise RuntimeError(
            f"Could not find the scale corresponding to the param {p} in scales dict. "
            f"Parameters of the layer_instance should not change!")
    return self._call_with({p: self._transform(p) for p in paths},
                           lambda: self.layer_instance(x, *args, **kwargs))


class SpectralNorm(_FlaxModule, _WeightWrapper):
  spec = SPECTRAL_NORM

  def _setup(self, *, layer_instance, n_steps, epsilon, dtype, param_dtype, error_on_non_matrix,
             update_stats, rngs=None, sigma=None):
    self.layer_instance = layer_instance
    self.n_steps = n_steps
    self.epsilon = epsilon if sigma is None else self._epsilon_sigma(epsilon, sigma) ** 2
    self.dtype, self.param_dtype = dtype, param_dtype
    self.error_on_non_matrix = error_on_non_matrix
    # model.train() / model.eval() set use_running_average; update_stats is its opposite.
    self.use_running_average = not update_stats
    rngs = nnx.Rngs(0) if rngs is None else rngs
    batch_stats = {}
    for path, param in nnx.to_flat_state(nnx.state(layer_instance, nnx.Param)):
      shape = fs.spectral_matrix_shape(param, error_on_non_matrix)
      if shape is None or n_steps < 1:
        continue
      key = rngs.params()
      batch_stats[path + ("u",)] = nnx.BatchStat(
          nnx.initializers.normal()(key, (1, shape[1]), param_dtype))
      batch_stats[path + ("sigma",)] = nnx.BatchStat(jnp.ones((), param_dtype))
    self.batch_stats = nnx.data(batch_stats)

  def _transform(self, path, update_stats: bool):
    u_var, sigma_var = self.batch_stats[path + ("u",)], self.batch_stats[path + ("sigma",)]

    def transform(value):
      w, u, sigma = fs.spectral_normalized(value, u_var[...], n_steps=self.n_steps,
                                           epsilon=self.epsilon, dtype=self.dtype)
      if update_stats:
        u_var[...] = fs.as_dtype_of(u, u_var[...])
        sigma_var[...] = fs.as_dtype_of(sigma, sigma_var[...])
      return w
    return transform

  def __call__(self, x, update_stats: bool | None = None):
    """Calls the layer with each weight matrix divided by its largest singular value."""
    update_stats = first_from(
        update_stats, not self.use_running_average,
        error_msg="No `update_stats` argument was provided to SpectralNorm.")
    transforms = {}
    for path, param in nnx.to_flat_state(nnx.state(self.layer_instance, nnx.Param)):
      if fs.spectral_matrix_shape(param, self.error_on_non_matrix) is None or self.n_steps < 1:
        continue
      if path + ("u",) not in self.batch_stats:
        raise RuntimeError(
            f"Could not find the path for u batch stat corresponding to the param {path} in "
            f"the batch stats dict. Parameters of the layer_instance should not change!")
      transforms[path] = self._transform(path, update_stats)
    return self._call_with(transforms, lambda: self.layer_instance(x))


class WeightStandardization(_WeightWrapper):
  """Weight standardization of a layer's weights (Qiao et al., 2019); no parameters.

  Args:
    layer_instance: the wrapped layer.
    feature_axes: the weights' output axes; mean and variance reduce the others.
    variable_filter: which variables to standardize, an nnx filter (default: kernels).
    sigma: smoothing term of the standard deviation.
  """

  def __init__(self, layer_instance: nnx.Module, *, feature_axes: Axes = -1,
               variable_filter=_KERNELS, sigma: float = 0.0):
    self.layer_instance = layer_instance
    self.feature_axes, self.sigma = feature_axes, sigma
    self.variable_filter = nnx.filterlib.to_predicate(variable_filter)
    if not _selected(layer_instance, self.variable_filter, nnx.Param):
      names = ["/".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(layer_instance))]
      raise fs.missing_kernel_error(layer_instance, variable_filter, names)

  def __call__(self, *args, **kwargs):
    def transform(w):
      return weights_lib.weight_standardization(w, feature_axes=self.feature_axes,
                                                sigma=self.sigma)
    paths = [p for p, _ in _selected(self.layer_instance, self.variable_filter)]
    return self._call_with({p: transform for p in paths},
                           lambda: self.layer_instance(*args, **kwargs))
