"""Property-based tests of the core: random ranks, shapes, fields, masks, borders and offsets.

Every example is checked against `tests.reference.normalize`, the paper's formula entry by
entry in float64. The core's own tests also run with and without ``jit`` (``chex.variants``).
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import divnorm
from tests import reference as ref

# Derandomized: CI runs the same examples every time; a failure is reproducible.
SETTINGS = settings(max_examples=10, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def fields(draw, ndim: int, sizes):
  """A field over some axes of a rank-`ndim` input: each axis whole, a window, or absent."""
  field = {}
  for axis in range(ndim):
    kind = draw(st.sampled_from(["absent", "whole", "window"]))
    if kind == "whole":
      field[axis] = None
    elif kind == "window":  # odd widths up to past the whole axis (2n + 1)
      field[axis] = 2 * draw(st.integers(0, sizes[axis])) + 1
  return field


@st.composite
def cases(draw):
  ndim = draw(st.integers(1, 4))
  max_size = {1: 9, 2: 6, 3: 4, 4: 3}[ndim]
  shape = tuple(draw(st.lists(st.integers(1, max_size), min_size=ndim, max_size=ndim)))
  summation = draw(fields(ndim, shape))
  suppression = draw(st.one_of(st.none(), fields(ndim, shape)))
  border = draw(st.sampled_from(["valid", "zeros"]))
  offset = draw(st.sampled_from([0.0, 3.0, -50.0, 1e4]))
  seed = draw(st.integers(0, 2**16))
  use_mask = draw(st.booleans())
  return shape, summation, suppression, border, offset, seed, use_mask


def _data(shape, offset, seed, use_mask):
  rng = np.random.default_rng(seed)
  x = (offset + rng.normal(size=shape) * rng.uniform(0.5, 2.0)).astype(np.float32)
  mask = rng.uniform(size=shape) > 0.3 if use_mask else None
  return x, mask


@pytest.mark.slow
@SETTINGS
@given(cases())
def test_float32_matches_the_float64_formula(case):
  """Tolerance: the core works in float32 on x - k, with k a value of the data, so the
  rounding of v is a few ulps of |x - k| (<= ~8 std, whatever the offset): ~1e-5 for
  std <= 2. sigma = 0.1 bounds the sensitivity of y = v / sqrt(sigma^2 + E_B[v^2]) to
  v and E_B[v^2] by ~1 / sigma = 10, and E_B's own rounding is relative: atol 2e-4 covers
  it with a margin of ~2x; rtol 1e-5 covers the large |y| of zero-padded borders."""
  shape, summation, suppression, border, offset, seed, use_mask = case
  x, mask = _data(shape, offset, seed, use_mask)
  y, v = divnorm.normalize(x, summation, suppression, sigma=0.1, border=border, mask=mask,
                           return_centered=True)
  y_ref, v_ref = ref.normalize(x.astype(np.float64), summation, suppression, sigma=0.1,
                               border=border, mask=mask)
  assert y.shape == x.shape and y.dtype == x.dtype
  scale_v = 1.0 + np.abs(v_ref).max()
  np.testing.assert_allclose(v, v_ref, rtol=1e-5, atol=2e-5 * scale_v)
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=2e-4)


@pytest.mark.slow
@SETTINGS
@given(cases())
def test_float64_is_the_formula(case):
  """In float64 the core and the reference differ by rounding alone: ~1e-15 relative,
  amplified by at most 1 / sigma = 10 and the sums' lengths (< 1e3): atol 1e-10."""
  shape, summation, suppression, border, offset, seed, use_mask = case
  x, mask = _data(shape, offset, seed, use_mask)
  with jax.enable_x64(True):
    y = divnorm.normalize(x.astype(np.float64), summation, suppression, sigma=0.1,
                          border=border, mask=mask)
  y_ref, _ = ref.normalize(x.astype(np.float64), summation, suppression, sigma=0.1,
                           border=border, mask=mask)
  np.testing.assert_allclose(y, y_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.slow
@SETTINGS
@given(cases(), st.sampled_from([np.nan, np.inf, -np.inf, 1.7e7]))
def test_masked_out_entries_never_matter(case, value):
  """A select, not a product: the masked-in outputs are bit-identical whatever the
  masked-out entries hold."""
  shape, summation, suppression, border, offset, seed, _ = case
  x, mask = _data(shape, offset, seed, True)
  poisoned = np.where(mask, x, np.float32(value)).astype(np.float32)
  f = lambda x: divnorm.normalize(x, summation, suppression, sigma=0.1, border=border,
                                  mask=mask)
  np.testing.assert_array_equal(np.asarray(f(poisoned))[mask], np.asarray(f(x))[mask])


@pytest.mark.slow
@settings(max_examples=10, deadline=None, derandomize=True)
@given(st.integers(1, 3), st.integers(2, 6), st.sampled_from([0.0, 1e4]), st.integers(0, 99),
       st.booleans())
def test_fast_variance_is_the_formula_on_centered_data(ndim, size, offset, seed, windowed):
  """One-pass sums for equal whole axes (windows allowed): exact in float64 arithmetic, so
  in float64 it is the formula up to the cancellation of E[x^2] - E[x]^2, which at an
  offset of 1e4 (std ~1) costs ~(1e4)^2 * 1e-16 = 1e-8 relative to var: atol 1e-6."""
  shape = (2,) + (size,) * ndim + (3,)
  summation = {ndim + 1: None, **({1: 3} if windowed else {a: None for a in range(1, ndim + 1)})}
  rng = np.random.default_rng(seed)
  x = offset + rng.normal(size=shape)
  with jax.enable_x64(True):
    y = divnorm.normalize(x, summation, sigma=0.1, fast_variance=True)
  y_ref, _ = ref.normalize(x, summation, sigma=0.1)
  np.testing.assert_allclose(y, y_ref, atol=1e-6)


class CoreWithAndWithoutJit(chex.TestCase):
  """The core's outputs are the same traced once (jit) and op by op."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_normalize_windowed_masked(self):
    x, mask = _data((2, 7, 5, 3), 4.0, 0, True)
    field, sup = {3: None, 1: 3, 2: 5}, {3: None, 1: 5}
    y_ref, v_ref = ref.normalize(x.astype(np.float64), field, sup, sigma=0.2, mask=mask)
    y, v = self.variant(lambda x, m: divnorm.normalize(
        x, field, sup, sigma=0.2, mask=m, return_centered=True))(x, mask)
    chex.assert_shape((y, v), x.shape)
    chex.assert_type((y, v), jnp.float32)
    chex.assert_trees_all_close((y, v), (y_ref.astype(np.float32), v_ref.astype(np.float32)),
                                atol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_presets_equal_the_formula(self):
    x, _ = _data((3, 6, 5, 4), 1e4, 1, False)
    xd = x.astype(np.float64)
    calls = [
        (lambda x: divnorm.layer_norm(x, reduction_axes=(1, 2, 3), sigma=0.1), (1, 2, 3)),
        (lambda x: divnorm.instance_norm(x, sigma=0.1), (1, 2)),
        (lambda x: divnorm.divisive_norm(x, summation_window=3, sigma=0.1),
         {3: None, 1: 3, 2: 3}),
    ]
    for f, field in calls:
      y = self.variant(f)(x)
      chex.assert_trees_all_close(y, ref.normalize(xd, field, sigma=0.1)[0].astype(np.float32),
                                  atol=2e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_batch_norm_running_statistics(self):
    x, mask = _data((6, 4, 3), 100.0, 2, True)
    stats = divnorm.batch_stats_init(x, dtype=jnp.float32)
    (y, new) = self.variant(lambda x, m: divnorm.batch_norm(
        x, stats, training=True, momentum=0.0, mask=m))(x, mask)
    xd = np.where(mask, x.astype(np.float64), 0.0)
    n = mask.sum((0, 1))
    mean = xd.sum((0, 1)) / n
    var = (np.where(mask, x - mean, 0.0) ** 2).sum((0, 1)) / n
    chex.assert_trees_all_close(tuple(new), (mean.astype(np.float32), var.astype(np.float32)),
                                rtol=1e-6)
    chex.assert_shape(y, x.shape)


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 4, 2)])
def test_empty_inputs_give_empty_outputs(shape):
  for field in [tuple(range(len(shape))), {0: 3}]:
    assert divnorm.normalize(jnp.zeros(shape), field).shape == shape
