"""divnorm.nnx modules equal the functions, the linen modules and flax.nnx's own layers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import divnorm
from divnorm import linen as dnn
from divnorm import linen_extra as dx
from divnorm import mixtures, weights
from divnorm import nnx as dn

pytestmark = pytest.mark.loose_promotion  # flax internals


def _x(shape=(4, 5, 5, 6), seed=0):
  rng = np.random.default_rng(seed)
  return jnp.asarray(1.0 + rng.normal(size=shape) * rng.uniform(0.5, 2, shape[-1]), jnp.float32)


def _jit_call(module, x, **kwargs):
  return nnx.jit(lambda m, x: m(x, **kwargs))(module, x)


# (nnx module, the matching linen module, kwargs of __call__); default affine (ones/zeros).
PAIRS = [
  (lambda: dn.BatchNorm(6, sigma=0.1), dnn.BatchNorm(sigma=0.1), {"use_running_average": False}),
  (lambda: dn.LayerNorm((5, 5, 6), reduction_axes=(1, 2, 3), feature_axes=(1, 2, 3), sigma=0.1),
   dnn.LayerNorm(reduction_axes=(1, 2, 3), feature_axes=(1, 2, 3), sigma=0.1), {}),
  (lambda: dn.InstanceNorm(6, sigma=0.1), dnn.InstanceNorm(sigma=0.1), {}),
  (lambda: dn.GroupNorm(6, num_groups=3), dnn.GroupNorm(num_groups=3), {}),
  (lambda: dn.RMSNorm(6), dnn.RMSNorm(), {}),
  (lambda: dn.DivisiveNorm(summation_window=(3, 3), suppression_window=(5, 5), sigma=0.5),
   dnn.DivisiveNorm(summation_window=(3, 3), suppression_window=(5, 5), sigma=0.5), {}),
  (lambda: dn.Normalize(summation={3: None, 1: 3, 2: 3}, sigma=0.2, border="zeros"),
   dnn.Normalize(summation={3: None, 1: 3, 2: 3}, sigma=0.2, border="zeros"), {}),
  (lambda: dn.MeanOnlyBatchNorm(6), dx.MeanOnlyBatchNorm(), {"use_running_average": False}),
  (lambda: dn.BatchRenorm(6, rmax=1.5, dmax=0.5), dx.BatchRenorm(rmax=1.5, dmax=0.5),
   {"use_running_average": False}),
  (lambda: dn.BatchInstanceNorm(6, rho_init=0.4), dx.BatchInstanceNorm(rho_init=0.4),
   {"use_running_average": False}),
  (lambda: dn.SwitchableNorm(6, sigma=0.1), dx.SwitchableNorm(sigma=0.1),
   {"use_running_average": False}),
  (lambda: dn.LocalResponseNorm(3, alpha=0.1), dx.LocalResponseNorm(size=3, alpha=0.1), {}),
  (lambda: dn.GDN(6), dx.GDN(), {}),
  (lambda: dn.GDN(6, inverse=True), dx.GDN(inverse=True), {}),
]


@pytest.mark.parametrize("make,linen_module,kwargs", PAIRS,
                         ids=[type(p[1]).__name__ + str(i) for i, p in enumerate(PAIRS)])
def test_nnx_equals_linen_under_jit(make, linen_module, kwargs):
  x = _x()
  variables = linen_module.init(jax.random.key(0), x, **kwargs)
  want, _, updates = dnn.apply_with_penalty(linen_module, variables, x, mutable=True, **kwargs)
  module = make()
  np.testing.assert_allclose(_jit_call(module, x, **kwargs), want, rtol=1e-5, atol=1e-5)
  if "batch_stats" in updates:
    np.testing.assert_allclose(module.mean[...], updates["batch_stats"]["mean"], atol=1e-6)


def test_nnx_equals_functions():
  x = _x()
  stats = divnorm.batch_stats_init(x)
  np.testing.assert_allclose(
    dn.BatchNorm(6, use_scale=False, use_bias=False, sigma=0.1)(x),
    divnorm.batch_norm(x, stats, training=True, sigma=0.1)[0], atol=1e-6)
  np.testing.assert_allclose(
    dn.SwitchableNorm(6, use_scale=False, use_bias=False)(x),
    mixtures.switchable_norm(x, stats, mean_weights=jnp.ones(3) / 3,
                             var_weights=jnp.ones(3) / 3, training=True)[0], atol=1e-6)
  np.testing.assert_allclose(
    dn.DivisiveNorm(summation_window=3, sigma=0.5)(x),
    divnorm.divisive_norm(x, summation_window=3, sigma=0.5), atol=1e-6)


@pytest.mark.slow
def test_equal_flax_nnx_layers():
  x = _x()
  sigma = 0.1
  rngs = nnx.Rngs(0)
  pairs = [
    (dn.BatchNorm(6, sigma=sigma),
     nnx.BatchNorm(6, epsilon=sigma**2, use_fast_variance=False, rngs=rngs)),
    (dn.LayerNorm(6, sigma=sigma),
     nnx.LayerNorm(6, epsilon=sigma**2, use_fast_variance=False, rngs=rngs)),
    (dn.GroupNorm(6, num_groups=2, sigma=sigma),
     nnx.GroupNorm(6, num_groups=2, epsilon=sigma**2, use_fast_variance=False, rngs=rngs)),
    (dn.RMSNorm(6, sigma=sigma), nnx.RMSNorm(6, epsilon=sigma**2, rngs=rngs)),
    (dn.InstanceNorm(6, sigma=sigma),
     nnx.InstanceNorm(6, epsilon=sigma**2, use_fast_variance=False, rngs=rngs)),
  ]
  for ours, theirs in pairs:
    np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-5, atol=1e-5,
                               err_msg=type(ours).__name__)
  bn, flax_bn = pairs[0]
  np.testing.assert_allclose(bn.mean[...], flax_bn.mean[...], atol=1e-6)
  np.testing.assert_allclose(bn.var[...], flax_bn.var[...], atol=1e-6)
  bn.eval()
  flax_bn.eval()
  np.testing.assert_allclose(bn(x), flax_bn(x), rtol=1e-5, atol=1e-5)


def test_running_statistics_train_and_eval():
  x = _x()

  class Model(nnx.Module):
    def __init__(self):
      self.norm = dn.BatchNorm(6, momentum=0.9)
      self.renorm = dn.BatchRenorm(6)
      self.sn = dn.SpectralNorm(nnx.Linear(6, 3, rngs=nnx.Rngs(0)))

    def __call__(self, x):
      return self.sn(self.renorm(self.norm(x)))

  model = Model()
  step = nnx.jit(lambda m, x: m(x))
  step(model, x)
  np.testing.assert_allclose(model.norm.mean[...], 0.1 * x.mean((0, 1, 2)), rtol=1e-5)
  np.testing.assert_allclose(model.norm.var[...], 0.9 + 0.1 * x.var((0, 1, 2)), rtol=1e-5)
  u = model.sn.batch_stats[("kernel", "u")][...]
  model.eval()
  assert model.norm.use_running_average and model.sn.use_running_average
  frozen = jax.tree_util.tree_map(np.asarray, nnx.state(model, nnx.BatchStat))
  y = step(model, x)
  after = jax.tree_util.tree_map(np.asarray, nnx.state(model, nnx.BatchStat))
  jax.tree_util.tree_map(np.testing.assert_array_equal, frozen, after)
  np.testing.assert_array_equal(model.sn.batch_stats[("kernel", "u")][...], u)
  assert np.isfinite(y).all()
  model.train()
  step(model, x)
  assert not np.allclose(model.norm.mean[...], frozen["norm"]["mean"])


def test_penalty_and_learned_sigma_reach_the_gradient():
  x = _x()
  model = dn.LayerNorm(6, sigma=0.5, learn_sigma=True, l1_alpha=0.3)

  def loss(model):
    y = model(x)
    return jnp.mean(y**2) + dn.pop_penalties(model)

  grads = nnx.jit(nnx.grad(loss))(model)
  assert float(jnp.abs(grads["log_sigma"][...])) > 0
  y = model(x)
  v = x - x.mean(-1, keepdims=True)
  np.testing.assert_allclose(dn.pop_penalties(model), 0.3 * jnp.mean(jnp.abs(v)), rtol=1e-5)
  assert float(dn.pop_penalties(model)) == 0.0  # popped
  assert y.shape == x.shape
  # Two calls accumulate (a normalizer used at every time step counts at every step).
  model(x)
  model(x)
  np.testing.assert_allclose(dn.pop_penalties(model), 0.6 * jnp.mean(jnp.abs(v)), rtol=1e-5)


@pytest.mark.slow
def test_weight_wrappers():
  x = _x((3, 6))
  linear = nnx.Linear(6, 4, rngs=nnx.Rngs(0))
  kernel = linear.kernel[...]
  want = x @ (kernel / jnp.linalg.norm(kernel, axis=0, keepdims=True)) + linear.bias[...]
  wrapped = dn.WeightNorm(linear, rngs=nnx.Rngs(1))
  np.testing.assert_allclose(_jit_call(wrapped, x), want, atol=1e-6)
  wrapped.scales[("kernel",)][...] = 2 * wrapped.scales[("kernel",)][...]
  np.testing.assert_allclose(wrapped(x) - linear.bias[...], 2 * (want - linear.bias[...]),
                             atol=1e-5)
  grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(wrapped)
  assert grads["layer_instance"]["kernel"][...].shape == kernel.shape
  assert float(jnp.abs(grads["scales"][("kernel",)][...]).sum()) > 0  # scales are Params
  np.testing.assert_array_equal(linear.kernel[...], kernel)  # restored after each call
  sn = dn.SpectralNorm(nnx.Linear(6, 4, rngs=nnx.Rngs(1)), rngs=nnx.Rngs(2))
  top = np.linalg.svd(np.asarray(sn.layer_instance.kernel[...]), compute_uv=False)[0]
  step = nnx.jit(lambda m, x: m(x))
  for _ in range(30):
    y = step(sn, x)
  np.testing.assert_allclose(sn.batch_stats[("kernel", "sigma")][...], top, rtol=1e-4)
  np.testing.assert_allclose(
    y, x @ (sn.layer_instance.kernel[...] / top) + sn.layer_instance.bias[...], rtol=1e-4,
    atol=1e-5)
  ws = dn.WeightStandardization(nnx.Conv(6, 2, (3,), rngs=nnx.Rngs(0)))
  xs = _x((2, 7, 6))
  conv = nnx.Conv(6, 2, (3,), rngs=nnx.Rngs(0))
  conv.kernel[...] = weights.weight_standardization(conv.kernel[...])
  np.testing.assert_allclose(_jit_call(ws, xs), conv(xs), rtol=1e-5, atol=1e-5)


def test_errors():
  x = _x()
  with pytest.raises(ValueError, match="rmax"):
    dn.BatchRenorm(6, rmax=0.9)
  with pytest.raises(ValueError, match="rho_init"):
    dn.BatchInstanceNorm(6, rho_init=-0.1)
  with pytest.raises(ValueError, match="num_features"):
    dn.LayerNorm(None)
  with pytest.raises(ValueError, match="num_features=4"):
    dn.LayerNorm(4)(x)
  with pytest.raises(ValueError, match=r"variable_filter.*beta.*gamma"):
    dn.WeightNorm(dn.GDN(3))
  with pytest.raises(ValueError, match="error_on_non_matrix"):
    dn.SpectralNorm(nnx.Conv(2, 2, (3,), rngs=nnx.Rngs(0)), error_on_non_matrix=True)
  with pytest.raises(ValueError, match="two spellings"):
    dn.LayerNorm(6, epsilon=1e-3, sigma=0.1)
  with pytest.raises(ValueError, match="learn_sigma"):
    dn.LayerNorm(6, learn_sigma=True, sigma=0.0)
  with pytest.raises(ValueError, match="size"):
    dn.LocalResponseNorm(0)


@pytest.mark.slow
def test_fast_variance_option_matches_the_function():
  x = np.random.default_rng(0).normal(size=(4, 5, 5, 8)).astype(np.float32) + 1.0
  cases = [
    (dn.LayerNorm(8, reduction_axes=(1, 2, 3), fast_variance=True, sigma=0.0, use_scale=False,
                  use_bias=False),
     divnorm.layer_norm(x, reduction_axes=(1, 2, 3), fast_variance=True)),
    (dn.InstanceNorm(8, fast_variance=True, sigma=0.0, use_scale=False, use_bias=False),
     divnorm.instance_norm(x, fast_variance=True)),
    (dn.GroupNorm(8, num_groups=2, fast_variance=True, sigma=0.0, use_scale=False,
                  use_bias=False),
     divnorm.group_norm(x, num_groups=2, fast_variance=True)),
    (dn.BatchNorm(8, fast_variance=True, sigma=0.0, use_scale=False, use_bias=False),
     divnorm.batch_norm(x, divnorm.batch_stats_init(x), training=True, fast_variance=True)[0]),
  ]
  for module, expected in cases:
    np.testing.assert_allclose(module(x), expected, atol=2e-5)


# ---- flax's arguments at the edges -----------------------------------------------------


@pytest.mark.parametrize("epsilon", [1e-5, 0, np.float32(1e-5), np.float64(1e-5),
                                     np.asarray(1e-5), jnp.asarray(1e-5, jnp.float32)],
                         ids=lambda e: type(e).__name__)
def test_epsilon_accepts_what_flax_accepts(epsilon):
  x = _x((4, 5, 6))
  for name, args in (("LayerNorm", (6,)), ("BatchNorm", (6,)), ("GroupNorm", (6, 3)),
                     ("RMSNorm", (6,)), ("InstanceNorm", (6,))):
    want = getattr(nnx, name)(*args, epsilon=epsilon, rngs=nnx.Rngs(0))(x)
    got = getattr(dn, name)(*args, epsilon=epsilon, rngs=nnx.Rngs(0))(x)
    np.testing.assert_allclose(got, want, atol=3e-5, err_msg=name)


@pytest.mark.parametrize("make,error,match", [
  (lambda: dn.LayerNorm(6, epsilon=jnp.asarray(-1.0)), ValueError, r"epsilon=-1\.0 is negative"),
  (lambda: dn.BatchNorm(6, epsilon=jnp.asarray(-1.0))(_x((2, 6))), ValueError,
   r"epsilon=-1\.0 is negative"),
  (lambda: dn.RMSNorm(6, epsilon=np.float32(-1.0)), ValueError, r"epsilon=-1\.0 is negative"),
  (lambda: dn.InstanceNorm(6, epsilon=None), TypeError, r"epsilon=None is not a real number"),
  (lambda: dn.LayerNorm(6, sigma=-0.5), ValueError, r"sigma=-0\.5 is negative"),
  (lambda: dn.GroupNorm(6, num_groups=2.0), TypeError, r"num_groups=2\.0 is not an int"),
  (lambda: dn.GroupNorm(6, num_groups=None, group_size=2.0), TypeError,
   r"group_size=2\.0 is not an int"),
  (lambda: dn.GroupNorm(6, num_groups=None, group_size=4), ValueError,
   r"group_size=4 does not divide"),
  (lambda: dn.WeightNorm(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), epsilon=jnp.asarray(-1.0)),
   ValueError, r"epsilon=-1\.0 is negative"),
  (lambda: dn.BatchNorm(6, epsilon=float("inf")), ValueError, r"epsilon=inf is not finite"),
  (lambda: dn.RMSNorm(6, epsilon="1e-5"), TypeError, r"epsilon='1e-5' is not a real number"),
  (lambda: dn.GroupNorm(6, num_groups=4), ValueError, r"num_groups=4 does not divide .* 6"),
  (lambda: dn.GroupNorm(6, 2, 3), ValueError, r"Either `num_groups` or `group_size`"),
  (lambda: dn.LayerNorm(6)(_x((2, 5))), ValueError, r"num_features=6 but x of shape \(2, 5\)"),
  (lambda: dn.LayerNorm(6, reduction_axes=(1, 3))(_x((2, 6))), ValueError,
   r"reduction_axes=3 is out of range"),
  (lambda: dn.InstanceNorm(6, feature_axes=0)(_x((2, 6))), ValueError, r"leading dimension"),
  (lambda: dn.LayerNorm(6, axis_name="b", axis_index_groups=[[0, 0]])(_x((2, 6))), ValueError,
   r"axis_index_groups=\[\[0, 0\]\] must be groups of equal size of distinct"),
  (lambda: dn.BatchNorm(6, axis=0, feature_axes=1), ValueError, r"axis=0 and feature_axes=1"),
  (lambda: dn.WeightNorm(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), epsilon=1e-6, sigma=0.1),
   ValueError, r"epsilon=1e-06 and sigma=0\.1"),
  (lambda: dn.SpectralNorm(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), epsilon=-1.0), ValueError,
   r"epsilon=-1\.0 is negative"),
  (lambda: dn.BatchNorm(3)(_x((2, 4))), ValueError, r"num_features=3 but x of shape \(2, 4\)"),
  (lambda: dn.LayerNorm((4, 2), reduction_axes=(1, 2), feature_axes=(1, 2))(_x((2, 2, 4))),
   ValueError, r"num_features=\(4, 2\) but x of shape \(2, 2, 4\) has features \(2, 4\)"),
  (lambda: dn.BatchNorm(-1), ValueError, r"num_features=-1 must be an int >= 0"),
  (lambda: dn.LayerNorm(4.0), TypeError, r"num_features=4\.0 is not an int"),
  (lambda: dn.GroupNorm("4", 2), TypeError, r"num_features='4' is not an int"),
  (lambda: dn.GDN(-1), ValueError, r"num_features=-1 must be an int >= 1"),
  (lambda: dn.GDN(3, beta_init=0), ValueError, r"beta_init=0 must be a finite number > 0"),
  (lambda: dn.LayerNorm(6, fast_variance="no"), TypeError, r"fast_variance='no' is not a bool"),
  (lambda: dn.SwitchableNorm(6, learn_sigma="no"), TypeError, r"learn_sigma='no' is not a bool"),
  (lambda: dn.LayerNorm(6, l1_alpha=-1.0), ValueError, r"l1_alpha=-1\.0 is negative"),
  (lambda: dn.LayerNorm(6, learn_sigma=True, sigma=jnp.full(6, 0.5)), ValueError,
   r"one sigma per layer"),
  (lambda: dn.LayerNorm(6, epsilon=jnp.ones(3))(_x((2, 6))), ValueError,
   r"epsilon of shape \(3,\)"),
  (lambda: dn.GroupNorm(6, 2, channel_axis=0)(_x((6, 3))), ValueError,
   r"channel_axis=0 is the batch axis"),
  (lambda: dn.InstanceNorm(6, channel_axis=0)(_x((2, 6))), ValueError, r"got channel_axis=0"),
  (lambda: dn.SwitchableNorm(6, channel_axis=9)(_x()), ValueError,
   r"channel_axis=9 is out of range"),
  (lambda: dn.WeightNorm(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), epsilon=-1.0), ValueError,
   r"added to the squared norms"),
  (lambda: dn.SpectralNorm(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), n_steps=-1), ValueError,
   r"n_steps=-1 must be an int >= 0"),
  (lambda: dn.SpectralNorm(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), n_steps=1.5), TypeError,
   r"n_steps=1\.5 is not an int"),
  (lambda: dn.MeanOnlyBatchNorm(6, sigma=0.5), ValueError, r"subtracts the mean only"),
  (lambda: dn.MeanOnlyBatchNorm(6, learn_sigma=True), ValueError, r"learn_sigma=True"),
  (lambda: dn.GDN(7)(_x((2, 4, 4, 8))), ValueError, r"num_features=7 but x of shape"),
])
def test_errors_name_the_argument_passed(make, error, match):
  with pytest.raises(error, match=match):
    make()


@pytest.mark.parametrize("groups", [dict(num_groups=np.int64(2)),
                                    dict(num_groups=None, group_size=np.int64(3))],
                         ids=["num_groups", "group_size"])
def test_group_norm_takes_numpy_integers_as_flax(groups):
  """flax's own GroupNorm rejects NumPy integers; ours takes them as the Python ints."""
  x = _x((4, 5, 6))
  ints = {k: None if v is None else int(v) for k, v in groups.items()}
  want = nnx.GroupNorm(6, **ints, rngs=nnx.Rngs(0))(x)
  np.testing.assert_allclose(dn.GroupNorm(6, **groups)(x), want, atol=3e-5)


