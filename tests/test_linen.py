"""linen modules: equal to the functions and to flax.linen, learned sigma, penalties once."""

import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import divnorm
from divnorm import linen as dnn

pytestmark = pytest.mark.loose_promotion  # flax and optax internals promote implicitly


def _x(shape=(4, 6, 5, 8), seed=0):
  rng = np.random.default_rng(seed)
  return (1.0 + 2.0 * rng.normal(size=shape)).astype(np.float32)


def _randomize(variables, seed=1):
  """Random scale/bias so the affine part is tested too."""
  leaves, tree = jax.tree.flatten(variables)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  leaves = [a + 0.3 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys, strict=True)]
  return jax.tree.unflatten(tree, leaves)


PAIRS = [
  (dnn.LayerNorm(sigma=0.1, reduction_axes=(1, 2, 3)),
   nn.LayerNorm(epsilon=0.01, reduction_axes=(1, 2, 3))),
  (dnn.InstanceNorm(sigma=0.1), nn.InstanceNorm(epsilon=0.01)),
  (dnn.GroupNorm(sigma=0.1, num_groups=4), nn.GroupNorm(num_groups=4, epsilon=0.01)),
  (dnn.RMSNorm(sigma=0.1), nn.RMSNorm(epsilon=0.01)),
]


@pytest.mark.parametrize("ours,theirs", PAIRS, ids=lambda m: type(m).__name__)
def test_modules_equal_flax_with_affine(ours, theirs):
  x = _x()
  params = _randomize(theirs.init(jax.random.key(0), x))
  assert jax.tree.map(jnp.shape, ours.init(jax.random.key(0), x)) == jax.tree.map(
    jnp.shape, params)
  np.testing.assert_allclose(ours.apply(params, x), theirs.apply(params, x), atol=2e-5)


def test_batch_norm_module_equals_flax_in_train_and_eval():
  x = _x((16, 3, 3, 8))
  ours = dnn.BatchNorm(sigma=0.01, momentum=0.9)
  theirs = nn.BatchNorm(epsilon=1e-4, momentum=0.9)
  v_ours = ours.init(jax.random.key(0), x, use_running_average=False)
  v_theirs = theirs.init(jax.random.key(0), x, use_running_average=False)
  v_ours = {**v_ours, "params": _randomize(v_ours["params"])}
  v_theirs = {**v_theirs, "params": v_ours["params"]}
  for seed in range(3):
    xs = _x((16, 3, 3, 8), seed=seed)
    y1, u1 = ours.apply(v_ours, xs, use_running_average=False, mutable=["batch_stats"])
    y2, u2 = theirs.apply(v_theirs, xs, use_running_average=False, mutable=["batch_stats"])
    np.testing.assert_allclose(y1, y2, atol=2e-5)
    v_ours = {**v_ours, **u1}
    v_theirs = {**v_theirs, **u2}
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
               v_ours["batch_stats"], v_theirs["batch_stats"])
  np.testing.assert_allclose(ours.apply(v_ours, x, use_running_average=True),
                             theirs.apply(v_theirs, x, use_running_average=True), atol=2e-5)


def test_modules_equal_the_functions():
  x = _x()
  field = {3: None, 1: 3, 2: 5}
  cases = [
    (dnn.DivisiveNorm(summation_window=(3, 5), sigma=0.5),
     divnorm.divisive_norm(x, summation_window=(3, 5), sigma=0.5)),
    (dnn.DivisiveNorm(summation_window=3, suppression_window=5, sigma=1.0, border="zeros"),
     divnorm.divisive_norm(x, summation_window=3, suppression_window=5, sigma=1.0, border="zeros")),
    (dnn.Normalize(summation=field, sigma=0.2), divnorm.normalize(x, field, sigma=0.2)),
    (dnn.Normalize(None, suppression=(1, 2, 3), sigma=0.2),  # no centering, as the function
     divnorm.normalize(x, None, (1, 2, 3), sigma=0.2)),
    (dnn.LayerNorm(use_scale=False, use_bias=False), divnorm.layer_norm(x, sigma=1e-3)),
  ]
  for module, expected in cases:
    variables = module.init(jax.random.key(0), x)
    np.testing.assert_allclose(module.apply(variables, x), expected, atol=1e-6)


