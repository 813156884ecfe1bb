"""Gradient checkpointing (rematerialization) through divnorm: `jax.checkpoint` and its
policies over the functions, `flax.linen.remat`, `flax.nnx.remat`, `haiku.remat` and
`equinox.filter_checkpoint` over the layers.

The core is a `jax.custom_jvp` whose derivative reads copies of `x` behind optimization
barriers, chosen per platform (`lax.platform_dependent`) inside a `jax.jit`; RMS norm of a
narrower input has a written derivative of its own. Under a checkpoint, the gradients must be
those without it, the running statistics must update as without it, and with
`nothing_saveable` the backward must keep nothing of the normalizer but its input: the
point of checkpointing is the memory that its residuals would take.
"""

import contextlib
import io

import equinox as eqx
import flax.linen as nn
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import ad_checkpoint

import divnorm
from divnorm import equinox as dqx
from divnorm import haiku as dhk
from divnorm import linen as dnn
from divnorm import nnx as dnx

SHAPE = (4, 6, 6, 16)


def _x(dtype=jnp.float32, seed=0):
  rng = np.random.default_rng(seed)
  return jnp.asarray(3.0 + rng.normal(size=SHAPE) * rng.uniform(0.5, 2, SHAPE[-1]), dtype)


def _w():
  return jnp.asarray(np.random.default_rng(9).normal(size=SHAPE), jnp.float32)


FUNCTIONS = {
    "layer_norm": lambda x: divnorm.layer_norm(x),
    "layer_norm, one-pass": lambda x: divnorm.layer_norm(x, fast_variance=True),
    "batch statistics, masked": lambda x: divnorm.normalize(x, (0, 1, 2), sigma=1e-3,
                                                            mask=x > 3.0),
    "group_norm": lambda x: divnorm.group_norm(x, num_groups=4),
    "divisive_norm": lambda x: divnorm.divisive_norm(x, summation_window=(3, 3), sigma=0.5),
    "rms_norm": lambda x: divnorm.rms_norm(x),
}
POLICIES = {
    "default": None,
    "nothing_saveable": jax.checkpoint_policies.nothing_saveable,
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
    "everything_saveable": jax.checkpoint_policies.everything_saveable,
}


def _loss(f, w):
  """A loss with work on both sides of `f`, so that the checkpoint has a boundary."""
  return lambda x: jnp.sum(jnp.tanh(f(jnp.sin(x)).astype(jnp.float32)) * w)


def _checkpointed(f, policy):
  return jax.checkpoint(f) if policy is None else jax.checkpoint(f, policy=policy)


@pytest.mark.parametrize("policy", [p if p in ("default", "nothing_saveable") else
                                    pytest.param(p, marks=pytest.mark.slow) for p in POLICIES])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("name", FUNCTIONS)
def test_checkpointed_functions_give_the_same_gradients(name, dtype, policy):
  """Recomputed in the backward, the forward is the same program: the gradients agree to
  float32 rounding (a recomputation may be fused differently; 1e-6 of the largest entry),
  in bfloat16 to its rounding of the gradient, one ulp."""
  f, w, x = FUNCTIONS[name], _w(), _x(dtype)
  g = jax.jit(jax.grad(_loss(f, w)))(x)
  g_remat = jax.jit(jax.grad(_loss(_checkpointed(f, POLICIES[policy]), w)))(x)
  assert g_remat.dtype == g.dtype == dtype
  scale = float(jnp.max(jnp.abs(g.astype(jnp.float32))))
  tol = 1e-6 if dtype == jnp.float32 else float(jnp.finfo(dtype).eps)
  np.testing.assert_allclose(np.float32(g_remat), np.float32(g), rtol=tol, atol=tol * scale)


def _residual_sources(f, x) -> list[str]:
  """What the backward of `f` keeps of an input-sized array, as `print_saved_residuals`
  describes it (one line per residual: its type, then where it comes from)."""
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    ad_checkpoint.print_saved_residuals(f, x)
  dims = ",".join(map(str, SHAPE))
  return [line for line in out.getvalue().splitlines() if f"[{dims}]" in line]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("name", FUNCTIONS)
def test_nothing_saveable_keeps_the_input_alone(name, dtype):
  """Without a checkpoint the backward keeps the normalizer's input-sized outputs (its `y`,
  `v` or copies); under `nothing_saveable` it keeps only the checkpointed function's
  argument. (Nothing of divnorm's may escape the policy: an optimization barrier or a
  custom derivative that saved its own residuals would show here.)"""
  f, x = FUNCTIONS[name], _x(dtype)
  plain = _residual_sources(lambda x: jnp.sum(jnp.tanh(f(x).astype(jnp.float32))), x)
  remat = _residual_sources(lambda x: jnp.sum(jnp.tanh(_checkpointed(
      f, jax.checkpoint_policies.nothing_saveable)(x).astype(jnp.float32))), x)
  def divnorms(residuals):  # kept by divnorm's code (the rest is the loss's tanh)
    return [r for r in residuals if "box_normalized" in r or "/divnorm/" in r]

  assert divnorms(plain), plain
  assert not divnorms(remat), remat
  assert [r for r in remat if "from the argument" in r] == [remat[0]], remat


