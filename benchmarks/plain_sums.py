"""One-pass statistics on XLA's CPU backend: the plain sums first, or the shifted sums alone.

`statistics.one_pass` (``fast_variance=True``; the layers' default ``use_fast_variance=True``)
first sums ``x`` and ``x^2`` themselves on XLA's CPU backend, and keeps those sums where
every field has ``E_A[x]^2 <= PLAIN_LIMIT * var``; elsewhere a ``lax.cond`` computes the
sums of ``x - k`` and ``(x - k)^2`` (`statistics.shifted_one_pass`, what every other backend
runs). Two tables, each strategy passed to `core.normalized`:

1. **Error**: the float32 output against the float64 formula (NumPy), the largest absolute
   difference over 3 draws, with the data's mean 0 to 3 standard deviations from 0: normal
   data, and exponential data (``e - 1``, skewed like a ReLU's output), each of unit
   spread. Past ``sqrt(PLAIN_LIMIT) = 1.41`` standard deviations the library takes the
   shifted sums itself, and the two columns are one program.
2. **Time**: forward+backward (``jit(grad(<y, w>))`` with respect to the input) of each
   strategy, in the same interleaved rounds (`benchmarks.timing`), on N(0, 1) data: layer,
   batch, instance and group norm at the drop-in shapes, float32 and bfloat16. Two more rows
   per dtype where the plain sums are not kept: data at offset 10 (the cond's other branch:
   both sums are read), and group norm under ``vmap`` over the examples (the cond becomes a
   select: both sums).
3. **Sizes** (``--tables sizes``): the same ratio, float32, for inputs of 8192 to 3.1M
   entries, around `statistics.PLAIN_MIN_SIZE` (below it `one_pass` takes the shifted sums
   alone: the cond costs more than the faster sums save). Here `one_pass` is forced past
   that size check, to measure what it decides.

Every ratio is time(one_pass) / time(shifted_one_pass): the median over rounds, then
min-max.

    python -m benchmarks.plain_sums [--rounds N] [--quick] [--tables error,time,sizes]
"""

from __future__ import annotations

import argparse
import functools
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import cli, report, timing
from divnorm._src import core, statistics
from divnorm._src.fields import Field, grouped_field, resolve_field

STRATEGIES = {"one_pass": statistics.one_pass, "shifted_one_pass": statistics.shifted_one_pass}
MEANS = (0.0, 1.0, 1.41, 2.0, 3.0)
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
TABLES = {"error": None, "time": None, "sizes": None}
# (case, shapes) of the sizes table: 8192 to 3.1M entries.
SIZES = [("LN (C)", [(64, 128), (256, 256), (64, 1024), (256, 768), (1024, 768), (4096, 768)]),
         ("BN", [(16, 8, 8, 16), (32, 16, 16, 16), (64, 16, 16, 32), (64, 32, 32, 32)]),
         ("GN (8)", [(8, 8, 8, 64), (16, 16, 16, 64), (16, 32, 32, 64), (32, 32, 32, 64)])]
QUICK_SIZES = [("LN (C)", [(4, 8)])]


