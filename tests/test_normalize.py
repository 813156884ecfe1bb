"""divnorm.normalize against float64 brute force, identities, invariances, transforms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads

import divnorm
from tests import reference as ref

BORDERS = ["valid", "zeros"]

# (shape, summation, suppression): ranks 2-4, windows on one and several axes, A != B.
WINDOWED_CASES = [
  ((3, 17), {1: 5}, None),
  ((3, 17), {1: 3}, {1: 7}),
  ((2, 9, 4), {2: None, 1: 3}, None),
  ((2, 9, 4), {1: 5}, {1: 3, 2: None}),
  ((2, 7, 6, 3), {3: None, 1: 5, 2: 5}, None),
  ((2, 7, 6, 3), {3: None, 1: 3, 2: 3}, {3: None, 1: 5, 2: 5}),
  ((2, 5, 6, 3), {1: 3, 2: 5}, {0: None, 1: 3}),
]


def _x(shape, seed=0, offset=0.0, dtype=np.float32):
  rng = np.random.default_rng(seed)
  return (offset + rng.normal(size=shape) * rng.uniform(0.5, 2.0)).astype(dtype)


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("shape,summation,suppression", WINDOWED_CASES)
def test_windows_equal_brute_force(x64, shape, summation, suppression, border):
  x = _x(shape, offset=1.5, dtype=np.float64)
  y, v = divnorm.normalize(
    x, summation, suppression, sigma=0.3, border=border, return_centered=True)
  y_ref, v_ref = ref.normalize(x, summation, suppression, sigma=0.3, border=border)
  np.testing.assert_allclose(v, v_ref, rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(y, y_ref, rtol=1e-10, atol=1e-10)


def test_divisor_bug_mode_is_the_reference_code(x64):
  x = _x((2, 8, 7, 4), offset=0.5, dtype=np.float64)
  y = divnorm.normalize(
    x, {3: None, 1: 5, 2: 5}, {3: None, 1: 7, 2: 7}, sigma=1.0, border="zeros_with_divisor_bug")
  np.testing.assert_allclose(y, ref.paper_divisive_norm(x, (5, 5), (7, 7), 1.0), rtol=1e-10)
  # With equal windows the bug is invisible and "zeros" is the code too.
  y = divnorm.normalize(x, {3: None, 1: 3, 2: 3}, sigma=0.5, border="zeros")
  np.testing.assert_allclose(y, ref.paper_divisive_norm(x, (3, 3), (3, 3), 0.5), rtol=1e-10)


@pytest.mark.parametrize("border", BORDERS)
def test_mask_with_whole_and_windowed_fields(x64, border):
  x = _x((3, 9, 4), seed=1, offset=2.0, dtype=np.float64)
  mask = np.random.default_rng(2).uniform(size=(3, 9, 1)) > 0.3
  for summation, suppression in [((1, 2), None), ({1: 3, 2: None}, {1: 5})]:
    y, v = divnorm.normalize(
      x, summation, suppression, sigma=0.1, border=border, mask=mask, return_centered=True)
    y_ref, v_ref = ref.normalize(x, summation, suppression, sigma=0.1, border=border, mask=mask)
    np.testing.assert_allclose(v, v_ref, atol=1e-12)
    np.testing.assert_allclose(y, y_ref, atol=1e-10)


@pytest.mark.slow
def test_masked_out_entries_are_zero_and_finite():
  x = _x((2, 6))
  mask = np.zeros((2, 6), bool)
  mask[0, :3] = True  # row 1 has no entry at all
  y = divnorm.normalize(x, (1,), mask=mask)
  assert np.isfinite(y).all()
  np.testing.assert_array_equal(np.asarray(y)[~mask], 0.0)
  grad = jax.grad(lambda x: jnp.sum(divnorm.normalize(x, {1: 3}, mask=mask) ** 2))(x)
  assert np.isfinite(grad).all()
  np.testing.assert_array_equal(np.asarray(grad)[~mask], 0.0)


def test_full_windows_equal_layer_norm():
  x = _x((2, 5, 7, 3), offset=3.0)
  # A window of width 2n - 1 covers the whole axis from every position.
  y = divnorm.normalize(x, {1: 9, 2: 13, 3: None}, sigma=0.2)
  np.testing.assert_allclose(y, divnorm.layer_norm(x, reduction_axes=(1, 2, 3), sigma=0.2),
                             atol=2e-6)
  # Wider still is allowed and the same.
  np.testing.assert_allclose(divnorm.normalize(x, {1: 21, 2: 31, 3: None}, sigma=0.2), y, atol=2e-6)


@pytest.mark.slow
def test_shift_invariance_of_centered_fields():
  x = _x((2, 9, 8, 3))
  for field in [(1, 2, 3), (0, 1, 2), {3: None, 1: 3, 2: 5}, {1: 5}]:
    np.testing.assert_allclose(
      divnorm.normalize(x + 7.0, field, sigma=0.1), divnorm.normalize(x, field, sigma=0.1),
      atol=2e-5)


@pytest.mark.slow
def test_zero_padding_is_not_shift_invariant_at_borders():
  x = _x((1, 15, 3)) + 50.0
  y = divnorm.normalize(x, {1: 5, 2: None}, border="zeros", sigma=0.5)
  y0 = divnorm.normalize(x - 50.0, {1: 5, 2: None}, border="zeros", sigma=0.5)
  np.testing.assert_allclose(y[:, 4:-4], y0[:, 4:-4], atol=2e-4)  # interior: same
  assert np.abs(np.asarray(y - y0)[:, :2]).max() > 0.1  # border: pulled toward zero


@pytest.mark.slow
def test_scale_invariance():
  x = _x((2, 7, 6, 3))
  field = {3: None, 1: 3, 2: 3}
  np.testing.assert_allclose(
    divnorm.normalize(1e3 * x, field), divnorm.normalize(x, field), atol=1e-5)
  # With sigma, scaling sigma along with x is invariant too; sigma -> 0 approaches sigma = 0.
  np.testing.assert_allclose(
    divnorm.normalize(4.0 * x, field, sigma=2.0), divnorm.normalize(x, field, sigma=0.5), atol=1e-5)
  gaps = [float(jnp.abs(divnorm.normalize(x, field, sigma=s) - divnorm.normalize(x, field)).max())
          for s in (1e-1, 1e-2, 1e-3)]
  assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-3


@pytest.mark.slow
def test_translation_equivariance_away_from_borders():
  x = _x((2, 20, 4))
  field_a, field_b = {1: 3, 2: None}, {1: 5, 2: None}
  y = divnorm.normalize(x, field_a, field_b, sigma=0.1)
  s, reach = 3, 1 + 2  # shift; how far a position's output sees (A radius + B radius)
  y_shift = divnorm.normalize(x[:, s:], field_a, field_b, sigma=0.1)
  np.testing.assert_allclose(y_shift[:, reach:-reach], y[:, s + reach : -reach], atol=1e-5)


@pytest.mark.parametrize(
  "summation,suppression",
  [((1, 2), None), ({1: 3, 2: None}, None), ({1: 3}, {1: 5, 2: None})],
)
@pytest.mark.slow
def test_gradients_order_2(x64, summation, suppression):
  x = _x((2, 5, 3), seed=3, dtype=np.float64)
  f = lambda x: divnorm.normalize(x, summation, suppression, sigma=0.3)
  check_grads(f, (x,), order=2, modes=("fwd", "rev"), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
  "f",
  [
    lambda x: divnorm.normalize(x, (1, 2)),
    lambda x: divnorm.normalize(x, {1: 3, 2: None}),
    lambda x: divnorm.layer_norm(x),
    lambda x: divnorm.instance_norm(x),
    lambda x: divnorm.group_norm(x, num_groups=2),
    lambda x: divnorm.rms_norm(x),
    lambda x: divnorm.divisive_norm(x, summation_window=(3,), sigma=0.0),
    lambda x: divnorm.batch_norm(x, divnorm.batch_stats_init(x), training=True)[0],
  ],
)
@pytest.mark.slow
def test_constant_input_is_finite_with_default_arguments(f):
  x = jnp.full((2, 5, 4), 3.0)
  assert np.isfinite(f(x)).all()
  grad = jax.grad(lambda x: jnp.sum(f(x) * jnp.arange(40.0).reshape(2, 5, 4)))(x)
  assert np.isfinite(grad).all()


def test_jit_equals_eager_and_does_not_retrace():
  x = _x((2, 7, 6, 3))
  traces = []

  @jax.jit
  def f(x):
    traces.append(1)
    return divnorm.normalize(x, {3: None, 1: 5, 2: 5}, sigma=0.5)

  np.testing.assert_allclose(f(x), divnorm.normalize(x, {3: None, 1: 5, 2: 5}, sigma=0.5),
                             atol=1e-6)
  f(x + 1.0)
  f(x * 2.0)
  assert len(traces) == 1


@pytest.mark.parametrize(
  "f",
  [
    lambda x: divnorm.normalize(x, {1: 3, 2: None}, sigma=0.5, border="zeros"),
    lambda x: divnorm.layer_norm(x, sigma=0.1),
    lambda x: divnorm.instance_norm(x, sigma=0.1),
    lambda x: divnorm.group_norm(x, num_groups=2, sigma=0.1),
    lambda x: divnorm.rms_norm(x, sigma=0.1),
    lambda x: divnorm.divisive_norm(x, summation_window=3, sigma=0.5),
    lambda x: divnorm.batch_norm(x, divnorm.batch_stats_init(x), training=True, sigma=0.1)[0],
    lambda x: divnorm.l1_penalty(x, 0.1),
    lambda x: divnorm.l1_penalty(x, 0.1, mask=x > 0),
  ],
)
def test_every_function_jits_with_python_scalars(f):
  x = _x((2, 5, 4))
  np.testing.assert_allclose(jax.jit(f)(x), f(x), atol=1e-6)


@pytest.mark.slow
def test_vmap_commutes_with_per_example_fields():
  x = _x((4, 7, 6, 3))
  per_example = lambda xi: divnorm.normalize(xi, {2: None, 0: 3, 1: 3}, sigma=0.1)
  np.testing.assert_allclose(
    jax.vmap(per_example)(x), divnorm.normalize(x, {3: None, 1: 3, 2: 3}, sigma=0.1), atol=1e-6)


def test_axis_name_adds_a_whole_axis_under_vmap():
  x = _x((4, 5, 3))
  f = lambda xi: divnorm.normalize(xi, (0,), axis_name="batch")
  np.testing.assert_allclose(
    jax.vmap(f, axis_name="batch")(x), divnorm.normalize(x, (0, 1)), atol=1e-6)


def test_presets_take_axis_name_as_flax_s_layers():
  """layer_norm, instance_norm and group_norm pool a vmapped axis (`axis_name`), as Flax's
  LayerNorm, InstanceNorm and GroupNorm do: the joined batch's fields plus that axis."""
  x = _x((2, 3, 4, 8), offset=5.0)
  cases = [(lambda x, **k: divnorm.layer_norm(x, sigma=0.1, **k), (0, 3)),
           (lambda x, **k: divnorm.instance_norm(x, sigma=0.1, **k), (0, 2)),
           (lambda x, **k: divnorm.group_norm(x, num_groups=2, sigma=0.1, **k), None)]
  for f, joined_axes in cases:
    mapped = jax.vmap(lambda xi, f=f: f(xi, axis_name="d"), axis_name="d")(x)
    if joined_axes is None:  # groups of 4 channels over (devices, H) per example row
      groups = x.reshape(2, 3, 4, 2, 4)
      want = divnorm.normalize(groups, (0, 2, 4), sigma=0.1).reshape(x.shape)
    else:
      want = divnorm.normalize(x, joined_axes, sigma=0.1)
    np.testing.assert_allclose(mapped, want, atol=2e-6)


