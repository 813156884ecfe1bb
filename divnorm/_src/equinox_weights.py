"""Equinox weight normalizers over `divnorm._src.weights` (also in `divnorm.equinox`).

`WeightNorm` and `SpectralNorm` take equinox 0.13's arguments, keep its fields and state (so
`eqx.tree_serialise_leaves` checkpoints and `eqx.nn.State` load into them) and compute its
numbers, with the norms in at least float32. `WeightStandardization` is the survey's, in the
same shape: one weight of the wrapped layer, named by `weight_name`, standardized per output
unit (axis 0, equinox's layout) at every call.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from divnorm._src import weights
from divnorm._src.checks import axis_index, check_int, check_nonnegative
from divnorm._src.reductions import stat_dtype

_Layer = TypeVar("_Layer")


def _weight(layer, weight_name: str, wrapper: str):
  """The array ``layer.<weight_name>``, or an error naming `weight_name`."""
  weight = getattr(layer, weight_name, None)
  if not eqx.is_inexact_array(weight):
    raise ValueError(
        f"{wrapper}: {type(layer).__name__} has no floating array {weight_name!r} "
        f"(weight_name={weight_name!r}); pass the name of its weight, e.g. 'weight'.")
  return weight


def _call_with(layer, weight_name: str, weight, x):
  """``layer(x)`` with ``layer.<weight_name>`` replaced by `weight` for the call."""
  return eqx.tree_at(lambda m: getattr(m, weight_name), layer, weight)(x)


class WeightNorm(eqx.Module, Generic[_Layer]):
  """Weight normalization (Salimans & Kingma, 2016): equinox.nn.WeightNorm's arguments.

  The layer's weight ``v`` is used as ``g * v / ||v||``, the norm over every axis but `axis`
  (None: every axis); the length ``g`` starts at ``||v||`` (the layer's own outputs).

  >>> import jax, jax.numpy as jnp, equinox as eqx
  >>> from divnorm import equinox as dqx
  >>> wn = dqx.WeightNorm(eqx.nn.Linear(3, 4, key=jax.random.key(0)))
  >>> wn(jnp.ones(3)).shape, wn.g.shape
  ((4,), (4, 1))
  """

  layer: _Layer
  g: Array
  weight_name: str = eqx.field(static=True)
  axis: int | None = eqx.field(static=True)

  def __init__(self, layer: _Layer, weight_name: str = "weight", axis: int | None = 0):
    self.layer, self.weight_name, self.axis = layer, weight_name, axis
    weight = _weight(layer, weight_name, "WeightNorm")
    w = weight.astype(stat_dtype(weight.dtype))
    kept = () if axis is None else (axis_index(axis, w.ndim, "axis", context="WeightNorm"),)
    self.g = jnp.sqrt(jnp.sum(w * w, axis=tuple(a for a in range(w.ndim) if a not in kept),
                              keepdims=True)).astype(weight.dtype)  # equinox's shape

  def __call__(self, x: Array, *, key=None) -> Array:
    """Calls the layer with its weight ``g * v / ||v||`` (`key` is ignored, as equinox)."""
    v = _weight(self.layer, self.weight_name, "WeightNorm")
    g = self.g.reshape(-1 if self.axis is not None else ())
    w = weights.l2_normalized(v, g, feature_axes=self.axis, epsilon=0.0, dtype=v.dtype)
    return _call_with(self.layer, self.weight_name, w, x)


class SpectralNorm(eqx.nn.StatefulLayer, Generic[_Layer]):
  """Spectral normalization (Miyato et al., 2018): equinox.nn.SpectralNorm's arguments.

  The weight, viewed as ``[shape[0], -1]``, is divided by ``sigma = u^T W v``; ``(u, v)`` are
  the power iteration's vectors in an `eqx.nn.State`, advanced `num_power_iterations` steps
  per call in training (15 at construction, from `key`) and fixed in inference
  (``eqx.nn.inference_mode``). Gradients flow through ``W`` and ``sigma``, not ``(u, v)``.

  >>> import jax, jax.numpy as jnp, equinox as eqx
  >>> from divnorm import equinox as dqx
  >>> sn, state = eqx.nn.make_with_state(dqx.SpectralNorm)(
  ...     eqx.nn.Linear(3, 4, key=jax.random.key(0)), "weight", key=jax.random.key(1))
  >>> sn(jnp.ones(3), state)[0].shape
  (4,)
  """

  layer: _Layer
  weight_name: str = eqx.field(static=True)
  uv_index: eqx.nn.StateIndex
  num_power_iterations: int = eqx.field(static=True)
  eps: float = eqx.field(static=True)
  inference: bool

  def __init__(self, layer: _Layer, weight_name: str, num_power_iterations: int = 1,
               eps: float = 1e-12, inference: bool = False, *, key):
    self.layer, self.weight_name = layer, weight_name
    self.num_power_iterations = check_int(num_power_iterations, "num_power_iterations",
                                          minimum=0, context="SpectralNorm")
    check_nonnegative(eps, "eps", " (the power iteration's floor on the vector norms)")
    self.eps, self.inference = eps, inference
    weight = _weight(layer, weight_name, "SpectralNorm")
    if weight.ndim < 2:
      raise ValueError(f"SpectralNorm: the weight {weight_name!r} has shape {weight.shape}; "
                       f"it must be at least two-dimensional (a matrix, or a conv kernel).")
    rows, columns = weight.shape[0], weight.size // weight.shape[0]
    u_key, v_key = jax.random.split(key)
    u, v = (jax.random.normal(k, (n,), weight.dtype) for k, n in ((u_key, rows),
                                                                    (v_key, columns)))
    _, u, v = weights.row_spectral_normalized(weight, u, v, n_steps=15, epsilon=eps)
    self.uv_index = eqx.nn.StateIndex((u, v))

  def __call__(self, x: Array, state: eqx.nn.State, *, key=None,
               inference: bool | None = None) -> tuple[Array, eqx.nn.State]:
    """``(layer(x) with W / sigma, state)``; the state advances unless in inference."""
    weight = _weight(self.layer, self.weight_name, "SpectralNorm")
    inference = self.inference if inference is None else inference
    u, v = state.get(self.uv_index)
    steps = 0 if inference else self.num_power_iterations
    w, u, v = weights.row_spectral_normalized(weight, u, v, n_steps=steps, epsilon=self.eps)
    if not inference:
      state = state.set(self.uv_index, (u, v))
    return _call_with(self.layer, self.weight_name, w, x), state


class WeightStandardization(eqx.Module, Generic[_Layer]):
  """Weight standardization (Qiao et al., 2019): the weight centered and divided by its
  standard deviation over every axis but `axis` (the outputs), smoothed by `sigma`.

  >>> import jax, jax.numpy as jnp, equinox as eqx
  >>> from divnorm import equinox as dqx
  >>> ws = dqx.WeightStandardization(eqx.nn.Conv2d(3, 4, 3, key=jax.random.key(0)))
  >>> ws(jnp.ones((3, 8, 8))).shape
  (4, 6, 6)
  """

  layer: _Layer
  weight_name: str = eqx.field(static=True)
  axis: int = eqx.field(static=True)
  sigma: float = eqx.field(static=True)

  def __init__(self, layer: _Layer, weight_name: str = "weight", axis: int = 0, *,
               sigma: float = 0.0):
    self.layer, self.weight_name, self.axis, self.sigma = layer, weight_name, axis, sigma
    weight = _weight(layer, weight_name, "WeightStandardization")
    axis_index(axis, weight.ndim, "axis", context="WeightStandardization")

  def __call__(self, x: Array, *, key=None) -> Array:
    """Calls the layer with its weight standardized (`key` is ignored)."""
    w = _weight(self.layer, self.weight_name, "WeightStandardization")
    return _call_with(self.layer, self.weight_name, weights.weight_standardization(
        w, feature_axes=self.axis, sigma=self.sigma), x)
