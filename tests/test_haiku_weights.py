"""divnorm.haiku's WeightNorm and WeightStandardization: the formulas against float64 NumPy,
inside haiku layers through ``hk.custom_getter``, and their errors."""

import doctest

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from divnorm import haiku as dhk
from divnorm import weights
from divnorm._src import haiku_weights


def _w(shape=(3, 3, 2, 5), seed=0, dtype=jnp.float32):
  return (jax.random.normal(jax.random.key(seed), shape) * 0.7 + 0.2).astype(dtype)


def _apply(module_fn, w, params=None):
  f = hk.without_apply_rng(hk.transform(lambda w: module_fn()(w)))
  params = f.init(jax.random.key(1), w) if params is None else params
  return f.apply(params, w), params


@pytest.mark.parametrize("feature_axes,features", [(-1, (3,)), ((2, 3), (2, 3)), (None, ())])
def test_weight_norm_is_the_formula(feature_axes, features):
  """``scale * w / sqrt(sum(w^2) + eps)`` over the other axes, for a learned scale away from
  its start; at its start (the weight's norms) the weight itself."""
  w = _w()
  y, params = _apply(lambda: dhk.WeightNorm(feature_axes, eps=1e-3), w)
  scale = params["weight_norm"]["scale"]
  reduction = tuple(a for a in range(4) if a not in features)
  w64 = np.asarray(w, np.float64)
  norm = np.sqrt(np.sum(w64**2, axis=reduction, keepdims=True))
  assert scale.shape == tuple(w.shape[a] for a in features)
  np.testing.assert_allclose(scale, norm.reshape(scale.shape), rtol=1e-6)
  np.testing.assert_allclose(y, w64 * norm / np.sqrt(norm**2 + 1e-3), rtol=1e-6, atol=1e-7)
  scale = jax.random.uniform(jax.random.key(2), scale.shape, minval=0.5, maxval=2.0)
  y, _ = _apply(lambda: dhk.WeightNorm(feature_axes, eps=1e-3), w,
                {"weight_norm": {"scale": scale}})
  shape = [w.shape[a] if a in features else 1 for a in range(4)]
  want = np.asarray(scale, np.float64).reshape(shape) * w64 / np.sqrt(norm**2 + 1e-3)
  np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-7)


def test_weight_norm_without_scale_gives_unit_columns_in_the_weight_s_dtype():
  for dtype, tol in ((jnp.float32, 1e-6), (jnp.bfloat16, 1e-2)):
    y, params = _apply(lambda: dhk.WeightNorm(create_scale=False), _w(dtype=dtype))
    assert params == {} and y.dtype == dtype
    norms = np.linalg.norm(np.asarray(y, np.float64).reshape(-1, 5), axis=0)
    np.testing.assert_allclose(norms, 1.0, rtol=tol)
  y, params = _apply(lambda: dhk.WeightNorm(scale_init=jnp.ones), _w())
  np.testing.assert_allclose(params["weight_norm"]["scale"], np.ones(5))
  np.testing.assert_allclose(np.linalg.norm(np.asarray(y).reshape(-1, 5), axis=0), 1.0,
                             rtol=1e-6)


def _getter(module):
  def getter(next_getter, value, context):
    value = next_getter(value)
    return module()(value) if context.name == "w" else value
  return getter


def test_weight_norm_in_a_custom_getter_starts_from_the_layers_own_outputs():
  """A conv and a linear layer under the getter: one ``scale`` per layer next to it, the
  plain network's outputs at initialization, and a gradient for every scale."""
  def net(x, getter=None):
    with hk.custom_getter(getter) if getter else hk.custom_getter(lambda g, v, c: g(v)):
      h = jax.nn.relu(hk.Conv2D(4, 3)(x))
      return hk.Linear(2)(h.reshape(len(x), -1))

  x = jax.random.normal(jax.random.key(0), (2, 6, 6, 3))
  plain = hk.without_apply_rng(hk.transform(net))
  wrapped = hk.without_apply_rng(hk.transform(lambda x: net(x, _getter(dhk.WeightNorm))))
  params = wrapped.init(jax.random.key(3), x)
  assert jax.tree.map(jnp.shape, {k: v for k, v in params.items() if "weight_norm" in k}) == {
      "conv2_d/weight_norm": {"scale": (4,)}, "linear/weight_norm": {"scale": (2,)}}
  layers = {k: v for k, v in params.items() if "weight_norm" not in k}
  np.testing.assert_allclose(wrapped.apply(params, x), plain.apply(layers, x), rtol=1e-5,
                             atol=1e-6)
  grads = jax.grad(lambda p: jnp.sum(wrapped.apply(p, x) ** 2))(params)
  assert all(np.all(np.asarray(g["scale"]) != 0) for k, g in grads.items() if "weight_norm" in k)


