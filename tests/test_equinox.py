"""divnorm.equinox: equinox's numbers, signatures, state and checkpoints; the paper's layers.

equinox's own normalization tests are ported in tests/compat/test_equinox_normalization.py;
these compare with `eqx.nn` directly, with the functional core, and at the edges.
"""

import doctest
import functools
import inspect
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import divnorm
from divnorm import equinox as dqx
from divnorm import linen as dnn
from divnorm._src import equinox as equinox_impl
from divnorm._src import equinox_extra

NAMES = ("LayerNorm", "RMSNorm", "GroupNorm", "BatchNorm")


def _x(shape, seed=0, offset=0.0):
  return offset + 2.0 * jax.random.normal(jax.random.key(seed), shape)


def _randomize(module, seed=1):
  """The module with every float array perturbed (the affine parameters are tested too)."""
  leaves, tree = jax.tree.flatten(module)
  keys = iter(jax.random.split(jax.random.key(seed), len(leaves)))
  leaves = [a + 0.3 * jax.random.normal(next(keys), a.shape, a.dtype)
            if eqx.is_inexact_array(a) else a for a in leaves]
  return jax.tree.unflatten(tree, leaves)


def _load(ours, theirs):
  """`theirs`'s arrays in `ours`, leaf by leaf (what a checkpoint restore does)."""
  assert len(jax.tree.leaves(ours)) == len(jax.tree.leaves(theirs))
  return jax.tree.unflatten(jax.tree.structure(ours), jax.tree.leaves(theirs))


@pytest.mark.parametrize("name", NAMES)
def test_signature_is_equinox_then_keyword_only_sigma(name):
  theirs = list(inspect.signature(getattr(eqx.nn, name).__init__).parameters.values())
  ours = list(inspect.signature(getattr(dqx, name).__init__).parameters.values())
  assert [(p.name, p.kind, p.default) for p in ours[:len(theirs)]] == [
    (p.name, p.kind, p.default) for p in theirs]
  assert [p.name for p in ours[len(theirs):]] == ["sigma"]
  assert ours[-1].kind == inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize("make,shape", [
  (lambda m: m.LayerNorm((5, 6)), (5, 6)),
  (lambda m: m.LayerNorm(6, eps=1e-3, use_bias=False), (6,)),
  (lambda m: m.RMSNorm((5, 6)), (5, 6)),
  (lambda m: m.RMSNorm(6, use_weight=False), (6,)),
  (lambda m: m.GroupNorm(2, 6), (6, 4, 5)),
  (lambda m: m.GroupNorm(3, 6, eps=1e-2), (6,)),
  (lambda m: m.GroupNorm(3, channelwise_affine=False), (6, 7)),
])
def test_stateless_layers_equal_equinox(make, shape):
  theirs = _randomize(make(eqx.nn))
  ours = _load(make(dqx), theirs)
  x = _x(shape, offset=3.0)
  np.testing.assert_allclose(ours(x), theirs(x), rtol=2e-5, atol=2e-5)
  state = eqx.nn.State(eqx.nn.Identity())
  y, same = ours(x, state)
  assert same is state
  np.testing.assert_allclose(y, theirs(x), rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("mode", ["ema", "batch"])
@pytest.mark.parametrize("shape", [(8, 3), (8, 3, 4, 5)])
def test_batch_norm_equals_equinox_in_training_and_inference(mode, shape):
  theirs, state_theirs = eqx.nn.make_with_state(eqx.nn.BatchNorm)(3, "batch", momentum=0.9,
                                                                   mode=mode)
  theirs = _randomize(theirs)
  ours, state_ours = eqx.nn.make_with_state(dqx.BatchNorm)(3, "batch", momentum=0.9,
                                                           mode=mode)
  ours = _load(ours, theirs)

  def run(model, x, state, inference):
    return jax.vmap(lambda xi, s: model(xi, s, inference=inference), (0, None), (0, None),
                    axis_name="batch")(x, state)

  for step in range(3):
    x = _x(shape, seed=step, offset=step)
    y_theirs, state_theirs = run(theirs, x, state_theirs, False)
    y_ours, state_ours = run(ours, x, state_ours, False)
    np.testing.assert_allclose(y_ours, y_theirs, rtol=1e-5, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               jax.tree.leaves(state_ours), jax.tree.leaves(state_theirs))
  x = _x(shape, seed=9)
  np.testing.assert_allclose(run(ours, x, state_ours, True)[0],
                             run(theirs, x, state_theirs, True)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["ema", "batch"])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("inference", [False, True])
@pytest.mark.parametrize("state_dtype", [None, jnp.bfloat16])
def test_batch_norm_output_dtype_of_a_bfloat16_input_is_equinox_s(mode, affine, inference,
                                                                  state_dtype):
  # The statistics used promote the output: mode="batch" in training uses the batch's own,
  # so without an affine step a bfloat16 input gives bfloat16 (it gave float32, the
  # float32 state's); where equinox raises (ema training with a float32 state), ours runs.
  x = _x((6, 3), seed=2).astype(jnp.bfloat16)
  dtypes = []
  for lib in (eqx.nn, dqx):
    bn, state = eqx.nn.make_with_state(lib.BatchNorm)(3, "batch", channelwise_affine=affine,
                                                      mode=mode, dtype=state_dtype)
    call = jax.vmap(lambda x, s, bn=bn: bn(x, s, inference=inference), (0, None), (0, None),
                    axis_name="batch")
    try:
      with jax.numpy_dtype_promotion("standard"):  # equinox's promotions (ours: either)
        dtypes.append(call(x, state)[0].dtype)
    except TypeError:  # equinox 0.13.8: lax.select of its float32 state and bfloat16 stats
      assert lib is eqx.nn and mode == "ema" and not inference and state_dtype is None
      dtypes.append(None)
  assert dtypes[0] in (None, dtypes[1]), dtypes


@pytest.mark.parametrize("mode", ["ema", "batch"])
def test_batch_norm_with_a_bfloat16_dtype_trains_on_float32_input(mode):
  # equinox 0.13.8 raises at its state update (bf16 state, f32 statistics); divnorm keeps
  # the state's dtype and promotes the output, as equinox does for bfloat16 input.
  x = _x((6, 3, 4), offset=3.0)
  def run(lib, dtype):
    bn, state = eqx.nn.make_with_state(lib.BatchNorm)(3, "batch", momentum=0.5, mode=mode,
                                                      dtype=dtype)
    for _ in range(2):
      y, state = jax.vmap(bn, (0, None), (0, None), axis_name="batch")(x, state)
    return y, state
  y, state = run(dqx, jnp.bfloat16)
  y32, state32 = run(dqx, jnp.float32)
  assert y.dtype == jnp.float32
  np.testing.assert_allclose(y, y32, rtol=2e-2, atol=2e-2)  # bfloat16 parameters: 8 bits
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(state32), strict=True):
    assert a.dtype == (b.dtype if b.dtype in (jnp.bool_, jnp.int32) else jnp.bfloat16)
    np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), rtol=2e-2,
                               atol=2e-2)
  with jax.numpy_dtype_promotion("standard"), pytest.raises(
      ValueError, match="different structures/shapes/dtypes"):
    run(eqx.nn, jnp.bfloat16)  # docs/compatibility.md; when this passes, update the docs


