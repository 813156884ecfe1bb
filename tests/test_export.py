"""`jax.export` with symbolic shapes: a normalizer exported once, for any batch size (or any
sequence length or image size), gives at each size what the jitted function gives there:
the functions, and the linen, NNX, equinox and haiku layers.

flax's layers export so. Ours failed before: Python comparisons of a symbolic size (the shift's
span, the fused-rows size limit, flax's affine fold), NumPy's broadcast and counts of one.
Collectives under `vmap` with a symbolic axis size are JAX's own limit (equinox's BatchNorm
fails there too), so an equinox BatchNorm is not exported here.
"""

import equinox as eqx
import flax.linen as nn
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import export

import divnorm as dn
from divnorm import equinox as deq
from divnorm import haiku as dhk
from divnorm import kernels
from divnorm import linen as dnn
from divnorm import nnx as dnx

pytestmark = pytest.mark.loose_promotion  # flax internals

C = 4
# (symbolic dimensions, the spec's shape from them, concrete shapes checked): size 1 among
# them, where a symbolic size's span holds one entry.
BATCH = ("b", lambda b: (b, 8, 8, C), [(1, 8, 8, C), (3, 8, 8, C)])
IMAGE = ("b, h, w", lambda b, h, w: (b, h, w, C), [(2, 5, 7, C), (1, 9, 9, C)])
SEQUENCE = ("b, t", lambda b, t: (b, t, 16), [(2, 5, 16), (1, 1, 16)])
# A symbolic last axis: the features of a layer, or time in a channels-first sequence.
FEATURES = ("b, d", lambda b, d: (b, d), [(2, 5), (3, 1)])
TIME_LAST = ("b, t", lambda b, t: (b, 8, t), [(2, 8, 5), (1, 8, 1)])

# Exported against jitted: the two programs differ only in rounding (e.g. a span whose size
# is symbolic shifts by its first entry, not by the mean of its first two); outputs are O(1).
ATOL = 1e-5


def _exported(f, dims, spec_shape):
  spec = jax.ShapeDtypeStruct(spec_shape(*export.symbolic_shape(dims)), jnp.float32)
  return export.export(jax.jit(f))(spec)


def _with_grad(f):
  """`f`'s outputs and the gradient of a loss of them (its float32 leaves)."""
  def loss(x):
    return sum(jnp.sum(jnp.sin(y)) for y in jax.tree.leaves(f(x)) if y.dtype == jnp.float32)
  return lambda x: (f(x), jax.grad(loss)(x))


def _assert_exports(f, dims, spec_shape, shapes, reference=None):
  exported = _exported(f, dims, spec_shape)
  for shape in shapes:
    x = jax.random.normal(jax.random.key(len(shape) + shape[0]), shape) * 2 + 1
    got, want = exported.call(x), jax.jit(reference or f)(x)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
      assert g.shape == w.shape
      np.testing.assert_allclose(g, w, atol=ATOL, rtol=ATOL, err_msg=str(shape))


_STATS = dn.batch_stats_init((C,))


def _mask(x):
  return x[..., :1] > 0.5


FUNCTIONS = {
    "normalize_batch_field_masked": (BATCH, lambda x: dn.normalize(
        x, (0, 1, 2), sigma=0.1, mask=jnp.broadcast_to(_mask(x), x.shape))),
    "batch_norm": (IMAGE, lambda x: dn.batch_norm(x, _STATS, training=True)),
    "batch_norm_one_pass_masked": (BATCH, lambda x: dn.batch_norm(
        x, _STATS, training=True, fast_variance=True, mask=_mask(x))),
    "batch_renorm": (BATCH, lambda x: dn.batch_renorm(x, _STATS, training=True)),
    "mean_only_batch_norm": (BATCH, lambda x: dn.mean_only_batch_norm(
        x, dn.mean_stats_init((C,)), training=True)),
    "switchable_norm": (BATCH, lambda x: dn.switchable_norm(
        x, _STATS, mean_weights=jnp.ones(3) / 3, var_weights=jnp.ones(3) / 3, training=True)),
    "layer_norm": (SEQUENCE, lambda x: dn.layer_norm(x)),
    "layer_norm_one_pass_masked": (SEQUENCE, lambda x: dn.layer_norm(
        x, mask=x > 0.5, fast_variance=True)),
    "group_norm_masked": (IMAGE, lambda x: dn.group_norm(x, num_groups=2, mask=x > 0.5)),
    "layer_norm_of_symbolic_features": (FEATURES, lambda x: dn.layer_norm(x)),
    "normalize_over_a_symbolic_last_axis": (TIME_LAST, lambda x: dn.normalize(x, (2,),
                                                                             sigma=0.1)),
    "rms_norm": (SEQUENCE, lambda x: dn.rms_norm(x)),
    "group_norm": (IMAGE, lambda x: dn.group_norm(x, num_groups=2)),
    "instance_norm": (IMAGE, lambda x: dn.instance_norm(x)),
    "divisive_norm": (IMAGE, lambda x: dn.divisive_norm(x, summation_window=(3, 3), sigma=1.0)),
    "divisive_norm_zeros_masked": (IMAGE, lambda x: dn.divisive_norm(
        x, summation_window=(3, 3), suppression_window=(5, 5), sigma=1.0, border="zeros",
        mask=_mask(x))),
    "gaussian_kernels": (IMAGE, lambda x: dn.normalize(
        x, {1: kernels.gaussian(3, sigma=1.0), 2: kernels.gaussian(3, sigma=1.0)}, sigma=0.1,
        border="zeros")),
    "learned_kernel": (IMAGE, lambda x: dn.normalize(
        x, {(1, 2): kernels.learned_kernel(jnp.ones((3, 3)))}, sigma=0.1)),
    "gdn": (IMAGE, lambda x: dn.gdn.gdn(x, beta=jnp.ones(C), gamma=jnp.full((C, C), 0.1))),
    "l1_penalty": (BATCH, lambda x: dn.l1_penalty(x, 0.1)),
}


