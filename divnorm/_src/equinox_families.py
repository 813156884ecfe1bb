"""Equinox modules of the divisive normalization families (`divnorm._src.families`).

As equinox's layers, each sees one example, channels first (``jax.vmap`` over the batch),
and takes and returns an optional `state`, which passes through. Parameter names and
initializations are those of `divnorm._src.linen_families`. GDN itself is
`divnorm.equinox.GDN`.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from divnorm._src import families
from divnorm._src import flax_semantics as fs
from divnorm._src.checks import check_int
from divnorm._src.equinox import _NO_STATE, _check_channels, _float, _out
from divnorm._src.nonnegative import nonnegative, nonnegative_init


class MillerNorm(eqx.Module):
  """Miller et al.'s divisive feature normalization (ICLR 2022) of one example, channels
  first.

  Args:
    lamb_init, alpha_init, beta_init, k_init: the initial ``lamb``, ``alpha``, ``beta``, ``k``
      of `divnorm.families.miller_norm`.
    width: `divnorm.families.miller_norm`'s (None: ``miller_width(lamb_init)``).
    dtype: the parameters' dtype (equinox's default: float32).

  >>> import jax.numpy as jnp
  >>> from divnorm import equinox as dqx
  >>> dqx.MillerNorm()(jnp.ones((32, 4, 4))).shape
  (32, 4, 4)
  """

  lamb: Array
  alpha: Array
  beta: Array
  k: Array
  width: int = eqx.field(static=True)

  def __init__(self, *, lamb_init: float = 2.0, alpha_init: float = 0.1,
               beta_init: float = 1.0, k_init: float = 1.0, width: int | None = None,
               dtype=None):
    dtype = _float(dtype)
    self.lamb, self.alpha = jnp.asarray(lamb_init, dtype), jnp.asarray(alpha_init, dtype)
    self.beta, self.k = jnp.asarray(beta_init, dtype), jnp.asarray(k_init, dtype)
    self.width = families.miller_module_width(lamb_init, alpha_init, beta_init, k_init, width)

  def __call__(self, a: Array, state=_NO_STATE, *, key=None):
    """``a^2 / (k (1 + alpha / lambda sum_j a_{c+j}^2 e^{-|j| / lambda}))^beta``."""
    y = families.learned_miller_norm(a[None], lamb=self.lamb, alpha=self.alpha,
                                     beta=self.beta, k=self.k, width=self.width,
                                     channel_axis=1)[0]
    return _out(y, a.dtype, state)


class BurgNorm(eqx.Module):
  """Burg et al.'s learned divisive normalization (2021) of one example, channels first;
  ``u`` is raw (reparameterized), ``v`` enters as ``|v|``; `penalty` is the L1 on v.

  Args:
    channels: the number of channels (the first axis).
    kernel_size: the odd width of the spatial kernel ``u`` along each spatial axis.
    spatial_dims: the number of spatial axes of the input (the rank of ``u``).
    n_init, eta_init: the initial ``n`` and ``eta`` of `divnorm.families.burg_norm` (> 0).
    v_l1: the weight of the L1 penalty on ``v`` (>= 0; 0: none).
    dtype: the parameters' dtype (equinox's default: float32).

  >>> import jax.numpy as jnp
  >>> from divnorm import equinox as dqx
  >>> dqx.BurgNorm(8, kernel_size=3)(jnp.ones((8, 4, 4))).shape
  (8, 4, 4)
  """

  n: Array
  eta: Array
  u: Array
  v: Array
  v_l1: float = eqx.field(static=True)

  def __init__(self, channels: int, *, kernel_size: int = 5, spatial_dims: int = 2,
               n_init: float = 1.0, eta_init: float = 1.0, v_l1: float = 0.0, dtype=None):
    dtype, c = _float(dtype), check_int(channels, "channels", minimum=1)
    k = families.burg_module_kernel_size(kernel_size, n_init, eta_init, v_l1, spatial_dims)
    self.n, self.eta = jnp.full((c,), n_init, dtype), jnp.full((c,), eta_init, dtype)
    self.u = nonnegative_init(jnp.full((k,) * spatial_dims, 1.0 / k**spatial_dims), dtype=dtype)
    self.v = jnp.full((c, c), 1.0 / c, dtype)
    self.v_l1 = v_l1

  def penalty(self) -> Array:
    """``v_l1 * sum |v|``."""
    return self.v_l1 * families.burg_penalty(self.v)

  def __call__(self, x: Array, state=_NO_STATE, *, key=None):
    """``[x]_+^n / (eta^n + |v|^T (u * [x]_+^n))``."""
    _check_channels(self, "channels", self.n.shape[0], x)
    families.check_burg_input(x, self.u.ndim, one_example=True)
    y = families.learned_burg_norm(x[None], n=self.n, eta=self.eta, u=nonnegative(self.u),
                                   v=self.v, channel_axis=1)[0]
    return _out(y, x.dtype, state)


class CenterSurroundNorm(eqx.Module):
  """Pan et al.'s weighted normalization with centre and surround pools (``WN_s``) of one
  example, channels first, with their affine as ``weight`` and ``bias`` (equinox's names).

  Args:
    channels: the number of channels (the first axis).
    surround_dist, group_size, beta_min: `divnorm.families.center_surround_norm`'s.
    beta_init, gamma_init: the initial ``beta`` and the initial entries of ``gamma_k``,
      ``gamma_s`` (>= 0).
    use_weight, use_bias: learn the per-channel ``weight`` and ``bias``.
    dtype: the parameters' dtype (equinox's default: float32).

  >>> import jax.numpy as jnp
  >>> from divnorm import equinox as dqx
  >>> dqx.CenterSurroundNorm(16)(jnp.ones((16, 4, 4))).shape
  (16, 4, 4)
  """

  beta: Array
  gamma_k: Array
  gamma_s: Array
  weight: Array | None
  bias: Array | None
  surround_dist: int = eqx.field(static=True)
  group_size: int = eqx.field(static=True)
  beta_min: float = eqx.field(static=True)

  def __init__(self, channels: int, *, surround_dist: int = 1, group_size: int = 8,
               beta_min: float = 1e-6, beta_init: float = 1e-6, gamma_init: float = 1 / 16,
               use_weight: bool = True, use_bias: bool = True, dtype=None):
    dtype, c = _float(dtype), check_int(channels, "channels", minimum=1)
    families.check_center_surround_module(surround_dist, group_size, beta_min, beta_init,
                                          gamma_init, channels=c)

    def raw(shape, value):
      return nonnegative_init(jnp.full(shape, value), dtype=dtype)

    self.beta, self.gamma_k = raw((c,), beta_init), raw((group_size, c), gamma_init)
    self.gamma_s = raw((3, 3, c), gamma_init)
    self.weight = jnp.ones((c,), dtype) if use_weight else None
    self.bias = jnp.zeros((c,), dtype) if use_bias else None
    self.surround_dist, self.group_size, self.beta_min = surround_dist, group_size, beta_min

  def __call__(self, x: Array, state=_NO_STATE, *, key=None):
    """``x / sqrt(beta + beta_min + centre pool + surround pool) * weight + bias``."""
    families.check_image_input(x, "CenterSurroundNorm", one_example=True)
    _check_channels(self, "channels", self.beta.shape[0], x)
    y = families.center_surround_norm(
        x[None], beta=nonnegative(self.beta), gamma_k=nonnegative(self.gamma_k),
        gamma_s=nonnegative(self.gamma_s), surround_dist=self.surround_dist,
        group_size=self.group_size, beta_min=self.beta_min, channel_axis=1)[0]
    return _out(fs.affine(y, self.weight, self.bias, (0,)), x.dtype, state)


class GaussianNorm(eqx.Module):
  """Veerabadran et al.'s learned divisive normalization with Gaussian-initialized pools, of
  one example, channels first; the filterbank's order is drawn from `key`.

  Args:
    channels: the number of channels (the first axis).
    kernel_size: the odd width of the pools (``weights`` ``[k, k, C]``).
    sigma_init: the initial ``sigma`` of `divnorm.families.gaussian_norm` (every channel).
    offset: `divnorm.families.gaussian_norm`'s (>= 0).
    dtype: the parameters' dtype (equinox's default: float32).
    key: draws the filterbank's order.

  >>> import jax, jax.numpy as jnp
  >>> from divnorm import equinox as dqx
  >>> dqx.GaussianNorm(8, kernel_size=3, key=jax.random.key(0))(jnp.ones((8, 4, 4))).shape
  (8, 4, 4)
  """

  weights: Array
  sigma: Array
  offset: float = eqx.field(static=True)

  def __init__(self, channels: int, *, kernel_size: int = 5, sigma_init: float = 1.0,
               offset: float = 1e-5, dtype=None, key: jax.Array):
    dtype = _float(dtype)
    kernel_size = families.gaussian_module_kernel_size(kernel_size, sigma_init, offset,
                                                       channels)
    self.weights = families.gaussian_filterbank(channels, kernel_size, key).astype(dtype)
    self.sigma = jnp.full((channels,), sigma_init, dtype)
    self.offset = offset

  def __call__(self, x: Array, state=_NO_STATE, *, key=None):
    """``x^2 / (W * x^2 + sigma^2 + offset)``, per channel."""
    families.check_image_input(x, "GaussianNorm", one_example=True)
    _check_channels(self, "channels", self.sigma.shape[0], x)
    y = families.gaussian_norm(x[None], weights=self.weights, sigma=self.sigma,
                               offset=self.offset, channel_axis=1)[0]
    return _out(y, x.dtype, state)
