"""Behaviours of the module layers (flax linen and nnx, equinox, haiku) that a mutation review
found unguarded: each passed the suite with the code changed to break it. Each test pins one
against the reference library's own layer, divnorm's functions or float64 NumPy. They run under
the suite's strict promotion, except those whose reference layer promotes implicitly
(`loose_promotion`)."""

import equinox as eqx
import flax.linen as nn
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import divnorm
from divnorm import equinox as dqx
from divnorm import haiku as dhk
from divnorm import linen as dnn
from divnorm import linen_extra as dlx
from divnorm import mixtures
from divnorm import nnx as dnx


def _x(shape, seed=0, offset=1.0):
  rng = np.random.default_rng(seed)
  return jnp.asarray(offset + rng.normal(size=shape) * rng.uniform(0.5, 2, shape[-1]),
                     jnp.float32)


def _assert_trees_close(got, want, rtol=1e-5, atol=1e-6):
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    assert a.dtype == b.dtype, (a.dtype, b.dtype)
    np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), rtol=rtol,
                               atol=atol)


# -- flax: BatchNorm in eval with a mask, the L1 penalty's mask --------------------------------


def test_evaluating_batch_norm_ignores_the_mask_as_flax():
  """flax's BatchNorm in eval normalizes every entry with the running statistics, masked out
  or not; divnorm's (linen and nnx) must not mask it either."""
  x = _x((6, 4))
  mask = jnp.broadcast_to(jnp.arange(6)[:, None] % 2 == 0, x.shape)
  variables = {"params": {"scale": jnp.full(4, 2.0), "bias": jnp.full(4, 0.5)},
               "batch_stats": {"mean": jnp.asarray([0.3, -0.2, 1.0, 0.0]),
                               "var": jnp.asarray([1.7, 0.5, 2.0, 1.0])}}
  want = nn.BatchNorm(use_running_average=True).apply(variables, x, mask=mask)
  got = dnn.BatchNorm(use_running_average=True).apply(variables, x, mask=mask)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  theirs = nnx.BatchNorm(4, use_running_average=True, rngs=nnx.Rngs(0))
  ours = dnx.BatchNorm(4, use_running_average=True, rngs=nnx.Rngs(0))
  for model in (theirs, ours):
    model.scale[...], model.bias[...] = variables["params"]["scale"], variables["params"]["bias"]
    model.mean[...] = variables["batch_stats"]["mean"]
    model.var[...] = variables["batch_stats"]["var"]
  np.testing.assert_allclose(ours(x, mask=mask), theirs(x, mask=mask), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(ours(x, mask=mask), want, rtol=1e-6, atol=1e-6)


def _masked_l1(x, mask, axes, alpha):
  """``alpha * mean |x - E[x]|`` over the masked-in entries, E over `axes` (float64)."""
  x64, m = np.asarray(x, np.float64), np.asarray(mask)
  mean = (x64 * m).sum(axes, keepdims=True) / m.sum(axes, keepdims=True)
  return alpha * np.abs(x64 - mean)[m].mean()


@pytest.mark.parametrize("name", ["LayerNorm", "BatchNorm"])
def test_l1_penalty_of_a_masked_call_covers_the_masked_in_entries(name):
  """The L1 penalty's mean covers only the entries the mask keeps (masked-out ones hold
  1e3 here), in linen's `apply_with_penalty` and nnx's `pop_penalties`."""
  rng = np.random.default_rng(3)
  mask = jnp.asarray(rng.uniform(size=(5, 8)) < 0.6).at[0].set(True).at[:, 0].set(True)
  x = jnp.where(mask, _x((5, 8)), 1e3)
  axes, kwargs = (-1, {}) if name == "LayerNorm" else (0, {"use_running_average": False})
  want = _masked_l1(x, mask, axes, 0.25)
  linen = getattr(dnn, name)(l1_alpha=0.25)
  variables = linen.init(jax.random.key(0), x, mask=mask, **kwargs)
  _, penalty, _ = dnn.apply_with_penalty(linen, variables, x, mask=mask, mutable=True, **kwargs)
  np.testing.assert_allclose(penalty, want, rtol=1e-5)
  model = getattr(dnx, name)(8, l1_alpha=0.25, rngs=nnx.Rngs(0))
  model(x, mask=mask, **kwargs)
  np.testing.assert_allclose(dnx.pop_penalties(model), want, rtol=1e-5)


# -- flax: flags, aliases, dtypes ---------------------------------------------------------------


def test_call_time_use_running_average_beats_the_constructor_s_as_flax():
  """flax.nnx.BatchNorm takes the call's `use_running_average` before the constructor's: a
  training layer called with True evaluates (stats unchanged), and the reverse trains."""
  x = _x((8, 3), offset=5.0)
  for built, called in ((False, True), (True, False)):
    theirs = nnx.BatchNorm(3, use_running_average=built, momentum=0.9, rngs=nnx.Rngs(0))
    ours = dnx.BatchNorm(3, use_running_average=built, momentum=0.9, rngs=nnx.Rngs(0))
    np.testing.assert_allclose(ours(x, use_running_average=called),
                               theirs(x, use_running_average=called), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.mean[...], theirs.mean[...], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours.var[...], theirs.var[...], rtol=1e-6, atol=1e-6)
    assert np.all(ours.mean[...] == 0) == called  # evaluating leaves the running mean at 0


@pytest.mark.parametrize("name", ["MeanOnlyBatchNorm", "SwitchableNorm"])
def test_survey_layers_take_the_call_time_use_running_average_first(name):
  """The survey's running layers share BatchNorm's rule: the call's flag, then the
  constructor's; each call equals a layer built with the call's flag."""
  x = _x((8, 4, 3), offset=5.0)
  make = lambda flag: getattr(dnx, name)(3, use_running_average=flag, momentum=0.9,
                                         rngs=nnx.Rngs(0))
  for built, called in ((False, True), (True, False)):
    ours, plain = make(built), make(called)
    got = nnx.jit(lambda m, x, called=called: m(x, use_running_average=called))(ours, x)
    np.testing.assert_allclose(got, nnx.jit(lambda m, x: m(x))(plain, x), rtol=1e-6, atol=1e-6)
    _assert_trees_close(nnx.state(ours, nnx.BatchStat), nnx.state(plain, nnx.BatchStat))
    assert np.all(ours.mean[...] == 0) == called


@pytest.mark.loose_promotion  # flax.nnx.BatchNorm promotes bfloat16 with float32
def test_nnx_batch_norm_updates_float32_running_stats_from_themselves_as_flax():
  """With dtype=bfloat16, flax updates the float32 running averages from their own float32
  values, not from the bfloat16 copies that normalize an evaluating call."""
  x = _x((16, 3), offset=1.2345) * 3
  theirs = nnx.BatchNorm(3, dtype=jnp.bfloat16, momentum=0.9, rngs=nnx.Rngs(0))
  ours = dnx.BatchNorm(3, dtype=jnp.bfloat16, momentum=0.9, rngs=nnx.Rngs(0))
  for model in (theirs, ours):  # running stats that bfloat16 cannot hold exactly
    model.mean[...] = jnp.asarray([0.1234567, 1.0009765, -2.3456789], jnp.float32)
    model.var[...] = jnp.asarray([1.0123457, 0.5012345, 3.0001221], jnp.float32)
  for _ in range(3):
    theirs(x)
    ours(x)
  for got, want in ((ours.mean, theirs.mean), (ours.var, theirs.var)):
    assert got[...].dtype == want[...].dtype == jnp.float32
    np.testing.assert_allclose(got[...], want[...], rtol=1e-6, atol=1e-7)


@pytest.mark.loose_promotion  # flax.linen.BatchNorm promotes bfloat16 with float32
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32], ids=["bf16", "f32"])
def test_linen_batch_stats_keep_flax_s_dtype_without_float32_reductions(dtype):
  """force_float32_reductions=False, param_dtype=bfloat16: flax keeps batch_stats in
  param_dtype (promoted by a step with the batch's dtype); a flax checkpoint loads as is."""
  x = (_x((8, 3), offset=1.234) * 2).astype(dtype)
  kwargs = dict(use_running_average=False, force_float32_reductions=False,
                param_dtype=jnp.bfloat16, momentum=0.9)
  theirs, ours = nn.BatchNorm(**kwargs), dnn.BatchNorm(**kwargs)
  want, got = (m.init(jax.random.key(0), x) for m in (theirs, ours))
  _assert_trees_close(got, want)
  assert want["batch_stats"]["mean"].dtype == jnp.bfloat16
  (y_want, want), (y_got, got) = (m.apply(want, x, mutable=["batch_stats"])
                                  for m in (theirs, ours))
  _assert_trees_close(got, want, rtol=2e-2, atol=2e-2)
  np.testing.assert_allclose(np.asarray(y_got, np.float32), np.asarray(y_want, np.float32),
                             rtol=2e-2, atol=2e-2)


