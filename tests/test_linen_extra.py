"""linen modules of the breadth normalizers equal their functions; wrappers; errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import divnorm
from divnorm import gdn as G
from divnorm import linen as dnn
from divnorm import linen_extra as dx
from divnorm import mixtures, weights
from divnorm.local_response import local_response_norm

pytestmark = pytest.mark.loose_promotion  # flax internals


def _x(shape=(4, 5, 5, 3), seed=0):
  rng = np.random.default_rng(seed)
  return (1.0 + rng.normal(size=shape) * rng.uniform(0.5, 2, shape[-1])).astype(np.float32)


def _train(module, x, **kwargs):
  variables = module.init(jax.random.key(0), x, **kwargs)
  out, penalty, updates = dnn.apply_with_penalty(
    module, variables, x, mutable=["batch_stats"], **kwargs)
  return variables, out, penalty, updates


@pytest.mark.parametrize("name", ["MeanOnlyBatchNorm", "BatchRenorm", "BatchInstanceNorm",
                                  "SwitchableNorm"])
def test_axis_name_initialises_outside_and_pools_the_mapped_batch(name):
  """As the flax layers: init outside the mapped context skips the collective; under vmap
  with `axis_name` the batch statistics (and running averages) are the whole batch's."""
  x = _x((4, 5, 3))
  sigma = {} if name == "MeanOnlyBatchNorm" else {"sigma": 0.1}  # it has no smoothing term
  layer = getattr(dx, name)(False, axis_name="batch", **sigma)
  variables = layer.init(jax.random.key(0), x)
  whole, whole_stats = getattr(dx, name)(False, **sigma).apply(
    variables, x, mutable=["batch_stats"])
  y, stats = jax.vmap(lambda xi: layer.apply(variables, xi, mutable=["batch_stats"]),
                      axis_name="batch")(x.reshape(2, 2, 5, 3))
  np.testing.assert_allclose(y.reshape(x.shape), whole, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, np.broadcast_to(b, a.shape),
                                                       rtol=1e-5, atol=1e-6), stats, whole_stats)
  np.testing.assert_allclose(
    dnn.Normalize((0, 1), axis_name="batch", sigma=0.1).init_with_output(
      jax.random.key(0), x)[0], dnn.Normalize((0, 1), sigma=0.1).apply({}, x))


@pytest.mark.slow
def test_running_modules_equal_functions():
  x = _x()
  stats = divnorm.batch_stats_init(x)
  cases = [
    (dx.BatchRenorm(use_scale=False, use_bias=False, sigma=0.1, rmax=1.5, dmax=0.5),
     lambda: mixtures.batch_renorm(x, stats, training=True, rmax=1.5, dmax=0.5, sigma=0.1)),
    (dx.BatchInstanceNorm(use_scale=False, use_bias=False, sigma=0.1, rho_init=0.3),
     lambda: mixtures.batch_instance_norm(x, stats, rho=0.3, training=True, sigma=0.1)),
    (dx.SwitchableNorm(use_scale=False, use_bias=False, sigma=0.1),
     lambda: mixtures.switchable_norm(x, stats, mean_weights=jnp.ones(3) / 3,
                                      var_weights=jnp.ones(3) / 3, training=True, sigma=0.1)),
    (dx.MeanOnlyBatchNorm(use_bias=False),
     lambda: mixtures.mean_only_batch_norm(
       x, mixtures.mean_stats_init(x), training=True)),
  ]
  for module, fn in cases:
    _, out, _, updates = _train(module, x, use_running_average=False)
    want, new_stats = fn()
    np.testing.assert_allclose(out, want, atol=1e-5, err_msg=type(module).__name__)
    np.testing.assert_allclose(updates["batch_stats"]["mean"], new_stats.mean, atol=1e-6)
    # Evaluation leaves the statistics alone.
    variables = module.init(jax.random.key(0), x, use_running_average=True)
    _, _, updates = dnn.apply_with_penalty(
      module, variables, x, use_running_average=True, mutable=["batch_stats"])
    np.testing.assert_array_equal(updates["batch_stats"]["mean"], 0.0)


def test_batch_renorm_call_time_limits_and_bn_identity():
  x = _x((8, 3))
  module = dx.BatchRenorm(use_scale=False, use_bias=False)
  variables = module.init(jax.random.key(0), x, use_running_average=False)
  out, _ = module.apply(variables, x, use_running_average=False, rmax=1.0, dmax=0.0,
                        mutable=["batch_stats"])
  bn = dnn.BatchNorm(use_scale=False, use_bias=False, sigma=0.0)
  want, _ = bn.apply(bn.init(jax.random.key(0), x, use_running_average=False), x,
                     use_running_average=False, mutable=["batch_stats"])
  np.testing.assert_allclose(out, want, atol=1e-6)


