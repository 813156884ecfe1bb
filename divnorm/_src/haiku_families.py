"""Haiku modules of the divisive normalization families (`divnorm._src.families`; also in
`divnorm.haiku`).

Parameter names and initializations are those of `divnorm._src.linen_families`; as haiku's
layers, the parameters are in the input's dtype unless `param_dtype` says otherwise, and
the channel axis is haiku's `data_format`'s. GDN itself is `divnorm.haiku.GDN`.
"""

from __future__ import annotations

import jax.numpy as jnp

from divnorm._src import families
from divnorm._src import flax_semantics as fs
from divnorm._src.checks import channel_axis_index
from divnorm._src.haiku import hk
from divnorm._src.nonnegative import nonnegative, nonnegative_init


class _Family(hk.Module):
  """The base: the channel axis of haiku's `data_format`, and parameters in `param_dtype`
  (None: the input's dtype)."""

  def __init__(self, data_format: str, param_dtype, name: str | None):
    super().__init__(name=name)
    self.channel_index, self.param_dtype = hk.get_channel_index(data_format), param_dtype

  @hk.transparent  # a helper of __call__: no scope or summary entry of its own
  def _channel(self, x) -> tuple[int, int]:
    """``(axis, size)`` of `x`'s channel axis, or an error naming the layer."""
    c = channel_axis_index(self.channel_index, jnp.ndim(x), type(self).__name__)
    return c, jnp.shape(x)[c]

  @hk.transparent
  def _dtype(self, x):
    """The parameters' dtype: `param_dtype`, or the input's (haiku's convention)."""
    return fs.result_dtype(x) if self.param_dtype is None else self.param_dtype

  @hk.transparent
  def _param(self, name: str, x, value):
    """The parameter `name`, initialized to the array `value`."""
    value = jnp.asarray(value)
    return hk.get_parameter(name, value.shape, self._dtype(x),
                            init=lambda _, dtype: value.astype(dtype))


class MillerNorm(_Family):
  """Miller et al.'s divisive feature normalization (ICLR 2022), `miller_norm`; parameters
  ``lamb``, ``alpha``, ``beta``, ``k`` (learned scalars), as `divnorm.linen.MillerNorm`.

  Args:
    lamb_init, alpha_init, beta_init, k_init, width: as in `divnorm.linen.MillerNorm`.
    data_format: ``"channels_last"`` or ``"channels_first"``.

  >>> import haiku as hk, jax, jax.numpy as jnp
  >>> from divnorm import haiku as dhk
  >>> f = hk.transform(lambda x: dhk.MillerNorm()(x))
  >>> jax.tree.map(jnp.shape, f.init(jax.random.key(0), jnp.ones((1, 4, 4, 32))))
  {'miller_norm': {'alpha': (), 'beta': (), 'k': (), 'lamb': ()}}
  """

  def __init__(self, lamb_init: float = 2.0, alpha_init: float = 0.1, beta_init: float = 1.0,
               k_init: float = 1.0, width: int | None = None,
               data_format: str = "channels_last", param_dtype=None, name: str | None = None):
    super().__init__(data_format, param_dtype, name)
    self.width = families.miller_module_width(lamb_init, alpha_init, beta_init, k_init, width)
    self.inits = dict(lamb=lamb_init, alpha=alpha_init, beta=beta_init, k=k_init)

  def __call__(self, a):
    """``a^2 / (k (1 + alpha / lambda sum_j a_{c+j}^2 e^{-|j| / lambda}))^beta``."""
    c, _ = self._channel(a)
    p = {n: self._param(n, a, jnp.asarray(v)) for n, v in self.inits.items()}
    return families.learned_miller_norm(a, **p, width=self.width, channel_axis=c)


class BurgNorm(_Family):
  """Burg et al.'s learned divisive normalization (PLoS Comput. Biol. 2021), `burg_norm`;
  parameters ``n``, ``eta`` ``[C]``, ``u`` (raw, nonnegative through the
  reparameterization) and ``v`` ``[C, C]`` (used as ``|v|``), as `divnorm.linen.BurgNorm`.
  ``penalty()`` (called inside the same transform, after the layer) is ``v_l1 * sum |v|``.

  Args:
    kernel_size, n_init, eta_init, v_l1: as in `divnorm.linen.BurgNorm`.
    data_format: ``"channels_last"`` or ``"channels_first"``.

  >>> import haiku as hk, jax, jax.numpy as jnp
  >>> from divnorm import haiku as dhk
  >>> f = hk.transform(lambda x: dhk.BurgNorm(kernel_size=3)(x))
  >>> jax.tree.map(jnp.shape, f.init(jax.random.key(0), jnp.ones((1, 4, 4, 8))))
  {'burg_norm': {'eta': (8,), 'n': (8,), 'u': (3, 3), 'v': (8, 8)}}
  """

  def __init__(self, kernel_size: int = 5, n_init: float = 1.0, eta_init: float = 1.0,
               v_l1: float = 0.0, data_format: str = "channels_last", param_dtype=None,
               name: str | None = None):
    super().__init__(data_format, param_dtype, name)
    self.kernel_size = families.burg_module_kernel_size(kernel_size, n_init, eta_init, v_l1)
    self.n_init, self.eta_init, self.v_l1 = n_init, eta_init, v_l1

  def __call__(self, x):
    """``[x]_+^n / (eta^n + |v|^T (u * [x]_+^n))``."""
    c, channels = self._channel(x)
    k, spatial = self.kernel_size, jnp.ndim(x) - 2
    self.channels = channels  # for `penalty`
    u = nonnegative_init(jnp.full((k,) * spatial, 1.0 / k**spatial))
    return families.learned_burg_norm(
        x, n=self._param("n", x, jnp.full((channels,), self.n_init)),
        eta=self._param("eta", x, jnp.full((channels,), self.eta_init)),
        u=nonnegative(self._param("u", x, u)),
        v=self._param("v", x, jnp.full((channels, channels), 1.0 / channels)), channel_axis=c)

  def penalty(self):
    """``v_l1 * sum |v|``, the paper's L1 penalty on ``v``."""
    if getattr(self, "channels", None) is None:
      raise ValueError("BurgNorm.penalty() reads the parameter v, which the layer creates at "
                       "its first call: call the layer on its input first.")
    return self.v_l1 * families.burg_penalty(hk.get_parameter("v", (self.channels,) * 2))