def test_batch_norm_axis_name_equals_whole_batch_statistics():
  bn, state = eqx.nn.make_with_state(dqx.BatchNorm)(4, "batch", channelwise_affine=False,
                                                    mode="batch")
  x = _x((6, 4, 5), offset=100.0)
  y, state = jax.vmap(bn, (0, None), (0, None), axis_name="batch")(x, state)
  x64 = np.asarray(x, np.float64)
  mean, var = x64.mean((0, 2), keepdims=True), x64.var((0, 2), keepdims=True)
  np.testing.assert_allclose(y, (x64 - mean) / np.sqrt(var + 1e-5), atol=2e-5)
  np.testing.assert_allclose(state.get(bn.batch_state_index)[0], 0.01 * mean.ravel(),
                             rtol=1e-5)


class _Model(eqx.Module):
  layers: tuple

  def __init__(self, nn, key):
    k1, k2 = jax.random.split(key)
    self.layers = (eqx.nn.Conv2d(3, 8, 3, key=k1), nn.GroupNorm(2, 8),
                   nn.BatchNorm(8, "batch", mode="batch"), nn.LayerNorm((8, 6, 6)),
                   eqx.nn.Lambda(lambda h: h.mean((1, 2))), nn.RMSNorm(8),
                   eqx.nn.Linear(8, 2, key=k2))

  def __call__(self, x, state):
    for layer in self.layers:
      x, state = layer(x, state) if isinstance(layer, eqx.nn.StatefulLayer) else (
          layer(x), state)
    return x, state


