"""Under a mesh with Explicit axes (`jax.make_mesh`'s default), a sharded input gives the
numbers of one device, and the output is sharded as the input.

The statistics' shift reads the first entries of each span; JAX refuses a slice of a sharded
axis to a size its devices do not divide, so batch norm over a batch-sharded input failed
(flax's BatchNorm does not slice, and worked), as did layer and group norm with their
features sharded (tensor parallelism; flax's GroupNorm fails there too).
"""

import flax.linen as nn
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import divnorm as dn
from divnorm import haiku as dhk
from divnorm import linen as dnn
from divnorm import nnx as dnx

pytestmark = pytest.mark.loose_promotion  # flax internals

# Sharded against one device: the sums run in another order; outputs are O(1).
ATOL = 2e-5

_RNG = np.random.default_rng(0)
IMAGES = (_RNG.normal(size=(16, 6, 6, 8)) * 2 + 1).astype(np.float32)
TOKENS = (_RNG.normal(size=(8, 6, 16)) * 2 + 1).astype(np.float32)
DATA = P("data")  # on the 1-D mesh: the batch over 8 devices
TENSOR = P("data", None, None, "model")  # on the 2-D mesh: also the channels over 2
TENSOR_TOKENS = P("data", None, "model")


def _data_mesh():
  return jax.make_mesh((8,), ("data",))


def _tensor_mesh():
  return jax.make_mesh((4, 2), ("data", "model"))


def _with_grad(f):
  def loss(x):
    return sum(jnp.sum(jnp.sin(y)) for y in jax.tree.leaves(f(x)) if y.dtype == jnp.float32)
  return lambda x: (f(x), jax.grad(loss)(x))


def _assert_sharded_as_one_device(f, x, mesh, spec, reference=None):
  with jax.set_mesh(mesh):
    xs = jax.device_put(x, NamedSharding(mesh, spec))
    assert mesh.axis_types[0] == jax.sharding.AxisType.Explicit
    (y, *_), dx = got = jax.jit(f)(xs)
  want = jax.jit(reference or f)(x)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(g, w, atol=ATOL, rtol=ATOL)
  assert _spec(dx) == _spec(xs)
  if y.shape == x.shape:
    assert _spec(y) == _spec(xs)


def _spec(a):
  spec = tuple(a.sharding.spec)
  return spec + (None,) * (a.ndim - len(spec))


_STATS = dn.batch_stats_init((8,))


def _mask(x):
  return x > 0.5


FUNCTIONS = {
    "batch_norm": lambda x: dn.batch_norm(x, _STATS, training=True),
    "batch_norm_one_pass": lambda x: dn.batch_norm(x, _STATS, training=True,
                                                   fast_variance=True),
    "batch_norm_masked": lambda x: dn.batch_norm(x, _STATS, training=True, mask=_mask(x)),
    "batch_renorm": lambda x: dn.batch_renorm(x, _STATS, training=True),
    "switchable_norm": lambda x: dn.switchable_norm(
        x, _STATS, mean_weights=jnp.ones(3) / 3, var_weights=jnp.ones(3) / 3, training=True),
    "layer_norm": lambda x: dn.layer_norm(x, reduction_axes=(1, 2, 3)),
    "group_norm": lambda x: dn.group_norm(x, num_groups=2),
    "group_norm_masked": lambda x: dn.group_norm(x, num_groups=2, mask=_mask(x)),
    "instance_norm": lambda x: dn.instance_norm(x),
    "divisive_norm": lambda x: dn.divisive_norm(x, summation_window=(3, 3), sigma=1.0),
    "l1_penalty": lambda x: (x, dn.l1_penalty(x, 0.1)),
}


@pytest.mark.parametrize("name", FUNCTIONS)
def test_a_batch_sharded_input_gives_one_device_s_numbers(name):
  _assert_sharded_as_one_device(_with_grad(FUNCTIONS[name]), IMAGES, _data_mesh(), DATA)


