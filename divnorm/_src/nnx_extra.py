"""Flax NNX modules of the survey's other normalizers, and weight-normalizing wrappers.

Activation normalizers take divnorm's keyword-only options (see `divnorm._src.nnx`) and
keep running statistics as `nnx.BatchStat` ``mean``/``var``, which update in training
(``use_running_average=False``). Weight wrappers call a layer with some of its weights
transformed for the call; the layer's own weights stay the parameters (flax's nnx wrappers
overwrite them at every call). WeightNorm and SpectralNorm take flax.nnx's arguments.
Every layer takes nnx's ``rngs=``; those whose initial values are constants draw nothing.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.module import first_from
from flax.nnx.nn import dtypes, initializers

from divnorm._src import flax_semantics as fs
from divnorm._src import gdn as gdn_lib
from divnorm._src import mixtures, weights
from divnorm._src.checks import (
  check_int,
  check_lrn_args,
  check_renorm_limits,
  check_unit_interval,
)
from divnorm._src.lrn import local_response_norm
from divnorm._src.nnx import _ONES, _ZEROS, Axes, Dtype, Initializer, _Running

_KERNELS = nnx.PathContains("kernel")  # flax's default filter


class MeanOnlyBatchNorm(_Running):
  """Mean-only batch norm (Salimans & Kingma, 2016): ``x - E_batch[x]`` (+ bias); no scale
  by default. The L1 penalty is on the output.
  Arguments: `divnorm.mixtures.mean_only_batch_norm`'s and the shared ones in `divnorm.nnx`.

  >>> MeanOnlyBatchNorm(3)(jnp.ones((4, 3))).shape
  (4, 3)
  """

  def __init__(self, num_features, *, feature_axes: Axes = -1, use_scale: bool = False,
               use_bias: bool = True, use_running_average: bool | None = False,
               momentum: float = 0.99,
               axis_name: str | None = None, scale_init: Initializer = _ONES,
               bias_init: Initializer = _ZEROS, param_dtype: Dtype = jnp.float32,
               sigma: float = 0.0, learn_sigma: bool = False, l1_alpha: float = 0.0,
               rngs: nnx.Rngs | None = None):
    fs.check_no_sigma(self, sigma, learn_sigma)
    self._setup(locals(), running=("mean",))

  def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
    """Subtracts the batch mean (training) or the running mean."""
    return self._running(mixtures.mean_only_batch_norm, x, use_running_average,
                         self.feature_axes, mixtures.MeanStats, feature_axes=self.feature_axes,
                         mask=mask, return_centered=True)


class BatchRenorm(_Running):
  """Batch renormalization (Ioffe, 2017); `rmax`, `dmax` may be overridden per call.
  Arguments: `divnorm.mixtures.batch_renorm`'s (`rmax`, `dmax`, `feature_axes`) and the shared
  ones in `divnorm.nnx`.

  >>> BatchRenorm(3)(jnp.ones((4, 3))).shape
  (4, 3)
  """

  def __init__(self, num_features, *, feature_axes: Axes = -1, rmax: float = 3.0, dmax: float = 5.0,
               use_running_average: bool | None = False, momentum: float = 0.99,
               axis_name: str | None = None, use_scale: bool = True, use_bias: bool = True,
               scale_init: Initializer = _ONES, bias_init: Initializer = _ZEROS,
               param_dtype: Dtype = jnp.float32, sigma: float = 0.0, learn_sigma: bool = False,
               l1_alpha: float = 0.0, rngs: nnx.Rngs | None = None):
    check_renorm_limits(rmax, dmax)
    self._setup(locals(), running=("mean", "var"))

  def __call__(self, x, use_running_average: bool | None = None, *, rmax=None, dmax=None,
               mask=None):
    """Batch norm corrected toward the running statistics (training), or running BN."""
    return self._running(
        mixtures.batch_renorm, x, use_running_average, self.feature_axes,
        rmax=self.rmax if rmax is None else rmax, dmax=self.dmax if dmax is None else dmax,
        feature_axes=self.feature_axes, sigma=self._sigma(), mask=mask, return_centered=True)


class BatchInstanceNorm(_Running):
  """Batch-instance norm (Nam & Kim, 2018): a learned per-channel ``rho``, clipped to [0, 1]
  where it is used, its gradient passed straight through (`divnorm.mixtures.learned_rho`).
  Arguments: `divnorm.mixtures.batch_instance_norm`'s (`channel_axis`; `rho_init` is the
  initial `rho`; `x` keeps its batch axis under a per-example vmap) and the shared ones.

  >>> BatchInstanceNorm(3)(jnp.ones((2, 4, 4, 3))).shape
  (2, 4, 4, 3)
  """

  def __init__(self, num_features: int, *, channel_axis: int = -1, rho_init: float = 1.0,
               use_running_average: bool | None = False, momentum: float = 0.99,
               axis_name: str | None = None, use_scale: bool = True, use_bias: bool = True,
               scale_init: Initializer = _ONES, bias_init: Initializer = _ZEROS,
               param_dtype: Dtype = jnp.float32, sigma: float = 0.0, learn_sigma: bool = False,
               l1_alpha: float = 0.0, rngs: nnx.Rngs | None = None):
    check_unit_interval(rho_init, "rho_init")
    self._setup(locals(), running=("mean", "var"))
    self.rho = nnx.Param(jnp.full(self.mean.shape, rho_init, param_dtype))

  def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
    """Mixes batch and instance normalization per channel."""
    return self._running(
        mixtures.batch_instance_norm, x, use_running_average, self.channel_axis,
        rho=mixtures.learned_rho(self.rho[...]), channel_axis=self.channel_axis,
        sigma=self._sigma(), mask=mask, return_centered=True)


class SwitchableNorm(_Running):
  """Switchable norm (Luo et al., 2019): softmax(logits) over the IN, LN, BN statistics.
  Arguments: `divnorm.mixtures.switchable_norm`'s (`channel_axis`; `x` keeps its batch axis
  under a per-example vmap) and the shared ones in `divnorm.nnx`.

  >>> SwitchableNorm(3)(jnp.ones((2, 4, 4, 3))).shape
  (2, 4, 4, 3)
  """

  def __init__(self, num_features: int, *, channel_axis: int = -1,
               use_running_average: bool | None = False, momentum: float = 0.99,
               axis_name: str | None = None, use_scale: bool = True, use_bias: bool = True,
               scale_init: Initializer = _ONES, bias_init: Initializer = _ZEROS,
               param_dtype: Dtype = jnp.float32, sigma: float = 0.0, learn_sigma: bool = False,
               l1_alpha: float = 0.0, rngs: nnx.Rngs | None = None):
    self._setup(locals(), running=("mean", "var"))
    self.mean_logits = nnx.Param(jnp.zeros((3,), param_dtype))
    self.var_logits = nnx.Param(jnp.zeros((3,), param_dtype))

  def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
    """Normalizes with the learned mixture of the three statistics."""
    return self._running(
        mixtures.switchable_norm, x, use_running_average, self.channel_axis,
        mean_weights=jax.nn.softmax(self.mean_logits[...]),
        var_weights=jax.nn.softmax(self.var_logits[...]), channel_axis=self.channel_axis,
        sigma=self._sigma(), mask=mask, return_centered=True)


class LocalResponseNorm(nnx.Module):
  """Local response normalization (``torch.nn.LocalResponseNorm``; no parameters).
  Arguments: `divnorm.local_response.local_response_norm`'s (`size`, `alpha`, `beta`, `k`,
  `channel_axis`).

  >>> LocalResponseNorm(3)(jnp.ones((1, 4, 4, 8))).shape
  (1, 4, 4, 8)
  """

  def __init__(self, size: int = 5, *, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0,
               channel_axis: int = -1, rngs: nnx.Rngs | None = None):
    check_lrn_args(size, alpha, beta, k)
    self.size, self.alpha, self.beta, self.k = size, alpha, beta, k
    self.channel_axis = channel_axis

  def __call__(self, x):
    """Divides each channel by its neighbours' pooled energy."""
    return local_response_norm(x, size=self.size, alpha=self.alpha, beta=self.beta, k=self.k,
                               channel_axis=self.channel_axis)