LINEN = {  # (class, arguments)
    "LayerNorm": (dnn.LayerNorm, {}),
    "GroupNorm": (dnn.GroupNorm, {"num_groups": 4}),
    "RMSNorm": (dnn.RMSNorm, {}),
    "BatchNorm": (dnn.BatchNorm, {"use_running_average": False, "momentum": 0.5}),
    "DivisiveNorm": (dnn.DivisiveNorm, {"summation_window": (3, 3), "sigma": 0.5}),
}


def _tree_close(a, b, rtol=1e-6):
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.float32(u), np.float32(v), rtol=rtol,
                               atol=rtol * float(np.max(np.abs(np.float32(v)))))


@pytest.mark.loose_promotion  # the layers' float32 parameters with a bfloat16 input
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("name", LINEN)
def test_linen_remat_gives_the_same_gradients_and_statistics(name, dtype):
  """`nn.remat(Layer)` trains as `Layer`: the same parameter and input gradients and the same
  running statistics (BatchNorm's `batch_stats` updated inside the rematerialized call)."""
  x, w = _x(dtype), _w()
  cls, kwargs = LINEN[name]
  plain, remat = cls(**kwargs), nn.remat(cls)(**kwargs)
  variables = plain.init(jax.random.key(0), x)
  params = jax.tree.map(lambda p: p + 0.1 * np.arange(p.size).reshape(p.shape) / p.size,
                        variables.get("params", {}))  # DivisiveNorm: none by default

  def step(module):
    def loss(params, x):
      y, updates = module.apply({**variables, "params": params}, x, mutable=["batch_stats"])
      return jnp.sum(y.astype(jnp.float32) * w), updates
    return jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))(params, x)

  (gp, gx), updates = step(plain)
  (gp_r, gx_r), updates_r = step(remat)
  tol = 1e-6 if dtype == jnp.float32 else float(jnp.finfo(dtype).eps)
  _tree_close((gp_r, gx_r), (gp, gx), tol)
  _tree_close(updates_r, updates)


NNX = {
    "LayerNorm": lambda rngs: dnx.LayerNorm(SHAPE[-1], rngs=rngs),
    "GroupNorm": lambda rngs: dnx.GroupNorm(SHAPE[-1], num_groups=4, rngs=rngs),
    "RMSNorm": lambda rngs: dnx.RMSNorm(SHAPE[-1], rngs=rngs),
    "BatchNorm": lambda rngs: dnx.BatchNorm(SHAPE[-1], use_running_average=False,
                                            momentum=0.5, rngs=rngs),
}


@pytest.mark.parametrize("name", NNX)
def test_nnx_remat_gives_the_same_gradients_and_statistics(name):
  """`nnx.remat` of a call of the layer: the same gradients, and BatchNorm's `BatchStat`s
  updated as without it."""
  x, w = _x(), _w()

  def train(checkpoint: bool):
    model = NNX[name](nnx.Rngs(0))
    call = nnx.remat(lambda m, x: m(x)) if checkpoint else (lambda m, x: m(x))
    grads = nnx.grad(lambda m, x: jnp.sum(call(m, x) * w), argnums=(0, 1))(model, x)
    return grads, nnx.state(model, nnx.BatchStat)

  (g, stats), (g_r, stats_r) = train(False), train(True)
  _tree_close(g_r, g)
  _tree_close(stats_r, stats)


def test_haiku_remat_gives_the_same_gradients():
  """`hk.remat` of haiku's LayerNorm and GroupNorm (divnorm's): the same gradients."""
  x, w = _x(), _w()
  for make in (lambda: dhk.LayerNorm(-1, True, True),
               lambda: dhk.GroupNorm(groups=4)):
    grads = []
    for remat in (False, True):
      def forward(x, make=make, remat=remat):
        layer = make()
        return (hk.remat(layer) if remat else layer)(x)
      f = hk.without_apply_rng(hk.transform(forward))
      params = f.init(jax.random.key(0), x)
      grads.append(jax.jit(jax.grad(lambda p, x, f=f: jnp.sum(f.apply(p, x) * w),
                                    argnums=(0, 1)))(params, x))
    _tree_close(grads[1], grads[0])


def test_equinox_filter_checkpoint_gives_the_same_gradients():
  """`eqx.filter_checkpoint` of divnorm's equinox LayerNorm and GroupNorm (per example under
  `vmap`, channels first for GroupNorm, as equinox layers take them): the same gradients."""
  nhwc, w = _x(), _w()
  for layer, x in ((dqx.LayerNorm(SHAPE[1:]), nhwc),
                   (dqx.GroupNorm(4, SHAPE[-1]), jnp.moveaxis(nhwc, -1, 1))):
    def loss(layer, x, checkpoint):
      call = eqx.filter_checkpoint(lambda m, e: m(e)) if checkpoint else (lambda m, e: m(e))
      return jnp.sum(jax.vmap(lambda e: call(layer, e))(x) * w.reshape(x.shape))

    g = eqx.filter_grad(loss)(layer, x, False)
    g_r = eqx.filter_grad(loss)(layer, x, True)
    _tree_close(eqx.filter(g_r, eqx.is_array), eqx.filter(g, eqx.is_array))