@pytest.mark.parametrize("fast", [True, None])
def test_axis_name_is_the_whole_axis_fast_variance_needs(fast):
  """A field of windows alone, mapped: its one whole axis is the named one, so one-pass
  statistics serve it as they serve the joined batch (they were refused), at an offset of
  1e4, with a mask, values and gradients."""
  x = _x((4, 6, 3)) + 1e4
  mask = jnp.asarray(np.random.default_rng(1).random(x.shape) > 0.3)
  joined = lambda x: divnorm.normalize(x, {0: None, 1: 3}, sigma=0.1, mask=mask,  # noqa: E731
                                       fast_variance=fast)
  mapped = lambda x: jax.vmap(lambda xi, mi: divnorm.normalize(  # noqa: E731
      xi, {0: 3}, sigma=0.1, mask=mi, fast_variance=fast, axis_name="batch"),
      axis_name="batch")(x, mask)
  np.testing.assert_allclose(mapped(x), joined(x), atol=1e-6)
  loss = lambda f: lambda x: jnp.sum(f(x) ** 3)  # noqa: E731
  np.testing.assert_allclose(jax.grad(loss(mapped))(x), jax.grad(loss(joined))(x), atol=2e-5)


@pytest.mark.slow
def test_axis_name_under_shard_map_and_sharded_jit_equal_one_device():
  devices = jax.devices()
  assert len(devices) == 8, "conftest sets 8 CPU devices"
  mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
  x = _x((16, 5, 3), offset=4.0)
  mask = np.random.default_rng(0).uniform(size=(16, 5, 1)) > 0.2
  expected = divnorm.normalize(x, (0, 1), mask=mask)
  sharded = jax.shard_map(
    lambda x, m: divnorm.normalize(x, (0, 1), mask=m, axis_name="data"),
    mesh=mesh, in_specs=(P("data"), P("data")), out_specs=P("data"))
  np.testing.assert_allclose(sharded(x, mask), expected, atol=1e-5)
  put = lambda a: jax.device_put(a, NamedSharding(mesh, P("data")))
  out = jax.jit(lambda x, m: divnorm.normalize(x, (0, 1), mask=m))(put(x), put(mask))
  np.testing.assert_allclose(out, expected, atol=1e-5)


