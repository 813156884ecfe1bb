"""`rms_norm`'s written derivative (`rms._written`), which a bfloat16 or float16 input takes
on XLA's CPU backend (and the RMSNorm layers', with their scale inside): exact in float64
to second order (called directly: a float64 input takes JAX's derivative), the float32
copy's numbers rounded once in the narrow dtypes, and no float32 copy of the input written
by the compiled programs.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import divnorm
from divnorm._src.fields import resolve_field
from divnorm._src.rms import _written

SHAPE = (4, 6, 32)
NARROW = [jnp.bfloat16, jnp.float16]


def _x(seed=0, dtype=np.float64, offset=0.5):
  return jnp.asarray(np.random.default_rng(seed).normal(offset, 2.0, SHAPE), dtype)


def _mask(seed=3):
  mask = np.random.default_rng(seed).random(SHAPE) > 0.3
  mask[1, 2] = False  # an empty row: its outputs and gradients are 0
  return jnp.asarray(mask)


@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("axes", [-1, (1, 2)])
def test_the_written_derivative_is_exact_to_second_order(x64, axes, masked, scaled):
  """Forward and reverse mode, to second order, in `x`, `sigma` (an array, as a learned
  one) and the layers' scale, against finite differences in float64."""
  field = resolve_field(axes, len(SHAPE), role="reduction_axes")
  mask = _mask() if masked else None
  sigma = jnp.full((SHAPE[0], 1, 1) if axes == (1, 2) else (SHAPE[0], SHAPE[1], 1), 0.3)
  if scaled:
    scale = jnp.asarray(np.random.default_rng(2).uniform(0.5, 1.5, (1, 1, SHAPE[-1])))
    check_grads(lambda x, s, g: _written(x, s, mask, g, field, None), (_x(), sigma, scale),
                order=2, modes=("fwd", "rev"))
  else:
    check_grads(lambda x, s: _written(x, s, mask, None, field, None), (_x(), sigma), order=2,
                modes=("fwd", "rev"))


def test_the_written_derivative_is_the_closed_form(x64):
  """With ``y = v g r`` (`g` the scale over the last axis): ``d/dx sum(w y) = r w g - v r^3
  E[w g v]``, ``d/dsigma = -sigma sum(w g v r^3)``, ``d/dg = sum(w v r)`` over the other
  axes; masked, under `vmap` with `axis_name` (the mapped axis one more reduced axis, its
  counts summed)."""
  x, w, mask = _x(), np.random.default_rng(1).normal(size=SHAPE), np.asarray(_mask())
  g = np.random.default_rng(2).uniform(0.5, 1.5, (1, SHAPE[-1]))  # one example's
  field = resolve_field((1,), 2, role="reduction_axes")

  def loss(x, sigma, g):
    y = jax.vmap(lambda xi, mi: _written(xi, sigma, mi, g, field, "i"), axis_name="i")(x, mask)
    return jnp.sum(y * w)

  gx, gs, gg = jax.grad(loss, (0, 1, 2))(x, jnp.asarray(0.3), jnp.asarray(g))
  v = np.where(mask, np.asarray(x), 0.0)
  n = mask.sum((0, 2), keepdims=True)
  r = 1 / np.sqrt((v * v).sum((0, 2), keepdims=True) / n + 0.3**2)
  wg = np.where(mask, w * g, 0)
  want_x = np.where(mask, r * wg - v * r**3 * (wg * v).sum((0, 2), keepdims=True) / n, 0.0)
  np.testing.assert_allclose(gx, want_x, rtol=1e-10, atol=1e-12)
  np.testing.assert_allclose(gs, -0.3 * (wg * v * r**3).sum(), rtol=1e-10)
  np.testing.assert_allclose(gg, (w * v * r).sum((0, 1))[None], rtol=1e-10)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("dtype", NARROW, ids=["bf16", "f16"])
