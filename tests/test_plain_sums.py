"""One-pass statistics from the plain sums of ``x`` and ``x^2`` (`statistics.one_pass`).

On XLA's CPU backend, for inputs of at least `PLAIN_MIN_SIZE` entries and fields of at least
`PLAIN_MIN_FIELD`, `one_pass` keeps the sums of ``x`` and ``x^2`` themselves where every
field has ``E_A[x]^2 <= PLAIN_LIMIT * var``, and a ``lax.cond`` takes the shifted sums
elsewhere; `two_pass` keeps the shifted sums alone (no cond), and runs beside it as a
control. Both must give the formula: here on
either side of the limit, at offsets where the plain sums would lose digits (300 and 1e4; at
1e4 flax's one-pass is off by 40), with NaN, inf and overflow, under masks, windows in B,
``vmap`` and ``grad``. Most tests lower both sizes to 0 (`plain_everywhere`) to run small
inputs through the cond. The tolerance, 1e-5: the float32 error measured on both sides of
the limit is at most 5e-6 (``python -m benchmarks.plain_sums``), and a wrong choice of sums
at 300 or 1e4 is off by more than 1e-3 in one-pass (the sums of x^2 cancel 5 to 8 digits
there).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import divnorm
from divnorm._src import statistics
from divnorm._src.fields import Field, resolve_field
from tests import reference as ref

ATOL = 1e-5
SHAPE = (4, 6, 5, 8)


@pytest.fixture
def plain_everywhere(monkeypatch):
  monkeypatch.setattr(statistics, "PLAIN_MIN_SIZE", 0)
  monkeypatch.setattr(statistics, "PLAIN_MIN_FIELD", 0)


def _x(mean, seed=0, shape=SHAPE):
  return (mean + np.random.default_rng(seed).normal(size=shape)).astype(np.float32)


def _split(t, size=4):
  return t.reshape(t.shape[:-1] + (t.shape[-1] // size, size))


# name -> (the call with fast_variance=True, the reference's fields A and B; GN's on the
# [..., groups, size] view)
PRESETS = {
    "BN": (lambda x, **k: divnorm.batch_norm(x, divnorm.batch_stats_init(x), training=True,
                                             **k)[0], (0, 1, 2), None),
    "LN": (lambda x, **k: divnorm.layer_norm(x, reduction_axes=(1, 2, 3), **k), (1, 2, 3),
           None),
    "IN": (lambda x, **k: divnorm.instance_norm(x, **k), (1, 2), None),
    "GN": (lambda x, **k: divnorm.group_norm(x, num_groups=2, **k), (1, 2, 4), None),
    "B windows": (lambda x, **k: divnorm.normalize(x, (3,), {3: None, 1: 3, 2: 3}, **k),
                  {3: None}, {3: None, 1: 3, 2: 3}),
}
MODES = {"one-pass": True, "two-pass": None}


def _reference(name, x, mask=None, sigma=0.1):
  _, a, b = PRESETS[name]
  if name == "GN":
    y, _ = ref.normalize(_split(x.astype(np.float64)), a, sigma=sigma,
                         mask=None if mask is None else _split(mask))
    return y.reshape(x.shape)
  return ref.normalize(x.astype(np.float64), a, b, sigma=sigma, mask=mask)[0]


def _near(x, field: Field, mask=None) -> bool:
  _, near = statistics._one_pass_sums(jnp.asarray(x), None, field, field, border="valid",
                                      mask=mask, axis_name=None)
  return bool(near)


def test_near_holds_within_the_limit_and_fails_beyond_it():
  # Rows of mean m and variance 1 exactly (m -+ 1, alternately): E[x]^2 <= 2 var iff
  # m <= sqrt(2) = 1.414.
  field = resolve_field((1,), 2)
  near = functools.partial(_near, field=field)

  def rows(*means):
    return np.asarray([m + np.tile([-1.0, 1.0], 64) for m in means], np.float32)

  assert near(rows(0.0, 1.0, 1.40, -1.40))
  assert not near(rows(0.0, 1.43))  # one field beyond the limit: all take the shift
  assert not near(rows(-1.43, 0.0))
  assert near(np.zeros((3, 128), np.float32))  # constant at 0: var = 0, m = 0
  assert not near(np.ones((3, 128), np.float32))  # constant elsewhere: var = 0 < m^2
  for bad in (np.nan, np.inf, -np.inf):
    x = rows(0.0, 0.0)
    x[1, 5] = bad
    assert not near(x)
  assert not near(rows(0.0) + np.float32(1e20))  # x^2 overflows to inf; m^2 too
  mask = np.zeros((2, 128), bool)
  mask[0] = True
  assert near(rows(0.0, 5.0), mask=mask)  # an empty field: n = var = 0
  mask[1, :3] = True
  assert not near(rows(0.0, 5.0), mask=mask)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("mean", [0.0, 1.3, 1.5, 300.0, -1e4])
@pytest.mark.parametrize("masked", [False, True])
def test_either_sums_give_the_formula(plain_everywhere, mode, name, mean, masked):
  x = _x(mean)
  mask = None
  if masked:  # per position, as a padding mask; every field keeps entries
    keep = np.random.default_rng(1).uniform(size=SHAPE[:-1] + (1,)) > 0.3
    mask = np.broadcast_to(keep, SHAPE)
  f = jax.jit(lambda x, mask: PRESETS[name][0](x, sigma=0.1, mask=mask,
                                               fast_variance=MODES[mode]))
  np.testing.assert_allclose(np.asarray(f(x, mask), np.float64), _reference(name, x, mask),
                             rtol=0, atol=ATOL)


@pytest.mark.parametrize("mode", list(MODES))
def test_a_nan_in_one_field_leaves_the_others_exact(plain_everywhere, mode):
  # The NaN fails the check, and the shifted sums keep it in its own field (as before):
  # instance norm's field is one channel of one example.
  x = _x(0.5)
  x[1, 2, 3, 5] = np.nan
  f = jax.jit(lambda x: PRESETS["IN"][0](x, sigma=0.1, fast_variance=MODES[mode]))
  y = np.asarray(f(x), np.float64)
  expected = _reference("IN", np.where(np.isnan(x), 0.0, x))
  assert np.isnan(y[1, ..., 5]).all()
  y[1, ..., 5] = expected[1, ..., 5]
  np.testing.assert_allclose(y, expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize("mode", list(MODES))
def test_an_offset_whose_squares_overflow_takes_the_shifted_sums(plain_everywhere, mode):
  # At 1e20 the plain x^2 is inf; the shifted sums are of numbers of the spread.
  x = np.float32(1e20) * (1 + np.random.default_rng(0).normal(size=SHAPE) * 1e-3)
  x = x.astype(np.float32)
  y = jax.jit(lambda x: PRESETS["LN"][0](x, sigma=0.0, fast_variance=MODES[mode]))(x)
  np.testing.assert_allclose(np.asarray(y, np.float64), _reference("LN", x, sigma=0.0),
                             rtol=0, atol=ATOL)


def _grad_reference(x, w, axes, sigma):
  """The float64 gradient of ``<y, w>`` over whole `axes`: ``r (w - E[w]) - r^3 v E[w v]``."""
  x, w = x.astype(np.float64), w.astype(np.float64)
  v = x - x.mean(axes, keepdims=True)
  r = 1 / np.sqrt((v * v).mean(axes, keepdims=True) + sigma**2)
  return r * (w - w.mean(axes, keepdims=True)) - r**3 * v * (w * v).mean(axes, keepdims=True)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("name", ["BN", "LN", "GN"])
@pytest.mark.parametrize("mean", [0.0, 1.3, 1e4])
def test_gradients_equal_the_float64_formula(plain_everywhere, mode, name, mean):
  x = _x(mean, seed=2)
  w = np.random.default_rng(3).normal(size=SHAPE).astype(np.float32)
  f, axes, _ = PRESETS[name]
  g = jax.jit(jax.grad(lambda x: jnp.sum(f(x, sigma=0.1, fast_variance=MODES[mode]) * w)))(x)
  if name == "GN":
    expected = _grad_reference(_split(x), _split(w), axes, 0.1).reshape(SHAPE)
  else:
    expected = _grad_reference(x, w, axes, 0.1)
  scale = np.abs(expected).max()
  np.testing.assert_allclose(np.asarray(g, np.float64) / scale, expected / scale, rtol=0,
                             atol=ATOL)


@pytest.mark.parametrize("mode", list(MODES))
def test_under_vmap_each_example_gets_its_own_sums(plain_everywhere, mode):
  # vmap makes the cond a select per example: one near 0 (plain), one at 1e4 (shifted).
  x = np.stack([_x(0.2, seed=4), _x(1e4, seed=5)])
  y = jax.jit(jax.vmap(lambda e: PRESETS["GN"][0](e, sigma=0.1, fast_variance=MODES[mode])))(x)
  for i in range(2):
    np.testing.assert_allclose(np.asarray(y[i], np.float64), _reference("GN", x[i]),
                               rtol=0, atol=ATOL)


def _compiled(shape, f) -> str:
  """The compiled CPU program of `f`'s forward."""
  return jax.jit(f).lower(jax.ShapeDtypeStruct(shape, jnp.float32)).compile().as_text()


