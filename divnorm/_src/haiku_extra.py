"""Haiku modules of the paper's unified normalizer and the survey's other normalizers, and
haiku's spectral normalization (also in `divnorm.haiku`).

Inputs are ``[batch, *spatial, channels]`` (or channels first, haiku's `data_format`).
`MeanOnlyBatchNorm`, `BatchRenorm`, `BatchInstanceNorm` and `SwitchableNorm` are shaped
like `hk.BatchNorm`: ``is_training`` at call time, a `decay_rate`, `cross_replica_axis`,
and their running statistics in haiku state (``mean`` and ``var`` per channel, float32,
the plain moving average of `divnorm.mixtures`; under a mixed-precision policy they need
float32 compute, as haiku advises for its BatchNorm). `SpectralNorm` and `SNParamsTree` take
haiku's arguments and state (``u0``, ``sigma``) and compute in at least float32.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from divnorm._src import flax_semantics as fs
from divnorm._src import gdn as gdn_lib
from divnorm._src import mixtures, weights
from divnorm._src.batch import BatchStats
from divnorm._src.checks import (
  check_bool,
  check_lrn_args,
  check_momentum,
  check_nonnegative,
  check_renorm_limits,
  check_unit_interval,
)
from divnorm._src.core import normalize
from divnorm._src.haiku import _check_sigma, _Norm, hk
from divnorm._src.lrn import local_response_norm


def _channel(data_format: str, ndim: int) -> int:
  """The channel axis of a rank-`ndim` input in haiku's `data_format`."""
  return hk.get_channel_index(data_format) % ndim if ndim else 0


class Normalize(_Norm):
  """The paper's unified normalizer over any fields (`divnorm.normalize`): ``v = x - E_A[x]``,
  ``y = v / sqrt(sigma^2 + E_B[v^2])``. No affine by default; `create_scale` and
  `create_offset` learn one per entry of `param_axis` (default: the last axis).

  Args:
    summation, suppression, sigma, border, cross_replica_axis: `divnorm.normalize`'s
      `summation`, `suppression`, `sigma`, `border` and `axis_name` (pools a mapped axis).
    learn_sigma: learn sigma as ``exp(log_sigma)`` (a float32 parameter), from `sigma` > 0.

  >>> import haiku as hk, jax, jax.numpy as jnp
  >>> from divnorm import haiku as dhk
  >>> f = hk.transform(lambda x: dhk.Normalize({3: None, 1: 3, 2: 3}, sigma=0.5)(x))
  >>> x = jnp.ones((2, 8, 8, 3))
  >>> f.apply(f.init(jax.random.key(0), x), None, x).shape
  (2, 8, 8, 3)
  """

  def __init__(self, summation, suppression=None, *, sigma: float = 0.0,
               learn_sigma: bool = False, border: str = "valid",
               cross_replica_axis: str | Sequence[str] | None = None,
               create_scale: bool = False, create_offset: bool = False, scale_init=None,
               offset_init=None, param_axis: int | Sequence[int] = -1,
               name: str | None = None):
    _check_sigma(sigma, learn_sigma)
    super().__init__(create_scale, create_offset, scale_init, offset_init, name)
    self.summation, self.suppression, self.border = summation, suppression, border
    self.sigma, self.learn_sigma = sigma, learn_sigma
    self.cross_replica_axis, self.param_axis = cross_replica_axis, param_axis

  def __call__(self, x, *, mask=None, return_centered: bool = False) -> Any:  # y, or (y, v)
    """Normalizes `x`; `mask` (True: in) selects what enters the statistics;
    `return_centered`: ``(y, v)``, ``v = x - E_A[x]`` (DN*: `divnorm.l1_penalty` of it)."""
    return_centered, x = check_bool(return_centered, "return_centered"), jnp.asarray(x)
    y, v = normalize(x, self.summation, self.suppression,
                     sigma=self._sigma(self.sigma, self.learn_sigma), border=self.border,
                     mask=mask, axis_name=self.cross_replica_axis, return_centered=True,
                     dtype=fs.function_dtype(x, self.create_scale or self.create_offset))
    features = fs.canonical_axes(self.param_axis, x.ndim, "param_axis")
    y = self._affine(x, (y, v, None), features, None, None)
    return (y, v.astype(y.dtype)) if return_centered else y


