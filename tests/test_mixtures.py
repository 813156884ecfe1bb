"""Mean-only BN, batch renorm, batch-instance and switchable norm against float64 NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import divnorm
from divnorm import mixtures


def _x(shape, seed=0, offset=1.0, dtype=np.float64):
  rng = np.random.default_rng(seed)
  return (offset + rng.normal(size=shape) * rng.uniform(0.5, 2.0, size=shape[-1])).astype(dtype)


def _stats(x, seed=1):
  rng = np.random.default_rng(seed)
  c = x.shape[-1]
  return divnorm.BatchStats(jnp.asarray(rng.normal(size=c)), jnp.asarray(rng.uniform(0.5, 2, c)))


def _np_moments(x, axes):
  return x.mean(axes, keepdims=True), x.var(axes, keepdims=True)


# ---- mean-only batch norm ---------------------------------------------------------------


def test_mean_only_batch_norm(x64):
  x = _x((4, 3, 5))
  stats = mixtures.mean_stats_init(x)
  y, new = mixtures.mean_only_batch_norm(x, stats, training=True, momentum=0.9)
  np.testing.assert_allclose(y, x - x.mean((0, 1), keepdims=True), atol=1e-12)
  np.testing.assert_allclose(new.mean, 0.1 * x.mean((0, 1)), atol=1e-7)
  y_eval, same = mixtures.mean_only_batch_norm(x, new, training=False)
  np.testing.assert_allclose(y_eval, x - np.asarray(new.mean, np.float64), atol=1e-7)
  assert same is new


def test_mean_only_batch_norm_mask(x64):
  x = _x((6, 3))
  mask = np.array([1, 1, 0, 1, 0, 1], bool)[:, None]
  y, _ = mixtures.mean_only_batch_norm(
    x, mixtures.mean_stats_init(x), training=True, mask=mask)
  mean = x[mask[:, 0]].mean(0)
  np.testing.assert_allclose(y, np.where(mask, x - mean, 0.0), atol=1e-12)


# ---- batch renormalization --------------------------------------------------------------


def _np_renorm(x, stats, rmax, dmax, sigma):
  mean, var = _np_moments(x, (0, 1))
  run_std = np.sqrt(np.asarray(stats.var) + sigma**2)
  std = np.sqrt(var + sigma**2)
  r = np.clip(std / run_std, 1 / rmax, rmax)
  d = np.clip((mean - np.asarray(stats.mean)) / run_std, -dmax, dmax)
  return (x - mean) / std * r + d


@pytest.mark.parametrize("rmax,dmax", [(1.5, 0.5), (3.0, 5.0), (1.0, 0.0)])
def test_batch_renorm_against_numpy(x64, rmax, dmax):
  x = _x((4, 5, 3))
  stats = _stats(x)
  y, new = mixtures.batch_renorm(x, stats, training=True, rmax=rmax, dmax=dmax, sigma=0.1)
  np.testing.assert_allclose(y, _np_renorm(x, stats, rmax, dmax, 0.1), rtol=1e-10, atol=1e-10)
  # Ioffe (2017), Algorithm 1: moving averages of mu_B and of sigma_B = sqrt(var_B + eps),
  # with alpha = 1 - momentum; `var` keeps sigma^2 - eps.
  mean, var = _np_moments(x, (0, 1))
  run_std = 0.99 * np.sqrt(np.asarray(stats.var) + 0.01) + 0.01 * np.sqrt(var.ravel() + 0.01)
  np.testing.assert_allclose(new.mean, 0.99 * np.asarray(stats.mean) + 0.01 * mean.ravel(),
                             rtol=1e-12)
  np.testing.assert_allclose(new.var, run_std**2 - 0.01, rtol=1e-12)
  np.testing.assert_allclose(np.sqrt(new.var + 0.01), run_std, rtol=1e-12)


def test_batch_renorm_with_r1_d0_is_batch_norm(x64):
  x = _x((8, 3))
  stats = _stats(x)
  y, _ = mixtures.batch_renorm(x, stats, training=True, rmax=1.0, dmax=0.0, sigma=0.2)
  y_bn, _ = divnorm.batch_norm(x, stats, training=True, sigma=0.2)
  np.testing.assert_allclose(y, y_bn, atol=1e-12)
  # Running statistics equal to the batch's give r = 1, d = 0 for any limits.
  mean, var = _np_moments(x, (0,))
  exact = divnorm.BatchStats(jnp.asarray(mean[0]), jnp.asarray(var[0]))
  y, _ = mixtures.batch_renorm(x, exact, training=True, rmax=3.0, dmax=5.0, sigma=0.2)
  np.testing.assert_allclose(y, y_bn, atol=1e-10)
  y_eval, _ = mixtures.batch_renorm(x, stats, training=False, sigma=0.2)
  np.testing.assert_allclose(y_eval, divnorm.batch_norm(x, stats, training=False, sigma=0.2)[0])


def test_batch_renorm_r_d_carry_no_gradient(x64):
  x = _x((6, 2))
  stats = _stats(x)
  mean, var = _np_moments(x, (0,))
  run_std = np.sqrt(np.asarray(stats.var))
  r = np.clip(np.sqrt(var) / run_std, 1 / 1.2, 1.2)
  d = np.clip((mean - np.asarray(stats.mean)) / run_std, -0.3, 0.3)
  w = jnp.arange(1.0, 13.0).reshape(6, 2)

  def renorm(x):
    return mixtures.batch_renorm(x, stats, training=True, rmax=1.2, dmax=0.3)[0]

  def bn_times_constants(x):
    m, v = jnp.mean(x, 0, keepdims=True), jnp.var(x, 0, keepdims=True)
    return (x - m) / jnp.sqrt(v) * r + d

  grad = jax.jit(jax.grad(lambda x: jnp.sum(renorm(x) * w)))(x)
  want = jax.jit(jax.grad(lambda x: jnp.sum(bn_times_constants(x) * w)))(x)
  np.testing.assert_allclose(grad, want, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("sigma", [0.3, np.float32(0.3), jnp.asarray(0.3), jnp.full((3,), 0.3)],
                         ids=["python", "numpy", "jax", "per-feature"])
def test_batch_renorm_statistics_keep_their_shape_for_any_sigma(x64, sigma):
  # A sigma that is an array (a NumPy or JAX scalar, one per feature, a learned exp(log_sigma)
  # or a traced one) once gave the running variance the broadcast statistics' shape (1, 1, 3).
  x = _x((4, 5, 3))
  stats = _stats(x)
  want = mixtures.batch_renorm(x, stats, training=True, sigma=0.3)[1]
  for new in (mixtures.batch_renorm(x, stats, training=True, sigma=sigma)[1],
              jax.jit(lambda s: mixtures.batch_renorm(x, stats, training=True, sigma=s)[1])(
                  sigma)):
    assert new.mean.shape == new.var.shape == (3,)
    np.testing.assert_allclose(new.var, want.var, rtol=1e-6)
    np.testing.assert_allclose(new.mean, want.mean, rtol=1e-12)


@pytest.mark.slow
def test_batch_renorm_traced_limits_and_jit():
  x = _x((4, 3), dtype=np.float32)
  stats = divnorm.batch_stats_init(x)
  f = jax.jit(lambda x, rmax, dmax: mixtures.batch_renorm(
    x, stats, training=True, rmax=rmax, dmax=dmax)[0])
  np.testing.assert_allclose(
    f(x, jnp.float32(2.0), jnp.float32(1.0)),
    mixtures.batch_renorm(x, stats, training=True, rmax=2.0, dmax=1.0)[0], rtol=1e-6)


# ---- batch-instance normalization -------------------------------------------------------


def _np_bn_in(x, sigma):
  m_b, v_b = _np_moments(x, (0, 1, 2))
  m_i, v_i = _np_moments(x, (1, 2))
  return (x - m_b) / np.sqrt(v_b + sigma**2), (x - m_i) / np.sqrt(v_i + sigma**2)


def test_batch_instance_norm(x64):
  x = _x((3, 4, 5, 2))
  stats = divnorm.batch_stats_init(x, dtype=jnp.float64)
  bn, inn = _np_bn_in(x, 0.1)
  rho = np.array([0.25, 0.8])
  y, new = mixtures.batch_instance_norm(x, stats, rho=rho, training=True, sigma=0.1)
  np.testing.assert_allclose(y, rho * bn + (1 - rho) * inn, atol=1e-10)
  np.testing.assert_allclose(new.mean, 0.01 * x.mean((0, 1, 2)), atol=1e-12)
  (y1, _), _ = mixtures.batch_instance_norm(
    x, stats, rho=1.0, training=True, sigma=0.1, return_centered=True)
  np.testing.assert_allclose(y1, divnorm.batch_norm(x, stats, training=True, sigma=0.1)[0])
  y0, _ = mixtures.batch_instance_norm(x, stats, rho=0.0, training=True, sigma=0.1)
  np.testing.assert_allclose(y0, divnorm.instance_norm(x, sigma=0.1), atol=1e-12)


def test_batch_instance_norm_errors():
  x = _x((2, 3, 3, 2), dtype=np.float32)
  stats = divnorm.batch_stats_init(x)
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    mixtures.batch_instance_norm(x, stats, rho=1.5, training=True)
  with pytest.raises(ValueError, match="one weight per channel"):
    mixtures.batch_instance_norm(x, stats, rho=jnp.ones(3) / 2, training=True)
  with pytest.raises(ValueError, match="rank >= 3"):
    mixtures.batch_instance_norm(x[:, 0, 0], stats, rho=0.5, training=True)
  for axis in (0, 4):
    with pytest.raises(ValueError, match="non-batch axis"):
      mixtures.batch_instance_norm(x, stats, rho=0.5, training=True, channel_axis=axis)
    with pytest.raises(ValueError, match="non-batch axis"):
      mixtures.switchable_norm(x, stats, mean_weights=np.ones(3) / 3,
                               var_weights=np.ones(3) / 3, training=True, channel_axis=axis)


# ---- switchable normalization -----------------------------------------------------------


def test_switchable_norm_against_numpy(x64):
  x = _x((3, 4, 5, 2))
  stats = _stats(x)
  wm, wv = np.array([0.2, 0.3, 0.5]), np.array([0.6, 0.1, 0.3])
  y, new = mixtures.switchable_norm(
    x, stats, mean_weights=wm, var_weights=wv, training=True, sigma=0.1)
  moments = [_np_moments(x, a) for a in [(1, 2), (1, 2, 3), (0, 1, 2)]]
  mean = sum(w * m for w, (m, _) in zip(wm, moments, strict=True))
  var = sum(w * v for w, (_, v) in zip(wv, moments, strict=True))
  np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 0.01), atol=1e-10)
  np.testing.assert_allclose(new.var, 0.99 * stats.var + 0.01 * moments[2][1].ravel())
  # Evaluation swaps the batch statistics for the running ones.
  y, _ = mixtures.switchable_norm(
    x, stats, mean_weights=wm, var_weights=wv, training=False, sigma=0.1)
  mean = wm[0] * moments[0][0] + wm[1] * moments[1][0] + wm[2] * np.asarray(stats.mean)
  var = wv[0] * moments[0][1] + wv[1] * moments[1][1] + wv[2] * np.asarray(stats.var)
  np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 0.01), atol=1e-10)


@pytest.mark.parametrize("wm", [[0.0, 0.0, 0.0], [0.5, 0.7, 0.1], [-0.3, 0.2, 0.4]])
def test_switchable_norm_mean_weights_need_not_sum_to_one(x64, wm):
  """``mu = sum_k w_k mu_k`` for any weights (the shift of the statistics enters with the
  weights' sum: once it entered with weight 1, whatever the weights)."""
  x = _x((3, 4, 5, 2), offset=5.0)
  wv = np.array([0.2, 0.3, 0.5])
  y, _ = mixtures.switchable_norm(x, _stats(x), mean_weights=np.array(wm), var_weights=wv,
                                  training=True, sigma=0.1)
  moments = [_np_moments(x, a) for a in [(1, 2), (1, 2, 3), (0, 1, 2)]]
  mean = sum(w * m for w, (m, _) in zip(wm, moments, strict=True))
  var = sum(w * v for w, (_, v) in zip(wv, moments, strict=True))
  np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 0.01), atol=1e-10)


