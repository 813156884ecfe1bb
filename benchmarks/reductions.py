"""Why two-pass statistics cost more than flax's one-pass ones on XLA's CPU backend.

Times the reductions the normalizers are built from on one tensor, interleaved: a plain
sum, the sum of squares, and sums whose input subtracts a broadcast per-example
statistic (what a shifted or two-pass statistic needs), against a copy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import timing, xla

AXES = (1, 2, 3)


def _sum(t):
  return jnp.sum(t, axis=AXES, keepdims=True)


FNS = {
    "sum(x)": lambda x, p: _sum(x),
    "sum(x*x)": lambda x, p: _sum(x * x),
    "sum(x), sum(x*x) (flax one-pass)": lambda x, p: (_sum(x), _sum(x * x)),
    "sum(x - p)": lambda x, p: _sum(x - p),
    "sum((x - p)^2)": lambda x, p: _sum((x - p) * (x - p)),
    "copy x*2": lambda x, p: x * np.asarray(2, x.dtype),
}


def rows(shape, *, rounds: int, target_s: float) -> list[tuple[str, float, timing.Ratio, float]]:
  """(name, ms, ratio to sum(x), bytes accessed / input bytes) per reduction."""
  x = jax.random.normal(jax.random.key(0), shape, np.float32)
  p = jnp.ones((shape[0], 1, 1, 1), np.float32)
  exes = {n: xla.compiled(jax.jit(f), x, p) for n, f in FNS.items()}
  t = timing.interleaved({n: (lambda e=e: e(x, p)) for n, e in exes.items()}, rounds=rounds,
                         target_s=target_s)
  return [(n, t.median(n) * 1e3, t.ratio(n, "sum(x)"), xla.bytes_accessed(e) / x.nbytes)
          for n, e in exes.items()]
