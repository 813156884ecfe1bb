"""Behaviours of the functional core that a mutation review found unguarded.

Each test names the property it asserts; each was checked to fail with its mutation of
``divnorm/_src`` applied (the review's ids: S statistics.py, W weighted_fields.py, P presets.py,
C core.py, H shift.py, B batch.py, F fields.py, R reductions.py) and to pass without it.
References: the float64 NumPy formulas (`tests.reference`, enumerated weighted pools), the
unmapped computation for `axis_name`, closed-form derivatives.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import divnorm
from divnorm import kernels as K
from tests import reference as ref
from tests import reference_weighted as R


def _x(shape, seed=0, offset=0.0):
  return (offset + np.random.default_rng(seed).normal(size=shape)).astype(np.float32)


def _weighted_ref(x, spec, sigma, border="valid"):
  """The paper's formula over kernel fields, in float64 (A = B = `spec`, a reference dict)."""
  x = np.asarray(x, np.float64)
  v = x - R.weighted_pool(x, spec, border=border)
  return v / np.sqrt(sigma**2 + R.weighted_pool(v * v, spec, border=border))


# ---- axis_name: the mapped axis is one more whole axis of every field --------------------

def test_plain_sums_under_axis_name_pool_the_members():
  # S10: fast_variance=True on >= 2^16 entries per member may take the plain (unshifted)
  # sums, which are computed without axis_name: with a mapped axis it must keep the shifted
  # sums, reduced over the members, or each member normalizes by its own statistics.
  x = _x((2, 256, 256)) + np.array([0.0, 0.5], np.float32)[:, None, None]
  assert x[0].size >= 2**16  # statistics.PLAIN_MIN_SIZE
  f = lambda xi: divnorm.normalize(xi, (0, 1), axis_name="m", fast_variance=True)
  mapped = jax.jit(jax.vmap(f, axis_name="m"))(x)
  np.testing.assert_allclose(mapped, divnorm.normalize(x, (0, 1, 2)), atol=2e-6)


@pytest.mark.parametrize("border", ["valid", "zeros"])
def test_kernel_fields_under_axis_name_equal_the_unmapped_field(border):
  # W4: the weighted count is summed over the members, as the weighted sums are; S16: with
  # zero borders, so is the weight past the border (E_A[x] is off wherever the shift is not 0:
  # the offset 3 makes it so).
  x = _x((4, 1, 8), seed=1, offset=3.0)
  gauss = K.gaussian(3, sigma=1.0)
  f = lambda xi: divnorm.normalize(xi, {0: None, 1: gauss}, sigma=0.1, border=border,
                                   axis_name="m")
  mapped = jax.vmap(f, axis_name="m")(x)
  whole = divnorm.normalize(x, {0: None, 1: None, 2: gauss}, sigma=0.1, border=border)
  np.testing.assert_allclose(mapped, whole, atol=2e-6)
  spec = {(0,): ("whole",), (1,): ("whole",), (2,): ("kernel", gauss.weights, 1, None)}
  np.testing.assert_allclose(mapped, _weighted_ref(x, spec, 0.1, border), atol=2e-5)


def test_rank_2_group_norm_under_axis_name_pools_the_mapped_axis():
  # P1: group_norm of [batch, channels] (an MLP's) reshapes to [batch, groups, size]; the
  # reshaped call must keep axis_name, as the rank >= 3 path does.
  x = _x((2, 3, 8), seed=2) + np.array([0.0, 2.0], np.float32)[:, None, None]
  mapped = jax.vmap(lambda xi: divnorm.group_norm(xi, num_groups=2, axis_name="m"),
                    axis_name="m")(x)
  expected, _ = ref.normalize(x.reshape(2, 3, 2, 4), (0, 3))
  np.testing.assert_allclose(mapped, expected.reshape(x.shape), atol=2e-5)