def test_weight_wrappers_take_sigma_as_the_other_spelling_of_epsilon():
  linear = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
  assert dn.WeightNorm(linear, sigma=0.1).epsilon == pytest.approx(0.01)
  assert dn.SpectralNorm(linear, sigma=0.1).epsilon == pytest.approx(0.01)


@pytest.mark.parametrize("flag", [True, False])
@pytest.mark.parametrize("spelling", ["use_fast_variance", "fast_variance"])
def test_use_fast_variance_picks_the_core_statistics(flag, spelling, monkeypatch):
  # flax's `use_fast_variance`, or divnorm's `fast_variance`, which overrides it (so it is
  # given against the other's value), picks one-pass (True) or two-pass (False); linen too
  from divnorm._src import batch, flax_semantics

  seen, real = [], flax_semantics.normalize_factors
  for module in (batch, flax_semantics):  # BatchNorm's, the others'
    monkeypatch.setattr(module, "normalize_factors", lambda *a, **k: (
      seen.append(k["fast_variance"]), real(*a, **k))[1])
  x = _x((4, 3, 5, 8))
  kw = ({"use_fast_variance": flag} if spelling == "use_fast_variance" else
        {"use_fast_variance": not flag, "fast_variance": flag})
  for module in (dn.LayerNorm(8, **kw), dn.GroupNorm(8, 4, **kw), dn.InstanceNorm(8, **kw),
                 dn.BatchNorm(8, **kw)):
    module(x)
  for module in (dnn.LayerNorm(**kw), dnn.GroupNorm(4, **kw), dnn.InstanceNorm(**kw),
                 dnn.BatchNorm(False, **kw)):
    module.init_with_output(jax.random.key(0), x)
  assert seen == [flag] * 8