@pytest.mark.parametrize("name", ["BatchRenorm", "BatchInstanceNorm", "SwitchableNorm"])
def test_survey_layers_train_with_a_learned_sigma(name):
  """``learn_sigma=True`` (sigma an array, ``exp(log_sigma)``): the running statistics keep
  their shape over steps (batch renorm's variance took the shape (1, 1, 1, 3), and the
  second step failed)."""
  module = getattr(dx, name)(sigma=0.3, learn_sigma=True)
  variables = module.init(jax.random.key(0), _x(), use_running_average=False)
  step = jax.jit(lambda v, x: module.apply(v, x, use_running_average=False,
                                           mutable=["batch_stats"])[1])
  for seed in range(2):
    variables = {**variables, **step(variables, _x(seed=seed))}
  assert {a.shape for a in jax.tree.leaves(variables["batch_stats"])} == {(3,)}


@pytest.mark.slow
def test_penalty_learned_sigma_and_clipped_rho():
  x = _x()
  module = dx.BatchInstanceNorm(l1_alpha=0.1, learn_sigma=True, sigma=0.5, rho_init=1.0)
  variables, _, penalty, _ = _train(module, x, use_running_average=False)
  assert "log_sigma" in variables["params"] and float(penalty) > 0
  # A rho pushed past 1 by an optimizer acts as rho = 1 (pure batch norm).
  params = {**variables["params"], "rho": jnp.full((3,), 1.7)}
  out, _ = module.apply({**variables, "params": params}, x, use_running_average=False,
                        mutable=["batch_stats", "losses"])
  params1 = {**variables["params"], "rho": jnp.ones(3)}
  want, _ = module.apply({**variables, "params": params1}, x, use_running_average=False,
                         mutable=["batch_stats", "losses"])
  np.testing.assert_allclose(out, want, atol=1e-6)
  # ... and still learns (straight-through: jnp.clip's gradient there was 0, rho froze).
  def loss(params):
    out, _ = module.apply({**variables, "params": params}, x, use_running_average=False,
                          mutable=["batch_stats", "losses"])
    return jnp.sum(out * x[::-1])
  assert np.all(jax.grad(loss)(params)["rho"] != 0)


def test_lrn_and_gdn_modules():
  x = _x()
  lrn = dx.LocalResponseNorm(size=3, alpha=0.1)
  np.testing.assert_allclose(lrn.apply({}, x), local_response_norm(x, size=3, alpha=0.1))
  gdn = dx.GDN()
  variables = gdn.init(jax.random.key(0), x)
  beta, gamma = G.gdn_values(G.GDNParams(**variables["params"]))
  np.testing.assert_allclose(gdn.apply(variables, x), G.gdn(x, beta=beta, gamma=gamma))
  igdn = dx.GDN(inverse=True)
  np.testing.assert_allclose(
    igdn.apply(variables, x), G.igdn(x, beta=beta, gamma=gamma), rtol=1e-6)


class _Net(nn.Module):
  wrapper: type
  kwargs: dict

  @nn.compact
  def __call__(self, x, **call_kwargs):
    return self.wrapper(nn.Dense(4), **self.kwargs)(x, **call_kwargs)


def test_weight_norm_wrapper_is_flax_weight_norm():
  x = _x((3, 6))
  dense = nn.Dense(4)
  wrapped = dx.WeightNorm(nn.Dense(4))
  variables = wrapped.init(jax.random.key(0), x)
  params = variables["params"]
  v, g = params["layer_instance"]["kernel"], params["layer_instance/kernel/scale"]
  want_kernel = g * v / np.linalg.norm(np.asarray(v), axis=0, keepdims=True)
  want = dense.apply({"params": {**params["layer_instance"], "kernel": want_kernel}}, x)
  np.testing.assert_allclose(wrapped.apply(variables, x), want, atol=1e-6)
  # Doubling the scale doubles the kernel: the output minus bias doubles.
  doubled = {**params, "layer_instance/kernel/scale": 2 * g}
  bias = params["layer_instance"]["bias"]
  np.testing.assert_allclose(wrapped.apply({"params": doubled}, x) - bias,
                             2 * (want - bias), atol=1e-5)
  # Inside a parent the layer is adopted by the parent's scope; conv kernels.
  net = _Net(dx.WeightNorm, {})
  net_vars = net.init(jax.random.key(0), x)
  assert set(net_vars["params"]["WeightNorm_0"]) == {"Dense_0/kernel/scale"}
  conv = dx.WeightNorm(nn.Conv(2, (3, 3)))
  cv = conv.init(jax.random.key(0), _x((1, 5, 5, 3)))
  assert cv["params"]["layer_instance/kernel/scale"].shape == (2,)