def test_zero_borders_under_axis_name_count_once_per_member():
  # R3b, quick form of test_edges' slow test_axis_name_with_zero_borders_equals_the_unmapped_
  # field: each member of the mapped axis has its own positions past the border.
  x = _x((8, 9, 4), seed=10, offset=2.0)
  f = lambda e: divnorm.normalize(e, {0: 3, 1: None}, {0: 5, 1: None}, sigma=0.2,
                                  border="zeros", axis_name="i")
  expected, _ = ref.normalize(x, {0: None, 1: 3, 2: None}, {0: None, 1: 5, 2: None},
                              sigma=0.2, border="zeros")
  np.testing.assert_allclose(jax.vmap(f, axis_name="i")(x), expected, atol=2e-5)


# ---- fast_variance ------------------------------------------------------------------------

def test_fast_variance_refuses_a_grouped_summation_with_an_ungrouped_suppression():
  # S17: one-pass sums over A's groups divided by B's count are not E_B[v^2]: refused.
  x = _x((2, 4, 4, 6), seed=3)
  a = divnorm.grouped_field((1, 2), 3, 2, x.shape)
  with pytest.raises(ValueError, match="same whole \\(and grouped\\) axes"):
    divnorm.normalize(x, a, (1, 2), sigma=0.1, fast_variance=True)


def test_one_pass_with_windows_in_the_suppression_field_only_is_the_formula():
  # S19: one_pass sums B's windows of the per-position sums (divisive norm whose
  # suppression is local), not the position's own sum alone.
  x = _x((2, 6, 6, 4), seed=4)
  a, b = {3: None}, {3: None, 1: 3, 2: 3}
  expected, _ = ref.normalize(x, a, b, sigma=0.1)
  np.testing.assert_allclose(divnorm.normalize(x, a, b, sigma=0.1, fast_variance=True),
                             expected, atol=2e-5)


# ---- kernels ------------------------------------------------------------------------------

@pytest.mark.parametrize("border", ["valid", "zeros"])
def test_a_dilated_box_kernel_is_dilated(x64, border):
  # W1: box(3, dilation=2) weighs taps -2, 0, +2; only an undilated box is the box windows'
  # fast path.
  x = np.random.default_rng(5).normal(size=(2, 9, 3))
  got = divnorm.field_mean(x, {1: K.box(3, dilation=2)}, border=border)
  expected = R.weighted_pool(x, {(1,): ("kernel", np.ones(3), 2, None)}, border=border)
  np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


# ---- non-finite entries reach only the outputs whose fields hold them ---------------------

@pytest.mark.parametrize("where", [0, 1])
@pytest.mark.parametrize("summation,suppression,channels_pooled", [
    ({1: 5}, None, False),  # windows alone
    ({1: 3}, {1: 5}, False),  # windows alone, A != B
    ({1: 3}, {1: 5, 2: None}, True),  # A != B, B across channels
])
def test_a_nan_where_the_shift_is_read_reaches_only_the_outputs_whose_windows_reach_it(
    where, summation, suppression, channels_pooled):
  # H1: without a mask the shift is the mean of a span's first two entries; a NaN there
  # gives k = 0 for the span, not a NaN shift that poisons every output of it.
  x = _x((2, 11, 2), seed=6, offset=1.0)
  x[0, where, 0] = np.nan
  y = np.asarray(divnorm.normalize(x, summation, suppression, sigma=0.1))
  radius = summation[1] // 2 + (suppression or summation)[1] // 2
  reach = np.zeros(x.shape, bool)
  reach[0, np.abs(np.arange(11) - where) <= radius, slice(None) if channels_pooled else 0] = True
  assert np.isnan(y[reach]).all()
  assert np.isfinite(y[~reach]).all()
  expected, _ = ref.normalize(np.nan_to_num(x, nan=0.0), summation, suppression, sigma=0.1)
  np.testing.assert_allclose(y[~reach], expected[~reach], atol=2e-5)