def test_weight_standardization_is_the_function_and_standardizes_each_output():
  w = _w(seed=4)
  y, params = _apply(lambda: dhk.WeightStandardization(sigma=0.1), w)
  assert params == {}
  np.testing.assert_array_equal(y, weights.weight_standardization(w, sigma=0.1))
  y, _ = _apply(dhk.WeightStandardization, w)
  w64 = np.asarray(w, np.float64).reshape(-1, 5)
  want = (w64 - w64.mean(0)) / w64.std(0)
  np.testing.assert_allclose(np.asarray(y).reshape(-1, 5), want, rtol=1e-5, atol=1e-6)
  y, _ = _apply(lambda: dhk.WeightStandardization(feature_axes=(2, 3)), w)
  np.testing.assert_array_equal(y, weights.weight_standardization(w, feature_axes=(2, 3)))


def test_weight_standardization_in_a_custom_getter():
  def net(x):
    with hk.custom_getter(_getter(dhk.WeightStandardization)):
      return hk.Conv2D(4, 3, with_bias=False)(x)

  x = jax.random.normal(jax.random.key(0), (2, 6, 6, 3))
  f = hk.without_apply_rng(hk.transform(net))
  params = f.init(jax.random.key(1), x)
  want = jax.lax.conv_general_dilated(
      x, weights.weight_standardization(params["conv2_d"]["w"]), (1, 1), "SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(f.apply(params, x), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make,error,match", [
    (lambda: dhk.WeightNorm(eps=-1.0), ValueError, "eps"),
    (lambda: dhk.WeightNorm(create_scale=False, scale_init=jnp.ones), ValueError,
     "scale_init"),
    (lambda: dhk.WeightNorm(create_scale=1), TypeError, "create_scale"),
    (lambda: dhk.WeightNorm(feature_axes=4)(jnp.ones((3, 4))), ValueError, "feature_axes"),
    (lambda: dhk.WeightStandardization(sigma=-1.0), ValueError, "sigma"),
    (lambda: dhk.WeightStandardization(feature_axes=(0, 1))(jnp.ones((3, 4))), ValueError,
     "feature_axes"),
])
def test_bad_arguments_name_the_argument(make, error, match):
  with pytest.raises(error, match=match):
    hk.transform(lambda: make()).init(jax.random.key(0))


def test_docstring_examples_run():
  results = doctest.testmod(haiku_weights, globs={}, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert results.attempted >= 10 and results.failed == 0


@pytest.mark.parametrize("make", [lambda eps: dhk.SpectralNorm(eps=eps),
                                  lambda eps: dhk.WeightNorm(eps=eps)],
                         ids=["SpectralNorm", "WeightNorm"])
def test_a_traced_eps_works_as_in_haiku(make):
  """`eps` passed through a jitted apply is traced: it is added as an array, not converted
  to a NumPy constant (TracerArrayConversionError)."""
  w = jnp.array([[4.0, 1.0], [0.5, 2.0]])
  f = hk.without_apply_rng(hk.transform_with_state(lambda w, eps: make(eps)(w)))
  params, state = f.init(jax.random.key(0), w, 1e-4)
  np.testing.assert_allclose(jax.jit(f.apply)(params, state, w, 1e-4)[0],
                             f.apply(params, state, w, 1e-4)[0], rtol=1e-6)
