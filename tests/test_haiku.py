"""divnorm.haiku against haiku 0.0.17's own layers: the same parameters and state (names,
shapes, dtypes), so a haiku model's load into divnorm's; the same outputs, running averages
and gradients within float32 rounding; statistics accurate at offsets where haiku's
one-pass variances are not; the paper's DivisiveNorm as a haiku module; errors.

haiku's own normalization tests run against divnorm.haiku in
tests/compat/test_haiku_normalization.py.
"""

import doctest

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import divnorm
from divnorm import haiku as dhk
from divnorm._src import haiku as haiku_impl


def _x(shape=(4, 6, 5, 8), offset=3.0, seed=0):
  return jax.random.normal(jax.random.key(seed), shape) * 2 + offset


def _randomized(tree, seed=1):
  """Parameters or state with random values (scale and offset away from 1 and 0)."""
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return treedef.unflatten([
      leaf if not jnp.issubdtype(leaf.dtype, jnp.floating) else
      (jax.random.uniform(k, leaf.shape, leaf.dtype, 0.5, 1.5)) for k, leaf in zip(
          keys, leaves, strict=True)])


# (make(lib) -> layer, call args): every haiku layer, at defaults and at other settings.
LAYERS = {
  "LayerNorm": (lambda m: m.LayerNorm(-1, True, True), ()),
  "LayerNorm-axes-fast": (lambda m: m.LayerNorm((1, 2, 3), True, True, param_axis=-1,
                                                use_fast_variance=True), ()),
  "LayerNorm-param_axis": (lambda m: m.LayerNorm(-1, True, True, param_axis=(0, 3)), ()),
  "LayerNorm-slice-no-affine": (lambda m: m.LayerNorm(slice(1, -1), False, False,
                                                      param_axis=-1), ()),
  "InstanceNorm": (lambda m: m.InstanceNorm(True, True), ()),
  "InstanceNorm-NCHW": (lambda m: m.InstanceNorm(True, False, data_format="NCHW"), ()),
  "RMSNorm": (lambda m: m.RMSNorm(-1), ()),
  "RMSNorm-axes": (lambda m: m.RMSNorm((2, 3), eps=1e-3, param_axis=(2, 3)), ()),
  "GroupNorm": (lambda m: m.GroupNorm(4), ()),
  "GroupNorm-NCHW": (lambda m: m.GroupNorm(2, data_format="channels_first"), ()),
  "GroupNorm-spatial-and-channels": (lambda m: m.GroupNorm(2, axis=(1, 3)), ()),
  "GroupNorm-per-channel": (lambda m: m.GroupNorm(2, axis=(1, 2)), ()),
  "BatchNorm-train": (lambda m: m.BatchNorm(True, True, 0.9), (True,)),
  "BatchNorm-NCHW-axes": (lambda m: m.BatchNorm(True, False, 0.5, eps=1e-3, axis=[0, 2]),
                          (True,)),
  "BatchNorm-local-stats": (lambda m: m.BatchNorm(False, True, 0.9), (False, True)),
}


def _transformed(lib, name, fn=None):
  make, args = LAYERS[name]
  return hk.transform_with_state(fn or (lambda x: make(lib)(x, *args)))


@pytest.mark.parametrize("name", LAYERS)
def test_variables_and_outputs_are_haiku_s(name):
  """Initialized from haiku's layer, divnorm's creates the same variables and, applied to
  haiku's (randomized) parameters and state, gives haiku's output and new state."""
  x = _x()
  theirs, ours = _transformed(hk, name), _transformed(dhk, name)
  params, state = theirs.init(jax.random.key(0), x)
  our_params, our_state = ours.init(jax.random.key(0), x)
  spec = lambda t: jax.tree.map(lambda a: (a.shape, a.dtype), t)
  assert spec(our_params) == spec(params) and spec(our_state) == spec(state)
  params, state = _randomized(params), _randomized(state, seed=2)
  want, want_state = theirs.apply(params, state, None, x)
  got, got_state = ours.apply(params, state, None, x)
  assert got.dtype == want.dtype
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5),
               got_state, want_state)


