r"""Generalized divisive normalization and its inverse (Balle, Laparra & Simoncelli, 2016).

.. math::
    \mathrm{GDN}:\ y_i = \frac{x_i}{(\beta_i + \sum_j \gamma_{ij} |x_j|^\alpha)^\epsilon}
    \qquad \mathrm{IGDN}:\ y_i = x_i (\beta_i + \sum_j \gamma_{ij} |x_j|^\alpha)^\epsilon

over the channels of each position: the unified formula of `divnorm.normalize` with no
centering, the channel pool a weighted sum (`divnorm.mixing`), ``beta = sigma^2``, and
``epsilon`` negated for IGDN. The 2016 paper's GDN has ``alpha=2, epsilon=1/2`` (divnorm's
defaults); tensorflow_compression's ``GDN`` layer now defaults to ``alpha=1, epsilon=1``.
Its ``gamma[j, i]`` (the row is the pooled channel) is divnorm's ``gamma[i, j]`` transposed.

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

from divnorm._src.checks import check_input
from divnorm._src.kernels import Mixing
from divnorm._src.nonnegative import OFFSET, nonnegative
from divnorm._src.reductions import stat_dtype
from divnorm._src.suppression import weighted_normalize

PEDESTAL = OFFSET**2
BETA_MIN = 1e-6


def nonnegative_init(value, *, minimum: float = 0.0, dtype=jnp.float32) -> jax.Array:
  """The raw parameter for `value` (>= `minimum`): ``nonnegative(init(v)) == v``."""
  value = jnp.asarray(value, dtype)
  return jnp.sqrt(jnp.maximum(value + np.asarray(PEDESTAL, dtype),
                              np.asarray(minimum + PEDESTAL, dtype)))


class GDNParams(NamedTuple):
  """Raw (reparameterized) GDN parameters: ``beta [C]`` and ``gamma [C, C]``."""

  beta: jax.Array
  gamma: jax.Array


def gdn_init(channels: int, *, beta: float = 1.0, gamma: float = 0.1,
             dtype=jnp.float32) -> GDNParams:
  """Raw parameters for ``beta = beta * 1`` and ``gamma = gamma * I`` (the usual init)."""
  return GDNParams(
      nonnegative_init(jnp.full((channels,), beta, dtype), minimum=BETA_MIN, dtype=dtype),
      nonnegative_init(gamma * jnp.eye(channels, dtype=dtype), dtype=dtype))


def gdn_values(params: GDNParams) -> tuple[jax.Array, jax.Array]:
  """``(beta, gamma)`` that raw `params` stand for."""
  return nonnegative(params.beta, minimum=BETA_MIN), nonnegative(params.gamma)


def _concrete_negative(a) -> bool:
  return not isinstance(a, jax.core.Tracer) and bool(np.any(np.asarray(a) < 0))


def gdn(
    x: jax.Array,
    *,
    beta: jax.Array,
    gamma: jax.Array,
    alpha: float = 2.0,
    epsilon: float = 0.5,
    inverse: bool = False,
    channel_axis: int = -1,
) -> jax.Array:
  """GDN (or IGDN with `inverse`) over the channel axis, with explicit `beta`, `gamma`.

  Args:
    x: ``[B, ..., C]`` with channels at `channel_axis`.
    beta: ``[C]``, > 0 (the values, not raw parameters: see `gdn_values`).
    gamma: ``[C, C]``, >= 0; ``gamma[i, j]`` weighs channel j in the pool of channel i.
    alpha: exponent of ``|x_j|`` (2 in the paper).
    epsilon: exponent of the pool (1/2 in the paper).
    inverse: multiply by the pool instead of dividing (IGDN, the decoder's layer).
    channel_axis: the channel axis.

  Returns:
    An array of the shape and dtype of `x`, computed in float32 or wider.
  """
  x = check_input(x)
  if not -x.ndim <= channel_axis < x.ndim:
    raise ValueError(f"channel_axis={channel_axis} is out of range for rank {x.ndim}.")
  c = channel_axis % x.ndim
  channels = x.shape[c]
  beta, gamma = jnp.asarray(beta), jnp.asarray(gamma)
  if beta.shape != (channels,) or gamma.shape != (channels, channels):
    raise ValueError(
        f"x has {channels} channels on axis {c}, so beta must have shape ({channels},) and "
        f"gamma ({channels}, {channels}); got {beta.shape} and {gamma.shape}.")
  if _concrete_negative(beta) or _concrete_negative(gamma):
    raise ValueError(
        "beta and gamma must be nonnegative (beta > 0); learn them through "
        "divnorm.gdn.nonnegative / gdn_init, which keep them so.")
  # The unified formula with no centering, a channel mixing summed (not averaged) and
  # beta = sigma^2: y = x (beta + sum_j gamma_ij |x_j|^alpha)^(-epsilon).
  dt = stat_dtype(x.dtype)
  sigma = _per_channel(jnp.sqrt(beta.astype(dt)), c, x.ndim)
  epsilon = -epsilon if inverse else epsilon
  return weighted_normalize(x, None, {c: Mixing(gamma)}, sigma=sigma, alpha=alpha,
                            epsilon=epsilon, pool="sum")


def _per_channel(value: jax.Array, c: int, ndim: int) -> jax.Array:
  shape = [1] * ndim
  shape[c] = value.shape[0]
  return jnp.reshape(value, shape)


def igdn(x: jax.Array, **kwargs) -> jax.Array:
  """Inverse GDN: ``gdn(x, inverse=True, **kwargs)``."""
  return gdn(x, inverse=True, **kwargs)
