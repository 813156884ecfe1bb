r"""The divisive normalizations of neuroscience and image compression, in the unified formula.

Each preset is a few lines over `divnorm.normalize`'s formula (``y = v / (sigma^2 +
P_B[|v|^alpha])^epsilon``, no centering, ``P_B`` a weighted sum) with its paper's parameter
names; each docstring gives the formula, the source it was read from and the paper's
initialization. The divisor's constant is added to the pool as it is (`_pooled_divide`), not
passed as ``sigma = sqrt(constant)``, so gradients stay finite where it is 0. GDN and
IGDN are `divnorm.gdn.gdn` and `divnorm.gdn.igdn`.

| preset | v | pool P | exponents |
|---|---|---|---|
| `miller_norm` | ``a^2`` | exponential kernel along channels, sum | 1, ``beta`` |
| `burg_norm` | ``[x]_+^n`` | spatial kernel ``u`` x feature weights ``|v|``, sum | 1, 1 |
| `center_surround_norm` | ``x`` | channel groups (centre) + dilated surround, sum | 2, 1/2 |
| `gaussian_norm` | ``x^2`` | Gaussian-initialized depthwise kernel, sum | 1, 1 |
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from divnorm._src.checks import (
  Int,
  channel_axis_index,
  check_array,
  check_finite,
  check_input,
  check_int,
  check_key,
  check_nonnegative,
  check_odd,
  check_positive,
  is_concrete,
)
from divnorm._src.fields import Field
from divnorm._src.kernels import Kernel, Mixing, miller_width
from divnorm._src.reductions import stat_dtype
from divnorm._src.statistics import abs_power, scale
from divnorm._src.weighted_fields import WeightedField, resolve_weighted_field, weighted_sum


def _spatial(ndim: int, c: int) -> tuple[int, ...]:
  return tuple(a for a in range(1, ndim) if a != c)


# The checks of the hyperparameters (the functions' and, with "_init", their modules'): how
# each is checked, and what it is, for the error messages.
_ARGS = {
    "lamb": (check_positive, " (the decay length lambda of the pool along channels)"),
    "alpha": (check_nonnegative, " (the weight of the pool: a negative one can make the "
              "divisor k (1 + alpha / lambda S) negative)"),
    "beta": (check_finite, " (the exponent of the divisor)"),
    "k": (check_positive, " (the scale of the divisor k (1 + alpha / lambda S), which must "
          "stay > 0)"),
    "n": (check_positive, " (the exponent of the excitatory output E = [x]_+^n)"),
    "eta": (check_positive, " (the semi-saturation constant: eta^n is all of the divisor "
            "where the pool is 0)"),
    "v_l1": (check_nonnegative, " (the weight of the L1 penalty on v)"),
    "beta_min": (check_nonnegative, " (added under the square root to beta and the pools)"),
    "offset": (check_nonnegative, " (the constant added to the divisor; 1e-5 in their code)"),
    "sigma": (check_finite, " (sigma^2 is added to the divisor)"),
}
_CS_BETA = (check_nonnegative, " (added under the square root to beta_min and the pools)")
_CS_GAMMA = " (the {} weights: a negative one can make the square root's argument negative)"


def _check_value(value, name: str, check=None, hint: str = "", channels: int | None = None):
  """`check(value, name, hint)` (by default `_ARGS`'s, by `name` less an ``_init``), then
  `_check_shape`."""
  if check is None:
    check, hint = _ARGS[name.removesuffix("_init")]
  check(value, name, hint)
  _check_shape(value, name, hint, channels)


def _check_shape(value, name: str, hint: str = "", channels: int | None = None):
  """A ValueError unless `value` is a scalar or, when `channels` is given, a ``[channels]``
  vector."""
  shape = tuple(np.shape(value))
  if shape == () or (channels is not None and shape in ((1,), (channels,))):
    return
  want = "a scalar" if channels is None else f"a scalar or a vector of shape ({channels},)"
  raise ValueError(f"{name} of shape {shape} must be {want}{hint}.")


def _check_window(weights, name: str, context: str, shape: tuple[int, ...], c: int,
                  depthwise: bool) -> None:
  """`weights` of a window centred over the spatial axes of an input of `shape` (odd sizes),
  with a last dimension of one pool per channel (axis `c`) when `depthwise`."""
  spatial = _spatial(len(shape), c)
  if not spatial:
    raise ValueError(
        f"{context}: x of shape {shape} has no spatial axes for {name} to pool over; give x as "
        f"[B, H, W, C] (or [B, L, C]), channels at channel_axis.")
  got = tuple(np.shape(weights))
  want = len(spatial) + depthwise
  if len(got) != want or (depthwise and got[-1] != shape[c]):
    layout = ", ".join(["k"] * len(spatial)) + (f", C={shape[c]}" if depthwise else "")
    raise ValueError(
        f"{context}: {name} of shape {got} must be [{layout}]: one size per spatial axis "
        f"{spatial} of x{', then one pool per channel' if depthwise else ''}.")
  even = [n for n in got[:len(spatial)] if n % 2 == 0]
  if even:
    raise ValueError(
        f"{context}: {name} of shape {got} has even window sizes {even}; the pool is centred on "
        f"each position, so every size must be odd (pad with zeros to the next odd size).")


def miller_module_width(lamb_init, alpha_init, beta_init, k_init, width) -> int:
  """The MillerNorm modules' arguments checked; returns the kernel's width."""
  for name, value in (("lamb_init", lamb_init), ("alpha_init", alpha_init),
                      ("beta_init", beta_init), ("k_init", k_init)):
    _check_value(value, name)
  width = miller_width(float(lamb_init)) if width is None else width
  return check_odd(width, "width", context="MillerNorm", what="the kernel along channels")


def burg_module_kernel_size(kernel_size, n_init, eta_init, v_l1, spatial_dims=1) -> int:
  """The BurgNorm modules' arguments checked; returns the kernel's size."""
  for name, value in (("n_init", n_init), ("eta_init", eta_init), ("v_l1", v_l1)):
    _check_value(value, name)
  check_int(spatial_dims, "spatial_dims", minimum=1, context="BurgNorm")
  return check_odd(kernel_size, "kernel_size", context="BurgNorm", what="the spatial kernel u")


def check_center_surround_module(surround_dist, group_size, beta_min, beta_init,
                                 gamma_init, channels: int | None = None) -> None:
  """The CenterSurroundNorm modules' arguments checked (with `channels` where the
  constructor takes them)."""
  check_int(surround_dist, "surround_dist", minimum=1, context="CenterSurroundNorm")
  check_int(group_size, "group_size", minimum=1, context="CenterSurroundNorm")
  if channels is not None:
    check_channel_groups(channels, group_size, "CenterSurroundNorm", f"{channels} channels")
  _check_value(beta_min, "beta_min")
  _check_value(beta_init, "beta_init", *_CS_BETA)
  _check_value(gamma_init, "gamma_init", check_nonnegative,
               _CS_GAMMA.format("centre and surround pools'"))


def check_channel_groups(channels: int, group_size: int, context: str, what: str) -> None:
  """An error naming `what` (e.g. "x has 12 channels") unless `group_size` divides them."""
  if channels % group_size:
    raise ValueError(
        f"{context}: {what}, not a multiple of group_size={group_size} (the centre pool mixes "
        f"the channels of each group); pass a group_size that divides {channels}, e.g. "
        f"group_size={math.gcd(channels, group_size)}.")


def _gaussian_channels(channels, name: str, context: str) -> int:
  """`channels` (spelled `name`) as an int, a positive multiple of 4: four Gaussian widths."""
  channels = check_int(channels, name, minimum=1, context=context)
  if channels % 4:
    raise ValueError(f"{name}={channels} must be a multiple of 4 (four Gaussian widths).")
  return channels


def gaussian_module_kernel_size(kernel_size, sigma_init, offset, channels=None,
                                name: str = "channels") -> int:
  """The GaussianNorm modules' arguments checked (`channels`, a multiple of 4, as `name`);
  returns the kernel's size."""
  if channels is not None:
    _gaussian_channels(channels, name, "GaussianNorm")
  _check_value(sigma_init, "sigma_init")
  _check_value(offset, "offset")
  return check_odd(kernel_size, "kernel_size", context="GaussianNorm", what="the Gaussian pool")