def test_a_nan_in_a_kernel_field_s_span_reaches_only_the_outputs_whose_kernels_reach_it():
  # S15: a kernel field's shift is the mean of A's whole span; a NaN anywhere in it gives
  # k = 0, so outputs whose kernels (radius 1 in A and in B) do not reach it stay finite.
  x = _x((1, 16, 2), seed=7)
  x[0, 0, 0] = np.nan
  gauss = K.gaussian(3, sigma=1.0)
  y = np.asarray(divnorm.normalize(x, {1: gauss, 2: None}, sigma=0.1))
  reach = np.zeros(x.shape, bool)
  reach[0, :3] = True  # B pools the channels
  assert np.isnan(y[reach]).all()
  assert np.isfinite(y[~reach]).all()
  spec = {(1,): ("kernel", gauss.weights, 1, None), (2,): ("whole",)}
  expected = _weighted_ref(np.nan_to_num(x, nan=0.0), spec, 0.1)
  np.testing.assert_allclose(y[~reach], expected[~reach], atol=2e-5)


# ---- masks ----------------------------------------------------------------------------------

def test_the_centered_output_s_derivative_is_zero_outside_the_mask(x64):
  # C2: v is 0 outside the mask, whatever x holds: so is its tangent. Inside, v = x - mean
  # of the masked-in entries, whose derivative is closed form.
  rng = np.random.default_rng(8)
  x, dx, c = (rng.normal(size=(2, 8)) for _ in range(3))
  mask = np.arange(8)[None, :] < 5
  centered = lambda x: divnorm.normalize(x, (1,), mask=mask, return_centered=True)[1]
  _, dv = jax.jvp(centered, (x,), (dx,))
  mean_in = lambda t: (t * mask).sum(1, keepdims=True) / mask.sum(1, keepdims=True)
  np.testing.assert_allclose(dv, np.where(mask, dx - mean_in(dx), 0.0), atol=1e-12)
  g = jax.grad(lambda x: jnp.sum(centered(x) * c))(x)  # c weighs masked-out entries too
  np.testing.assert_allclose(g, np.where(mask, c - mean_in(c), 0.0), atol=1e-12)


def test_a_learned_alpha_has_finite_correct_gradients_where_v_is_zero(x64):
  # S5: |v|^alpha for a non-special alpha is exp(alpha log|v|) where v != 0 and 0 where
  # v = 0 (masked-out entries, a constant row): differentiating log(0) there gives NaN.
  # (jit: op-by-op dispatch of the float64 derivatives tripled this test's time)
  x = np.random.default_rng(9).normal(size=(2, 8))
  mask = np.arange(8)[None, :] < 6
  f = jax.jit(lambda x, alpha: divnorm.normalize(x, (1,), sigma=0.5, mask=mask, alpha=alpha))
  check_grads(f, (x, 1.5), order=1, modes=("rev",), atol=1e-6, rtol=1e-6)
  constant = np.full((1, 8), 0.7)  # v = 0 exactly, no mask
  g = jax.jit(jax.grad(lambda x, alpha: jnp.sum(divnorm.normalize(x, (1,), sigma=0.5,
                                                                  alpha=alpha)),
                       argnums=(0, 1)))(constant, 1.5)
  np.testing.assert_array_equal(g[1], 0.0)  # y = 0 whatever alpha
  np.testing.assert_allclose(g[0], 0.0, atol=1e-12)  # sum(y) = 0 for every x near it


def test_evaluation_batch_norm_s_centered_output_is_zero_outside_the_mask():
  # B3: in evaluation (running statistics) v = x - mean is selected by the mask, as y is:
  # a NaN in a padding row reaches neither.
  x = _x((4, 3), seed=11)
  x[3, 0] = np.nan
  mask = np.arange(4)[:, None] < 3
  stats = divnorm.BatchStats(jnp.full(3, 0.5), jnp.full(3, 2.0))
  (y, v), _ = divnorm.batch_norm(x, stats, training=False, mask=mask, return_centered=True)
  np.testing.assert_array_equal(np.asarray(v)[3], 0.0)
  np.testing.assert_array_equal(np.asarray(y)[3], 0.0)
  np.testing.assert_allclose(np.asarray(v)[:3], x[:3] - 0.5, atol=1e-6)