@pytest.mark.slow
def test_docstring_examples_run():
  import doctest

  from divnorm._src import nnx as nnx_impl
  from divnorm._src import nnx_extra

  for module in (nnx_impl, nnx_extra):
    results = doctest.testmod(module, extraglobs=dict(jax=jax, jnp=jnp, nnx=nnx),
                              optionflags=doctest.NORMALIZE_WHITESPACE)
    assert results.attempted > 0 and results.failed == 0, module.__name__


@pytest.mark.parametrize("name", ["LayerNorm", "GroupNorm", "RMSNorm"])
def test_modules_add_nothing_to_the_core(name):
  """bf16 in, float32 parameters: the module's compiled fwd+bwd moves exactly the bytes of
  the core's factors ``y = (u - m) * r`` plus flax's affine step (scale folded; see
  tests/test_linen.py, which also checks BatchNorm: under a plain `jax.grad` an nnx
  BatchStat cannot be updated)."""
  from divnorm._src import flax_semantics as fs
  from divnorm._src.core import normalize_factors, shifted_input
  from divnorm._src.fields import Field, grouped_field
  from divnorm._src.rms import RmsRead, rms_normalized

  x = _x((8, 6, 6, 16)).astype(jnp.bfloat16)
  w = _x((8, 6, 6, 16), seed=1).astype(jnp.bfloat16)
  module = dn.GroupNorm(16, 8) if name == "GroupNorm" else getattr(dn, name)(16)
  field = {"LayerNorm": Field((3,), ()),
           "GroupNorm": grouped_field((1, 2), 3, 2, x.shape)}.get(name)

  def core(x):
    if name == "RMSNorm":  # RMS norm's written derivative, the scale inside (`fs.affine`)
      read = RmsRead(x, 1e-3, Field((3,), ()), None)
      return rms_normalized(x, 1e-3, None, read.field, None), x, read
    # x in bfloat16: flax's promotion only widens it, which the core and the affine step do
    # where they read it (`source`).
    x32 = x.astype(jnp.float32)
    y, v, r, stats = normalize_factors(x32, field, sigma=1e-3, fast_variance=True, source=x)
    return y, v, (shifted_input(x32, x, stats.shift), stats.mean, r)
  graph, params, rest = nnx.split(module, nnx.Param, ...)

  def ours(p, x, rest):
    return nnx.merge(graph, p, rest)(x)

  def reference(p, x, rest):
    y, _, factors = core(x)
    return fs.affine(y, p["scale"][...], p["bias"][...] if "bias" in p else None, (3,),
                     factors)

  def cost(f):
    g = jax.jit(jax.grad(lambda p, x, r: jnp.sum((f(p, x, r) * w).astype(jnp.float32)),
                         argnums=(0, 1)))
    c = g.lower(params, x, rest).compile().cost_analysis()
    return (c[0] if isinstance(c, list) else c)["bytes accessed"]

  assert cost(ours) == cost(reference)