def test_narrow_outputs_and_gradients_are_the_float32_copy_s_rounded(dtype, masked):
  """Output, input gradient (rounded to the narrow dtype once) and sigma's gradient (float32)
  as the float32 copy's, which takes JAX's derivative: one unit in the narrow dtype's last
  place, and float32 rounding for sigma's."""
  # w in the narrow dtype: the cotangent reaches the normalizer through the output's rounding,
  # whose transpose rounds it; so both programs see the same one.
  x, w = _x(dtype=dtype), _x(1, dtype, 0.0).astype(jnp.float32)
  mask = _mask() if masked else None

  def f(x, sigma, mask):
    return divnorm.rms_norm(x, reduction_axes=(1, 2), sigma=sigma, mask=mask)

  def grad(x):
    return jax.jit(jax.grad(lambda x, s, m: jnp.sum(f(x, s, m).astype(jnp.float32) * w),
                            (0, 1)))(x, jnp.float32(0.3), mask)

  ulp = float(jnp.finfo(dtype).eps)
  y, y32 = jax.jit(f)(x, 0.3, mask), jax.jit(f)(x.astype(jnp.float32), 0.3, mask)
  assert y.dtype == dtype
  np.testing.assert_allclose(np.float32(y), np.float32(y32.astype(dtype)), rtol=ulp, atol=1e-6)
  (gx, gs), (gx32, gs32) = grad(x), grad(x.astype(jnp.float32))
  assert gx.dtype == dtype and gs.dtype == jnp.float32
  np.testing.assert_allclose(np.float32(gx), np.float32(gx32), rtol=ulp, atol=1e-3 * ulp)
  np.testing.assert_allclose(gs, gs32, rtol=1e-5)


def _float32_copies_of_x(fn, *args) -> list[str]:
  """The compiled `fn(*args)`'s instructions that convert its bfloat16 input alone to
  float32: a copy of the input written to memory."""
  hlo = jax.jit(fn).lower(*args).compile().as_text()
  entry = hlo[hlo.index("\nENTRY"):]
  dims = ",".join(map(str, SHAPE))
  (x,) = re.findall(rf"(%\S+) = bf16\[{dims}\]\S* parameter\(", entry)
  return re.findall(rf"(%\S+) = f32\[{dims}\]\S* fusion\({re.escape(x)}\)", entry)


def test_no_float32_copy_of_the_input():
  """The forward (inference) and the forward+backward read the bfloat16 input in every
  kernel; JAX's derivative wrote a float32 copy for both (BENCHMARKS.md, "RMS norm's written
  derivative")."""
  if jax.default_backend() != "cpu":
    pytest.skip("the fusion of XLA's CPU backend")
  x = _x(dtype=jnp.bfloat16)
  w = jnp.asarray(np.random.default_rng(1).normal(size=SHAPE), jnp.float32)
  assert _float32_copies_of_x(divnorm.rms_norm, x) == []
  loss = lambda x, w: jnp.sum(divnorm.rms_norm(x).astype(jnp.float32) * w)  # noqa: E731
  assert _float32_copies_of_x(jax.grad(loss), x, w) == []


def test_the_written_derivative_is_for_the_cpu_alone():
  """A CUDA lowering (`jax.export`, no GPU needed) of the forward and its gradient holds no
  optimization barrier: a GPU keeps JAX's derivative and its one fused forward kernel."""
  from jax import export
  x = _x(dtype=jnp.bfloat16)
  grad = jax.jit(jax.grad(lambda x: jnp.sum(divnorm.rms_norm(x).astype(jnp.float32))))
  for fn in (jax.jit(divnorm.rms_norm), grad):
    barriers = {p: export.export(fn, platforms=[p])(x).mlir_module().count(
        "stablehlo.optimization_barrier") for p in ("cpu", "cuda")}
    assert barriers["cpu"] > 0 and barriers["cuda"] == 0, barriers


@pytest.mark.parametrize("features,written", [(8, False), (15, False), (16, True), (768, True)])
def test_a_layer_over_few_features_keeps_jax_s_derivative(features, written):
  """The RMSNorm layers (a scale) over fewer than 16 features take JAX's derivative on the
  CPU too (the written one took 1.2x its time there); the function keeps the written one."""
  import divnorm.linen as dl
  x = jnp.ones((4, 3, features), jnp.bfloat16)
  layer = dl.RMSNorm()
  params = layer.init(jax.random.key(0), x)
  grad = jax.jit(jax.grad(lambda p, x: jnp.sum(layer.apply(p, x).astype(jnp.float32)),
                          argnums=(0, 1)))
  count = grad.lower(params, x).as_text().count("optimization_barrier")
  assert (count > 0) == written, count
  fn = jax.jit(jax.grad(lambda x: jnp.sum(divnorm.rms_norm(x).astype(jnp.float32))))
  assert fn.lower(x).as_text().count("optimization_barrier") > 0