def test_evaluation_batch_norm_takes_a_negative_running_variance_as_zero():
  # B2 (quick form of test_arguments' case): a damaged checkpoint's negative variance gives
  # v / sigma, not NaN (flax issue 1491).
  x = _x((5, 4), seed=12)
  stats = divnorm.BatchStats(jnp.zeros(4), jnp.asarray([1.0, -0.5, -1e-3, 2.0], jnp.float32))
  y, _ = divnorm.batch_norm(x, stats, training=False, sigma=0.1)
  expected = x / np.sqrt(np.maximum(np.asarray(stats.var, np.float64), 0.0) + 0.01)
  np.testing.assert_allclose(y, expected, rtol=1e-4)


# ---- the variance floor ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_variance_floor_is_the_cube_root_of_tiny(dtype):
  # S1: documented as finfo(dtype).tiny ** (1/3) (2e-13 in float32, 3e-103 in float64). At
  # sigma = 0 on a constant row v = 0 and y = v r: dy/dx = r (I - 1/n), r = floor ** -1/2.
  floor = float(np.finfo(dtype).tiny) ** (1.0 / 3.0)
  w = np.arange(8.0)[None]
  with jax.enable_x64(dtype == np.float64):
    g = jax.grad(lambda c: jnp.sum(divnorm.layer_norm(c) * w.astype(dtype)))(
        jnp.ones((1, 8), dtype))
  np.testing.assert_allclose(g, (w - w.mean()) / np.sqrt(floor), rtol=1e-5)


def test_the_variance_floor_shows_in_nearly_flat_data():
  # S1: as the README's "sigma and Flax's epsilon" documents: layer norm over 256 entries of
  # standard deviation 1e-6 is the formula with the floor added to the variance, tenths off
  # the formula without it.
  x = (1e-6 * np.random.default_rng(0).normal(size=(1, 256))).astype(np.float32)
  v = x.astype(np.float64) - x.astype(np.float64).mean()
  var = (v * v).mean()
  floor = float(np.finfo(np.float32).tiny) ** (1.0 / 3.0)
  y = np.asarray(divnorm.layer_norm(x), np.float64)
  np.testing.assert_allclose(y, v / np.sqrt(var + floor), atol=1e-4)
  assert np.abs(y - v / np.sqrt(var)).max() > 0.1


# ---- checks and the masked shift's positions --------------------------------------------------

def test_a_hand_built_grouped_field_that_does_not_tile_its_axis_is_refused():
  # F5 (quick form of test_arguments' cases): grouped_field checks a shape, a Field built
  # by hand is checked against the input's.
  x = _x((2, 3, 3, 4), seed=13)
  field = divnorm.Field((1, 2), (), ((3, 3),))
  with pytest.raises(ValueError, match="^summation: groups of 3 entries do not tile axis 3"):
    divnorm.normalize(x, field)
  with pytest.raises(ValueError, match="groups of 3 entries do not tile"):
    divnorm.field_mean(x, field)


def test_the_masked_shift_past_float32s_exact_integers_is_the_first_entry():
  # H4 (quick form of test_edges' slow test): a span of more than 2^24 entries keeps int32
  # positions; float32 would round position 2^24 + 1 to 2^24, one (masked-out) entry early.
  # The inputs are made inside the program: no 64 MB host transfer.
  from divnorm._src.fields import Field
  from divnorm._src.shift import _first_masked_entry
  n = 2**24 + 8

  @jax.jit
  def first():
    i = jax.lax.broadcasted_iota(jnp.int32, (n, 1), 0)
    x = (i % 1000).astype(jnp.float32)
    return _first_masked_entry(x, Field((0,), ()), i > 2**24)

  entry, found = first()
  assert bool(found[0, 0]) and float(entry[0, 0]) == (2**24 + 1) % 1000