def test_learned_rho_clips_the_value_and_passes_the_gradient():
  """The modules' rho: the value clipped to [0, 1], the gradient of rho itself, so a rho an
  update carried past the interval learns on (`jnp.clip`'s gradient there is 0)."""
  rho = jnp.array([-0.5, 0.0, 0.3, 1.0, 1.2])
  np.testing.assert_array_equal(mixtures.learned_rho(rho), jnp.clip(rho, 0.0, 1.0))
  w = jnp.arange(1.0, 6.0)
  np.testing.assert_array_equal(jax.grad(lambda r: jnp.sum(w * mixtures.learned_rho(r)))(rho), w)
  x, stats = _x((2, 3, 3, 4)), _stats(_x((2, 3, 3, 4)))
  grad = jax.grad(lambda r: jnp.sum(mixtures.batch_instance_norm(
      x, stats, rho=mixtures.learned_rho(r), training=True)[0] * x))(jnp.full(4, 1.2))
  assert np.all(np.isfinite(grad)) and np.all(grad != 0)


def _masked_feature(x):
  """A mask with no True entry for the last feature (channel)."""
  return np.ones(x.shape, bool) & (np.arange(x.shape[-1]) < x.shape[-1] - 1)


_RUNNING = {
    "batch_norm": lambda x, st, m: divnorm.batch_norm(x, st, training=True, mask=m,
                                                      momentum=0.5)[1],
    "mean_only_batch_norm": lambda x, st, m: divnorm.mean_only_batch_norm(
        x, divnorm.MeanStats(st.mean), training=True, mask=m, momentum=0.5)[1],
    "batch_renorm": lambda x, st, m: divnorm.batch_renorm(x, st, training=True, mask=m,
                                                          momentum=0.5)[1],
    "batch_instance_norm": lambda x, st, m: divnorm.batch_instance_norm(
        x, st, rho=0.5, training=True, mask=m, momentum=0.5)[1],
    "switchable_norm": lambda x, st, m: divnorm.switchable_norm(
        x, st, mean_weights=jnp.ones(3) / 3, var_weights=jnp.ones(3) / 3, training=True,
        mask=m, momentum=0.5)[1],
}