@pytest.mark.parametrize("name", ["MeanOnlyBatchNorm", "BatchRenorm", "BatchInstanceNorm",
                                  "SwitchableNorm"])
def test_survey_layers_under_vmap_with_axis_name_pool_the_batch(name):
  """nnx.vmap with `axis_name`: the batch statistics and running averages are the whole
  batch's, as `BatchNorm`'s."""
  x = _x((4, 5, 3))
  sigma = {} if name == "MeanOnlyBatchNorm" else {"sigma": 0.1}  # it has no smoothing term
  layer, whole = (getattr(dn, name)(3, **sigma, **kwargs) for kwargs in
                  ({"axis_name": "batch"}, {}))

  @nnx.vmap(in_axes=(None, 0), out_axes=0, axis_name="batch")
  def apply(model, xi):
    return model(xi)

  y = apply(layer, x.reshape(2, 2, 5, 3))
  np.testing.assert_allclose(y.reshape(x.shape), whole(x), atol=1e-5)
  np.testing.assert_allclose(layer.mean[...], whole.mean[...], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["MeanOnlyBatchNorm", "BatchRenorm", "BatchInstanceNorm",
                                  "SwitchableNorm"])
def test_survey_layers_ask_for_use_running_average_as_batch_norm(name):
  """None in the constructor and at the call is an error, as flax's BatchNorm (they trained)."""
  layer = getattr(dn, name)(6, use_running_average=None)
  with pytest.raises(ValueError, match=f"No `use_running_average` argument was provided to {name}"):
    layer(_x())
  assert layer(_x(), use_running_average=False).shape == _x().shape


