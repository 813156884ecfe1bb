"""The measured ratios behind the core's choices (`divnorm/_src/statistics.py`, `reductions.py`).

Four tables, each interleaved (`benchmarks.timing`: medians and min-max of per-round
ratios):

1. **Two sums in one reduce** (`reductions.pooled_sums`): ``sum(x - k)`` and
   ``sum((x - k)^2)`` as one two-output ``lax.reduce`` against two reductions, over the axes
   the normalizers reduce (forward only, the sums alone).
2. **Group sums** (`reductions.group_sum`): group norm's forward+backward with the group
   sums (channels last) as the library takes them, summed over the ``[..., groups, size]``
   view and sent back by the outer product with a vector of ones; against products with
   ones both ways (the library's before 2026-12-07: a 20-block GroupNorm training step
   compiled in 1.6x the time, `benchmarks.trace_time`), two products with the 0/1
   ``[C, G]`` membership matrix (before 2026-12-06, which spreads a NaN to every group)
   and reshaping, summing and broadcasting back (each swapped in while tracing, with the
   core's jit cache cleared). The run times and the compile times, each interleaved.
3. **Strategies for divisive norm across channels**: forward+backward of
   `core.normalized` with each strategy: `two_pass`, `corrected_two_pass` (the library's
   for these fields, either `fast_variance`) and `one_pass` (called directly: no library
   path takes it with windows in A; since 2026-12-06 its two sums are two reductions).
4. **Window sums along the minor axis** (`reductions.window_sum`): forward+backward of one
   window sum as a 1-D ``reduce_window`` and as a product with a banded 0/1 matrix, on
   ``[rows, n]`` shapes from the RNN's gates (n 128, width 61) to LN-sized rows; the library
   takes the product where it is marked.

    python -m benchmarks.strategies [--rounds N] [--quick]
"""

from __future__ import annotations

import argparse
import functools
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from benchmarks import cli, timing, xla
from divnorm._src import core, reductions, statistics
from divnorm._src.fields import grouped_field, resolve_field

SHAPES = [(100, 32, 32, 32), (128, 32, 32, 64)]
QUICK_SHAPES = [(2, 8, 8, 8)]
# (label, axes) on NHWC: what BN, LN, IN and DN across channels reduce.
REDUCTIONS = [("(H, W, C): LN", (1, 2, 3)), ("(B, H, W): BN", (0, 1, 2)),
              ("(H, W): IN", (1, 2)), ("C: DN across channels", (3,))]


def _shift(x, axes):
  return x[tuple(slice(0, 1) if a in axes else slice(None) for a in range(x.ndim))]


def two_sums_table(shape, *, rounds: int, target_s: float) -> list[str]:
  x = jax.random.normal(jax.random.key(0), shape)
  fns = {}
  for label, axes in REDUCTIONS:
    def two(x, axes=axes):
      k = _shift(x, axes)
      zero = np.float32(0)
      return lax.reduce((x - k, jnp.square(x - k)), (zero, zero),
                        lambda p, q: (p[0] + q[0], p[1] + q[1]), axes)

    def separate(x, axes=axes):
      k1, k2 = statistics.copies(_shift(x, axes), 2)
      return jnp.sum(x - k1, axes), jnp.sum(jnp.square(k2 - x), axes)

    fns[label, "one reduce"] = two
    fns[label, "two reductions"] = separate
  exes = {n: xla.compiled(jax.jit(f), x) for n, f in fns.items()}
  t = timing.interleaved({n: functools.partial(e, x) for n, e in exes.items()},
                         rounds=rounds, target_s=target_s)
  out = [f"**Two sums of x - k, {'x'.join(map(str, shape))}, forward**", "",
         "| reduced axes | one reduce ms | two reductions ms | one / two |", "|---|---|---|---|"]
  for label, _ in REDUCTIONS:
    one, two_ = (label, "one reduce"), (label, "two reductions")
    out.append(f"| {label} | {t.median(one) * 1e3:.2f} | {t.median(two_) * 1e3:.2f} | "
               f"{t.ratio(one, two_)} |")
  return out + [""]


