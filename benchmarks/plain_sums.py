"""One-pass statistics on XLA's CPU backend: plain sums first, or the shifted sums alone.

`statistics.one_pass` (``fast_variance=True``; the layers' default ``use_fast_variance=True``)
first sums ``x`` and ``x^2`` without a shift on XLA's CPU backend, and keeps those sums where
every field has ``E_A[x]^2 <= PLAIN_LIMIT * var``; elsewhere a ``lax.cond`` computes the sums
around the shift ``k`` (`statistics.shifted_one_pass`: what every other backend runs). Three
tables, each strategy passed to `core.normalized`:

1. **Error**: the float32 output against the float64 formula (NumPy), the largest absolute
   difference over 3 draws, with the data's mean 0 to 3 standard deviations from 0: normal
   data, and exponential data (``e - 1``, skewed like a ReLU's output), each of unit
   spread. Past ``sqrt(PLAIN_LIMIT) = 1.41`` standard deviations the library takes the
   shifted sums itself, and the two columns are one program.
2. **Time**: forward+backward (``jit(grad(<y, w>))`` with respect to the input) of each
   strategy, in the same interleaved rounds (`benchmarks.timing`), on N(0, 1) data: layer,
   batch, instance and group norm at the drop-in shapes, float32 and bfloat16. Two more rows
   per dtype where the plain sums are not kept: data at offset 10 (the cond's other branch:
   both sums are read), and group norm of each example of 8x16x16x1280 under ``vmap`` (the
   cond becomes a select: both sums).
3. **Sizes** (``--tables sizes``): the same ratio, float32, for inputs of 8192 to 3.1M
   entries, around `statistics.PLAIN_MIN_SIZE` (below it the library takes the shifted sums
   alone: the cond costs more than the faster sums save), and for layer norm over rows of
   16 to 256 features, around `statistics.PLAIN_MIN_FIELD`. Here the library's strategy is
   forced past both size checks, to measure what they decide.

Every ratio is time(library) / time(shifted): the median over rounds, then min-max.

    python -m benchmarks.plain_sums [--rounds N] [--quick] [--tables error,time,sizes]
        [--dtypes float32,bfloat16]
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

# mode -> the library's strategy and the shifted sums alone (`two_pass` has no plain sums:
# under vmap, which every equinox layer runs, their cond cost 1.10-1.27x; BENCHMARKS.md)
MODES = {"one-pass": (statistics.one_pass, statistics.shifted_one_pass)}
MEANS = (0.0, 1.0, 1.41, 2.0, 3.0)
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
TABLES = {"error": None, "time": None, "sizes": None}
# (case, shapes) of the sizes table: 8192 to 3.1M entries; rows of 16 to 256 features.
SIZES = [("LN (C)", [(64, 128), (256, 256), (64, 1024), (256, 768), (1024, 768), (4096, 768),
                     (64, 1024, 16), (32, 1024, 32), (16, 1024, 64), (4, 1024, 256)]),
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


def error_table(quick: bool, modes) -> list[str]:
  out = ["**Error: float32 output against float64, largest over 3 draws**", "",
         "| case | mode | data | mean / std | library | shifted |", "|---|---|---|---|---|---|"]
  draws = 1 if quick else 3
  for name, (shape, field) in cases(quick).items():
    for mode in modes:
      fns = [jax.jit(normalized(s, field)) for s in MODES[mode]]
      for distribution in ("normal", "exponential"):
        for mean in MEANS:
          errors = [0.0, 0.0]
          for seed in range(draws):
            x = draw(shape, mean, distribution, seed)
            expected = reference(x, field)
            for i, f in enumerate(fns):
              got = np.asarray(f(x), np.float64)
              errors[i] = max(errors[i], float(np.abs(got - expected).max()))
          out.append(f"| {name} {'x'.join(map(str, shape))} | {mode} | {distribution} | "
                     f"{mean} | {errors[0]:.1e} | {errors[1]:.1e} |")
  return out + [""]


def _step(f):
  return jax.jit(jax.grad(lambda x, w: jnp.sum(f(x).astype(jnp.float32) * w)))


def _ratio_row(steps, x, w, rounds: int, quick: bool):
  """``(ratio, library s, shifted s)`` of the two steps on ``(x, w)``, interleaved."""
  t = timing.interleaved({n: functools.partial(s, x, w) for n, s in steps.items()},
                         rounds=rounds, target_s=0.0 if quick else 0.05)
  return t.ratio("library", "shifted"), t.median("library"), t.median("shifted")


def time_table(quick: bool, rounds: int, dtypes, modes) -> list[str]:
  out = ["**Time: forward+backward, library / shifted**", "",
         "| case | mode | dtype | data | library / shifted | library ms | shifted ms |",
         "|---|---|---|---|---|---|---|"]
  for dtype_name in dtypes:
    dtype = DTYPES[dtype_name]
    rows = [(name, shape, field, offset) for name, (shape, field) in cases(quick).items()
            for offset in ((0.0, 10.0) if name == "BN" else (0.0,))]
    # group norm of each example under vmap, each at least PLAIN_MIN_SIZE (but in --quick)
    shape, _ = cases(quick)["GN (8), 1280 channels"]
    vmapped = ("GN (8), vmap", shape, grouped_field((0, 1), 2, shape[-1] // 8, shape[1:]), 0.0)
    for name, shape, field, offset in rows + [vmapped]:
      for mode in modes:
        fns = [normalized(s, field) for s in MODES[mode]]
        if name.endswith("vmap"):  # the cond is a select: both sums run
          fns = [jax.vmap(f) for f in fns]
        steps = dict(zip(("library", "shifted"), map(_step, fns), strict=True))
        x = jnp.asarray(draw(shape, offset, "normal", 0), dtype)
        w = jax.random.normal(jax.random.key(1), shape, jnp.float32)
        ratio, lib, shifted = _ratio_row(steps, x, w, rounds, quick)
        data = "N(0, 1)" if offset == 0 else f"{offset:g} + N(0, 1)"
        out.append(f"| {name} {'x'.join(map(str, shape))} | {mode} | {dtype_name} | {data} | "
                   f"{ratio} | {lib * 1e3:.2f} | {shifted * 1e3:.2f} |")
  return out + [""]


def sizes_table(quick: bool, rounds: int, modes) -> list[str]:
  out = ["**Sizes: forward+backward, float32, library (past its size check) / shifted**", "",
         "| case | mode | entries | library / shifted | shifted ms |", "|---|---|---|---|---|"]
  for name, shapes in QUICK_SIZES if quick else SIZES:
    for shape in shapes:
      ndim = len(shape)
      field = (resolve_field((ndim - 1,), ndim) if name.startswith("LN") else
               resolve_field(tuple(range(ndim - 1)), ndim) if name == "BN" else
               grouped_field((1, 2), 3, shape[-1] // 8, shape))
      for mode in modes:
        library, shifted = MODES[mode]
        steps = {"library": _step(normalized(functools.partial(_past_size_check, library),
                                             field)),
                 "shifted": _step(normalized(shifted, field))}
        x = jnp.asarray(draw(shape, 0.0, "normal", 0))
        w = jax.random.normal(jax.random.key(1), shape, jnp.float32)
        ratio, _, shifted_s = _ratio_row(steps, x, w, rounds, quick)
        out.append(f"| {name} {'x'.join(map(str, shape))} | {mode} | {int(np.prod(shape))} | "
                   f"{ratio} | {shifted_s * 1e3:.3f} |")
  return out + [""]


def _past_size_check(strategy, x, a, b, **kw):
  """`strategy` with `statistics.PLAIN_MIN_SIZE` and `PLAIN_MIN_FIELD` at 0 while it is
  traced."""
  sizes = statistics.PLAIN_MIN_SIZE, statistics.PLAIN_MIN_FIELD
  statistics.PLAIN_MIN_SIZE = statistics.PLAIN_MIN_FIELD = 0
  try:
    return strategy(x, a, b, **kw)
  finally:
    statistics.PLAIN_MIN_SIZE, statistics.PLAIN_MIN_FIELD = sizes


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--rounds", type=cli.positive_int(10), default=10)
  p.add_argument("--quick", action="store_true", help="tiny shapes, one round (CI)")
  p.add_argument("--tables", default="error,time,sizes", type=cli.names_of(TABLES))
  p.add_argument("--modes", default="one-pass", type=cli.names_of(MODES))
  p.add_argument("--dtypes", default="float32,bfloat16", type=cli.names_of(DTYPES))
  args = p.parse_args(argv)
  cmd = "python -m benchmarks.plain_sums " + " ".join(
      argv if argv is not None else sys.argv[1:])
  print("\n".join([f"Command: `{cmd.strip()}`", "", *report.machine(), ""]), flush=True)
  t0 = time.time()
  rounds = 1 if args.quick else args.rounds
  if "error" in args.tables:
    print("\n".join(error_table(args.quick, args.modes)), flush=True)
  if "time" in args.tables:
    print("\n".join(time_table(args.quick, rounds, args.dtypes, args.modes)), flush=True)
  if "sizes" in args.tables:
    print("\n".join(sizes_table(args.quick, rounds, args.modes)), flush=True)
  print(f"Total {time.time() - t0:.0f} s; jax {jax.__version__}.")
  return 0


if __name__ == "__main__":
  sys.exit(main())