def test_feature_axes_and_channel_axis_aliases_take_effect_as_flax_s_names():
  """divnorm's aliases (BatchNorm's feature_axes= for axis=, InstanceNorm's channel_axis=
  for feature_axes=) select axis 1, as flax's names do, on x whose axis -1 differs."""
  x = _x((4, 3, 5), offset=2.0)
  pairs = [(nn.BatchNorm(False, axis=1), dnn.BatchNorm(False, feature_axes=1)),
           (nn.InstanceNorm(feature_axes=1), dnn.InstanceNorm(channel_axis=1))]
  for theirs, ours in pairs:
    want, want_vars = theirs.init_with_output(jax.random.key(0), x)
    got, got_vars = ours.init_with_output(jax.random.key(0), x)
    _assert_trees_close(got_vars, want_vars)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  pairs = [(nnx.BatchNorm(3, axis=1, rngs=nnx.Rngs(0)),
            dnx.BatchNorm(3, feature_axes=1, rngs=nnx.Rngs(0))),
           (nnx.InstanceNorm(3, feature_axes=1, rngs=nnx.Rngs(0)),
            dnx.InstanceNorm(3, channel_axis=1, rngs=nnx.Rngs(0)))]
  for theirs, ours in pairs:
    np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_nnx_spectral_norm_in_eval_leaves_u_and_sigma_as_flax():
  """model.eval(), or update_stats=False at construction, stops the power iteration: u and
  sigma stay, and the output is flax.nnx.SpectralNorm's; training advances both alike."""
  x = _x((2, 3))
  for how in ("eval", "update_stats=False", "train"):
    models = [lib.SpectralNorm(nnx.Linear(3, 4, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1),
                               update_stats=how != "update_stats=False") for lib in (nnx, dnx)]
    nnx.update(models[1], nnx.state(models[0], nnx.BatchStat))
    if how == "eval":
      for model in models:
        model.eval()
    before = jax.tree.map(jnp.copy, nnx.state(models[0], nnx.BatchStat))
    want, got = (model(x) for model in models)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=how)
    _assert_trees_close(nnx.state(models[1], nnx.BatchStat), nnx.state(models[0], nnx.BatchStat))
    u = lambda state: state["batch_stats"][("kernel", "u")][...]
    assert np.array_equal(u(nnx.state(models[1], nnx.BatchStat)), u(before)) == (how != "train")


