"""Flax linen modules of the divisive normalization families (`divnorm._src.families`).

Each module owns its paper's parameters, under its paper's names and initializations, and
calls the functional preset. Nonnegative weights that the authors kept nonnegative (by a
constraint or an absolute value) are stored raw and used through GDN's reparameterization
(`divnorm.gdn.nonnegative`), as `divnorm.linen.GDN` does; the others are plain parameters, as in
the authors' code. GDN itself is `divnorm.linen.GDN`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax  # noqa: F401  (the docstring examples use it)
import jax.numpy as jnp

from divnorm._src import families
from divnorm._src import flax_semantics as fs
from divnorm._src.checks import channel_axis_index
from divnorm._src.nonnegative import nonnegative, nonnegative_init

Dtype = Any


def _channels(x, axis: int, name: str) -> int:
  """The size of `x`'s channel axis `axis`, or an error naming `name`'s channel_axis."""
  return jnp.shape(x)[channel_axis_index(axis, jnp.ndim(x), name)]


class MillerNorm(nn.Module):
  """Miller et al.'s divisive feature normalization (ICLR 2022), `miller_norm`.

  Parameters ``lamb``, ``alpha``, ``beta`` and ``k`` (scalars, learned and unconstrained, as
  in the authors' code), initialized as their CIFAR AlexNet's (2, 0.1, 1, 1). Apply it after
  the ReLU. The kernel's width is fixed at ``miller_width(lamb_init)`` (17 channels for 2);
  a `width` given must be odd. ``lamb_init``, ``k_init`` > 0 and ``alpha_init`` >= 0, as
  `miller_norm` requires of them.

  Args:
    lamb_init, alpha_init, beta_init, k_init: the initial ``lamb``, ``alpha``, ``beta``, ``k``
      of `divnorm.families.miller_norm`.
    width: `divnorm.families.miller_norm`'s (None: ``miller_width(lamb_init)``).
    channel_axis: the channel axis.
    param_dtype: the parameters' dtype.

  >>> m = MillerNorm()
  >>> jax.tree.map(jnp.shape, m.init(jax.random.key(0), jnp.ones((1, 4, 4, 32))))
  {'params': {'alpha': (), 'beta': (), 'k': (), 'lamb': ()}}
  """

  lamb_init: float = 2.0
  alpha_init: float = 0.1
  beta_init: float = 1.0
  k_init: float = 1.0
  width: int | None = None
  channel_axis: int = -1
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, a):
    """``a^2 / (k (1 + alpha / lambda sum_j a_{c+j}^2 e^{-|j| / lambda}))^beta``."""
    def scalar(name, value):
      return self.param(name, lambda _: jnp.asarray(value, self.param_dtype))
    width = families.miller_module_width(self.lamb_init, self.alpha_init, self.beta_init,
                                         self.k_init, self.width)
    return families.learned_miller_norm(
        a, lamb=scalar("lamb", self.lamb_init), alpha=scalar("alpha", self.alpha_init),
        beta=scalar("beta", self.beta_init), k=scalar("k", self.k_init), width=width,
        channel_axis=self.channel_axis)


class BurgNorm(nn.Module):
  """Burg et al.'s learned divisive normalization (PLoS Comput. Biol. 2021), `burg_norm`.

  Parameters: exponents ``n`` and semi-saturation constants ``eta`` ``[C]``, a spatial
  kernel ``u`` (raw, nonnegative through the reparameterization) and feature weights ``v``
  ``[C, C]`` (used as ``|v|``). `v_l1` > 0 sows ``v_l1 * sum |v|`` into ``"losses"`` (the
  paper's L1 penalty on v; sum them with `divnorm.linen.apply_with_penalty`). The
  initializations are ours and draw nothing (the authors' code draws ``n``, ``eta`` near 1
  and ``u``, ``v`` near 0): ``n = 1``, ``eta = 1``, ``u`` a box mean, ``v = 1 / C`` (every
  filter pools every filter alike).
  `kernel_size` is odd; ``n_init``, ``eta_init`` > 0 and `v_l1` >= 0.

  Args:
    kernel_size: the odd width of the spatial kernel ``u`` along each spatial axis.
    n_init, eta_init: the initial ``n`` and ``eta`` of `divnorm.families.burg_norm` (> 0).
    v_l1: the weight of the L1 penalty on ``v`` (>= 0; 0: none).
    channel_axis: the channel axis.
    param_dtype: the parameters' dtype.

  >>> b = BurgNorm(kernel_size=3)
  >>> jax.tree.map(jnp.shape, b.init(jax.random.key(0), jnp.ones((1, 4, 4, 8))))
  {'params': {'eta': (8,), 'n': (8,), 'u': (3, 3), 'v': (8, 8)}}
  """

  kernel_size: int = 5
  n_init: float = 1.0
  eta_init: float = 1.0
  v_l1: float = 0.0
  channel_axis: int = -1
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    """``[x]_+^n / (eta^n + |v|^T (u * [x]_+^n))``."""
    c = _channels(x, self.channel_axis, "BurgNorm")
    k = families.burg_module_kernel_size(self.kernel_size, self.n_init, self.eta_init,
                                         self.v_l1)
    spatial = jnp.ndim(x) - 2
    n = self.param("n", lambda _: jnp.full((c,), self.n_init, self.param_dtype))
    eta = self.param("eta", lambda _: jnp.full((c,), self.eta_init, self.param_dtype))
    u = self.param("u", lambda _: nonnegative_init(
        jnp.full((k,) * spatial, 1.0 / k**spatial), dtype=self.param_dtype))
    v = self.param("v", lambda _: jnp.full((c, c), 1.0 / c, self.param_dtype))
    if self.v_l1:
      self.sow("losses", "l1_v", self.v_l1 * families.burg_penalty(v),
               reduce_fn=lambda _, new: new)
    return families.learned_burg_norm(x, n=n, eta=eta, u=nonnegative(u), v=v,
                                      channel_axis=self.channel_axis)


class CenterSurroundNorm(nn.Module):
  """Pan et al.'s weighted normalization with centre and surround pools (``WN_s``, 2021).

  Parameters as in their code: ``beta`` ``[C]`` (init 1e-6), ``gamma_k`` ``[8, C]`` and
  ``gamma_s`` ``[3, 3, C]`` (init 1/16), kept nonnegative (their code clips; here the
  reparameterization), then their learned affine, under flax's names ``scale`` (their
  ``gamma_outside``, init 1) and ``bias`` (``beta_outside``, init 0). ``beta_init``,
  ``gamma_init`` and `beta_min` are >= 0; `surround_dist` and `group_size` ints >= 1.

  Args:
    surround_dist, group_size, beta_min: `divnorm.families.center_surround_norm`'s.
    beta_init, gamma_init: the initial ``beta`` and the initial entries of ``gamma_k``,
      ``gamma_s`` (>= 0).
    use_scale, use_bias: learn the per-channel ``scale`` and ``bias``.
    channel_axis: the channel axis.
    param_dtype: the parameters' dtype.

  >>> cs = CenterSurroundNorm()
  >>> jax.tree.map(jnp.shape, cs.init(jax.random.key(0), jnp.ones((1, 4, 4, 16))))
  {'params': {'beta': (16,), 'bias': (16,), 'gamma_k': (8, 16), 'gamma_s': (3, 3, 16), 'scale': (16,)}}
  """

  surround_dist: int = 1
  group_size: int = 8
  beta_min: float = 1e-6
  beta_init: float = 1e-6
  gamma_init: float = 1 / 16
  use_scale: bool = True
  use_bias: bool = True
  channel_axis: int = -1
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    """``x / sqrt(beta + beta_min + centre pool + surround pool) * scale + bias``."""
    families.check_image_input(x, "CenterSurroundNorm")
    c = _channels(x, self.channel_axis, "CenterSurroundNorm")
    families.check_center_surround_module(self.surround_dist, self.group_size, self.beta_min,
                                          self.beta_init, self.gamma_init)
    def raw(name, shape, value):
      return nonnegative(self.param(name, lambda _: nonnegative_init(
          jnp.full(shape, value), dtype=self.param_dtype)))
    y = families.center_surround_norm(
        x, beta=raw("beta", (c,), self.beta_init),
        gamma_k=raw("gamma_k", (self.group_size, c), self.gamma_init),
        gamma_s=raw("gamma_s", (3, 3, c), self.gamma_init), surround_dist=self.surround_dist,
        group_size=self.group_size, beta_min=self.beta_min, channel_axis=self.channel_axis)
    scale = self.param("scale", nn.initializers.ones, (c,), self.param_dtype) if (
        self.use_scale) else None
    bias = self.param("bias", nn.initializers.zeros, (c,), self.param_dtype) if (
        self.use_bias) else None
    axis = channel_axis_index(self.channel_axis, jnp.ndim(x), "CenterSurroundNorm")
    return fs.affine(y, scale, bias, (axis,)).astype(fs.result_dtype(x, scale, bias))


class GaussianNorm(nn.Module):
  """Veerabadran et al.'s learned divisive normalization with Gaussian-initialized pools.

  Parameters as in their code: ``weights`` ``[k, k, C]`` (their ``div`` convolution,
  depthwise, initialized by `gaussian_filterbank` from the parameter key; learned
  unconstrained) and ``sigma`` ``[C]`` (init 1). `kernel_size` is odd; `offset` >= 0.

  Args:
    kernel_size: the odd width of the pools (``weights`` ``[k, k, C]``).
    sigma_init: the initial ``sigma`` of `divnorm.families.gaussian_norm` (every channel).
    offset: `divnorm.families.gaussian_norm`'s (>= 0).
    channel_axis: the channel axis.
    param_dtype: the parameters' dtype.

  >>> g = GaussianNorm(kernel_size=3)
  >>> jax.tree.map(jnp.shape, g.init(jax.random.key(0), jnp.ones((1, 4, 4, 8))))
  {'params': {'sigma': (8,), 'weights': (3, 3, 8)}}
  """

  kernel_size: int = 5
  sigma_init: float = 1.0
  offset: float = 1e-5
  channel_axis: int = -1
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    """``x^2 / (W * x^2 + sigma^2 + offset)``, per channel."""
    families.check_image_input(x, "GaussianNorm")
    c = _channels(x, self.channel_axis, "GaussianNorm")
    k = families.gaussian_module_kernel_size(self.kernel_size, self.sigma_init, self.offset)
    weights = self.param("weights", lambda key: families.gaussian_filterbank(
        c, k, key).astype(self.param_dtype))
    sigma = self.param("sigma", lambda _: jnp.full((c,), self.sigma_init, self.param_dtype))
    return families.gaussian_norm(x, weights=weights, sigma=sigma, offset=self.offset,
                                  channel_axis=self.channel_axis)