def cases(quick: bool) -> dict:
  """Name -> ``(shape, field)``: what layer, batch, instance and group norm reduce."""
  cnn = (2, 6, 6, 16) if quick else (100, 32, 32, 32)
  wide = (2, 4, 4, 32) if quick else (8, 16, 16, 1280)
  seq = (2, 8, 32) if quick else (8, 512, 768)
  return {
      "LN (C)": (seq, resolve_field((2,), 3)),
      "LN (H,W,C)": (cnn, resolve_field((1, 2, 3), 4)),
      "BN": (cnn, resolve_field((0, 1, 2), 4)),
      "IN": (cnn, resolve_field((1, 2), 4)),
      "GN (8)": (cnn, grouped_field((1, 2), 3, cnn[-1] // 8, cnn)),
      "GN (8), 1280 channels": (wide, grouped_field((1, 2), 3, wide[-1] // 8, wide)),
  }


def normalized(strategy, field: Field, sigma: float = 0.0):
  """``x -> y`` of `core.normalized` with `strategy` over `field` (A = B)."""
  def f(x):
    dt = statistics.stat_dtype(x.dtype)
    y, _, _ = core.normalized(x.astype(dt), jnp.asarray(sigma, dt), None, strategy, field,
                              field, "valid", None)
    return y.astype(x.dtype)
  return f


def reference(x: np.ndarray, field: Field) -> np.ndarray:
  """The float64 formula over `field` (whole axes, and groups along one axis), sigma 0."""
  x = x.astype(np.float64)
  shape, axes = x.shape, list(field.whole)
  for axis, size in field.groups:
    x = x.reshape(shape[:axis] + (shape[axis] // size, size) + shape[axis + 1:])
    axes = [a if a < axis else a + 1 for a in axes] + [axis + 1]
  y = (x - x.mean(tuple(axes), keepdims=True)) / x.std(tuple(axes), keepdims=True)
  return y.reshape(shape)


def draw(shape, mean: float, distribution: str, seed: int) -> np.ndarray:
  """Unit-spread float32 data around `mean`: normal, or ``exponential - 1``."""
  key = jax.random.key(seed)
  z = (jax.random.normal(key, shape) if distribution == "normal"
       else jax.random.exponential(key, shape) - 1.0)
  return np.asarray(z + mean, np.float32)


def error_table(quick: bool) -> list[str]:
  out = ["**Error: float32 output against float64, largest over 3 draws**", "",
         "| case | data | mean / std | one_pass | shifted_one_pass |", "|---|---|---|---|---|"]
  draws = 1 if quick else 3
  for name, (shape, field) in cases(quick).items():
    fns = {n: jax.jit(normalized(s, field)) for n, s in STRATEGIES.items()}
    for distribution in ("normal", "exponential"):
      for mean in MEANS:
        errors = {n: 0.0 for n in fns}
        for seed in range(draws):
          x = draw(shape, mean, distribution, seed)
          expected = reference(x, field)
          for n, f in fns.items():
            got = np.asarray(f(x), np.float64)
            errors[n] = max(errors[n], float(np.abs(got - expected).max()))
        out.append(f"| {name} {'x'.join(map(str, shape))} | {distribution} | {mean} | "
                   f"{errors['one_pass']:.1e} | {errors['shifted_one_pass']:.1e} |")
  return out + [""]


def _step(f):
  return jax.jit(jax.grad(lambda x, w: jnp.sum(f(x).astype(jnp.float32) * w)))


def time_table(quick: bool, rounds: int, dtypes) -> list[str]:
  out = ["**Time: forward+backward, one_pass / shifted_one_pass**", "",
         "| case | dtype | data | one_pass / shifted | one_pass ms | shifted ms |",
         "|---|---|---|---|---|---|"]
  target_s = 0.0 if quick else 0.05
  for dtype_name in dtypes:
    dtype = DTYPES[dtype_name]
    rows = [(name, shape, field, offset) for name, (shape, field) in cases(quick).items()
            for offset in ((0.0, 10.0) if name == "BN" else (0.0,))]
    for name, shape, field, offset in rows + [("GN (8), vmap", None, None, 0.0)]:
      if shape is None:  # group norm of each example under vmap: the cond is a select
        shape, _ = cases(quick)["GN (8)"]
        example = grouped_field((0, 1), 2, shape[-1] // 8, shape[1:])
        steps = {n: _step(jax.vmap(normalized(s, example))) for n, s in STRATEGIES.items()}
      else:
        steps = {n: _step(normalized(s, field)) for n, s in STRATEGIES.items()}
      x = jnp.asarray(draw(shape, offset, "normal", 0), dtype)
      w = jax.random.normal(jax.random.key(1), shape, jnp.float32)
      t = timing.interleaved({n: functools.partial(s, x, w) for n, s in steps.items()},
                             rounds=rounds, target_s=target_s)
      data = "N(0, 1)" if offset == 0 else f"{offset:g} + N(0, 1)"
      out.append(f"| {name} {'x'.join(map(str, shape))} | {dtype_name} | {data} | "
                 f"{t.ratio('one_pass', 'shifted_one_pass')} | "
                 f"{t.median('one_pass') * 1e3:.2f} | "
                 f"{t.median('shifted_one_pass') * 1e3:.2f} |")
  return out + [""]


def sizes_table(quick: bool, rounds: int) -> list[str]:
  out = ["**Sizes: forward+backward, float32, one_pass (past its size check) / "
         "shifted_one_pass**", "", "| case | entries | one_pass / shifted | shifted ms |",
         "|---|---|---|---|"]
  for name, shapes in QUICK_SIZES if quick else SIZES:
    for shape in shapes:
      ndim = len(shape)
      field = (resolve_field((ndim - 1,), ndim) if name.startswith("LN") else
               resolve_field(tuple(range(ndim - 1)), ndim) if name == "BN" else
               grouped_field((1, 2), 3, shape[-1] // 8, shape))
      steps = {"one_pass": _step(normalized(_past_size_check, field)),
               "shifted_one_pass": _step(normalized(statistics.shifted_one_pass, field))}
      x = jnp.asarray(draw(shape, 0.0, "normal", 0))
      w = jax.random.normal(jax.random.key(1), shape, jnp.float32)
      t = timing.interleaved({n: functools.partial(s, x, w) for n, s in steps.items()},
                             rounds=rounds, target_s=0.0 if quick else 0.05)
      out.append(f"| {name} {'x'.join(map(str, shape))} | {int(np.prod(shape))} | "
                 f"{t.ratio('one_pass', 'shifted_one_pass')} | "
                 f"{t.median('shifted_one_pass') * 1e3:.3f} |")
  return out + [""]


def _past_size_check(x, a, b, **kw):
  """`statistics.one_pass` with `PLAIN_MIN_SIZE` at 0 while it is traced."""
  limit = statistics.PLAIN_MIN_SIZE
  statistics.PLAIN_MIN_SIZE = 0
  try:
    return statistics.one_pass(x, a, b, **kw)
  finally:
    statistics.PLAIN_MIN_SIZE = limit


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--rounds", type=cli.positive_int(10), default=10)
  p.add_argument("--quick", action="store_true", help="tiny shapes, one round (CI)")
  p.add_argument("--tables", default="error,time,sizes", type=cli.names_of(TABLES))
  p.add_argument("--dtypes", default="float32,bfloat16", type=cli.names_of(DTYPES))
  args = p.parse_args(argv)
  cmd = "python -m benchmarks.plain_sums " + " ".join(
      argv if argv is not None else sys.argv[1:])
  print("\n".join([f"Command: `{cmd.strip()}`", "", *report.machine(), ""]), flush=True)
  t0 = time.time()
  if "error" in args.tables:
    print("\n".join(error_table(args.quick)), flush=True)
  if "time" in args.tables:
    rounds = 1 if args.quick else args.rounds
    print("\n".join(time_table(args.quick, rounds, args.dtypes)), flush=True)
  if "sizes" in args.tables:
    print("\n".join(sizes_table(args.quick, 1 if args.quick else args.rounds)), flush=True)
  print(f"Total {time.time() - t0:.0f} s; jax {jax.__version__}.")
  return 0


if __name__ == "__main__":
  sys.exit(main())
