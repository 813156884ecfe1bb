"""Flax linen modules of the survey's other normalizers, and weight-normalizing wrappers.

Activation normalizers take divnorm's keyword-only options (see `divnorm.linen`); running
statistics are in ``"batch_stats"``. Weight wrappers transform the variables of any layer
that ``variable_filter`` selects (kernels by default) at each call; WeightNorm and
SpectralNorm take flax.linen's arguments and name their variables as flax.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen import initializers

from divnorm._src import flax_semantics as fs
from divnorm._src import gdn as gdn_lib
from divnorm._src import mixtures, weights
from divnorm._src.checks import (
  check_int,
  check_lrn_args,
  check_renorm_limits,
  check_unit_interval,
)
from divnorm._src.linen import Axes, Dtype, Initializer, _Norm
from divnorm._src.lrn import local_response_norm


class _Running(_Norm):
  """The survey's running layers' fields (the running ones, then flax's affine: keyword-only)."""

  use_running_average: bool | None = None
  momentum: float = 0.99
  axis_name: str | None = None
  _: dataclasses.KW_ONLY
  use_scale: bool = True
  use_bias: bool = True
  scale_init: Initializer = initializers.ones
  bias_init: Initializer = initializers.zeros
  param_dtype: Dtype = jnp.float32

  def _running(self, function, x, *args, **kwargs):
    """`_Norm._running`, the survey's function asked for an output in the statistics dtype
    where an affine step follows (`fs.function_dtype`): its gradient then rounded once."""
    return super()._running(function, x, *args, **kwargs, dtype=fs.function_dtype(
        x, self.use_scale or self.use_bias))


class MeanOnlyBatchNorm(_Running):
  """Mean-only batch norm (Salimans & Kingma, 2016): ``x - E_batch[x]`` (+ bias); no scale
  by default (the paper pairs it with `WeightNorm`). The L1 penalty is on the output.
  Arguments: `divnorm.mixtures.mean_only_batch_norm`'s and the shared ones in `divnorm.linen`.

  >>> MeanOnlyBatchNorm(False).init_with_output(jax.random.key(0), jnp.ones((4, 3)))[0].shape
  (4, 3)
  """

  feature_axes: Axes = -1
  _: dataclasses.KW_ONLY
  use_scale: bool = False

  def __post_init__(self):
    fs.check_no_sigma(self, self.sigma, self.learn_sigma)
    super().__post_init__()

  @nn.compact
  def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
    """Subtracts the batch mean (training) or the running mean."""
    return self._running(
        mixtures.mean_only_batch_norm, x, use_running_average, self.feature_axes,
        jnp.asarray(x).dtype, mixtures.MeanStats, axis_name=self._axis_name(),
        feature_axes=self.feature_axes, mask=mask, return_centered=True)


class BatchRenorm(_Running):
  """Batch renormalization (Ioffe, 2017): `rmax` and `dmax` clip r and d (the paper ramps
  them from 1 and 0 to 3 and 5: pass the current values to ``__call__``).
  Arguments: `divnorm.mixtures.batch_renorm`'s (`rmax`, `dmax`, `feature_axes`) and the shared
  ones in `divnorm.linen`.

  >>> BatchRenorm(False).init_with_output(jax.random.key(0), jnp.ones((4, 3)))[0].shape
  (4, 3)
  """

  feature_axes: Axes = -1
  rmax: float = 3.0
  dmax: float = 5.0

  def __post_init__(self):
    check_renorm_limits(self.rmax, self.dmax)
    super().__post_init__()

  @nn.compact
  def __call__(self, x, use_running_average: bool | None = None, *, rmax=None, dmax=None,
               mask=None):
    """Batch norm corrected toward the running statistics (training), or running BN."""
    return self._running(
        mixtures.batch_renorm, x, use_running_average, self.feature_axes, jnp.asarray(x).dtype,
        axis_name=self._axis_name(), rmax=self.rmax if rmax is None else rmax,
        dmax=self.dmax if dmax is None else dmax, feature_axes=self.feature_axes,
        sigma=self._sigma(), mask=mask, return_centered=True)


class BatchInstanceNorm(_Running):
  """Batch-instance norm (Nam & Kim, 2018): ``rho * BN + (1 - rho) * IN`` with a learned
  per-channel ``rho``, clipped to [0, 1] where it is used, its gradient passed straight
  through (`divnorm.mixtures.learned_rho`: a rho past the interval still learns); `rho_init`
  1 is pure batch norm.
  Arguments: `divnorm.mixtures.batch_instance_norm`'s (`channel_axis`; `rho_init` is the
  initial `rho`; `x` keeps its batch axis under a per-example vmap) and the shared ones.

  >>> BatchInstanceNorm(False).init_with_output(jax.random.key(0), jnp.ones((2, 4, 3)))[0].shape
  (2, 4, 3)
  """

  channel_axis: int = -1
  rho_init: float = 1.0

  def __post_init__(self):
    check_unit_interval(self.rho_init, "rho_init")
    super().__post_init__()

  @nn.compact
  def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
    """Mixes batch and instance normalization per channel."""
    c = fs.canonical_axes(self.channel_axis, jnp.ndim(x), "channel_axis")[0]
    rho = self.param("rho", initializers.constant(self.rho_init), (jnp.shape(x)[c],),
                     self.param_dtype)
    return self._running(
        mixtures.batch_instance_norm, x, use_running_average, self.channel_axis,
        jnp.asarray(x).dtype, axis_name=self._axis_name(), rho=mixtures.learned_rho(rho),
        channel_axis=self.channel_axis, sigma=self._sigma(), mask=mask, return_centered=True)


class SwitchableNorm(_Running):
  """Switchable normalization (Luo et al., 2019): softmax-weighted IN, LN and BN statistics;
  ``mean_logits`` and ``var_logits`` (order IN, LN, BN) start at zero, equal weights.
  Arguments: `divnorm.mixtures.switchable_norm`'s (`channel_axis`; `x` keeps its batch axis
  under a per-example vmap) and the shared ones in `divnorm.linen`.

  >>> SwitchableNorm(False).init_with_output(jax.random.key(0), jnp.ones((2, 4, 3)))[0].shape
  (2, 4, 3)
  """

  channel_axis: int = -1

  @nn.compact
  def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
    """Normalizes with the learned mixture of the three statistics."""
    mean_logits, var_logits = (self.param(n, initializers.zeros, (3,), self.param_dtype)
                               for n in ("mean_logits", "var_logits"))
    return self._running(
        mixtures.switchable_norm, x, use_running_average, self.channel_axis,
        jnp.asarray(x).dtype, axis_name=self._axis_name(), mean_weights=jax.nn.softmax(mean_logits),
        var_weights=jax.nn.softmax(var_logits), channel_axis=self.channel_axis,
        sigma=self._sigma(), mask=mask, return_centered=True)


class LocalResponseNorm(nn.Module):
  """Local response normalization (``torch.nn.LocalResponseNorm``; no parameters).
  Arguments: `divnorm.local_response.local_response_norm`'s (`size`, `alpha`, `beta`, `k`,
  `channel_axis`).

  >>> LocalResponseNorm(size=3).apply({}, jnp.ones((1, 4, 4, 8))).shape
  (1, 4, 4, 8)
  """

  size: int = 5
  alpha: float = 1e-4
  beta: float = 0.75
  k: float = 1.0
  channel_axis: int = -1

  def __post_init__(self):
    check_lrn_args(self.size, self.alpha, self.beta, self.k)
    super().__post_init__()

  def __call__(self, x):
    """Divides each channel by its neighbours' pooled energy."""
    return local_response_norm(x, size=self.size, alpha=self.alpha, beta=self.beta, k=self.k,
                               channel_axis=self.channel_axis)


class GDN(nn.Module):
  """Generalized divisive normalization (Ballé et al., 2016); ``inverse=True`` is IGDN.
  Parameters ``beta`` ``[C]`` and ``gamma`` ``[C, C]`` are raw (`divnorm.gdn`).
  Arguments: `divnorm.gdn.gdn`'s (`inverse`, `alpha`, `epsilon`, `channel_axis`); `beta_init`,
  `gamma_init`, `param_dtype` are `gdn_init`'s `beta`, `gamma`, `dtype`.

  >>> jax.tree.map(jnp.shape, GDN().init(jax.random.key(0), jnp.ones((1, 4, 4, 3))))
  {'params': {'beta': (3,), 'gamma': (3, 3)}}
  """

  inverse: bool = False
  alpha: float = 2.0
  epsilon: float = 0.5
  beta_init: float = 1.0
  gamma_init: float = 0.1
  channel_axis: int = -1
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    """``x / (beta + gamma |x|^alpha)^epsilon`` across channels (times, for IGDN)."""
    c = fs.canonical_axes(self.channel_axis, jnp.ndim(x), "channel_axis")[0]
    init = fs.gdn_init(jnp.shape(x)[c], self.beta_init, self.gamma_init, self.param_dtype,
                       "x's channels")
    beta, gamma = gdn_lib.gdn_values(gdn_lib.GDNParams(*(
        self.param(n, lambda _, v=v: v) for n, v in zip(init._fields, init, strict=True))))
    return gdn_lib.gdn(x, beta=beta, gamma=gamma, alpha=self.alpha, epsilon=self.epsilon,
                       inverse=self.inverse, channel_axis=self.channel_axis)


class _Wrapper(nn.Module):
  """The weight wrappers' base: calls ``layer_instance`` with each variable passed through
  ``transform(name, value)``, named as flax does: ``<layer>/<path>`` (``.../kernel/value``
  for a partitioned kernel)."""

  def _call(self, transform, args, kwargs, *, mutable=False, must_select=True):
    prefix, seen, selected = self.layer_instance.name, set(), []

    def one(path, value):
      name = prefix + "/" + jax.tree_util.keystr(path[1:], simple=True, separator="/")
      seen.add(name)
      out = transform(name, value)
      if out is not value:
        selected.append(name)
      return out

    out = nn.map_variables(
        lambda layer: layer(*args, **kwargs),
        trans_in_fn=lambda vs: jax.tree_util.tree_map_with_path(one, vs),
        init=self.is_initializing(), mutable=mutable)(self.layer_instance)
    if seen and not selected and must_select:
      raise fs.missing_kernel_error(self.layer_instance, self.variable_filter, seen)
    return out


class WeightNorm(_Wrapper):
  """L2 weight normalization (Salimans & Kingma, 2016): flax.linen.WeightNorm's arguments;
  the scales are ``<layer>/<path>/scale`` in ``"params"``.

  >>> sorted(WeightNorm(nn.Dense(4)).init(jax.random.key(0), jnp.ones((2, 3)))["params"])
  ['layer_instance', 'layer_instance/kernel/scale']
  """

  layer_instance: nn.Module
  epsilon: float = 1e-12
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32
  use_scale: bool = True
  scale_init: Initializer = initializers.ones
  feature_axes: Axes | None = -1
  variable_filter: Any = dataclasses.field(default_factory=lambda: {"kernel"})
  _: dataclasses.KW_ONLY
  sigma: float | None = None

  @nn.compact
  def __call__(self, *args, **kwargs):
    """Calls the layer with its selected variables l2-normalized (and scaled)."""
    epsilon = fs.epsilon_of(self.epsilon, self.sigma, self, added_to="the squared norms")

    def transform(name, value):
      if not fs.matches(self.variable_filter, name):
        return value
      features = fs.canonical_axes(self.feature_axes, jnp.ndim(value), "feature_axes")
      scale = self.param(name + "/scale", self.scale_init,
                         tuple(jnp.shape(value)[a] for a in features),
                         self.param_dtype) if self.use_scale else None
      return weights.l2_normalized(value, scale, feature_axes=self.feature_axes,
                                   epsilon=epsilon, dtype=self.dtype)

    return self._call(transform, args, kwargs)


class SpectralNorm(_Wrapper):
  """Spectral normalization (Miyato et al., 2018): flax.linen.SpectralNorm's arguments; the
  power iteration's ``<layer>/<path>/u`` and ``.../sigma`` are in `collection_name`.

  >>> sn = SpectralNorm(nn.Dense(4))
  >>> sorted(sn.init(jax.random.key(0), jnp.ones((2, 3)), update_stats=True)["batch_stats"])
  ['layer_instance/kernel/sigma', 'layer_instance/kernel/u']
  """

  layer_instance: nn.Module
  n_steps: int = 1
  epsilon: float = 1e-12
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32
  error_on_non_matrix: bool = False
  collection_name: str = "batch_stats"
  _: dataclasses.KW_ONLY
  sigma: float | None = None

  @nn.compact
  def __call__(self, *args, update_stats: bool, **kwargs):
    """Calls the layer with each weight matrix divided by its largest singular value."""
    check_int(self.n_steps, "n_steps", minimum=0, context="SpectralNorm")
    epsilon = fs.epsilon_of(self.epsilon, self.sigma, self, added_to="the squared norms")
    collection = self.collection_name

    def transform(name, value):
      shape = weights.matrix_shape(value, self.error_on_non_matrix)
      if shape is None or self.n_steps < 1:
        return value
      key = None if self.has_variable(collection, name + "/u") else self.make_rng("params")
      u = self.variable(collection, name + "/u", jax.random.normal, key, (1, shape[1]),
                        self.param_dtype)
      sigma = self.variable(collection, name + "/sigma", jnp.ones, (), self.param_dtype)
      w, new_u, new_sigma = weights.spectral_normalized(
          value, u.value, n_steps=self.n_steps, epsilon=epsilon, dtype=self.dtype)
      if update_stats:
        u.value, sigma.value = new_u, new_sigma
      return w

    return self._call(transform, args, kwargs, mutable=True, must_select=False)


class WeightStandardization(_Wrapper):
  """Weight standardization (Qiao et al., 2019) of a layer's weights; no parameters. The
  mean and variance reduce every axis but `feature_axes` (the outputs), smoothed by `sigma`.

  >>> WeightStandardization(nn.Dense(4)).init_with_output(jax.random.key(0), jnp.ones((2, 3)))[0].shape
  (2, 4)
  """

  layer_instance: nn.Module
  feature_axes: Axes = -1
  variable_filter: Any = dataclasses.field(default_factory=lambda: {"kernel"})
  sigma: float = 0.0

  @nn.compact
  def __call__(self, *args, **kwargs):
    """Calls the layer with its selected variables standardized."""
    def transform(name, value):
      if not fs.matches(self.variable_filter, name):
        return value
      return weights.weight_standardization(jnp.asarray(value), feature_axes=self.feature_axes,
                                    sigma=self.sigma)

    return self._call(transform, args, kwargs)
