"""Input transforms: fit/apply/invert against float64 NumPy, covariances, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from divnorm import inputs as I


def _data(n=300, d=5, seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d) * 3


def test_min_max(x64):
  x = _data()
  stats = I.min_max.fit(x, feature_range=(-1.0, 2.0))
  y = I.min_max.apply(x, stats)
  lo, hi = x.min(0), x.max(0)
  np.testing.assert_allclose(y, -1 + (x - lo) * 3 / (hi - lo), rtol=1e-12)
  np.testing.assert_allclose(I.min_max.invert(y, stats), x, rtol=1e-12, atol=1e-12)
  const = np.ones((4, 2))
  assert np.isfinite(I.min_max.apply(const, I.min_max.fit(const))).all()


def test_standardize_and_center(x64):
  x = _data().reshape(30, 10, 5)
  stats = I.standardize.fit(x, axes=(0, 1), epsilon=1e-3)
  y = I.standardize.apply(x, stats)
  mean, var = x.mean((0, 1), keepdims=True), x.var((0, 1), keepdims=True)
  np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-3), rtol=1e-10)
  np.testing.assert_allclose(I.standardize.invert(y, stats), x, rtol=1e-10, atol=1e-10)
  stats = I.center.fit(x, axes=0)
  np.testing.assert_allclose(I.center.apply(x, stats), x - x.mean(0, keepdims=True), atol=1e-12)
  np.testing.assert_allclose(I.center.invert(I.center.apply(x, stats), stats), x, atol=1e-12)


@pytest.mark.parametrize("order", [1, 2])
def test_unit_length(x64, order):
  x = _data(n=7)
  stats = I.unit_length.fit(x, axes=-1, ord=order)
  y = I.unit_length.apply(x, stats)
  np.testing.assert_allclose(y, x / np.linalg.norm(x, ord=order, axis=-1, keepdims=True))
  assert I.unit_length.invert is None
  assert (I.unit_length.apply(np.zeros((2, 3)), stats) == 0).all()


def test_unit_length_gradient_at_a_zero_vector():
  """x / ||x||_2 of a zero vector is 0, with a finite gradient."""
  stats = I.unit_length.fit(np.zeros((2, 3)), axes=-1)
  g = jax.jit(jax.grad(lambda x: (I.unit_length.apply(x, stats) * jnp.arange(3.0)[None]).sum()))
  assert np.isfinite(g(jnp.zeros((2, 3)))).all()


@pytest.mark.parametrize("scale", [1e-30, 1e-20, 1.0, 1e20, 1e30])
def test_unit_length_in_float32_at_any_scale(scale):
  """x / ||x||_2 does not depend on the scale, though x * x under- or overflows float32
  beyond 1e+-19 (the output was x itself, or 0); its gradient is float64's at any scale."""
  x = _data(n=7).astype(np.float64) * scale
  stats = I.unit_length.fit(x, axes=-1)
  want = x / np.linalg.norm(x, axis=-1, keepdims=True)
  np.testing.assert_allclose(I.unit_length.apply(x.astype(np.float32), stats), want, rtol=2e-6,
                             atol=1e-7)
  w = np.arange(x.shape[-1], dtype=np.float64)[None]
  g = jax.grad(lambda t: (I.unit_length.apply(t, stats) * w).sum())(jnp.asarray(x, jnp.float32))
  n = np.linalg.norm(x, axis=-1, keepdims=True)  # d/dx of (x . w) / |x|
  want_g = (w - (want * w).sum(-1, keepdims=True) * want) / n
  np.testing.assert_allclose(np.asarray(g, np.float64) * scale, want_g * scale, rtol=2e-5,
                             atol=1e-6)


def test_pca_decorrelates(x64):
  x = _data()
  stats = I.pca.fit(x)
  z = I.pca.apply(x, stats)
  cov = np.cov(np.asarray(z).T, bias=True)
  np.testing.assert_allclose(cov, np.diag(np.diag(cov)), atol=1e-10)
  np.testing.assert_allclose(np.diag(cov), stats.eigvals, rtol=1e-10)
  assert (np.diff(stats.eigvals) <= 0).all()
  np.testing.assert_allclose(
    stats.eigvals, np.linalg.eigvalsh(np.cov(x.T, bias=True))[::-1], rtol=1e-10)
  np.testing.assert_allclose(I.pca.invert(z, stats), x, atol=1e-10)


def test_zca_whitens(x64):
  x = _data().reshape(300, 5, 1)  # feature axes after the sample axis are flattened
  stats = I.zca.fit(x, axes=0)
  w = I.zca.apply(x, stats)
  assert w.shape == x.shape
  cov = np.cov(np.asarray(w).reshape(300, 5).T, bias=True)
  np.testing.assert_allclose(cov, np.eye(5), atol=1e-5)
  np.testing.assert_allclose(I.zca.invert(w, stats), x, atol=1e-10)
  # ZCA is the symmetric whitening: the closest whitened data to the input.
  sigma = np.cov(x.reshape(300, 5).T, bias=True)
  lam, vec = np.linalg.eigh(sigma)
  expected = (x.reshape(300, 5) - x.mean(0).reshape(1, 5)) @ (vec / np.sqrt(lam)) @ vec.T
  np.testing.assert_allclose(np.asarray(w).reshape(300, 5), expected, atol=1e-9)


def test_zca_float32_jit():
  x = _data().astype(np.float32)
  stats = jax.jit(lambda d: I.zca.fit(d, epsilon=1e-6))(x)
  w = jax.jit(I.zca.apply)(x, stats)
  assert w.dtype == jnp.float32
  cov = np.cov(np.asarray(w, np.float64).T, bias=True)
  np.testing.assert_allclose(cov, np.eye(5), atol=1e-3)