@pytest.mark.parametrize("name", FUNCTIONS)
def test_a_function_exported_for_symbolic_sizes_agrees_with_jit(name):
  (dims, spec_shape, shapes), f = FUNCTIONS[name]
  _assert_exports(_with_grad(f), dims, spec_shape, shapes)


def test_a_symbolic_last_axis_exports_for_a_cuda_gpu_too():
  """The GPU's row path needs a known row length: a symbolic one takes the core's path on
  every platform (the size comparison was inconclusive and failed every export)."""
  dims, spec_shape, _ = FEATURES
  spec = jax.ShapeDtypeStruct(spec_shape(*export.symbolic_shape(dims)), jnp.float32)
  exported = export.export(jax.jit(dn.layer_norm), platforms=("cpu", "cuda"))(spec)
  assert exported.platforms == ("cpu", "cuda")


def test_a_masked_layer_norm_exports_for_a_cuda_gpu_too():
  """The masked shift searches a prefix under a cond on CPU only (`shift.py`); a program
  exported for both platforms carries both searches, and runs here as the jitted one."""
  (dims, spec_shape, shapes), f = FUNCTIONS["layer_norm_one_pass_masked"]
  spec = jax.ShapeDtypeStruct(spec_shape(*export.symbolic_shape(dims)), jnp.float32)
  exported = export.export(jax.jit(_with_grad(f)), platforms=("cpu", "cuda"))(spec)
  x = jax.random.normal(jax.random.key(0), shapes[0]) * 2 + 1
  for g, w in zip(jax.tree.leaves(exported.call(x)), jax.tree.leaves(jax.jit(_with_grad(f))(x)),
                  strict=True):
    np.testing.assert_allclose(g, w, atol=ATOL, rtol=ATOL)


FLAX_LAYERS = {
    "LayerNorm": (SEQUENCE, {}),
    "RMSNorm": (SEQUENCE, {}),
    "BatchNorm": (IMAGE, {"use_running_average": False}),
    "GroupNorm": (IMAGE, {"num_groups": 2}),
    "InstanceNorm": (IMAGE, {}),
}


@pytest.mark.parametrize("name", FLAX_LAYERS)
def test_a_flax_layer_exports_as_flax_s_own(name):
  """The drop-in exported for symbolic sizes gives flax's jitted numbers, state included."""
  (dims, spec_shape, shapes), kwargs = FLAX_LAYERS[name]
  ours, theirs = getattr(dnn, name)(**kwargs), getattr(nn, name)(**kwargs)
  variables = theirs.init(jax.random.key(0), jnp.ones(shapes[0]))
  def apply(layer):
    return lambda x: layer.apply(variables, x, mutable=["batch_stats"])
  _assert_exports(apply(ours), dims, spec_shape, shapes, reference=apply(theirs))