@pytest.mark.parametrize("name", sorted(_RUNNING))
def test_a_feature_the_mask_leaves_empty_keeps_its_running_statistics(x64, name):
  """A batch with no masked-in entry of a feature (all padding) leaves its running
  statistics as they were; the other features update (once they moved toward 0)."""
  x = _x((4, 3, 3, 3))
  stats = divnorm.BatchStats(jnp.full(3, 10.0), jnp.full(3, 2.0))
  new = _RUNNING[name](x, stats, _masked_feature(x))
  unmasked = _RUNNING[name](x, stats, None)
  for old, got, free in zip(stats, new, unmasked, strict=False):  # MeanStats: mean only
    assert got[-1] == old[-1]
    np.testing.assert_allclose(got[:-1], free[:-1], rtol=1e-12)
    assert np.all(got[:-1] != old[:-1])


def test_switchable_one_hot_is_in_ln_bn(x64):
  x = _x((3, 4, 5, 2))
  stats = divnorm.batch_stats_init(x, dtype=jnp.float64)
  expected = [
    divnorm.instance_norm(x, sigma=0.1),
    divnorm.layer_norm(x, reduction_axes=(1, 2, 3), sigma=0.1),
    divnorm.batch_norm(x, stats, training=True, sigma=0.1)[0],
  ]
  for k, want in enumerate(expected):
    w = np.eye(3)[k]
    y, _ = mixtures.switchable_norm(
      x, stats, mean_weights=w, var_weights=w, training=True, sigma=0.1)
    np.testing.assert_allclose(y, want, atol=1e-10)