@pytest.mark.slow
def test_learned_sigma_is_positive_and_trains():
  x = _x((8, 5, 5, 4))
  target = divnorm.divisive_norm(x, summation_window=3, sigma=2.0)
  module = dnn.DivisiveNorm(summation_window=3, sigma=0.5, learn_sigma=True)
  params = module.init(jax.random.key(0), x)["params"]
  np.testing.assert_allclose(jnp.exp(params["log_sigma"]), 0.5, rtol=1e-6)
  loss = lambda p: jnp.mean((module.apply({"params": p}, x) - target) ** 2)
  opt = optax.adam(0.1)
  state = opt.init(params)
  first = loss(params)
  for _ in range(60):
    updates, state = opt.update(jax.grad(loss)(params), state)
    params = optax.apply_updates(params, updates)
  assert loss(params) < 0.01 * first
  assert jnp.exp(params["log_sigma"]) > 0
  np.testing.assert_allclose(jnp.exp(params["log_sigma"]), 2.0, rtol=0.05)
  with pytest.raises(ValueError, match="must be > 0"):
    dnn.LayerNorm(learn_sigma=True, sigma=0.0).init(jax.random.key(0), x)


class _TwoLayers(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = True):
    shared = dnn.DivisiveNorm(summation_window=3, sigma=0.5, l1_alpha=0.1)
    x = shared(x)
    x = dnn.BatchNorm(use_running_average=not train, l1_alpha=0.01)(x)
    return shared(x)  # used twice: counts twice


@pytest.mark.slow
def test_penalties_are_counted_once_per_use():
  x = _x((4, 5, 5, 3))
  model = _TwoLayers()
  variables = model.init(jax.random.key(0), x)
  assert "losses" in variables  # init returns them: apply_with_penalty must drop them
  y1, v1 = divnorm.divisive_norm(x, summation_window=3, sigma=0.5, return_centered=True)
  (y2, v2), _ = divnorm.batch_norm(y1, divnorm.batch_stats_init(y1), training=True,
                                   return_centered=True)
  _, v3 = divnorm.divisive_norm(y2, summation_window=3, sigma=0.5, return_centered=True)
  expected = 0.1 * jnp.abs(v1).mean() + 0.01 * jnp.abs(v2).mean() + 0.1 * jnp.abs(v3).mean()
  for _ in range(2):  # the same call twice gives the same penalty: nothing accumulates
    out, penalty, updates = dnn.apply_with_penalty(model, variables, x, mutable=["batch_stats"])
    np.testing.assert_allclose(penalty, expected, rtol=1e-5)
  assert set(updates) == {"batch_stats"}
  assert penalty.dtype == jnp.float32
  # `mutable` as in apply: a name, True, or one of flax's filters
  for mutable, returned in (("batch_stats", {"batch_stats"}), (True, {"batch_stats", "params"}),
                            (nn.DenyList("params"), {"batch_stats"})):
    _, again, more = dnn.apply_with_penalty(model, variables, x, mutable=mutable)
    np.testing.assert_allclose(again, expected, rtol=1e-5)
    assert set(more) == returned
  grad = jax.grad(lambda v: dnn.apply_with_penalty(model, v, x, mutable=["batch_stats"])[1])(
    variables)
  assert np.isfinite(jax.tree.leaves(grad)[0]).all()


def test_module_errors():
  x = _x()
  with pytest.raises(TypeError, match="summation_window"):  # at construction, as nnx's
    dnn.DivisiveNorm()
  with pytest.raises(TypeError, match="summation"):
    dnn.Normalize()
  with pytest.raises(TypeError, match="summation: None means no centering"):
    dnn.Normalize(None).init(jax.random.key(0), x)  # the core's error


def test_functional_core_imports_no_flax():
  code = "import sys, divnorm; divnorm.normalize; assert 'flax' not in sys.modules, 'flax imported'"
  subprocess.run([sys.executable, "-c", code], check=True)


# ---- flax's arguments at the edges -----------------------------------------------------


@pytest.mark.parametrize("epsilon", [1e-5, 0, np.float32(1e-5), np.float64(1e-5),
                                     np.asarray(1e-5), jnp.asarray(1e-5, jnp.float32)],
                         ids=lambda e: type(e).__name__)