def check_image_input(x, layer: str, one_example: bool = False) -> None:
  """GaussianNorm's and CenterSurroundNorm's modules learn 2-D pools: `x` is a batch of
  images (rank 4), or with `one_example` (equinox) one image (rank 3)."""
  rank = 3 if one_example else 4
  if jnp.ndim(x) != rank:
    takes = ("one example [channels, height, width]" if one_example else
             "[batch, height, width, channels] (or channels first)")
    function = {"GaussianNorm": "gaussian_norm", "CenterSurroundNorm": "center_surround_norm"}
    raise ValueError(f"{layer} learns 2-D pools: it takes {takes}, got x of shape "
                     f"{jnp.shape(x)}; for other ranks call divnorm.families."
                     f"{function[layer]} with pools of that rank.")


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


def _pooled_divide(v: jax.Array, field, constant, *, alpha=1.0, epsilon=1.0) -> jax.Array:
  """``v / (constant + P[|v|^alpha])^epsilon``, ``P`` the weighted sum over `field`:
  `divnorm.normalize` (no centering, ``pool="sum"``) with ``sigma^2 = constant``.

  The constant is added as it is: ``sigma = sqrt(constant)``, squared again in the core, has
  a NaN gradient where the constant is 0; here the gradients are finite there.
  """
  pool = weighted_sum(abs_power(v, alpha), resolve_weighted_field(field, v.shape))
  return scale(v, pool + constant, 0.0, epsilon)


