"""RMSNorm's gradients in every module API against the float64 closed form.

Unmasked, the layers compute an RMSNorm with a scale as ``(x * scale) * r``, ``r = 1 /
sqrt(E[x^2] + eps)`` (`flax_semantics.affine`: the order that lets XLA's CPU backend share
the cotangent times ``r`` between the two gradients); masked, ``(x * r) * scale``. Whatever
the order, the loss
``sum(w * (x * r * scale + bias))`` has the gradients

  d/dscale = sum over the rows of ``w x r``,
  d/dx = ``r (w scale) - x r^3 E[w scale x]`` (the mean over the normalized axis),

which every layer must give to float32 rounding, with and without a mask (linen).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import divnorm.linen as dl
import divnorm.nnx as dnnx

SHAPE, EPS = (4, 6, 32), 1e-6


def _data(seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(0.5, 2.0, SHAPE).astype(np.float32)
  return x, rng.normal(size=SHAPE).astype(np.float32), rng.uniform(0.5, 1.5, SHAPE[-1])


def _expected(x, w, scale, keep=None):
  """``(d/dx, d/dscale)`` in float64; `keep`: the entries in the statistics (and outputs)."""
  x, w, scale = (np.asarray(a, np.float64) for a in (x, w, scale))
  keep = np.ones(x.shape, bool) if keep is None else keep
  n = keep.sum(-1, keepdims=True)
  r = 1 / np.sqrt(np.where(keep, x * x, 0).sum(-1, keepdims=True) / n + EPS)
  ws = np.where(keep, w * scale, 0)
  dx = r * ws - np.where(keep, x, 0) * r ** 3 * (ws * x).sum(-1, keepdims=True) / n
  return dx, np.where(keep, w * x * r, 0).sum((0, 1))


def _check(grad_x, grad_scale, x, w, scale, keep=None):
  want_x, want_scale = _expected(x, w, scale, keep)
  keep = np.ones(x.shape, bool) if keep is None else keep
  np.testing.assert_allclose(np.where(keep, grad_x, 0), want_x, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(grad_scale, want_scale, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("masked", [False, True])
def test_linen_rms_norm(masked):
  x, w, scale = _data()
  keep = np.random.default_rng(1).random(SHAPE) > 0.3 if masked else None
  layer = dl.RMSNorm(epsilon=EPS)
  params = {"scale": jnp.asarray(scale, jnp.float32)}

  def loss(params, x):
    return jnp.sum(w * layer.apply({"params": params}, x, mask=keep))
  g_params, g_x = jax.grad(loss, argnums=(0, 1))(params, x)
  _check(g_x, g_params["scale"], x, w, scale, keep)


def test_nnx_rms_norm():
  x, w, scale = _data()
  layer = dnnx.RMSNorm(SHAPE[-1], epsilon=EPS)
  layer.scale[...] = jnp.asarray(scale, jnp.float32)
  g_layer, g_x = nnx.grad(lambda m, x: jnp.sum(w * m(x)), argnums=(0, 1))(layer, x)
  _check(g_x, g_layer.scale[...], x, w, scale)


def test_haiku_rms_norm():
  hk = pytest.importorskip("haiku")
  from divnorm import haiku as dhk
  x, w, scale = _data()
  f = hk.without_apply_rng(hk.transform(lambda x: dhk.RMSNorm(-1, eps=EPS)(x)))
  params = jax.tree.map(lambda _: jnp.asarray(scale, jnp.float32), f.init(None, x))
  g_params, g_x = jax.grad(lambda p, x: jnp.sum(w * f.apply(p, x)), argnums=(0, 1))(params, x)
  _check(g_x, jax.tree.leaves(g_params)[0], x, w, scale)


def test_equinox_rms_norm():
  eqx = pytest.importorskip("equinox")
  from divnorm import equinox as dqx
  x, w, scale = _data()
  layer = dqx.RMSNorm(SHAPE[-1], eps=EPS, use_bias=False)
  layer = eqx.tree_at(lambda m: m.weight, layer, jnp.asarray(scale, jnp.float32))

  def loss(layer, x):
    return jnp.sum(w * jax.vmap(jax.vmap(layer))(x))
  g_layer, g_x = eqx.filter_grad(lambda lx: loss(*lx))((layer, jnp.asarray(x)))
  _check(g_x, g_layer.weight, x, w, scale)