def test_epsilon_accepts_what_flax_accepts(epsilon):
  x = _x((4, 6))
  for name in ("LayerNorm", "BatchNorm", "GroupNorm"):
    kwargs = dict(num_groups=3) if name == "GroupNorm" else dict(use_running_average=False) if (
      name == "BatchNorm") else {}
    want, _ = getattr(nn, name)(epsilon=epsilon, **kwargs).init_with_output(jax.random.key(0), x)
    got, _ = getattr(dnn, name)(epsilon=epsilon, **kwargs).init_with_output(jax.random.key(0), x)
    np.testing.assert_allclose(got, want, atol=3e-5, err_msg=name)


def test_traced_epsilon_under_jit():
  x = _x((4, 6))
  y = jax.jit(lambda e: dnn.LayerNorm(epsilon=e, use_scale=False, use_bias=False).apply({}, x))(
    jnp.float32(0.25))
  x64 = np.asarray(x, np.float64)
  want = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 0.25)
  np.testing.assert_allclose(y, want, atol=1e-6)


@pytest.mark.parametrize("module,error,match", [
  (dnn.LayerNorm(epsilon=jnp.asarray(-1.0)), ValueError, r"epsilon=-1\.0 is negative"),
  (dnn.LayerNorm(epsilon=-1), ValueError, r"epsilon=-1 is negative"),
  (dnn.BatchNorm(False, epsilon=jnp.asarray(-1.0)), ValueError, r"epsilon=-1\.0 is negative"),
  (dnn.GroupNorm(2, epsilon=np.float32(-1.0)), ValueError, r"epsilon=-1\.0 is negative"),
  (dnn.GroupNorm(num_groups=None, group_size=2.0), TypeError, r"group_size=2\.0 is not an int"),
  (dnn.BatchNorm(True, epsilon=float("nan")), ValueError, r"epsilon=nan is not finite"),
  (dnn.RMSNorm(epsilon="1e-5"), TypeError, r"epsilon='1e-5' is not a real number"),
  (dnn.InstanceNorm(epsilon=None), TypeError, r"epsilon=None is not a real number"),
  (dnn.LayerNorm(epsilon=1e-3, sigma=0.1), ValueError, r"epsilon=0\.001 and sigma=0\.1"),
  (dnn.LayerNorm(sigma=-0.5), ValueError, r"sigma=-0\.5 is negative"),
  (dnn.GroupNorm(num_groups=3), ValueError, r"num_groups=3 does not divide .* \[1, 2, 4, 8\]"),
  (dnn.GroupNorm(num_groups=2.0), TypeError, r"num_groups=2\.0 is not an int"),
  (dnn.GroupNorm(num_groups=None, group_size=3), ValueError, r"group_size=3 does not divide"),
  (dnn.GroupNorm(num_groups=None), ValueError, r"Either `num_groups` or `group_size`"),
  (dnn.GroupNorm(num_groups=2, reduction_axes=(1, 2)), ValueError, r"must include the final"),
  (dnn.GroupNorm(num_groups=2, channel_axis=1, reduction_axes=(2, 3)), ValueError,
   r"must include the channel axis 1 \(channel_axis=1\)"),
  (dnn.LayerNorm(reduction_axes=4), ValueError, r"reduction_axes=4 is out of range for an input of rank 4"),
  (dnn.LayerNorm(feature_axes=1.5), TypeError, r"feature_axes=1\.5 is not an int"),
  (dnn.InstanceNorm(feature_axes=(0, -1)), ValueError, r"cannot include the leading"),
  (dnn.BatchNorm(True, axis=1, feature_axes=2), ValueError, r"axis=1 and feature_axes=2"),
  (dnn.LayerNorm(axis_name="b", axis_index_groups=[[0, 1], [2]]), ValueError,
   r"axis_index_groups=\(\(0, 1\), \(2,\)\) must be groups of equal size"),
  (dnn.LayerNorm(learn_sigma=True, sigma=0.0), ValueError, r"must be > 0"),
  (dnn.LayerNorm(learn_sigma=True, sigma=jnp.full(8, 0.5)), ValueError, r"one sigma per layer"),
  (dnn.LayerNorm(epsilon=jnp.ones(3)), ValueError, r"epsilon of shape \(3,\)"),
  (dnn.BatchNorm(False, epsilon=jnp.ones(3)), ValueError, r"epsilon of shape \(3,\)"),
  (dnn.InstanceNorm(channel_axis=0), ValueError, r"batch axis \(got channel_axis=0\)"),
  (dnn.GroupNorm(2, channel_axis=0), ValueError, r"channel_axis=0 is the batch axis"),
  (dnn.WeightNorm(nn.Dense(3), epsilon=-1.0), ValueError, r"added to the squared norms"),
  (dnn.LayerNorm(dtype=jnp.int32), ValueError, r"dtype=int32 is not an inexact dtype"),
  (dnn.BatchNorm(False, dtype=jnp.int8), ValueError, r"dtype=int8 is not an inexact dtype"),
  (dnn.GDN(param_dtype=jnp.int32), TypeError, r"param_dtype=.* is not a floating dtype"),
  (dnn.LayerNorm(axis_name=0), TypeError, r"axis_name=0: 0 is an int"),
])
def test_errors_name_the_argument_passed(module, error, match):
  with pytest.raises(error, match=match):
    module.init(jax.random.key(0), _x((2, 3, 5, 8)))