class GDN(nnx.Module):
  """Generalized divisive normalization (Ballé et al., 2016); ``inverse=True`` is IGDN.
  ``beta`` ``[C]`` and ``gamma`` ``[C, C]`` are raw reparameterized parameters (`divnorm.gdn`).
  Arguments: `divnorm.gdn.gdn`'s (`inverse`, `alpha`, `epsilon`, `channel_axis`); `num_features`,
  `beta_init`, `gamma_init`, `param_dtype` are `gdn_init`'s `channels`, `beta`, `gamma`, `dtype`.

  >>> GDN(3)(jnp.ones((1, 4, 4, 3))).shape
  (1, 4, 4, 3)
  """

  def __init__(self, num_features: int, *, inverse: bool = False, alpha: float = 2.0,
               epsilon: float = 0.5, beta_init: float = 1.0, gamma_init: float = 0.1,
               channel_axis: int = -1, param_dtype: Dtype = jnp.float32,
               rngs: nnx.Rngs | None = None):
    init = fs.gdn_init(num_features, beta_init, gamma_init, param_dtype, "num_features")
    self.beta, self.gamma = nnx.Param(init.beta), nnx.Param(init.gamma)
    self.inverse, self.alpha, self.epsilon = inverse, alpha, epsilon
    self.channel_axis = channel_axis

  def __call__(self, x):
    """``x / (beta + gamma |x|^alpha)^epsilon`` across channels (times, for IGDN)."""
    fs.check_channels(self, self.beta.shape[0], x, self.channel_axis)
    beta, gamma = gdn_lib.gdn_values(gdn_lib.GDNParams(self.beta[...], self.gamma[...]))
    return gdn_lib.gdn(x, beta=beta, gamma=gamma, alpha=self.alpha, epsilon=self.epsilon,
                       inverse=self.inverse, channel_axis=self.channel_axis)