def test_switchable_norm_weights_variances_by_var_logits():
  """`var_logits` weight the variances, `mean_logits` the means (both start at zero, where a
  swap is invisible): with different logits, linen, nnx and equinox equal the function."""
  x = _x((4, 5, 5, 3), offset=1.0) * 2
  ml, vl = jnp.asarray([2.0, -1.0, 0.5]), jnp.asarray([-1.5, 1.0, 3.0])
  want = jax.jit(lambda x: mixtures.switchable_norm(  # jitted: faster than op by op
    x, divnorm.batch_stats_init(x), mean_weights=jax.nn.softmax(ml),
    var_weights=jax.nn.softmax(vl), training=True)[0])(x)
  linen = dlx.SwitchableNorm(False, use_scale=False, use_bias=False)
  variables = linen.init(jax.random.key(0), x)
  variables = {**variables, "params": {"mean_logits": ml, "var_logits": vl}}
  np.testing.assert_allclose(linen.apply(variables, x, mutable=["batch_stats"])[0], want,
                             rtol=1e-5, atol=1e-5)
  model = dnx.SwitchableNorm(3, use_scale=False, use_bias=False, rngs=nnx.Rngs(0))
  model.mean_logits[...], model.var_logits[...] = ml, vl
  np.testing.assert_allclose(model(x), want, rtol=1e-5, atol=1e-5)
  layer, state = eqx.nn.make_with_state(dqx.SwitchableNorm)(3, "batch", channelwise_affine=False)
  layer = eqx.tree_at(lambda s: (s.mean_logits, s.var_logits), layer, (ml, vl))
  y, _ = jax.jit(jax.vmap(layer, (0, None), (0, None), axis_name="batch"))(
    jnp.moveaxis(x, -1, 1), state)
  np.testing.assert_allclose(jnp.moveaxis(y, 1, -1), want, rtol=1e-5, atol=1e-5)