@pytest.mark.loose_promotion  # haiku's BatchNorm, jitted: its debiasing raises under strict
@pytest.mark.parametrize("name", ["LayerNorm", "GroupNorm", "RMSNorm", "BatchNorm-train"])
def test_gradients_are_haiku_s(name):
  x = _x((4, 3, 3, 8))
  theirs, ours = _transformed(hk, name), _transformed(dhk, name)
  params, state = theirs.init(jax.random.key(0), x)
  params = _randomized(params)

  def grads(f):
    loss = lambda p, x: jnp.sum(jnp.sin(f.apply(p, state, None, x)[0]))
    return jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)

  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4),
               grads(ours), grads(theirs))


@pytest.mark.loose_promotion  # haiku's BatchNorm, jitted: its debiasing raises under strict
def test_batch_norm_trains_and_evaluates_as_haiku_s():
  """Five training steps (haiku's zero-debiased running averages, in its state), then
  evaluation with those averages, each step's output and state as haiku's."""
  fn = lambda lib: lambda x, training: lib.BatchNorm(True, True, 0.9)(x, training)
  theirs, ours = (hk.transform_with_state(fn(lib)) for lib in (hk, dhk))
  params, state = theirs.init(jax.random.key(0), _x(), True)
  params, our_state = _randomized(params), state
  for step in range(5):
    x = _x(seed=step)
    want, state = jax.jit(theirs.apply, static_argnums=4)(params, state, None, x, True)
    got, our_state = jax.jit(ours.apply, static_argnums=4)(params, our_state, None, x, True)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5),
               our_state, state)
  x = _x(seed=9)
  np.testing.assert_allclose(ours.apply(params, our_state, None, x, False)[0],
                             theirs.apply(params, state, None, x, False)[0],
                             rtol=2e-5, atol=2e-5)


@pytest.mark.loose_promotion  # haiku's BatchNorm, jitted: its debiasing raises under strict
def test_a_haiku_model_s_checkpoint_loads_into_divnorm_s_layers():
  """A small CNN built with haiku's normalizers, trained three steps; its parameters and
  state, through a NumPy round trip, run in the same CNN built with divnorm's, in training
  and in evaluation."""

  def cnn(lib):
    def forward(x, training):
      h = hk.Conv2D(8, 3)(x)
      h = jax.nn.relu(lib.BatchNorm(True, True, 0.9)(h, training))
      h = jax.nn.relu(lib.GroupNorm(4)(hk.Conv2D(8, 3)(h)))
      h = lib.LayerNorm((1, 2, 3), True, True, param_axis=-1)(h)
      return hk.Linear(3)(lib.RMSNorm(-1)(jnp.mean(h, (1, 2))))
    return hk.transform_with_state(forward)

  theirs, ours = cnn(hk), cnn(dhk)
  x = _x((8, 6, 6, 3))
  params, state = theirs.init(jax.random.key(0), x, True)
  loss = lambda p, s: (lambda out: (jnp.sum(out[0] ** 2), out[1]))(
      theirs.apply(p, s, None, x, True))
  for _ in range(3):
    grads, state = jax.jit(jax.grad(loss, has_aux=True))(params, state)
    params = jax.tree.map(lambda a, g: a - 0.05 * g, params, grads)
  params, state = jax.tree.map(np.asarray, (params, state))  # the saved checkpoint
  assert jax.tree.structure(ours.init(jax.random.key(0), x, True)) == jax.tree.structure(
      (params, state))
  for training in (True, False):
    want, want_state = theirs.apply(params, state, None, x, training)
    got, got_state = ours.apply(params, state, None, x, training)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
                 got_state, want_state)