def _group_sum_reshaped(t, groups):
  for axis, size in groups:
    n = t.shape[axis]
    split = t.shape[:axis] + (n // size, size) + t.shape[axis + 1:]
    s = jnp.sum(t.reshape(split), axis=axis + 1, keepdims=True)
    t = jnp.broadcast_to(s, split).reshape(t.shape)
  return t


def _group_sum_products(t, groups):
  for axis, size in groups:
    n, ones = t.shape[axis], jnp.ones((size,), t.dtype)
    s = lax.dot_general(t.reshape(t.shape[:axis] + (n // size, size)), ones,
                        (((axis + 1,), (0,)), ((), ())), precision="highest")
    t = lax.dot_general(s[..., None], ones[None], (((axis + 1,), (0,)), ((), ())),
                        precision="highest").reshape(t.shape)
  return t


def _group_sum_membership(t, groups):
  for axis, size in groups:
    n = t.shape[axis]
    rows, cols = (lax.broadcasted_iota(np.int32, (n, n // size), d) for d in (0, 1))
    member = (rows // size == cols).astype(t.dtype)
    s = lax.dot_general(t, member, (((axis,), (0,)), ((), ())), precision="highest")
    t = lax.dot_general(s, member, (((axis,), (1,)), ((), ())), precision="highest")
  return t


def _grad(f):
  return jax.jit(jax.grad(lambda x, w: jnp.sum(f(x) * w)))


def _group_norm_grad(shape, fast_variance):
  """Group norm's (8 groups) forward+backward through `core.normalized`, for `_grad`."""
  a = grouped_field((1, 2), 3, max(1, shape[-1] // 8), shape)
  f = functools.partial(core.normalized, sigma=jnp.float32(0.1), mask=None,
                        statistics=statistics.pick_statistics(a, a, fast_variance), a=a, b=a,
                        border="valid", axis_name=None)
  return _grad(lambda x: f(x)[0])


def _compiled_with(form: str, shape, fast_variance, x, w):
  """``(executable, compile seconds)`` of `_group_norm_grad` with the group sums' `form`,
  swapped in while tracing (the core's jit cache cleared before and after)."""
  reductions.group_sum = _GROUP_SUM_FORMS.get(form, _LIBRARY_GROUP_SUM)
  jax.clear_caches()
  try:
    lowered = _group_norm_grad(shape, fast_variance).lower(x, w)
    start = time.perf_counter()
    exe = lowered.compile()
    return exe, time.perf_counter() - start
  finally:
    reductions.group_sum = _LIBRARY_GROUP_SUM
    jax.clear_caches()


def group_sums_table(shape, *, rounds: int, target_s: float) -> list[str]:
  x = jax.random.normal(jax.random.key(0), shape)
  w = jax.random.normal(jax.random.key(1), shape)
  forms, modes = ["library", *_GROUP_SUM_FORMS], {"two-pass": None, "one-pass": True}
  exes, compile_s = {}, {(f, m): [] for f in forms for m in modes}
  for r in range(max(1, min(rounds, 5))):  # compiling, in a rotated order
    for form in forms[r % len(forms):] + forms[:r % len(forms)]:
      for mode, fv in modes.items():
        exes[form, mode], seconds = _compiled_with(form, shape, fv, x, w)
        compile_s[form, mode].append(seconds)
  t = timing.interleaved({n: functools.partial(e, x, w) for n, e in exes.items()},
                         rounds=rounds, target_s=target_s)
  c = timing.Timings(compile_s)
  out = [f"**Group sums, group norm (8 groups) {'x'.join(map(str, shape))}, "
         "forward+backward**", "", "| mode | library ms | " + " | ".join(
             f"{n} / library" for n in _GROUP_SUM_FORMS) + " | library compile s | " +
         " | ".join(f"{n} compile / library" for n in _GROUP_SUM_FORMS) + " |",
         "|---|---|" + "---|" * (2 * len(_GROUP_SUM_FORMS) + 1)]
  for mode in modes:
    cells = [str(t.ratio((n, mode), ("library", mode))) for n in _GROUP_SUM_FORMS]
    cells += [f"{c.median(('library', mode)):.2f}"]
    cells += [str(c.ratio((n, mode), ("library", mode))) for n in _GROUP_SUM_FORMS]
    out.append(f"| {mode} | {t.median(('library', mode)) * 1e3:.2f} | {' | '.join(cells)} |")
  return out + [""]


_LIBRARY_GROUP_SUM = reductions.group_sum
_GROUP_SUM_FORMS = {"products both ways": _group_sum_products,
                    "membership matmuls": _group_sum_membership, "reshape": _group_sum_reshaped}


def strategies_table(shape, *, rounds: int, target_s: float) -> list[str]:
  x = jax.random.normal(jax.random.key(0), shape)
  w = jax.random.normal(jax.random.key(1), shape)
  a = resolve_field({3: None, 1: 5, 2: 5}, 4)
  exes = {}
  for name in ("two_pass", "corrected_two_pass", "one_pass"):
    f = functools.partial(core.normalized, sigma=jnp.float32(0.5), mask=None,
                          statistics=getattr(statistics, name), a=a, b=a, border="valid",
                          axis_name=None)
    exes[name] = xla.compiled(_grad(lambda x, f=f: f(x)[0]), x, w)
  t = timing.interleaved({n: functools.partial(e, x, w) for n, e in exes.items()},
                         rounds=rounds, target_s=target_s)
  out = [f"**Strategies, DN 5x5 across channels {'x'.join(map(str, shape))}, "
         "forward+backward**", "", "| strategy | ms | / two_pass | XLA bytes / input |",
         "|---|---|---|---|"]
  for n, e in exes.items():
    out.append(f"| `{n}` | {t.median(n) * 1e3:.2f} | {t.ratio(n, 'two_pass')} | "
               f"{xla.bytes_accessed(e) / x.nbytes:.2f} |")
  return out + [""]


# (rows, n, width): the RNN's gates and cell state, a wider axis, narrow windows.
WINDOW_CASES = [(80, 128, 61), (20, 128, 61), (80, 256, 61), (80, 64, 15), (80, 128, 15),
                (80, 512, 61), (10240, 32, 9), (102400, 32, 5), (4096, 768, 61)]
QUICK_WINDOW_CASES = [(4, 32, 9), (4, 32, 3)]


def _reduce_window_sum(t, width):
  return lax.reduce_window(t, np.zeros((), t.dtype), lax.add, (1, width), (1, 1),
                           ((0, 0), (width // 2, width // 2)))


def window_sums_table(cases, *, rounds: int, target_s: float) -> list[str]:
  out = ["**Window sums along the minor axis, forward+backward**", "",
         "| rows x n, width | reduce_window us | banded product us | product / reduce_window "
         "| library |", "|---|---|---|---|---|"]
  for rows, n, width in cases:
    x = jax.random.normal(jax.random.key(0), (rows, n))
    w = jax.random.normal(jax.random.key(1), (rows, n))
    exes = {"reduce_window": xla.compiled(
                _grad(functools.partial(_reduce_window_sum, width=width)), x, w),
            "banded": xla.compiled(
                _grad(functools.partial(reductions._banded_window_sum, width=width)), x, w)}
    t = timing.interleaved({k: functools.partial(e, x, w) for k, e in exes.items()},
                           rounds=rounds, target_s=target_s)
    takes = "product" if reductions._banded_pays(x, 1, width) else "reduce_window"
    out.append(f"| {rows}x{n}, {width} | {t.median('reduce_window') * 1e6:.1f} | "
               f"{t.median('banded') * 1e6:.1f} | {t.ratio('banded', 'reduce_window')} | "
               f"{takes} |")
  return out + [""]


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--rounds", type=cli.positive_int(15), default=15)
  p.add_argument("--quick", action="store_true", help="a tiny shape, one round (CI)")
  args = p.parse_args(argv)
  shapes = QUICK_SHAPES if args.quick else SHAPES
  rounds, target_s = (1, 0.0) if args.quick else (args.rounds, 0.05)
  print(f"jax {jax.__version__}, {jax.devices()[0].platform}, rounds {rounds}\n")
  for table in (two_sums_table, group_sums_table, strategies_table):
    for shape in shapes:
      print("\n".join(table(shape, rounds=rounds, target_s=target_s)), flush=True)
  cases = QUICK_WINDOW_CASES if args.quick else WINDOW_CASES
  print("\n".join(window_sums_table(cases, rounds=rounds, target_s=target_s)), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