# -- families' penalties ------------------------------------------------------------------------


def test_burg_norm_penalty_is_v_l1_times_the_l1_norm_of_v():
  """BurgNorm.penalty() is ``v_l1 * sum |v|`` (the paper's L1 on v) in equinox and nnx."""
  v = jnp.asarray(np.random.default_rng(0).normal(size=(4, 4)), jnp.float32)
  want = 1e-3 * np.abs(np.asarray(v, np.float64)).sum()
  layer = eqx.tree_at(lambda m: m.v, dqx.BurgNorm(4, kernel_size=3, v_l1=1e-3), v)
  np.testing.assert_allclose(layer.penalty(), want, rtol=1e-6)
  model = dnx.BurgNorm(4, kernel_size=3, v_l1=1e-3)
  model.v[...] = v
  np.testing.assert_allclose(model.penalty(), want, rtol=1e-6)


# -- equinox: BatchNorm mode="batch" inference, DivisiveNorm's options --------------------------


def test_equinox_batch_mode_debiases_its_averages_in_inference_as_equinox():
  """mode="batch" keeps zero-started averages and a step counter; inference divides them by
  ``1 - momentum**count``, as eqx.nn.BatchNorm (the quick tier ran only mode="ema")."""
  layers = [eqx.nn.make_with_state(lib.BatchNorm)(3, "batch", momentum=0.9, mode="batch")
            for lib in (eqx.nn, dqx)]

  def run(layer, state, x, inference):
    return jax.jit(jax.vmap(lambda xi, s: layer(xi, s, inference=inference), (0, None),
                            (0, None), axis_name="batch"))(x, state)

  for step in range(2):
    x = _x((8, 3), seed=step, offset=3.0 + step)
    layers = [(layer, run(layer, state, x, False)[1]) for layer, state in layers]
  x = _x((8, 3), seed=9)
  (want, want_state), (got, got_state) = (run(layer, state, x, True) for layer, state in layers)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  _assert_trees_close(jax.tree.leaves(got_state), jax.tree.leaves(want_state))


@pytest.mark.parametrize("kwargs", [dict(suppression_window=(5, 3)),
                                    dict(across_channels=False)],
                         ids=["suppression_window", "across_channels"])
