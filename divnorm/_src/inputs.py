"""Input normalization transforms: ``fit(data, axes) -> stats``, ``apply(x, stats)``, ``invert``.

| transform      | apply                                   | invert |
|----------------|-----------------------------------------|--------|
| min_max        | ``a + (x - min) (b - a) / (max - min)`` | yes    |
| standardize    | ``(x - mean) / sqrt(var + epsilon)``    | yes    |
| center         | ``x - mean``                            | yes    |
| unit_length    | ``x / ||x||_p`` (p = 1 or 2)           | no     |
| pca            | ``(x - mean) V`` (decorrelation)        | yes    |
| zca            | ``(x - mean) V diag(1/sqrt(l + eps)) V^T`` | yes |

Each is a `Transform` of three functions, e.g. ``stats = zca.fit(data, axes=0,
epsilon=1e-5); white = zca.apply(x, stats)``. `axes` are the sample axes the statistics
reduce (keepdims, so `apply` broadcasts over them). For `pca` and `zca` they must be the
leading axes; the remaining axes are the features (flattened into one vector). Means and
variances come from the core (`moments`), covariances are biased (1/n), as
in the survey's decorrelation and sphering transforms.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from divnorm._src.checks import (
  Int,
  broadcasts_to,
  check_finite,
  check_input,
  check_int,
  check_nonnegative,
  describe,
  is_concrete,
)
from divnorm._src.fields import Field, resolve_axes, resolve_field
from divnorm._src.reductions import field_sum, stat_dtype
from divnorm._src.statistics import moments, scale

Axes = int | Sequence[int]


class Transform(NamedTuple):
  """A fitted-statistics transform: ``fit``, ``apply`` and ``invert`` (None if lossy)."""

  fit: Callable
  apply: Callable
  invert: Callable | None


def _samples(data, axes: Axes, name: str) -> tuple[jax.Array, Field]:
  """`data` checked, and its sample axes: a field of whole axes with at least one entry."""
  data = check_input(data, "data")
  field = Field(resolve_axes(axes, data.ndim, role="axes"), ())
  if any(data.shape[a] == 0 for a in field.whole):
    raise ValueError(
        f"{name}: data of shape {data.shape} has no samples on axes {field.whole}, so there "
        f"are no statistics to fit; fit on a non-empty data set.")
  return data, field


def _epsilon(epsilon, name: str):
  """A scalar smoothing term >= 0: a float when concrete, else the traced value."""
  check_nonnegative(epsilon, "epsilon", " (added to the variances)")
  if np.ndim(epsilon) != 0:
    raise ValueError(f"{name}: epsilon has shape {np.shape(epsilon)}; pass one number.")
  return float(epsilon) if is_concrete(epsilon) else epsilon


def _check_stats(stats, kind: type, transform: str, x: jax.Array | None = None,
                 name: str = "x"):
  """`stats` must be what `transform`'s fit returns, and (given `x`, the argument `name`)
  broadcast to `x`."""
  if not isinstance(stats, kind):
    raise TypeError(
        f"{transform}: stats must be the {kind.__name__} that {transform}.fit returns, got "
        f"{describe(stats)} ({type(stats).__name__}); e.g. stats = {transform}.fit(data).")
  if x is None:
    return
  shape = tuple(np.shape(stats[0]))
  if not (len(shape) == x.ndim and broadcasts_to(shape, x.shape)):
    raise ValueError(
        f"{transform}: {name} of shape {x.shape} does not match the fitted statistics of shape "
        f"{shape} (size 1 on the sample axes); apply the transform to data shaped like the "
        f"data it was fitted on.")


def _moments(data, axes: Axes, name: str):
  data, field = _samples(data, axes, name)
  mean, var, _ = moments(data, field, field)
  return data, field, mean, var


# ---- min-max ---------------------------------------------------------------------------


class MinMaxStats(NamedTuple):
  """Per-feature minimum and maximum, and the target range ``[low, high]``."""

  min: jax.Array
  max: jax.Array
  low: float
  high: float


def min_max_fit(data, axes: Axes = 0, *, feature_range: tuple[float, float] = (0.0, 1.0)):
  """Minimum and maximum of `data` over `axes`, to rescale into `feature_range`."""
  data, field = _samples(data, axes, "min_max.fit")
  if not isinstance(feature_range, tuple | list):
    raise TypeError(f"feature_range={describe(feature_range)} is not a pair; pass (a, b) with "
                    f"a < b, e.g. feature_range=(0.0, 1.0).")
  if len(feature_range) != 2:
    raise ValueError(f"feature_range={describe(feature_range)} has {len(feature_range)} "
                     f"entries; pass (a, b) with a < b, e.g. feature_range=(0.0, 1.0).")
  low, high = feature_range
  if np.ndim(low) or np.ndim(high):
    raise ValueError(f"feature_range has entries of shapes {np.shape(low)} and "
                     f"{np.shape(high)}; pass two numbers (a, b) with a < b.")
  check_finite(low, "feature_range[0]", " (the low end of the target range)")
  check_finite(high, "feature_range[1]", " (the high end of the target range)")
  if not float(low) < float(high):
    raise ValueError(f"feature_range={feature_range} must be (a, b) with a < b.")
  return MinMaxStats(jnp.min(data, axis=field.whole, keepdims=True),
                     jnp.max(data, axis=field.whole, keepdims=True), float(low), float(high))


def _span(stats: MinMaxStats, dt):
  span = (stats.max - stats.min).astype(dt)
  # A constant feature maps to `low` rather than to NaN.
  return jnp.where(span > 0, span, jnp.ones((), dt))


def min_max_apply(x, stats: MinMaxStats):
  """``low + (x - min) (high - low) / (max - min)``; constant features go to `low`."""
  x = check_input(x)
  _check_stats(stats, MinMaxStats, "min_max", x)
  dt = stat_dtype(x.dtype)
  y = stats.low + (x.astype(dt) - stats.min.astype(dt)) * ((stats.high - stats.low)
                                                            / _span(stats, dt))
  return y.astype(x.dtype)


def min_max_invert(y, stats: MinMaxStats):
  """The inverse of `min_max_apply` (exact unless a feature was constant)."""
  y = check_input(y, "y")
  _check_stats(stats, MinMaxStats, "min_max", y, "y")
  dt = stat_dtype(y.dtype)
  x = stats.min.astype(dt) + (y.astype(dt) - stats.low) * (_span(stats, dt)
                                                           / (stats.high - stats.low))
  return x.astype(y.dtype)


min_max = Transform(min_max_fit, min_max_apply, min_max_invert)


# ---- standardization and centering -----------------------------------------------------


class MeanVar(NamedTuple):
  """Per-feature mean and biased variance, and the smoothing `epsilon` (var + epsilon)."""

  mean: jax.Array
  var: jax.Array
  epsilon: float = 0.0


def standardize_fit(data, axes: Axes = 0, *, epsilon: float = 0.0) -> MeanVar:
  """Mean and variance of `data` over `axes` (the z-score's statistics)."""
  epsilon = _epsilon(epsilon, "standardize.fit")
  _, _, mean, var = _moments(data, axes, "standardize.fit")
  return MeanVar(mean, var, epsilon)


def standardize_apply(x, stats: MeanVar):
  """``(x - mean) / sqrt(var + epsilon)``; a constant feature gives 0, not NaN.

  A negative variance (stats written by hand or damaged) counts as 0.
  """
  x = check_input(x)
  _check_stats(stats, MeanVar, "standardize", x)
  dt = stat_dtype(x.dtype)
  v = x.astype(dt) - stats.mean.astype(dt)
  var = jnp.maximum(stats.var.astype(dt), jnp.zeros((), dt))
  return scale(v, var, jnp.sqrt(jnp.asarray(stats.epsilon).astype(dt))).astype(x.dtype)


def standardize_invert(y, stats: MeanVar):
  """``y * sqrt(var + epsilon) + mean`` (a negative variance counts as 0)."""
  y = check_input(y, "y")
  _check_stats(stats, MeanVar, "standardize", y, "y")
  dt = stat_dtype(y.dtype)
  var = jnp.maximum(stats.var.astype(dt), jnp.zeros((), dt))
  std = jnp.sqrt(var + jnp.asarray(stats.epsilon).astype(dt))
  return (y.astype(dt) * std + stats.mean.astype(dt)).astype(y.dtype)


standardize = Transform(standardize_fit, standardize_apply, standardize_invert)


class Mean(NamedTuple):
  """Per-feature mean."""

  mean: jax.Array


def center_fit(data, axes: Axes = 0) -> Mean:
  """Mean of `data` over `axes` (`moments`: around a shift, so an offset costs no digits)."""
  _, _, mean, _ = _moments(data, axes, "center.fit")
  return Mean(mean)


def center_apply(x, stats: Mean):
  """``x - mean``."""
  x = check_input(x)
  _check_stats(stats, Mean, "center", x)
  dt = stat_dtype(x.dtype)
  return (x.astype(dt) - stats.mean.astype(dt)).astype(x.dtype)


def center_invert(y, stats: Mean):
  """``y + mean``."""
  y = check_input(y, "y")
  _check_stats(stats, Mean, "center", y, "y")
  dt = stat_dtype(y.dtype)
  return (y.astype(dt) + stats.mean.astype(dt)).astype(y.dtype)


center = Transform(center_fit, center_apply, center_invert)


# ---- unit length -----------------------------------------------------------------------


class UnitLength(NamedTuple):
  """The axes a vector spans and the norm (``ord`` 1 or 2); nothing is fitted."""

  axes: tuple[int, ...]
  ord: int


def unit_length_fit(data, axes: Axes = -1, *, ord: Int = 2) -> UnitLength:  # noqa: A002
  """Unit length needs no statistics: this checks and records `axes` and `ord`."""
  data = check_input(data, "data")
  ord = check_int(ord, "ord", context="unit_length.fit")  # noqa: A001
  if ord not in (1, 2):
    raise ValueError(f"ord={ord!r}; unit length supports the L1 (ord=1) and L2 (ord=2) norms.")
  return UnitLength(resolve_axes(axes, data.ndim, role="axes"), ord)


def unit_length_apply(x, stats: UnitLength):
  """``x / ||x||`` over ``stats.axes``; a zero vector stays zero."""
  x = check_input(x)
  _check_stats(stats, UnitLength, "unit_length")
  field = resolve_field(stats.axes, x.ndim, role="axes")
  dt = stat_dtype(x.dtype)
  x32 = x.astype(dt)
  if stats.ord == 2:  # scaled by its largest entry first: x * x under- or overflows in float32
    # beyond 1e+-19, where x / ||x|| does not (the result does not depend on the scale)
    big = jax.lax.stop_gradient(jnp.max(jnp.abs(x32), axis=field.whole, keepdims=True))
    x32 = x32 / jnp.where(big > 0, big, jnp.ones((), dt))
  total = field_sum(jnp.abs(x32) if stats.ord == 1 else x32 * x32, field)
  # A zero vector divides by 1, selected before the square root: its gradient at 0 is inf.
  safe = jnp.where(total > 0, total, jnp.ones((), dt))
  return (x32 / (safe if stats.ord == 1 else jnp.sqrt(safe))).astype(x.dtype)


unit_length = Transform(unit_length_fit, unit_length_apply, None)


# ---- PCA decorrelation and ZCA whitening -----------------------------------------------


class Eigen(NamedTuple):
  """Mean, covariance eigenvalues (descending) and eigenvectors (columns) of the features.

  ``mean`` has the feature shape; ``eigvecs`` is ``[D, D]`` over the flattened features;
  `epsilon` is the whitening's smoothing (ZCA only).
  """

  mean: jax.Array
  eigvals: jax.Array
  eigvecs: jax.Array
  epsilon: float = 0.0


def _leading(data, axes: Axes) -> int:
  field = resolve_field(axes, data.ndim, role="axes")
  k = len(field.whole)
  if field.windows or field.whole != tuple(range(k)) or k == data.ndim:
    raise ValueError(
        f"axes={axes!r}: PCA/ZCA need the sample axes first and at least one feature axis "
        f"after them (data of shape {data.shape}); e.g. axes=0 for [N, D] data.")
  return k


def _mm(a, b):
  """``a @ b`` at full float32 precision: a GPU's TF32 or a TPU's bfloat16 pass (JAX's
  default there) would leave a whitened covariance 1e-3 to 1e-2 from the identity."""
  return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


@jax.custom_jvp
def _eigh(cov: jax.Array) -> tuple[jax.Array, jax.Array]:
  """`jnp.linalg.eigh` of a symmetric `cov` (eigenvalues ascending), with a derivative that
  is finite at repeated eigenvalues.

  JAX's derivative of an eigenvector weighs the tangent's coupling to each other one by
  ``1 / (l_j - l_i)``: ``0 * inf``, NaN, at a repeated eigenvalue even for a zero tangent
  (constant data). This one leaves that coupling out, the rotations within an eigenspace
  (whose eigenvectors are not unique); elsewhere it is JAX's.
  """
  eigvals, eigvecs = jnp.linalg.eigh(cov)
  return eigvals, eigvecs


@_eigh.defjvp
def _eigh_jvp(primals, tangents):
  (cov,), (dcov,) = primals, tangents
  eigvals, eigvecs = _eigh(cov)
  m = _mm(_mm(eigvecs.T, (dcov + dcov.T) / 2), eigvecs)
  gap = eigvals[None, :] - eigvals[:, None]  # gap[i, j] = l_j - l_i
  tied = gap == 0
  f = jnp.where(tied, jnp.zeros((), gap.dtype), 1 / jnp.where(tied, 1, gap))
  return (eigvals, eigvecs), (jnp.diagonal(m), _mm(eigvecs, f * m))


def _eigen(data, axes: Axes, epsilon: float, name: str) -> Eigen:
  data, _ = _samples(data, axes, name)
  k = _leading(data, axes)
  feature_shape = data.shape[k:]
  flat = data.reshape(-1, int(np.prod(feature_shape)))
  samples = Field((0,), ())
  mean, _, centered = moments(flat, samples, samples)
  cov = _mm(centered.T, centered) / flat.shape[0]
  eigvals, eigvecs = _eigh(cov)
  eigvals, eigvecs = eigvals[::-1], eigvecs[:, ::-1]
  return Eigen(mean.reshape(feature_shape), jnp.maximum(eigvals, 0.0), eigvecs, epsilon)


def _flat(x, stats: Eigen, transform: str, name: str = "x"):
  x = check_input(x, name)
  _check_stats(stats, Eigen, transform)
  feature_shape = stats.mean.shape
  n = len(feature_shape)
  if tuple(x.shape[x.ndim - n:]) != tuple(feature_shape) or x.ndim < n:
    raise ValueError(
        f"{name} of shape {x.shape} must end in the fitted feature shape "
        f"{tuple(feature_shape)}.")
  dt = stat_dtype(x.dtype)
  lead = x.shape[: x.ndim - n]
  mean = stats.mean.astype(dt).reshape((1,) * len(lead) + tuple(feature_shape))
  flat = (x.astype(dt) - mean).reshape(*lead, -1)
  return flat, lead, dt


def pca_fit(data, axes: Axes = 0) -> Eigen:
  """Mean and eigendecomposition of the feature covariance (biased, 1/n).

  At a repeated eigenvalue (constant data) the eigenvectors' gradient leaves out rotations
  within its eigenspace, where `jnp.linalg.eigh`'s is NaN (`_eigh`): exact for eigenvalue 0,
  whose eigenvectors the covariance's derivative does not couple.
  """
  return _eigen(data, axes, 0.0, "pca.fit")


def pca_apply(x, stats: Eigen):
  """Decorrelation ``(x - mean) V``: principal components, covariance ``diag(eigvals)``.

  The output's last axis holds the D components, largest variance first.
  """
  x = check_input(x)
  flat, _, dt = _flat(x, stats, "pca")
  return _mm(flat, stats.eigvecs.astype(dt)).astype(x.dtype)


def pca_invert(z, stats: Eigen):
  """``z V^T + mean``, back in the feature shape."""
  z = check_input(z, "z")
  _check_stats(stats, Eigen, "pca")
  components = stats.eigvecs.shape[-1]
  if z.ndim < 1 or z.shape[-1] != components:
    raise ValueError(f"z of shape {z.shape} must end in the {components} principal components "
                     f"that pca.apply gives.")
  dt = stat_dtype(z.dtype)
  flat = _mm(z.astype(dt), stats.eigvecs.astype(dt).T)
  lead = z.shape[:-1]
  mean = stats.mean.astype(dt).reshape((1,) * len(lead) + stats.mean.shape)
  return (flat.reshape(*lead, *stats.mean.shape) + mean).astype(z.dtype)


pca = Transform(pca_fit, pca_apply, pca_invert)


def zca_fit(data, axes: Axes = 0, *, epsilon: float = 0.0) -> Eigen:
  """Mean and eigendecomposition for ZCA whitening ``Sigma^{-1/2}`` (gradients as `pca_fit`).

  Gradients through the fit: exact wherever the covariance's eigenvalues are distinct, how
  close soever (data whose two eigenvalues differ by 1e-9 of their size: within 1e-7 of
  finite differences). At an exactly repeated nonzero eigenvalue (isotropic data, e.g.
  whitened already) ``Sigma^{-1/2}`` is still differentiable, but its derivative within that
  eigenspace, ``g'(l) M_ij``, is not a function of the eigendecomposition's, which leaves the
  rotations there out (`pca_fit`): the gradient misses it (0.35 on entries of about 1.4 for
  four points on the axes). Perturb such data, or keep the fit out of the gradient
  (``jax.lax.stop_gradient``).

  Raises:
    ValueError: the covariance is singular (an eigenvalue at rounding level of the
      largest) and ``epsilon == 0``: whitening would divide by ~0. Pass e.g.
      ``epsilon=1e-5`` (eigenvalues become ``l + epsilon``).
  """
  epsilon = _epsilon(epsilon, "zca.fit")
  stats = _eigen(data, axes, epsilon, "zca.fit")
  if is_concrete(epsilon) and epsilon == 0 and is_concrete(stats.eigvals):
    eig = np.asarray(stats.eigvals)
    tol = eig[0] * eig.size * np.finfo(eig.dtype).eps
    if eig[-1] <= tol:
      raise ValueError(
          f"the feature covariance is singular (smallest eigenvalue {eig[-1]:.3g}, largest "
          f"{eig[0]:.3g}; {int(np.sum(eig <= tol))} of {eig.size} at rounding level), so "
          f"whitening would divide by ~0; pass epsilon > 0, e.g. zca.fit(data, axes, "
          f"epsilon=1e-5), or use fewer features than samples.")
  return stats


def _zca_matrix(stats: Eigen, dt, power: float):
  scale_ = (stats.eigvals.astype(dt) + jnp.asarray(stats.epsilon).astype(dt)) ** power
  vecs = stats.eigvecs.astype(dt)
  return _mm(vecs * scale_[None, :], vecs.T)


def zca_apply(x, stats: Eigen):
  """``(x - mean) V diag(1 / sqrt(l + epsilon)) V^T``, in the feature shape."""
  x = check_input(x)
  flat, lead, dt = _flat(x, stats, "zca")
  y = _mm(flat, _zca_matrix(stats, dt, -0.5))
  return y.reshape(*lead, *stats.mean.shape).astype(x.dtype)


def zca_invert(y, stats: Eigen):
  """``y V diag(sqrt(l + epsilon)) V^T + mean``."""
  y = check_input(y, "y")
  _check_stats(stats, Eigen, "zca")
  flat, lead, dt = _flat(y, Eigen(jnp.zeros_like(stats.mean), *stats[1:]), "zca", "y")
  x = _mm(flat, _zca_matrix(stats, dt, 0.5)).reshape(*lead, *stats.mean.shape)
  mean = stats.mean.astype(dt).reshape((1,) * len(lead) + stats.mean.shape)
  return (x + mean).astype(y.dtype)


zca = Transform(zca_fit, zca_apply, zca_invert)
