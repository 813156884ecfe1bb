r"""The divisive normalizations of neuroscience and image compression, in the unified formula.

Each preset is a few lines over `divnorm.normalize` (``y = v / (sigma^2 + P_B[|v|^alpha])
^epsilon``, no centering, ``P_B`` a weighted sum) with its paper's parameter names; each docstring
gives the formula, the source it was read from and the paper's initialization. GDN and
IGDN are `divnorm.gdn.gdn` and `divnorm.gdn.igdn`.

| preset | v | pool P | exponents |
|---|---|---|---|
| `miller_norm` | ``a^2`` | exponential kernel along channels, sum | 1, ``beta`` |
| `burg_norm` | ``[x]_+^n`` | spatial kernel ``u`` x feature weights ``|v|``, sum | 1, 1 |
| `center_surround_norm` | ``x`` | channel groups (centre) + dilated surround, sum | 2, 1/2 |
| `gaussian_norm` | ``x^2`` | Gaussian-initialized depthwise kernel, sum | 1, 1 |
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from divnorm._src.checks import channel_axis_index, check_input
from divnorm._src.core import normalize
from divnorm._src.kernels import Kernel, Mixing, miller_width
from divnorm._src.reductions import stat_dtype
from divnorm._src.statistics import abs_power
from divnorm._src.weighted_fields import resolve_weighted_field, weighted_sum


def _spatial(ndim: int, c: int) -> tuple[int, ...]:
  return tuple(a for a in range(1, ndim) if a != c)


def _as(value, dt):
  return jnp.asarray(value).astype(dt)


def _per_channel(value, c: int, ndim: int, dt) -> jax.Array:
  """A scalar or a ``[C]`` vector as an array that broadcasts along channel axis `c`."""
  value = _as(value, dt)
  if value.ndim == 0:
    return value
  shape = [1] * ndim
  shape[c] = value.shape[0]
  return jnp.reshape(value, shape)


def miller_norm(a: jax.Array, *, lamb, alpha, beta, k, width: int | None = None,
                channel_axis: int = -1) -> jax.Array:
  r"""Divisive feature normalization of Miller, Chung & Miller (ICLR 2022).

  .. math::
      b_c = \frac{a_c^2}{\Bigl(k \bigl(1 + \frac{\alpha}{\lambda}
            \sum_{j=-4\lambda}^{4\lambda} a_{c+j}^2\, e^{-|j|/\lambda}\bigr)\Bigr)^\beta}

  along the channels of each position, zero padded; applied after the ReLU. Transcribed
  from the authors' ``divisive_normalization`` (github.com/MikiMiller95/
  DivisiveNormalization, ``CIFARModelsArchitectures/DivisiveNorm``): the numerator is
  ``a^2`` there, and the kernel spans ``ceil(8 lambda)`` channels (made odd).

  Args:
    a: ``[B, ..., C]`` activations (rectified).
    lamb: the decay length lambda (learned in the paper; their CIFAR AlexNet starts at 2).
    alpha: the weight of the pool (learned; starts at 0.1, or 1 before batch norm).
    beta: the exponent (learned; starts at 1).
    k: the overall scale (learned; starts at 1).
    width: the kernel's width; None is ``miller_width(lamb)`` (needs a concrete `lamb`;
      give it when `lamb` is learned: the width cannot follow lambda under ``jit``).
    channel_axis: the channel axis.
  """
  a = check_input(a)
  c = channel_axis_index(channel_axis, a.ndim, "miller_norm")
  dt = stat_dtype(a.dtype)
  if width is None:
    width = miller_width(float(lamb))
  j = jnp.asarray(np.abs(np.arange(width) - width // 2), dt)
  lamb, alpha, k = _as(lamb, dt), _as(alpha, dt), _as(k, dt)
  # k (1 + alpha / lambda S) = k + sum_j (k alpha / lambda) e^{-|j| / lambda} a_{c+j}^2
  weights = k * alpha / lamb * jnp.exp(-j / lamb)
  t = jnp.square(a.astype(dt))
  return normalize(t, None, {c: Kernel(weights)}, sigma=jnp.sqrt(k), alpha=1.0,
                            epsilon=beta, pool="sum").astype(a.dtype)


def burg_norm(x: jax.Array, *, n, eta, u, v, channel_axis: int = -1) -> jax.Array:
  r"""Learned divisive normalization of Burg et al. (PLoS Comput. Biol. 2021), Eq. 1.

  .. math::
      o_l = \frac{E_l}{\eta_l^{n_l} + \sum_k |v_{kl}| \sum_q u_q\, E_k(p + q)},
      \qquad E_k = [x_k]_+^{n_k}

  Each filter's output is rectified and exponentiated (its excitatory output ``E``) and
  divided by a semi-saturation constant ``eta^n`` plus a weighted sum of the excitatory
  outputs of all filters (Fig. 1), whose weights factorize into a spatial kernel ``u``
  and feature weights ``|v|``; the paper puts an L1 penalty on ``v`` (`burg_penalty`).
  Read from the paper's text (the authors' TensorFlow code was not available here): the
  placement of the exponent (``n_k`` of the pooled filter, as the caption of Fig. 1 says)
  and the shared spatial kernel ``u`` are our reading.

  Args:
    x: ``[B, H, W, C]`` (channels at `channel_axis`), the filters' linear outputs.
    n: exponents, ``[C]`` or a scalar (> 0).
    eta: semi-saturation constants, ``[C]`` or a scalar (> 0).
    u: the spatial kernel, ``[k_1, ..., k_d]`` (odd sizes, >= 0) over the spatial axes.
    v: feature weights ``[C, C]``; ``v[k, l]`` weighs filter k in the pool of filter l.
    channel_axis: the channel axis.
  """
  x = check_input(x)
  c = channel_axis_index(channel_axis, x.ndim, "burg_norm")
  dt = stat_dtype(x.dtype)
  n = _per_channel(n, c, x.ndim, dt)
  e = abs_power(jnp.maximum(x.astype(dt), jnp.zeros((), dt)), n)
  field = {_spatial(x.ndim, c): Kernel(_as(u, dt)), c: Mixing(jnp.abs(_as(v, dt)).T)}
  semisaturation = abs_power(_per_channel(eta, c, x.ndim, dt), n)
  return normalize(e, None, field, sigma=jnp.sqrt(semisaturation), alpha=1.0,
                            epsilon=1.0, pool="sum").astype(x.dtype)


def burg_penalty(v) -> jax.Array:
  """Burg et al.'s L1 penalty on the feature weights: ``sum |v|`` (times their weight)."""
  return jnp.sum(jnp.abs(jnp.asarray(v)))