def test_batch_norm_pools_a_vmapped_axis_as_one_batch():
  """`cross_replica_axis` under `vmap`: the statistics of the whole batch."""
  fn = hk.transform_with_state(lambda x: dhk.BatchNorm(False, False, 0.9,
                                                        cross_replica_axis="i")(x, True))
  x = _x((8, 5))
  params, state = jax.vmap(fn.init, (None, 0), axis_name="i")(jax.random.key(0), x)
  y, _ = jax.vmap(fn.apply, (None, None, None, 0), axis_name="i")(
      params, jax.tree.map(lambda s: s[0], state), None, x)
  x64 = np.asarray(x, np.float64)
  want = (x64 - x64.mean(0)) / np.sqrt(x64.var(0) + 1e-5)
  np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("offset", [1e4, 1e6])
@pytest.mark.parametrize("name,make,args", [
    ("LayerNorm(use_fast_variance=True)",
     lambda m: m.LayerNorm(-1, False, False, use_fast_variance=True), ()),
    ("LayerNorm", lambda m: m.LayerNorm(-1, False, False), ()),
    ("BatchNorm", lambda m: m.BatchNorm(False, False, 0.9), (True,)),
    ("GroupNorm", lambda m: m.GroupNorm(2, create_scale=False, create_offset=False), ()),
])
def test_statistics_are_accurate_at_large_offsets(name, make, args, offset):
  """At offsets of 1e4 and 1e6, divnorm's float32 layers stay within 2e-6 of the same
  float32 input normalized in float64 (measured: at most 7.7e-7). haiku's one-pass variances
  (LayerNorm's use_fast_variance, BatchNorm's) are negative there, and its outputs NaN;
  its two-pass LayerNorm and GroupNorm are off by 7.6e-4 and 9.4e-4 at 1e4, 0.063 and 0.089
  at 1e6 (docs/compatibility.md)."""
  x = jnp.asarray(_x((16, 64), offset=offset))
  f = hk.transform_with_state(lambda x: make(dhk)(x, *args))
  params, state = f.init(jax.random.key(0), x)
  got = f.apply(params, state, None, x)[0]
  with jax.enable_x64(True):
    want = np.asarray(f.apply(params, state, None, jnp.asarray(np.asarray(x), jnp.float64))[0])
  assert got.dtype == jnp.float32 and want.dtype == np.float64
  np.testing.assert_allclose(got, want, atol=2e-6)


@pytest.mark.parametrize("name", ["LayerNorm", "RMSNorm", "GroupNorm", "BatchNorm-train",
                                  "InstanceNorm"])
def test_bfloat16_in_bfloat16_out_with_float32_statistics(name):
  x = _x((4, 6, 5, 8))
  ours = _transformed(dhk, name)
  params, state = ours.init(jax.random.key(0), x.astype(jnp.bfloat16))
  assert all(a.dtype == jnp.bfloat16 for a in jax.tree.leaves(params))
  got = ours.apply(params, state, None, x.astype(jnp.bfloat16))[0]
  want = ours.apply(jax.tree.map(lambda a: a.astype(jnp.float32), params),
                    jax.tree.map(lambda a: a.astype(jnp.float32) if a.dtype == jnp.bfloat16
                                 else a, state), None,
                    x.astype(jnp.bfloat16).astype(jnp.float32))[0]
  assert got.dtype == jnp.bfloat16
  np.testing.assert_allclose(got.astype(jnp.float32), want, rtol=1e-2, atol=1e-2)