def test_pca_and_zca_gradients(x64):
  """Through fit and apply: finite differences on random data; on constant data (repeated
  eigenvalues, where jnp.linalg.eigh's gradient is NaN) the mean's part alone, as the
  covariance's derivative is 0 there."""
  x, step, w = (jnp.asarray(_data(n=12, d=3, seed=s)) for s in range(3))
  const = jnp.full((12, 3), 3.0)
  for transform, kw in ((I.pca, {}), (I.zca, {"epsilon": 1e-3})):
    f = jax.jit(lambda d, t=transform, kw=kw: (t.apply(d, t.fit(d, **kw)) * w).sum())
    grad, h = jax.jit(jax.grad(f)), 1e-6
    np.testing.assert_allclose(jnp.vdot(grad(x), step),
                               (f(x + h * step) - f(x - h * step)) / (2 * h), rtol=1e-6)
    stats = jax.jit(lambda d, t=transform, kw=kw: t.fit(d, **kw))(const)
    vecs = np.asarray(stats.eigvecs)  # x - mean goes through W = V (PCA), V L^-1/2 V^T (ZCA)
    matrix = vecs if transform is I.pca else vecs / np.sqrt(stats.eigvals + 1e-3) @ vecs.T
    np.testing.assert_allclose(grad(const), (w - w.mean(0, keepdims=True)) @ matrix.T,
                               atol=1e-9)


@pytest.mark.parametrize("apart", [1e-9, 1e-6, 1e-3])
def test_zca_gradient_is_exact_at_nearly_repeated_eigenvalues(x64, apart):
  """As zca_fit's docstring says: two eigenvalues `apart` of their size from each other (four
  points on the axes, one pair moved) and the gradient through fit and apply still equals
  central differences (the coupling 1 / (l_j - l_i) is huge there, and exact)."""
  data = jnp.asarray([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
  data = data.at[0, 0].add(apart).at[1, 0].add(-apart)
  probe, w = jnp.asarray([[0.3, 0.7]]), jnp.asarray([[1.0, 2.0]])
  f = lambda d: jnp.sum(I.zca.apply(probe, I.zca.fit(d, epsilon=0.1)) * w)  # noqa: E731
  h, steps = 1e-6, np.eye(8).reshape(8, 4, 2)
  fd = [(f(data + h * e) - f(data - h * e)) / (2 * h) for e in steps]
  np.testing.assert_allclose(jax.grad(f)(data), np.reshape(fd, (4, 2)), atol=2e-7)


def test_means_at_large_offsets():
  """center, pca and zca fit their means around a shift (`moments`): in float32 at offsets
  1e4 and 1e6 within the half ulp of storing them (a plain mean: 1.9 ulps here)."""
  fit = jax.jit(lambda x: (I.center.fit(x).mean[0], I.pca.fit(x).mean,
                           I.zca.fit(x, epsilon=1e-5).mean))
  for offset in (1e4, 1e6):
    x = (np.random.default_rng(1).normal(size=(1000, 8)) + offset).astype(np.float32)
    true = x.astype(np.float64).mean(0)
    for mean in fit(x):
      assert np.abs(np.asarray(mean, np.float64) - true).max() <= 0.51 * np.spacing(
          np.float32(offset))


def test_errors(x64):
  x = _data(n=50)
  singular = np.concatenate([x, x[:, :1] + x[:, 1:2]], axis=1)
  with pytest.raises(ValueError, match="singular.*epsilon"):
    I.zca.fit(singular)
  stats = I.zca.fit(singular, epsilon=1e-5)
  assert np.isfinite(I.zca.apply(singular, stats)).all()
  with pytest.raises(ValueError, match="sample axes first"):
    I.pca.fit(x, axes=1)
  with pytest.raises(ValueError, match="feature shape"):
    I.pca.apply(np.ones((3, 4)), I.pca.fit(x))
  with pytest.raises(ValueError, match="feature_range"):
    I.min_max.fit(x, feature_range=(1.0, 0.0))
  with pytest.raises(ValueError, match="ord"):
    I.unit_length.fit(x, ord=3)
  with pytest.raises(ValueError, match="out of range"):
    I.standardize.fit(x, axes=2)


def test_pca_and_zca_multiply_at_full_precision():
  """Every product of the fits, the transforms and their gradients asks for HIGHEST
  precision: a GPU's TF32 (JAX's default there) left a whitened covariance 1.3e-3 from the
  identity, against 1.4e-5 in float32."""
  x = jax.random.normal(jax.random.key(0), (64, 6))

  def f(x):
    y = I.zca.apply(x, I.zca.fit(x, epsilon=1e-3)) + I.pca.apply(x, I.pca.fit(x))
    return jnp.sum(I.zca.invert(y, I.zca.fit(x)) ** 2)

  def dots(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == "dot_general":
        yield eqn.params["precision"]
      for v in eqn.params.values():
        if hasattr(v, "jaxpr") and hasattr(v.jaxpr, "eqns"):
          yield from dots(v.jaxpr)
        elif hasattr(v, "eqns"):
          yield from dots(v)

  precisions = list(dots(jax.make_jaxpr(jax.grad(f))(x).jaxpr))
  assert len(precisions) >= 8
  highest = jax.lax.Precision.HIGHEST
  assert all(p is not None and all(q == highest for q in p) for p in precisions), precisions
