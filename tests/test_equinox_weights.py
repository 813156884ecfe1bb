"""divnorm.equinox's weight normalizers: equinox's WeightNorm and SpectralNorm (signatures,
fields, state, numbers, checkpoints) and the survey's WeightStandardization.

equinox's own tests of the two are ported in tests/compat/test_equinox_normalization.py.
"""

import doctest
import inspect

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from divnorm import equinox as dqx
from divnorm._src import equinox_weights

LAYERS = {
  "linear": (lambda key: eqx.nn.Linear(4, 5, key=key), (4,)),
  "conv2d": (lambda key: eqx.nn.Conv2d(3, 4, 3, key=key), (3, 7, 7)),
  "conv3d": (lambda key: eqx.nn.Conv3d(2, 3, 2, key=key), (2, 4, 4, 4)),
}


def _grads(module, *args):
  """The gradient of ``sum(y^2)`` with respect to every float array of `module`, flattened."""
  def loss(module):
    out = module(*args)
    return jnp.sum(jnp.square(out[0] if isinstance(out, tuple) else out))
  return jax.tree.leaves(eqx.filter(eqx.filter_grad(loss)(module), eqx.is_array))


def _close(ours, theirs, tol=1e-5):
  assert len(ours) == len(theirs)
  for a, b in zip(ours, theirs, strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


@pytest.mark.parametrize("name", ["WeightNorm", "SpectralNorm"])
def test_signature_is_equinox(name):
  theirs = inspect.signature(getattr(eqx.nn, name).__init__).parameters.values()
  ours = inspect.signature(getattr(dqx, name).__init__).parameters.values()
  assert [(p.name, p.kind, p.default) for p in ours] == [
    (p.name, p.kind, p.default) for p in theirs]


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("axis", [0, None, 1, -1])
def test_weight_norm_equals_equinox(layer, axis):
  make, shape = LAYERS[layer]
  inner, x = make(jax.random.key(0)), jax.random.normal(jax.random.key(1), shape)
  theirs, ours = eqx.nn.WeightNorm(inner, "weight", axis), dqx.WeightNorm(inner, "weight", axis)
  assert ours.g.shape == theirs.g.shape and ours.g.dtype == theirs.g.dtype
  _close([ours.g], [theirs.g])
  _close([ours(x)], [inner(x)])  # g starts at ||v||: the layer's own outputs
  theirs = eqx.tree_at(lambda m: m.g, theirs, theirs.g * 1.5)  # a trained length
  ours = eqx.tree_at(lambda m: m.g, ours, theirs.g)
  _close([ours(x)], [theirs(x)])
  _close(_grads(ours, x), _grads(theirs, x), tol=1e-4)


def test_weight_norm_of_bfloat16_weights_normalizes_in_float32():
  inner = eqx.nn.Linear(6, 3, key=jax.random.key(0), dtype=jnp.bfloat16)
  x = jnp.ones(6, jnp.bfloat16)
  ours = dqx.WeightNorm(inner)
  assert ours.g.dtype == jnp.bfloat16 and ours(x).dtype == jnp.bfloat16
  w = np.asarray(inner.weight, np.float64)
  g = np.asarray(ours.g, np.float64)
  want = (w * g / np.sqrt((w * w).sum(1, keepdims=True))) @ np.ones(6) + np.asarray(
    inner.bias, np.float64)
  np.testing.assert_allclose(np.asarray(ours(x), np.float64), want, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("layer", LAYERS)
def test_spectral_norm_equals_equinox_in_training_and_inference(layer):
  make, shape = LAYERS[layer]
  inner, x = make(jax.random.key(0)), jax.random.normal(jax.random.key(1), shape)
  theirs, state_theirs = eqx.nn.make_with_state(eqx.nn.SpectralNorm)(
    inner, "weight", num_power_iterations=2, key=jax.random.key(2))
  ours, state_ours = eqx.nn.make_with_state(dqx.SpectralNorm)(
    inner, "weight", num_power_iterations=2, key=jax.random.key(2))
  _close(jax.tree.leaves(state_ours), jax.tree.leaves(state_theirs))  # 15 steps at init
  for _ in range(3):
    y_theirs, state_theirs = theirs(x, state_theirs)
    y_ours, state_ours = ours(x, state_ours)
    _close([y_ours], [y_theirs])
  _close(jax.tree.leaves(state_ours), jax.tree.leaves(state_theirs))
  clone = jax.tree.unflatten(*reversed(jax.tree.flatten(state_theirs)))
  _close(_grads(ours, x, jax.tree.unflatten(*reversed(jax.tree.flatten(state_ours)))),
         _grads(theirs, x, clone), tol=1e-4)
  ours, theirs = eqx.nn.inference_mode(ours), eqx.nn.inference_mode(theirs)
  (y_ours, same), (y_theirs, _) = ours(x, state_ours), theirs(x, state_theirs)
  _close([y_ours], [y_theirs])
  assert same is state_ours  # inference leaves the state alone


def test_spectral_norm_divides_by_the_largest_singular_value():
  inner = eqx.nn.Linear(5, 6, key=jax.random.key(0))
  layer, state = eqx.nn.make_with_state(dqx.SpectralNorm)(inner, "weight", key=jax.random.key(1))
  for _ in range(30):
    _, state = layer(jnp.ones(5), state)
  u, v = state.get(layer.uv_index)
  sigma = np.asarray(u, np.float64) @ np.asarray(inner.weight, np.float64) @ np.asarray(v)
  np.testing.assert_allclose(sigma, np.linalg.svd(np.asarray(inner.weight, np.float64))[1][0],
                             rtol=1e-5)


@pytest.mark.parametrize("wrapper", ["WeightNorm", "SpectralNorm"])
def test_checkpoint_of_equinox_loads(wrapper, tmp_path):
  inner = eqx.nn.Conv2d(3, 4, 3, key=jax.random.key(0))
  x = jax.random.normal(jax.random.key(1), (3, 6, 6))
  if wrapper == "WeightNorm":
    theirs = eqx.nn.WeightNorm(inner)
    theirs = eqx.tree_at(lambda m: m.g, theirs, theirs.g * 2.0)  # trained
    eqx.tree_serialise_leaves(tmp_path / "model.eqx", theirs)
    ours = eqx.tree_deserialise_leaves(tmp_path / "model.eqx", dqx.WeightNorm(
      eqx.nn.Conv2d(3, 4, 3, key=jax.random.key(5))))
    _close([ours(x)], [theirs(x)])
    return
  theirs, state = eqx.nn.make_with_state(eqx.nn.SpectralNorm)(inner, "weight",
                                                              key=jax.random.key(2))
  _, state = theirs(x, state)
  eqx.tree_serialise_leaves(tmp_path / "model.eqx", (theirs, state))
  skeleton = eqx.nn.make_with_state(dqx.SpectralNorm)(
    eqx.nn.Conv2d(3, 4, 3, key=jax.random.key(5)), "weight", key=jax.random.key(6))
  ours, our_state = eqx.tree_deserialise_leaves(tmp_path / "model.eqx", skeleton)
  _close([ours(x, our_state)[0]], [theirs(x, state)[0]])


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("sigma", [0.0, 0.1])
def test_weight_standardization_standardizes_each_output_unit(layer, sigma):
  make, shape = LAYERS[layer]
  inner, x = make(jax.random.key(0)), jax.random.normal(jax.random.key(1), shape)
  inner = eqx.tree_at(lambda m: m.weight, inner, inner.weight + 3.0)  # an offset
  ws = dqx.WeightStandardization(inner, sigma=sigma)
  w = np.asarray(inner.weight, np.float64)
  axes = tuple(range(1, w.ndim))
  centered = w - w.mean(axes, keepdims=True)
  standard = centered / np.sqrt(sigma**2 + (centered**2).mean(axes, keepdims=True))
  want = eqx.tree_at(lambda m: m.weight, inner, jnp.asarray(standard, jnp.float32))(x)
  np.testing.assert_allclose(eqx.filter_jit(lambda m, x: m(x))(ws, x), want, rtol=1e-5,
                             atol=1e-5)
  assert all(np.isfinite(g).all() for g in _grads(ws, x))


@pytest.mark.parametrize("make", [
  lambda layer: dqx.WeightNorm(layer, "kernel"),
  lambda layer: dqx.SpectralNorm(layer, "kernel", key=jax.random.key(0)),
  lambda layer: dqx.WeightStandardization(layer, "kernel"),
])
def test_a_missing_weight_is_an_error_naming_weight_name(make):
  with pytest.raises(ValueError, match="weight_name='kernel'"):
    make(eqx.nn.Linear(3, 4, key=jax.random.key(0)))


def test_spectral_norm_of_a_vector_is_an_error():
  with pytest.raises(ValueError, match="at least two-dimensional"):
    dqx.SpectralNorm(eqx.nn.Linear(3, 4, key=jax.random.key(0)), "bias", key=jax.random.key(1))


def test_docstring_examples_run():
  # Empty globals: each example runs as written in a fresh interpreter (its own imports).
  results = doctest.testmod(equinox_weights, globs={}, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert results.attempted > 0 and results.failed == 0


def test_weight_norm_of_a_zero_row_is_nan_as_equinox():
  # equinox has no epsilon (docs/compatibility.md); divnorm does not add one to its WeightNorm.
  inner = eqx.nn.Linear(3, 2, key=jax.random.key(0))
  inner = eqx.tree_at(lambda m: m.weight, inner, inner.weight.at[0].set(0.0))
  x = jnp.ones(3)
  theirs, ours = eqx.nn.WeightNorm(inner)(x), dqx.WeightNorm(inner)(x)
  np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
  assert np.isnan(ours[0]) and np.isfinite(ours[1])


@pytest.mark.parametrize("make", [
  lambda layer: dqx.WeightNorm(layer, axis=2),
  lambda layer: dqx.WeightStandardization(layer, axis=-3),
])
def test_an_axis_out_of_range_is_an_error_naming_axis(make):
  with pytest.raises(ValueError, match="axis=.* is out of range for an input of rank 2"):
    make(eqx.nn.Linear(3, 4, key=jax.random.key(0)))