@pytest.mark.parametrize("mapped", ["shard_map", "explicit"])
def test_sharded_narrow_inputs_give_one_device_s_numbers(mapped):
  """The written derivative over sharded features: under `shard_map` with `axis_name` (the
  field's sums crossing devices), and under plain `jit` with the features sharded on an
  Explicit mesh. Output and gradient as on one device, to one bfloat16 unit (the sums'
  order differs across devices)."""
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P
  x = _x(dtype=jnp.bfloat16)
  w = _x(1, jnp.bfloat16, 0.0).astype(jnp.float32)
  auto = (jax.sharding.AxisType.Auto,) * 2 if mapped == "shard_map" else None
  mesh = jax.make_mesh((4, 2), ("data", "model"), axis_types=auto)
  spec = P("data", None, "model")

  def step(f):
    def loss(x):
      return jnp.sum(f(x).astype(jnp.float32) * w)
    return lambda x: (f(x), jax.grad(loss)(x))

  if mapped == "shard_map":
    local = lambda x: divnorm.rms_norm(x, axis_name="model")  # noqa: E731
    sharded = jax.shard_map(local, mesh=mesh, in_specs=spec, out_specs=spec)
    got = jax.jit(step(sharded))(x)
  else:
    with jax.set_mesh(mesh):
      got = jax.jit(step(divnorm.rms_norm))(jax.device_put(x, NamedSharding(mesh, spec)))
  want = jax.jit(step(divnorm.rms_norm))(x)
  ulp = float(jnp.finfo(jnp.bfloat16).eps)
  for g, v in zip(got, want, strict=True):
    assert g.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.float32(g), np.float32(v), rtol=ulp, atol=1e-3 * ulp)


@pytest.mark.loose_promotion  # the layers' output: bfloat16 input with float32 parameters
@pytest.mark.parametrize("kwargs", [
    {"use_scale": False}, {"param_dtype": jnp.bfloat16}, {"dtype": jnp.bfloat16},
    {"reduction_axes": (1, 2), "feature_axes": -1},  # r per example: flax's fold elsewhere
], ids=["no scale", "bf16 scale", "bf16 output", "per example"])
def test_the_rms_layer_variants_are_the_float32_copy_s_rounded(kwargs):
  """The linen layer's options through the written derivative (bfloat16 input): output and
  gradients as the float32 copy's (which takes JAX's derivative), the output to the
  result dtype's unit, the input's gradient to one bfloat16 unit, the scale's to its
  dtype's rounding (a bfloat16 scale's gradient: one unit of it)."""
  import divnorm.linen as dl
  module = dl.RMSNorm(**kwargs)
  x = _x(dtype=jnp.bfloat16)
  w = _x(1, jnp.bfloat16, 0.0).astype(jnp.float32)
  params = module.init(jax.random.key(0), x).get("params", {})
  params = jax.tree.map(lambda p: p + jnp.asarray(0.25, p.dtype), params)

  def run(x):
    y = module.apply({"params": params}, x)
    grads = jax.grad(lambda p, x: jnp.sum(module.apply({"params": p}, x).astype(
        jnp.float32) * w), argnums=(0, 1))(params, x)
    return y, grads

  (y, (gp, gx)), (y32, (gp32, gx32)) = jax.jit(run)(x), jax.jit(run)(x.astype(jnp.float32))
  ulp = lambda a: float(jnp.finfo(a.dtype).eps)  # noqa: E731
  np.testing.assert_allclose(np.float32(y), np.float32(y32.astype(y.dtype)), rtol=ulp(y),
                             atol=1e-6)
  np.testing.assert_allclose(np.float32(gx), np.float32(gx32), rtol=ulp(gx), atol=1e-3 * ulp(gx))
  for a, b in zip(jax.tree.leaves(gp), jax.tree.leaves(gp32), strict=True):
    assert a.dtype == b.dtype
    np.testing.assert_allclose(np.float32(a), np.float32(b), rtol=max(ulp(a), 1e-5),
                               atol=1e-6 * float(np.abs(np.float32(b)).max()))
