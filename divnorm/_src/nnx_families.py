"""Flax NNX modules of the divisive normalization families (`divnorm._src.families`).

The same layers, parameter names and initializations as `divnorm._src.linen_families`, as
`nnx.Module` s built from the number of channels. GDN itself is `divnorm.nnx.GDN`. Each
takes nnx's ``rngs=``; only `GaussianNorm` draws from it (the others' initial values are
constants).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from divnorm._src import families
from divnorm._src import flax_semantics as fs
from divnorm._src.checks import channel_axis_index
from divnorm._src.nonnegative import nonnegative, nonnegative_init

Dtype = Any


def _scalar(value, dtype) -> nnx.Param:
  return nnx.Param(jnp.asarray(value, dtype))


class MillerNorm(nnx.Module):
  """Miller et al.'s divisive feature normalization (ICLR 2022), `miller_norm`.

  Args:
    lamb_init, alpha_init, beta_init, k_init: the initial ``lamb``, ``alpha``, ``beta``, ``k``
      of `divnorm.families.miller_norm`.
    width: `divnorm.families.miller_norm`'s (None: ``miller_width(lamb_init)``).
    channel_axis: the channel axis.
    param_dtype: the parameters' dtype.

  >>> MillerNorm()(jnp.ones((1, 4, 4, 32))).shape
  (1, 4, 4, 32)
  """

  def __init__(self, *, lamb_init: float = 2.0, alpha_init: float = 0.1, beta_init: float = 1.0,
               k_init: float = 1.0, width: int | None = None, channel_axis: int = -1,
               param_dtype: Dtype = jnp.float32, rngs: nnx.Rngs | None = None):
    self.lamb, self.alpha = _scalar(lamb_init, param_dtype), _scalar(alpha_init, param_dtype)
    self.beta, self.k = _scalar(beta_init, param_dtype), _scalar(k_init, param_dtype)
    self.width = families.miller_module_width(lamb_init, alpha_init, beta_init, k_init, width)
    self.channel_axis = channel_axis

  def __call__(self, a):
    """``a^2 / (k (1 + alpha / lambda sum_j a_{c+j}^2 e^{-|j| / lambda}))^beta``."""
    return families.learned_miller_norm(a, lamb=self.lamb[...], alpha=self.alpha[...],
                                        beta=self.beta[...], k=self.k[...], width=self.width,
                                        channel_axis=self.channel_axis)


class BurgNorm(nnx.Module):
  """Burg et al.'s learned divisive normalization (2021), `burg_norm`; ``u`` is raw
  (nonnegative through the reparameterization), ``v`` enters as ``|v|``. `penalty` is the
  paper's L1 on v, ``v_l1 * sum |v|``, to add to the loss.

  Args:
    num_features: the number of channels.
    kernel_size: the odd width of the spatial kernel ``u`` along each spatial axis.
    spatial_dims: the number of spatial axes of the input (the rank of ``u``).
    n_init, eta_init: the initial ``n`` and ``eta`` of `divnorm.families.burg_norm` (> 0).
    v_l1: the weight of the L1 penalty on ``v`` (>= 0; 0: none).
    channel_axis: the channel axis.
    param_dtype: the parameters' dtype.

  >>> BurgNorm(8, kernel_size=3)(jnp.ones((1, 4, 4, 8))).shape
  (1, 4, 4, 8)
  """

  def __init__(self, num_features: int, *, kernel_size: int = 5, spatial_dims: int = 2,
               n_init: float = 1.0, eta_init: float = 1.0, v_l1: float = 0.0,
               channel_axis: int = -1, param_dtype: Dtype = jnp.float32,
               rngs: nnx.Rngs | None = None):
    c = num_features
    k = families.burg_module_kernel_size(kernel_size, n_init, eta_init, v_l1, spatial_dims)
    self.n = nnx.Param(jnp.full((c,), n_init, param_dtype))
    self.eta = nnx.Param(jnp.full((c,), eta_init, param_dtype))
    self.u = nnx.Param(nonnegative_init(jnp.full((k,) * spatial_dims, 1.0 / k**spatial_dims),
                                        dtype=param_dtype))
    self.v = nnx.Param(jnp.full((c, c), 1.0 / c, param_dtype))
    self.v_l1, self.channel_axis = v_l1, channel_axis

  def penalty(self) -> jax.Array:
    """``v_l1 * sum |v|``."""
    return self.v_l1 * families.burg_penalty(self.v[...])

  def __call__(self, x):
    """``[x]_+^n / (eta^n + |v|^T (u * [x]_+^n))``."""
    fs.check_channels(self, self.n.shape[0], x, self.channel_axis)
    families.check_burg_input(x, self.u.ndim)
    return families.learned_burg_norm(x, n=self.n[...], eta=self.eta[...],
                                      u=nonnegative(self.u[...]), v=self.v[...],
                                      channel_axis=self.channel_axis)


class CenterSurroundNorm(nnx.Module):
  """Pan et al.'s weighted normalization with centre and surround pools (``WN_s``), with
  their affine as ``scale`` and ``bias``; ``beta``, ``gamma_k``, ``gamma_s`` are raw.

  Args:
    num_features: the number of channels.
    surround_dist, group_size, beta_min: `divnorm.families.center_surround_norm`'s.
    beta_init, gamma_init: the initial ``beta`` and the initial entries of ``gamma_k``,
      ``gamma_s`` (>= 0).
    use_scale, use_bias: learn the per-channel ``scale`` and ``bias``.
    channel_axis: the channel axis.
    param_dtype: the parameters' dtype.

  >>> CenterSurroundNorm(16)(jnp.ones((1, 4, 4, 16))).shape
  (1, 4, 4, 16)
  """

  def __init__(self, num_features: int, *, surround_dist: int = 1, group_size: int = 8,
               beta_min: float = 1e-6, beta_init: float = 1e-6, gamma_init: float = 1 / 16,
               use_scale: bool = True, use_bias: bool = True, channel_axis: int = -1,
               param_dtype: Dtype = jnp.float32, rngs: nnx.Rngs | None = None):
    c = num_features
    families.check_center_surround_module(surround_dist, group_size, beta_min, beta_init,
                                          gamma_init, channels=c)

    def raw(shape, value):
      return nnx.Param(nonnegative_init(jnp.full(shape, value), dtype=param_dtype))

    self.beta = raw((c,), beta_init)
    self.gamma_k = raw((group_size, c), gamma_init)
    self.gamma_s = raw((3, 3, c), gamma_init)
    self.scale = nnx.Param(jnp.ones((c,), param_dtype)) if use_scale else None
    self.bias = nnx.Param(jnp.zeros((c,), param_dtype)) if use_bias else None
    self.surround_dist, self.group_size, self.beta_min = surround_dist, group_size, beta_min
    self.channel_axis = channel_axis

  def __call__(self, x):
    """``x / sqrt(beta + beta_min + centre pool + surround pool) * scale + bias``."""
    families.check_image_input(x, "CenterSurroundNorm")
    fs.check_channels(self, self.beta.shape[0], x, self.channel_axis)
    y = families.center_surround_norm(
        x, beta=nonnegative(self.beta[...]), gamma_k=nonnegative(self.gamma_k[...]),
        gamma_s=nonnegative(self.gamma_s[...]), surround_dist=self.surround_dist,
        group_size=self.group_size, beta_min=self.beta_min, channel_axis=self.channel_axis)
    scale, bias = (None if p is None else p[...] for p in (self.scale, self.bias))
    axis = channel_axis_index(self.channel_axis, jnp.ndim(x), "CenterSurroundNorm")
    return fs.affine(y, scale, bias, (axis,)).astype(fs.result_dtype(x, scale, bias))


class GaussianNorm(nnx.Module):
  """Veerabadran et al.'s learned divisive normalization with Gaussian-initialized pools;
  ``weights`` from `gaussian_filterbank` in an order drawn from ``rngs.params()``.

  Args:
    num_features: the number of channels.
    kernel_size: the odd width of the pools (``weights`` ``[k, k, C]``).
    sigma_init: the initial ``sigma`` of `divnorm.families.gaussian_norm` (every channel).
    offset: `divnorm.families.gaussian_norm`'s (>= 0).
    channel_axis: the channel axis.
    param_dtype: the parameters' dtype.
    rngs: ``rngs.params()`` draws the filterbank's order (omitted: ``nnx.Rngs(0)``, as the
      other `divnorm.nnx` modules).

  >>> GaussianNorm(8, kernel_size=3, rngs=nnx.Rngs(0))(jnp.ones((1, 4, 4, 8))).shape
  (1, 4, 4, 8)
  """

  def __init__(self, num_features: int, *, kernel_size: int = 5, sigma_init: float = 1.0,
               offset: float = 1e-5, channel_axis: int = -1, param_dtype: Dtype = jnp.float32,
               rngs: nnx.Rngs | None = None):
    kernel_size = families.gaussian_module_kernel_size(kernel_size, sigma_init, offset,
                                                       num_features, "num_features")
    rngs = nnx.Rngs(0) if rngs is None else rngs
    self.weights = nnx.Param(families.gaussian_filterbank(
        num_features, kernel_size, rngs.params()).astype(param_dtype))
    self.sigma = nnx.Param(jnp.full((num_features,), sigma_init, param_dtype))
    self.offset, self.channel_axis = offset, channel_axis

  def __call__(self, x):
    """``x^2 / (W * x^2 + sigma^2 + offset)``, per channel."""
    families.check_image_input(x, "GaussianNorm")
    fs.check_channels(self, self.sigma.shape[0], x, self.channel_axis)
    return families.gaussian_norm(x, weights=self.weights[...], sigma=self.sigma[...],
                                  offset=self.offset, channel_axis=self.channel_axis)