@pytest.mark.parametrize("name", ["BatchRenorm", "BatchInstanceNorm", "SwitchableNorm"])
def test_survey_layers_train_with_a_learned_sigma(name):
  """``learn_sigma=True`` (sigma an array, ``exp(log_sigma)``): the running statistics keep
  their shape over steps (batch renorm's variance took the shape (1, 6), and the first call
  failed)."""
  layer = getattr(dn, name)(6, sigma=0.3, learn_sigma=True)
  step = nnx.jit(lambda m, x: m(x))
  for seed in range(2):
    step(layer, _x(seed=seed))
  assert layer.mean[...].shape == layer.var[...].shape == (6,)


def test_weight_norm_draws_flax_s_keys():
  """flax hands `scale_init` the stream, drawing no key: the layers made after it initialize
  as under flax (a key drawn per scale changed them); a random `scale_init`, which flax's
  refuses, gets a key of its own for each weight."""
  kernels = []
  for wrapper in (nnx.WeightNorm, dn.WeightNorm):
    rngs = nnx.Rngs(0)
    wrapper(nnx.Linear(3, 4, rngs=rngs), rngs=rngs)
    kernels.append(nnx.Linear(2, 2, rngs=rngs).kernel[...])
  np.testing.assert_array_equal(kernels[0], kernels[1])
  both = nnx.Any(nnx.PathContains("kernel"), nnx.PathContains("bias"))
  wrapped = dn.WeightNorm(nnx.Linear(3, 4, rngs=nnx.Rngs(0)), variable_filter=both,
                          scale_init=nnx.initializers.normal(), rngs=nnx.Rngs(0))
  kernel, bias = (wrapped.scales[(n,)][...] for n in ("kernel", "bias"))
  assert np.all(np.asarray(kernel) != 0) and not np.array_equal(kernel, bias)