class _Wrapper(nnx.Module):
  """The base of the weight wrappers: calls ``layer_instance`` with the weights that
  `transforms` (path -> function) names replaced for the call, then restores them."""

  def _call(self, transforms: dict, call):
    swapped = []
    for path, variable in nnx.to_flat_state(nnx.state(self.layer_instance)):
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

  def _selected(self, variable_filter, error: bool = True) -> dict:
    """The layer's parameters that `variable_filter` selects, by path."""
    state = nnx.to_flat_state(nnx.state(self.layer_instance, nnx.Param))
    selected = {path: param for path, param in state if variable_filter(path, param)}
    if not selected and error:
      names = ["/".join(map(str, p)) for p, _ in nnx.to_flat_state(
          nnx.state(self.layer_instance))]
      raise fs.missing_kernel_error(self.layer_instance, variable_filter, names)
    return selected


class WeightNorm(_Wrapper):
  """L2 weight normalization (Salimans & Kingma, 2016): flax.nnx.WeightNorm's arguments;
  ``scales`` maps each selected weight's path to its scale (an `nnx.Param`).

  >>> wn = WeightNorm(nnx.Linear(3, 4, rngs=nnx.Rngs(0)))
  >>> wn(jnp.ones((2, 3))).shape, wn.scales[("kernel",)].shape
  ((2, 4), (4,))
  """

  def __init__(self, layer_instance: nnx.Module, *, feature_axes: Axes | None = -1,
               use_scale: bool = True, scale_init: Initializer = _ONES, epsilon: float = 1e-12,
               dtype: Dtype | None = None, param_dtype: Dtype = jnp.float32,
               variable_filter=_KERNELS, promote_dtype=dtypes.promote_dtype,
               rngs: nnx.Rngs | None = None, sigma: float | None = None):
    self.layer_instance, self.feature_axes = layer_instance, (
        () if feature_axes is None else feature_axes)  # flax's
    self.use_scale, self.scale_init, self.dtype = use_scale, scale_init, dtype
    self.param_dtype, self.promote_dtype = param_dtype, promote_dtype
    self.epsilon = fs.epsilon_of(epsilon, sigma, self, added_to="the squared norms")
    self.variable_filter = nnx.filterlib.to_predicate(variable_filter)
    stream, scales = (nnx.Rngs(0) if rngs is None else rngs)["params"], {}
    selected = self._selected(self.variable_filter)  # an error if it selects nothing
    # flax hands `scale_init` the stream and draws no key; each key here is folded from the
    # stream's next one, not drawn, so the layers made after initialize as under flax.
    following = jax.random.fold_in(stream.key[...], stream.count[...])
    for i, (path, w) in enumerate(selected.items() if use_scale else ()):
      features = fs.canonical_axes(feature_axes, w.ndim, "feature_axes")
      scales[path] = nnx.Param(scale_init(jax.random.fold_in(following, i), tuple(
          w.shape[a] for a in features), param_dtype))
    self.scales = nnx.data(scales if use_scale else None)

  def __call__(self, x, *args, **kwargs):
    """Calls the layer with its selected weights l2-normalized (and scaled)."""
    transforms = {}
    for path in self._selected(self.variable_filter, error=False):
      if self.use_scale and path not in self.scales:
        raise RuntimeError(
            f"Could not find the scale corresponding to the param {path} in scales dict. "
            f"Parameters of the layer_instance should not change!")
      scale = self.scales[path][...] if self.use_scale else None
      transforms[path] = lambda w, s=scale: weights.l2_normalized(
          w, s, feature_axes=self.feature_axes, epsilon=self.epsilon, dtype=self.dtype)
    return self._call(transforms, lambda: self.layer_instance(x, *args, **kwargs))


