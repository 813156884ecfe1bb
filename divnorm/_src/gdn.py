r"""Generalized divisive normalization and its inverse (Ballé, Laparra & Simoncelli, 2016-17).

.. math::
    \mathrm{GDN}:\ y_i = \frac{x_i}{(\beta_i + \sum_j \gamma_{ij} |x_j|^\alpha)^\epsilon}
    \qquad \mathrm{IGDN}:\ y_i = x_i (\beta_i + \sum_j \gamma_{ij} |x_j|^\alpha)^\epsilon

over the channels of each position: the unified formula of `divnorm.normalize` with no
centering, the channel pool a weighted sum (`divnorm.kernels.mixing`), ``beta = sigma^2``, and
``epsilon`` negated for IGDN. The ICLR 2016 paper's GDN has an exponent per pair of channels
and one per channel; divnorm's `alpha` and `epsilon` are one each (scalars, learned or not).
``alpha=2, epsilon=1/2`` (divnorm's defaults) is the GDN of Ballé, Laparra & Simoncelli's
image compression (ICLR 2017), whose IGDN multiplies; tensorflow_compression's ``GDN`` layer
now defaults to ``alpha=1, epsilon=1``.

A tensorflow_compression GDN's weights carry over: its raw ``reparam_beta`` is ``beta``, its
raw ``reparam_gamma`` transposed is ``gamma`` (its ``gamma[j, i]``, the row the pooled
channel, is divnorm's ``gamma[i, j]``), and its exponents must be passed (``alpha=1,
epsilon=1`` for its defaults); each step left out changes the outputs. Its ``rectify``
option is not here (apply ``relu`` first), and for an `alpha` other than 1 and 2 it raises
the input itself to the power (NaN for a negative input) where divnorm takes ``|x|^alpha``.

``beta > 0`` and ``gamma >= 0`` are kept so by the nonnegative reparameterization of
tensorflow_compression (`divnorm._src.nonnegative`): a raw parameter ``p`` stands for
``max(p, sqrt(min + pedestal))^2 - pedestal`` (`nonnegative`), with tensorflow_compression's
gradient at the bound, and `nonnegative_init` inverts it.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from divnorm._src.checks import (
  Int,
  axis_index,
  check_array,
  check_bool,
  check_finite,
  check_floating_dtype,
  check_input,
  check_int,
  check_nonnegative,
  check_positive,
  check_scalar,
  describe,
  is_concrete,
)
from divnorm._src.core import normalize
from divnorm._src.kernels import Mixing
from divnorm._src.nonnegative import OFFSET, nonnegative
from divnorm._src.reductions import stat_dtype

PEDESTAL = OFFSET**2
BETA_MIN = 1e-6
_DTYPE_HINT = " give one, e.g. jnp.float32 or jnp.bfloat16."


def nonnegative_init(value, *, minimum: float = 0.0, dtype=jnp.float32) -> jax.Array:
  """The raw parameter for `value` (>= `minimum`): ``nonnegative(init(v)) == v``."""
  check_nonnegative(minimum, "minimum")
  dtype = check_floating_dtype(dtype, "dtype", context="nonnegative_init", hint=_DTYPE_HINT)
  value = check_array(value, "value")
  if is_concrete(value) and not np.all(np.asarray(value, np.float64) >= minimum):
    raise ValueError(f"nonnegative_init: value={describe(value)} must be >= minimum={minimum}: "
                     f"the raw parameter stands for a weight of at least minimum.")
  value = value.astype(dtype)
  return jnp.sqrt(jnp.maximum(value + np.asarray(PEDESTAL, dtype),
                              np.asarray(minimum + PEDESTAL, dtype)))


class GDNParams(NamedTuple):
  """Raw (reparameterized) GDN parameters: ``beta [C]`` and ``gamma [C, C]``."""

  beta: jax.Array
  gamma: jax.Array


def gdn_init(channels: Int, *, beta: float = 1.0, gamma: float = 0.1,
             dtype=jnp.float32) -> GDNParams:
  """Raw parameters for ``beta = beta * 1`` and ``gamma = gamma * I`` (the usual init).

  Args:
    channels: the number of channels ``C``.
    beta: the initial value of every entry of ``beta`` ``[C]`` (> 0).
    gamma: the initial diagonal of ``gamma`` ``[C, C]`` (>= 0); the rest starts at 0.
    dtype: the parameters' dtype.

  Returns:
    A `GDNParams` of raw (reparameterized) arrays; `gdn_values` gives ``(beta, gamma)``.
  """
  channels = check_int(channels, "channels", minimum=1, context="gdn_init")
  dtype = check_floating_dtype(dtype, "dtype", context="gdn_init", hint=_DTYPE_HINT)
  for name, value in (("beta", beta), ("gamma", gamma)):
    check_scalar(value, name, "the one starting value of every entry", context="gdn_init")
  check_positive(beta, "beta", " (the pool's constant; GDN divides by it at x = 0)")
  if is_concrete(beta) and beta < BETA_MIN:
    raise ValueError(f"gdn_init: beta={describe(beta)} must be >= BETA_MIN={BETA_MIN}, the "
                     f"bound that GDN keeps beta above.")
  check_nonnegative(gamma, "gamma", " (the pool's weights)")
  return GDNParams(
      nonnegative_init(jnp.full((channels,), beta, dtype), minimum=BETA_MIN, dtype=dtype),
      nonnegative_init(gamma * jnp.eye(channels, dtype=dtype), dtype=dtype))


def gdn_values(params: GDNParams) -> tuple[jax.Array, jax.Array]:
  """``(beta, gamma)`` that raw `params` (a `GDNParams`, or any ``(beta, gamma)`` pair) stand
  for."""
  if not isinstance(params, tuple | list) or len(params) != 2:
    raise TypeError(f"params={describe(params)} is not a (beta, gamma) pair of raw parameters; "
                    f"create them with divnorm.gdn.gdn_init(channels).")
  beta, gamma = params
  return nonnegative(beta, minimum=BETA_MIN), nonnegative(gamma)


def _check_params(beta, gamma, alpha, epsilon, channels: int, c: int):
  beta = check_array(beta, "beta", " (GDN's constant, one per channel)")
  gamma = check_array(gamma, "gamma", " (GDN's weights, channels x channels)")
  if beta.shape != (channels,) or gamma.shape != (channels, channels):
    raise ValueError(
        f"x has {channels} channels on axis {c}, so beta must have shape ({channels},) and "
        f"gamma ({channels}, {channels}); got {beta.shape} and {gamma.shape}.")
  learn = ("; learn them through divnorm.gdn.nonnegative / gdn_init, which keep them "
           "nonnegative and beta >= BETA_MIN")
  check_finite(beta, "beta", " (GDN's constant, one per channel)")
  check_finite(gamma, "gamma", " (GDN's weights, channels x channels)")
  if is_concrete(beta) and not np.all(np.asarray(beta) > 0):
    raise ValueError(f"beta={describe(beta)} must be > 0 (and gamma nonnegative): the pool "
                     f"beta + gamma |x|^alpha divides x, and is beta where x = 0{learn}.")
  if is_concrete(gamma) and not np.all(np.asarray(gamma) >= 0):
    raise ValueError(f"gamma={describe(gamma)} must be nonnegative (>= 0){learn}.")
  for name, value in (("alpha", alpha), ("epsilon", epsilon)):
    check_scalar(value, name, "one exponent")
  check_positive(alpha, "alpha", " (the exponent of |x_j|; 2 in the paper)")
  check_finite(epsilon, "epsilon", " (the exponent of the pool; 1/2 in the paper)")
  return beta, gamma


def gdn(
    x: ArrayLike,
    *,
    beta: jax.Array,
    gamma: jax.Array,
    alpha: ArrayLike = 2.0,
    epsilon: ArrayLike = 0.5,
    inverse: bool = False,
    channel_axis: Int = -1,
) -> jax.Array:
  """GDN (or IGDN with `inverse`) over the channel axis, with explicit `beta`, `gamma`.

  Args:
    x: ``[B, ..., C]`` with channels at `channel_axis`.
    beta: ``[C]``, > 0 (the values, not raw parameters: see `gdn_values`).
    gamma: ``[C, C]``, >= 0; ``gamma[i, j]`` weighs channel j in the pool of channel i.
    alpha: exponent of ``|x_j|`` (2 in the paper).
    epsilon: exponent of the pool (1/2 in the paper), as tensorflow_compression's; not an
      additive constant (`beta` is).
    inverse: multiply by the pool instead of dividing (IGDN, the decoder's layer).
    channel_axis: the channel axis.

  Returns:
    An array of the shape and dtype of `x`, computed in float32 or wider.
  """
  x = check_input(x)
  c = axis_index(channel_axis, x.ndim, "channel_axis", context="gdn")
  inverse = check_bool(inverse, "inverse")
  channels = x.shape[c]
  beta, gamma = _check_params(beta, gamma, alpha, epsilon, channels, c)
  # The unified formula with no centering, a channel mixing summed (not averaged) and
  # beta = sigma^2: y = x (beta + sum_j gamma_ij |x_j|^alpha)^(-epsilon).
  dt = stat_dtype(x.dtype)
  sigma = jnp.sqrt(beta.astype(dt)).reshape(tuple(channels if a == c else 1
                                                  for a in range(x.ndim)))
  return normalize(x, None, {c: Mixing(gamma)}, sigma=sigma, alpha=alpha,
                            epsilon=-epsilon if inverse else epsilon, pool="sum")


def igdn(x: jax.Array, **kwargs) -> jax.Array:
  """Inverse GDN: ``gdn(x, inverse=True, **kwargs)``."""
  return gdn(x, inverse=True, **kwargs)
