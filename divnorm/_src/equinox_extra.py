"""Equinox modules of the survey's other normalizers (also in `divnorm.equinox`).

`LocalResponseNorm` and `GDN` see one example, channels first; `MeanOnlyBatchNorm`,
`BatchRenorm`, `BatchInstanceNorm` and `SwitchableNorm` are shaped like `BatchNorm`: one
example inside ``vmap`` with `axis_name`, running statistics in an `eqx.nn.State`.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from divnorm._src import flax_semantics as fs
from divnorm._src import gdn as gdn_lib
from divnorm._src.batch import BatchStats
from divnorm._src.checks import (
  check_int,
  check_lrn_args,
  check_momentum,
  check_nonnegative,
  check_renorm_limits,
  check_unit_interval,
)
from divnorm._src.equinox import _NO_STATE, _check_channels, _float, _out
from divnorm._src.lrn import local_response_norm
from divnorm._src.mixtures import (
  MeanStats,
  batch_instance_norm,
  batch_renorm,
  learned_rho,
  mean_only_batch_norm,
  switchable_norm,
)


class LocalResponseNorm(eqx.Module):
  """Local response normalization (``torch.nn.LocalResponseNorm``) of one example, channels
  first; no parameters.

  Args:
    size, alpha, beta, k: `divnorm.local_response.local_response_norm`'s.

  >>> import jax.numpy as jnp
  >>> from divnorm import equinox as dqx
  >>> dqx.LocalResponseNorm(3)(jnp.ones((8, 4, 4))).shape
  (8, 4, 4)
  """

  size: int = eqx.field(static=True)
  alpha: float = eqx.field(static=True)
  beta: float = eqx.field(static=True)
  k: float = eqx.field(static=True)

  def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
    check_lrn_args(size, alpha, beta, k)
    self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

  def __call__(self, x: Array, state=_NO_STATE, *, key=None):
    """Divides each channel by its neighbours' pooled energy; `state` passes through."""
    y = local_response_norm(x[None], size=self.size, alpha=self.alpha, beta=self.beta,
                            k=self.k, channel_axis=1)[0]
    return _out(y, x.dtype, state)


class GDN(eqx.Module):
  """Generalized divisive normalization (Ballé et al., 2016) of one example, channels first;
  ``inverse=True`` is IGDN. ``beta`` ``[C]`` and ``gamma`` ``[C, C]`` are raw
  reparameterized arrays (`divnorm.gdn`).

  Args:
    channels: the number of channels (the first axis).
    inverse, alpha, epsilon: `divnorm.gdn.gdn`'s.
    beta_init, gamma_init: the initial ``beta`` and diagonal of ``gamma``
      (`divnorm.gdn.gdn_init`'s `beta` and `gamma`).
    dtype: the parameters' dtype (equinox's default: float32).

  >>> import jax.numpy as jnp
  >>> from divnorm import equinox as dqx
  >>> dqx.GDN(3)(jnp.ones((3, 4, 4))).shape
  (3, 4, 4)
  """

  beta: Array
  gamma: Array
  inverse: bool = eqx.field(static=True)
  alpha: float = eqx.field(static=True)
  epsilon: float = eqx.field(static=True)

  def __init__(self, channels: int, *, inverse: bool = False, alpha: float = 2.0,
               epsilon: float = 0.5, beta_init: float = 1.0, gamma_init: float = 0.1,
               dtype=None):
    self.beta, self.gamma = fs.gdn_init(channels, beta_init, gamma_init, _float(dtype),
                                        "channels")
    self.inverse, self.alpha, self.epsilon = inverse, alpha, epsilon

  def __call__(self, x: Array, state=_NO_STATE, *, key=None):
    """``x / (beta + gamma |x|^alpha)^epsilon`` across channels; `state` passes through."""
    _check_channels(self, "channels", self.beta.shape[0], x)
    beta, gamma = gdn_lib.gdn_values(gdn_lib.GDNParams(self.beta, self.gamma))
    y = gdn_lib.gdn(x, beta=beta, gamma=gamma, alpha=self.alpha, epsilon=self.epsilon,
                    inverse=self.inverse, channel_axis=0)
    return _out(y, x.dtype, state)