class SpectralNorm(_Wrapper):
  """Spectral normalization (Miyato et al., 2018): flax.nnx.SpectralNorm's arguments;
  ``batch_stats`` maps ``path + ("u",)`` and ``path + ("sigma",)`` to batch statistics.

  >>> sn = SpectralNorm(nnx.Linear(3, 4, rngs=nnx.Rngs(0)))
  >>> sn(jnp.ones((2, 3))).shape, sn.batch_stats[("kernel", "u")].shape
  ((2, 4), (1, 4))
  """

  def __init__(self, layer_instance: nnx.Module, *, n_steps: int = 1, epsilon: float = 1e-12,
               dtype: Dtype | None = None, param_dtype: Dtype = jnp.float32,
               error_on_non_matrix: bool = False, update_stats: bool = True,
               rngs: nnx.Rngs | None = None, sigma: float | None = None):
    self.n_steps = check_int(n_steps, "n_steps", minimum=0, context="SpectralNorm")
    self.layer_instance, self.dtype = layer_instance, dtype
    self.epsilon = fs.epsilon_of(epsilon, sigma, self, added_to="the squared norms")
    self.param_dtype, self.error_on_non_matrix = param_dtype, error_on_non_matrix
    self.use_running_average = not update_stats  # model.train() / model.eval() set it
    rngs, stats = nnx.Rngs(0) if rngs is None else rngs, {}
    for path, w in self._matrices().items():  # u is [1, columns]: w's last axis
      stats[path + ("u",)] = nnx.BatchStat(
          initializers.normal()(rngs.params(), (1, w.shape[-1]), param_dtype))
      stats[path + ("sigma",)] = nnx.BatchStat(jnp.ones((), param_dtype))
    self.batch_stats = nnx.data(stats)

  def _matrices(self) -> dict:
    """The layer's weights of rank 2 or more (none with ``n_steps < 1``), by path."""
    if self.n_steps < 1:
      return {}
    return self._selected(lambda path, w: weights.matrix_shape(
        w, self.error_on_non_matrix, "Layer instance parameter") is not None, error=False)

  def __call__(self, x, update_stats: bool | None = None):
    """Calls the layer with each weight matrix divided by its largest singular value."""
    update_stats = first_from(update_stats, not self.use_running_average,
                              error_msg="No `update_stats` argument was provided to SpectralNorm.")
    transforms = {}
    for path in self._matrices():
      if path + ("u",) not in self.batch_stats:
        raise RuntimeError(
            f"Could not find the path for u batch stat corresponding to the param {path} in "
            f"the batch stats dict. Parameters of the layer_instance should not change!")
      transforms[path] = lambda w, p=path: self._normalized(w, p, update_stats)
    return self._call(transforms, lambda: self.layer_instance(x))

  def _normalized(self, w, path, update_stats: bool):
    u, sigma = self.batch_stats[path + ("u",)], self.batch_stats[path + ("sigma",)]
    w, new_u, new_sigma = weights.spectral_normalized(
        w, u[...], n_steps=self.n_steps, epsilon=self.epsilon, dtype=self.dtype)
    if update_stats:
      u[...], sigma[...] = new_u, new_sigma
    return w


class WeightStandardization(_Wrapper):
  """Weight standardization (Qiao et al., 2019) of a layer's weights, as
  `divnorm.linen_extra.WeightStandardization`; `variable_filter` is an nnx filter.

  >>> WeightStandardization(nnx.Linear(3, 4, rngs=nnx.Rngs(0)))(jnp.ones((2, 3))).shape
  (2, 4)
  """

  def __init__(self, layer_instance: nnx.Module, *, feature_axes: Axes = -1,
               variable_filter=_KERNELS, sigma: float = 0.0, rngs: nnx.Rngs | None = None):
    self.layer_instance, self.feature_axes, self.sigma = layer_instance, feature_axes, sigma
    self.variable_filter = nnx.filterlib.to_predicate(variable_filter)
    self._selected(self.variable_filter)

  def __call__(self, *args, **kwargs):
    """Calls the layer with its selected weights standardized."""
    def transform(w):
      return weights.weight_standardization(w, feature_axes=self.feature_axes, sigma=self.sigma)
    return self._call({p: transform for p in self._selected(self.variable_filter, False)},
                      lambda: self.layer_instance(*args, **kwargs))