def test_spectral_norm_and_standardization_wrappers():
  x = _x((3, 6))
  module = dx.SpectralNorm(nn.Dense(4), n_steps=1)
  variables = module.init(jax.random.key(0), x, update_stats=True)
  kernel = variables["params"]["layer_instance"]["kernel"]
  top = np.linalg.svd(np.asarray(kernel), compute_uv=False)[0]
  step = jax.jit(lambda v: module.apply(v, x, update_stats=True, mutable=["batch_stats"]))
  for _ in range(150):  # Flax's power iteration from Flax's random u: sigma_2/sigma_1 = 0.95
    out, updates = step(variables)
    variables = {**variables, **updates}
  np.testing.assert_allclose(variables["batch_stats"]["layer_instance/kernel/sigma"], top,
                             rtol=1e-4)
  bias = variables["params"]["layer_instance"]["bias"]
  np.testing.assert_allclose(out, x @ (kernel / top) + bias, rtol=1e-4, atol=1e-5)
  out_eval = module.apply(variables, x, update_stats=False)
  np.testing.assert_allclose(out_eval, out, rtol=1e-4, atol=1e-5)
  ws = dx.WeightStandardization(nn.Dense(4))
  variables = ws.init(jax.random.key(0), x)
  kernel = variables["params"]["layer_instance"]["kernel"]
  np.testing.assert_allclose(
    ws.apply(variables, x), x @ weights.weight_standardization(kernel), rtol=1e-5, atol=1e-5)


def test_errors():
  x = _x()
  with pytest.raises(ValueError, match="rmax"):
    dx.BatchRenorm(rmax=0.5)
  with pytest.raises(ValueError, match="rho_init"):
    dx.BatchInstanceNorm(rho_init=1.5)
  with pytest.raises(ValueError, match="size"):
    dx.LocalResponseNorm(size=0)
  with pytest.raises(ValueError, match=r"variable_filter=\{'kernel'\}.*beta.*gamma"):
    dx.WeightNorm(dx.GDN()).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="error_on_non_matrix"):
    dx.SpectralNorm(nn.Conv(2, (3, 3)), error_on_non_matrix=True).init(
      jax.random.key(0), x, update_stats=True)
  with pytest.raises(ValueError, match="two spellings"):
    dx.WeightNorm(nn.Dense(3), epsilon=1e-6, sigma=0.1).init(jax.random.key(0), x)


def test_weight_wrappers_check_epsilon_and_sigma():
  x = _x((3, 4))
  with pytest.raises(ValueError, match=r"epsilon=-1\.0 is negative"):
    dx.SpectralNorm(nn.Dense(3), epsilon=-1.0).init(jax.random.key(0), x, update_stats=True)
  with pytest.raises(TypeError, match=r"epsilon='1e-12' is not a real number"):
    dx.WeightNorm(nn.Dense(3), epsilon="1e-12").init(jax.random.key(0), x)
  with pytest.raises(ValueError, match=r"sigma=-0\.1 is negative"):
    dx.WeightNorm(nn.Dense(3), sigma=-0.1).init(jax.random.key(0), x)
  with_sigma = dx.WeightNorm(nn.Dense(3), sigma=0.1)
  with_epsilon = dx.WeightNorm(nn.Dense(3), epsilon=0.01)
  variables = with_epsilon.init(jax.random.key(0), x)
  np.testing.assert_allclose(with_sigma.apply(variables, x), with_epsilon.apply(variables, x),
                             rtol=1e-6)


@pytest.mark.parametrize("make,x,error,match", [
  (lambda: dx.GDN(channel_axis=9), _x(), ValueError, r"channel_axis=9 is out of range"),
  (lambda: dx.GDN(), np.float32(1.0), ValueError, r"channel_axis=-1 is out of range .* rank 0"),
  (lambda: dx.GDN(beta_init=0), _x(), ValueError, r"beta_init=0 must be a finite number > 0"),
  (lambda: dx.GDN(gamma_init=-1.0), _x(), ValueError, r"gamma_init=-1\.0 is negative"),
  (lambda: dx.BatchInstanceNorm(False, channel_axis=9), _x(), ValueError,
   r"channel_axis=9 is out of range"),
  (lambda: dx.SwitchableNorm(False, channel_axis=9), _x(), ValueError,
   r"channel_axis=9 is out of range"),
  (lambda: dx.MeanOnlyBatchNorm(False, learn_sigma=1), _x(), TypeError,
   r"learn_sigma=1 is not a bool"),
])
def test_errors_name_the_argument_passed(make, x, error, match):
  with pytest.raises(error, match=match):
    make().init(jax.random.key(0), x)