class LocalResponseNorm(hk.Module):
  """Local response normalization (``torch.nn.LocalResponseNorm``; no parameters): each
  channel divided by ``(k + alpha * mean of its neighbours' x^2)^beta``.

  Args:
    size, alpha, beta, k: `divnorm.local_response.local_response_norm`'s.
    data_format: ``"channels_last"`` or ``"channels_first"`` (haiku's spellings).

  >>> import haiku as hk, jax.numpy as jnp
  >>> from divnorm import haiku as dhk
  >>> f = hk.transform(lambda x: dhk.LocalResponseNorm(3)(x))
  >>> f.apply({}, None, jnp.ones((1, 4, 4, 8))).shape
  (1, 4, 4, 8)
  """

  def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0,
               data_format: str = "channels_last", name: str | None = None):
    super().__init__(name=name)
    self.size = check_lrn_args(size, alpha, beta, k)
    self.alpha, self.beta, self.k, self.data_format = alpha, beta, k, data_format
    hk.get_channel_index(data_format)  # haiku's error for a bad one, now

  def __call__(self, x):
    """Divides each channel by its neighbours' pooled energy."""
    return local_response_norm(x, size=self.size, alpha=self.alpha, beta=self.beta, k=self.k,
                               channel_axis=_channel(self.data_format, jnp.ndim(x)))


class GDN(hk.Module):
  """Generalized divisive normalization (Ballé et al., 2016) across channels; ``inverse=True``
  is IGDN. Parameters ``beta`` ``[C]`` and ``gamma`` ``[C, C]`` are raw reparameterized
  arrays (`divnorm.gdn`), in the input's dtype (haiku's convention) or `param_dtype`.

  Args:
    inverse, alpha, epsilon: `divnorm.gdn.gdn`'s.
    beta_init, gamma_init: the initial ``beta`` and diagonal of ``gamma``
      (`divnorm.gdn.gdn_init`'s `beta` and `gamma`).
    data_format: ``"channels_last"`` or ``"channels_first"``.

  >>> import haiku as hk, jax, jax.numpy as jnp
  >>> from divnorm import haiku as dhk
  >>> f = hk.transform(lambda x: dhk.GDN()(x))
  >>> jax.tree.map(jnp.shape, f.init(jax.random.key(0), jnp.ones((1, 4, 4, 3))))
  {'gdn': {'beta': (3,), 'gamma': (3, 3)}}
  """

  def __init__(self, inverse: bool = False, alpha: float = 2.0, epsilon: float = 0.5,
               beta_init: float = 1.0, gamma_init: float = 0.1,
               data_format: str = "channels_last", param_dtype=None,
               name: str | None = None):
    super().__init__(name=name)
    self.inverse, self.alpha, self.epsilon = inverse, alpha, epsilon
    self.beta_init, self.gamma_init, self.param_dtype = beta_init, gamma_init, param_dtype
    self.data_format = data_format
    hk.get_channel_index(data_format)

  def __call__(self, x):
    """``x / (beta + gamma |x|^alpha)^epsilon`` across channels (times, for IGDN)."""
    x = jnp.asarray(x)
    c = _channel(self.data_format, x.ndim)
    dtype = fs.result_dtype(x) if self.param_dtype is None else self.param_dtype
    init = fs.gdn_init(x.shape[c] if x.ndim else 0, self.beta_init, self.gamma_init, dtype,
                       "x's channels")
    beta, gamma = gdn_lib.gdn_values(gdn_lib.GDNParams(*(
        hk.get_parameter(n, v.shape, v.dtype, init=lambda _, dtype, v=v: v.astype(dtype))
        for n, v in zip(init._fields, init, strict=True))))
    return gdn_lib.gdn(x, beta=beta, gamma=gamma, alpha=self.alpha, epsilon=self.epsilon,
                       inverse=self.inverse, channel_axis=c)


