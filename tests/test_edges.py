"""The core at its edges, one test per class of defect (issues 11 and 21), against float64
NumPy.

Every test of issue 11 failed on fcc08ac (the revision before the core's redesign); those
of issue 21 (a mapped axis with zero borders, the range of float32 statistics) fail on
c3793e6 in at least one of their modes. They use only the public API, so they run
unchanged on any revision.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P

import divnorm
from tests import reference as ref

DN = {3: None, 1: 5, 2: 5}  # divisive norm across channels, 5x5 windows (NHWC)


def _x(shape, seed=0, offset=0.0):
  return (offset + np.random.default_rng(seed).normal(size=shape)).astype(np.float32)


def _poison(x, mask, value):
  """`x` with `value` written at every masked-out entry."""
  return np.where(mask, x, np.float32(value)).astype(np.float32)


# ---- masks select: nothing outside the mask enters the statistics -----------------------

MASKED_CALLS = {
  "normalize_whole": lambda x, m: divnorm.normalize(x, (1, 2, 3), mask=m, sigma=0.1),
  "normalize_windowed": lambda x, m: divnorm.normalize(x, DN, {3: None, 1: 3, 2: 3}, mask=m),
  "layer_norm": lambda x, m: divnorm.layer_norm(x, reduction_axes=(1, 2, 3), mask=m),
  "instance_norm": lambda x, m: divnorm.instance_norm(x, mask=m, sigma=0.1),
  "group_norm": lambda x, m: divnorm.group_norm(x, num_groups=2, mask=m, sigma=0.1),
  "divisive_norm": lambda x, m: divnorm.divisive_norm(x, summation_window=3, sigma=0.5, mask=m),
  "rms_norm": lambda x, m: divnorm.rms_norm(x, reduction_axes=(1, 2, 3), mask=m),
  "batch_norm": lambda x, m: divnorm.batch_norm(
      x, divnorm.batch_stats_init(x), training=True, mask=m, momentum=0.0),
  "l1_penalty": lambda x, m: divnorm.l1_penalty(x, 1.0, mask=m),
}


@pytest.mark.parametrize("value", [np.nan, np.inf, 1e6, 1.7e7])
@pytest.mark.parametrize("name", sorted(MASKED_CALLS))
def test_masked_out_values_change_no_masked_in_output(name, value):
  # 1e6 and 1.7e7 are values a multiply-by-mask or an unmasked pivot turns into lost
  # digits (1.7e7 > 2**24: float32 no longer holds its integers); NaN and inf survive
  # NaN * 0. A select leaves every masked-in output, and the running mean, bit for bit.
  x = _x((2, 6, 5, 4), seed=1, offset=3.0)
  mask = np.random.default_rng(2).uniform(size=x.shape) > 0.25
  clean = MASKED_CALLS[name](x, mask)
  dirty = MASKED_CALLS[name](_poison(x, mask, value), mask)
  for c, d in zip(jax.tree.leaves(clean), jax.tree.leaves(dirty), strict=True):
    c, d = np.asarray(c), np.asarray(d)
    if c.shape == x.shape:
      c, d = c[mask], d[mask]
    assert np.isfinite(d).all(), name
    np.testing.assert_array_equal(d, c, err_msg=name)


def test_masked_normalize_equals_the_float64_formula_on_masked_in_entries(x64):
  x = _x((2, 6, 5, 4), seed=3, offset=2.0).astype(np.float64)
  mask = np.random.default_rng(4).uniform(size=x.shape) > 0.3
  y_ref, _ = ref.normalize(x, DN, {3: None, 1: 3}, sigma=0.2, mask=mask)
  y = divnorm.normalize(_poison(x, mask, np.nan).astype(np.float64), DN, {3: None, 1: 3},
                        sigma=0.2, mask=mask)
  np.testing.assert_allclose(y, y_ref, rtol=1e-10, atol=1e-10)


# ---- nothing outside a position's field enters its statistics ----------------------------

@pytest.mark.parametrize("where", [(0, 0), (0, 2), (4, 1), (10, 0)])
def test_nan_reaches_only_the_outputs_whose_windows_reach_it(where):
  # A at radius 1, B at radius 2: output i sees inputs within 1 + 2 of i, nothing else.
  # (fcc08ac subtracted the first entry of each axis as a pivot: a NaN there NaN'd all.)
  where, channel = where
  x = _x((2, 11, 3), seed=5, offset=1.0)
  x[0, where, channel] = np.nan
  y = np.asarray(divnorm.normalize(x, {1: 3, 2: None}, {1: 5, 2: None}, sigma=0.1))
  reach = np.abs(np.arange(11) - where) <= 3
  assert np.isnan(y[0, reach]).all()
  assert np.isfinite(y[0, ~reach]).all() and np.isfinite(y[1]).all()
  y_ref, _ = ref.normalize(np.where(np.isnan(x), 0.0, x), {1: 3, 2: None}, {1: 5, 2: None},
                           sigma=0.1)
  np.testing.assert_allclose(y[0, ~reach], y_ref[0, ~reach], atol=2e-6)


@pytest.mark.parametrize("field", [{1: 1}, {1: 1, 2: 1}, ()])
def test_a_single_entry_field_gives_zero(field):
  # E_A[x] = x when A holds one entry: v = 0 and y = 0, whatever the neighbours hold
  # (fcc08ac centered around a pivot outside the field and returned |y| up to ~1).
  rng = np.random.default_rng(6)
  x = (rng.normal(size=(3, 7, 4)) * rng.uniform(0.1, 100, size=(3, 7, 4))).astype(np.float32)
  y, v = divnorm.normalize(x, field, return_centered=True)
  np.testing.assert_array_equal(v, 0.0)
  np.testing.assert_array_equal(y, 0.0)


# ---- two-pass accuracy at large offsets, by default -------------------------------------

@pytest.mark.parametrize("offset", [1e4, 1e6])
@pytest.mark.parametrize(
    "call,summation,suppression",
    [(lambda x, **k: divnorm.divisive_norm(x, summation_window=5, sigma=0.0, **k), DN, None),
     (lambda x, **k: divnorm.normalize(x, DN, {3: None, 1: 3, 2: 7}, **k), DN,
      {3: None, 1: 3, 2: 7}),
     (lambda x, **k: divnorm.layer_norm(x, reduction_axes=(1, 2, 3), **k), (1, 2, 3), None)])
def test_default_keeps_two_pass_accuracy_at_offsets(call, summation, suppression, offset):
  # std 1 around an offset: the float64 formula on the same float32 input. Two-pass around
  # a shift from the data loses nothing to the offset: the error is float32 rounding of
  # values of size ~1-4 (a few 1e-7), here bounded by 2e-6.
  x = _x((2, 8, 8, 32), seed=7, offset=offset)
  y_ref, _ = ref.normalize(x.astype(np.float64), summation, suppression)
  for fv in (None, False):
    np.testing.assert_allclose(call(x, fast_variance=fv), y_ref, rtol=0, atol=2e-6)


# ---- empty fields and axes --------------------------------------------------------------

@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize(
    "call,shape",
    [(lambda x, **kw: divnorm.layer_norm(x, **kw), (4, 0)),
     (lambda x, **kw: divnorm.layer_norm(x, fast_variance=True, **kw), (4, 0)),
     (lambda x, **kw: divnorm.layer_norm(x, reduction_axes=(1, 2), **kw), (2, 0, 3)),
     (lambda x, **kw: divnorm.normalize(x, {1: 3}, **kw), (2, 0, 3)),
     (lambda x, **kw: divnorm.normalize(x, {1: 3, 2: None}, **kw), (0, 5, 3)),
     (lambda x, **kw: divnorm.group_norm(x, num_groups=2, **kw), (2, 0, 4)),
     (lambda x, **kw: divnorm.divisive_norm(x, summation_window=3, sigma=0.5, **kw),
      (0, 5, 5, 2)),
     (lambda x, **kw: divnorm.rms_norm(x, **kw), (3, 0))])
def test_an_empty_axis_gives_an_empty_result(call, shape, masked):
  """With a mask too (the masked shift's search for a first entry took a minimum over the
  empty axis, and raised JAX's "zero-size array to reduction operation")."""
  kw = {"mask": jnp.ones(shape, bool)} if masked else {}
  y = call(jnp.zeros(shape), **kw)
  assert y.shape == shape
  assert jax.jit(lambda x: call(x, **kw))(jnp.zeros(shape)).shape == shape  # the GPU row path too
  assert jax.grad(lambda x: jnp.sum(call(x, **kw)))(jnp.zeros(shape)).shape == shape


def test_an_empty_batch_cannot_update_running_statistics():
  x = jnp.zeros((0, 3))
  with pytest.raises(ValueError, match="no entries"):
    divnorm.batch_norm(x, divnorm.batch_stats_init(x), training=True)
  # Evaluation needs no batch statistics: an empty result.
  y, _ = divnorm.batch_norm(x, divnorm.batch_stats_init(x), training=False)
  assert y.shape == (0, 3)


# ---- sigma: finite, non-negative, never changes the output's shape ------------------------

@pytest.mark.parametrize("sigma", [np.nan, np.inf, -0.5, np.array([0.1, np.nan])])
@pytest.mark.parametrize(
    "call",
    [lambda x, s: divnorm.normalize(x, (1,), sigma=s),
     lambda x, s: divnorm.layer_norm(x, sigma=s),
     lambda x, s: divnorm.rms_norm(x, sigma=s),
     lambda x, s: divnorm.batch_norm(x, divnorm.batch_stats_init(x), training=True, sigma=s)])
def test_sigma_must_be_finite_and_nonnegative(call, sigma):
  with pytest.raises(ValueError, match="sigma"):
    call(_x((2, 5)), sigma)


@pytest.mark.parametrize("shape", [(3, 1, 1), (4,), (2, 1)])
def test_sigma_may_not_change_the_output_shape(shape):
  x = _x((4, 5))  # layer norm's statistics have shape (4, 1)
  with pytest.raises(ValueError, match="does not broadcast to the statistics"):
    divnorm.layer_norm(x, sigma=np.full(shape, 0.1, np.float32))


@pytest.mark.slow
def test_sigma_broadcast_to_the_statistics_and_traced_sigma(x64):
  x = _x((4, 5), seed=8).astype(np.float64)
  sigma = np.array([0.1, 0.2, 0.3, 0.4])[:, None]  # one per example
  mean = x.mean(1, keepdims=True)
  y_ref = (x - mean) / np.sqrt(((x - mean) ** 2).mean(1, keepdims=True) + sigma**2)
  np.testing.assert_allclose(divnorm.layer_norm(x, sigma=sigma), y_ref, rtol=1e-12)
  # A traced sigma (a learned parameter) passes the checks and has a gradient.
  g = jax.grad(lambda s: jnp.sum(divnorm.layer_norm(x, sigma=s) ** 2))(0.3)
  assert np.isfinite(g) and g < 0


@pytest.mark.parametrize("fast_variance", [None, True])
@pytest.mark.parametrize("masked", [False, True])
def test_per_position_sigma_of_lower_rank_gets_the_gradients_of_the_formula(
    fast_variance, masked, x64):
  # Fields of whole axes alone do their statistics' arithmetic without those axes
  # (statistics.at_positions): a sigma of lower rank than x, (4, 1) against (3, 4, 6), is
  # aligned as broadcasting aligns it, in the forward and in the written derivative.
  x = jnp.asarray(_x((3, 4, 6), seed=21, offset=3.0), jnp.float64)
  w = jnp.asarray(_x((3, 4, 6), seed=22), jnp.float64)
  mask = jnp.asarray(np.random.default_rng(23).random((3, 4, 6)) > 0.3) if masked else None
  sigma = jnp.asarray([[0.1], [0.2], [0.3], [0.4]])

  def reference(x, sigma):  # the paper's two lines, differentiated by JAX
    keep = jnp.ones(x.shape, bool) if mask is None else mask
    n = jnp.sum(keep, -1, keepdims=True).astype(x.dtype)
    zero = jnp.zeros((), x.dtype)
    v = jnp.where(keep, x - jnp.sum(jnp.where(keep, x, zero), -1, keepdims=True) / n, zero)
    return v / jnp.sqrt(sigma[None] ** 2 + jnp.sum(v * v, -1, keepdims=True) / n)

  def loss(f):
    return lambda x, sigma: jnp.sum(f(x, sigma) * w)

  ours = jax.grad(loss(lambda x, s: divnorm.layer_norm(
      x, sigma=s, mask=mask, fast_variance=fast_variance)), argnums=(0, 1))(x, sigma)
  expected = jax.grad(loss(reference), argnums=(0, 1))(x, sigma)
  for a, b in zip(ours, expected, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def _assert_first_entries(x, mask, whole, entry, found):
  """`entry` and `found` (`_first_masked_entry`'s, with any leading axes of size 1) are
  NumPy's first masked-in entry of every span (row-major over `whole`), and whether there
  is one; returns the latter."""
  rest = [a for a in range(x.ndim) if a not in whole]
  order = rest + list(whole)
  moved = np.moveaxis(mask, order, range(x.ndim)).reshape([x.shape[a] for a in rest] + [-1])
  values = np.moveaxis(x, order, range(x.ndim)).reshape(moved.shape)
  expected = np.take_along_axis(values, moved.argmax(-1)[..., None], -1)[..., 0]
  expected_found = moved.any(-1)
  keep = tuple(slice(None) if a in rest else 0 for a in range(x.ndim))
  got_found = np.broadcast_to(np.reshape(found, np.shape(found)[-x.ndim:]), x.shape)[keep]
  got = np.broadcast_to(np.reshape(entry, np.shape(entry)[-x.ndim:]), x.shape)[keep]
  np.testing.assert_array_equal(got_found, expected_found)
  np.testing.assert_array_equal(got[expected_found], expected[expected_found])
  return expected_found


@pytest.mark.parametrize("whole", [(0, 1, 2), (1, 2), (1, 2, 3), (0,)])
def test_the_masked_shift_is_the_first_masked_in_entry_of_every_span(whole):
  # Over the batch axis and others before the last the positions are float32
  # (shift._searched_position): the same entry as int32's, found as NumPy finds it.
  from divnorm._src.fields import Field
  from divnorm._src.shift import _first_masked_entry
  shape = (6, 5, 4, 3)
  x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
  mask = np.random.default_rng(31).random(shape) > 0.7
  mask[..., 1] = False  # spans with no entry: found is False
  entry, found = jax.jit(lambda x, m: _first_masked_entry(x, Field(whole, ()), m))(x, mask)
  _assert_first_entries(x, mask, whole, entry, found)


@pytest.mark.slow
def test_the_masked_shift_past_float32s_exact_integers_is_still_the_first_entry():
  # A span of more than 2^24 entries keeps int32 positions: in float32, 2^24 + 1 would
  # round to 2^24, one entry early (a masked-out one here).
  from divnorm._src.fields import Field
  from divnorm._src.shift import _first_masked_entry
  n = 2**24 + 8
  x = (np.arange(n, dtype=np.int64) % 1000).astype(np.float32)[:, None]
  mask = np.zeros((n, 1), bool)
  mask[2**24 + 1:] = True
  entry, found = jax.jit(lambda x, m: _first_masked_entry(x, Field((0,), ()), m))(x, mask)
  assert bool(found[0, 0]) and float(entry[0, 0]) == x[2**24 + 1, 0]


@pytest.mark.parametrize("whole", [(2,), (0, 1)])
def test_the_masked_shift_searches_past_its_prefix_only_where_a_span_needs_it(whole):
  # On CPU the search reads a span's first SEARCH_PREFIX entries along its last axis and
  # searches the whole span only where a span with entries has none there (a lax.cond).
  # Spans here: entries in the prefix, only past it, none at all; and all found in it.
  from divnorm._src.fields import Field
  from divnorm._src.shift import SEARCH_PREFIX, _first_masked_entry, _searched_position
  shape = (3, 4, SEARCH_PREFIX + 40)
  x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
  rng = np.random.default_rng(5)
  late = np.zeros(shape, bool)
  late[..., SEARCH_PREFIX + 7:] = rng.random(late[..., SEARCH_PREFIX + 7:].shape) > 0.5
  early = rng.random(shape) > 0.5
  spans = np.arange(np.prod([shape[a] for a in range(3) if a not in whole]))
  kinds = spans.reshape([shape[a] for a in range(3) if a not in whole]) % 3
  kinds = np.expand_dims(kinds, whole)
  field = Field(whole, ())
  search = jax.jit(lambda x, m: _first_masked_entry(x, field, m))
  for mask in (np.where(kinds == 0, early, np.where(kinds == 1, late, False)), early):
    for entry, found in (search(x, mask), jax.vmap(search)(x[None], mask[None])):
      expected_found = _assert_first_entries(x, mask, whole, entry, found)
    # the other platforms' path (the whole search) agrees
    rest = tuple(0 if a in whole else slice(None) for a in range(3))
    size = int(np.prod([shape[a] for a in whole]))
    position = np.broadcast_to(_searched_position(field, jnp.asarray(mask), size), shape)[rest]
    assert ((position < size) == expected_found).all()


def test_the_masked_shift_of_grouped_spans_searches_past_their_first_row_where_needed():
  # Group norm's span: a whole axis, then each group's channels. The search reads the
  # channels at the whole axis' first index first; spans with no entry there (a third of
  # the groups here) need the whole search, spans with none at all are not found.
  from divnorm._src.fields import Field
  from divnorm._src.shift import _first_masked_entry
  batch, length, groups, size = 3, 7, 4, 2
  shape = (batch, length, groups * size)
  x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
  mask = np.random.default_rng(8).random(shape) > 0.4
  split = mask.reshape(batch, length, groups, size)  # a view: edits reach `mask`
  split[:, 0, 0::3] = False
  split[1, :, 1] = False
  entry, found = jax.jit(lambda x, m: _first_masked_entry(x, Field((1,), (), ((2, size),)), m))(
      x, mask)
  for b in range(batch):
    for g in range(groups):
      span = (b, slice(None), slice(g * size, (g + 1) * size))
      kept = x[span][mask[span]]  # row-major over (length, channel in group)
      assert bool(np.asarray(found)[b, 0, g * size]) == (kept.size > 0)
      if kept.size:
        assert float(np.asarray(entry)[b, 0, g * size]) == kept[0]

def test_one_pass_keeps_its_accuracy_where_a_span_starts_with_a_long_masked_run():
  # Half the rows are masked out for their first 100 entries: their shift must still be an
  # entry of theirs, or one-pass sums at offset 1e4 cancel (flax's error there is 40).
  x = _x((6, 256), seed=4, offset=1e4)
  mask = np.ones(x.shape, bool)
  mask[::2, :100] = False
  for fast_variance in (True, None):
    y = divnorm.layer_norm(x, mask=mask, fast_variance=fast_variance)
    for row in range(x.shape[0]):
      kept = x[row][mask[row]].astype(np.float64)
      expected = (kept - kept.mean()) / kept.std()
      np.testing.assert_allclose(np.asarray(y)[row][mask[row]], expected, atol=1e-5)

# ---- every preset takes fast_variance ---------------------------------------------------

@pytest.mark.slow
def test_divisive_norm_takes_fast_variance():
  x = _x((2, 6, 6, 8), seed=9)
  y_ref, _ = ref.normalize(x.astype(np.float64), {3: None, 1: 3, 2: 3})
  for fv in (None, False, True):
    np.testing.assert_allclose(
        divnorm.divisive_norm(x, summation_window=3, sigma=0.0, fast_variance=fv), y_ref,
        atol=2e-5)


# ---- a mapped axis (vmap, shard_map) with zero borders -------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("border", ["zeros", "zeros_with_divisor_bug"])
@pytest.mark.parametrize("fast_variance", [None, True])
def test_axis_name_with_zero_borders_equals_the_unmapped_field(border, fast_variance):
  # The positions past the border count once per member of the mapped axis, as the
  # entries do (issue 21: the border was counted once per device, up to 0.17 off).
  x = _x((8, 9, 4), seed=10, offset=2.0)
  a, b = {0: 3, 1: None}, {0: 5, 1: None}
  expected = divnorm.normalize(x, {0: None, 1: 3, 2: None}, {0: None, 1: 5, 2: None},
                               sigma=0.2, border=border, fast_variance=fast_variance)
  f = lambda e: divnorm.normalize(e, a, b, sigma=0.2, border=border, axis_name="i",
                                  fast_variance=fast_variance)
  np.testing.assert_allclose(jax.vmap(f, axis_name="i")(x), expected, atol=2e-6)
  mesh = jax.make_mesh((8,), ("i",), axis_types=(AxisType.Auto,))
  sharded = jax.shard_map(lambda e: f(e[0])[None], mesh=mesh, in_specs=P("i"),
                          out_specs=P("i"))
  np.testing.assert_allclose(sharded(x), expected, atol=2e-6)


# ---- the range of float32 statistics ------------------------------------------------------

def _np_layer_norm(x, axes):
  x = x.astype(np.float64)
  v = x - x.mean(axes, keepdims=True)
  return v / np.sqrt((v * v).mean(axes, keepdims=True))


@pytest.mark.parametrize("fast_variance", [None, True])
def test_offsets_up_to_float32_max_cost_no_digits(fast_variance):
  # Values near 1e20 with a spread of 1e14: the shift (an entry) takes the offset out
  # before anything is squared, so nothing overflows (x^2 would: 1e40 > 3.4e38).
  rng = np.random.default_rng(11)
  x = (1e20 * (1 + 1e-6 * rng.normal(size=(2, 6, 6, 4)))).astype(np.float32)
  y = divnorm.layer_norm(x, reduction_axes=(1, 2, 3), fast_variance=fast_variance)
  np.testing.assert_allclose(y, _np_layer_norm(x, (1, 2, 3)), atol=2e-6)
  # A spread of 1e16 over 144 entries: sum (x - k)^2 ~ 1e35, still in range.
  x = (1e16 * rng.normal(size=(2, 6, 6, 4))).astype(np.float32)
  y = divnorm.layer_norm(x, reduction_axes=(1, 2, 3), fast_variance=fast_variance)
  np.testing.assert_allclose(y, _np_layer_norm(x, (1, 2, 3)), atol=2e-6)


@pytest.mark.parametrize(
    "call",
    [lambda x, fv: divnorm.layer_norm(x, reduction_axes=(1, 2, 3), fast_variance=fv),
     lambda x, fv: divnorm.divisive_norm(x, summation_window=3, sigma=0.5, fast_variance=fv),
     lambda x, fv: divnorm.batch_norm(x, divnorm.batch_stats_init(x), training=True,
                                      fast_variance=fv)[0],
     lambda x, fv: divnorm.rms_norm(x, reduction_axes=(1, 2, 3))])
@pytest.mark.parametrize("scale", [1e20, 1e30])
def test_a_spread_beyond_float32_is_nan_never_a_silent_zero(call, scale):
  # A spread of 1e20 squares past float32's max (3.4e38): the statistics overflow, and the
  # output says so (NaN) instead of rsqrt(inf) = 0 (issue 21: layer_norm returned 0).
  x = (scale * np.random.default_rng(12).normal(size=(2, 6, 6, 4))).astype(np.float32)
  for fv in (None, True):
    assert np.isnan(np.asarray(call(x, fv))).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_overflow_guard_is_nan_at_inf_and_rsqrt_elsewhere(dtype, x64):
  from divnorm._src.statistics import inverse_scale, variance_floor
  big = np.finfo(dtype).max
  var = np.array([0.0, 1e-30, 1.0, 1e30, big, np.inf, np.nan], dtype)
  r = np.asarray(jax.jit(inverse_scale)(jnp.asarray(var), 0.5))
  d = var + dtype(0.25) + dtype(variance_floor(dtype))
  with np.errstate(divide="ignore", invalid="ignore"):
    expected = 1 / np.sqrt(d)
  np.testing.assert_allclose(r[:5], expected[:5], rtol=4 * np.finfo(dtype).eps)
  assert r[4] > 0  # the largest finite variance still scales: rsqrt(max) > 0
  assert np.isnan(r[5:]).all()  # overflowed (inf) or NaN: NaN, never rsqrt(inf) = 0


def test_rms_norm_reaches_its_output_through_a_chain_of_one_operand_ops():
  # XLA's GPU backend makes a row normalization one Triton kernel only where the statistics
  # reach the output through one-operand ops; a guard that reads the variance twice, or
  # compares and selects, split rms_norm's forward into 2-3 kernels on an H200
  # (BENCHMARKS.md, "GPU (NVIDIA H200)").
  jaxpr = jax.make_jaxpr(lambda x: divnorm.rms_norm(x, sigma=0.1))(jnp.ones((4, 8))).jaxpr
  prims = [e.primitive.name for e in jaxpr.eqns]
  assert prims.count("reduce_sum") == 1
  assert not {"select_n", "lt", "gt", "ne", "eq", "is_finite"} & set(prims), prims

  def users(var):
    return [e for e in jaxpr.eqns if any(v is var for v in e.invars)]

  (reduce,) = [e for e in jaxpr.eqns if e.primitive.name == "reduce_sum"]
  chain = users(reduce.outvars[0])
  while len(chain) == 1 and chain[0].outvars[0].aval.size < 32:  # the statistics' chain
    chain = users(chain[0].outvars[0])
  assert len(chain) == 1 and chain[0].outvars[0].aval.shape == (4, 8), chain  # the output