@pytest.mark.slow
@pytest.mark.loose_promotion  # optax's internals
def test_checkpoint_of_equinox_model_loads(tmp_path):
  """A model trained with eqx.nn's layers, saved by tree_serialise_leaves, loads into the
  same model built with divnorm's and gives the same outputs and state."""
  import optax

  model, state = eqx.nn.make_with_state(_Model)(eqx.nn, jax.random.key(0))
  x, target = _x((4, 3, 8, 8)), _x((4, 2), seed=1)
  optimizer = optax.adam(1e-2)
  opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))

  def loss(model, state):
    y, state = jax.vmap(model, (0, None), (0, None), axis_name="batch")(x, state)
    return jnp.mean((y - target) ** 2), state

  losses = []
  for _ in range(3):
    (value, state), grads = eqx.filter_value_and_grad(loss, has_aux=True)(model, state)
    updates, opt_state = optimizer.update(grads, opt_state)
    model = eqx.apply_updates(model, updates)
    losses.append(float(value))
  assert losses[-1] < losses[0]
  eqx.tree_serialise_leaves(tmp_path / "model.eqx", (model, state))
  ours, ours_state = eqx.nn.make_with_state(_Model)(dqx, jax.random.key(1))
  ours, ours_state = eqx.tree_deserialise_leaves(tmp_path / "model.eqx", (ours, ours_state))
  for inference in (False, True):
    model_i, ours_i = (eqx.nn.inference_mode(m, inference) for m in (model, ours))
    want, want_state = loss(model_i, state)
    got, got_state = loss(ours_i, ours_state)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 jax.tree.leaves(got_state), jax.tree.leaves(want_state))