def test_the_cond_is_in_large_one_pass_programs_only():
  large, small = (16, 16, 16, 16), (4, 8, 8, 16)  # 65536 and 4096 entries
  assert np.prod(large) >= statistics.PLAIN_MIN_SIZE > np.prod(small)
  f = jax.jit(lambda x: divnorm.group_norm(x, num_groups=4, fast_variance=True))
  assert "conditional(" in _compiled(large, f)
  assert "conditional(" not in _compiled(small, f)
  two_pass = functools.partial(divnorm.group_norm, num_groups=4, fast_variance=None)
  assert "conditional(" not in _compiled(large, two_pass)
  # layer norm over 16 features: fields smaller than PLAIN_MIN_FIELD
  assert statistics.PLAIN_MIN_FIELD > 16
  ln = functools.partial(divnorm.layer_norm, reduction_axes=-1, fast_variance=True)
  assert "conditional(" not in _compiled((64, 64, 16), ln)
  assert "conditional(" in _compiled((64, 32, 32), ln)
  # divisive norm across channels: windows in A, one shift per span (corrected two-pass)
  dn = functools.partial(divnorm.divisive_norm, summation_window=3, sigma=0.5,
                         fast_variance=True)
  assert "conditional(" not in _compiled(large, dn)
  # and the large program is the formula: N(0, 1) data (plain sums), and at 1e4 (shifted)
  for mean in (0.0, 1e4):
    x = _x(mean, seed=6, shape=large)
    y = np.asarray(f(x), np.float64)
    expected = ref.normalize(_split(x.astype(np.float64)), (1, 2, 4))[0].reshape(large)
    np.testing.assert_allclose(y, expected, rtol=0, atol=ATOL)
