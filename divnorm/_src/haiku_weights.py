"""Haiku weight normalizers (also in `divnorm.haiku`), in hk.SpectralNorm's form: a module
called on a weight returns the weight the layer should use.

haiku has no wrapper of a layer; to normalize an ``hk.Linear``'s or ``hk.Conv2D``'s ``w``,
apply one of these in an ``hk.custom_getter``, as each class's example does. Kernels are in
haiku's layout, the outputs last (`feature_axes`); the norms and statistics reduce every
other axis in at least float32, and the weight comes back in its dtype.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp

from divnorm._src import flax_semantics as fs
from divnorm._src import weights
from divnorm._src.checks import check_bool, check_nonnegative
from divnorm._src.haiku import hk

Axes = int | Sequence[int] | None


class WeightNorm(hk.Module):
  """Weight normalization (Salimans & Kingma, 2016): ``scale * w / sqrt(sum(w^2) + eps)``,
  the sum over every axis but `feature_axes` (None: all of them, one scalar ``scale``).

  The learned ``scale`` has the feature axes' shape and the weight's dtype. By default it
  starts at the norm of the weight it first sees, so the layer starts from its own outputs
  (the paper's reparameterization, ``w = g v / ||v||``); `scale_init` (a haiku initializer)
  replaces that, e.g. ``jnp.ones`` as flax's WeightNorm.

  >>> import haiku as hk, jax, jax.numpy as jnp
  >>> from divnorm import haiku as dhk
  >>> def weight_norm_w(next_getter, value, context):  # every layer's "w"
  ...   value = next_getter(value)
  ...   return dhk.WeightNorm()(value) if context.name == "w" else value
  >>> def net(x):
  ...   with hk.custom_getter(weight_norm_w):
  ...     return hk.Linear(4)(x)
  >>> params = hk.transform(net).init(jax.random.key(0), jnp.ones((2, 3)))
  >>> jax.tree.map(jnp.shape, params)["linear/weight_norm"]
  {'scale': (4,)}
  """

  def __init__(self, feature_axes: Axes = -1, create_scale: bool = True, scale_init=None,
               eps: float = 1e-12, name: str | None = None):
    super().__init__(name=name)
    if not check_bool(create_scale, "create_scale") and scale_init is not None:
      raise ValueError("Cannot set `scale_init` if `create_scale=False`.")
    check_nonnegative(eps, "eps", " (added to the squared norms)")
    self.feature_axes, self.create_scale, self.scale_init, self.eps = (
        feature_axes, create_scale, scale_init, eps)

  def __call__(self, value):
    """`value` with each output unit's weights scaled to length ``scale``."""
    value = jnp.asarray(value)
    features = fs.canonical_axes(self.feature_axes, value.ndim, "feature_axes")
    scale = None
    if self.create_scale:
      def norm(shape, dtype):
        return weights.kernel_norm(value, feature_axes=features).reshape(shape).astype(dtype)

      shape = tuple(value.shape[a] for a in features)
      scale = hk.get_parameter("scale", shape, value.dtype, init=self.scale_init or norm)
    return weights.l2_normalized(value, scale, feature_axes=features, epsilon=self.eps,
                                 dtype=value.dtype)


class WeightStandardization(hk.Module):
  """Weight standardization (Qiao et al., 2019): ``(w - mean) / sqrt(sigma^2 + var)``, the
  statistics over every axis but `feature_axes` (`divnorm.weights.weight_standardization`);
  no parameters.

  >>> import haiku as hk, jax, jax.numpy as jnp
  >>> from divnorm import haiku as dhk
  >>> def standardize_w(next_getter, value, context):
  ...   value = next_getter(value)
  ...   return dhk.WeightStandardization()(value) if context.name == "w" else value
  >>> def net(x):
  ...   with hk.custom_getter(standardize_w):
  ...     return hk.Conv2D(4, 3)(x)
  >>> f = hk.without_apply_rng(hk.transform(net))
  >>> x = jnp.ones((1, 8, 8, 3))
  >>> f.apply(f.init(jax.random.key(0), x), x).shape
  (1, 8, 8, 4)
  """

  def __init__(self, feature_axes: Axes = -1, sigma: float = 0.0, name: str | None = None):
    super().__init__(name=name)
    check_nonnegative(sigma, "sigma", " (the smoothing of the standard deviation)")
    self.feature_axes, self.sigma = feature_axes, sigma

  def __call__(self, value):
    """`value` centered and scaled to unit variance per output unit."""
    return weights.weight_standardization(value, feature_axes=self.feature_axes,
                                          sigma=self.sigma)