class _Running(_Norm):
  """The survey's running-statistics normalizers, shaped like `hk.BatchNorm`: the running
  statistics (per channel, float32) in haiku state, updated when ``is_training``."""

  def __init__(self, create_scale: bool, create_offset: bool, decay_rate: float, sigma,
               scale_init, offset_init, cross_replica_axis, data_format: str, name):
    _check_sigma(sigma)
    check_momentum(decay_rate, "decay_rate", "e.g. 0.9 or 0.99, as hk.BatchNorm's")
    super().__init__(create_scale, create_offset, scale_init, offset_init, name)
    self.decay_rate, self.sigma, self.data_format = decay_rate, sigma, data_format
    self.cross_replica_axis = cross_replica_axis
    hk.get_channel_index(data_format)

  @hk.transparent  # a helper of __call__: no scope or summary entry of its own
  def _running(self, function, x, is_training, stats=BatchStats, **kwargs):
    """``(y, v), new = function(x, stats, ...)`` over the channel axis, channelwise affine."""
    x = jnp.asarray(x)
    is_training = check_bool(is_training, "is_training")
    c = _channel(self.data_format, x.ndim)
    shape = (x.shape[c],) if x.ndim else ()
    values = [hk.get_state(n, shape, jnp.float32, init=jnp.zeros if n == "mean" else jnp.ones)
              for n in stats._fields]
    if any(jnp.finfo(value.dtype).bits < 32 for value in values):
      policy = "params=float32,compute=float32,output=bfloat16"
      raise TypeError(
          f"{type(self).__name__} keeps its running statistics in float32 state, but a "
          f"mixed-precision policy reads them in {values[0].dtype}, which would round every "
          f"update away (the running mean stalls). Compute this layer in float32, as haiku "
          f"advises for BatchNorm: hk.mixed_precision.set_policy(divnorm.haiku."
          f"{type(self).__name__}, jmp.get_policy({policy!r})).")
    (y, v), new = function(x, stats(*values), training=is_training,
                           dtype=fs.function_dtype(x, self.create_scale or self.create_offset),
                           momentum=self.decay_rate, axis_name=self.cross_replica_axis,
                           return_centered=True, **kwargs)
    if is_training:
      for n, value in zip(stats._fields, new, strict=True):
        hk.set_state(n, value.astype(jnp.float32))
    y = self._affine(x, (y, v, None), (c,), None, None)
    return y


class MeanOnlyBatchNorm(_Running):
  """Mean-only batch norm (Salimans & Kingma, 2016): ``x - E_batch[x]`` (+ offset); no
  scale by default (the paper pairs it with weight normalization). Running ``mean`` in state.

  Args:
    create_offset, decay_rate, cross_replica_axis, data_format: as in `hk.BatchNorm`.
    create_scale: a per-channel scale (default False).

  >>> import haiku as hk, jax, jax.numpy as jnp
  >>> from divnorm import haiku as dhk
  >>> f = hk.transform_with_state(lambda x, t: dhk.MeanOnlyBatchNorm(True, 0.9)(x, t))
  >>> x = jnp.arange(6.0).reshape(3, 2)
  >>> params, state = f.init(jax.random.key(0), x, True)
  >>> f.apply(params, state, None, x, True)[0]
  Array([[-2., -2.],
         [ 0.,  0.],
         [ 2.,  2.]], dtype=float32)
  """

  def __init__(self, create_offset: bool, decay_rate: float, *, create_scale: bool = False,
               scale_init=None, offset_init=None,
               cross_replica_axis: str | Sequence[str] | None = None,
               data_format: str = "channels_last", name: str | None = None):
    super().__init__(create_scale, create_offset, decay_rate, 0.0, scale_init, offset_init,
                     cross_replica_axis, data_format, name)

  def __call__(self, inputs, is_training: bool, *, mask=None):
    """Subtracts the batch mean (training: and updates ``mean``) or the running mean."""
    c = _channel(self.data_format, jnp.ndim(inputs))  # its output is its centered input
    return self._running(mixtures.mean_only_batch_norm, inputs, is_training,
                         mixtures.MeanStats, feature_axes=c, mask=mask)


class BatchRenorm(_Running):
  """Batch renormalization (Ioffe, 2017): batch norm corrected toward the running
  statistics, ``r`` clipped to ``[1/rmax, rmax]`` and ``d`` to ``[-dmax, dmax]`` (the
  paper ramps them from 1 and 0 to 3 and 5: pass the current values at call time).

  Args:
    create_scale, create_offset, decay_rate, cross_replica_axis, data_format: as in
      `hk.BatchNorm`.
    sigma: the smoothing term, finite and >= 0 (`divnorm.batch_norm`'s).
    rmax, dmax: `divnorm.mixtures.batch_renorm`'s clips of ``r`` and ``d``.

  >>> import haiku as hk, jax, jax.numpy as jnp
  >>> from divnorm import haiku as dhk
  >>> f = hk.transform_with_state(lambda x: dhk.BatchRenorm(True, True, 0.99)(x, True))
  >>> x = jnp.ones((4, 3))
  >>> params, state = f.init(jax.random.key(0), x)
  >>> jax.tree.map(jnp.shape, state)
  {'batch_renorm': {'mean': (3,), 'var': (3,)}}
  """

  def __init__(self, create_scale: bool, create_offset: bool, decay_rate: float, *,
               sigma: float = 0.0, rmax: float = 3.0, dmax: float = 5.0, scale_init=None,
               offset_init=None, cross_replica_axis: str | Sequence[str] | None = None,
               data_format: str = "channels_last", name: str | None = None):
    check_renorm_limits(rmax, dmax)
    super().__init__(create_scale, create_offset, decay_rate, sigma, scale_init, offset_init,
                     cross_replica_axis, data_format, name)
    self.rmax, self.dmax = rmax, dmax

  def __call__(self, inputs, is_training: bool, *, rmax=None, dmax=None, mask=None):
    """Batch norm corrected toward the running statistics (training), or running BN."""
    c = _channel(self.data_format, jnp.ndim(inputs))
    return self._running(mixtures.batch_renorm, inputs, is_training, feature_axes=c,
                         sigma=self.sigma, rmax=self.rmax if rmax is None else rmax,
                         dmax=self.dmax if dmax is None else dmax, mask=mask)