@pytest.mark.parametrize("groups", [dict(num_groups=np.int64(2)),
                                    dict(num_groups=None, group_size=np.int64(4))],
                         ids=["num_groups", "group_size"])
def test_group_norm_takes_numpy_integers_as_flax(groups):
  """flax's own GroupNorm asserts a Python int; ours takes NumPy integers as those ints."""
  x = _x((2, 3, 5, 8))
  ints = {k: None if v is None else int(v) for k, v in groups.items()}
  want, _ = nn.GroupNorm(**ints).init_with_output(jax.random.key(0), x)
  got, _ = dnn.GroupNorm(**groups).init_with_output(jax.random.key(0), x)
  np.testing.assert_allclose(got, want, atol=3e-5)


@pytest.mark.parametrize("flag", [True, False])
def test_use_fast_variance_picks_the_core_statistics(flag, monkeypatch):
  """flax's use_fast_variance=True (its default) is the core's one-pass mode, False two-pass."""
  from divnorm._src import batch, flax_semantics

  seen, real = [], flax_semantics.normalize_factors
  for module in (batch, flax_semantics):  # BatchNorm's, the others'
    monkeypatch.setattr(module, "normalize_factors", lambda *a, **k: (
      seen.append(k["fast_variance"]), real(*a, **k))[1])
  x = _x((4, 3, 5, 8))
  for module in (dnn.LayerNorm(use_fast_variance=flag), dnn.GroupNorm(4, use_fast_variance=flag),
                 dnn.InstanceNorm(use_fast_variance=flag),
                 dnn.BatchNorm(False, use_fast_variance=flag)):
    module.init_with_output(jax.random.key(0), x)
  assert seen == [flag] * 4


@pytest.mark.slow
def test_docstring_examples_run():
  import doctest

  from divnorm._src import linen, linen_extra

  for module in (linen, linen_extra):
    results = doctest.testmod(module, extraglobs=dict(jax=jax, jnp=jnp, nn=nn),
                              optionflags=doctest.NORMALIZE_WHITESPACE)
    assert results.attempted > 0 and results.failed == 0, module.__name__


def _bytes_accessed(f, *args) -> float:
  """XLA's bytes accessed by the compiled ``grad`` of ``sum(f(params, x) * w)``."""
  g = jax.jit(jax.grad(lambda p, x, w: jnp.sum((f(p, x) * w).astype(jnp.float32)),
                       argnums=(0, 1)))
  cost = g.lower(*args).compile().cost_analysis()
  return (cost[0] if isinstance(cost, list) else cost)["bytes accessed"]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("name", ["LayerNorm", "BatchNorm", "GroupNorm", "RMSNorm"])
