"""Layer norm over a short last axis on XLA's CPU backend: `statistics.short_row_two_pass`,
chosen where a program is lowered (`core.box_normalized`) for rows of fewer than
`statistics.PLAIN_MIN_FIELD` entries, with the core's written derivative.

Which path a call takes is read from its lowering (``jax.export``): in float32 the short-row
path holds no optimization barrier in the forward, every other path on XLA's CPU backend
does (`statistics.copies`). Its ratios are in BENCHMARKS.md, "Short rows".
"""

import functools
import re

import equinox as eqx
import flax.linen as nn
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.test_util import check_grads

import divnorm
import divnorm.equinox as deqx
import divnorm.haiku as dhk
import divnorm.linen as dl
import divnorm.nnx as dnnx
from divnorm._src import statistics
from tests.test_gpu_rows import LAST_AXIS, OTHER_FIELDS, ROW_PATHS, _takes_fused_rows, _x

SHORT = statistics.PLAIN_MIN_FIELD - 1
_short = ROW_PATHS["short_row_two_pass"]  # the core's `normalized` with the short-row strategy
# The short-row path holds no barrier in the forward either: read from a CPU lowering.
_takes_short_rows = functools.partial(_takes_fused_rows, platform="cpu")


def _on_cpu():
  if jax.default_backend() != "cpu":
    pytest.skip("the path of XLA's CPU backend")


# ---- numbers ----------------------------------------------------------------------------
# With `row_two_pass`'s, in tests/test_gpu_rows.py: the statistics against `two_pass`'s
# (``k`` the first entry), float32 against float64 at offsets up to 1e7 with the shift an
# outlier, rows holding inf or NaN, the derivative against the core's path, sigma 0 and
# overflow.

@pytest.mark.parametrize("fast", [False, True])
def test_short_rows_gradient_against_float64(x64, fast):
  x = _x((3, 9), seed=4).astype(np.float64)
  f = functools.partial(divnorm.layer_norm, reduction_axes=-1, sigma=0.2, fast_variance=fast)
  check_grads(f, (jnp.asarray(x),), order=2, modes=("rev",))
  check_grads(lambda x: _short(x, jnp.float64(0.2))[0], (jnp.asarray(x),), order=2,
              modes=("fwd", "rev"))


# ---- which path a program takes, read from its lowering ----------------------------------

def _layers(n):
  x = jnp.zeros((2, 3, n))
  linen = dl.LayerNorm().init(jax.random.key(0), x)
  graph, state = nnx.split(dnnx.LayerNorm(n, rngs=nnx.Rngs(0)))
  haiku = hk.without_apply_rng(hk.transform(lambda x: dhk.LayerNorm(-1, True, True)(x)))
  equinox = deqx.LayerNorm(n)
  return {
    "linen": (lambda v, x: dl.LayerNorm().apply(v, x), linen),
    "nnx": (lambda s, x: nnx.merge(graph, s)(x), state),
    "haiku": (haiku.apply, haiku.init(jax.random.key(0), x)),
    "equinox": (lambda m, x: jax.vmap(jax.vmap(m))(x), equinox),
  }


# The forward alone: the core's derivative holds copies (`statistics.copies`) on every path.
FUNCTIONS = {name: f for name, f in LAST_AXIS.items() if name != "gradient"}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_short_rows_take_their_path_on_cpu_alone(name):
  x = jnp.asarray(_x((2, 3, 8)))
  assert _takes_short_rows(FUNCTIONS[name], x)
  assert not _takes_short_rows(FUNCTIONS[name], jnp.asarray(_x((2, 3, SHORT + 1))))
  assert not _takes_short_rows(FUNCTIONS[name], x, platform="tpu")


@pytest.mark.parametrize("name", ["linen", "nnx", "haiku", "equinox"])
def test_the_layer_norm_layers_take_short_rows_on_cpu(name):
  for n, short in ((SHORT, True), (SHORT + 1, False)):
    f, params = _layers(n)[name]
    assert _takes_short_rows(f, params, jnp.asarray(_x((2, 3, n)))) == short, n