def test_divisive_norm_is_the_function_with_haiku_s_affine():
  x = _x((2, 8, 8, 6))
  f = hk.transform(lambda x, **kw: dhk.DivisiveNorm((3, 5), sigma=0.5, create_scale=True,
                                                    create_offset=True)(x, **kw))
  params = _randomized(f.init(jax.random.key(0), x))
  assert jax.tree.map(jnp.shape, params) == {"divisive_norm": {"offset": (6,), "scale": (6,)}}
  y, v = f.apply(params, None, x, return_centered=True)
  want, want_v = divnorm.divisive_norm(x, summation_window=(3, 5), sigma=0.5,
                                       return_centered=True)
  scale, offset = (params["divisive_norm"][k][None, None, None] for k in ("scale", "offset"))
  np.testing.assert_allclose(y, want * scale + offset, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(v, want_v, rtol=1e-6, atol=1e-6)


def test_divisive_norm_channels_first_is_channels_last_transposed():
  x = _x((2, 8, 8, 6))
  last = hk.transform(lambda x: dhk.DivisiveNorm(3, 5, sigma=1.0, create_scale=True)(x))
  first = hk.transform(lambda x: dhk.DivisiveNorm(3, 5, sigma=1.0, create_scale=True,
                                                  data_format="NCHW")(x))
  params = _randomized(last.init(jax.random.key(0), x))
  nchw = {"divisive_norm": {"scale": params["divisive_norm"]["scale"].reshape(1, 6, 1, 1)}}
  y = first.apply(nchw, None, jnp.moveaxis(x, -1, 1))
  np.testing.assert_allclose(jnp.moveaxis(y, 1, -1), last.apply(params, None, x),
                             rtol=1e-6, atol=1e-6)


def test_divisive_norm_trains_a_small_haiku_model():
  """The paper's DN* in a haiku MLP: its L1 penalty on ``v`` in the loss, a few SGD steps
  on a fixed batch lower the loss."""
  x = _x((64, 16))
  labels = jnp.argmax(x[:, :4] - x[:, 4:8], axis=-1)  # a rule the model can learn

  def loss_fn(x, labels):
    h = hk.Linear(32)(x)
    h, v = dhk.DivisiveNorm(5, sigma=1.0, create_offset=True)(h, return_centered=True)
    logits = hk.Linear(4)(jax.nn.relu(h))
    one_hot = jax.nn.one_hot(labels, 4)
    return -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * one_hot, -1)) + divnorm.l1_penalty(
        v, 1e-3)

  f = hk.without_apply_rng(hk.transform(loss_fn))
  params = f.init(jax.random.key(0), x, labels)
  step = jax.jit(lambda p: jax.tree.map(lambda a, g: a - 0.2 * g, p,
                                        jax.grad(f.apply)(p, x, labels)))
  first = f.apply(params, x, labels)
  for _ in range(50):
    params = step(params)
  assert f.apply(params, x, labels) < 0.4 * first


@pytest.mark.parametrize("make,error,match", [
    (lambda: dhk.LayerNorm(-1, True, True, eps=-1.0), ValueError, "eps"),
    (lambda: dhk.BatchNorm(True, True, 0.9, eps=float("nan")), ValueError, "eps"),
    (lambda: dhk.RMSNorm("foo"), ValueError, "`axis` should be"),
    (lambda: dhk.LayerNorm(-1, True, True, param_axis="x"), ValueError, "`param_axis`"),
    (lambda: dhk.DivisiveNorm(3, sigma=-1.0), ValueError, "sigma"),
    (lambda: dhk.BatchNorm(True, True, 0.9, cross_replica_axis_index_groups=[[0]]),
     ValueError, "cross_replica_axis"),
])
def test_bad_arguments_name_the_argument(make, error, match):
  with pytest.raises(error, match=match):
    hk.transform(lambda: make()).init(None)


def test_group_norm_errors_as_haiku_s():
  def call(*shapes):
    def f():
      layer = dhk.GroupNorm(2)
      for shape in shapes:
        layer(jnp.ones(shape))
    hk.transform(f).init(jax.random.key(0))

  with pytest.raises(ValueError, match="divisible by the number of groups"):
    call((2, 3, 5))
  with pytest.raises(ValueError, match="rank of the inputs cannot change"):
    call((2, 3, 4), (2, 4))


def test_docstring_examples_run():
  results = doctest.testmod(haiku_impl, globs={}, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert results.attempted >= 6 and results.failed == 0