@pytest.mark.parametrize("name", ["batch_norm_masked", "group_norm", "group_norm_masked",
                                  "layer_norm", "divisive_norm"])
def test_channels_sharded_too_give_one_device_s_numbers(name):
  _assert_sharded_as_one_device(_with_grad(FUNCTIONS[name]), IMAGES, _tensor_mesh(), TENSOR)


@pytest.mark.parametrize("f", [dn.layer_norm, dn.rms_norm,
                               lambda x: dn.layer_norm(x, mask=x > 0)],
                         ids=["layer_norm", "rms_norm", "layer_norm_masked"])
def test_features_sharded_give_one_device_s_numbers(f):
  _assert_sharded_as_one_device(_with_grad(f), TOKENS, _tensor_mesh(), TENSOR_TOKENS)


_CHANNELS = P(None, None, None, "model")
_GROUP_NORM = dnn.GroupNorm(num_groups=3)
_GN_VARIABLES = _GROUP_NORM.init(jax.random.key(0), IMAGES[:2, :, :, :6].repeat(2, -1))


@pytest.mark.parametrize("f, shape, devices, spec", [
    (lambda x: dn.group_norm(x, num_groups=3), (4, 4, 4, 12), 4, _CHANNELS),
    (lambda x: dn.group_norm(x, num_groups=4), (2, 4, 4, 16), 8, _CHANNELS),
    (lambda x: _GROUP_NORM.apply(_GN_VARIABLES, x), (4, 4, 4, 12), 2, _CHANNELS),
    (lambda x: dn.local_response_norm(x, size=5), (2, 3, 3, 64), 8, _CHANNELS),
    (lambda x: dn.divisive_norm(x, summation_window=(3, 3), sigma=0.5), (2, 16, 8, 8), 8,
     P(None, "model")),
], ids=["group_norm-3-groups-over-4", "group_norm-4-groups-over-8", "linen-GroupNorm-over-2",
        "local_response_norm-68-padded-over-8", "divisive_norm-18-padded-rows-over-8"])
def test_groups_and_windows_that_devices_split_give_one_device_s_numbers(f, shape, devices,
                                                                         spec):
  """A group whose channels sit on several devices, a window whose padded axis the devices
  do not divide: JAX's types refused the reshape or the pad (the forward, or the gradient's
  pad); the axis is gathered for them, and the output is sharded as the input."""
  x = (np.random.default_rng(1).normal(size=shape) * 2 + 1).astype(np.float32)
  _assert_sharded_as_one_device(_with_grad(f), x, jax.make_mesh((devices,), ("model",)), spec)


@pytest.mark.parametrize("name, kwargs, x, mesh, spec", [
    ("BatchNorm", {"use_running_average": False}, IMAGES, _data_mesh, DATA),
    ("LayerNorm", {}, TOKENS, _tensor_mesh, TENSOR_TOKENS),
    ("RMSNorm", {}, TOKENS, _tensor_mesh, TENSOR_TOKENS),
    ("GroupNorm", {"num_groups": 2}, IMAGES, _data_mesh, DATA),
    ("InstanceNorm", {}, IMAGES, _data_mesh, DATA),
    # flax's own GroupNorm fails here (its jnp.repeat asks for an out_sharding).
    ("GroupNorm", {"num_groups": 2}, IMAGES, _tensor_mesh, TENSOR),
], ids=["BatchNorm", "LayerNorm", "RMSNorm", "GroupNorm", "InstanceNorm", "GroupNorm-tensor"])
def test_a_flax_layer_sharded_gives_flax_s_numbers_on_one_device(name, kwargs, x, mesh, spec):
  ours, theirs = getattr(dnn, name)(**kwargs), getattr(nn, name)(**kwargs)
  variables = theirs.init(jax.random.key(0), x[:2])

  def apply(layer):
    return _with_grad(lambda x: layer.apply(variables, x, mutable=["batch_stats"]))

  _assert_sharded_as_one_device(apply(ours), x, mesh(), spec, reference=apply(theirs))