class _Running(eqx.nn.StatefulLayer):
  """The survey's running-statistics normalizers as equinox layers, shaped like BatchNorm:
  one example ``(input_size, ...)`` inside ``vmap`` with `axis_name`, the running statistics
  in an `eqx.nn.State` (updated in training, used with `inference`), a channelwise affine."""

  weight: Array | None
  bias: Array | None
  state_index: eqx.nn.StateIndex
  axis_name: Hashable | Sequence[Hashable]
  inference: bool
  input_size: int = eqx.field(static=True)
  momentum: float = eqx.field(static=True)
  sigma: float = eqx.field(static=True)

  def _init(self, input_size, axis_name, sigma, channelwise_affine, momentum, inference, dtype,
            stats=BatchStats):
    dtype, input_size = _float(dtype), check_int(input_size, "input_size", minimum=0)
    check_momentum(momentum, default="equinox's default is 0.99")
    check_nonnegative(sigma, "sigma", " (the paper's smoothing term)")
    self.weight = jnp.ones((input_size,), dtype) if channelwise_affine else None
    self.bias = jnp.zeros((input_size,), dtype) if channelwise_affine else None
    self.state_index = eqx.nn.StateIndex(tuple(
        (jnp.zeros if n == "mean" else jnp.ones)((input_size,), dtype) for n in stats._fields))
    self.axis_name, self.inference, self.input_size = axis_name, inference, input_size
    self.momentum, self.sigma = momentum, sigma

  def _call(self, function, x, state, inference, stats=BatchStats, **kwargs):
    """``(y, v), new = function(x[None], stats, ...)`` (of `divnorm.mixtures`), channels on
    axis 1 of the one-example batch; the state updated in training."""
    training = not (self.inference if inference is None else inference)
    _check_channels(self, "input_size", self.input_size, x)
    (y, _), new = function(x[None], stats(*state.get(self.state_index)), training=training,
                           momentum=self.momentum, axis_name=self.axis_name, **kwargs)
    state = state.set(self.state_index, tuple(new)) if training else state
    return fs.affine(y[0], self.weight, self.bias, (0,)).astype(x.dtype), state


class MeanOnlyBatchNorm(_Running):
  """Mean-only batch norm (Salimans & Kingma, 2016): ``x - E_batch[x]`` (+ bias).

  Args:
    input_size, axis_name, momentum, inference, dtype: as in `BatchNorm` (equinox's): the
      channels, the `vmap` axis the batch statistics average over, the running statistics'
      decay, whether to use them instead of the batch's, and the arrays' dtype.
    use_bias: learn a per-channel ``bias``.

  >>> import jax, jax.numpy as jnp, equinox as eqx
  >>> from divnorm import equinox as dqx
  >>> mbn, state = eqx.nn.make_with_state(dqx.MeanOnlyBatchNorm)(3, "batch")
  >>> jax.vmap(mbn, (0, None), (0, None), axis_name="batch")(jnp.ones((4, 3)), state)[0].shape
  (4, 3)
  """

  def __init__(self, input_size: int, axis_name: Hashable | Sequence[Hashable], *,
               use_bias: bool = True, momentum: float = 0.99, inference: bool = False,
               dtype=None):
    self._init(input_size, axis_name, 0.0, use_bias, momentum, inference, dtype, MeanStats)
    self.weight = None

  def __call__(self, x: Array, state: eqx.nn.State, *, key=None, inference: bool | None = None):
    """Subtracts the batch mean (training) or the running mean; returns ``(y, state)``."""
    def centered(x, stats, **kwargs):
      y, stats = mean_only_batch_norm(x, stats, **kwargs)
      return (y, y), stats
    return self._call(centered, x, state, inference, MeanStats, feature_axes=1)


class BatchRenorm(_Running):
  """Batch renormalization (Ioffe, 2017): batch norm corrected toward the running
  statistics, ``r`` clipped to ``[1/rmax, rmax]`` and ``d`` to ``[-dmax, dmax]``.

  Args:
    input_size, axis_name, momentum, inference, dtype: as in `MeanOnlyBatchNorm`.
    channelwise_affine: learn a per-channel ``weight`` and ``bias``.
    sigma: the smoothing term, finite and >= 0 (as in `divnorm.batch_norm`).
    rmax, dmax: `divnorm.mixtures.batch_renorm`'s clips of ``r`` and ``d``.

  >>> import jax, jax.numpy as jnp, equinox as eqx
  >>> from divnorm import equinox as dqx
  >>> brn, state = eqx.nn.make_with_state(dqx.BatchRenorm)(3, "batch")
  >>> jax.vmap(brn, (0, None), (0, None), axis_name="batch")(jnp.ones((4, 3)), state)[0].shape
  (4, 3)
  """

  rmax: float = eqx.field(static=True)
  dmax: float = eqx.field(static=True)

  def __init__(self, input_size: int, axis_name: Hashable | Sequence[Hashable], *,
               sigma: float = 0.0, rmax: float = 3.0, dmax: float = 5.0,
               channelwise_affine: bool = True, momentum: float = 0.99,
               inference: bool = False, dtype=None):
    check_renorm_limits(rmax, dmax)
    self._init(input_size, axis_name, sigma, channelwise_affine, momentum, inference, dtype)
    self.rmax, self.dmax = rmax, dmax

  def __call__(self, x: Array, state: eqx.nn.State, *, key=None, inference: bool | None = None):
    """Normalizes one example; returns ``(y, state)``."""
    return self._call(batch_renorm, x, state, inference, rmax=self.rmax, dmax=self.dmax,
                      feature_axes=1, sigma=self.sigma, return_centered=True)


