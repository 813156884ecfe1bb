"""Grouped fields (`divnorm.fields.grouped_field`) against reshaped float64 references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import divnorm
from divnorm._src.fields import Field, grouped_field
from tests import reference as ref


def _x(shape, seed=0, offset=0.0, dtype=np.float64):
  rng = np.random.default_rng(seed)
  return (offset + rng.normal(size=shape)).astype(dtype)


def _split(x, size):
  """The reference layout: channels cut into [groups, size] (a whole axis per group)."""
  return x.reshape(x.shape[:-1] + (x.shape[-1] // size, size))


@pytest.mark.parametrize("border", ["valid", "zeros"])
@pytest.mark.parametrize(
    "summation,suppression,ref_a,ref_b",
    [
        # group norm: spatial axes whole, channels in groups of 2.
        ((1, 2), None, (1, 2, 4), None),
        # divisive norm inside channel groups: a 3x3 window, averaged over each group.
        ({1: 3, 2: 3}, None, {1: 3, 2: 3, 4: None}, None),
        # A != B: a grouped summation field, a wider grouped suppression field.
        ({1: 3}, {1: 5, 2: None}, {1: 3, 4: None}, {1: 5, 2: None, 4: None}),
    ],
)
def test_grouped_fields_equal_the_reshaped_brute_force(x64, border, summation, suppression,
                                                       ref_a, ref_b):
  x = _x((2, 5, 4, 6), offset=1.5)
  a = grouped_field(summation, -1, 2, x.shape)
  b = None if suppression is None else grouped_field(suppression, -1, 2, x.shape)
  y, v = divnorm.normalize(x, a, b, sigma=0.3, border=border, return_centered=True)
  y_ref, v_ref = ref.normalize(_split(x, 2), ref_a, ref_b, sigma=0.3, border=border)
  np.testing.assert_allclose(v, v_ref.reshape(x.shape), rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(y, y_ref.reshape(x.shape), rtol=1e-12, atol=1e-12)


def test_masked_grouped_field_equals_the_reshaped_brute_force(x64):
  x = _x((2, 4, 3, 6), seed=1)
  mask = np.random.default_rng(2).uniform(size=x.shape) > 0.3
  a = grouped_field((1, 2), -1, 3, x.shape)
  y, v = divnorm.normalize(x, a, sigma=0.2, mask=mask, return_centered=True)
  y_ref, v_ref = ref.normalize(_split(x, 3), (1, 2, 4), sigma=0.2, mask=_split(mask, 3))
  np.testing.assert_allclose(y, y_ref.reshape(x.shape), rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(v, v_ref.reshape(x.shape), rtol=1e-12, atol=1e-12)


def test_group_sizes_one_and_full_are_no_reduction_and_a_whole_axis():
  x = jnp.asarray(_x((3, 4, 5, 6), dtype=np.float32))
  np.testing.assert_allclose(
      divnorm.normalize(x, grouped_field((1, 2), 3, 6, x.shape)),
      divnorm.normalize(x, (1, 2, 3)), atol=2e-6)
  np.testing.assert_allclose(
      divnorm.normalize(x, grouped_field((1, 2), 3, 1, x.shape)),
      divnorm.normalize(x, (1, 2)), atol=2e-6)


@pytest.mark.slow
def test_grouped_field_gradients_order_2(x64):
  x = _x((2, 4, 3, 4), seed=3)
  a = grouped_field({1: 3, 2: None}, 3, 2, x.shape)
  check_grads(lambda x: divnorm.normalize(x, a, sigma=0.5), (x,), order=2, modes=("fwd", "rev"))


@pytest.mark.parametrize("summation,suppression,split_a,split_b", [
    # group norm's field centres, a 3x3 window per channel suppresses.
    ((1, 2), {1: 3, 2: 3}, (1, 2, 4), {1: 3, 2: 3}),
    # a grouped batch field centres, each example's units suppress.
    ((0, 1, 2), (1, 2, 3), (0, 1, 2, 4), (1, 2, 3, 4)),
])
def test_grouped_summation_with_another_suppression_field_differentiates(
    x64, summation, suppression, split_a, split_b):
  """A grouped A whose whole axes B does not all reduce: the mean's tangent kept the shape
  of r (B's statistics), and JAX refused the derivative. Checked against finite differences
  and against the gradient of the reshaped layout, which takes no groups."""
  x = _x((2, 4, 3, 6), seed=4, offset=0.5)
  a = grouped_field(summation, -1, 2, x.shape)
  w = _x(x.shape, seed=5)
  f = lambda x: divnorm.normalize(x, a, suppression, sigma=0.5)  # noqa: E731
  check_grads(f, (x,), order=1, modes=("fwd", "rev"))
  reshaped = lambda x: divnorm.normalize(_split(x, 2), split_a, split_b, sigma=0.5)  # noqa: E731
  np.testing.assert_allclose(jax.grad(lambda x: jnp.sum(f(x) * w))(x),
                             jax.grad(lambda x: jnp.sum(reshaped(x) * _split(w, 2)))(x),
                             rtol=1e-10, atol=1e-12)


def test_group_norm_large_offset_stays_accurate():
  # The pivot is each group's first entry: an offset of 1e4 (std 1) in float32 loses
  # nothing to cancellation, in the one layout and the other.
  x64 = _x((4, 8, 8, 16), seed=4, offset=1e4)
  x = x64.astype(np.float32)
  got = divnorm.group_norm(x, num_groups=4)
  xs = x.astype(np.float64).reshape(4, 8, 8, 4, 4)
  v = xs - xs.mean(axis=(1, 2, 4), keepdims=True)
  expected = (v / np.sqrt((v * v).mean(axis=(1, 2, 4), keepdims=True))).reshape(x.shape)
  assert np.max(np.abs(np.asarray(got, np.float64) - expected)) < 2e-3


def test_grouped_field_under_jit_and_vmap():
  x = jnp.asarray(_x((3, 2, 4, 5, 6), seed=5, dtype=np.float32))
  a = grouped_field((0, 1), 3, 3, x.shape[1:])
  f = jax.jit(jax.vmap(lambda e: divnorm.normalize(e, a, sigma=0.1)))
  expected = jnp.stack([divnorm.normalize(e, a, sigma=0.1) for e in x])
  np.testing.assert_allclose(f(x), expected, atol=2e-6)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: grouped_field((1, 2), -1, 4, (2, 3, 3, 6)), "do not tile axis 3 of length 6"),
        (lambda: grouped_field((1, 2), -1, 0, (2, 3, 3, 6)), "positive divisor of 6"),
        (lambda: grouped_field((1, 2), 2, 3, (2, 3, 3, 6)), "already in the field"),
        (lambda: grouped_field((1,), 7, 1, (2, 3, 3, 6)), "out of range"),
    ],
)
def test_bad_groups_get_a_clear_error(call, message):
  with pytest.raises(ValueError, match=message):
    call()


def test_field_without_groups_is_unchanged():
  # Adding `groups` kept the two-field constructor and equality of existing fields.
  assert Field((1,), ()) == Field((1,), (), ())
  assert Field((1,), ()).axes == (1,)
  assert grouped_field((1,), 2, 2, (1, 3, 4)).axes == (1, 2)


@pytest.mark.parametrize("shape", [(4, 256, 4096), (8, 8, 8, 1280)])
def test_group_sums_take_memory_of_the_groups_not_of_the_channels_squared(shape):
  """Group norm's training step at many channels (32 groups) needs a few MB of temporary
  buffers, as flax's: group sums by one square 0/1 matrix held 4 * channels^2 bytes, 64 MB at
  4,096 channels (6.6 MB at 1,280), another copy kept for the gradient."""
  x = jnp.ones(shape, jnp.float32)
  step = jax.jit(jax.grad(lambda x: jnp.sum(divnorm.group_norm(x, num_groups=32) * x)))
  temp = step.lower(x).compile().memory_analysis().temp_size_in_bytes
  assert temp < 4 * shape[-1] ** 2 / 4, temp
  assert temp < 2 * 2**20 + x.nbytes, temp


def _group_norm_gradient(x, w, groups, channel_axis, epsilon):
  """Float64 ``d<group_norm(x), w>/dx`` in closed form, ``r (w - E[w] - y E[w y])`` per group."""
  x, w = (np.moveaxis(t.astype(np.float64), channel_axis, -1) for t in (x, w))
  split = x.shape[:1] + (-1, groups, x.shape[-1] // groups)
  x, w, axes = x.reshape(split), w.reshape(split), (1, 3)
  r = 1 / np.sqrt(x.var(axes, keepdims=True) + epsilon)
  y = (x - x.mean(axes, keepdims=True)) * r
  return r * (w - w.mean(axes, keepdims=True) - y * (w * y).mean(axes, keepdims=True))


@pytest.mark.parametrize("channel_axis", [1, -1])
@pytest.mark.parametrize("fast_variance", [None, True])
def test_group_norm_gradient_is_exact_with_many_channels_first_or_last(channel_axis,
                                                                        fast_variance):
  """XLA's CPU backend miscompiled channels-first group sums made of two matmuls: at this
  shape (8 examples, 768 channels, 512 positions) the jitted gradient was off by up to 0.07
  where it reaches 5 (`reductions.group_sum`). Float32 against the float64 closed form."""
  shape = (8, 768, 512) if channel_axis == 1 else (8, 512, 768)
  x, w = _x(shape, seed=3, dtype=np.float32), _x(shape, seed=4, dtype=np.float32)
  f = lambda x: divnorm.group_norm(x, num_groups=8, channel_axis=channel_axis,  # noqa: E731
                                   sigma=1e-3, fast_variance=fast_variance)
  got = jax.jit(jax.grad(lambda x, w: jnp.sum(f(x) * w)))(x, w)
  want = _group_norm_gradient(x, w, 8, channel_axis, 1e-6)
  np.testing.assert_allclose(np.moveaxis(np.asarray(got), channel_axis, -1).reshape(want.shape),
                             want, atol=2e-5 * np.abs(want).max())


@pytest.mark.parametrize("channel_axis", [1, -1])
@pytest.mark.parametrize("fast_variance", [None, True])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_nan_or_inf_in_one_group_reaches_no_other(channel_axis, fast_variance, bad):
  """Nothing outside a position's field enters its statistics: a bad entry in group 1 of
  example 1 makes that group's outputs and gradients NaN, and leaves every other output and
  gradient as on clean data. The 0/1 membership matrix spread it to every group of its
  example (0 * NaN is NaN)."""
  shape = (3, 6, 5, 16) if channel_axis == -1 else (3, 16, 6, 5)
  x, w = _x(shape, seed=5, dtype=np.float32), _x(shape, seed=6, dtype=np.float32)
  index = (1, 2, 3, 5) if channel_axis == -1 else (1, 5, 2, 3)  # channel 5: group 1 of 4
  poisoned = x.copy()
  poisoned[index] = bad

  def f(x):
    return divnorm.group_norm(x, num_groups=4, channel_axis=channel_axis, sigma=0.1,
                              fast_variance=fast_variance)

  step = jax.jit(lambda x: (f(x), jax.grad(lambda x: jnp.sum(f(x) * w))(x)))
  (y, g), (y_clean, g_clean) = step(poisoned), step(x)
  group1 = np.zeros(shape, bool)
  channels = (slice(None),) * (1 if channel_axis == 1 else 3) + (slice(4, 8),)
  group1[1][channels[1:]] = True
  for got, clean in ((y, y_clean), (g, g_clean)):
    got, clean = np.asarray(got), np.asarray(clean)
    assert np.isnan(got[group1]).all()
    np.testing.assert_allclose(got[~group1], clean[~group1], rtol=1e-6, atol=1e-6)