class CenterSurroundNorm(_Family):
  """Pan et al.'s weighted normalization with centre and surround pools (``WN_s``, 2021);
  parameters ``beta`` ``[C]``, ``gamma_k`` ``[group_size, C]``, ``gamma_s`` ``[3, 3, C]``
  (nonnegative through the reparameterization), then the affine ``scale`` and ``offset``
  (haiku's name for flax's ``bias``), as `divnorm.linen.CenterSurroundNorm`.

  Args:
    surround_dist, group_size, beta_min, beta_init, gamma_init: as in
      `divnorm.linen.CenterSurroundNorm`.
    create_scale, create_offset: learn the per-channel ``scale`` and ``offset``.
    data_format: ``"channels_last"`` or ``"channels_first"``.

  >>> import haiku as hk, jax, jax.numpy as jnp
  >>> from divnorm import haiku as dhk
  >>> f = hk.transform(lambda x: dhk.CenterSurroundNorm()(x))
  >>> jax.tree.map(jnp.shape, f.init(jax.random.key(0), jnp.ones((1, 4, 4, 16))))
  {'center_surround_norm': {'beta': (16,), 'gamma_k': (8, 16), 'gamma_s': (3, 3, 16), 'offset': (16,), 'scale': (16,)}}
  """

  def __init__(self, surround_dist: int = 1, group_size: int = 8, beta_min: float = 1e-6,
               beta_init: float = 1e-6, gamma_init: float = 1 / 16,
               create_scale: bool = True, create_offset: bool = True,
               data_format: str = "channels_last", param_dtype=None, name: str | None = None):
    super().__init__(data_format, param_dtype, name)
    families.check_center_surround_module(surround_dist, group_size, beta_min, beta_init,
                                          gamma_init)
    self.surround_dist, self.group_size, self.beta_min = surround_dist, group_size, beta_min
    self.beta_init, self.gamma_init = beta_init, gamma_init
    self.create_scale, self.create_offset = create_scale, create_offset

  def __call__(self, x):
    """``x / sqrt(beta + beta_min + centre pool + surround pool) * scale + offset``."""
    families.check_image_input(x, "CenterSurroundNorm")
    c, channels = self._channel(x)
    raw = lambda name, shape, value: nonnegative(self._param(  # noqa: E731
        name, x, nonnegative_init(jnp.full(shape, value))))
    y = families.center_surround_norm(
        x, beta=raw("beta", (channels,), self.beta_init),
        gamma_k=raw("gamma_k", (self.group_size, channels), self.gamma_init),
        gamma_s=raw("gamma_s", (3, 3, channels), self.gamma_init),
        surround_dist=self.surround_dist, group_size=self.group_size, beta_min=self.beta_min,
        channel_axis=c)
    scale = self._param("scale", x, jnp.ones((channels,))) if self.create_scale else None
    offset = self._param("offset", x, jnp.zeros((channels,))) if self.create_offset else None
    return fs.affine(y, scale, offset, (c,)).astype(fs.result_dtype(x, scale, offset))


class GaussianNorm(_Family):
  """Veerabadran et al.'s learned divisive normalization with Gaussian-initialized pools;
  parameters ``weights`` ``[k, k, C]`` (`gaussian_filterbank`, from haiku's parameter key)
  and ``sigma`` ``[C]``, as `divnorm.linen.GaussianNorm`.

  Args:
    kernel_size, sigma_init, offset: as in `divnorm.linen.GaussianNorm`.
    data_format: ``"channels_last"`` or ``"channels_first"``.

  >>> import haiku as hk, jax, jax.numpy as jnp
  >>> from divnorm import haiku as dhk
  >>> f = hk.transform(lambda x: dhk.GaussianNorm(kernel_size=3)(x))
  >>> jax.tree.map(jnp.shape, f.init(jax.random.key(0), jnp.ones((1, 4, 4, 8))))
  {'gaussian_norm': {'sigma': (8,), 'weights': (3, 3, 8)}}
  """

  def __init__(self, kernel_size: int = 5, sigma_init: float = 1.0, offset: float = 1e-5,
               data_format: str = "channels_last", param_dtype=None, name: str | None = None):
    super().__init__(data_format, param_dtype, name)
    self.kernel_size = families.gaussian_module_kernel_size(kernel_size, sigma_init, offset)
    self.sigma_init, self.offset = sigma_init, offset

  def __call__(self, x):
    """``x^2 / (W * x^2 + sigma^2 + offset)``, per channel."""
    families.check_image_input(x, "GaussianNorm")
    c, channels = self._channel(x)
    k = self.kernel_size
    weights = hk.get_parameter("weights", (k, k, channels), self._dtype(x),
                               init=lambda s, d: families.gaussian_filterbank(
                                   channels, k, hk.next_rng_key()).astype(d))
    return families.gaussian_norm(
        x, weights=weights, sigma=self._param("sigma", x, jnp.full((channels,), self.sigma_init)),
        offset=self.offset, channel_axis=c)
