"""Window sums: both ways of forming them equal a float64 enumeration, values and gradients.

`reductions.window_sum` takes a 1-D ``reduce_window`` per axis, or, for a window at least a
fifth as wide as a short minor axis (the RNN's width 61 over 128 units), a product with a
banded 0/1 matrix. Each way is checked against a float64 sum of the in-window entries, on
shapes that take each way; and `normalize` with the RNN's window against `tests.reference`.
Tolerance: float32 sums of at most 129 terms of size ~3 round to ~1e-5.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import divnorm
from divnorm._src import reductions
from tests import reference as ref


def _window_sum64(x, windows):
  out = np.asarray(x, np.float64)
  for axis, width in windows:
    h = width // 2
    padded = np.pad(out, [(h, h) if a == axis % out.ndim else (0, 0) for a in range(out.ndim)])
    out = sum(np.take(padded, np.arange(k, k + out.shape[axis]), axis=axis)
              for k in range(width))
  return out


CASES = [  # shape, windows, whether the last axis takes the banded product
    ((20, 128), ((1, 61),), True),    # the RNN's gates
    ((3, 32), ((1, 9),), True),
    ((4, 40), ((1, 129),), True),     # wider than the axis: every row sums the whole axis
    ((4, 16), ((1, 5),), False),      # too short an axis for the product to pay
    ((2, 5, 64), ((1, 3), (2, 31)), True),
    ((20, 128), ((1, 15),), False),   # narrow: reduce_window
    ((2, 6, 40), ((0, 3), (1, 5)), False),
]


@pytest.mark.parametrize("shape, windows, banded", CASES)
def test_window_sum_equals_float64_enumeration(shape, windows, banded):
  x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
  minor = dict(windows).get(len(shape) - 1)
  assert (minor is not None and reductions._banded_pays(jnp.asarray(x), len(shape) - 1, minor)) \
      == banded
  np.testing.assert_allclose(reductions.window_sum(jnp.asarray(x), windows),
                             _window_sum64(x, windows), rtol=0, atol=2e-5)


@pytest.mark.parametrize("width", [9, 61])
def test_banded_product_and_reduce_window_agree_in_gradient(width):
  x = jnp.asarray(np.random.default_rng(1).normal(size=(6, 40)), jnp.float32)
  w = jnp.asarray(np.random.default_rng(2).normal(size=(6, 40)), jnp.float32)
  window = lambda t: jax.lax.reduce_window(t, 0.0, jax.lax.add, (1, width), (1, 1),
                                           ((0, 0), (width // 2, width // 2)))
  for f in (lambda t: reductions._banded_window_sum(t, width), window):
    g = jax.grad(lambda t, f=f: jnp.sum(w * f(t) ** 2))(x)
    expected = 2 * _window_sum64(np.asarray(w) * _window_sum64(x, ((1, width),)),
                                 ((1, width),))
    np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-4)


def test_bfloat16_keeps_reduce_window():
  assert not reductions._banded_pays(jnp.zeros((2, 128), jnp.bfloat16), 1, 61)


@pytest.mark.parametrize("border", ["valid", "zeros"])
def test_rnn_window_normalize_equals_reference(border):
  x = np.random.default_rng(3).normal(1.0, 2.0, size=(8, 128)).astype(np.float32)
  got = divnorm.normalize(jnp.asarray(x), {1: 61}, {1: 61}, sigma=0.5, border=border)
  want, _ = ref.normalize(x.astype(np.float64), {1: 61}, {1: 61}, sigma=0.5, border=border)
  np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)
