"""Batch norm: statistics, running averages, flax equality, devices, retracing."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import divnorm

SIGMA = 0.01


def _x(shape=(16, 5, 4, 6), seed=0):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=shape) * rng.uniform(0.5, 3.0, size=shape[-1]) + 2.0).astype(np.float32)


def test_training_uses_batch_statistics_and_updates_running_averages(x64):
  x = _x().astype(np.float64)
  stats = divnorm.batch_stats_init(x, dtype=jnp.float64)
  y, new = divnorm.batch_norm(x, stats, training=True, momentum=0.9, sigma=SIGMA)
  mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
  np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + SIGMA**2), rtol=1e-12)
  np.testing.assert_allclose(new.mean, 0.1 * mean, rtol=1e-12)
  np.testing.assert_allclose(new.var, 0.9 + 0.1 * var, rtol=1e-12)


def test_evaluation_uses_running_averages_and_keeps_them(x64):
  x = _x().astype(np.float64)
  stats = divnorm.BatchStats(jnp.full((6,), 0.5), jnp.full((6,), 4.0))
  (y, v), same = divnorm.batch_norm(
    x, stats, training=False, sigma=SIGMA, return_centered=True)
  np.testing.assert_allclose(y, (x - 0.5) / np.sqrt(4.0 + SIGMA**2), rtol=1e-12)
  np.testing.assert_allclose(v, x - 0.5, rtol=1e-12)
  assert same is stats


def test_equals_flax_batch_norm_over_several_steps():
  layer = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=SIGMA**2,
                       use_bias=False, use_scale=False)
  with jax.numpy_dtype_promotion("standard"):
    variables = layer.init(jax.random.key(0), _x())
  stats = divnorm.batch_stats_init(_x())
  for step in range(3):
    x = _x(seed=step)
    with jax.numpy_dtype_promotion("standard"):
      y_flax, updates = layer.apply(variables, x, mutable=["batch_stats"])
    variables = {"batch_stats": updates["batch_stats"]}
    y, stats = divnorm.batch_norm(x, stats, training=True, momentum=0.9, sigma=SIGMA)
    np.testing.assert_allclose(y, y_flax, atol=2e-5)
    np.testing.assert_allclose(stats.mean, variables["batch_stats"]["mean"], atol=1e-5)
    np.testing.assert_allclose(stats.var, variables["batch_stats"]["var"], atol=1e-5)
  eval_layer = layer.clone(use_running_average=True)
  with jax.numpy_dtype_promotion("standard"):
    y_flax = eval_layer.apply(variables, _x(seed=9))
  y, _ = divnorm.batch_norm(_x(seed=9), stats, training=False, sigma=SIGMA)
  np.testing.assert_allclose(y, y_flax, atol=2e-5)


def test_feature_axes_and_mask(x64):
  x = _x((8, 6, 5)).astype(np.float64)
  y, stats = divnorm.batch_norm(
    x, divnorm.batch_stats_init(x, feature_axes=(1, 2), dtype=jnp.float64), training=True,
    feature_axes=(1, 2))
  assert stats.mean.shape == (6, 5)
  np.testing.assert_allclose(y, (x - x.mean(0)) / np.sqrt(x.var(0)), rtol=1e-6)
  # A padded batch: the padding rows take no part in the statistics.
  mask = np.arange(8)[:, None, None] < 5
  y, stats = divnorm.batch_norm(
    x, divnorm.batch_stats_init(x, dtype=jnp.float64), training=True, mask=mask, momentum=0.0)
  ref = x[:5]
  np.testing.assert_allclose(stats.mean, ref.mean((0, 1)), rtol=1e-12)
  np.testing.assert_allclose(stats.var, ref.var((0, 1)), rtol=1e-12)
  np.testing.assert_array_equal(np.asarray(y)[5:], 0.0)


def _mesh():
  return jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))


def test_shard_map_with_axis_name_equals_one_device():
  x = _x((32, 3, 3, 6))
  stats = divnorm.batch_stats_init(x)
  expected_y, expected_stats = divnorm.batch_norm(x, stats, training=True, sigma=SIGMA)
  step = jax.shard_map(
    lambda x, s: divnorm.batch_norm(x, s, training=True, sigma=SIGMA, axis_name="data"),
    mesh=_mesh(), in_specs=(P("data"), P()), out_specs=(P("data"), P()))
  y, new = jax.jit(step)(x, stats)
  np.testing.assert_allclose(y, expected_y, atol=1e-5)
  np.testing.assert_allclose(new.mean, expected_stats.mean, atol=1e-6)
  np.testing.assert_allclose(new.var, expected_stats.var, atol=1e-6)


def test_jit_with_a_sharded_batch_equals_one_device():
  x = _x((32, 3, 3, 6))
  stats = divnorm.batch_stats_init(x)
  expected_y, expected_stats = divnorm.batch_norm(x, stats, training=True, sigma=SIGMA)
  x_sharded = jax.device_put(x, NamedSharding(_mesh(), P("data")))
  assert len(x_sharded.sharding.device_set) == 8
  y, new = jax.jit(lambda x, s: divnorm.batch_norm(x, s, training=True, sigma=SIGMA))(
    x_sharded, stats)
  np.testing.assert_allclose(y, expected_y, atol=1e-5)
  np.testing.assert_allclose(new.mean, expected_stats.mean, atol=1e-6)
  np.testing.assert_allclose(new.var, expected_stats.var, atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_state_dtype_is_a_fixed_point_and_no_retrace(dtype):
  traces = []

  @jax.jit
  def step(x, stats):
    traces.append(1)
    return divnorm.batch_norm(x, stats, training=True)

  stats = divnorm.batch_stats_init((4, 6))
  for seed in range(3):
    y, new = step(jnp.asarray(_x((4, 6), seed=seed), dtype), stats)
    assert y.dtype == dtype
    assert jax.tree.map(lambda a: (a.shape, a.dtype), new) == jax.tree.map(
      lambda a: (a.shape, a.dtype), stats)
    stats = new
  assert len(traces) == 1


def test_float64_input_with_float32_state_under_strict_promotion(x64):
  x = _x((4, 6)).astype(np.float64)
  y, stats = divnorm.batch_norm(x, divnorm.batch_stats_init(x), training=True)
  assert y.dtype == jnp.float64 and stats.mean.dtype == jnp.float32


def test_bad_calls():
  x = _x((4, 6))
  with pytest.raises(ValueError, match="batch_stats_init"):
    divnorm.batch_norm(x, divnorm.batch_stats_init((4, 5)), training=True)
  with pytest.raises(ValueError, match="momentum"):
    divnorm.batch_norm(x, divnorm.batch_stats_init(x), training=True, momentum=1.5)
