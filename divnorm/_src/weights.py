"""Weight normalizers: functions of a kernel (wrappers are in `linen_extra`, `nnx_extra` and
`equinox_weights`, which call the math of flax's and equinox's wrappers at the end of this
file).

| function                | source                    | kernel used by the layer          |
|-------------------------|---------------------------|-----------------------------------|
| weight_norm             | Salimans & Kingma (2016)  | ``g * v / ||v||`` per output unit |
| spectral_norm           | Miyato et al. (2018)      | ``W / sigma_max(W)`` (power iteration) |
| weight_standardization  | Qiao et al. (2019)        | ``(W - mean) / std`` per output unit |

Kernels follow Flax's layout: the output features are the last axis (`feature_axes`).
The norm, mean and standard deviation reduce every other axis; ``feature_axes=None`` (or
``()``), as Flax's WeightNorm takes it, makes the whole kernel one unit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from divnorm._src import flax_semantics as fs
from divnorm._src.checks import (
  Int,
  check_array,
  check_broadcasts,
  check_floating_dtype,
  check_input,
  check_int,
  check_key,
  check_nonnegative,
  check_scalar,
  is_concrete,
)
from divnorm._src.core import normalize
from divnorm._src.fields import resolve_axes, resolve_field
from divnorm._src.reductions import field_sum, stat_dtype
from divnorm._src.statistics import overflow_to_nan

Axes = int | Sequence[int] | None


def _reduction(kernel, feature_axes: Axes):
  features = () if feature_axes is None else resolve_axes(feature_axes, kernel.ndim,
                                                           role="feature_axes")
  reduction = tuple(a for a in range(kernel.ndim) if a not in features)
  if not reduction:
    raise ValueError(
        f"feature_axes={feature_axes!r} covers every axis of the kernel of shape "
        f"{kernel.shape}; leave at least one axis to normalize over (Flax kernels: -1).")
  feature_shape = tuple(kernel.shape[a] for a in features)
  return resolve_field(reduction, kernel.ndim), features, feature_shape


def kernel_norm(kernel: jax.Array, *, feature_axes: Axes = -1) -> jax.Array:
  """L2 norm of `kernel` per output feature: shape of the `feature_axes`."""
  kernel = check_input(kernel, "kernel")
  field, _, feature_shape = _reduction(kernel, feature_axes)
  k = kernel.astype(stat_dtype(kernel.dtype))
  return jnp.sqrt(field_sum(k * k, field)).reshape(feature_shape)


def weight_norm(v: jax.Array, g: jax.Array, *, feature_axes: Axes = -1,
                epsilon: float = 1e-12) -> jax.Array:
  """Weight normalization (Salimans & Kingma, 2016): ``w = g * v / ||v||``.

  Args:
    v: the direction, a kernel (output features on `feature_axes`).
    g: the length, shape of the feature axes (``weight_norm_init`` gives ``||v||``,
      so the layer starts from its original kernel).
    feature_axes: axes of the output features; the norm reduces the others.
    epsilon: added to ``||v||^2`` so a zero direction gives a zero kernel, not NaN.

  Returns:
    ``w`` with the shape and dtype of `v`.
  """
  v = check_input(v, "v")
  check_nonnegative(epsilon, "epsilon", " (added to ||v||^2)")
  field, _, feature_shape = _reduction(v, feature_axes)
  g = check_array(g, "g", " (the length of each output unit's weights)")
  if g.shape != feature_shape:
    raise ValueError(
        f"g has shape {g.shape} but the kernel of shape {v.shape} has output features "
        f"{feature_shape}; create it with kernel_norm(v, feature_axes={feature_axes!r}).")
  dt = stat_dtype(v.dtype)
  v32 = v.astype(dt)
  sq = field_sum(v32 * v32, field)
  epsilon = check_broadcasts(epsilon, sq.shape, "epsilon", "the norms' shape")
  r = lax.rsqrt(overflow_to_nan(sq + jnp.asarray(epsilon).astype(dt)))
  w = v32 * r * g.astype(dt).reshape(sq.shape)
  return w.astype(v.dtype)


def weight_norm_init(kernel: jax.Array, *, feature_axes: Axes = -1):
  """``(v, g)`` with ``weight_norm(v, g) == kernel``: ``v = kernel``, ``g = ||kernel||``."""
  return kernel, kernel_norm(kernel, feature_axes=feature_axes)


def _as_matrix(w: jax.Array, feature_axes: Axes) -> jax.Array:
  """`w` as ``[inputs, outputs]``, the output features flattened last."""
  _, features, feature_shape = _reduction(w, feature_axes)
  rest = tuple(a for a in range(w.ndim) if a not in features)
  return jnp.transpose(w, rest + features).reshape(-1, int(np.prod(feature_shape)))


def spectral_norm_init(kernel: jax.Array, key: jax.Array, *, feature_axes: Axes = -1,
                       dtype=jnp.float32) -> jax.Array:
  """A random unit vector ``u`` over the kernel's (flattened) output features."""
  _, _, feature_shape = _reduction(check_input(kernel, "kernel"), feature_axes)
  dtype = check_floating_dtype(dtype, "dtype", context="spectral_norm_init",
                               hint=" give one, e.g. jnp.float32.")
  u = jax.random.normal(check_key(key), (int(np.prod(feature_shape)),), dtype)
  return u / jnp.linalg.norm(u)