def test_batch_norm_of_a_rank_one_input_is_flax_s():
  """No batch axis: the statistics are the entries themselves (flax's output is its bias),
  at flax's default one-pass setting too."""
  x = jnp.asarray(np.random.default_rng(0).normal(size=4), jnp.float32)
  ours, theirs = (m.BatchNorm(4, momentum=0.5, rngs=nnx.Rngs(0)) for m in (dn, nnx))
  np.testing.assert_allclose(ours(x), theirs(x), atol=1e-6)
  np.testing.assert_allclose(ours.mean[...], theirs.mean[...], rtol=1e-6)
  np.testing.assert_allclose(ours.var[...], theirs.var[...], rtol=1e-6)


@pytest.mark.parametrize("name", ["MeanOnlyBatchNorm", "BatchRenorm", "BatchInstanceNorm",
                                  "SwitchableNorm"])
def test_survey_layers_name_num_features_for_other_features(name):
  with pytest.raises(ValueError, match=f"{name} was built with num_features=3 but x"):
    getattr(dn, name)(3)(_x((2, 4, 4, 5)))


def test_num_features_as_flax_takes_it():
  """An int is the features' size (flax reshapes the parameters to them), a NumPy int too."""
  x = _x((2, 2, 4))
  want = nnx.LayerNorm(8, reduction_axes=(1, 2), feature_axes=(1, 2), rngs=nnx.Rngs(0))(x)
  got = dn.LayerNorm(np.int64(8), reduction_axes=(1, 2), feature_axes=(1, 2))(x)
  np.testing.assert_allclose(got, want, atol=3e-5)