def test_switchable_evaluation_is_each_example_s_alone():
  """Evaluating reads the running statistics only: each example's output is its own (equal to
  the example normalized alone, at an offset where one shift for the batch would round it
  by the other examples), and a mapped `axis_name` need not be bound (equinox's inference)."""
  x = np.asarray(_x((3, 4, 5, 2), dtype=np.float32) + np.array([1e4, 0.0, -3e3])[:, None, None,
                                                                                   None],
                 np.float32)
  stats = divnorm.BatchStats(jnp.asarray([1e3, -2.0], jnp.float32), jnp.asarray([4.0, 0.5]))
  w = jnp.asarray([0.2, 0.3, 0.5])
  kw = dict(mean_weights=w, var_weights=w, training=False, sigma=0.1, axis_name="batch")
  y, new = mixtures.switchable_norm(x, stats, **kw)
  assert new is stats
  for i in range(3):
    alone, _ = mixtures.switchable_norm(x[i:i + 1], stats, **kw)
    np.testing.assert_array_equal(y[i:i + 1], alone)
  bn = divnorm.batch_norm(x, stats, training=False, sigma=0.1)[0]
  ln = divnorm.layer_norm(x, reduction_axes=(1, 2, 3))
  assert np.all(np.isfinite(y)) and not np.allclose(y, bn) and not np.allclose(y, ln)