def spectral_norm(
    w: jax.Array,
    u: jax.Array,
    *,
    n_steps: Int = 1,
    feature_axes: Axes = -1,
    epsilon: float = 1e-12,
):
  """Spectral normalization (Miyato et al., 2018): ``W / sigma_max(W)``.

  `sigma_max` is estimated by `n_steps` of power iteration on ``W [inputs, outputs]``
  started from `u` (the state; pass the returned ``u`` back in next step), as Miyato's
  Algorithm 1 and flax's SpectralNorm: each step takes ``v = W u / |W u|``, then
  ``u = W^T v / |W^T v|``, and ``sigma = v^T W u`` pairs the last ``v`` with the new ``u``.
  The iteration runs under ``stop_gradient``; ``sigma`` carries the gradient. With
  ``n_steps=0``, ``v`` comes from `u` as passed and ``sigma = |W u|``.

  Args:
    w: a kernel; its `feature_axes` are the matrix's columns, the rest its rows.
    u: the right singular vector estimate, ``[prod(feature shape)]``.
    n_steps: power iterations this call (>= 1 in training; 0 reuses `u` as is).
    feature_axes: the kernel's output axes.
    epsilon: keeps the vector normalizations finite.

  Returns:
    ``(w_sn, new_u, sigma)``: the normalized kernel (shape and dtype of `w`), the
    updated `u` and the float32-or-wider estimate of the largest singular value. A zero
    kernel (sigma 0) comes back unchanged, as from flax's SpectralNorm, and keeps `u`.
  """
  w = check_input(w, "w")
  n_steps = check_int(n_steps, "n_steps", minimum=0, context="spectral_norm",
                      hint=" (power iterations per call)")
  check_nonnegative(epsilon, "epsilon", " (keeps the vector normalizations finite)")
  check_scalar(epsilon, "epsilon", "one number")
  dt = stat_dtype(w.dtype)
  mat = _as_matrix(w.astype(dt), feature_axes)
  u = check_array(u, "u", " (the singular vector estimate from spectral_norm_init)")
  if u.shape != (mat.shape[1],):
    raise ValueError(
        f"u has shape {u.shape} but the kernel of shape {w.shape} has {mat.shape[1]} output "
        f"features; create it with spectral_norm_init(kernel, key).")
  if is_concrete(u) and u.size and not np.any(np.asarray(u)):
    raise ValueError("u is all zeros, from which power iteration never leaves; create it "
                     "with spectral_norm_init(kernel, key), a random unit vector.")
  eps = jnp.asarray(epsilon).astype(dt)

  def unit(a):
    return a * lax.rsqrt(overflow_to_nan(jnp.sum(a * a) + eps))

  m = lax.stop_gradient(mat)
  u = start = u.astype(dt)
  v = unit(m @ u)
  for step in range(n_steps):  # Miyato's Algorithm 1: v from the last u, then u from v
    v = v if step == 0 else unit(m @ u)
    u = unit(m.T @ v)
  u = jnp.where(jnp.any(u != 0), u, start)  # a zero kernel keeps u (it would be 0 for good)
  u, v = lax.stop_gradient(u), lax.stop_gradient(v)
  sigma = v @ (mat @ u)
  w_sn = w.astype(dt) / jnp.where(sigma != 0, sigma, jnp.ones((), dt))  # 0: w, as flax
  return w_sn.astype(w.dtype), u, sigma


def weight_standardization(w: jax.Array, *, feature_axes: Axes = -1, sigma=0.0) -> jax.Array:
  """Weight standardization (Qiao et al., 2019): ``(W - mean) / sqrt(sigma^2 + var)``.

  The unified normalizer applied to the kernel: A = B = every axis but the output
  features, with the biased variance. ``sigma**2`` is the paper's epsilon under the square
  root of its standard deviation (Eq. 5); the authors' PyTorch code divides by the unbiased
  standard deviation plus 1e-5 instead, which no `sigma` reproduces.
  """
  w = check_input(w, "w")
  field, _, _ = _reduction(w, feature_axes)
  return normalize(w, field, sigma=sigma)