def test_modules_add_nothing_to_the_core(name, dtype):
  """The module's compiled fwd+bwd program moves exactly the bytes of the core's factors
  ``y = (u - m) * r`` (`normalize_factors`) plus flax's affine step (`fs.affine`, scale
  folded): no extra reshape, transpose, dtype round trip or statistic."""
  from divnorm._src import flax_semantics as fs
  from divnorm._src.core import normalize_factors, shifted_input
  from divnorm._src.fields import Field, grouped_field
  from divnorm._src.rms import RmsRead, rms_normalized
  from divnorm._src.statistics import inverse_scale

  x = jnp.asarray(_x((8, 6, 6, 16)), dtype)
  w = jnp.asarray(_x((8, 6, 6, 16), seed=1), dtype)
  scale, bias = jnp.ones((16,)), jnp.zeros((16,))
  params = {"params": {"scale": scale} if name == "RMSNorm" else {"scale": scale, "bias": bias}}
  stats = divnorm.batch_stats_init(x)
  x32 = lambda x: x.astype(jnp.float32)  # noqa: E731  flax's statistics dtype
  field = {"LayerNorm": Field((3,), ()), "BatchNorm": Field((0, 1, 2), ()),
           "GroupNorm": grouped_field((1, 2), 3, 2, x.shape)}.get(name)

  def core(x):
    if name == "RMSNorm" and x.dtype != jnp.float32:  # the scale inside (`fs.affine`)
      read = RmsRead(x, 1e-3, Field((3,), ()), None)
      return rms_normalized(x, 1e-3, None, read.field, None), x32(x), read
    if name == "RMSNorm":
      r = inverse_scale(jnp.mean(jnp.square(x32(x)), -1, keepdims=True), 1e-3)
      return x32(x) * r, x32(x), (x32(x), None, r)
    # x read in its own dtype (`source`): the core and the affine step convert it there.
    y, v, r, stats = normalize_factors(x32(x), field, sigma=1e-3, fast_variance=True,
                                       source=x)
    return y, v, (shifted_input(x32(x), x, stats.shift), stats.mean, r)
  module = dnn.GroupNorm(8) if name == "GroupNorm" else dnn.BatchNorm(False) if (
    name == "BatchNorm") else getattr(dnn, name)()
  variables = {**params, "batch_stats": stats._asdict()} if name == "BatchNorm" else params

  def ours(p, x):
    return module.apply({**variables, **p}, x, mutable=["batch_stats"])[0]

  def reference(p, x):
    y, _, factors = core(x)
    return fs.affine(y, p["params"]["scale"], p["params"].get("bias"), (3,), factors)

  assert _bytes_accessed(ours, params, x, w) == _bytes_accessed(reference, params, x, w)