def test_switchable_errors_and_grads(x64):
  x = _x((2, 3, 3, 2))
  stats = divnorm.batch_stats_init(x, dtype=jnp.float64)
  with pytest.raises(ValueError, match="3 weights"):
    mixtures.switchable_norm(
      x, stats, mean_weights=np.ones(2) / 2, var_weights=np.ones(3) / 3, training=True)
  with pytest.raises(ValueError, match="batch_stats_init"):
    mixtures.switchable_norm(x, divnorm.batch_stats_init((3,)), mean_weights=np.ones(3) / 3,
                             var_weights=np.ones(3) / 3, training=True)

  def f(x, logits):
    w = jax.nn.softmax(logits)
    return mixtures.switchable_norm(
      x, stats, mean_weights=w, var_weights=w, training=True, sigma=0.3)[0]

  check_grads(jax.jit(f), (x, jnp.array([0.1, -0.2, 0.3])), order=1, modes=["rev"])


def test_renorm_limit_errors():
  x = _x((4, 3), dtype=np.float32)
  stats = divnorm.batch_stats_init(x)
  with pytest.raises(ValueError, match="rmax=0.5 must be >= 1"):
    mixtures.batch_renorm(x, stats, training=True, rmax=0.5)
  with pytest.raises(ValueError, match="dmax=-1"):
    mixtures.batch_renorm(x, stats, training=True, dmax=-1.0)
  with pytest.raises(ValueError, match="batch_stats_init"):
    mixtures.batch_renorm(x, divnorm.batch_stats_init((2,)), training=True)


def test_dtypes_bf16():
  x = _x((2, 3, 3, 4), dtype=np.float32)
  stats = divnorm.batch_stats_init(x)
  xb = x.astype(jnp.bfloat16)
  for fn in [
    lambda x: mixtures.batch_renorm(x, stats, training=True)[0],
    lambda x: mixtures.batch_instance_norm(x, stats, rho=0.5, training=True)[0],
    lambda x: mixtures.switchable_norm(
      x, stats, mean_weights=jnp.ones(3) / 3, var_weights=jnp.ones(3) / 3, training=True)[0],
    lambda x: mixtures.mean_only_batch_norm(
      x, mixtures.mean_stats_init(x), training=True)[0],
  ]:
    fn = jax.jit(fn)
    yb = fn(xb)
    assert yb.dtype == jnp.bfloat16
    np.testing.assert_allclose(yb.astype(np.float32), fn(x), atol=0.05, rtol=0.02)


def test_batch_statistics_under_shard_map_equal_one_device():
  from jax.sharding import AxisType
  from jax.sharding import PartitionSpec as P

  x = _x((8, 3, 3, 4), dtype=np.float32)
  stats = divnorm.batch_stats_init(x)
  w = jnp.asarray([0.2, 0.3, 0.5])
  mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
  calls = [
    lambda x, name: mixtures.batch_renorm(
      x, stats, training=True, rmax=1.5, dmax=0.5, axis_name=name),
    lambda x, name: mixtures.switchable_norm(
      x, stats, mean_weights=w, var_weights=w[::-1], training=True, axis_name=name),
    lambda x, name: mixtures.batch_instance_norm(
      x, stats, rho=0.5, training=True, axis_name=name),
  ]
  for call in calls:
    want, want_stats = jax.jit(lambda x, call=call: call(x, None))(x)
    sharded = jax.jit(jax.shard_map(
      lambda x, call=call: call(x, "data"), mesh=mesh, in_specs=P("data"),
      out_specs=(P("data"), P())))
    got, got_stats = sharded(x)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(got_stats.var, want_stats.var, atol=1e-6)


