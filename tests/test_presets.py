"""Each preset equals a float64 NumPy one-liner and the matching flax.linen layer."""

import functools
import importlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import divnorm
from tests import reference as ref

NORMALIZE_MODULE = importlib.import_module("divnorm._src.core")

SIGMA = 0.1  # flax epsilon = SIGMA ** 2


def _x(shape=(3, 6, 5, 8), seed=0, dtype=np.float32):
  rng = np.random.default_rng(seed)
  return (1.5 + 2.0 * rng.normal(size=shape)).astype(dtype)


def _np_norm(x, axes, sigma=SIGMA):
  mean = x.mean(axes, keepdims=True)
  return (x - mean) / np.sqrt(((x - mean) ** 2).mean(axes, keepdims=True) + sigma**2)


def _flax(layer, x):
  with jax.numpy_dtype_promotion("standard"):
    variables = layer.init(jax.random.key(0), x)
    return layer.apply(variables, x)


def test_layer_norm(x64):
  x = _x(dtype=np.float64)
  for axes in [-1, (1, 2, 3)]:
    y = divnorm.layer_norm(x, reduction_axes=axes, sigma=SIGMA)
    np.testing.assert_allclose(y, _np_norm(x, axes), rtol=1e-12, atol=1e-12)
  x32 = x.astype(np.float32)
  flax_ln = nn.LayerNorm(epsilon=SIGMA**2, use_bias=False, use_scale=False,
                         reduction_axes=(1, 2, 3), feature_axes=-1)
  np.testing.assert_allclose(
    divnorm.layer_norm(x32, reduction_axes=(1, 2, 3), sigma=SIGMA), _flax(flax_ln, x32), atol=2e-6)


def test_instance_norm(x64):
  x = _x(dtype=np.float64)
  np.testing.assert_allclose(divnorm.instance_norm(x, sigma=SIGMA), _np_norm(x, (1, 2)), rtol=1e-12, atol=1e-12)
  nchw = np.moveaxis(x, -1, 1)
  np.testing.assert_allclose(
    divnorm.instance_norm(nchw, channel_axis=1, sigma=SIGMA), _np_norm(nchw, (2, 3)), rtol=1e-12, atol=1e-12)
  x32 = x.astype(np.float32)
  flax_in = nn.InstanceNorm(epsilon=SIGMA**2, use_bias=False, use_scale=False)
  np.testing.assert_allclose(divnorm.instance_norm(x32, sigma=SIGMA), _flax(flax_in, x32), atol=2e-6)


