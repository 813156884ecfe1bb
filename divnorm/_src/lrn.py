"""Local response normalization across channels (Krizhevsky et al., 2012).

    b_c = a_c / (k + alpha / n * sum_{c' = c - n//2}^{c + (n - 1)//2} a_{c'}^2) ** beta

This is ``torch.nn.LocalResponseNorm(size=n, alpha, beta, k)``: the window of `size`
channels is zero padded, and `alpha` is divided by `size`. AlexNet's constants
(``k=2, n=5, alpha=1e-4, beta=0.75``) leave alpha undivided: pass ``alpha=5e-4`` for them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from divnorm._src.checks import Int, axis_index, check_broadcasts, check_input, check_lrn_args
from divnorm._src.reductions import stat_dtype, window_sum


def local_response_norm(
    x: ArrayLike,
    *,
    size: Int,
    alpha: ArrayLike = 1e-4,
    beta: ArrayLike = 0.75,
    k: ArrayLike = 1.0,
    channel_axis: Int = -1,
) -> jax.Array:
  """Local response normalization across channels, as in ``torch.nn.LocalResponseNorm``.

  Args:
    x: ``[B, ..., C]`` with channels at `channel_axis` (rank >= 2).
    size: number of neighbouring channels summed, an int >= 1 (odd is centered; an even
      window, as in torch, reaches ``size // 2`` channels back and ``size // 2 - 1``
      forward; wider than the channels, the window is zero padded).
    alpha: multiplicative factor (>= 0), divided by `size` (torch's convention). Like
      `beta` and `k`, a Python, NumPy or JAX number, or traced.
    beta: exponent (>= 0).
    k: additive constant (>= 0); with ``k = 0`` an all-zero window divides 0 by 0.
    channel_axis: the channel axis.

  Returns:
    An array of the shape and dtype of `x`; the sum runs in float32 or wider.
  """
  x = check_input(x)
  if x.ndim < 2:
    raise ValueError(f"local_response_norm needs [batch, ..., channels], got shape {x.shape}.")
  c = axis_index(channel_axis, x.ndim, "channel_axis", context="local_response_norm")
  size = check_lrn_args(size, alpha, beta, k)
  dt = stat_dtype(x.dtype)
  sq = jnp.square(x.astype(dt))
  if size % 2:
    total = window_sum(sq, ((c, size),))
  else:
    # torch's even window [i - n/2, i + n/2 - 1] is the centered window of width n - 1
    # plus the entry n/2 back (zero before the first channel).
    half = size // 2
    pad = [(0, 0)] * x.ndim
    pad[c] = (half, 0)
    back = lax.slice_in_dim(jnp.pad(sq, pad), 0, x.shape[c], axis=c)
    total = window_sum(sq, ((c, size - 1),)) + back
  k, alpha, beta = (jnp.asarray(check_broadcasts(a, x.shape, name)).astype(dt)
                    for a, name in ((k, "k"), (alpha, "alpha"), (beta, "beta")))
  base = k + alpha / size * total
  return (x.astype(dt) * base ** (-beta)).astype(x.dtype)