def miller_norm(a: jax.Array, *, lamb, alpha, beta, k, width: Int | None = None,
                channel_axis: Int = -1) -> jax.Array:
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
    lamb: the decay length lambda, a scalar > 0 (learned in the paper; their CIFAR AlexNet
      starts at 2).
    alpha: the weight of the pool, a scalar >= 0 (learned; starts at 0.1, or 1 before batch
      norm).
    beta: the exponent, a scalar (learned; starts at 1).
    k: the overall scale, a scalar > 0 (learned; starts at 1).
    width: the kernel's width, odd; None is ``miller_width(lamb)`` (needs a concrete `lamb`;
      give it when `lamb` is learned: the width cannot follow lambda under ``jit``).
    channel_axis: the channel axis.

  Derivatives: every mode with a concrete `lamb` (its kernel is constants). With a traced
  one (a learned lambda: the MillerNorm layers'), reverse mode (``grad``, ``jacrev``);
  forward mode (``jvp``, ``jacfwd``, ``jax.hessian``) stops at the weighted sums' custom
  VJP, except along the last axis with at most 256 channels.

  Raises:
    TypeError: a hyperparameter that is not real numbers; a `width` that is not an int, or
      None with a traced `lamb`.
    ValueError: a concrete `lamb` or `k` <= 0, `alpha` < 0, a non-finite one, an array
      where a scalar goes, or an even or non-positive `width`.
  """
  for name, value in (("lamb", lamb), ("alpha", alpha), ("beta", beta), ("k", k)):
    _check_value(value, name)
  if width is None:
    if not is_concrete(lamb):
      raise TypeError(
          "miller_norm: lamb is traced (a learned lambda), so the kernel's width cannot "
          "follow it: pass a static width, e.g. width=miller_width(initial lamb).")
    width = miller_width(float(lamb))
  if is_concrete(lamb):  # a kernel of constants, which forward mode differentiates too
    lamb = float(lamb)
  return learned_miller_norm(a, lamb=lamb, alpha=alpha, beta=beta, k=k, width=width,
                             channel_axis=channel_axis)


def learned_miller_norm(a: jax.Array, *, lamb, alpha, beta, k, width: int,
                        channel_axis: int = -1) -> jax.Array:
  """`miller_norm` of the MillerNorm modules' learned scalars, whose values it leaves
  unchecked: they are unconstrained, as in the authors' code, and an eager call must give
  what a jitted one does when training carries one past `miller_norm`'s ranges."""
  a = check_input(a)
  c = channel_axis_index(channel_axis, a.ndim, "miller_norm")
  dt = stat_dtype(a.dtype)
  width = check_odd(width, "width", context="miller_norm", what="the kernel along channels")
  j = np.abs(np.arange(width) - width // 2)
  # A Python float `lamb` (`miller_norm`'s concrete one) makes the kernel constants; a learned
  # one makes it traced weights, whose sums have a custom VJP (reverse mode only).
  weights = (np.exp(-j / lamb).astype(dt) if isinstance(lamb, float) else
             jnp.exp(-jnp.asarray(j, dt) / _as(lamb, dt)))
  lamb, alpha, k = _as(lamb, dt), _as(alpha, dt), _as(k, dt)
  # k (1 + alpha / lambda S) = k + (k alpha / lambda) sum_j e^{-|j| / lambda} a_{c+j}^2: the
  # kernel's weights stay >= 0 whatever alpha training reaches
  t = jnp.square(a.astype(dt))
  pool = weighted_sum(t, resolve_weighted_field({c: Kernel(weights)}, t.shape))
  return scale(t, k + k * alpha / lamb * pool, 0.0, beta).astype(a.dtype)


def burg_norm(x: jax.Array, *, n, eta, u, v, channel_axis: Int = -1) -> jax.Array:
  r"""Learned divisive normalization of Burg et al. (PLoS Comput. Biol. 2021), Eq. 1.

  .. math::
      o_l = \frac{E_l}{\eta_l^{n_l} + \sum_k |v_{kl}| \sum_q u_q\, E_k(p + q)},
      \qquad E_k = [x_k]_+^{n_k}

  Each filter's output is rectified and exponentiated (its excitatory output ``E``) and
  divided by a semi-saturation constant ``eta^n`` plus a weighted sum of the excitatory
  outputs of all filters (Fig. 1), whose weights factorize into a spatial kernel ``u``
  and feature weights ``|v|``; the paper puts an L1 penalty on ``v`` (`burg_penalty`).
  The exponents are placed as in the authors' TensorFlow code
  (ecker-lab/burg2021_learning_divisive_normalization, ``DivisiveNetOutputNonlin``): ``n_k``
  of the pooled filter, ``eta_l^{n_l}``. Their model differs where this function leaves
  the choice to the caller: ``E`` is average-pooled (5x5, stride 1, divided by the entries
  inside the image) before the pool; ``u`` is one kernel per normalized filter and pool
  (1-2 pools summed), used as ``|u| / ||u||_F`` and dilated; ``n``, ``eta`` start near 1 and
  ``u``, ``v`` near 0, drawn at random. With ``u = ones((5, 5)) / 25`` this function is their
  main configuration away from the border (within 2 pixels of it, up to 47% off).

  Args:
    x: ``[B, H, W, C]`` (channels at `channel_axis`), the filters' linear outputs.
    n: exponents, ``[C]`` or a scalar (> 0).
    eta: semi-saturation constants, ``[C]`` or a scalar (> 0).
    u: the spatial kernel, ``[k_1, ..., k_d]`` (odd sizes, >= 0) over the spatial axes.
    v: feature weights ``[C, C]``; ``v[k, l]`` weighs filter k in the pool of filter l.
    channel_axis: the channel axis.

  Derivatives: reverse mode (``grad``, ``jacrev``, even of ``jacrev``); forward mode
  (``jvp``, ``jacfwd``, ``jax.hessian``) stops at the weighted sums' custom VJP, for which
  the `divnorm.kernels` module gives the reverse-mode ways to a Hessian.

  Raises:
    TypeError: an argument that is not real numbers.
    ValueError: a concrete `n` or `eta` <= 0, a negative `u`, a non-finite one, or a wrong
      shape (an even size of `u`; `n`, `eta` not ``[C]`` or a scalar; `v` not ``[C, C]``).
  """
  x = check_input(x)
  channels = x.shape[channel_axis_index(channel_axis, x.ndim, "burg_norm")]
  _check_value(n, "n", channels=channels)
  _check_value(eta, "eta", channels=channels)
  check_nonnegative(u, "u", " (the spatial kernel of the pool)")
  check_finite(v, "v", " (the feature weights, used as |v|)")
  return learned_burg_norm(x, n=n, eta=eta, u=u, v=v, channel_axis=channel_axis)


def learned_burg_norm(x: jax.Array, *, n, eta, u, v, channel_axis: int = -1) -> jax.Array:
  """`burg_norm` of the BurgNorm modules' learned parameters, whose values it leaves
  unchecked (their shapes it checks): ``n`` and ``eta`` are unconstrained, and an eager call
  must give what a jitted one does when training carries one past `burg_norm`'s ranges
  (``eta^n`` is ``|eta|^n`` there)."""
  x = check_input(x)
  c = channel_axis_index(channel_axis, x.ndim, "burg_norm")
  channels = x.shape[c]
  _check_shape(n, "n", channels=channels)
  _check_shape(eta, "eta", channels=channels)
  _check_window(u, "u", "burg_norm", x.shape, c, depthwise=False)
  if tuple(np.shape(v)) != (channels, channels):
    raise ValueError(f"burg_norm: v of shape {np.shape(v)} must be [C, C] = "
                     f"{(channels, channels)}: x has {channels} channels on axis {c}.")
  dt = stat_dtype(x.dtype)
  n = _per_channel(n, c, x.ndim, dt)
  e = abs_power(jnp.maximum(x.astype(dt), jnp.zeros((), dt)), n)
  field = {_spatial(x.ndim, c): Kernel(_as(u, dt)), c: Mixing(jnp.abs(_as(v, dt)).T)}
  semisaturation = abs_power(_per_channel(eta, c, x.ndim, dt), n)
  return _pooled_divide(e, field, semisaturation).astype(x.dtype)


def check_burg_input(x, spatial_dims: int, one_example: bool = False) -> None:
  """The `spatial_dims` BurgNorm modules (nnx, equinox): `x` has the spatial axes their
  kernel ``u`` has, besides its batch axis (none with `one_example`) and its channel axis.
  (linen's and haiku's take the rank of their first input, and check their parameters'.)"""
  got = jnp.ndim(x) - (1 if one_example else 2)
  if got != spatial_dims:
    fix = f"build it with spatial_dims={got}" if got >= 1 else "give x spatial axes"
    raise ValueError(
        f"BurgNorm was built with spatial_dims={spatial_dims}, but x of shape {jnp.shape(x)} "
        f"has {got} spatial axes besides its "
        f"{'channel axis' if one_example else 'batch and channel axes'}; {fix}.")


def burg_penalty(v) -> jax.Array:
  """Burg et al.'s L1 penalty on the feature weights: ``sum |v|`` (times their weight).

  Raises:
    TypeError: a `v` that is not real numbers.
  """
  return jnp.sum(jnp.abs(check_array(v, "v", " (the feature weights)")))


def group_mixing(gamma_k, group_size: Int) -> jax.Array:
  """The ``[C, C]`` block-diagonal mixing of Pan et al.'s centre pool from ``gamma_k``.

  ``gamma_k [group_size, C]`` (>= 0): entry ``[j, i]`` weighs channel j of i's group (a 1x1
  convolution per group, input j, output i).

  Raises:
    TypeError: a `gamma_k` that is not real numbers, a `group_size` that is not an int.
    ValueError: a concrete `gamma_k` negative or not finite, `group_size` < 1, or a shape
      that is not ``[group_size, C]`` with C a multiple of `group_size`.
  """
  group_size = check_int(group_size, "group_size", minimum=1, hint=" (channels per group)")
  check_nonnegative(gamma_k, "gamma_k", _CS_GAMMA.format("centre pool's"))
  gamma_k = jnp.asarray(gamma_k)
  size, channels = gamma_k.shape if gamma_k.ndim == 2 else (None, None)
  if size != group_size or channels % group_size:
    raise ValueError(
        f"gamma_k of shape {gamma_k.shape} must be [group_size={group_size}, C] with C a "
        f"multiple of {group_size}.")
  # full[i, m * size + j] = gamma_k[j, i] for every group m; keep i's own group.
  full = jnp.tile(gamma_k.T, (1, channels // size))
  same = np.equal.outer(np.arange(channels) // size, np.arange(channels) // size)
  return jnp.where(same, full, jnp.zeros((), full.dtype))


def center_surround_norm(x: jax.Array, *, beta, gamma_k, gamma_s, surround_dist: Int = 1,
                         group_size: Int = 8, beta_min: float = 1e-6,
                         channel_axis: Int = -1) -> jax.Array:
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
    beta: ``[C]`` (or a scalar), >= 0.
    gamma_k: ``[group_size, C]``, >= 0 (see `group_mixing`).
    gamma_s: ``[3, 3, C]`` (odd window sizes, one per spatial axis), >= 0; the centre entry
      is ignored.
    surround_dist: the dilation of the surround, an int >= 1.
    group_size: channels per centre group, an int >= 1.
    beta_min: added to beta, a scalar >= 0.
    channel_axis: the channel axis.

  Derivatives: reverse mode (``grad``, ``jacrev``, even of ``jacrev``); forward mode
  (``jvp``, ``jacfwd``, ``jax.hessian``) stops at the weighted sums' custom VJP, for which
  the `divnorm.kernels` module gives the reverse-mode ways to a Hessian.

  Raises:
    TypeError: an argument of the wrong kind (not real numbers; not an int).
    ValueError: a concrete negative or non-finite `beta`, `gamma_k`, `gamma_s` or
      `beta_min`, an int < 1, or a wrong shape (`gamma_s` even, or not one pool per channel).
  """
  x = check_input(x)
  c = channel_axis_index(channel_axis, x.ndim, "center_surround_norm")
  channels = x.shape[c]
  surround_dist = check_int(surround_dist, "surround_dist", minimum=1,
                            context="center_surround_norm")
  _check_value(beta, "beta", *_CS_BETA, channels=channels)
  _check_value(beta_min, "beta_min")
  check_nonnegative(gamma_s, "gamma_s", _CS_GAMMA.format("surround pool's"))
  _check_window(gamma_s, "gamma_s", "center_surround_norm", x.shape, c, depthwise=True)
  group_size = check_int(group_size, "group_size", minimum=1, hint=" (channels per group)")
  check_channel_groups(channels, group_size, "center_surround_norm",
                       f"x has {channels} channels on axis {c}")
  mixing = group_mixing(gamma_k, group_size)
  if mixing.shape[0] != channels:
    raise ValueError(f"center_surround_norm: gamma_k of shape {np.shape(gamma_k)} must be "
                     f"[group_size, C] = {(group_size, channels)}: x has {channels} channels "
                     f"on axis {c}.")
  dt = stat_dtype(x.dtype)
  xs = x.astype(dt)
  t = xs * xs
  gamma_s = _as(gamma_s, dt)
  ring = np.ones(gamma_s.shape[:-1], dt)
  ring[tuple(n // 2 for n in ring.shape)] = 0.0
  center = resolve_weighted_field({c: Mixing(mixing.astype(dt))}, x.shape)
  surround = {_spatial(x.ndim, c): Kernel(gamma_s * ring[..., None], surround_dist, c)}
  # The centre pool is a per-position constant beside the surround's, as sigma^2 would be.
  constant = (weighted_sum(t, center) + _per_channel(beta, c, x.ndim, dt)
              + np.asarray(beta_min, dt))
  return _pooled_divide(xs, surround, constant, alpha=2.0, epsilon=0.5).astype(x.dtype)


def gaussian_filterbank(channels: Int, size: Int, key: jax.Array) -> jax.Array:
  """Veerabadran et al.'s initial pools: ``[size, size, channels]`` 2-D Gaussians.

  On ``linspace(-1, 1, size)^2`` with standard deviations 0.5, 1, 2 and 3 (a quarter of the
  channels each; `channels` a multiple of 4), each scaled to a centre weight of 1, in an
  order drawn from `key` (their ``get_gaussian_filterbank`` permutes them at random); `size`
  odd.

  Raises:
    TypeError: `channels` or `size` not an int.
    ValueError: `channels` not a positive multiple of 4; `size` even or < 1.
  """
  channels = _gaussian_channels(channels, "channels", "gaussian_filterbank")
  size = check_odd(size, "size", context="gaussian_filterbank", what="each Gaussian")
  grid = np.linspace(-1.0, 1.0, size)
  r2 = grid[:, None] ** 2 + grid[None, :] ** 2
  bank = np.concatenate([np.repeat(np.exp(-r2 / (2 * s * s))[..., None], channels // 4, -1)
                         for s in (0.5, 1.0, 2.0, 3.0)], axis=-1)
  return jnp.asarray(bank)[..., jax.random.permutation(check_key(key), channels)]


def gaussian_norm(x: jax.Array, *, weights, sigma, offset: float = 1e-5,
                  channel_axis: Int = -1) -> jax.Array:
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
    weights: ``[k, k, C]`` (odd k), one pool per channel, any finite numbers: >= 0 at
      initialization, learned unconstrained as in their code (a negative weight can make the
      divisor negative or 0).
    sigma: ``[C]`` or a scalar.
    offset: the constant their code adds (1e-5), a scalar >= 0.
    channel_axis: the channel axis.

  Derivatives: reverse mode (``grad``, ``jacrev``, even of ``jacrev``); forward mode
  (``jvp``, ``jacfwd``, ``jax.hessian``) stops at the weighted sums' custom VJP, for which
  the `divnorm.kernels` module gives the reverse-mode ways to a Hessian.

  Raises:
    TypeError: an argument that is not real numbers.
    ValueError: a concrete non-finite `weights` or `sigma`, a negative `offset`, or a wrong
      shape (`weights` even, or not one pool per channel; `sigma` not ``[C]`` or a scalar).
  """
  x = check_input(x)
  c = channel_axis_index(channel_axis, x.ndim, "gaussian_norm")
  check_finite(weights, "weights", " (the pools' weights)")
  _check_window(weights, "weights", "gaussian_norm", x.shape, c, depthwise=True)
  _check_value(sigma, "sigma", channels=x.shape[c])
  _check_value(offset, "offset")
  dt = stat_dtype(x.dtype)
  t = jnp.square(x.astype(dt))
  # Resolved here, past a field's check of nonnegative weights: these are learned
  # unconstrained, so an eager call gives what a jitted one does (the window is checked).
  field = WeightedField(Field((), ()), ((_spatial(x.ndim, c), Kernel(_as(weights, dt), 1, c)),))
  constant = jnp.square(_per_channel(sigma, c, x.ndim, dt)) + np.asarray(offset, dt)
  return _pooled_divide(t, field, constant).astype(x.dtype)
