"""Weight normalizers: functions of a kernel (wrappers are in `linen_extra` and `nnx`).

| function                | source                    | kernel used by the layer          |
|-------------------------|---------------------------|-----------------------------------|
| weight_norm             | Salimans & Kingma (2016)  | ``g * v / ||v||`` per output unit |
| spectral_norm           | Miyato et al. (2018)      | ``W / sigma_max(W)`` (power iteration) |
| weight_standardization  | Qiao et al. (2019)        | ``(W - mean) / std`` per output unit |

Kernels follow Flax's layout: the output features are the last axis (`feature_axes`).
The norm, mean and standard deviation reduce every other axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from divnorm._src.checks import check_array, check_input, check_int, check_nonnegative
from divnorm._src.core import normalize
from divnorm._src.fields import resolve_field
from divnorm._src.reductions import field_sum, stat_dtype

Axes = int | Sequence[int]


def _reduction(kernel, feature_axes: Axes):
  features = resolve_field(feature_axes, kernel.ndim, role="feature_axes").whole
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
  bshape = sq.shape
  w = v32 * lax.rsqrt(sq + jnp.asarray(epsilon).astype(dt)) * g.astype(dt).reshape(bshape)
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
  u = jax.random.normal(key, (int(np.prod(feature_shape)),), dtype)
  return u / jnp.linalg.norm(u)


def spectral_norm(
    w: jax.Array,
    u: jax.Array,
    *,
    n_steps: int = 1,
    feature_axes: Axes = -1,
    epsilon: float = 1e-12,
):
  """Spectral normalization (Miyato et al., 2018): ``W / sigma_max(W)``.

  `sigma_max` is estimated by `n_steps` of power iteration on ``W [inputs, outputs]``
  started from `u` (the state; pass the returned ``u`` back in next step). The
  iteration runs under ``stop_gradient``; ``sigma = v^T W u`` carries the gradient.

  Args:
    w: a kernel; its `feature_axes` are the matrix's columns, the rest its rows.
    u: the right singular vector estimate, ``[prod(feature shape)]``.
    n_steps: power iterations this call (>= 1 in training; 0 reuses `u` as is).
    feature_axes: the kernel's output axes.
    epsilon: keeps the vector normalizations finite.

  Returns:
    ``(w_sn, new_u, sigma)``: the normalized kernel (shape and dtype of `w`), the
    updated `u` and the float32-or-wider estimate of the largest singular value.
  """
  w = check_input(w, "w")
  n_steps = check_int(n_steps, "n_steps", minimum=0, context="spectral_norm",
                      hint=" (power iterations per call)")
  check_nonnegative(epsilon, "epsilon", " (keeps the vector normalizations finite)")
  dt = stat_dtype(w.dtype)
  mat = _as_matrix(w.astype(dt), feature_axes)
  u = check_array(u, "u", " (the singular vector estimate from spectral_norm_init)")
  if u.shape != (mat.shape[1],):
    raise ValueError(
        f"u has shape {u.shape} but the kernel of shape {w.shape} has {mat.shape[1]} output "
        f"features; create it with spectral_norm_init(kernel, key).")
  eps = jnp.asarray(epsilon).astype(dt)

  def unit(a):
    return a * lax.rsqrt(jnp.sum(a * a) + eps)

  m = lax.stop_gradient(mat)
  u = u.astype(dt)
  v = unit(m @ u)
  for _ in range(n_steps):
    u = unit(m.T @ v)
    v = unit(m @ u)
  u, v = lax.stop_gradient(u), lax.stop_gradient(v)
  sigma = v @ (mat @ u)
  w_sn = w.astype(dt) / sigma
  return w_sn.astype(w.dtype), u, sigma


def weight_standardization(w: jax.Array, *, feature_axes: Axes = -1, sigma=0.0) -> jax.Array:
  """Weight standardization (Qiao et al., 2019): ``(W - mean) / sqrt(sigma^2 + var)``.

  The unified normalizer applied to the kernel: A = B = every axis but the output
  features. The paper adds 1e-5 to the standard deviation; ``sigma`` is its smoothing in
  the form used throughout divnorm.
  """
  w = check_input(w, "w")
  field, _, _ = _reduction(w, feature_axes)
  return normalize(w, field, sigma=sigma)