@pytest.mark.parametrize("layer", [
    lambda: dnn.DivisiveNorm((3, 3), sigma=1.0, use_scale=True),
    lambda: dnn.GDN(),
    lambda: dnn.CenterSurroundNorm(group_size=2),
    lambda: dnn.SwitchableNorm(use_running_average=False),
], ids=["DivisiveNorm", "GDN", "CenterSurroundNorm", "SwitchableNorm"])
def test_divnorm_s_own_linen_layers_export(layer):
  dims, spec_shape, shapes = IMAGE
  layer = layer()
  variables = layer.init(jax.random.key(0), jnp.ones(shapes[0]))
  apply = _with_grad(lambda x: layer.apply(variables, x, mutable=True)[0])
  _assert_exports(apply, dims, spec_shape, shapes)


def test_nnx_layers_export_with_their_state_as_an_argument():
  """nnx's functional form: the graph split once, its state an argument of the export."""
  dims, spec_shape, shapes = IMAGE
  model = nnx.Sequential(dnx.BatchNorm(C, rngs=nnx.Rngs(0)),
                         dnx.DivisiveNorm(summation_window=(3, 3), sigma=1.0),
                         dnx.GroupNorm(C, num_groups=2, rngs=nnx.Rngs(0)))
  graph, state = nnx.split(model)

  def forward(state, x):
    model = nnx.merge(graph, state)
    return model(x), nnx.state(model)

  spec = jax.ShapeDtypeStruct(spec_shape(*export.symbolic_shape(dims)), jnp.float32)
  exported = export.export(jax.jit(forward))(state, spec)
  for shape in shapes:
    x = jax.random.normal(jax.random.key(shape[1]), shape)
    for g, w in zip(jax.tree.leaves(exported.call(state, x)),
                    jax.tree.leaves(jax.jit(forward)(state, x)), strict=True):
      np.testing.assert_allclose(g, w, atol=ATOL, rtol=ATOL)


@pytest.mark.parametrize("training", [True, False])
def test_haiku_layers_export_with_their_parameters_and_state_as_arguments(training):
  """haiku's transform: the parameters and state (BatchNorm's running averages) are
  arguments of the export; the batch and image sizes are symbolic."""
  dims, spec_shape, shapes = IMAGE

  def model(x, training):
    h = dhk.BatchNorm(True, True, 0.9)(x, training)
    h = dhk.GroupNorm(2)(dhk.DivisiveNorm((3, 3), sigma=1.0, create_scale=True)(h))
    return dhk.RMSNorm(-1)(dhk.LayerNorm((1, 2, 3), True, True, param_axis=-1)(h))

  f = hk.transform_with_state(model)
  params, state = f.init(jax.random.key(0), jnp.ones(shapes[0]), True)
  forward = lambda params, state, x: f.apply(params, state, None, x, training)
  spec = jax.ShapeDtypeStruct(spec_shape(*export.symbolic_shape(dims)), jnp.float32)
  exported = export.export(jax.jit(forward))(params, state, spec)
  for shape in shapes:
    x = jax.random.normal(jax.random.key(shape[1]), shape) * 2 + 1
    for g, w in zip(jax.tree.leaves(exported.call(params, state, x)),
                    jax.tree.leaves(jax.jit(forward)(params, state, x)), strict=True):
      np.testing.assert_allclose(g, w, atol=ATOL, rtol=ATOL)


def test_equinox_layers_export_under_vmap():
  """equinox's layout: one example, channels first, mapped over the batch."""
  model = eqx.nn.Sequential([deq.DivisiveNorm((3, 3), sigma=1.0), deq.GroupNorm(2, C)])
  _assert_exports(_with_grad(jax.vmap(model)), "b, h, w", lambda b, h, w: (b, C, h, w),
                  [(2, C, 5, 7), (1, C, 9, 9)])


def test_an_equinox_batch_norm_exports_for_any_image_size_at_a_fixed_batch():
  """Its batch is a `vmap` axis with a collective, which JAX maps over known sizes only."""
  layer, state = eqx.nn.make_with_state(deq.BatchNorm)(C, axis_name="batch", mode="ema")

  def forward(x, state):
    return jax.vmap(layer, axis_name="batch", in_axes=(0, None), out_axes=(0, None))(x, state)

  h, w = export.symbolic_shape("h, w")
  exported = export.export(jax.jit(forward))(jax.ShapeDtypeStruct((3, C, h, w), jnp.float32),
                                             state)
  for shape in [(3, C, 5, 7), (3, C, 1, 9)]:
    x = jax.random.normal(jax.random.key(shape[2]), shape) * 2 + 1
    for g, want in zip(jax.tree.leaves(exported.call(x, state)),
                       jax.tree.leaves(jax.jit(forward)(x, state)), strict=True):
      np.testing.assert_allclose(g, want, atol=ATOL, rtol=ATOL)
