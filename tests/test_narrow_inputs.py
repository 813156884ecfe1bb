"""Inputs narrower than float32 (bfloat16, float16): float32 statistics, read in their own dtype.

The box strategies and the layers take `x` in its own dtype and convert it inside every
kernel that reads it (`statistics.widened`), where a float32 copy made once would be written
to memory for all of them. The numbers must be those of that float32 copy: the statistics to
float32 rounding (sums or squares taken in bfloat16 would be off by about 1e-3), the outputs
and gradients to the input dtype's. On XLA's CPU backend the compiled programs must write no
float32 array of the input's size.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import divnorm
import divnorm.linen as dl
import divnorm.nnx as dnnx
from divnorm._src.core import normalize_factors
from divnorm._src.fields import Field, grouped_field, resolve_field

# At least 2^16 entries, fields of at least 32: one-pass takes its sums without a shift here.
SHAPE = (8, 16, 16, 64)
FIELDS = {
    "layer": Field((1, 2, 3), ()),
    "batch": Field((0, 1, 2), ()),
    "instance": Field((1, 2), ()),
    "group": grouped_field((1, 2), 3, 16, SHAPE),
    "group, channels first": grouped_field((2, 3), 1, 4, SHAPE),
    "channel windows": resolve_field({1: None, 2: None, 3: 5}, 4),  # corrected two-pass
    "spatial windows": resolve_field({1: 3, 2: 3}, 4),
}
WHOLE = ("layer", "batch", "instance", "group", "group, channels first")
NARROW = [jnp.bfloat16, jnp.float16]


def _x(dtype, offset=0.3, seed=0):
  x = np.random.default_rng(seed).normal(size=SHAPE) * 2 + offset
  return jnp.asarray(x, dtype)


def _mask():
  return jnp.asarray(np.random.default_rng(5).random(SHAPE) < 0.8)


def _modes(name):
  return [False, True] if name in WHOLE or name == "channel windows" else [False]


CASES = [(name, fast, masked) for name in FIELDS for fast in _modes(name)
         for masked in (False, True)]


@pytest.mark.parametrize("dtype", NARROW, ids=["bf16", "f16"])
@pytest.mark.parametrize("offset", [0.3, 300.0])  # 300: one-pass's shifted sums (the cond)
@pytest.mark.parametrize(("name", "fast", "masked"), CASES)
def test_statistics_are_those_of_the_float32_copy(name, fast, masked, offset, dtype):
  x = _x(dtype, offset)
  mask = _mask() if masked else None
  run = jax.jit(lambda x, mask: normalize_factors(x, FIELDS[name], sigma=0.1, mask=mask,
                                                  fast_variance=fast))
  (y, v, r, stats), (y32, v32, r32, stats32) = run(x, mask), run(x.astype(jnp.float32), mask)
  assert y.dtype == r.dtype == stats.var.dtype == jnp.float32
  # Programs that differ in fusion round differently: a few float32 ulps.
  np.testing.assert_allclose(r, r32, rtol=4e-6)
  np.testing.assert_allclose(stats.shift + stats.mean, stats32.shift + stats32.mean,
                             rtol=4e-6, atol=4e-6 * offset)
  np.testing.assert_allclose(v, v32, rtol=4e-6, atol=4e-6 * offset)
  np.testing.assert_allclose(y, y32, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("name", "fast", "masked"), CASES)
def test_outputs_and_gradients_are_the_float32_copy_s_rounded(name, fast, masked,
                                                              dtype=jnp.bfloat16):
  # The cotangent in the narrow dtype: the bfloat16 program's gradient reaches the
  # normalizer through the output's rounding, whose transpose rounds the cotangent.
  x, w = _x(dtype), _x(dtype, 0.0, seed=1).astype(jnp.float32)
  mask = _mask() if masked else None

  def f(x, mask):  # the mask an argument: no constant for XLA to fold
    return divnorm.normalize(x, FIELDS[name], sigma=0.1, mask=mask, fast_variance=fast)

  def grad(x):
    return jax.jit(jax.grad(lambda x, mask: jnp.sum(f(x, mask).astype(jnp.float32) * w)))(
        x, mask)

  y, y32 = jax.jit(f)(x, mask), jax.jit(f)(x.astype(jnp.float32), mask)
  assert y.dtype == dtype
  # One unit in the last place of the narrow dtype: the float32 results round to it, and
  # differ by float32 rounding (programs fused differently) at the rounding boundaries.
  ulp = float(jnp.finfo(dtype).eps)
  np.testing.assert_allclose(np.float32(y), np.float32(y32.astype(dtype)), rtol=ulp, atol=1e-6)
  g, g32 = grad(x), grad(x.astype(jnp.float32))
  assert g.dtype == dtype
  np.testing.assert_allclose(np.float32(g), np.float32(g32), rtol=ulp, atol=1e-3 * ulp)


def _float32_copies_of_x(fn, *args) -> list[str]:
  """The instructions of the compiled `fn(*args)` that convert its one bfloat16 parameter of
  `SHAPE` (the input) alone to float32: a copy of the input written to memory."""
  hlo = jax.jit(fn).lower(*args).compile().as_text()
  entry = hlo[hlo.index("\nENTRY"):]
  dims = ",".join(map(str, SHAPE))
  (x,) = re.findall(rf"(%\S+) = bf16\[{dims}\]\S* parameter\(", entry)
  shape = re.escape(f"f32[{dims}]")
  return re.findall(rf"(%\S+) = {shape}\S* fusion\({re.escape(x)}\)", entry)


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("name", WHOLE)
def test_the_functions_write_no_float32_copy_of_the_input(name, fast):
  """Forward+backward in bfloat16 over whole and grouped axes (a CPU program): every kernel
  converts the input it reads; before, one kernel wrote a float32 copy for all of them.
  (A bfloat16 cotangent is still converted once for the derivative's sums: JAX's transpose
  of the output's conversion makes one array of it.)"""
  if jax.default_backend() != "cpu":
    pytest.skip("the fusion of XLA's CPU backend")
  x, w = _x(jnp.bfloat16), _x(jnp.float32, 0.0, seed=1)

  def loss(x, w):
    y = divnorm.normalize(x, FIELDS[name], sigma=0.1, fast_variance=fast)
    return jnp.sum(y.astype(jnp.float32) * w)

  assert _float32_copies_of_x(jax.grad(loss), x, w) == []


def _assert_rounded_once(grad, x) -> None:
  """``grad(x) = (d params, d x)`` of bfloat16 `x` is that of its float32 copy: `d x` rounded
  to bfloat16 once (one ulp), `d params` to float32 rounding: relative 1e-5, or 1e-6 of the
  largest entry where a parameter's sum over 2048 positions cancels far below its terms (the
  two programs sum in different orders; each term is float32-rounded, ~6e-8 of it)."""
  (gp, gx), (gp32, gx32) = grad(x), grad(x.astype(jnp.float32))
  assert gx.dtype == jnp.bfloat16
  ulp = float(jnp.finfo(jnp.bfloat16).eps)
  np.testing.assert_allclose(np.float32(gx), np.float32(gx32), rtol=ulp, atol=1e-3 * ulp)
  for a, b in zip(jax.tree.leaves(gp), jax.tree.leaves(gp32), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * float(np.abs(b).max()))


LAYERS = {
    "LayerNorm over (H, W, C)": lambda fast: dl.LayerNorm(reduction_axes=(1, 2, 3),
                                                          use_fast_variance=fast),
    "LayerNorm over the last axis": lambda fast: dl.LayerNorm(use_fast_variance=fast),
    "GroupNorm": lambda fast: dl.GroupNorm(16, use_fast_variance=fast),
    "InstanceNorm": lambda fast: dl.InstanceNorm(use_fast_variance=fast),
    "BatchNorm": lambda fast: dl.BatchNorm(use_running_average=False, use_fast_variance=fast),
    "RMSNorm": lambda fast: dl.RMSNorm(use_fast_variance=fast),  # `rms.rms_normalized`
}


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("name", LAYERS)
def test_the_layers_write_no_float32_copy_of_the_input(name, fast):
  """The linen layers, scale and bias included (the affine step reads its own copy). Layer
  norm over the last axis too since the derivative reads its own ``r`` and the output its
  own input (BENCHMARKS.md, "One broadcast of r"); before, XLA shared both and wrote them in
  float32. (RMSNorm's forward: `test_the_rms_layers_forward_writes_no_float32_copy`.)"""
  if jax.default_backend() != "cpu":
    pytest.skip("the fusion of XLA's CPU backend")
  module = LAYERS[name](fast)
  x, w = _x(jnp.bfloat16), _x(jnp.float32, 0.0, seed=1)
  variables = module.init(jax.random.key(0), x)

  def loss(params, x, w):
    y = module.apply({**variables, "params": params}, x, mutable=["batch_stats"])[0]
    return jnp.sum(y.astype(jnp.float32) * w)

  grad = jax.grad(loss, argnums=(0, 1))
  assert _float32_copies_of_x(grad, variables["params"], x, w) == []


@pytest.mark.loose_promotion  # nnx's promote_dtype: bfloat16 input with float32 parameters
@pytest.mark.parametrize("api", ["linen", "nnx"])
def test_the_rms_layers_forward_writes_no_float32_copy(api):
  """RMSNorm's forward (inference) reads a bfloat16 input in every kernel: its sum of squares
  reads a copy of its own (`rms.rms_normalized`), where XLA wrote a float32 copy for it
  (the forward took 1.35x flax's time, 0.56x since). Forward+backward:
  `test_the_layers_write_no_float32_copy_of_the_input`."""
  if jax.default_backend() != "cpu":
    pytest.skip("the fusion of XLA's CPU backend")
  x = _x(jnp.bfloat16)
  if api == "linen":
    module = dl.RMSNorm()
    variables = module.init(jax.random.key(0), x)
    assert _float32_copies_of_x(lambda v, x: module.apply(v, x), variables, x) == []
  else:
    graphdef, state = nnx.split(dnnx.RMSNorm(SHAPE[-1], rngs=nnx.Rngs(0)))
    assert _float32_copies_of_x(lambda s, x: nnx.merge(graphdef, s)(x), state, x) == []


def test_the_rms_layers_written_derivative_is_for_the_cpu_alone():
  """The copies above (`rms.rms_normalized`) are lowered for XLA's CPU backend only: a CUDA
  lowering (`jax.export`, no GPU needed) of the forward and of the forward+backward holds
  no optimization barrier, so a GPU keeps its one fused forward kernel."""
  from jax import export
  module, x = dl.RMSNorm(), _x(jnp.bfloat16)
  variables = module.init(jax.random.key(0), x)
  apply = jax.jit(lambda v, x: module.apply(v, x))
  grad = jax.jit(jax.grad(lambda v, x: jnp.sum(module.apply(v, x)), argnums=(0, 1)))
  for fn in (apply, grad):
    barriers = {p: export.export(fn, platforms=[p])(variables, x).mlir_module().count(
        "stablehlo.optimization_barrier") for p in ("cpu", "cuda")}
    assert barriers["cpu"] > 0 and barriers["cuda"] == 0, barriers


@pytest.mark.loose_promotion  # the layers' output: bfloat16 input with float32 parameters
@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("name", LAYERS)
def test_the_layers_gradients_are_the_float32_copy_s_rounded_once(name, fast):
  """The layers read ``x - k`` themselves for the affine step as well as through the core:
  both cotangents reach `x` in float32 and are rounded to bfloat16 once. (Rounded apart and
  then added, as they were in a first version, they were off by up to 100% where the two
  nearly cancel.)"""
  module = LAYERS[name](fast)
  x, w = _x(jnp.bfloat16), _x(jnp.bfloat16, 0.0, seed=1).astype(jnp.float32)
  variables = module.init(jax.random.key(0), x)
  params = jax.tree.map(lambda p: p + 0.1 * np.arange(p.size).reshape(p.shape) / p.size,
                        variables["params"])

  @jax.jit
  def grad(x):
    def loss(params, x):
      y = module.apply({**variables, "params": params}, x, mutable=["batch_stats"])[0]
      return jnp.sum(y.astype(jnp.float32) * w)
    return jax.grad(loss, argnums=(0, 1))(params, x)

  _assert_rounded_once(grad, x)


NNX_LAYERS = {
    "LayerNorm over (H, W, C)": lambda fast, rngs: dnnx.LayerNorm(
        SHAPE[-1], reduction_axes=(1, 2, 3), use_fast_variance=fast, rngs=rngs),
    "GroupNorm": lambda fast, rngs: dnnx.GroupNorm(SHAPE[-1], num_groups=16,
                                                   use_fast_variance=fast, rngs=rngs),
    "BatchNorm": lambda fast, rngs: dnnx.BatchNorm(SHAPE[-1], use_running_average=False,
                                                   use_fast_variance=fast, rngs=rngs),
    "RMSNorm": lambda fast, rngs: dnnx.RMSNorm(SHAPE[-1], use_fast_variance=fast, rngs=rngs),
}


@pytest.mark.loose_promotion  # flax's promote_dtype of bfloat16 with float32 parameters
@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("name", NNX_LAYERS)
def test_the_nnx_layers_write_no_float32_copy_of_the_input(name, fast):
  """flax.nnx's promotion makes bfloat16 input float32 with float32 parameters (the output
  too): the layers keep that, and read the input in bfloat16 all the same."""
  if jax.default_backend() != "cpu":
    pytest.skip("the fusion of XLA's CPU backend")
  graph, state = nnx.split(NNX_LAYERS[name](fast, nnx.Rngs(0)))
  x, w = _x(jnp.bfloat16), _x(jnp.float32, 0.0, seed=1)

  def loss(state, x, w):
    y = nnx.merge(graph, state)(x)
    assert y.dtype == jnp.float32  # flax's promotion
    return jnp.sum(y * w)

  assert _float32_copies_of_x(jax.grad(loss, argnums=(0, 1)), state, x, w) == []


def _equinox_layer(make):
  """``(loss(params, x, w), params)`` of `make()`'s divnorm.equinox layer over the examples
  of `SHAPE` under ``vmap`` (channels first: 16 channels of 16x64), its state passed."""
  eqx = pytest.importorskip("equinox")
  layer, state = eqx.nn.make_with_state(make)()
  params, static = eqx.partition(layer, eqx.is_inexact_array)

  def loss(params, x, w):
    one = eqx.combine(params, static)
    fresh = jax.tree.map(jnp.asarray, state)  # equinox's state is used once
    y = jax.vmap(lambda e: one(e, fresh)[0], axis_name="batch")(x)
    return jnp.sum(y.astype(jnp.float32) * w)
  return loss, params


def _haiku_layer(make, params_dtype, **call):
  """As `_equinox_layer`, for divnorm.haiku's `make()` (channels last), its parameters
  created in `params_dtype` (haiku's: the input's dtype at ``init``)."""
  hk = pytest.importorskip("haiku")
  f = hk.transform_with_state(lambda x: make()(x, **call))
  params, state = f.init(jax.random.key(0), _x(params_dtype))

  def loss(params, x, w):
    return jnp.sum(f.apply(params, state, None, x)[0].astype(jnp.float32) * w)
  return loss, params


def _linen_layer(module):
  """As `_equinox_layer`, for a divnorm.linen layer in training (channels last)."""
  variables = module.init(jax.random.key(0), _x(jnp.float32))

  def loss(params, x, w):
    y = module.apply({**variables, "params": params}, x, mutable=["batch_stats"])[0]
    return jnp.sum(y.astype(jnp.float32) * w)
  return loss, variables["params"]


def _nnx_layer(layer):
  """As `_equinox_layer`, for a divnorm.nnx layer (channels last)."""
  graph, state = nnx.split(layer)

  def loss(state, x, w):
    return jnp.sum(nnx.merge(graph, state)(x).astype(jnp.float32) * w)
  return loss, state


def _other_layers():
  """The equinox and haiku layers whose affine parameters are per channel, the linen layer
  that mixes two normalizations of one input, and divisive norm with an affine step. (Left
  out as in
  `test_the_layers_write_no_float32_copy_of_the_input`: equinox's LayerNorm, whose weight
  has the example's shape, its gradient summed over the batch axis alone.)"""
  from divnorm import equinox as dqx
  from divnorm import haiku as dhk
  return {
      "equinox GroupNorm": lambda _: _equinox_layer(lambda: dqx.GroupNorm(4, 16)),
      "equinox BatchNorm, batch": lambda _: _equinox_layer(
          lambda: dqx.BatchNorm(16, "batch", mode="batch")),
      "equinox BatchNorm, ema": lambda _: _equinox_layer(
          lambda: dqx.BatchNorm(16, "batch", mode="ema")),
      "equinox RMSNorm": lambda _: _equinox_layer(lambda: dqx.RMSNorm((16, 16, 64))),
      "haiku LayerNorm": lambda dtype: _haiku_layer(
          lambda: dhk.LayerNorm((1, 2, 3), True, True), dtype),
      "haiku GroupNorm": lambda dtype: _haiku_layer(lambda: dhk.GroupNorm(16), dtype),
      "haiku RMSNorm": lambda dtype: _haiku_layer(lambda: dhk.RMSNorm(-1), dtype),
      "haiku BatchNorm": lambda dtype: _haiku_layer(
          lambda: dhk.BatchNorm(True, True, 0.9), dtype, is_training=True),
      "haiku DivisiveNorm": lambda dtype: _haiku_layer(
          lambda: dhk.DivisiveNorm((3, 3), sigma=0.5), dtype),
      "haiku DivisiveNorm, affine": lambda dtype: _haiku_layer(
          lambda: dhk.DivisiveNorm((3, 3), sigma=0.5, create_scale=True, create_offset=True),
          dtype),
      "haiku Normalize": lambda dtype: _haiku_layer(
          lambda: dhk.Normalize({1: 3, 2: 3, 3: None}, sigma=0.5), dtype),
      "haiku BatchInstanceNorm": lambda dtype: _haiku_layer(
          lambda: dhk.BatchInstanceNorm(True, True, 0.9, rho_init=0.5), dtype,
          is_training=True),
      "linen DivisiveNorm, affine": lambda _: _linen_layer(
          dl.DivisiveNorm((3, 3), sigma=0.5, use_scale=True, use_bias=True)),
      "linen Normalize, affine": lambda _: _linen_layer(
          dl.Normalize({1: 3, 2: 3, 3: None}, sigma=0.5, use_scale=True, use_bias=True)),
      "nnx DivisiveNorm, affine": lambda _: _nnx_layer(dnnx.DivisiveNorm(
          SHAPE[-1], summation_window=(3, 3), sigma=0.5, use_scale=True, use_bias=True,
          rngs=nnx.Rngs(0))),
      "linen BatchInstanceNorm": lambda _: _linen_layer(
          dl.BatchInstanceNorm(False, rho_init=0.5, use_scale=True, use_bias=True)),
      "linen BatchRenorm": lambda _: _linen_layer(dl.BatchRenorm(False)),
      "nnx BatchInstanceNorm": lambda _: _nnx_layer(dnnx.BatchInstanceNorm(
          SHAPE[-1], rho_init=0.5, rngs=nnx.Rngs(0))),
  }


OTHER_LAYERS = ["equinox GroupNorm", "equinox BatchNorm, batch", "equinox BatchNorm, ema",
                "equinox RMSNorm",
                "haiku LayerNorm", "haiku GroupNorm", "haiku RMSNorm", "haiku BatchNorm",
                "haiku DivisiveNorm",
                "haiku DivisiveNorm, affine", "haiku Normalize", "linen DivisiveNorm, affine",
                "linen Normalize, affine", "nnx DivisiveNorm, affine", "linen BatchInstanceNorm",
                "linen BatchRenorm", "nnx BatchInstanceNorm", "haiku BatchInstanceNorm"]


@pytest.mark.loose_promotion  # equinox's float32 parameters with bfloat16 input
@pytest.mark.parametrize("name", [n for n in OTHER_LAYERS if n != "equinox BatchNorm, ema"])
def test_the_equinox_and_haiku_layers_write_no_float32_copy_of_the_input(name):
  """divnorm.equinox under ``vmap`` and divnorm.haiku (its parameters in bfloat16, as
  haiku creates them for bfloat16 input), scale and bias included; batch-instance norm,
  whose two halves read one input; layers with an affine step after a function, which ask
  it for an unrounded output (`dtype`). (Left out: equinox's ``mode="ema"``, which
  normalizes with the running statistics, whose ``x - mean`` reads the float32 input: read
  through copies of its own there, BatchNorm in evaluation took 1.28-1.33x flax's time.)"""
  if jax.default_backend() != "cpu":
    pytest.skip("the fusion of XLA's CPU backend")
  loss, params = _other_layers()[name](jnp.bfloat16)
  x, w = _x(jnp.bfloat16), _x(jnp.float32, 0.0, seed=1)
  assert _float32_copies_of_x(jax.grad(loss, argnums=(0, 1)), params, x, w) == []


@pytest.mark.loose_promotion  # float32 parameters with bfloat16 input
@pytest.mark.parametrize(
    "name", OTHER_LAYERS)
def test_the_equinox_and_haiku_layers_gradients_are_the_float32_copy_s_rounded_once(name):
  """As `test_the_layers_gradients_are_the_float32_copy_s_rounded_once`, with float32
  parameters: the gradient of bfloat16 `x` is the float32 copy's, rounded once."""
  loss, params = _other_layers()[name](jnp.float32)
  params = jax.tree.map(lambda p: p + 0.1 * np.arange(p.size).reshape(p.shape) / p.size,
                        params)
  w = _x(jnp.bfloat16, 0.0, seed=1).astype(jnp.float32)
  grad = jax.jit(lambda x: jax.grad(loss, argnums=(0, 1))(params, x, w))
  x = _x(jnp.bfloat16)
  _assert_rounded_once(grad, x)


def _masked_rms(api, shape, dtype=None):
  """``(apply(params, x, mask), params)`` of a linen or nnx RMSNorm over `shape`'s last axis,
  its scale made distinct per feature."""
  x = jnp.zeros(shape, jnp.bfloat16)
  if api == "linen":
    module = dl.RMSNorm(dtype=dtype)
    params = module.init(jax.random.key(0), x)["params"]
    apply = lambda p, x, mask: module.apply({"params": p}, x, mask=mask)  # noqa: E731
  else:
    graphdef, params = nnx.split(dnnx.RMSNorm(shape[-1], dtype=dtype, rngs=nnx.Rngs(0)))
    apply = lambda p, x, mask: nnx.merge(graphdef, p)(x, mask=mask)  # noqa: E731
  return apply, jax.tree.map(
      lambda p: p + 0.1 * np.arange(p.size).reshape(p.shape) / p.size, params)


@pytest.mark.loose_promotion  # flax's promote_dtype of bfloat16 with float32 parameters
@pytest.mark.parametrize("api", ["linen", "nnx"])
def test_masked_rms_layers_take_the_written_derivative(api):
  """A masked RMSNorm of a bfloat16 input takes RMS norm's written derivative too
  (`rms.RmsRead` carries the mask), each copy of `v` selected by a copy of the mask. Before,
  JAX differentiated it: a training step of `RMSNorm(dtype=bfloat16)` on 8x512x768 kept 72
  MiB of temporaries (six float32 arrays of the input's size; flax's: 36), then 60 with the
  written derivative and one selected `v` shared by its consumers, and 48 now (BENCHMARKS.md,
  "Masked RMS norm of a narrower input"). The gradients are still the float32 copy's,
  rounded once."""
  apply, params = _masked_rms(api, SHAPE)
  x, mask = _x(jnp.bfloat16), _mask()
  w = _x(jnp.bfloat16, 0.0, seed=1).astype(jnp.float32)
  grad = jax.jit(jax.grad(lambda p, x: jnp.sum(apply(p, x, mask).astype(jnp.float32) * w),
                          argnums=(0, 1)))
  _assert_rounded_once(lambda x: grad(params, x), x)
  if jax.default_backend() == "cpu":  # compiled, not run
    shape = (8, 512, 768)
    apply, params = _masked_rms(api, shape, jnp.bfloat16)
    x, mask = jnp.zeros(shape, jnp.bfloat16), jnp.zeros(shape, bool)
    step = jax.jit(jax.value_and_grad(
        lambda p, x, m: jnp.sum(jnp.square(apply(p, x, m).astype(jnp.float32))),
        argnums=(0, 1))).lower(params, x, mask).compile()
    arrays = step.memory_analysis().temp_size_in_bytes / (x.size * 4)  # float32 input-sized
    assert arrays < 4.5, arrays