def test_group_norm(x64):
  x = _x(dtype=np.float64)
  grouped = x.reshape(3, 6, 5, 4, 2)
  expected = _np_norm(grouped, (1, 2, 4)).reshape(x.shape)
  np.testing.assert_allclose(divnorm.group_norm(x, num_groups=4, sigma=SIGMA), expected, rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(divnorm.group_norm(x, num_groups=None, group_size=2, sigma=SIGMA), expected, rtol=1e-12, atol=1e-12)
  x32 = x.astype(np.float32)
  flax_gn = nn.GroupNorm(num_groups=4, epsilon=SIGMA**2, use_bias=False, use_scale=False)
  np.testing.assert_allclose(
    divnorm.group_norm(x32, num_groups=4, sigma=SIGMA), _flax(flax_gn, x32), atol=2e-6)


def test_group_norm_on_rank_2_input(x64):
  # [B, C] (dense or RNN units) takes the [B, G, C/G] path; masks broadcast as elsewhere.
  x = _x((5, 12), seed=7, dtype=np.float64)
  expected = _np_norm(x.reshape(5, 3, 4), (2,)).reshape(x.shape)
  np.testing.assert_allclose(divnorm.group_norm(x, num_groups=3, sigma=SIGMA), expected,
                             rtol=1e-12, atol=1e-12)
  x32 = x.astype(np.float32)
  flax_gn = nn.GroupNorm(num_groups=3, epsilon=SIGMA**2, use_bias=False, use_scale=False)
  np.testing.assert_allclose(divnorm.group_norm(x32, num_groups=3, sigma=SIGMA),
                             _flax(flax_gn, x32), atol=2e-6)
  keep = np.array([[True], [False], [True], [True], [True]])
  y, v = divnorm.group_norm(x, num_groups=3, sigma=SIGMA, mask=keep, return_centered=True)
  np.testing.assert_allclose(y[keep[:, 0]], expected[keep[:, 0]], rtol=1e-12, atol=1e-12)
  assert not np.any(y[1]) and not np.any(v[1])


@pytest.mark.parametrize("axes", [-1, (1, 2, 3), {1: 3, 3: None}])
def test_rms_norm_gradients(x64, axes):
  # The unmasked path has a hand-written JVP; check it to second order, in x and sigma,
  # and against autodiff of the masked path with an all-True mask.
  from jax.test_util import check_grads
  x = _x((2, 4, 3, 5), seed=8, dtype=np.float64)
  check_grads(lambda x, s: divnorm.rms_norm(x, reduction_axes=axes, sigma=s), (x, 0.3),
              order=2, modes=("fwd", "rev"))
  w = np.random.default_rng(9).normal(size=x.shape)

  def loss(x, s, mask=None):
    return jnp.sum(divnorm.rms_norm(x, reduction_axes=axes, sigma=s, mask=mask) * w)

  ones = np.ones(x.shape, bool)
  for a, b in zip(jax.grad(loss, (0, 1))(x, 0.3), jax.grad(loss, (0, 1))(x, 0.3, ones),
                  strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_group_norm_nchw_and_identities():
  x = _x()
  nchw = jnp.moveaxis(x, -1, 1)
  np.testing.assert_allclose(
    divnorm.group_norm(nchw, num_groups=4, channel_axis=1),
    jnp.moveaxis(divnorm.group_norm(x, num_groups=4), -1, 1), atol=1e-6)
  # One group is layer norm over (H, W, C); one channel per group is instance norm.
  np.testing.assert_allclose(
    divnorm.group_norm(x, num_groups=1), divnorm.layer_norm(x, reduction_axes=(1, 2, 3)),
    atol=1e-6)
  np.testing.assert_allclose(divnorm.group_norm(x, num_groups=None, group_size=1), divnorm.instance_norm(x),
                             atol=1e-6)


def test_rms_norm(x64):
  x = _x(dtype=np.float64)
  expected = x / np.sqrt((x**2).mean(-1, keepdims=True) + SIGMA**2)
  np.testing.assert_allclose(divnorm.rms_norm(x, sigma=SIGMA), expected, rtol=1e-12, atol=1e-12)
  x32 = x.astype(np.float32)
  flax_rms = nn.RMSNorm(epsilon=SIGMA**2, use_scale=False)
  np.testing.assert_allclose(divnorm.rms_norm(x32, sigma=SIGMA), _flax(flax_rms, x32), atol=2e-6)


@pytest.mark.parametrize("border", ["valid", "zeros"])
def test_divisive_norm_is_normalize_with_spatial_windows(x64, border):
  x = _x((2, 7, 6, 3), dtype=np.float64)
  y = divnorm.divisive_norm(
    x, summation_window=(3, 5), suppression_window=(5, 3), sigma=0.5, border=border)
  y_ref, _ = ref.normalize(
    x, {3: None, 1: 3, 2: 5}, {3: None, 1: 5, 2: 3}, sigma=0.5, border=border)
  np.testing.assert_allclose(y, y_ref, rtol=1e-10)
  # Per channel (across_channels=False) and channels-first.
  y = divnorm.divisive_norm(x, summation_window=3, sigma=0.5, across_channels=False, border=border)
  np.testing.assert_allclose(y, ref.normalize(x, {1: 3, 2: 3}, sigma=0.5, border=border)[0],
                             rtol=1e-10)
  nchw = np.moveaxis(x, -1, 1)
  np.testing.assert_allclose(
    divnorm.divisive_norm(nchw, summation_window=(3, 5), sigma=0.5, channel_axis=1, border=border),
    np.moveaxis(divnorm.divisive_norm(x, summation_window=(3, 5), sigma=0.5, border=border), -1, 1),
    rtol=1e-10)


def test_divisive_norm_on_rnn_units(x64):
  x = _x((4, 80), dtype=np.float64)
  y, v = divnorm.divisive_norm(x, summation_window=(61,), sigma=1.0, return_centered=True)
  y_ref, v_ref = ref.normalize(x, {1: 61}, sigma=1.0)
  np.testing.assert_allclose(y, y_ref, rtol=1e-10)
  np.testing.assert_allclose(v, v_ref, rtol=1e-10)


def test_presets_keep_bfloat16():
  x = jnp.asarray(_x(), jnp.bfloat16)
  outs = [
    divnorm.layer_norm(x), divnorm.instance_norm(x), divnorm.group_norm(x, num_groups=2),
    divnorm.rms_norm(x), divnorm.divisive_norm(x, summation_window=3, sigma=0.5),
  ]
  assert all(o.dtype == jnp.bfloat16 for o in outs)


def test_l1_penalty(x64):
  v = _x((3, 4), dtype=np.float64) - 1.5
  np.testing.assert_allclose(divnorm.l1_penalty(v, 0.01), 0.01 * np.abs(v).mean(), rtol=1e-12, atol=1e-12)
  mask = np.arange(12).reshape(3, 4) % 3 == 0
  np.testing.assert_allclose(
    divnorm.l1_penalty(v, 0.5, mask=mask), 0.5 * np.abs(v[mask]).mean(), rtol=1e-12, atol=1e-12)
  assert divnorm.l1_penalty(jnp.ones((2,), jnp.bfloat16), 1.0).dtype == jnp.float32


FAST_CASES = [
  lambda x, **k: divnorm.normalize(x, (1, 2, 3), sigma=SIGMA, **k),
  lambda x, **k: divnorm.layer_norm(x, reduction_axes=(1, 2, 3), sigma=SIGMA, **k),
  lambda x, **k: divnorm.instance_norm(x, sigma=SIGMA, **k),
  lambda x, **k: divnorm.group_norm(x, num_groups=4, sigma=SIGMA, **k),
  lambda x, **k: divnorm.batch_norm(x, divnorm.batch_stats_init(x), training=True, sigma=SIGMA,
                                    **k)[0],
]


@pytest.mark.parametrize("f", FAST_CASES)
def test_fast_variance_equals_two_pass_on_centered_data(x64, f):
  x = _x(dtype=np.float64)
  np.testing.assert_allclose(f(x, fast_variance=True), f(x, fast_variance=False), atol=1e-12)
  x32 = x.astype(np.float32)
  np.testing.assert_allclose(f(x32, fast_variance=True), f(x32, fast_variance=False), atol=2e-5)
  # A constant input clamps the variance at 0: finite, with finite gradients.
  const = jnp.full((2, 3, 3, 8), 5.0)
  assert np.isfinite(f(const, fast_variance=True)).all()
  g = jax.grad(lambda c: jnp.sum(f(c, fast_variance=True) * jnp.arange(144.0).reshape(const.shape)))
  assert np.isfinite(g(const)).all()


def test_fast_variance_is_flax_default_and_loses_digits_at_large_offsets():
  x = _x()
  flax_ln = nn.LayerNorm(epsilon=SIGMA**2, use_bias=False, use_scale=False, reduction_axes=(1, 2, 3))
  np.testing.assert_allclose(
    divnorm.layer_norm(x, reduction_axes=(1, 2, 3), sigma=SIGMA, fast_variance=True),
    _flax(flax_ln, x), atol=2e-6)
  far = x + np.float32(1e4)
  exact = _np_norm(far.astype(np.float64), (1, 2, 3))
  two_pass = np.abs(
    divnorm.layer_norm(far, reduction_axes=(1, 2, 3), sigma=SIGMA, fast_variance=False) - exact).max()
  default = np.abs(divnorm.layer_norm(far, reduction_axes=(1, 2, 3), sigma=SIGMA) - exact).max()
  assert default < 2e-3
  one_pass = np.abs(
    divnorm.layer_norm(far, reduction_axes=(1, 2, 3), sigma=SIGMA, fast_variance=True) - exact).max()
  assert two_pass < 2e-3
  assert one_pass > 100 * max(two_pass, 1e-5), (one_pass, two_pass)


@pytest.mark.parametrize("f", FAST_CASES)
def test_default_is_one_pass_only_where_every_field_is_centered(f, monkeypatch):
  x = _x()
  far = x + np.float32(1e4)
  # Centered data passes the guard (|mean| <= 2 std): the one-pass statistics.
  np.testing.assert_allclose(f(x), f(x, fast_variance=True), rtol=0, atol=1e-6)
  # An offset of 1e4 fails it: the two-pass statistics (one-pass has no digit left).
  two_pass = f(far, fast_variance=False)
  np.testing.assert_allclose(f(far), two_pass, rtol=0, atol=1e-5)
  assert np.abs(f(far, fast_variance=True) - two_pass).max() > 1e-2
  # The guard decides: with a huge margin an offset of 100 (where the one-pass variance
  # is still positive) takes the one-pass branch, and its cancellation shows.
  mid = x + np.float32(100)
  np.testing.assert_allclose(f(mid), f(mid, fast_variance=False), rtol=0, atol=1e-5)
  monkeypatch.setattr(NORMALIZE_MODULE, "GUARD_RATIO", 1e9)
  assert np.abs(f(mid) - f(mid, fast_variance=False)).max() > 1e-5


def test_one_off_center_example_sends_the_batch_to_two_pass():
  x = _x()
  x[1] += np.float32(1e4)
  ln = functools.partial(divnorm.layer_norm, reduction_axes=(1, 2, 3), sigma=SIGMA)
  np.testing.assert_allclose(ln(x), ln(x, fast_variance=False), rtol=0, atol=1e-5)
  assert np.abs(ln(x, fast_variance=True) - ln(x, fast_variance=False))[1].max() > 1e-2


@pytest.mark.parametrize("ratio", [1.0, 1.9, 2.1, 10.0, 1e4])
def test_default_stays_within_a_small_factor_of_two_pass_accuracy(ratio):
  # mean / std up to the guard's 2: one-pass costs at most ~2 bits of the sums' rounding.
  x = (ratio + np.random.default_rng(3).normal(size=(4, 16, 16, 32))).astype(np.float32)
  xd = x.astype(np.float64)
  exact = _np_norm(xd, (1, 2, 3), sigma=0.0)
  err = {fv: np.abs(np.asarray(divnorm.layer_norm(x, reduction_axes=(1, 2, 3),
                                                  fast_variance=fv), np.float64) - exact).max()
         for fv in (None, False)}
  assert err[None] <= 4 * err[False] + 1e-6, err


def test_vmap_keeps_one_check_for_the_whole_batch():
  # Batched, the check must not become a select that runs both branches: one cond, and
  # every example, off-center ones included, equals its unbatched result.
  x = _x((4, 3, 5, 6, 8), seed=11)
  x[2] += np.float32(1e4)
  ln = functools.partial(divnorm.layer_norm, reduction_axes=(1, 2, 3))
  jaxpr = str(jax.make_jaxpr(jax.vmap(ln))(x))
  assert "cond" in jaxpr and "select_n" not in jaxpr
  expected = np.stack([ln(e) for e in x])
  np.testing.assert_allclose(jax.vmap(ln)(x), expected, rtol=0, atol=2e-6)
  np.testing.assert_allclose(jax.vmap(ln, in_axes=1, out_axes=1)(x.swapaxes(0, 1)),
                             expected.swapaxes(0, 1), rtol=0, atol=2e-6)
  w = np.random.default_rng(12).normal(size=x.shape[1:]).astype(np.float32)
  per_example = np.stack([jax.grad(lambda e: jnp.sum(ln(e) * w))(e) for e in x])
  np.testing.assert_allclose(jax.vmap(jax.grad(lambda e: jnp.sum(ln(e) * w)))(x),
                             per_example, rtol=0, atol=1e-5)
  dn = functools.partial(divnorm.divisive_norm, summation_window=3, sigma=0.5)
  nested = jax.jit(jax.vmap(jax.vmap(dn)))(x[None])
  np.testing.assert_allclose(nested[0], np.stack([dn(e) for e in x]), rtol=0, atol=2e-6)


def test_default_two_pass_off_cpu(monkeypatch):
  monkeypatch.setattr(NORMALIZE_MODULE, "guarded_one_pass_default", lambda: False)
  x = _x()
  jaxpr = str(jax.make_jaxpr(lambda x: divnorm.layer_norm(x, reduction_axes=(1, 2, 3)))(x))
  assert "cond" not in jaxpr
  monkeypatch.undo()
  jaxpr = str(jax.make_jaxpr(lambda x: divnorm.layer_norm(x, reduction_axes=(1, 2, 3)))(x))
  assert "cond" in jaxpr


def test_fast_variance_rejects_windowed_or_unequal_fields():
  x = _x()
  with pytest.raises(ValueError, match="same whole axes"):
    divnorm.normalize(x, {3: None, 1: 3, 2: 3}, fast_variance=True)
  with pytest.raises(ValueError, match="same whole axes"):
    divnorm.normalize(x, (1, 2), (1, 2, 3), fast_variance=True)
