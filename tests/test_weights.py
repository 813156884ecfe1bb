"""Weight norm, spectral norm and weight standardization against float64 NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from divnorm import weights as W


def _kernel(shape=(3, 3, 4, 5), seed=0):
  return np.random.default_rng(seed).normal(size=shape)


def test_weight_norm_against_numpy(x64):
  v = _kernel()
  g = np.random.default_rng(1).uniform(0.5, 2.0, 5)
  w = W.weight_norm(v, g)
  norm = np.sqrt((v**2).sum((0, 1, 2), keepdims=True))
  np.testing.assert_allclose(w, g * v / norm, rtol=1e-12)
  np.testing.assert_allclose(np.sqrt((np.asarray(w) ** 2).sum((0, 1, 2))), g, rtol=1e-12)
  # Several feature axes.
  w2 = W.weight_norm(v, np.ones((4, 5)), feature_axes=(2, 3))
  np.testing.assert_allclose(w2, v / np.sqrt((v**2).sum((0, 1), keepdims=True)), rtol=1e-12)


def test_weight_norm_reproduces_kernel_at_init():
  k = _kernel().astype(np.float32)
  v, g = W.weight_norm_init(k)
  np.testing.assert_allclose(W.weight_norm(v, g), k, rtol=1e-6, atol=1e-6)
  check_grads(jax.jit(W.weight_norm), (v, g), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)


def test_spectral_norm_converges_to_svd(x64):
  k = _kernel((3, 3, 4, 6))
  u = W.spectral_norm_init(k, jax.random.key(0), dtype=jnp.float64)
  top = np.linalg.svd(k.reshape(-1, 6), compute_uv=False)[0]
  w, u1, sigma = W.spectral_norm(k, u, n_steps=1)
  assert sigma <= top * (1 + 1e-12)
  step = jax.jit(lambda u: W.spectral_norm(k, u, n_steps=1))
  for _ in range(60):  # the state carries the iteration across calls
    w, u1, sigma = step(u1)
  np.testing.assert_allclose(sigma, top, rtol=1e-8)
  np.testing.assert_allclose(w, k / top, rtol=1e-7)
  np.testing.assert_allclose(np.linalg.svd(np.asarray(w).reshape(-1, 6), compute_uv=False)[0],
                             1.0, rtol=1e-7)
  _, _, sigma = W.spectral_norm(k, u, n_steps=100)
  np.testing.assert_allclose(sigma, top, rtol=1e-8)


@pytest.mark.parametrize("n_steps", [0, 1, 3])
def test_spectral_norm_is_miyato_s_algorithm(x64, n_steps):
  """Miyato et al. (2018), Algorithm 1, in float64 NumPy on ``W [outputs, inputs]``: per step
  ``v = W^T u / |.|``, ``u = W v / |.|``; ``sigma = u^T W v`` (flax's SpectralNorm too).
  One step from a random ``u`` is far from converged, so half a step more or less shows:
  this matrix's sigma after one step is 4.23 by the algorithm and 4.69 with an extra half
  step (divnorm before the fix); its largest singular value is 4.91.
  """
  k = _kernel((8, 6), seed=3)
  u0 = np.asarray(W.spectral_norm_init(k, jax.random.key(2), dtype=jnp.float64))
  mat = k.T  # Miyato's W: outputs x inputs; our state u is over the outputs

  def unit(a):
    return a / np.sqrt(a @ a + 1e-12)

  u, v = u0, unit(mat.T @ u0)
  for _ in range(n_steps):
    v = unit(mat.T @ u)
    u = unit(mat @ v)
  sigma = u @ mat @ v
  w, new_u, got = W.spectral_norm(k, u0, n_steps=n_steps)
  np.testing.assert_allclose(got, sigma, rtol=1e-12)
  np.testing.assert_allclose(new_u, u, rtol=1e-12, atol=1e-15)
  np.testing.assert_allclose(w, k / sigma, rtol=1e-12)


def test_spectral_norm_gradient_flows_through_sigma_only(x64):
  k = _kernel((4, 3))
  u = W.spectral_norm_init(k, jax.random.key(1), dtype=jnp.float64)
  _, u, _ = W.spectral_norm(k, u, n_steps=50)
  f = jax.jit(lambda k: W.spectral_norm(k, u, n_steps=0)[0])
  check_grads(f, (k,), order=1, modes=["rev"])


def test_weight_standardization(x64):
  k = _kernel() + 2.0
  w = W.weight_standardization(k, sigma=0.01)
  mean, var = k.mean((0, 1, 2), keepdims=True), k.var((0, 1, 2), keepdims=True)
  np.testing.assert_allclose(w, (k - mean) / np.sqrt(var + 1e-4), rtol=1e-10)


@pytest.mark.parametrize("none", [None, ()])
def test_no_feature_axes_make_the_whole_kernel_one_unit(x64, none):
  """``feature_axes=None``, as Flax's WeightNorm and the wrappers take it (the functions
  refused it with an error about fields), or ``()``: one norm, mean and singular value."""
  k = _kernel() + 0.5
  norm = np.sqrt((k**2).sum())
  np.testing.assert_allclose(W.kernel_norm(k, feature_axes=none), norm, rtol=1e-12)
  np.testing.assert_allclose(W.weight_norm(k, np.asarray(2.0), feature_axes=none), 2 * k / norm,
                             rtol=1e-12)
  np.testing.assert_allclose(W.weight_standardization(k, feature_axes=none),
                             (k - k.mean()) / k.std(), rtol=1e-10)
  u = W.spectral_norm_init(k, jax.random.key(0), feature_axes=none)
  w_sn, _, sigma = W.spectral_norm(k, u, feature_axes=none)
  np.testing.assert_allclose(sigma, norm, rtol=1e-12)  # a one-column matrix: its length
  np.testing.assert_allclose(w_sn, k / norm, rtol=1e-12)


def test_errors():
  k = _kernel().astype(np.float32)
  with pytest.raises(ValueError, match="kernel_norm"):
    W.weight_norm(k, np.ones(4, np.float32))
  with pytest.raises(ValueError, match="spectral_norm_init"):
    W.spectral_norm(k, np.ones(3, np.float32))
  with pytest.raises(ValueError, match="n_steps"):
    W.spectral_norm(k, np.ones(5, np.float32), n_steps=-1)
  with pytest.raises(ValueError, match="every axis"):
    W.weight_standardization(k, feature_axes=(0, 1, 2, 3))
  with pytest.raises(TypeError, match="floating"):
    W.weight_standardization(k.astype(np.int32))


def test_a_sum_of_squares_that_overflows_gives_nan_never_a_silent_zero():
  """Entries near 1e20 square past float32's range: weight normalization gave all zeros and
  spectral normalization the kernel unnormalized (a 'zero' sigma); now NaN, as the core's
  statistics. Scaled down by a power of two, the same kernels give their exact numbers."""
  from divnorm._src import weights as impl
  big = jnp.asarray(np.random.default_rng(0).normal(size=(6, 4)) * 1e20, jnp.float32)
  u = W.spectral_norm_init(big, jax.random.key(0))
  outs = [W.weight_norm(big, jnp.ones(4)),
          impl.l2_normalized(big, None, feature_axes=-1, epsilon=1e-12, dtype=None),
          W.spectral_norm(big, u)[0],
          impl.spectral_normalized(big, u[None], n_steps=1, epsilon=1e-12, dtype=None)[0],
          impl.row_spectral_normalized(big, jnp.ones(6) / 6**0.5, jnp.ones(4) / 2, n_steps=1,
                                       epsilon=1e-12)[0]]
  for out in outs:
    assert np.all(np.isnan(out))
  small = big * 2.0**-70
  w = np.asarray(small, np.float64)
  np.testing.assert_allclose(W.weight_norm(small, jnp.ones(4)), w / np.linalg.norm(w, axis=0),
                             rtol=1e-6)
  sigma = W.spectral_norm(small, u, n_steps=30)[2]
  np.testing.assert_allclose(sigma, np.linalg.norm(w, 2), rtol=1e-4)
