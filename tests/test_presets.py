"""Each preset equals a float64 NumPy one-liner and the matching flax.linen layer."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import divnorm
from tests import reference as ref

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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
@pytest.mark.parametrize("axes", [-1, (1, 2, 3), {1: 3, 3: None}])
def test_rms_norm_gradients(x64, axes):
  # Float64 takes JAX's derivative (narrower inputs on a CPU a written one,
  # tests/test_rms_derivative.py); check it to second order, in x and sigma,
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


@pytest.mark.slow
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


def test_masked_rms_norm_is_zero_outside_the_mask_even_over_an_empty_field():
  """Outside the mask the output is exactly 0 and the gradient 0, with no select on the
  output: the masked input is 0 and the scale finite, an all-masked row's at sigma = 0 too;
  NaN there changes nothing."""
  x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 8)), jnp.float32)
  mask = np.random.default_rng(1).uniform(size=(3, 8)) > 0.3
  mask[1] = False
  x = jnp.where(mask, x, jnp.nan)
  y = divnorm.rms_norm(x, mask=mask)
  assert np.all(np.asarray(y)[~mask] == 0) and np.all(np.isfinite(y))
  kept = np.where(mask, np.asarray(x, np.float64), 0.0)
  rows = np.sqrt((kept[[0, 2]] ** 2).sum(-1, keepdims=True) / mask[[0, 2]].sum(-1, keepdims=True))
  np.testing.assert_allclose(np.asarray(y)[[0, 2]], kept[[0, 2]] / rows, rtol=1e-6, atol=1e-7)
  g = jax.grad(lambda x: jnp.sum(divnorm.rms_norm(x, mask=mask) * jnp.arange(8.0)[None]))(x)
  assert np.all(np.asarray(g)[~mask] == 0) and np.all(np.isfinite(g))


def test_rms_norm_axis_name_averages_over_the_mapped_axis(x64):
  """Under vmap (or shard_map) with `axis_name`, E[x^2] also runs over the mapped axis, with
  the mask's counts summed across it: the result is rms_norm over that axis too."""
  x = _x(dtype=np.float64)
  mask = np.random.default_rng(1).random(x.shape) > 0.3
  got = jax.vmap(lambda xi, mi: divnorm.rms_norm(xi, reduction_axes=(1, 2), sigma=SIGMA,
                                                 mask=mi, axis_name="i"), axis_name="i")(x, mask)
  v = np.where(mask, x, 0.0)
  expected = v / np.sqrt((v**2).sum((0, 2, 3), keepdims=True)
                         / mask.sum((0, 2, 3), keepdims=True) + SIGMA**2)
  np.testing.assert_allclose(got, np.where(mask, expected, 0.0), rtol=1e-12, atol=1e-12)


@pytest.mark.slow
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
  # Over a mapped axis: the mean of the whole mapped batch's (masked-in) entries, on every
  # member, however the entries fall among the members.
  per_member = jax.vmap(lambda v, m: divnorm.l1_penalty(v, 0.5, mask=m, axis_name="b"),
                        axis_name="b")(v, mask)
  np.testing.assert_allclose(per_member, np.full(3, 0.5 * np.abs(v[mask]).mean()), rtol=1e-12)


FAST_CASES = [
  lambda x, **k: divnorm.normalize(x, (1, 2, 3), sigma=SIGMA, **k),
  lambda x, **k: divnorm.layer_norm(x, reduction_axes=(1, 2, 3), sigma=SIGMA, **k),
  lambda x, **k: divnorm.instance_norm(x, sigma=SIGMA, **k),
  lambda x, **k: divnorm.group_norm(x, num_groups=4, sigma=SIGMA, **k),
  lambda x, **k: divnorm.batch_norm(x, divnorm.batch_stats_init(x), training=True, sigma=SIGMA,
                                    **k)[0],
]


@pytest.mark.slow
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


def test_fast_variance_is_flax_default_and_keeps_its_digits_at_large_offsets():
  x = _x()
  flax_ln = nn.LayerNorm(epsilon=SIGMA**2, use_bias=False, use_scale=False, reduction_axes=(1, 2, 3))
  np.testing.assert_allclose(
    divnorm.layer_norm(x, reduction_axes=(1, 2, 3), sigma=SIGMA, fast_variance=True),
    _flax(flax_ln, x), atol=2e-6)
  far = x + np.float32(1e4)
  exact = _np_norm(far.astype(np.float64), (1, 2, 3))
  errors = {fv: np.abs(divnorm.layer_norm(far, reduction_axes=(1, 2, 3), sigma=SIGMA,
                                          fast_variance=fv) - exact).max()
            for fv in (None, False, True)}
  # Two-pass and one-pass around a shift from the data: float32 rounding of values of
  # size ~1 (measured 7e-7 and 3e-6). Flax's one-pass sums of x and x^2 cancel ~8 digits.
  assert max(errors.values()) < 2e-5, errors
  flax_error = np.abs(_flax(flax_ln, far) - exact).max()
  assert flax_error > 1e3 * errors[True], (flax_error, errors)


FAST_CASES_DN = [
  lambda x, **k: divnorm.divisive_norm(x, summation_window=3, sigma=0.5, **k),
  lambda x, **k: divnorm.normalize(x, {3: None, 1: 3, 2: 3}, {3: None, 1: 5}, sigma=SIGMA, **k),
]


@pytest.mark.parametrize("f", FAST_CASES + FAST_CASES_DN)
def test_default_is_two_pass(f):
  # fast_variance=None is the library default, two-pass everywhere: the same program as
  # fast_variance=False, with no run-time branch.
  x = _x()
  np.testing.assert_array_equal(f(x), f(x, fast_variance=False))
  jaxpr = str(jax.make_jaxpr(f)(x))
  assert "cond" not in jaxpr and "custom_vmap" not in jaxpr


@pytest.mark.slow
@pytest.mark.parametrize("f", FAST_CASES_DN)
def test_fast_variance_for_divisive_norm_across_channels(x64, f):
  # One-pass sums over the channels, each position centered by its own local mean: the
  # formula on centered data (float64), and clamped at 0 on a constant input.
  x = _x(dtype=np.float64)
  np.testing.assert_allclose(f(x, fast_variance=True), f(x, fast_variance=False), atol=1e-12)
  for border in ("zeros", "zeros_with_divisor_bug"):
    np.testing.assert_allclose(f(x, fast_variance=True, border=border),
                               f(x, fast_variance=False, border=border), atol=1e-12)
  x32 = x.astype(np.float32)
  np.testing.assert_allclose(f(x32, fast_variance=True), f(x32, fast_variance=False), atol=2e-5)
  const = jnp.full((2, 3, 3, 8), 5.0)
  assert np.isfinite(f(const, fast_variance=True)).all()
  # At an offset of 1e4 (std 2) neither loses its digits: both sum around a shift.
  far = x32 + np.float32(1e4)
  exact = np.asarray(f(far.astype(np.float64), fast_variance=False))
  for fv in (False, True):
    assert np.abs(np.asarray(f(far, fast_variance=fv)) - exact).max() < 1e-4


def test_fast_variance_rejects_fields_it_does_not_serve():
  x = _x()
  with pytest.raises(ValueError, match="same whole"):
    divnorm.normalize(x, (1, 2), (1, 2, 3), fast_variance=True)
  with pytest.raises(ValueError, match="same whole"):
    divnorm.normalize(x, {1: 3}, fast_variance=True)  # no whole axis: nothing to pool
  with pytest.raises(ValueError, match="same whole"):
    divnorm.divisive_norm(x, summation_window=3, sigma=0.5, across_channels=False,
                          fast_variance=True)
