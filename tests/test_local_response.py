"""Local response normalization against torch's formula (hand-computed and float64 loops)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from divnorm.local_response import local_response_norm


def _torch_lrn(x, size, alpha, beta, k):
  """torch.nn.LocalResponseNorm on channels last, as loops over channels."""
  x = np.asarray(x, np.float64)
  c_dim = x.shape[-1]
  out = np.empty_like(x)
  for c in range(c_dim):
    lo, hi = max(0, c - size // 2), min(c_dim - 1, c + (size - 1) // 2)
    total = (x[..., lo : hi + 1] ** 2).sum(-1)
    out[..., c] = x[..., c] / (k + alpha / size * total) ** beta
  return out


def test_hand_computed_cases():
  x = np.array([[1.0, 2.0, 3.0]], np.float32)
  # size 2 (even): channel c sums c-1 and c. Divisors 1 + (1/2) * {1, 5, 13}.
  y = local_response_norm(x, size=2, alpha=1.0, beta=1.0, k=1.0)
  np.testing.assert_allclose(y, [[1 / 1.5, 2 / 3.5, 3 / 7.5]], rtol=1e-6)
  # size 3 (odd): channel c sums c-1, c, c+1. Divisors (2 + (1/3) * {5, 14, 13}) ** 0.5.
  y = local_response_norm(x, size=3, alpha=1.0, beta=0.5, k=2.0)
  np.testing.assert_allclose(
    y, [[1 / np.sqrt(2 + 5 / 3), 2 / np.sqrt(2 + 14 / 3), 3 / np.sqrt(2 + 13 / 3)]], rtol=1e-6)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 9])
def test_against_torch_formula(x64, size):
  x = np.random.default_rng(size).normal(size=(2, 3, 4, 7)) * 3
  y = local_response_norm(x, size=size, alpha=1e-2, beta=0.75, k=2.0)
  np.testing.assert_allclose(y, _torch_lrn(x, size, 1e-2, 0.75, 2.0), rtol=1e-12)


def test_channel_axis_jit_and_bf16():
  x = np.random.default_rng(0).normal(size=(2, 6, 3, 3)).astype(np.float32)
  f = jax.jit(lambda x: local_response_norm(x, size=5, alpha=0.1, channel_axis=1))
  y = f(x)
  np.testing.assert_allclose(
    y, np.moveaxis(_torch_lrn(np.moveaxis(x, 1, -1), 5, 0.1, 0.75, 1.0), -1, 1), rtol=1e-5)
  yb = f(x.astype(jnp.bfloat16))
  assert yb.dtype == jnp.bfloat16
  np.testing.assert_allclose(yb.astype(np.float32), y, rtol=2e-2, atol=1e-2)
  assert np.isfinite(jax.grad(lambda x: jnp.sum(f(x)))(x)).all()


def test_errors():
  x = np.ones((2, 3), np.float32)
  with pytest.raises(ValueError, match="size"):
    local_response_norm(x, size=0)
  with pytest.raises(ValueError, match="beta"):
    local_response_norm(x, size=3, beta=-1.0)
  with pytest.raises(ValueError, match="batch"):
    local_response_norm(np.ones(3, np.float32), size=3)
  with pytest.raises(TypeError, match="floating"):
    local_response_norm(np.ones((2, 3), np.int32), size=3)


@pytest.mark.parametrize("size", [2, 3])
def test_gradients(x64, size):
  from jax.test_util import check_grads

  x = np.random.default_rng(5).normal(size=(2, 5))
  f = jax.jit(lambda x: local_response_norm(x, size=size, alpha=0.5, beta=0.75, k=1.0))
  check_grads(f, (x,), order=2, modes=["rev"])
