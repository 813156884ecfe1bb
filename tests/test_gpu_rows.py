"""Layer norm over the last axis on a GPU: `statistics.row_two_pass`, differentiated by JAX,
chosen where a program is lowered for CUDA (`core.box_normalized`). Its row tests also run
`statistics.short_row_two_pass` (XLA's CPU backend, short rows, the core's derivative;
which path takes it: tests/test_short_rows.py).

The fused path runs here on the CPU, called directly, against `two_pass` and the core's
written-out derivative; which path a call takes is read from its program lowered for CUDA
(``jax.export``, no GPU needed). Its kernel count on an H200 is in BENCHMARKS.md, "GPU".
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.test_util import check_grads

import divnorm
import divnorm.linen as dl
import divnorm.nnx as dnnx
from divnorm._src import core, statistics
from divnorm._src.fields import Field
from tests import reference as ref


def _x(shape, seed=0, offset=0.0):
  return (offset + np.random.default_rng(seed).normal(size=shape)).astype(np.float32)


def _row(x):
  return Field((x.ndim - 1,), ())


def _fused(x, sigma):
  """What a CUDA GPU runs for layer norm over the last axis: ``(y, v, stats)``."""
  a = _row(x)
  return core.formula(x, sigma, None, statistics.row_two_pass, a, a, "valid", None)


def _core(x, sigma, strategy=statistics.two_pass):
  """What every other backend runs: ``(y, v, stats)``, with the core's derivative."""
  a = _row(x)
  return core.normalized(x, sigma, None, strategy, a, a, "valid", None)


# The two row paths: a GPU's, and XLA's CPU backend's for short rows; their strategies and
# shifts (the row's maximum, its first entry).
ROW_PATHS = {"row_two_pass": _fused,
             "short_row_two_pass": functools.partial(_core,
                                                     strategy=statistics.short_row_two_pass)}
ROW_STRATEGIES = {
  "row_two_pass": (statistics.row_two_pass, lambda x: np.max(x, -1, keepdims=True)),
  "short_row_two_pass": (statistics.short_row_two_pass, lambda x: x[..., :1]),
}


# ---- two_pass's numbers, around the row's maximum -----------------------------------------