def test_normalize_takes_kernels_and_mixings_as_linen():
  """A kernel's or mixing's array is data (not a static attribute), under nnx.jit too."""
  from divnorm import kernels
  x = _x((3, 8))
  for summation in ({0: None, 1: kernels.gaussian(3, sigma=1.0)},
                    {0: kernels.Mixing(np.full((3, 3), 1 / 3)), 1: 3}):
    want = divnorm.normalize(x, summation, sigma=0.5)
    layer = dn.Normalize(summation=summation, sigma=0.5)
    np.testing.assert_allclose(_jit_call(layer, x), want, atol=1e-6)


@pytest.mark.parametrize("name,args", [("InstanceNorm", (4,)), ("GroupNorm", (4, 2))])
def test_complex_input_as_flax(name, args):
  x = (_x((2, 3, 4)) + 1j * _x((2, 3, 4), seed=1)).astype(jnp.complex64)
  want = getattr(nnx, name)(*args, rngs=nnx.Rngs(0))(x)
  got = getattr(dn, name)(*args)(x)
  assert got.dtype == want.dtype == jnp.complex64
  np.testing.assert_allclose(got, want, atol=2e-5)


def test_attributes_as_flax():
  linear = nnx.Linear(3, 4, rngs=nnx.Rngs(0))
  assert dn.GroupNorm(6, 2).feature_axis == nnx.GroupNorm(6, 2, rngs=nnx.Rngs(0)).feature_axis
  assert dn.WeightNorm(linear, feature_axes=None).feature_axes == nnx.WeightNorm(
      linear, feature_axes=None, rngs=nnx.Rngs(0)).feature_axes == ()


def test_batch_instance_norm_rho_past_the_interval_still_learns():
  """A rho an update carried past 1 gets gradients (straight-through), as in linen."""
  layer = dn.BatchInstanceNorm(6, rho_init=1.0)
  layer.rho[...] = jnp.full(6, 1.2)
  x = jax.random.normal(jax.random.key(0), (4, 5, 5, 6))
  grads = nnx.grad(lambda m: jnp.sum(m(x) * x[::-1]))(layer)
  assert np.all(grads.rho[...] != 0)


