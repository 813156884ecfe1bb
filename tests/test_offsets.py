"""Every variance mode keeps float32 accuracy far from zero: offsets 1e4 and 1e6.

Each normalizer's float32 output on ``offset + N(0, 1)`` against the paper's formula in
float64 on the same float32 input (`tests.reference`, loops). The one-pass sums
(``fast_variance=True``, the modules' default) and the two-pass statistics are both taken
around a shift drawn from each field's own entries, so float32 rounds values of the size
of the spread, not of the offset: measured errors are at most 7e-6 (``python -m
benchmarks.numerics``: 16x16x16x32, every preset and mode). ATOL = 2e-5 keeps a 3x margin;
flax's one-pass is off by ~40 on the same data, its two-pass by up to 0.15 at 1e6.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import divnorm
from divnorm._src.fields import grouped_field
from tests import reference as ref

ATOL = 2e-5
SHAPE = (4, 6, 5, 8)
DN = {3: None, 1: 5, 2: 5}


def _x(offset, seed=0, shape=SHAPE):
  return (offset + np.random.default_rng(seed).normal(size=shape)).astype(np.float32)


def _mask(seed=1, shape=SHAPE):
  # Per position (all channels alike), as a padding mask: every field keeps entries.
  m = np.random.default_rng(seed).uniform(size=shape[:-1] + (1,)) > 0.3
  return np.broadcast_to(m, shape)


def _split(t, size):
  return t.reshape(t.shape[:-1] + (t.shape[-1] // size, size))


# name -> (the call, the reference's fields); GN's reference runs on [..., groups, size].
PRESETS = {
    "BN": (lambda x, **k: divnorm.batch_norm(x, divnorm.batch_stats_init(x), training=True,
                                             **k)[0], (0, 1, 2)),
    "LN": (lambda x, **k: divnorm.layer_norm(x, reduction_axes=(1, 2, 3), **k), (1, 2, 3)),
    "IN": (lambda x, **k: divnorm.instance_norm(x, **k), (1, 2)),
    "GN": (lambda x, **k: divnorm.group_norm(x, num_groups=2, **k), (1, 2, 4)),
    "DN": (lambda x, **k: divnorm.divisive_norm(x, summation_window=5, **k), DN),
}


def _reference(name, x, mask, sigma):
  field = PRESETS[name][1]
  if name == "GN":
    y, _ = ref.normalize(_split(x.astype(np.float64), 4), field, sigma=sigma,
                         mask=None if mask is None else _split(mask, 4))
    return y.reshape(x.shape)
  y, _ = ref.normalize(x.astype(np.float64), field, sigma=sigma, mask=mask)
  return y


def _matrix():
  """Every (offset, mode, mask); the quick tier keeps one-pass at 1e6 with a mask."""
  for offset in (1e4, 1e6):
    for fast_variance in (None, True):
      for masked in (False, True):
        marks = () if offset == 1e6 and masked and fast_variance else (pytest.mark.slow,)
        yield pytest.param(offset, fast_variance, masked, marks=marks)


@pytest.mark.slow
@pytest.mark.parametrize("offset,fast_variance,masked", list(_matrix()))
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_at_large_offsets(name, offset, fast_variance, masked):
  x = _x(offset)
  mask = _mask() if masked else None
  sigma = 0.5 if name == "DN" else 0.1
  y = PRESETS[name][0](x, sigma=sigma, mask=mask, fast_variance=fast_variance)
  y_ref = _reference(name, x, mask, sigma)
  np.testing.assert_allclose(np.asarray(y, np.float64), y_ref, rtol=0, atol=ATOL)


@pytest.mark.parametrize(
    "per_example,full",
    [((0, 1), (0, 1, 2)),  # batch norm: the batch mapped, (H, W) per example
     ({2: None, 0: 5, 1: 5}, {0: None, 3: None, 1: 5, 2: 5})])  # DN pooled over the batch
@pytest.mark.parametrize("fast_variance", [pytest.param(None, marks=pytest.mark.slow), True])
@pytest.mark.parametrize("offset", [pytest.param(1e4, marks=pytest.mark.slow), 1e6])
def test_axis_name_at_large_offsets(per_example, full, offset, fast_variance):
  # vmap over the batch with axis_name: the mapped axis is one more whole axis of both
  # fields, so the reference is the field with axis 0 added, on the whole batch.
  x = _x(offset, seed=2)
  y = jax.vmap(lambda e: divnorm.normalize(e, per_example, sigma=0.1, axis_name="b",
                                           fast_variance=fast_variance), axis_name="b")(x)
  y_ref, _ = ref.normalize(x.astype(np.float64), full, sigma=0.1)
  np.testing.assert_allclose(np.asarray(y, np.float64), y_ref, rtol=0, atol=ATOL)


@pytest.mark.slow
def test_grouped_field_with_mask_and_one_pass_at_1e6():
  x = _x(1e6, seed=3)
  mask = _mask(seed=4)
  a = grouped_field((1, 2), 3, 4, x.shape)
  y = divnorm.normalize(x, a, sigma=0.1, mask=mask, fast_variance=True)
  y_ref = _reference("GN", x, mask, 0.1)
  np.testing.assert_allclose(np.asarray(y, np.float64), y_ref, rtol=0, atol=ATOL)


@pytest.mark.parametrize("masked", [False, True])
def test_default_divisive_norm_under_jit_at_1e6(masked):
  """Under jit XLA computes a division by a constant count (6 channels; a mask closed over)
  as a product with the inverse, fused differently into each consumer: the corrected
  two-pass must not need one rounding of a mean in two places (it was off by 3e-2)."""
  shape = (2, 8, 8, 6)
  x = _x(1e6, seed=5, shape=shape)
  mask = _mask(seed=6, shape=shape) if masked else None
  weights = (np.arange(x.size).reshape(shape) % 7).astype(np.float32)

  def dn(x):
    return divnorm.divisive_norm(x, summation_window=3, sigma=0.5, mask=mask)

  y_ref, _ = ref.normalize(x.astype(np.float64), {3: None, 1: 3, 2: 3}, sigma=0.5, mask=mask)
  np.testing.assert_allclose(np.asarray(jax.jit(dn)(x), np.float64), y_ref, rtol=0, atol=ATOL)
  grad = jax.jit(jax.grad(lambda x: jnp.sum(dn(x) * weights)))(x)
  with jax.enable_x64(True):
    grad64 = jax.grad(lambda x: jnp.sum(dn(x) * weights.astype(np.float64)))(
        x.astype(np.float64))
  np.testing.assert_allclose(np.asarray(grad, np.float64), grad64, rtol=0, atol=1e-4)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("border", ["valid", "zeros"])
@pytest.mark.parametrize("fast_variance", [None, True])
def test_a_bright_band_costs_the_rest_of_the_span_no_digits(fast_variance, border, masked):
  """Divisive norm across channels centers every position at its own rough mean, so a
  band 1e6 above the rest of the image costs the other positions nothing (one shift per
  span cost them 0.1, and one-pass sums around it gave outputs of 5e6). The masked case
  crosses positions with no entries (30% of the entries masked out), which take a value
  near the entries they carry (the mean of their own window's values was 4.6e-5 off at
  the band's edge)."""
  x = np.random.default_rng(7).standard_normal((2, 16, 16, 4)).astype(np.float32)
  x[:, :4] += 1e6
  mask = np.random.default_rng(8).random(x.shape) > 0.3 if masked else None
  assert masked is False or not np.all(mask.any(-1))  # some positions have no entries

  def dn(x):
    return divnorm.divisive_norm(x, summation_window=(3, 5), sigma=0.1, mask=mask,
                                 border=border, fast_variance=fast_variance)

  y = np.asarray(jax.jit(dn)(x), np.float64)
  y_ref, _ = ref.normalize(x.astype(np.float64), {3: None, 1: 3, 2: 5}, sigma=0.1, mask=mask,
                           border=border)
  np.testing.assert_allclose(y, y_ref, rtol=0, atol=ATOL)


def test_a_bright_band_costs_the_gradient_no_digits_either():
  """The hand-written derivative reads the same per-position shift: far from a band 1e6
  above the rest, the gradient is float32-accurate against float64."""
  x = np.random.default_rng(9).standard_normal((1, 16, 16, 4)).astype(np.float32)
  x[:, :4] += 1e6
  weights = np.random.default_rng(10).standard_normal(x.shape).astype(np.float32)

  def loss(x, w):
    return jnp.sum(divnorm.divisive_norm(x, summation_window=3, sigma=0.1) * w)

  grad = np.asarray(jax.jit(jax.grad(loss))(x, weights), np.float64)
  with jax.enable_x64(True):
    grad64 = np.asarray(jax.grad(loss)(x.astype(np.float64), weights.astype(np.float64)))
  np.testing.assert_allclose(grad[:, 7:], grad64[:, 7:], rtol=0, atol=1e-4)
