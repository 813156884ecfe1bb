"""Weighted window sums along axes, and the weight that exists at each position.

``kernel_sum`` is the weighted counterpart of `reductions.window_sum` (a box): entry ``i``
of the result is ``sum_k w_k t[i + k d]`` over the taps of a `Kernel`, zero past the border
(a correlation, as flax's ``Conv``: the kernel is not flipped). ``mixing_sum`` applies a
`Mixing` matrix along one axis; ``full_mass`` is a kernel's whole weight.

Forms, chosen by measurement on XLA's CPU backend (2 cores; BENCHMARKS.md, "Weighted
fields"): a 1-D kernel along the minor (last) axis of at most `BANDED_MAX` entries is a
matmul with a banded matrix (XLA's dot, whose transpose is a dot too); every other kernel
is a sum of shifted slices of the input, padded once. A depthwise convolution
(``lax.conv_general_dilated`` with ``feature_group_count``) was 5-60x slower than either.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.export import is_symbolic_dim

from divnorm._src.kernels import Kernel, Mixing, tap_weight, taps

# Statistics are sums in float32 or wider: no TF32 or bf16 passes on GPUs and TPUs.
HIGHEST = lax.Precision.HIGHEST

# The longest minor axis along which a 1-D kernel is a banded matmul (cost O(n) per
# entry, against O(width) for shifted slices); measured faster up to 64 channels, slower at
# 800 hidden units.
BANDED_MAX = 256


def _along_shape(k: Kernel, ndim: int) -> tuple[int, ...] | None:
  if k.along is None:
    return None
  shape = [1] * ndim
  shape[k.along] = np.shape(k.weights)[-1]
  return tuple(shape)


def _weight(k: Kernel, index, ndim: int, dtype):
  w = tap_weight(k, index, dtype)
  shape = _along_shape(k, ndim)
  return w if shape is None else jnp.reshape(w, shape)


def _band(k: Kernel, n: int, dtype):
  """``B[j, i]``: the weight of entry j in the sum at entry i, so that ``sum = t @ B``."""
  h = k.window[0] // 2
  d = np.arange(n)[:, None] - np.arange(n)[None, :]  # j - i
  tap = d // k.dilation + h
  hit = (d % k.dilation == 0) & (tap >= 0) & (tap < k.window[0])
  index = np.where(hit, tap, 0)
  if k.static:
    return np.where(hit, np.asarray(k.weights, dtype)[index], 0.0).astype(dtype)
  w = jnp.asarray(k.weights).astype(dtype)
  return jnp.where(hit, w[index], jnp.zeros((), dtype))


def kernel_sum(t: jax.Array, axes: tuple[int, ...], k: Kernel) -> jax.Array:
  """``sum_k w_k t[i + k d]`` along `axes` (one per kernel dimension), zero past the border.

  Args:
    t: a floating array (the weights are cast to its dtype).
    axes: non-negative axes of `t`, as many as ``k.ndim``.
    k: the kernel; with ``k.along`` its weights differ along that axis of `t`.

  Returns:
    An array of the shape of `t`.
  """
  dt = t.dtype
  if (len(axes) == 1 and axes[0] == t.ndim - 1 and k.along is None
          and not is_symbolic_dim(t.shape[-1]) and t.shape[-1] <= BANDED_MAX):
    return jnp.matmul(t, _band(k, t.shape[-1], dt), precision=HIGHEST)
  if k.static:
    return _shifted_sum(t, axes, k)
  weights = jnp.asarray(k.weights).astype(dt)
  return _learned_sum(t, weights, axes, k.dilation, k.along)


def _padded_slices(t: jax.Array, axes, k: Kernel):
  """``(index, t shifted by the tap's offset)`` per tap, zero past the border."""
  pads = [(0, 0)] * t.ndim
  for axis, n in zip(axes, k.window, strict=True):
    reach = (n // 2) * k.dilation
    pads[axis] = (reach, reach)
  padded = jnp.pad(t, pads)
  for index, offset in taps(k):
    start = [0] * t.ndim
    for axis, o in zip(axes, offset, strict=True):
      start[axis] = pads[axis][0] + o
    yield index, lax.slice(padded, start, [s + n for s, n in zip(start, t.shape, strict=True)])


def _shifted_sum(t: jax.Array, axes, k: Kernel) -> jax.Array:
  total = None
  for index, term in _padded_slices(t, axes, k):
    if not (k.static and k.along is None and k.weights[index] == 1):
      term = _weight(k, index, t.ndim, t.dtype) * term
    total = term if total is None else total + term
  return jnp.zeros_like(t) if total is None else total


# A learned kernel's weight gradient, sum over the other axes of g * (t shifted), is one
# multi-operand reduce that reads g and t once (XLA's CPU backend ran the taps' separate
# reductions 2.5x slower: 5x5 per channel, 100x32x32x32, 76 against 31 ms).
@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _learned_sum(t, weights, axes, dilation, along):
  return _shifted_sum(t, axes, Kernel(weights, dilation, along))


def _learned_sum_fwd(t, weights, axes, dilation, along):
  return _learned_sum(t, weights, axes, dilation, along), (t, weights)


def _learned_sum_bwd(axes, dilation, along, res, g):
  t, weights = res
  window = tuple(range(len(axes)))
  # The transpose of a correlation is the correlation with the kernel flipped.
  dt = _shifted_sum(g, axes, Kernel(jnp.flip(weights, window), dilation, along))
  products = tuple(g * term for _, term in _padded_slices(t, axes, Kernel(weights, dilation,
                                                                           along)))
  kept = () if along is None else (along,)
  reduced = tuple(a for a in range(t.ndim) if a not in kept)
  zero = np.zeros((), t.dtype)
  sums = lax.reduce(products, (zero,) * len(products),
                    lambda p, q: tuple(a + b for a, b in zip(p, q, strict=True)), reduced)
  return dt, jnp.stack(sums).reshape(weights.shape).astype(weights.dtype)


_learned_sum.defvjp(_learned_sum_fwd, _learned_sum_bwd)


def mixing_sum(t: jax.Array, axis: int, m: Mixing) -> jax.Array:
  """``sum_j M[i, j] t_j`` along `axis`."""
  matrix = (np.asarray(m.matrix, t.dtype) if isinstance(m.matrix, np.ndarray)
            else jnp.asarray(m.matrix).astype(t.dtype))
  if axis == t.ndim - 1:
    return jnp.matmul(t, matrix.T, precision=HIGHEST)
  return jnp.moveaxis(jnp.tensordot(t, matrix, axes=([axis], [1]), precision=HIGHEST), -1,
                     axis)


def apply(t: jax.Array, axes: tuple[int, ...], op: Kernel | Mixing) -> jax.Array:
  """`kernel_sum` or `mixing_sum` of `t`."""
  if isinstance(op, Mixing):
    return mixing_sum(t, axes[0], op)
  return kernel_sum(t, axes, op)


def full_mass(shape: tuple[int, ...], axes: tuple[int, ...], op: Kernel, dtype) -> jax.Array:
  """The whole weight of kernel `op`, in and past the border, broadcastable to `shape`."""
  w = op.weights if op.static else jnp.asarray(op.weights)
  window_axes = tuple(range(op.ndim))
  total = (np.sum(np.asarray(w, dtype), axis=window_axes) if op.static
           else jnp.sum(w.astype(dtype), axis=window_axes))
  out_shape = _along_shape(op, len(shape)) or (1,) * len(shape)
  return jnp.reshape(total, out_shape)