@pytest.mark.parametrize("name", sorted(
    n for n in dn.__all__ if isinstance(getattr(dn, n), type) and issubclass(getattr(dn, n),
                                                                             nnx.Module)))
def test_every_layer_takes_rngs_as_nnx_layers_do(name):
  # A model that builds its layers as ``cls(..., rngs=rngs)`` can take any of ours; a layer
  # whose initial values are constants draws nothing, so its state is the same without it.
  make = {
    "WeightNorm": lambda **k: dn.WeightNorm(nnx.Linear(3, 4, rngs=nnx.Rngs(0)), **k),
    "SpectralNorm": lambda **k: dn.SpectralNorm(nnx.Linear(3, 4, rngs=nnx.Rngs(0)), **k),
    "WeightStandardization": lambda **k: dn.WeightStandardization(
        nnx.Linear(3, 4, rngs=nnx.Rngs(0)), **k),
    "DivisiveNorm": lambda **k: dn.DivisiveNorm(summation_window=3, **k),
    "Normalize": lambda **k: dn.Normalize(summation={1: None}, **k),
    "LocalResponseNorm": lambda **k: dn.LocalResponseNorm(3, **k),
    "MillerNorm": lambda **k: dn.MillerNorm(**k),
    "GroupNorm": lambda **k: dn.GroupNorm(16, num_groups=4, **k),
  }.get(name, lambda **k: getattr(dn, name)(16, **k))
  with_rngs, without = make(rngs=nnx.Rngs(7)), make()
  if name not in ("GaussianNorm", "WeightNorm", "SpectralNorm"):  # these draw from it
    jax.tree.map(np.testing.assert_array_equal, nnx.state(with_rngs), nnx.state(without))


# ---- Edges found in an audit against flax.nnx 0.12.8 (2026-12-07) --------------------------

def test_view_info_reads_the_set_view_arguments_as_flax_s():
  # nnx.view_info parses set_view's "Args:" section and looks up each parameter in it.
  text = nnx.view_info(nnx.Sequential(dn.BatchNorm(3), nnx.BatchNorm(3, rngs=nnx.Rngs(0))))
  assert text.count("use_running_average: bool | None = None") == 2
  for layer in (dn.MeanOnlyBatchNorm(3), dn.BatchRenorm(3)):
    assert "use_running_average" in nnx.view_info(layer)


@pytest.mark.parametrize("name,args", [("LayerNorm", {}), ("RMSNorm", {}),
                                       ("GroupNorm", {"num_groups": 3}),
                                       ("InstanceNorm", {}), ("BatchNorm", {"axis": -1})])
def test_promote_dtype_gets_flax_s_arguments(name, args):
  # a promote_dtype written for flax unpacks exactly what flax passes
  seen = {}

  def promote(values, dtype=None):
    seen[name] = len(values)
    return nnx.nn.dtypes.promote_dtype(values, dtype=dtype)

  x = _x()
  outs = [getattr(lib, name)(6, promote_dtype=promote, rngs=nnx.Rngs(0), **args)(x)
          for lib in (nnx, dn)]
  theirs = seen[name]
  seen.clear()
  getattr(dn, name)(6, promote_dtype=promote, rngs=nnx.Rngs(0), **args)(x)
  assert seen[name] == theirs == {"RMSNorm": 2, "BatchNorm": 5}.get(name, 3)
  np.testing.assert_allclose(outs[1], outs[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("make", [
  lambda m: m.LayerNorm(1, use_scale=False, use_bias=False, rngs=nnx.Rngs(0)),
  lambda m: m.RMSNorm(1, use_scale=False, rngs=nnx.Rngs(0)),
  lambda m: m.InstanceNorm(1, use_scale=False, use_bias=False, rngs=nnx.Rngs(0)),
])
def test_num_features_without_parameters_is_not_checked_as_flax(make):
  # flax reads num_features for the parameters' shape alone (x near 0: flax's one-pass
  # variance is exact to float32 rounding there)
  x = jax.random.normal(jax.random.key(0), (4, 5, 6))
  np.testing.assert_allclose(make(dn)(x), make(nnx)(x), rtol=0, atol=1e-5)
  with pytest.raises(ValueError, match="built with num_features=1"):
    dn.LayerNorm(1, rngs=nnx.Rngs(0))(x)  # with a scale, it shapes it: checked
  with pytest.raises(ValueError, match="built with num_features=1"):
    dn.BatchNorm(1, rngs=nnx.Rngs(0))(x)  # the running statistics too


def test_spectral_norm_s_non_matrix_error_is_nnx_s():
  conv = nnx.Conv(2, 2, (3, 3), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="^Layer instance parameter is 4D but error_on_non_matr"):
    dn.SpectralNorm(conv, error_on_non_matrix=True)
