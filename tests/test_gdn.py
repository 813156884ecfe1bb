"""GDN and IGDN against float64 NumPy; identities; the nonnegative reparameterization."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from divnorm import gdn as G


def _np_gdn(x, beta, gamma, alpha, eps, inverse=False):
  x = np.asarray(x, np.float64)
  pool = beta + (np.abs(x) ** alpha) @ np.asarray(gamma, np.float64).T
  return x * pool**eps if inverse else x / pool**eps


@pytest.mark.parametrize("alpha,eps", [(2.0, 0.5), (1.0, 1.0), (1.5, 0.7)])
@pytest.mark.parametrize("inverse", [False, True])
def test_against_numpy(x64, alpha, eps, inverse):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 3, 4, 5))
  beta, gamma = rng.uniform(0.5, 2, 5), rng.uniform(0, 0.3, (5, 5))
  y = G.gdn(x, beta=beta, gamma=gamma, alpha=alpha, epsilon=eps, inverse=inverse)
  np.testing.assert_allclose(y, _np_gdn(x, beta, gamma, alpha, eps, inverse), rtol=1e-12)


@pytest.mark.parametrize("inverse", [False, True])
def test_gradients(x64, inverse):
  rng = np.random.default_rng(4)
  x = rng.normal(size=(3, 4))
  beta, gamma = rng.uniform(0.5, 2, 4), rng.uniform(0, 0.3, (4, 4))
  f = jax.jit(lambda x, b, g: G.gdn(x, beta=b, gamma=g, inverse=inverse))
  check_grads(f, (x, beta, gamma), order=2, modes=["rev"])


def test_identities(x64):
  rng = np.random.default_rng(1)
  x = rng.normal(size=(3, 4, 6))
  ones, zeros = np.ones(6), np.zeros((6, 6))
  np.testing.assert_allclose(G.gdn(x, beta=ones, gamma=zeros), x, rtol=1e-15)
  np.testing.assert_allclose(G.igdn(x, beta=ones, gamma=zeros), x, rtol=1e-15)
  gamma = 1e-3 * rng.uniform(size=(6, 6))
  back = G.igdn(G.gdn(x, beta=ones, gamma=gamma), beta=ones, gamma=gamma)
  np.testing.assert_allclose(back, x, rtol=1e-4, atol=1e-5)
  # Channels first.
  xc = np.moveaxis(x, -1, 1)
  np.testing.assert_allclose(
    G.gdn(xc, beta=ones, gamma=gamma, channel_axis=1),
    np.moveaxis(G.gdn(x, beta=ones, gamma=gamma), -1, 1), rtol=1e-14)


def test_reparameterization(x64):
  params = G.gdn_init(4, beta=1.0, gamma=0.1, dtype=jnp.float64)
  beta, gamma = G.gdn_values(params)
  np.testing.assert_allclose(beta, np.ones(4), rtol=1e-12)
  np.testing.assert_allclose(gamma, 0.1 * np.eye(4), atol=1e-12)
  # Any raw value stands for a nonnegative (beta: >= BETA_MIN) value.
  raw = jnp.linspace(-2.0, 2.0, 9)
  assert (G.nonnegative(raw) >= 0).all()
  assert (G.nonnegative(raw, minimum=G.BETA_MIN) >= G.BETA_MIN * (1 - 1e-9)).all()
  x = np.random.default_rng(2).normal(size=(2, 4))

  def f(beta_raw, gamma_raw):
    b, g = G.gdn_values(G.GDNParams(beta_raw, gamma_raw))
    return G.gdn(x, beta=b, gamma=g)

  # Away from the bound's kink, where finite differences are meaningful.
  raw = (params.beta + 0.2, jnp.asarray(np.random.default_rng(3).uniform(0.1, 0.5, (4, 4))))
  check_grads(jax.jit(f), raw, order=1, modes=["rev"])


def test_errors_and_dtypes():
  x = np.ones((2, 3), np.float32)
  with pytest.raises(ValueError, match=r"beta must have shape \(3,\)"):
    G.gdn(x, beta=np.ones(2, np.float32), gamma=np.zeros((3, 3), np.float32))
  with pytest.raises(ValueError, match="nonnegative"):
    G.gdn(x, beta=np.ones(3, np.float32), gamma=-np.ones((3, 3), np.float32))
  beta, gamma = G.gdn_values(G.gdn_init(3))
  with pytest.raises(ValueError, match=r"alpha=0\.0 .*the exponent of \|x_j\|"):
    G.gdn(x, beta=beta, gamma=gamma, alpha=0.0)  # once GDN's check let it through
  f = jax.jit(lambda x: G.gdn(x, beta=beta, gamma=gamma))
  yb = f(x.astype(jnp.bfloat16))
  assert yb.dtype == jnp.bfloat16
  np.testing.assert_allclose(yb.astype(np.float32), f(x), rtol=1e-2)


@pytest.mark.parametrize("alpha", [1.0, 2.0, 1.5])
def test_the_derivative_at_an_input_of_zero_is_symmetric(alpha):
  """``y_1`` is even in ``x_0``, so its derivative there is 0 for every alpha, a constant
  one as a learned (traced) one, as tensorflow_compression's (``tf.abs``' gradient at 0 is
  0; JAX's ``abs`` takes +1, which alpha=1 once gave: -0.222 here)."""
  beta, gamma = jnp.ones(2), jnp.full((2, 2), 0.5)
  x = jnp.asarray([[0.0, 1.0]])
  for learned in (False, True):
    def y1(x0, a):
      return G.gdn(x.at[0, 0].set(x0), beta=beta, gamma=gamma, alpha=a, epsilon=1.0)[0, 1]
    a = jnp.asarray(alpha) if learned else alpha
    grad = jax.jit(jax.grad(y1))(0.0, a) if learned else jax.grad(y1)(0.0, a)
    assert grad == 0.0, (learned, grad)


def test_a_tensorflow_compression_gdn_carries_over_as_the_docstring_says(x64):
  """tensorflow_compression's GDN (its defaults alpha=1, epsilon=1): ``pool = |x| @ gamma +
  beta`` (a 1x1 convolution: its ``gamma[j, i]`` weighs channel j in channel i's pool) from
  raw parameters through its reparameterization, here in float64 NumPy. Its raw beta, its
  raw gamma transposed and its exponents give its outputs; the gamma as stored does not."""
  from divnorm import linen_extra

  rng, pedestal = np.random.default_rng(9), 2.0**-36
  raw_beta = np.sqrt(1 + pedestal) + rng.normal(size=4) * 0.1
  raw_gamma = np.abs(rng.normal(size=(4, 4))) * 0.4
  beta = np.maximum(raw_beta, np.sqrt(1e-6 + pedestal)) ** 2 - pedestal
  gamma = np.maximum(raw_gamma, np.sqrt(pedestal)) ** 2 - pedestal
  x = rng.normal(size=(2, 3, 3, 4))
  theirs = x / (np.abs(x) @ gamma + beta)
  layer = linen_extra.GDN(alpha=1.0, epsilon=1.0, param_dtype=jnp.float64)
  for stored, close in ((raw_gamma.T, True), (raw_gamma, False)):
    ours = layer.apply({"params": {"beta": raw_beta, "gamma": stored}}, jnp.asarray(x))
    assert np.allclose(ours, theirs, rtol=1e-12, atol=1e-14) == close
