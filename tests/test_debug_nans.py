"""divnorm under `jax.debug_nans` and `jax.debug_infs`: no spurious NaN or inf.

Users debugging a model turn these on, and JAX then raises at the first operation whose
output holds a NaN (or inf), discarded or not: a `where(count > 0, s / count, 0)` with an
empty field, a branch of a `cond` or a select that is computed and thrown away would stop
their run at divnorm. On finite inputs, with masks that empty whole fields, at sigma = 0 on
constant rows and at inputs that are all zero, neither the forward nor the gradient of any
normalizer may produce one.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import divnorm
from divnorm import linen as dnn
from divnorm import nnx as dnx

SHAPE = (4, 6, 6, 16)


def _x():
  rng = np.random.default_rng(0)
  return jnp.asarray(3.0 + rng.normal(size=SHAPE), jnp.float32)


def _rows():
  """Half of each image's rows masked out: layer norm over the features then has whole
  fields with nothing in them (count 0)."""
  return jnp.broadcast_to((jnp.arange(SHAPE[1]) < SHAPE[1] // 2)[None, :, None, None], SHAPE)


FUNCTIONS = {
    "layer_norm": lambda x: divnorm.layer_norm(x),
    "layer_norm, one-pass": lambda x: divnorm.layer_norm(x, fast_variance=True),
    "layer_norm, constant rows at sigma 0": lambda x: divnorm.layer_norm(x.at[0].set(1.0)),
    "all zeros": lambda x: divnorm.layer_norm(0 * x) + divnorm.rms_norm(0 * x),
    "empty fields": lambda x: divnorm.normalize(x, (3,), sigma=1e-3, mask=_rows()),
    "empty fields, one-pass": lambda x: divnorm.normalize(x, (3,), sigma=1e-3, mask=_rows(),
                                                          fast_variance=True),
    "batch statistics, masked": lambda x: divnorm.normalize(x, (0, 1, 2), sigma=1e-3,
                                                            mask=x > 3.0),
    "group_norm, masked, one-pass": lambda x: divnorm.group_norm(
        x, num_groups=4, mask=_rows(), fast_variance=True),
    "divisive_norm, masked": lambda x: divnorm.divisive_norm(
        x, summation_window=(3, 3), sigma=0.5, mask=_rows()),
    "rms_norm, masked, bfloat16": lambda x: divnorm.rms_norm(
        x.astype(jnp.bfloat16), mask=_rows()).astype(jnp.float32),
}


@pytest.fixture(params=["nans", "infs"])
def debug(request):
  with (jax.debug_nans(True) if request.param == "nans" else jax.debug_infs(True)):
    yield


@pytest.mark.parametrize("name", FUNCTIONS)
def test_functions_raise_nothing_under_debug_nans_and_infs(name, debug):
  f, x = FUNCTIONS[name], _x()
  w = jnp.asarray(np.random.default_rng(1).normal(size=SHAPE), jnp.float32)
  y = jax.jit(f)(x)
  g = jax.jit(jax.grad(lambda x: jnp.sum(f(x) * w)))(x)
  assert bool(jnp.all(jnp.isfinite(y))) and bool(jnp.all(jnp.isfinite(g)))


LAYERS = {
    "LayerNorm": lambda: dnn.LayerNorm(),
    "GroupNorm": lambda: dnn.GroupNorm(num_groups=4),
    "BatchNorm": lambda: dnn.BatchNorm(use_running_average=False),
    "RMSNorm": lambda: dnn.RMSNorm(),
    "DivisiveNorm": lambda: dnn.DivisiveNorm(summation_window=(3, 3)),
}


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("name", LAYERS)
def test_linen_layers_raise_nothing_under_debug_nans_and_infs(name, masked, debug):
  module, x = LAYERS[name](), _x()
  kwargs = {"mask": _rows()} if masked else {}
  variables = module.init(jax.random.key(0), x, **kwargs)

  def loss(variables, x):
    y, _ = module.apply(variables, x, mutable=["batch_stats"], **kwargs)
    return jnp.sum(y)

  jax.block_until_ready(jax.jit(jax.grad(loss, argnums=(0, 1)))(variables, x))


@pytest.mark.parametrize("masked", [False, True])
def test_nnx_batch_norm_raises_nothing_under_debug_nans_and_infs(masked, debug):
  model, x = dnx.BatchNorm(SHAPE[-1], use_running_average=False, rngs=nnx.Rngs(0)), _x()
  mask = _rows() if masked else None
  grads = nnx.grad(lambda m, x: jnp.sum(m(x, mask=mask)), argnums=(0, 1))(model, x)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_equinox_and_haiku_layers_raise_nothing_under_debug_nans_and_infs(debug):
  """Per example under `vmap` (channels first, as equinox's layers take them), and haiku's
  BatchNorm in training, which sums over the batch itself."""
  import equinox as eqx
  import haiku as hk

  from divnorm import equinox as dqx
  from divnorm import haiku as dhk

  nchw = jnp.moveaxis(_x(), -1, 1)
  for layer in (dqx.LayerNorm(nchw.shape[1:]), dqx.GroupNorm(4, SHAPE[-1]),
                dqx.RMSNorm(nchw.shape[1:])):
    grads = eqx.filter_grad(lambda m, x: jnp.sum(jax.vmap(m)(x)))(layer, nchw)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
  bn, state = eqx.nn.make_with_state(dqx.BatchNorm)(SHAPE[-1], axis_name="batch", mode="batch")
  step = jax.vmap(bn, axis_name="batch", in_axes=(0, None), out_axes=(0, None))
  eqx.filter_grad(lambda bn, x: jnp.sum(step(x, state)[0]))(bn, nchw)
  f = hk.transform_with_state(lambda x: dhk.BatchNorm(True, True, 0.9)(x, is_training=True))
  params, state = f.init(jax.random.key(0), _x())
  jax.block_until_ready(jax.grad(lambda p: jnp.sum(f.apply(p, state, None, _x())[0]))(params))