_MIXTURES = {
    "switchable_norm": lambda x, st, mask: divnorm.switchable_norm(
        x, st, mean_weights=jnp.array([0.2, 0.3, 0.5]), var_weights=jnp.array([0.5, 0.3, 0.2]),
        training=True, mask=mask)[0],
    "batch_renorm": lambda x, st, mask: divnorm.batch_renorm(x, st, training=True, mask=mask)[0],
    "batch_instance_norm": lambda x, st, mask: divnorm.batch_instance_norm(
        x, st, rho=jnp.full(3, 0.4), training=True, mask=mask)[0],
}


@pytest.mark.parametrize("name", sorted(_MIXTURES))
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_masked_out_nan_or_inf_reaches_no_gradient(name, bad):
  """A mask selects before the squares that JAX differentiates here (`moments`): the
  gradient with NaN or inf outside the mask equals the one with zeros there."""
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 4, 3)), jnp.float32)
  mask = jnp.ones(x.shape, bool).at[0, 0, 0, :].set(False)
  st = divnorm.batch_stats_init(x)
  w = jnp.asarray(np.random.default_rng(1).normal(size=x.shape), jnp.float32)

  def loss(x):
    return jnp.sum(jnp.where(mask, _MIXTURES[name](x, st, mask), 0.0) * w)

  clean = jax.grad(loss)(x.at[0, 0, 0, :].set(0.0))
  dirty = jax.grad(loss)(x.at[0, 0, 0, :].set(bad))
  assert np.isfinite(np.asarray(dirty)).all()
  np.testing.assert_allclose(dirty, clean, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("offset", [1e4, 1e6])
def test_mixtures_keep_float32_accuracy_at_large_offsets(offset):
  """Statistics of several fields meet around one shift from the data: switchable norm with
  one-hot BN weights is batch norm, mean-only BN and renorm's d are exact to float32 (they
  were off by 3e-2, 0.12 and 2e-2 at 1e6)."""
  x = jnp.asarray(offset + np.random.default_rng(0).standard_normal((4, 6, 6, 8)), jnp.float32)
  x64 = np.asarray(x, np.float64)
  mean64 = x64.mean((0, 1, 2))
  st = divnorm.batch_stats_init(x)
  bn = divnorm.batch_norm(x, st, training=True)[0]
  one_hot = jnp.array([0.0, 0.0, 1.0])
  sn = divnorm.switchable_norm(x, st, mean_weights=one_hot, var_weights=one_hot,
                               training=True)[0]
  np.testing.assert_allclose(sn, bn, rtol=0, atol=1e-6)
  mo = divnorm.mean_only_batch_norm(x, divnorm.mean_stats_init(x), training=True)[0]
  np.testing.assert_allclose(np.asarray(mo, np.float64), x64 - mean64, rtol=0, atol=1e-6)
  running = divnorm.BatchStats(jnp.asarray(mean64 + 0.1, jnp.float32), jnp.full(8, 1.5))
  br = divnorm.batch_renorm(x, running, training=True, rmax=1.0)[0]  # r = 1: BN + d
  d64 = (mean64 - np.asarray(running.mean, np.float64)) / np.sqrt(1.5)
  np.testing.assert_allclose(np.asarray(br - bn, np.float64), np.broadcast_to(d64, x.shape),
                             rtol=0, atol=1e-6)


def test_batch_instance_norm_of_bfloat16_rounds_once():
  """BN and IN are mixed in float32 and rounded to bfloat16 once: the output is the
  float32 computation's, rounded (it mixed outputs already rounded, up to 1.6 ulp off)."""
  x = jnp.asarray(np.random.default_rng(3).normal(size=(4, 5, 5, 6)), jnp.bfloat16)
  st = divnorm.batch_stats_init(x)
  rho = jnp.linspace(0.1, 0.9, 6)
  y = divnorm.batch_instance_norm(x, st, rho=rho, training=True)[0]
  want = divnorm.batch_instance_norm(x.astype(jnp.float32), st, rho=rho, training=True)[0]
  assert y.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(y, np.float32),
                                np.asarray(want.astype(jnp.bfloat16), np.float32))