@pytest.mark.parametrize("name", sorted(OTHER_FIELDS))
def test_other_fields_keep_the_core_on_cpu(name):
  assert not _takes_short_rows(OTHER_FIELDS[name], jnp.asarray(_x((2, 3, 8))))


def test_the_layers_give_flax_s_numbers_over_short_rows():
  x = jnp.asarray(_x((4, 3, 8), offset=3.0))
  for fast in (True, False):
    variables = nn.LayerNorm(use_fast_variance=fast).init(jax.random.key(0), x)
    variables = jax.tree.map(
        lambda p: p + 0.1 * jnp.arange(p.size, dtype=p.dtype).reshape(p.shape), variables)
    np.testing.assert_allclose(dl.LayerNorm(use_fast_variance=fast).apply(variables, x),
                               nn.LayerNorm(use_fast_variance=fast).apply(variables, x),
                               rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(jax.vmap(jax.vmap(deqx.LayerNorm(8)))(x),
                             jax.vmap(jax.vmap(eqx.nn.LayerNorm(8)))(x), rtol=1e-5, atol=1e-5)


# ---- bfloat16: converted where it is read, rounded once ----------------------------------

def _float32_arrays_of_x(fn, *args, shape) -> list[str]:
  """The bodies of the compiled program's kernels that compute an input-sized float32 array
  from the bfloat16 input alone (written to memory)."""
  hlo = jax.jit(fn).lower(*args).compile().as_text()
  entry = hlo[hlo.index("\nENTRY"):]
  dims = ",".join(map(str, shape))
  (x,) = re.findall(rf"(%\S+) = bf16\[{dims}\]\S* parameter\(", entry)
  f32 = re.escape(f"f32[{dims}]")
  called = re.findall(rf"= {f32}\S* fusion\({re.escape(x)}\).*calls=(%[\w.]+)", entry)
  return [hlo[hlo.index(f"{c} "):].split("\n}", 1)[0] for c in called]


@pytest.mark.parametrize("fast", [False, True])
def test_short_rows_in_bfloat16_write_no_conversion_alone_and_round_once(fast):
  _on_cpu()
  shape = (16, 64, 16)
  x = jnp.asarray(_x(shape, offset=2.0)).astype(jnp.bfloat16)
  # The cotangent of bfloat16 values: the transpose of the output's rounding rounds it.
  w = jnp.asarray(_x(shape, seed=1)).astype(jnp.bfloat16).astype(jnp.float32)
  f = functools.partial(divnorm.layer_norm, reduction_axes=-1, sigma=0.1, fast_variance=fast)

  def loss(x):
    return jnp.sum(f(x).astype(jnp.float32) * w)

  assert _takes_short_rows(f, x.astype(jnp.float32))
  # The chain writes x - k (float32) once for both sums, as in float32: faster than reading
  # the input from a copy of its own per sum (BENCHMARKS.md, "Short rows"). Never the
  # input's conversion alone.
  for program in (f, jax.grad(loss)):
    bodies = _float32_arrays_of_x(program, x, shape=shape)
    assert len(bodies) <= 1 and all(" subtract(" in body for body in bodies), bodies
  y, g = f(x), jax.grad(loss)(x)
  y32, g32 = f(x.astype(jnp.float32)), jax.grad(loss)(x.astype(jnp.float32))
  assert y.dtype == g.dtype == jnp.bfloat16
  ulp = float(jnp.finfo(jnp.bfloat16).eps)
  np.testing.assert_allclose(np.float32(y), np.float32(y32.astype(jnp.bfloat16)), rtol=ulp,
                             atol=1e-6)
  np.testing.assert_allclose(np.float32(g), np.float32(g32), rtol=ulp, atol=1e-3 * ulp)