@pytest.mark.parametrize("name, args, x, mesh, spec", [
    ("BatchNorm", (True, True, 0.9), IMAGES, _data_mesh, DATA),
    ("LayerNorm", (-1, True, True), TOKENS, _tensor_mesh, TENSOR_TOKENS),
    ("RMSNorm", (-1,), TOKENS, _tensor_mesh, TENSOR_TOKENS),
    ("GroupNorm", (2,), IMAGES, _tensor_mesh, TENSOR),
    ("InstanceNorm", (True, True), IMAGES, _data_mesh, DATA),
], ids=["BatchNorm", "LayerNorm", "RMSNorm", "GroupNorm-tensor", "InstanceNorm"])
def test_a_haiku_layer_sharded_gives_haiku_s_numbers_on_one_device(name, args, x, mesh, spec):
  call = (True,) if name == "BatchNorm" else ()
  ours, theirs = (hk.transform_with_state(lambda x, lib=lib: getattr(lib, name)(*args)(x, *call))
                  for lib in (dhk, hk))
  params, state = theirs.init(jax.random.key(0), x[:2])

  def apply(f):
    return _with_grad(lambda x: f.apply(params, state, None, x))

  with jax.numpy_dtype_promotion("standard"):  # haiku's BatchNorm debiasing: float ** int32
    _assert_sharded_as_one_device(apply(ours), x, mesh(), spec, reference=apply(theirs))


def test_an_nnx_training_step_on_a_batch_sharded_input():
  model = nnx.Sequential(dnx.BatchNorm(8, rngs=nnx.Rngs(0)),
                         dnx.GroupNorm(8, num_groups=2, rngs=nnx.Rngs(0)),
                         dnx.LayerNorm(8, rngs=nnx.Rngs(0)))
  graph, state = nnx.split(model)

  @jax.jit
  def step(state, x):
    def loss(state):
      model = nnx.merge(graph, state)
      return jnp.mean(jnp.sin(model(x))), nnx.state(model)
    return jax.value_and_grad(loss, has_aux=True)(state)

  mesh = _data_mesh()
  with jax.set_mesh(mesh):
    got = step(state, jax.device_put(IMAGES, NamedSharding(mesh, DATA)))
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(step(state, IMAGES)), strict=True):
    np.testing.assert_allclose(g, w, atol=ATOL, rtol=ATOL)


@pytest.mark.parametrize("f, axes", [
    (lambda x: dn.batch_norm(x, _STATS, training=True)[0], (0, 1, 2)),
    (lambda x: dn.batch_norm(x, _STATS, training=True, fast_variance=True)[0], (0, 1, 2)),
    (lambda x: dn.layer_norm(x), (3,)),
    (lambda x: dn.group_norm(x, num_groups=2), "groups"),
], ids=["batch_norm", "batch_norm_one_pass", "layer_norm", "group_norm"])
def test_sharded_statistics_keep_their_shift_at_a_large_offset(f, axes):
  """At an offset of 1e4 the statistics hold float32's accuracy only around a shift taken
  from the data; sharded, the shift is gathered, not dropped: within 3e-6 of float64."""
  x = (_RNG.normal(size=(16, 6, 6, 8)) + 1e4).astype(np.float32).astype(np.float64)
  if axes == "groups":
    grouped = x.reshape(16, 6, 6, 2, 4)
    mean = grouped.mean((1, 2, 4), keepdims=True)
    want = ((grouped - mean) / np.sqrt(((grouped - mean) ** 2).mean((1, 2, 4), keepdims=True)))
    want = want.reshape(x.shape)
  else:
    mean = x.mean(axes, keepdims=True)
    want = (x - mean) / np.sqrt(((x - mean) ** 2).mean(axes, keepdims=True))
  mesh = _tensor_mesh()
  with jax.set_mesh(mesh):
    y = jax.jit(f)(jax.device_put(x.astype(np.float32), NamedSharding(mesh, TENSOR)))
  np.testing.assert_allclose(np.asarray(y, np.float64), want, atol=3e-6)