# Fields of windows alone (an RNN's units): the derivative's own branch (`core._normalized_jvp`).
WINDOW_ONLY_CASES = [({1: 5}, None), ({1: 3}, {1: 7}), ({1: 3}, {2: 3}), ({1: 3, 2: 3}, None)]


@pytest.mark.parametrize("border", ["valid", "zeros", "zeros_with_divisor_bug"])
@pytest.mark.parametrize("summation,suppression", WINDOW_ONLY_CASES)
@pytest.mark.parametrize("masked", [False, True])
def test_window_only_fields_gradients(x64, summation, suppression, border, masked):
  x = _x((2, 9, 5), seed=5, offset=3.0, dtype=np.float64)
  mask = (np.random.default_rng(1).uniform(size=x.shape) > 0.3) if masked else None
  f = lambda x, s: divnorm.normalize(x, summation, suppression, sigma=s, border=border,
                                     mask=mask)
  check_grads(f, (x, 0.4), order=1, modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)


@pytest.mark.slow
def test_window_only_field_gradient_under_shard_map_equals_one_device():
  # With axis_name the mapped axis joins every field: {1: 5} on each device's 2 rows is
  # {0: None, 2: 5} on the rows as [device, row, unit], whose derivative takes another branch.
  mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
  x = _x((16, 13), seed=6, offset=2.0)
  w = _x((16, 13), seed=7)
  loss = lambda f: lambda x: jnp.sum(w * f(x) ** 2)
  by_device = lambda x: divnorm.normalize(x.reshape(8, 2, 13), {0: None, 2: 5}, sigma=0.2)
  expected = jax.grad(loss(lambda x: by_device(x).reshape(16, 13)))(x)
  sharded = jax.shard_map(lambda x: divnorm.normalize(x, {1: 5}, sigma=0.2, axis_name="data"),
                          mesh=mesh, in_specs=P("data"), out_specs=P("data"))
  np.testing.assert_allclose(jax.grad(loss(sharded))(x), expected, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("field", [(1, 2), {1: 3, 2: None}])
def test_bfloat16_in_bfloat16_out(field):
  x = _x((2, 9, 8), offset=1.0)
  y16 = divnorm.normalize(jnp.asarray(x, jnp.bfloat16), field, sigma=0.1)
  assert y16.dtype == jnp.bfloat16
  y32 = divnorm.normalize(jnp.asarray(x, jnp.bfloat16).astype(jnp.float32), field, sigma=0.1)
  np.testing.assert_allclose(y16.astype(np.float32), y32, atol=3e-2)


@pytest.mark.parametrize("field", [(1, 2), {2: None, 1: 5}])
def test_large_offset_stays_accurate(field):
  x = _x((3, 11, 16), seed=4, offset=1e4)
  y = divnorm.normalize(x, field)
  y_ref, _ = ref.normalize(x.astype(np.float64), field)
  # The reference sees the same float32 input: centered around a shift taken from the
  # data, the core keeps float32 rounding of values of size ~1 (not of 1e4).
  np.testing.assert_allclose(y, y_ref, atol=3e-6)


@pytest.mark.slow
@pytest.mark.parametrize("border", ["valid", "zeros"])
@pytest.mark.parametrize(
    "summation,suppression",
    [({3: None, 1: 5, 2: 5}, None), ({3: None, 1: 3}, {3: None, 1: 5, 2: 3})])
def test_windowed_fields_with_an_off_center_patch(border, summation, suppression):
  # One 3x3 patch far off center: one shift cannot fit both the patch and the rest, so
  # the positions that see the patch keep the rounding of values of size 1e4 (the shift
  # is a mean of the data): as accurate as the input allows, ~1e-3.
  x = _x((2, 9, 8, 16), seed=5)
  x[0, :3, :3, :] += np.float32(1e4)
  y = divnorm.normalize(x, summation, suppression, sigma=0.1, border=border)
  y_ref, _ = ref.normalize(x.astype(np.float64), summation, suppression, sigma=0.1,
                           border=border)
  np.testing.assert_allclose(y, y_ref, atol=2e-3)


BAD_CALLS = [
  (lambda x: divnorm.normalize(x, (4,)), ValueError, "out of range"),
  (lambda x: divnorm.normalize(x, (1, -2)), ValueError, "appears twice"),
  (lambda x: divnorm.normalize(x, {1: 4}), ValueError, "must be odd"),
  (lambda x: divnorm.normalize(x, {1: 0}), ValueError, "must be odd and positive"),
  (lambda x: divnorm.normalize(x, {1: 2.5}), TypeError, "odd int or None"),
  (lambda x: divnorm.normalize(x, "channels"), TypeError, "a field is a dict"),
  (lambda x: divnorm.normalize(x, (1,), sigma=-0.1), ValueError, "must be >= 0"),
  (lambda x: divnorm.divisive_norm(x, summation_window=3, sigma=-1.0), ValueError, "sigma"),
  (lambda x: divnorm.normalize(x.astype(np.int32), (1,)), TypeError, "floating-point"),
  (lambda x: divnorm.normalize(x, (1,), mask=np.ones((3, 2), bool)), ValueError, "broadcast"),
  (lambda x: divnorm.normalize(x, (1,), mask=np.ones((2, 3, 4))), TypeError, "boolean"),
  (lambda x: divnorm.normalize(x, (1,), border="same"), ValueError, "border mode"),
  (lambda x: divnorm.group_norm(x, num_groups=3), ValueError, r"try one of \[1, 2, 4\]"),
  (lambda x: divnorm.group_norm(x, num_groups=2, group_size=2), ValueError, "exactly one"),
  (lambda x: divnorm.divisive_norm(x, summation_window=(3, 3), sigma=0.5), ValueError,
   "one odd width per spatial axis"),
  (lambda x: divnorm.divisive_norm(x, summation_window=(2,), sigma=0.5), ValueError, "odd"),
  (lambda x: divnorm.instance_norm(x, channel_axis=0), ValueError, "batch axis"),
  (lambda x: divnorm.l1_penalty(x, -1.0), ValueError, "alpha"),
]


@pytest.mark.parametrize("call,error,message", BAD_CALLS)
def test_bad_input_gets_a_clear_error(call, error, message):
  x = _x((2, 3, 4))
  with pytest.raises(error, match=message):
    call(x)


@pytest.mark.parametrize("make", [
    lambda: divnorm.layer_norm,  # the last axis: one program per platform (`box_normalized`)
    lambda: lambda x: divnorm.normalize(x, (0,), fast_variance=True),  # batch statistics
], ids=["layer_norm", "batch_axis_one_pass"])
def test_identical_layers_share_one_trace_of_the_core(make, monkeypatch):
  """A model of many layers of one shape traces the core once (`core.box_normalized` is
  jitted): 20 layer norms traced 4.5x flax's time before, the platforms' programs and their
  derivatives traced again for each (`python -m benchmarks.trace_time`)."""
  from divnorm._src import core

  calls, formula = [], core.formula
  monkeypatch.setattr(core, "formula", lambda *a, **k: calls.append(1) or formula(*a, **k))
  norm = make()

  def traced(layers, features):  # sizes no other test uses: nothing cached
    def loss(x):
      for _ in range(layers):
        x = 1.5 * norm(x) + 0.5
      return jnp.sum(jnp.square(x))
    calls.clear()
    jax.jit(jax.grad(loss)).lower(jnp.ones((6, features)))
    return len(calls)

  one = traced(1, 37)
  assert one > 0 and traced(4, 41) == one