class BatchInstanceNorm(_Running):
  """Batch-instance norm (Nam & Kim, 2018): ``rho * BN + (1 - rho) * IN`` with a learned
  per-channel ``rho``, clipped to [0, 1] where it is used, its gradient passed straight
  through (`divnorm.mixtures.learned_rho`).

  Args:
    input_size, axis_name, momentum, inference, dtype: as in `MeanOnlyBatchNorm`.
    channelwise_affine: learn a per-channel ``weight`` and ``bias``.
    sigma: the smoothing term, finite and >= 0 (as in `divnorm.batch_norm`).
    rho_init: the initial ``rho`` (`divnorm.mixtures.batch_instance_norm`), in [0, 1]; 1 is
      batch norm.

  >>> import jax, jax.numpy as jnp, equinox as eqx
  >>> from divnorm import equinox as dqx
  >>> bin_, state = eqx.nn.make_with_state(dqx.BatchInstanceNorm)(3, "batch")
  >>> jax.vmap(bin_, (0, None), (0, None), axis_name="batch")(jnp.ones((2, 3, 4)), state)[0].shape
  (2, 3, 4)
  """

  rho: Array

  def __init__(self, input_size: int, axis_name: Hashable | Sequence[Hashable], *,
               sigma: float = 0.0, rho_init: float = 1.0, channelwise_affine: bool = True,
               momentum: float = 0.99, inference: bool = False, dtype=None):
    check_unit_interval(rho_init, "rho_init")
    self._init(input_size, axis_name, sigma, channelwise_affine, momentum, inference, dtype)
    self.rho = jnp.full((input_size,), rho_init, _float(dtype))

  def __call__(self, x: Array, state: eqx.nn.State, *, key=None, inference: bool | None = None):
    """Normalizes one example ``(channels, *spatial)``; returns ``(y, state)``."""
    return self._call(batch_instance_norm, x, state, inference, channel_axis=1,
                      rho=learned_rho(self.rho), sigma=self.sigma, return_centered=True)


class SwitchableNorm(_Running):
  """Switchable normalization (Luo et al., 2019): softmax-weighted IN, LN and BN statistics;
  ``mean_logits`` and ``var_logits`` (order IN, LN, BN) start at zero.

  Args:
    input_size, axis_name, momentum, inference, dtype: as in `MeanOnlyBatchNorm`.
    channelwise_affine: learn a per-channel ``weight`` and ``bias``.
    sigma: the smoothing term, finite and >= 0 (as in `divnorm.batch_norm`).

  >>> import jax, jax.numpy as jnp, equinox as eqx
  >>> from divnorm import equinox as dqx
  >>> sn, state = eqx.nn.make_with_state(dqx.SwitchableNorm)(3, "batch")
  >>> jax.vmap(sn, (0, None), (0, None), axis_name="batch")(jnp.ones((2, 3, 4)), state)[0].shape
  (2, 3, 4)
  """

  mean_logits: Array
  var_logits: Array

  def __init__(self, input_size: int, axis_name: Hashable | Sequence[Hashable], *,
               sigma: float = 0.0, channelwise_affine: bool = True, momentum: float = 0.99,
               inference: bool = False, dtype=None):
    self._init(input_size, axis_name, sigma, channelwise_affine, momentum, inference, dtype)
    # Two arrays, never one twice: a donating step (`donate="all"`) donates each leaf once.
    self.mean_logits, self.var_logits = (jnp.zeros((3,), _float(dtype)) for _ in range(2))

  def __call__(self, x: Array, state: eqx.nn.State, *, key=None, inference: bool | None = None):
    """Normalizes one example ``(channels, *spatial)``; returns ``(y, state)``."""
    return self._call(switchable_norm, x, state, inference, channel_axis=1,
                      mean_weights=jax.nn.softmax(self.mean_logits),
                      var_weights=jax.nn.softmax(self.var_logits), sigma=self.sigma,
                      return_centered=True)
