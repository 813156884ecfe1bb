"""The functions under test: divnorm presets, their flax.linen equivalents, and baselines.

Every contender is a function ``f(x) -> y`` of one array (flax variables are created once
and bound; they are per-feature vectors, small enough to close over). Affine parts are
off on both sides, epsilon is ``sigma ** 2`` on both sides.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import divnorm

SIGMA = 0.1  # presets: flax epsilon = 0.01
DN_SIGMA = 0.5  # the paper's CIFAR DN

Fn = Callable[[jax.Array], jax.Array]


def copy(x):
  """The memory floor: read the input once, write an output once."""
  return x * np.asarray(2, x.dtype)


def _flax(module: nn.Module, x_shape, *, mutable=False) -> Fn:
  variables = module.init(jax.random.key(0), jnp.zeros(x_shape, jnp.float32))
  if mutable:
    def f(x):
      y, updates = module.apply(variables, x, mutable=["batch_stats"])
      return y, updates
  else:
    def f(x):
      return module.apply(variables, x)
  return f


def divnorm_presets(shape: tuple[int, ...], *, fast_variance=None) -> dict[str, Fn]:
  """Preset name -> divnorm function for inputs of `shape` (`fast_variance`: BN/LN/IN/GN)."""
  stats = divnorm.batch_stats_init(shape)

  def bn(x):
    return divnorm.batch_norm(x, stats, training=True, sigma=SIGMA, fast_variance=fast_variance)

  out: dict[str, Fn] = {"BN": bn}
  out["LN"] = functools.partial(divnorm.layer_norm, reduction_axes=tuple(range(1, len(shape))),
                                sigma=SIGMA, fast_variance=fast_variance)
  if len(shape) >= 3:
    out["IN"] = functools.partial(divnorm.instance_norm, sigma=SIGMA,
                                  fast_variance=fast_variance)
  out["GN"] = functools.partial(divnorm.group_norm, num_groups=_groups(shape), sigma=SIGMA,
                                fast_variance=fast_variance)
  out["RMS"] = functools.partial(divnorm.rms_norm, sigma=SIGMA)
  return out


def _groups(shape) -> int:
  return 8 if shape[-1] % 8 == 0 else 1


def flax_presets(shape: tuple[int, ...], *, use_fast_variance: bool = True) -> dict[str, Fn]:
  """Preset name -> flax.linen equivalent for inputs of `shape`, in one variance mode.

  ``use_fast_variance=True`` is flax's default (one-pass); False is its two-pass mode, the
  like-for-like partner of divnorm's two-pass statistics. RMS has no mean (no mode).
  """
  eps = SIGMA**2
  ln_axes = tuple(range(1, len(shape)))
  fast = {"use_fast_variance": use_fast_variance}
  out: dict[str, Fn] = {}
  out["BN"] = _flax(nn.BatchNorm(use_running_average=False, epsilon=eps, use_scale=False,
                                 use_bias=False, **fast), shape, mutable=True)
  out["LN"] = _flax(nn.LayerNorm(epsilon=eps, reduction_axes=ln_axes, use_scale=False,
                                 use_bias=False, **fast), shape)
  if len(shape) >= 3:
    out["IN"] = _flax(nn.InstanceNorm(epsilon=eps, use_scale=False, use_bias=False, **fast),
                      shape)
  out["GN"] = _flax(nn.GroupNorm(num_groups=_groups(shape), epsilon=eps, use_scale=False,
                                 use_bias=False, **fast), shape)
  out["RMS"] = _flax(nn.RMSNorm(epsilon=eps, use_scale=False), shape)
  return out


def presets(shape: tuple[int, ...]) -> dict[str, tuple[Fn, Fn]]:
  """Preset name -> (divnorm function, flax.linen equivalent) for inputs of `shape`."""
  ours, theirs = divnorm_presets(shape), flax_presets(shape)
  return {name: (ours[name], theirs[name]) for name in ours}


def flax_two_pass(shape: tuple[int, ...]) -> dict[str, Fn]:
  """flax.linen with ``use_fast_variance=False`` (two-pass, as divnorm), for reference."""
  return flax_presets(shape, use_fast_variance=False)


# ---- divisive norm: divnorm against the paper's way ------------------------------------

def _box_conv(t, width: int, spatial: int):
  """Zero-padded box mean by a ones-kernel convolution (the paper's TF code)."""
  kernel = jnp.full((width,) * spatial + (1, 1), 1.0 / width**spatial, t.dtype)
  dims = ("NHWC", "HWIO", "NHWC") if spatial == 2 else ("NWC", "WIO", "NWC")
  return lax.conv_general_dilated(t, kernel, (1,) * spatial, "SAME", dimension_numbers=dims)


def _box_reduce_window(t, width: int, spatial: int):
  """Zero-padded box mean by one N-D ``reduce_window``."""
  dims = (1,) + (width,) * spatial + (1,)
  s = lax.reduce_window(t, np.zeros((), t.dtype), lax.add, dims, (1,) * t.ndim, "SAME")
  return s * np.asarray(1.0 / width**spatial, t.dtype)


def _paper_dn(x, *, width: int, box) -> jax.Array:
  """renmengye/div-norm's DN: channel mean, box, center, channel mean of v^2, box."""
  if x.ndim == 2:  # [B, D]: the window runs over D
    t = x[..., None]
    mean = box(t, width, 1)
    v = t - mean
    var = box(v * v, width, 1)
    return (v * lax.rsqrt(var + DN_SIGMA**2))[..., 0]
  spatial = x.ndim - 2
  mean = box(jnp.mean(x, axis=-1, keepdims=True), width, spatial)
  v = x - mean
  var = box(jnp.mean(v * v, axis=-1, keepdims=True), width, spatial)
  return v * lax.rsqrt(var + DN_SIGMA**2)


def divisive(shape: tuple[int, ...], width: int) -> dict[str, Fn]:
  """Divisive norm (CNN: width x width across all channels; [B, D]: width over D) ways."""
  out = {
      "DN": functools.partial(divnorm.divisive_norm, summation_window=width, sigma=DN_SIGMA),
      "DN zeros": functools.partial(divnorm.divisive_norm, summation_window=width,
                                    sigma=DN_SIGMA, border="zeros"),
      "paper conv": functools.partial(_paper_dn, width=width, box=_box_conv),
  }
  if len(shape) > 2:
    out["reduce_window 2-D"] = functools.partial(_paper_dn, width=width,
                                                 box=_box_reduce_window)
  return out


# ---- forward and forward+backward ------------------------------------------------------

def _first(out):
  return out[0] if isinstance(out, tuple) else out


def forward(f: Fn) -> Callable:
  """``jit(f)``; takes ``(x, w)`` (w unused) so every contender has one signature."""
  return jax.jit(lambda x, w: f(x))


def forward_backward(f: Fn) -> Callable:
  """``jit(grad(<f(x), w>))`` for a fixed random `w` of the shape of ``f(x)``."""
  def loss(x, w):
    return jnp.sum(_first(f(x)) * w)
  return jax.jit(jax.grad(loss))
