"""The three variance modes of BN/LN/IN/GN against flax.linen's default (one-pass) layers.

Forward+backward, interleaved rounds, ratios to flax:

- ``default`` (``fast_variance=None``): the library default, two-pass (the same program
  as ``fast_variance=False``; kept as a column so tables from before the guard's removal
  line up);
- ``one-pass`` (``fast_variance=True``): always ``E[x^2] - E[x]^2``, as flax;
- ``two-pass`` (``fast_variance=False``): always centered.

    python -m benchmarks.fast_variance [rounds]

The inputs are standard normal; `offset` rows add 1e4 (where one-pass loses its digits).
"""

from __future__ import annotations

import functools
import sys

import jax
import numpy as np

from benchmarks import contenders, timing

SHAPES = [(100, 32, 32, 32), (100, 16, 16, 32), (100, 8, 8, 64), (20, 800), (128, 32, 32, 64)]
MODES = {"default": None, "one-pass": True, "two-pass": False}
HEADER = ["| preset | shape | input | default / flax | one-pass / flax | two-pass / flax |",
          "|---|---|---|---|---|---|"]


def rows(shape, *, rounds: int, target_s: float = 0.02, offset: float = 0.0) -> list[str]:
  """Markdown rows: each preset's three modes and flax, forward+backward, interleaved."""
  flax_fns = contenders.presets(shape)
  modes = {m: contenders.divnorm_presets(shape, fast_variance=fv) for m, fv in MODES.items()}
  x = jax.random.normal(jax.random.key(0), shape) + np.float32(offset)
  w = jax.random.normal(jax.random.key(1), shape)
  out = []
  for name in [n for n in ("BN", "LN", "IN", "GN") if n in flax_fns]:
    fns = {}
    for label, f in [*((m, modes[m][name]) for m in MODES), ("flax", flax_fns[name][1])]:
      g = contenders.forward_backward(f)
      g(x, w)
      fns[label] = functools.partial(g, x, w)
    t = timing.interleaved(fns, rounds=rounds, target_s=target_s)
    ratios = " | ".join(str(t.ratio(m, "flax")) for m in MODES)
    data = f"N(0,1) + {offset:g}" if offset else "N(0,1)"
    out.append(f"| {name} | {'x'.join(map(str, shape))} | {data} | {ratios} |")
  return out


def main(rounds: int) -> None:
  print("\n".join(HEADER))
  for shape in SHAPES:
    for line in rows(shape, rounds=rounds):
      print(line, flush=True)
  for line in rows(SHAPES[-1], rounds=rounds, offset=1e4):
    print(line, flush=True)


if __name__ == "__main__":
  main(int(sys.argv[1]) if len(sys.argv) > 1 else 9)