class BatchInstanceNorm(_Running):
  """Batch-instance norm (Nam & Kim, 2018): ``rho * BN + (1 - rho) * IN`` with a learned
  per-channel ``rho`` (float32), clipped to [0, 1] where it is used (its gradient passed
  straight through, `divnorm.mixtures.learned_rho`); ``rho_init=1`` is
  batch norm. Inputs have spatial axes (rank >= 3).

  Args:
    create_scale, create_offset, decay_rate, cross_replica_axis, data_format: as in
      `hk.BatchNorm`.
    sigma: the smoothing term, finite and >= 0.
    rho_init: the initial ``rho``, in [0, 1].

  >>> import haiku as hk, jax, jax.numpy as jnp
  >>> from divnorm import haiku as dhk
  >>> f = hk.transform_with_state(lambda x: dhk.BatchInstanceNorm(True, True, 0.99)(x, True))
  >>> x = jnp.ones((2, 4, 4, 3))
  >>> jax.tree.map(jnp.shape, f.init(jax.random.key(0), x)[0])
  {'batch_instance_norm': {'offset': (3,), 'rho': (3,), 'scale': (3,)}}
  """

  def __init__(self, create_scale: bool, create_offset: bool, decay_rate: float, *,
               sigma: float = 0.0, rho_init: float = 1.0, scale_init=None, offset_init=None,
               cross_replica_axis: str | Sequence[str] | None = None,
               data_format: str = "channels_last", name: str | None = None):
    check_unit_interval(rho_init, "rho_init")
    super().__init__(create_scale, create_offset, decay_rate, sigma, scale_init, offset_init,
                     cross_replica_axis, data_format, name)
    self.rho_init = rho_init

  def __call__(self, inputs, is_training: bool, *, mask=None):
    """Mixes batch and instance normalization per channel."""
    c = _channel(self.data_format, jnp.ndim(inputs))
    channels = jnp.shape(inputs)[c] if jnp.ndim(inputs) else 0
    rho = hk.get_parameter("rho", (channels,), jnp.float32,
                           init=lambda s, d: jnp.full(s, self.rho_init, d))
    return self._running(mixtures.batch_instance_norm, inputs, is_training, channel_axis=c,
                         rho=mixtures.learned_rho(rho), sigma=self.sigma, mask=mask)


class SwitchableNorm(_Running):
  """Switchable normalization (Luo et al., 2019): softmax-weighted instance, layer and batch
  statistics; ``mean_logits`` and ``var_logits`` (float32, order IN, LN, BN) start at zero,
  equal weights. Inputs have spatial axes (rank >= 3).

  Args:
    create_scale, create_offset, decay_rate, cross_replica_axis, data_format: as in
      `hk.BatchNorm`.
    sigma: the smoothing term, finite and >= 0.

  >>> import haiku as hk, jax, jax.numpy as jnp
  >>> from divnorm import haiku as dhk
  >>> f = hk.transform_with_state(lambda x: dhk.SwitchableNorm(True, True, 0.99)(x, True))
  >>> x = jnp.ones((2, 4, 4, 3))
  >>> sorted(f.init(jax.random.key(0), x)[0]["switchable_norm"])
  ['mean_logits', 'offset', 'scale', 'var_logits']
  """

  def __init__(self, create_scale: bool, create_offset: bool, decay_rate: float, *,
               sigma: float = 0.0, scale_init=None, offset_init=None,
               cross_replica_axis: str | Sequence[str] | None = None,
               data_format: str = "channels_last", name: str | None = None):
    super().__init__(create_scale, create_offset, decay_rate, sigma, scale_init, offset_init,
                     cross_replica_axis, data_format, name)

  def __call__(self, inputs, is_training: bool, *, mask=None):
    """Normalizes with the learned mixture of the three statistics."""
    mean_logits, var_logits = (hk.get_parameter(n, (3,), jnp.float32, init=jnp.zeros)
                               for n in ("mean_logits", "var_logits"))
    c = _channel(self.data_format, jnp.ndim(inputs))
    return self._running(mixtures.switchable_norm, inputs, is_training, channel_axis=c,
                         mean_weights=jax.nn.softmax(mean_logits),
                         var_weights=jax.nn.softmax(var_logits), sigma=self.sigma, mask=mask)


