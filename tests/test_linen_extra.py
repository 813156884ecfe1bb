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
  bn = dnn.BatchNorm(use_scale=False, use_bias=False)
  want, _ = bn.apply(bn.init(jax.random.key(0), x, use_running_average=False), x,
                     use_running_average=False, mutable=["batch_stats"])
  np.testing.assert_allclose(out, want, atol=1e-6)


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


def test_weight_norm_wrapper_reproduces_layer_at_init():
  x = _x((3, 6))
  dense = nn.Dense(4)
  wrapped = dx.WeightNorm(nn.Dense(4))
  variables = wrapped.init(jax.random.key(0), x)
  dense_vars = {"params": variables["params"]["layer"]}  # the layer's own kernel is v
  np.testing.assert_allclose(wrapped.apply(variables, x), dense.apply(dense_vars, x), atol=1e-6)
  # Doubling g doubles the kernel: the output minus bias doubles.
  params = {**variables["params"], "g": 2 * variables["params"]["g"]}
  np.testing.assert_allclose(
    wrapped.apply({"params": params}, x), 2 * dense.apply(dense_vars, x), atol=1e-5)
  # Inside a parent (the layer is adopted by the parent's scope) and conv kernels.
  net = _Net(dx.WeightNorm, {})
  net_vars = net.init(jax.random.key(0), x)
  np.testing.assert_allclose(
    net.apply(net_vars, x), dense.apply({"params": net_vars["params"]["Dense_0"]}, x),
    atol=1e-6)
  conv = dx.WeightNorm(nn.Conv(2, (3, 3)))
  xi = _x((1, 5, 5, 3))
  cv = conv.init(jax.random.key(0), xi)
  assert cv["params"]["g"].shape == (2,)


def test_spectral_norm_and_standardization_wrappers():
  x = _x((3, 6))
  module = dx.SpectralNorm(nn.Dense(4), n_steps=1)
  variables = module.init(jax.random.key(0), x, update_stats=True)
  kernel = variables["params"]["layer"]["kernel"]
  top = np.linalg.svd(np.asarray(kernel), compute_uv=False)[0]
  for _ in range(30):
    out, updates = module.apply(variables, x, update_stats=True, mutable=["batch_stats"])
    variables = {**variables, **updates}
  np.testing.assert_allclose(variables["batch_stats"]["sigma"], top, rtol=1e-4)
  bias = variables["params"]["layer"]["bias"]
  np.testing.assert_allclose(out, x @ (kernel / top) + bias, rtol=1e-4, atol=1e-5)
  out_eval = module.apply(variables, x, update_stats=False)
  np.testing.assert_allclose(out_eval, out, rtol=1e-4, atol=1e-5)
  ws = dx.WeightStandardization(nn.Dense(4))
  variables = ws.init(jax.random.key(0), x)
  kernel = variables["params"]["layer"]["kernel"]
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
  with pytest.raises(ValueError, match=r"no parameter 'kernel' .*'beta', 'gamma'"):
    dx.WeightNorm(dx.GDN()).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="no parameter 'w'"):
    dx.SpectralNorm(nn.Dense(3), param_name="w").init(jax.random.key(0), x, update_stats=True)
  with pytest.raises(ValueError, match="parameters"):
    dx.WeightNorm(dx.LocalResponseNorm()).init(jax.random.key(0), x)