def test_bfloat16_in_bfloat16_out_with_float32_statistics():
  x = _x((64,), offset=1000.0).astype(jnp.bfloat16)
  for layer in (dqx.LayerNorm(64), dqx.RMSNorm(64), dqx.GroupNorm(4, 64)):
    y = layer(x)
    assert y.dtype == jnp.bfloat16
    x32 = np.asarray(x, np.float64).reshape(4, 16) if isinstance(layer, dqx.GroupNorm) else (
        np.asarray(x, np.float64))
    if isinstance(layer, dqx.RMSNorm):
      want = x32 / np.sqrt((x32 ** 2).mean() + 1e-5)
    else:
      want = (x32 - x32.mean(-1, keepdims=True)) / np.sqrt(x32.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(np.asarray(y, np.float32), want.reshape(64), atol=2e-2)


def test_group_norm_under_vmap_has_equinox_gradients_at_many_channels():
  """Channels first under vmap, at the shape where XLA's CPU backend miscompiled the group
  sums by matmuls (gradients up to 0.07 off where they reach 5; `reductions.group_sum`)."""
  x, w = _x((8, 768, 512), seed=5), _x((8, 768, 512), seed=6)

  def gradient(layer):
    return jax.jit(jax.grad(lambda x: jnp.sum(jax.vmap(layer)(x) * w)))(x)

  want = gradient(eqx.nn.GroupNorm(8, 768))
  np.testing.assert_allclose(gradient(dqx.GroupNorm(8, 768)), want,
                             atol=2e-5 * float(jnp.abs(want).max()))


def test_sigma_is_the_other_spelling_of_eps():
  x = _x((10,))
  np.testing.assert_allclose(dqx.LayerNorm(10, sigma=0.5)(x), dqx.LayerNorm(10, eps=0.25)(x),
                             rtol=1e-6)
  assert dqx.BatchNorm(3, "b", mode="batch", sigma=0.1).eps == pytest.approx(0.01)
  with pytest.raises(ValueError, match="eps=0.1 and sigma=0.5"):
    dqx.LayerNorm(10, eps=0.1, sigma=0.5)
  with pytest.raises(ValueError, match="eps=-1"):
    dqx.RMSNorm(10, eps=-1.0)
  with pytest.raises(TypeError, match="eps='1e-5' is not a real number"):
    dqx.GroupNorm(2, 4, eps="1e-5")
  with pytest.raises(ValueError, match=r"groups=3 does not divide .* \[1, 2, 4\]"):
    dqx.GroupNorm(3, 4)
  with pytest.raises(ValueError, match="shape == x.shape"):
    dqx.LayerNorm(10)(jnp.ones((2, 10)))


@pytest.mark.slow
def test_divisive_norm_equals_the_function_per_example():
  x_BxHxWxC = _x((3, 9, 8, 4), offset=2.0)
  x_BxCxHxW = jnp.moveaxis(x_BxHxWxC, -1, 1)
  for kwargs in (dict(), dict(suppression_window=(5, 3), border="zeros"),
                 dict(across_channels=False)):
    want = divnorm.divisive_norm(x_BxHxWxC, summation_window=(3, 5), sigma=0.5, **kwargs)
    layer = dqx.DivisiveNorm((3, 5), sigma=0.5, **{
      k: v for k, v in kwargs.items() if k != "suppression_window"},
      suppression_window=kwargs.get("suppression_window"))
    np.testing.assert_allclose(jnp.moveaxis(jax.vmap(layer)(x_BxCxHxW), 1, -1), want,
                               rtol=1e-5, atol=1e-5)
  units = _x((4, 16))
  np.testing.assert_allclose(jax.vmap(dqx.DivisiveNorm(5, sigma=1.0))(units),
                             divnorm.divisive_norm(units, summation_window=5, sigma=1.0),
                             rtol=1e-5, atol=1e-5)


def test_dn_star_takes_the_centered_input_for_its_l1_penalty():
  """``return_centered=True`` gives ``(y, v)`` as the function does; the L1 penalty of the
  whole batch's `v` is the linen DN*'s sown penalty, and `state` still passes through."""
  x = _x((3, 9, 8, 4), offset=2.0)
  layer = dqx.DivisiveNorm((3, 5), sigma=0.5)
  y, v = jax.vmap(lambda x: layer(jnp.moveaxis(x, -1, 0), return_centered=True))(x)
  y_f, v_f = divnorm.divisive_norm(x, summation_window=(3, 5), sigma=0.5, return_centered=True)
  np.testing.assert_allclose(jnp.moveaxis(y, 1, -1), y_f, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(jnp.moveaxis(v, 1, -1), v_f, rtol=1e-5, atol=1e-5)
  linen = dnn.DivisiveNorm((3, 5), sigma=0.5, l1_alpha=1e-3)
  _, sown, _ = dnn.apply_with_penalty(linen, {}, x)
  np.testing.assert_allclose(divnorm.l1_penalty(v, 1e-3), sown, rtol=1e-5)
  state = object()
  (y1, v1), same = layer(x[0].transpose(2, 0, 1), state, return_centered=True)
  assert same is state and y1.shape == v1.shape == (4, 9, 8)
  z, _ = dqx.Normalize({0: None, 1: 3, 2: 5}, sigma=0.5)(x[0].transpose(2, 0, 1),
                                                        return_centered=True)
  np.testing.assert_allclose(z, y1, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_normalize_lrn_gdn_equal_the_functions():
  x = _x((2, 4, 6, 6))
  field = {1: None, 2: 3, 3: 3}
  np.testing.assert_allclose(jax.vmap(dqx.Normalize({0: None, 1: 3, 2: 3}, sigma=0.2))(x),
                             divnorm.normalize(x, field, sigma=0.2), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(jax.vmap(dqx.LocalResponseNorm(3, alpha=0.1))(x),
                             divnorm.local_response_norm(x, size=3, alpha=0.1, channel_axis=1),
                             rtol=1e-6)
  gdn = _randomize(dqx.GDN(4, inverse=True))
  beta, gamma = divnorm.gdn.gdn_values(divnorm.gdn.GDNParams(gdn.beta, gdn.gamma))
  np.testing.assert_allclose(jax.vmap(gdn)(x), divnorm.gdn.igdn(
    x, beta=beta, gamma=gamma, channel_axis=1), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.loose_promotion  # optax's internals
def test_learned_sigma_gets_a_gradient_and_trains():
  import optax

  x = _x((8, 3, 6, 6))
  target = jax.vmap(dqx.DivisiveNorm(3, sigma=2.0))(x)
  layer = dqx.DivisiveNorm(3, sigma=0.5, learn_sigma=True)
  np.testing.assert_allclose(jnp.exp(layer.log_sigma), 0.5, rtol=1e-6)
  optimizer = optax.adam(0.1)
  opt_state = optimizer.init(eqx.filter(layer, eqx.is_inexact_array))

  @eqx.filter_jit
  def step(layer, opt_state):
    grads = eqx.filter_grad(lambda m: jnp.mean((jax.vmap(m)(x) - target) ** 2))(layer)
    updates, opt_state = optimizer.update(grads, opt_state)
    return eqx.apply_updates(layer, updates), opt_state

  for _ in range(60):
    layer, opt_state = step(layer, opt_state)
  np.testing.assert_allclose(jnp.exp(layer.log_sigma), 2.0, rtol=0.05)
  with pytest.raises(ValueError, match="must be > 0"):
    dqx.Normalize((0,), learn_sigma=True)


@pytest.mark.slow
def test_docstring_examples_run():
  """Each example runs as written in a fresh interpreter: empty globals, its own imports."""
  for module in (equinox_impl, equinox_extra):
    results = doctest.testmod(module, globs={}, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert results.attempted > 0 and results.failed == 0, module.__name__


@pytest.mark.parametrize("name", ["MeanOnlyBatchNorm", "BatchRenorm", "BatchInstanceNorm",
                                  "SwitchableNorm"])
def test_running_layers_equal_the_functions_on_the_whole_batch(name):
  """vmapped over the batch with axis_name, each layer is its `divnorm.mixtures` function of
  the whole NHWC batch, in training (output and running statistics) and in inference."""
  from divnorm import mixtures

  x_BxCxHxW = _x((4, 3, 5, 6), offset=1.0)
  x_BxHxWxC = jnp.moveaxis(x_BxCxHxW, 1, -1)
  kwargs = {} if name == "MeanOnlyBatchNorm" else {"sigma": 0.1}
  layer, state = eqx.nn.make_with_state(getattr(dqx, name))(3, "batch", momentum=0.9, **kwargs)
  stats = (mixtures.mean_stats_init if name == "MeanOnlyBatchNorm" else
           divnorm.batch_stats_init)(x_BxHxWxC)
  function = {
    "MeanOnlyBatchNorm": mixtures.mean_only_batch_norm,
    "BatchRenorm": functools.partial(mixtures.batch_renorm, sigma=0.1),
    "BatchInstanceNorm": functools.partial(mixtures.batch_instance_norm, rho=1.0, sigma=0.1),
    "SwitchableNorm": functools.partial(mixtures.switchable_norm, sigma=0.1,
                                        mean_weights=jnp.ones(3) / 3,
                                        var_weights=jnp.ones(3) / 3),
  }[name]
  run = jax.vmap(layer, (0, None), (0, None), axis_name="batch")
  y, state = run(x_BxCxHxW, state)
  want, new = function(x_BxHxWxC, stats, training=True, momentum=0.9)
  np.testing.assert_allclose(jnp.moveaxis(y, 1, -1), want, rtol=1e-5, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               tuple(state.get(layer.state_index)), tuple(new))
  x2 = _x((4, 3, 5, 6), seed=3)
  y2, same = jax.vmap(lambda xi, s: layer(xi, s, inference=True), (0, None), (0, None),
                      axis_name="batch")(x2, state)
  want2, _ = function(jnp.moveaxis(x2, 1, -1), new, training=False, momentum=0.9)
  np.testing.assert_allclose(jnp.moveaxis(y2, 1, -1), want2, rtol=1e-5, atol=1e-5)
  assert all(np.array_equal(a, b) for a, b in zip(
    same.get(layer.state_index), state.get(layer.state_index), strict=True))


# ---- equinox's arguments at the edges ----------------------------------------------------


@pytest.mark.parametrize("eps", [1e-3, 0, np.float32(1e-3), np.float64(1e-3),
                                 jnp.asarray(1e-3, jnp.float32)], ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("name", ["LayerNorm", "RMSNorm", "GroupNorm"])
def test_eps_accepts_what_equinox_accepts(name, eps):
  """Python, NumPy and JAX scalars, with equinox's own warning for an array in a static field."""
  x = _x((6, 4))

  def make(m):
    return m.GroupNorm(3, 6, eps=eps) if name == "GroupNorm" else getattr(m, name)((6, 4), eps=eps)

  if type(eps) in (float, int):  # equinox warns for NumPy and JAX scalars in static fields
    want, got = make(eqx.nn)(x), make(dqx)(x)
  else:
    with pytest.warns(UserWarning, match="static"):
      want = make(eqx.nn)(x)
    with pytest.warns(UserWarning, match="static"):
      got = make(dqx)(x)
  np.testing.assert_allclose(got, want, atol=3e-5)


def test_group_norm_takes_numpy_integer_groups_as_equinox():
  x = _x((6, 4))
  with pytest.warns(UserWarning, match="static"):
    want = eqx.nn.GroupNorm(np.int64(2), 6)(x)
  with pytest.warns(UserWarning, match="static"):
    got = dqx.GroupNorm(np.int64(2), 6)(x)
  np.testing.assert_allclose(got, want, atol=3e-5)


@pytest.mark.parametrize("make,error,match", [
  (lambda: dqx.LayerNorm(4, eps=jnp.asarray(-1.0)), ValueError, r"eps=-1\.0 is negative"),
  (lambda: dqx.BatchNorm(4, "batch", eps=np.float32(-1.0)), ValueError,
   r"eps=-1\.0 is negative"),
  (lambda: dqx.RMSNorm(4, eps=float("nan")), ValueError, r"eps=nan is not finite"),
  (lambda: dqx.LayerNorm(4, eps=None), TypeError, r"eps=None is not a real number"),
  (lambda: dqx.LayerNorm(4, sigma=-0.5), ValueError, r"sigma=-0\.5 is negative"),
  (lambda: dqx.GroupNorm(2.0, 4), TypeError, r"groups=2\.0 is not an int"),
  (lambda: dqx.GroupNorm(3, 4), ValueError, r"groups=3 does not divide"),
  (lambda: dqx.GroupNorm(2, 4)(_x((6, 3))), ValueError, r"channels=4 but x of shape \(6, 3\)"),
  (lambda: dqx.GroupNorm(1, channelwise_affine=False)(jnp.ones(())), ValueError,
   r"GroupNorm: x is a scalar"),
  (lambda: dqx.GroupNorm(2, -4), ValueError, r"channels=-4 must be an int >= 0"),
  (lambda: dqx.GroupNorm(2, 4.0), TypeError, r"channels=4\.0 is not an int"),
  (lambda: dqx.BatchNorm(-1, "batch", mode="batch"), ValueError, r"input_size=-1 must be"),
  (lambda: dqx.LayerNorm(-1), ValueError, r"shape=-1 must be an int >= 0"),
  (lambda: dqx.DivisiveNorm(3.0), TypeError, r"summation_window=3\.0 is not an int"),
  (lambda: dqx.DivisiveNorm(None), TypeError, r"summation_window=None is not an int"),
  (lambda: dqx.DivisiveNorm(4)(_x((3, 8))), ValueError,
   r"summation_window: .* axis 1 has width 4"),
  (lambda: dqx.DivisiveNorm(3, across_channels="no"), TypeError,
   r"across_channels='no' is not a bool"),
  (lambda: dqx.Normalize((1,), learn_sigma="no"), TypeError, r"learn_sigma='no' is not a bool"),
  (lambda: dqx.DivisiveNorm(3, sigma=jnp.full(3, 0.5), learn_sigma=True), ValueError,
   r"one sigma per layer"),
  (lambda: dqx.GDN(3, beta_init=0), ValueError, r"beta_init=0 must be a finite number > 0"),
  (lambda: dqx.GDN(-3), ValueError, r"^channels=-3 must be an int >= 1"),
  (lambda: dqx.BatchNorm(4, "batch", momentum=1.5, mode="batch"), ValueError,
   r"momentum=1\.5 must be in \[0, 1\] \(equinox's default is 0\.99\)"),
  (lambda: dqx.BatchRenorm(4, "batch", momentum=-0.1), ValueError, r"momentum=-0\.1 must be"),
  (lambda: dqx.SwitchableNorm(4, "batch", sigma=-1.0), ValueError, r"sigma=-1\.0 is negative"),
  (lambda: dqx.GDN(7)(_x((8, 4, 4))), ValueError, r"channels=7 but x of shape \(8, 4, 4\)"),
  (lambda: dqx.SpectralNorm(eqx.nn.Linear(3, 4, key=jax.random.key(0)), "weight", -1,
                            key=jax.random.key(1)), ValueError,
   r"num_power_iterations=-1 must be an int >= 0"),
  (lambda: dqx.SpectralNorm(eqx.nn.Linear(3, 4, key=jax.random.key(0)), "weight", eps=-1.0,
                            key=jax.random.key(1)), ValueError, r"eps=-1\.0 is negative"),
])
def test_errors_name_the_argument_passed(make, error, match):
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # equinox's warning for an array in a static field
    with pytest.raises(error, match=match):
      make()


@pytest.mark.parametrize("name", ["BatchNorm", "MeanOnlyBatchNorm", "BatchRenorm",
                                  "BatchInstanceNorm", "SwitchableNorm"])
def test_running_layers_name_input_size_for_other_channels(name):
  kwargs = dict(mode="batch") if name == "BatchNorm" else {}
  layer, state = eqx.nn.make_with_state(getattr(dqx, name))(3, "batch", **kwargs)
  with pytest.raises(ValueError, match=f"{name} was built with input_size=3 but x of shape"):
    jax.vmap(layer, (0, None), (0, None), axis_name="batch")(_x((2, 4, 5)), state)


def test_sizes_take_numpy_integers():
  x = _x((3, 8))
  np.testing.assert_allclose(dqx.LayerNorm(np.int64(8))(x[0]), eqx.nn.LayerNorm(8)(x[0]),
                             atol=3e-5)
  assert dqx.DivisiveNorm(np.int64(3), (np.int64(5),)).summation_window == 3


def test_normalize_takes_kernels_and_mixings_as_linen():
  """Their arrays are held static (hashable); the numbers are the function's, under jit too."""
  from divnorm import kernels
  x = _x((3, 8))
  for summation in ({0: None, 1: kernels.gaussian(3, sigma=1.0)},
                    {0: kernels.Mixing(np.full((3, 3), 1 / 3)), 1: 3}):
    layer = dqx.Normalize(summation, sigma=0.5)
    want = divnorm.normalize(x, summation, sigma=0.5)
    np.testing.assert_allclose(eqx.filter_jit(lambda m, x: m(x))(layer, x), want, atol=1e-6)
  # bfloat16 weights: held as their dtype (its string, '<V2', read back as raw bytes)
  spec = {0: None, 1: kernels.kernel(jnp.asarray([1.0, 2.0, 1.0], jnp.bfloat16))}
  np.testing.assert_array_equal(dqx.Normalize(spec, sigma=0.5)(x),
                                divnorm.normalize(x, spec, sigma=0.5))
  # Traced weights cannot be held as constants: the error says how to learn a kernel.
  with pytest.raises(TypeError, match="learned_kernel"):
    jax.jit(lambda w: dqx.Normalize({0: None, 1: kernels.kernel(w)}))(jnp.ones(3))


@pytest.mark.loose_promotion  # equinox's internals
@pytest.mark.parametrize("make", [lambda m: m.LayerNorm((3, 4)), lambda m: m.RMSNorm((3, 4)),
                                  lambda m: m.GroupNorm(3, 3)], ids=["LN", "RMS", "GN"])
def test_complex_input_as_equinox(make):
  """equinox's numbers for complex input (RMSNorm: its mean of x**2, not of |x|**2)."""
  x = jax.lax.complex(_x((3, 4)), _x((3, 4), seed=1))
  want, got = make(eqx.nn)(x), make(dqx)(x)
  assert got.dtype == want.dtype == jnp.complex64
  np.testing.assert_allclose(got, want, atol=2e-5)


# Every layer, built as a user builds it (state, if any, from make_with_state).
_BUILT = {
  "LayerNorm": lambda: dqx.LayerNorm(3), "RMSNorm": lambda: dqx.RMSNorm(3),
  "GroupNorm": lambda: dqx.GroupNorm(1, 3), "BatchNorm-ema": lambda: dqx.BatchNorm(3, "b", mode="ema"),
  "BatchNorm-batch": lambda: dqx.BatchNorm(3, "b", mode="batch"),
  "MeanOnlyBatchNorm": lambda: dqx.MeanOnlyBatchNorm(3, "b"),
  "BatchRenorm": lambda: dqx.BatchRenorm(3, "b"),
  "BatchInstanceNorm": lambda: dqx.BatchInstanceNorm(3, "b"),
  "SwitchableNorm": lambda: dqx.SwitchableNorm(3, "b"), "GDN": lambda: dqx.GDN(3),
  "DivisiveNorm": lambda: dqx.DivisiveNorm(3, sigma=1.0, learn_sigma=True),
  "BurgNorm": lambda: dqx.BurgNorm(3), "CenterSurroundNorm": lambda: dqx.CenterSurroundNorm(8),
  "WeightNorm": lambda: dqx.WeightNorm(eqx.nn.Linear(3, 3, key=jax.random.key(0))),
  "SpectralNorm": lambda: dqx.SpectralNorm(eqx.nn.Linear(3, 3, key=jax.random.key(0)),
                                           "weight", key=jax.random.key(1)),
}


@pytest.mark.parametrize("name", _BUILT)
def test_no_two_leaves_are_one_array(name):
  """As equinox's layers: a donating step (`donate="all"`) donates each leaf once, and two
  leaves that are one buffer fail it ("Attempt to donate the same buffer twice"; once
  BatchNorm's ema state and SwitchableNorm's logits)."""
  built = eqx.nn.make_with_state(_BUILT[name])()
  leaves = [a for a in jax.tree.leaves(built) if isinstance(a, jax.Array)]
  assert len({id(a) for a in leaves}) == len(leaves)


@pytest.mark.parametrize("name", ["BatchNorm-ema", "SwitchableNorm"])
def test_a_donating_training_step_runs(name):
  layer, state = eqx.nn.make_with_state(_BUILT[name])()
  x = _x((8, 3, 4, 4))

  @eqx.filter_jit(donate="all")
  def step(layer, state, x):
    y, state = jax.vmap(layer, (0, None), (0, None), axis_name="b")(x, state)
    return layer, state, y

  layer, state, y = step(layer, state, x)
  assert y.shape == x.shape and np.all(np.isfinite(y))


def test_batch_instance_norm_rho_past_the_interval_still_learns():
  """A rho an update carried past 1 gets gradients (straight-through), as in the other APIs."""
  layer, state = eqx.nn.make_with_state(dqx.BatchInstanceNorm)(3, "b")
  layer = eqx.tree_at(lambda m: m.rho, layer, jnp.full(3, 1.2))
  x = _x((4, 3, 5, 5))

  def loss(layer):
    y, _ = jax.vmap(layer, (0, None), (0, None), axis_name="b")(x, state)
    return jnp.sum(y * x[::-1])

  assert np.all(eqx.filter_grad(loss)(layer).rho != 0)


# ---- Edges found in an audit against equinox 0.13.8 (2026-12-07) ---------------------------

def _close(ours, theirs, ulps=4):
  """Within `ulps` float32 ulps of the largest entry of `theirs` (both computed in float32
  from the same statistics, up to the summation order)."""
  tol = ulps * np.finfo(np.float32).eps * max(1.0, float(jnp.max(jnp.abs(theirs))))
  np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=0, atol=tol)


@pytest.mark.parametrize("mode", ["ema", "batch"])
def test_batch_norm_takes_a_list_of_axis_names_as_equinox(mode):
  # equinox documents axis_name as "a sequence (e.g. a tuple or a list)"; a list is not
  # hashable, and the core's jit takes the name as a static argument.
  x = _x((2, 4, 3, 5))
  outs = []
  for lib in (eqx.nn, dqx):
    bn, state = eqx.nn.make_with_state(lib.BatchNorm)(3, ["a", "b"], mode=mode)
    f = jax.vmap(jax.vmap(bn, (0, None), (0, None), axis_name="b"), (0, None), (0, None),
                 axis_name="a")
    y, state = f(x, state)
    index = bn.ema_state_index if mode == "ema" else bn.batch_state_index
    outs.append((y, *state.get(index)))
  for ours, theirs in zip(outs[1], outs[0], strict=True):  # output, running mean and var
    _close(ours, theirs)


def test_functions_take_a_list_of_axis_names():
  x = _x((2, 3, 4))
  f = lambda names: jax.vmap(jax.vmap(
      lambda xi: divnorm.normalize(xi, (0,), axis_name=names), axis_name="b"), axis_name="a")
  np.testing.assert_array_equal(f(["a", "b"])(x), f(("a", "b"))(x))
  g = lambda xi: divnorm.layer_norm(xi, axis_name=["a"])
  _close(jax.vmap(g, axis_name="a")(x), divnorm.layer_norm(x, reduction_axes=(0, 2)))


def test_group_norm_without_affine_reads_no_channel_count():
  # equinox reads `channels` for its affine arrays alone.
  x = _x((6, 3))
  _close(dqx.GroupNorm(2, 4, channelwise_affine=False)(x),
         eqx.nn.GroupNorm(2, 4, channelwise_affine=False)(x))
  with pytest.raises(ValueError, match="built with channels=4"):
    dqx.GroupNorm(2, 4)(x)


@pytest.mark.parametrize("name,flag,array", [
  ("LayerNorm", {"use_weight": False}, "weight"), ("LayerNorm", {"use_bias": False}, "bias"),
  ("RMSNorm", {"use_weight": False}, "weight"), ("RMSNorm", {"use_bias": False}, "bias"),
  ("GroupNorm", {"channelwise_affine": False}, "weight"),
  ("GroupNorm", {"channelwise_affine": False}, "bias"),
])
def test_affine_flags_decide_as_equinox_after_tree_surgery(name, flag, array):
  # An array put by eqx.tree_at on a layer built without it is not applied, as in equinox.
  x = _x((4, 5))
  args = (2, 4) if name == "GroupNorm" else ((4, 5),)
  value = jnp.full((4,) if name == "GroupNorm" else (4, 5), 2.0)
  outs = []
  for lib in (eqx.nn, dqx):
    layer = getattr(lib, name)(*args, **flag)
    layer = eqx.tree_at(lambda m: getattr(m, array), layer, value, is_leaf=lambda a: a is None)
    outs.append(layer(x))
  _close(outs[1], outs[0])
  _close(outs[1], getattr(dqx, name)(*args, **flag)(x))


def test_batch_norm_without_affine_ignores_arrays_put_on_it():
  x = _x((8, 3))
  outs = []
  for lib in (eqx.nn, dqx):
    bn, state = eqx.nn.make_with_state(lib.BatchNorm)(3, "b", channelwise_affine=False,
                                                      mode="batch")
    bn = eqx.tree_at(lambda m: (m.weight, m.bias), bn, (jnp.full(3, 2.0), jnp.ones(3)),
                     is_leaf=lambda a: a is None)
    outs.append(jax.vmap(bn, (0, None), (0, None), axis_name="b")(x, state)[0])
  _close(outs[1], outs[0])


@pytest.mark.parametrize("name", ["LayerNorm", "RMSNorm", "GroupNorm"])
def test_scalar_affine_arrays_broadcast_as_equinox(name):
  x = _x((4, 5))
  args = (2, 4) if name == "GroupNorm" else ((4, 5),)
  outs = []
  for lib in (eqx.nn, dqx):
    layer = eqx.tree_at(lambda m: (m.weight, m.bias), getattr(lib, name)(*args),
                        (jnp.asarray(2.0), jnp.asarray(0.5)))
    outs.append(layer(x))
  _close(outs[1], outs[0])


@pytest.mark.parametrize("shape", [np.array([4, 5]), jnp.array([4, 5]), range(4, 6), [4, 5],
                                   (np.int64(4), np.int64(5))], ids=str)
@pytest.mark.parametrize("name", ["LayerNorm", "RMSNorm"])
def test_shape_as_any_iterable_of_ints_as_equinox(name, shape):
  layer = getattr(dqx, name)(shape)
  assert layer.shape == (4, 5) and all(type(n) is int for n in layer.shape)
  x = _x((4, 5))
  _close(layer(x), getattr(eqx.nn, name)((4, 5))(x))
  assert getattr(dqx, name)(n for n in (4, 5)).shape == (4, 5)  # a generator, read once
  with pytest.raises(TypeError, match="shape must be an int or a sequence of ints"):
    getattr(dqx, name)(2.5)