class SpectralNorm(hk.Module):
  """Spectral normalization (Miyato et al., 2018) of a weight: hk.SpectralNorm's arguments
  and state (``u0`` ``[1, out]``, ``sigma``). `n_steps` power iterations in at least
  float32 (haiku's run in the weight's dtype); the weight comes back in its dtype.

  >>> import haiku as hk, jax, jax.numpy as jnp
  >>> from divnorm import haiku as dhk
  >>> f = hk.transform_with_state(lambda w: dhk.SpectralNorm(n_steps=20)(w))
  >>> w = jnp.diag(jnp.array([4.0, 2.0]))
  >>> params, state = f.init(jax.random.key(0), w)
  >>> f.apply(params, state, None, w)[0].round(3)
  Array([[1. , 0. ],
         [0. , 0.5]], dtype=float32)
  """

  def __init__(self, eps: float = 1e-4, n_steps: int = 1, name: str | None = None):
    super().__init__(name=name)
    check_nonnegative(eps, "eps", " (added to the squared norms of the power iteration)")
    if not isinstance(n_steps, int) or isinstance(n_steps, bool) or n_steps < 1:
      raise ValueError(f"n_steps={n_steps!r}: the power iteration needs at least one step; "
                       f"pass an int >= 1.")
    self.eps, self.n_steps = eps, n_steps

  def __call__(self, value, update_stats: bool = True, error_on_non_matrix: bool = False):
    """`value` divided by its largest singular value (leading axes flattened into rows);
    `update_stats` stores the new ``u0`` and ``sigma``."""
    value = jnp.asarray(value)
    if value.ndim <= 1:
      raise ValueError(f"Spectral normalization is not well defined for scalar or vector "
                       f"inputs; value has shape {value.shape}.")
    columns = weights.matrix_shape(value, error_on_non_matrix)[1]
    u0 = hk.get_state("u0", [1, columns], value.dtype, init=hk.initializers.RandomNormal())
    w, u, sigma = weights.spectral_normalized(value, u0, n_steps=self.n_steps,
                                              epsilon=self.eps, dtype=None)
    if update_stats:
      hk.set_state("u0", u)
      hk.set_state("sigma", sigma)
    return w.astype(value.dtype)

  @property
  def u0(self):
    """The power iteration's vector (haiku's property)."""
    return hk.get_state("u0")

  @property
  def sigma(self):
    """The last largest singular value (1 before any update; haiku's property)."""
    return hk.get_state("sigma", shape=(), init=jnp.ones)


class SNParamsTree(hk.Module):
  """`SpectralNorm` of every parameter in a haiku tree whose ``module/name`` does not match
  `ignore_regex` (hk.SNParamsTree's arguments and module names).

  >>> import haiku as hk, jax, jax.numpy as jnp
  >>> from divnorm import haiku as dhk
  >>> f = hk.transform_with_state(lambda t: dhk.SNParamsTree(ignore_regex=".*b$")(t))
  >>> tree = {"linear": {"w": jnp.eye(3), "b": jnp.ones(3)}}
  >>> params, state = f.init(jax.random.key(0), tree)
  >>> sorted(state)
  ['sn_params_tree/linear__w']
  """

  def __init__(self, eps: float = 1e-4, n_steps: int = 1, ignore_regex: str = "",
               name: str | None = None):
    super().__init__(name=name)
    self.eps, self.n_steps, self.ignore_regex = eps, n_steps, ignore_regex

  def __call__(self, tree, update_stats: bool = True):
    """The tree with each selected parameter spectrally normalized."""
    def one(key, value):
      if self.ignore_regex and re.match(self.ignore_regex, key):
        return value
      name = key.replace("/", "__").replace("~", "_tilde")
      return SpectralNorm(self.eps, self.n_steps, name=name)(value, update_stats=update_stats)

    return hk.data_structures.to_haiku_dict({
        module: {k: one(f"{module}/{k}", v) for k, v in params.items()}
        for module, params in tree.items()})