# ---- the math of flax's weight wrappers (`divnorm.linen`, `divnorm.nnx`) ------------------


def l2_normalized(value, scale, *, feature_axes, epsilon, dtype) -> jax.Array:
  """Flax's WeightNorm of one variable: ``scale * value / sqrt(sum(value^2) + epsilon)``,
  the sum over the axes not in `feature_axes` (None: every axis), in at least float32."""
  value = jnp.asarray(value)
  features = fs.canonical_axes(feature_axes, value.ndim, "feature_axes")
  reduction = tuple(a for a in range(value.ndim) if a not in features)
  v = value.astype(stat_dtype(fs.result_dtype(value, scale)))
  sq = jnp.sum(v * v, axis=reduction, keepdims=True) + jnp.asarray(epsilon, v.dtype)
  w = v * lax.rsqrt(overflow_to_nan(sq))
  return fs.affine(w, scale, None, features).astype(fs.result_dtype(value, scale, dtype=dtype))


def matrix_shape(value, error_on_non_matrix: bool,
                 subject: str = "Input") -> tuple[int, int] | None:
  """The matrix flax's SpectralNorm views a weight as, or None for a scalar or vector.
  `subject` begins the error, as flax's (linen: "Input"; nnx: "Layer instance parameter")."""
  shape = jnp.shape(value)
  if len(shape) > 2 and error_on_non_matrix:
    raise ValueError(f"{subject} is {len(shape)}D but error_on_non_matrix is True; pass "
                     f"error_on_non_matrix=False to flatten its leading axes into rows.")
  return (math.prod(shape[:-1]), shape[-1]) if len(shape) > 1 else None


def spectral_normalized(value, u, *, n_steps: int, epsilon, dtype):
  """Flax's SpectralNorm of one weight: ``(value / sigma, new u, sigma)``: `n_steps` power
  iterations from ``u`` ``[1, out]`` under ``stop_gradient``; ``sigma = v W u^T``. The new
  ``u`` and ``sigma`` are in `u`'s dtype, the state's (a jitted step never retraces)."""
  value = jnp.asarray(value)
  mat = value.reshape(matrix_shape(value, False)).astype(stat_dtype(fs.result_dtype(value, u)))
  eps = jnp.asarray(epsilon, mat.dtype)  # traced too (haiku's eps)
  u0 = jnp.asarray(u).astype(mat.dtype)
  for _ in range(n_steps):
    v0 = u0 @ mat.T
    v0 = v0 * lax.rsqrt(overflow_to_nan(jnp.sum(v0 * v0) + eps))
    u0 = v0 @ mat
    u0 = u0 * lax.rsqrt(overflow_to_nan(jnp.sum(u0 * u0) + eps))
  u0, v0 = lax.stop_gradient(u0), lax.stop_gradient(v0)
  sigma = (v0 @ mat @ u0.T)[0, 0]
  w = (mat / jnp.where(sigma != 0, sigma, jnp.ones((), mat.dtype))).reshape(value.shape)
  state = jnp.asarray(u).dtype
  return w.astype(fs.result_dtype(value, u, dtype=dtype)), u0.astype(state), sigma.astype(state)


# ---- the math of equinox's SpectralNorm (`divnorm.equinox`) ------------------------------


def row_spectral_normalized(weight, u, v, *, n_steps: int, epsilon):
  """Equinox's SpectralNorm of one weight: ``(weight / sigma, u, v)``. The weight is viewed
  as ``W [shape[0], -1]``; `n_steps` power iterations ``u = W v / max(eps, |W v|)``,
  ``v = W^T u / max(eps, |W^T u|)`` run under ``stop_gradient``; ``sigma = u^T W v``. In at
  least float32; ``u`` and ``v`` come back in their own dtypes (the state's)."""
  weight = jnp.asarray(weight)
  dt = stat_dtype(weight.dtype)
  mat = weight.reshape(weight.shape[0], -1).astype(dt)
  fixed, eps = lax.stop_gradient(mat), np.asarray(epsilon, dt)

  def unit(a):
    return a / jnp.maximum(eps, jnp.sqrt(overflow_to_nan(jnp.sum(a * a))))

  u1, v1 = jnp.asarray(u).astype(dt), jnp.asarray(v).astype(dt)
  for _ in range(n_steps):
    u1 = unit(fixed @ v1)
    v1 = unit(fixed.T @ u1)
  u1, v1 = lax.stop_gradient(u1), lax.stop_gradient(v1)
  w = (mat / (u1 @ mat @ v1)).reshape(weight.shape).astype(weight.dtype)
  return w, u1.astype(jnp.asarray(u).dtype), v1.astype(jnp.asarray(v).dtype)