@pytest.mark.parametrize("fast", [True, False])
def test_batch_norm_of_one_example_under_vmap_pools_the_mapped_axis_as_flax(fast):
  """One feature vector per example, the batch being only the vmapped axis (flax's
  `axis_name`): no local batch axis, so one-pass statistics are two-pass, equal to flax's."""
  x = _x((8, 5))
  ours, theirs = (m.BatchNorm(use_running_average=False, axis_name="batch", momentum=0.5,
                              use_fast_variance=fast) for m in (dnn, nn))
  variables = theirs.init(jax.random.key(0), x[0])
  assert jax.tree.map(jnp.shape, ours.init(jax.random.key(0), x[0])) == jax.tree.map(
      jnp.shape, variables)
  variables = {**variables, "params": _randomize(variables["params"])}
  run = [jax.vmap(lambda xi, m=m: m.apply(variables, xi, mutable=["batch_stats"]),
                  axis_name="batch", out_axes=(0, None))(x) for m in (ours, theirs)]
  for a, b in zip(jax.tree.leaves(run[0]), jax.tree.leaves(run[1]), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  mean, var = x.astype(np.float64).mean(0), x.astype(np.float64).var(0)
  np.testing.assert_allclose(run[0][1]["batch_stats"]["mean"], 0.5 * mean, rtol=1e-6)
  np.testing.assert_allclose(run[0][1]["batch_stats"]["var"], 0.5 + 0.5 * var, rtol=1e-6)


@pytest.mark.parametrize("name", ["BatchNorm", "MeanOnlyBatchNorm", "BatchRenorm",
                                  "BatchInstanceNorm", "SwitchableNorm"])
def test_running_layers_init_with_each_mapped_index_s_statistics_as_flax(name):
  """flax's BatchNorm never pools at ``init``, even with its axis bound (it pools in
  ``apply``): each vmapped index initializes on its own batch (it pooled them)."""
  from divnorm import linen_extra
  x = jnp.asarray(_x((2, 6, 5, 4)) * np.array([1.0, 5.0])[:, None, None, None])
  layer = getattr(dnn if name == "BatchNorm" else linen_extra, name)
  init = lambda m: jax.vmap(lambda xi: m.init_with_output(jax.random.key(0), xi)[0],  # noqa: E731
                            axis_name="batch")(x)
  want = jax.vmap(lambda xi: layer(False).init_with_output(jax.random.key(0), xi)[0])(x)
  np.testing.assert_allclose(init(layer(False, axis_name="batch")), want, rtol=1e-6, atol=1e-6)
  if name == "BatchNorm":
    np.testing.assert_allclose(want, init(nn.BatchNorm(False, axis_name="batch")), rtol=1e-5,
                               atol=1e-5)


def test_masked_batch_statistics_pool_counts_over_the_mapped_axis():
  """A mask with `axis_name` gives the masked statistics of the whole mapped batch, as one
  layer over the joined batch, even where one index's entries are all masked (flax averages
  each index's masked mean: the indices weigh alike, and an all-masked one makes them NaN)."""
  x = jnp.asarray(_x((2, 4, 3)))
  bn = dnn.BatchNorm(False, momentum=0.0, axis_name="batch")
  variables = bn.init(jax.random.key(0), x[0])
  for rows in ([1, 1, 1, 0], [0, 0, 0, 0]):
    mask = jnp.broadcast_to(jnp.array([[1, 1, 1, 1], rows], bool)[:, :, None], x.shape)
    y, new = jax.vmap(lambda xi, mi: bn.apply(variables, xi, mask=mi, mutable=["batch_stats"]),
                      axis_name="batch", out_axes=(0, None))(x, mask)
    joined, new_joined = dnn.BatchNorm(False, momentum=0.0).apply(
        variables, x.reshape(8, 3), mask=mask.reshape(8, 3), mutable=["batch_stats"])
    np.testing.assert_allclose(y.reshape(8, 3), joined, rtol=1e-5, atol=1e-6)
    kept = np.asarray(x, np.float64)[np.asarray(mask)].reshape(-1, 3)
    np.testing.assert_allclose(new["batch_stats"]["mean"], kept.mean(0), rtol=1e-6)
    np.testing.assert_allclose(new["batch_stats"]["var"], kept.var(0), rtol=1e-5)
    np.testing.assert_allclose(new_joined["batch_stats"]["var"], kept.var(0), rtol=1e-5)


@pytest.mark.parametrize("kwargs,error,match", [
  (dict(fast_variance="no"), TypeError, r"fast_variance='no' is not a bool"),
  (dict(learn_sigma="no"), TypeError, r"learn_sigma='no' is not a bool"),
  (dict(l1_alpha=-1.0), ValueError, r"l1_alpha=-1\.0 is negative"),
  (dict(l1_alpha=jnp.ones(2)), ValueError, r"l1_alpha has shape \(2,\)"),
])
def test_divnorm_options_are_checked_at_construction(kwargs, error, match):
  """divnorm's own options are checked; flax's own flags take what flax takes (truthy)."""
  with pytest.raises(error, match=match):
    dnn.LayerNorm(**kwargs)
  dnn.LayerNorm(use_fast_variance=1, use_bias=0).init(jax.random.key(0), _x((2, 3)))


def test_spectral_norm_checks_n_steps():
  for n_steps, error in ((-1, ValueError), (1.5, TypeError), (True, TypeError)):
    with pytest.raises(error, match="n_steps"):
      dnn.SpectralNorm(nn.Dense(3), n_steps=n_steps).init(jax.random.key(0), _x((2, 4)),
                                                          update_stats=True)


def test_mean_only_batch_norm_refuses_a_sigma_it_would_ignore():
  from divnorm import linen_extra
  for kwargs in (dict(sigma=0.5), dict(sigma=0.5, learn_sigma=True)):
    with pytest.raises(ValueError, match="subtracts the mean only"):
      linen_extra.MeanOnlyBatchNorm(False, **kwargs)
  linen_extra.MeanOnlyBatchNorm(False, sigma=0.0).init(jax.random.key(0), _x((4, 3)))


def test_batch_norm_applied_to_other_features_names_its_variables():
  variables = dnn.BatchNorm(True).init(jax.random.key(0), _x((2, 4)))
  with pytest.raises(ValueError, match=r"batch_stats of shape \(4,\) but x of shape \(2, 5\)"):
    dnn.BatchNorm(True).apply(variables, _x((2, 5)))


def test_integer_and_float_masks_select_as_flax():
  """flax.linen converts the mask to bool: its nonzero entries select."""
  x, keep = _x((3, 8)), np.array([[1, 1, 0, 1, 0, 1, 1, 1]] * 3)
  for name, kwargs, mask in (("LayerNorm", {}, keep * 3),
                             ("BatchNorm", dict(use_running_average=False), keep * 0.5)):
    variables = getattr(nn, name)(**kwargs).init(jax.random.key(0), x)
    want = getattr(nn, name)(**kwargs).apply(variables, x, mask=mask, mutable=True)[0]
    got = getattr(dnn, name)(**kwargs).apply(variables, x, mask=mask, mutable=True)[0]
    np.testing.assert_allclose(np.where(keep, got, 0), np.where(keep, want, 0), atol=1e-5)


@pytest.mark.parametrize("name,kwargs,axes", [
    ("LayerNorm", {}, (-1,)), ("RMSNorm", {}, (-1,)), ("GroupNorm", dict(num_groups=2), None),
    ("BatchNorm", dict(use_running_average=False), (0, 1, 2))])
def test_masked_affine_output_and_gradients_against_float64(name, kwargs, axes):
  """With a mask, scale and bias fold into the statistics as without (flax's fold; unfolded
  it cost 1.33-1.65x flax's time): masked-in outputs are the float64 formula times scale
  plus bias, masked-out ones `bias`, and NaN in masked-out entries reaches no gradient."""
  x = np.asarray(_x((4, 3, 5, 8)), np.float64)
  keep = np.random.default_rng(3).random(x.shape) > 0.3
  layer = getattr(dnn, name)(**kwargs)
  variables = _randomize(layer.init(jax.random.key(0), x.astype(np.float32)))
  scale = np.asarray(variables["params"]["scale"], np.float64)
  bias = np.asarray(variables["params"].get("bias", np.zeros(8)), np.float64)
  if axes is None:  # groups of 4 channels over every other axis but the batch
    g = x.reshape(4, 3, 5, 2, 4)
    k = keep.reshape(g.shape)
    n = k.sum((1, 2, 4), keepdims=True)
    mean = np.where(k, g, 0).sum((1, 2, 4), keepdims=True) / n
    var = np.where(k, (g - mean) ** 2, 0).sum((1, 2, 4), keepdims=True) / n
    want = ((g - mean) / np.sqrt(var + 1e-6)).reshape(x.shape)
  else:
    n = keep.sum(axes, keepdims=True)
    mean = 0.0 if name == "RMSNorm" else np.where(keep, x, 0).sum(axes, keepdims=True) / n
    var = np.where(keep, (x - mean) ** 2, 0).sum(axes, keepdims=True) / n
    want = (x - mean) / np.sqrt(var + (1e-5 if name == "BatchNorm" else 1e-6))
  want = np.where(keep, want * scale + bias, bias)
  poisoned = np.where(keep, x, np.nan).astype(np.float32)

  def apply(variables, x):
    return layer.apply(variables, x, mask=keep, mutable=["batch_stats"])[0]

  np.testing.assert_allclose(apply(variables, poisoned), want, rtol=2e-5, atol=2e-5)
  grads = jax.grad(lambda v, x: jnp.sum(apply(v, x) ** 2), argnums=(0, 1))(variables,
                                                                            poisoned)
  assert all(np.all(np.isfinite(np.where(keep, g, 0) if g.shape == x.shape else g))
             for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("name,kwargs", [("LayerNorm", {}), ("RMSNorm", {}),
                                         ("GroupNorm", dict(num_groups=2))])
def test_complex_input_as_flax(name, kwargs):
  """flax's complex statistics: a complex mean, the variance E[|x - E[x]|^2]; complex out."""
  x = (_x((2, 3, 4)) + 1j * _x((2, 3, 4), seed=1)).astype(np.complex64)
  variables = _randomize(getattr(nn, name)(**kwargs).init(jax.random.key(0), x))
  want = getattr(nn, name)(**kwargs).apply(variables, x)
  got = getattr(dnn, name)(**kwargs).apply(variables, x)
  assert got.dtype == want.dtype == np.complex64
  np.testing.assert_allclose(got, want, atol=2e-5)


def test_running_statistics_promote_as_flax_without_float32_reductions():
  """force_float32_reductions=False: flax's update promotes bfloat16 statistics with the
  float32 batch's, so they are float32 after the first step."""
  x = _x((4, 3))
  variables = nn.BatchNorm(False, param_dtype=jnp.bfloat16, force_float32_reductions=False).init(
      jax.random.key(0), x)
  assert variables["batch_stats"]["mean"].dtype == jnp.bfloat16
  for module in (nn, dnn):
    bn = module.BatchNorm(False, param_dtype=jnp.bfloat16, force_float32_reductions=False)
    _, updates = bn.apply(variables, x, mutable=["batch_stats"])
    assert jax.tree.map(lambda a: a.dtype, updates["batch_stats"]) == dict(
        mean=jnp.float32, var=jnp.float32), module.__name__