def test_equinox_divisive_norm_options_are_the_function_s(kwargs):
  """equinox's DivisiveNorm takes `suppression_window` and `across_channels` as
  divnorm.divisive_norm does, per example, channels first."""
  x = _x((2, 9, 8, 4), offset=2.0)
  want = jax.jit(lambda x: divnorm.divisive_norm(x, summation_window=(3, 5), sigma=0.5,
                                                 **kwargs))(x)
  layer = dqx.DivisiveNorm((3, 5), sigma=0.5, **kwargs)
  got = jax.jit(jax.vmap(layer))(jnp.moveaxis(x, -1, 1))
  np.testing.assert_allclose(jnp.moveaxis(got, 1, -1), want, rtol=1e-5, atol=1e-5)


# -- haiku ----------------------------------------------------------------------------------------


def test_haiku_spectral_norm_without_update_stats_keeps_its_state_as_haiku():
  """update_stats=False normalizes with the stored u0 and stores no new u0 or sigma."""
  w = _x((5, 4))
  outs = []
  for lib in (hk, dhk):
    f = hk.transform_with_state(lambda w, update, lib=lib: lib.SpectralNorm()(w, update))
    params, state = f.init(jax.random.key(1), w, True)
    y, after = f.apply(params, state, None, w, False)
    jax.tree.map(np.testing.assert_array_equal, after, state)
    outs.append(y)
  np.testing.assert_allclose(outs[1], outs[0], rtol=1e-5, atol=1e-6)


@pytest.mark.loose_promotion  # haiku's moving average: float32 ** int32
def test_haiku_batch_norm_pools_each_cross_replica_group_as_haiku():
  """cross_replica_axis_index_groups: each group of devices pools its own statistics (and
  running averages), as hk.BatchNorm under pmap; pooling all devices would differ. The 4
  devices are host ones: tests/conftest.py makes 8."""
  groups, x = [[0, 2], [1, 3]], _x((4, 2, 3), offset=0.0) + jnp.arange(4.0)[:, None, None]

  def run(lib, groups):
    f = hk.transform_with_state(lambda x: lib.BatchNorm(
      False, False, 0.9, cross_replica_axis="i", cross_replica_axis_index_groups=groups)(x, True))
    params, state = jax.pmap(f.init, axis_name="i", in_axes=(None, 0))(jax.random.key(0), x)
    return jax.pmap(f.apply, axis_name="i", in_axes=(0, 0, None, 0))(params, state, None, x)

  (want, want_state), (got, got_state) = run(hk, groups), run(dhk, groups)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  _assert_trees_close(got_state, want_state, rtol=1e-4, atol=1e-5)
  assert not np.allclose(run(dhk, None)[0], got, atol=1e-2)


@pytest.mark.parametrize("name", ["LayerNorm", "GroupNorm", pytest.param(
  "BatchNorm", marks=pytest.mark.loose_promotion)])  # hk.BatchNorm adds it by rank promotion
def test_haiku_call_time_offset_adds_to_a_created_scale_as_haiku(name):
  """create_scale=True, create_offset=False: an `offset` passed at call time (conditional
  normalization) is added after the created scale, as haiku's layers do."""
  x = _x((4, 6, 5, 8), offset=1.0)
  offset = jnp.asarray(np.random.default_rng(1).normal(size=8), jnp.float32)
  call = {"LayerNorm": lambda L: L.LayerNorm(-1, True, False)(x, offset=offset),
          "GroupNorm": lambda L: L.GroupNorm(2, create_scale=True, create_offset=False)(
            x, offset=offset),
          "BatchNorm": lambda L: L.BatchNorm(True, False, 0.9)(x, True, offset=offset)}[name]
  outs = []
  for lib in (hk, dhk):
    f = hk.transform_with_state(lambda lib=lib: call(lib))
    params, state = f.init(jax.random.key(0))
    params = jax.tree.map(lambda p: p * 1.5, params)  # a scale away from 1
    outs.append(f.apply(params, state, None)[0])
  np.testing.assert_allclose(outs[1], outs[0], rtol=1e-4, atol=1e-4)