def group_mixing(gamma_k, group_size: int) -> jax.Array:
  """The ``[C, C]`` block-diagonal mixing of Pan et al.'s centre pool from ``gamma_k``.

  ``gamma_k [group_size, C]``: entry ``[j, i]`` weighs channel j of i's group (a 1x1
  convolution per group, input j, output i).
  """
  gamma_k = jnp.asarray(gamma_k)
  size, channels = gamma_k.shape
  if size != group_size or channels % group_size:
    raise ValueError(
        f"gamma_k of shape {gamma_k.shape} must be [group_size={group_size}, C] with C a "
        f"multiple of {group_size}.")
  # full[i, m * size + j] = gamma_k[j, i] for every group m; keep i's own group.
  full = jnp.tile(gamma_k.T, (1, channels // size))
  same = np.equal.outer(np.arange(channels) // size, np.arange(channels) // size)
  return jnp.where(same, full, jnp.zeros((), full.dtype))


def center_surround_norm(x: jax.Array, *, beta, gamma_k, gamma_s, surround_dist: int = 1,
                         group_size: int = 8, beta_min: float = 1e-6,
                         channel_axis: int = -1) -> jax.Array:
  r"""Weighted normalization with centre and surround pools, Pan et al. (2021), ``WN_s``.

  .. math::
      y_i = \frac{x_i}{\sqrt{\beta_i + \beta_{min} + \sum_{j \in g(i)} \gamma^k_{ji} x_j^2
            + \sum_{q \ne 0} \gamma^s_{qi}\, x_i(p + d\,q)^2}}

  The centre pool mixes the channels of i's group (groups of `group_size` = 8 channels);
  the surround pool is a 3x3 depthwise kernel with its centre zeroed, dilated by
  ``d = surround_dist``, zero padded. Transcribed from ``WN_s`` in normalizations.py of
  github.com/schwartz-cnl/Weighted_normalization ("Brain-inspired weighted normalization
  for CNN image classification", Pan, Kartal, Sanchez Giraldo & Schwartz, ICLR 2021
  workshop). Initialization there: ``beta = 1e-6``, ``gamma_k = gamma_s = 1/16`` (all
  nonnegative), ``surround_dist = 1``; their layer then applies a learned affine
  (``gamma_outside``, ``beta_outside``), which the modules add.

  Args:
    x: ``[B, H, W, C]`` (channels at `channel_axis`).
    beta: ``[C]``, >= 0.
    gamma_k: ``[group_size, C]``, >= 0 (see `group_mixing`).
    gamma_s: ``[3, 3, C]``, >= 0; the centre entry is ignored.
    surround_dist: the dilation of the surround.
    group_size: channels per centre group.
    beta_min: added to beta.
    channel_axis: the channel axis.
  """
  x = check_input(x)
  c = channel_axis_index(channel_axis, x.ndim, "center_surround_norm")
  dt = stat_dtype(x.dtype)
  xs = x.astype(dt)
  t = xs * xs
  gamma_s = _as(gamma_s, dt)
  ring = np.ones(gamma_s.shape[:-1])
  ring[tuple(n // 2 for n in ring.shape)] = 0.0
  center = resolve_weighted_field({c: Mixing(group_mixing(_as(gamma_k, dt), group_size))},
                                  x.shape)
  surround = {_spatial(x.ndim, c): Kernel(gamma_s * ring[..., None], surround_dist, c)}
  # The centre pool is a per-position constant beside the surround's: sigma^2 carries it.
  constant = (weighted_sum(t, center) + _per_channel(beta, c, x.ndim, dt)
              + np.asarray(beta_min, dt))
  return normalize(xs, None, surround, sigma=jnp.sqrt(constant), pool="sum").astype(x.dtype)


def gaussian_filterbank(channels: int, size: int, key: jax.Array) -> jax.Array:
  """Veerabadran et al.'s initial pools: ``[size, size, channels]`` 2-D Gaussians.

  On ``linspace(-1, 1, size)^2`` with standard deviations 0.5, 1, 2 and 3 (a quarter of the
  channels each; `channels` a multiple of 4), each scaled to a centre weight of 1, in an
  order drawn from `key` (their ``get_gaussian_filterbank`` permutes them at random).
  """
  if channels % 4:
    raise ValueError(f"channels={channels} must be a multiple of 4 (four Gaussian widths).")
  grid = np.linspace(-1.0, 1.0, size)
  r2 = grid[:, None] ** 2 + grid[None, :] ** 2
  bank = np.concatenate([np.repeat(np.exp(-r2 / (2 * s * s))[..., None], channels // 4, -1)
                         for s in (0.5, 1.0, 2.0, 3.0)], axis=-1)
  return jnp.asarray(bank)[..., jax.random.permutation(key, channels)]


def gaussian_norm(x: jax.Array, *, weights, sigma, offset: float = 1e-5,
                  channel_axis: int = -1) -> jax.Array:
  r"""Learned divisive normalization with Gaussian-initialized pools, Veerabadran et al.

  .. math::
      y_c = \frac{x_c^2}{\sum_q W_c(q)\, x_c(p + q)^2 + \sigma_c^2 + 10^{-5}}

  a depthwise (per channel) pool of the squared responses, zero padded. Transcribed from
  ``DivNormExcInh`` (``square_act=True``) in models/divisive_normalization_svrhm/
  divisive_norm_exc_inh.py of github.com/desa-lab/early_vision ("Bio-inspired learnable
  divisive normalization for ANNs", Veerabadran, Raina & de Sa, SVRHM 2021). Initialization
  there: ``W`` from `gaussian_filterbank` (``divnorm_fsize = 5``), ``sigma = 1``.

  Args:
    x: ``[B, H, W, C]`` (channels at `channel_axis`).
    weights: ``[k, k, C]``, >= 0 (odd k), one pool per channel.
    sigma: ``[C]`` or a scalar.
    offset: the constant their code adds (1e-5).
    channel_axis: the channel axis.
  """
  x = check_input(x)
  c = channel_axis_index(channel_axis, x.ndim, "gaussian_norm")
  dt = stat_dtype(x.dtype)
  t = jnp.square(x.astype(dt))
  field = {_spatial(x.ndim, c): Kernel(_as(weights, dt), 1, c)}
  constant = jnp.square(_per_channel(sigma, c, x.ndim, dt)) + np.asarray(offset, dt)
  return normalize(t, None, field, sigma=jnp.sqrt(constant), alpha=1.0, epsilon=1.0,
                            pool="sum").astype(x.dtype)