@pytest.mark.parametrize("path", sorted(ROW_STRATEGIES))
@pytest.mark.parametrize("shape", [(3, 1), (3, 2), (2, 5, 7), (64, 16), (4, 768)])
@pytest.mark.parametrize("offset", [0.0, 1e4, 1e6])
def test_row_strategies_give_two_pass_statistics(shape, offset, path):
  # Another shift (the row's maximum or first entry, not its first two entries' mean)
  # changes only the rounding: E[x] to float32's resolution at the offset, E[v^2] to a few
  # ulps.
  strategy, shift = ROW_STRATEGIES[path]
  x = jnp.asarray(_x(shape, offset=offset))
  a = _row(x)
  fused = strategy(x, a, a, border="valid")
  core_stats = statistics.two_pass(x, a, a, border="valid")
  np.testing.assert_allclose(fused.shift + fused.mean, core_stats.shift + core_stats.mean,
                             rtol=2e-7, atol=1e-6)
  np.testing.assert_allclose(fused.var, core_stats.var, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(fused.shift, shift(np.asarray(x)))
  np.testing.assert_allclose(fused.pooled, np.sum(np.asarray(x) - shift(np.asarray(x)), -1,
                                                  keepdims=True), rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(ROW_PATHS[path](x, jnp.float32(0.1))[0],
                             _core(x, jnp.float32(0.1))[0],
                             atol=2e-6)


@pytest.mark.parametrize("path", sorted(ROW_PATHS))
def test_row_paths_keep_non_finite_rows_to_themselves(path):
  # No guard on the shift: a row holding inf or NaN is NaN, as on the core's path, and no
  # other row reads its maximum (or first entry).
  x = _x((5, 6))
  x[1, 0], x[2, 3], x[4] = np.inf, np.nan, -np.inf
  y = np.asarray(ROW_PATHS[path](jnp.asarray(x), jnp.float32(0.1))[0])
  core_y = np.asarray(_core(jnp.asarray(x), jnp.float32(0.1))[0])
  assert np.isfinite(y[[0, 3]]).all() and np.isnan(y[[1, 2, 4]]).all()
  assert np.isnan(core_y[[1, 2, 4]]).all()
  np.testing.assert_allclose(y[[0, 3]], core_y[[0, 3]], atol=2e-6)


@pytest.mark.parametrize("path, shape", [
    *(("row_two_pass", s) for s in [(64, 768), (16, 4096), (256, 32)]),
    *(("short_row_two_pass", s) for s in [(256, 16), (64, statistics.PLAIN_MIN_FIELD - 1),
                                          (128, 3)])])
@pytest.mark.parametrize("offset", [0.0, 1e4, 1e6, 1e7])
def test_row_paths_are_accurate_at_large_offsets(path, shape, offset):
  # Float32 against float64, within 4 ulps of the row's largest output: measured at most
  # 2.9e-7 of it (two_pass: 2.0e-7), with or without the outlier; flax's two-pass,
  # unshifted, is off by 0.15 at 1e6 (BENCHMARKS.md, "Layer norm over the last axis, by
  # form"). The outlier is the short path's shift itself (its first entry).
  x = _x(shape, seed=1, offset=offset)
  x[0, 0] = offset + 50.0  # an outlier: the row's maximum is far from its mean
  y = np.asarray(jax.jit(ROW_PATHS[path])(jnp.asarray(x), jnp.float32(1e-3))[0], np.float64)
  x = x.astype(np.float64)
  v = x - x.mean(-1, keepdims=True)
  expected = v / np.sqrt(1e-6 + (v * v).mean(-1, keepdims=True))
  # (At 1e7 some rows of 3 round to one value: constant, their outputs 0.)
  scale = np.finfo(np.float32).eps * np.maximum(np.abs(expected).max(-1, keepdims=True), 1)
  assert (np.abs(y - expected) / scale).max() < 4


# ---- JAX's derivative of the fused path is the core's ------------------------------------

@pytest.mark.parametrize("path", sorted(ROW_PATHS))
@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_row_paths_derivative_matches_the_core(offset, path):
  fused = ROW_PATHS[path]
  n = 33 if path == "row_two_pass" else 9  # short rows: fewer than PLAIN_MIN_FIELD
  x = jnp.asarray(_x((6, n), seed=2, offset=offset))
  expected_y, _ = ref.normalize(np.asarray(x), (1,), sigma=0.3)
  np.testing.assert_allclose(fused(x, jnp.float32(0.3))[0], expected_y, atol=2e-6)
  w = jnp.asarray(_x((6, n), seed=3))
  sigma = jnp.full((6, 1), 0.3, jnp.float32)

  def loss(path):
    def f(x, s):
      y, v, _ = path(x, s)
      return jnp.sum(y * w) + jnp.sum(v * w) ** 2 / 100
    return f

  for got, want in zip(jax.grad(loss(fused), argnums=(0, 1))(x, sigma),
                       jax.grad(loss(_core), argnums=(0, 1))(x, sigma), strict=True):
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)


def test_fused_rows_gradient_against_float64(x64):
  x = _x((3, 9), seed=4).astype(np.float64)
  check_grads(lambda x: _fused(x, jnp.float64(0.2))[0], (jnp.asarray(x),), order=2,
              modes=("rev",))


@pytest.mark.parametrize("path", sorted(ROW_PATHS))
def test_row_paths_have_finite_gradients_at_sigma_zero_and_nan_at_overflow(path):
  fused = ROW_PATHS[path]
  x = jnp.ones((3, 8), jnp.float32)  # constant rows: v = 0, E[v^2] = 0
  g = jax.grad(lambda x, s: jnp.sum(fused(x, s)[0] * 2.0), argnums=(0, 1))(x, jnp.float32(0))
  assert all(np.isfinite(t).all() for t in g)
  spread = jnp.asarray([[0.0, 3e38, -3e38, 0.0]], jnp.float32)  # E[v^2] overflows float32
  assert np.isnan(np.asarray(fused(spread, jnp.float32(0))[0])).all()


# ---- which path a program takes, read from its lowering ----------------------------------

def _lowered(f, *args, platform):
  return jax.export.export(jax.jit(f), platforms=(platform,))(*args).mlir_module()


def _takes_fused_rows(f, *args, platform="cuda"):
  # The core's path keeps x - k behind optimization barriers (`statistics.copies`); the
  # fused path has none.
  return "optimization_barrier" not in _lowered(f, *args, platform=platform)


LAST_AXIS = {
  "layer_norm two-pass": lambda x: divnorm.layer_norm(x, reduction_axes=-1, sigma=0.1),
  "layer_norm one-pass": lambda x: divnorm.layer_norm(x, reduction_axes=-1, sigma=0.1,
                                                      fast_variance=True),
  "normalize": lambda x: divnorm.normalize(x, (2,), sigma=0.1),
  "gradient": jax.grad(lambda x: jnp.sum(divnorm.layer_norm(x, reduction_axes=-1) ** 3)),
  "vmap": jax.vmap(lambda x: divnorm.layer_norm(x, reduction_axes=-1, sigma=0.1)),
}
OTHER_FIELDS = {
  "over (1, 2)": lambda x: divnorm.layer_norm(x, reduction_axes=(1, 2), sigma=0.1),
  "first axis": lambda x: divnorm.normalize(x, (0,), sigma=0.1),
  "masked": lambda x: divnorm.layer_norm(x, reduction_axes=-1, mask=x > 0),
  "windowed": lambda x: divnorm.normalize(x, {2: 3}, sigma=0.1),
  "grouped": lambda x: divnorm.group_norm(x, num_groups=2, sigma=0.1),
  "mapped": jax.vmap(lambda x: divnorm.layer_norm(x, reduction_axes=(), sigma=0.1,
                                                   axis_name="i"), axis_name="i"),
}


@pytest.mark.parametrize("name", sorted(LAST_AXIS))
def test_the_last_axis_takes_fused_rows_on_cuda_only(name):
  # Rows of `PLAIN_MIN_FIELD` entries: shorter ones take `short_row_two_pass` on XLA's CPU
  # backend, which holds no barrier either (tests/test_short_rows.py).
  x = jnp.asarray(_x((2, 3, statistics.PLAIN_MIN_FIELD)))
  assert _takes_fused_rows(LAST_AXIS[name], x)
  assert not _takes_fused_rows(LAST_AXIS[name], x, platform="cpu")


@pytest.mark.parametrize("name", sorted(OTHER_FIELDS))
def test_other_fields_keep_the_core_on_cuda(name):
  assert not _takes_fused_rows(OTHER_FIELDS[name], jnp.asarray(_x((2, 3, 8))))


def test_rows_longer_than_xla_fuses_keep_the_core_on_cuda():
  # Past 2**14 entries XLA's GPU backend no longer makes a row one kernel, and the fused
  # path takes more kernels than the core's (compiled for an H200: BENCHMARKS.md, "GPU").
  f = functools.partial(divnorm.layer_norm, reduction_axes=-1, sigma=0.1)
  assert _takes_fused_rows(f, jnp.zeros((2, core.FUSED_ROW_LIMIT)))
  assert not _takes_fused_rows(f, jnp.zeros((2, core.FUSED_ROW_LIMIT + 8)))


def test_the_layer_norm_modules_take_fused_rows_on_cuda():
  x = jnp.asarray(_x((2, 3, 8)))
  variables = dl.LayerNorm().init(jax.random.key(0), x)
  assert _takes_fused_rows(lambda v, x: dl.LayerNorm().apply(v, x), variables, x)
  graph, state = nnx.split(dnnx.LayerNorm(8, rngs=nnx.Rngs(0)))
  assert _takes_fused_rows(lambda s, x: nnx.merge(graph, s)(x), state, x)
  flax_variables = nn.LayerNorm().init(jax.random.key(0), x)
  np.testing.assert_allclose(dl.LayerNorm().apply(flax_variables, x),
                             nn.LayerNorm().apply(flax_variables, x), rtol=1e-5, atol=1e-5)


def test_layers_larger_than_the_layer_limit_keep_the_core_on_cuda():
  # Under a trained scale the fused path's gradient writes y out; past 2**23 entries the
  # core's path was faster on an H200 (`core.LAYER_FUSED_SIZE`). Functions still fuse.
  # Shapes only (`ShapeDtypeStruct`): nothing of this size is allocated.
  def spec(n):
    return jax.ShapeDtypeStruct((n // 1024, 1024), jnp.float32)

  small, large = spec(core.LAYER_FUSED_SIZE), spec(core.LAYER_FUSED_SIZE + 1024)
  params = dl.LayerNorm().init(jax.random.key(0), jnp.zeros((1, 1024)))
  graph, state = nnx.split(dnnx.LayerNorm(1024, rngs=nnx.Rngs(0)))
  layers = {"linen": (lambda v, x: dl.LayerNorm().apply(v, x), params),
            "nnx": (lambda s, x: nnx.merge(graph, s)(x), state)}
  for name, (f, p) in layers.items():
    assert _takes_fused_rows(f, p, small), name
    assert not _takes_fused_rows(f, p, large), name
  assert _takes_fused_rows(functools.partial(divnorm.layer_norm, reduction_axes=-1), large)


def test_a_program_lowered_for_cuda_and_cpu_runs_the_core_here():
  x = jnp.asarray(_x((4, 16), offset=1e4))
  f = functools.partial(divnorm.layer_norm, reduction_axes=-1, sigma=0.1)
  exported = jax.export.export(jax.jit(f), platforms=("cuda", "cpu"))(x)
  np.testing.assert_array_equal(exported.call(x), jax.jit(f)(x))
