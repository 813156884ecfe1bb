"""The variance modes of BN/LN/IN/GN against flax.linen, like for like.

Forward+backward, interleaved rounds, each divnorm mode against flax's same mode:

- ``default`` (``fast_variance=None``): the library default, two-pass (the same program
  as ``fast_variance=False``; kept as a column so tables from before the guard's removal
  line up);
- ``one-pass`` (``fast_variance=True``): one pass of sums of ``x - k`` and ``(x - k)^2``
  around a shift from the data (`divnorm._src.statistics.one_pass`), against flax's
  ``use_fast_variance=True`` (flax's default, ``E[x^2] - E[x]^2``);
- ``two-pass`` (``fast_variance=False``): always centered, against flax's
  ``use_fast_variance=False``.

The last column compares divnorm's default with flax's default (different algorithms:
two-pass against one-pass), the comparison a user swapping modules sees.

    python -m benchmarks.fast_variance [rounds]   # --help for the options

DN rows are divisive norm 5x5 across channels against flax's LayerNorm over (H, W, C) in the
same mode (flax has no DN; layer norm is the cost it should match). Divisive norm takes its
corrected two-pass in every mode (windows in A), so its three columns time one program
against flax's two modes. The inputs are standard normal; `offset` rows add 1e4 (where
flax's one-pass loses its digits).
"""

from __future__ import annotations

import argparse
import functools

import jax
import numpy as np

import divnorm
from benchmarks import contenders, timing

SHAPES = [(100, 32, 32, 32), (100, 16, 16, 32), (100, 8, 8, 64), (20, 800), (128, 32, 32, 64)]
MODES = {"default": None, "one-pass": True, "two-pass": False}
HEADER = ["| preset | shape | input | two-pass / flax two-pass | one-pass / flax one-pass "
          "| default / flax default |",
          "|---|---|---|---|---|---|"]
# divnorm mode -> flax's mode it is compared with (flax's default is one-pass).
PAIRS = {"two-pass": ("two-pass", "flax two-pass"), "one-pass": ("one-pass", "flax one-pass"),
         "default": ("default", "flax one-pass")}


def rows(shape, *, rounds: int, target_s: float = 0.02, offset: float = 0.0) -> list[str]:
  """Markdown rows: each preset's three modes and flax, forward+backward, interleaved."""
  flax_fns = {"flax one-pass": contenders.flax_presets(shape, use_fast_variance=True),
              "flax two-pass": contenders.flax_presets(shape, use_fast_variance=False)}
  modes = {m: contenders.divnorm_presets(shape, fast_variance=fv) for m, fv in MODES.items()}
  if len(shape) == 4:  # DN 5x5 across channels, against flax's LayerNorm over (H, W, C)
    for m, fv in MODES.items():
      modes[m]["DN"] = functools.partial(divnorm.divisive_norm, summation_window=(5, 5),
                                         sigma=contenders.DN_SIGMA, fast_variance=fv)
    for fns in flax_fns.values():
      fns["DN"] = fns["LN"]
  x = jax.random.normal(jax.random.key(0), shape) + np.float32(offset)
  w = jax.random.normal(jax.random.key(1), shape)
  out = []
  for name in [n for n in ("BN", "LN", "IN", "GN", "DN") if n in modes["default"]]:
    fns = {}
    labelled = [*((m, modes[m][name]) for m in MODES),
                *((k, flax_fns[k][name]) for k in flax_fns)]
    for label, f in labelled:
      g = contenders.forward_backward(f)
      g(x, w)
      fns[label] = functools.partial(g, x, w)
    t = timing.interleaved(fns, rounds=rounds, target_s=target_s)
    ratios = " | ".join(str(t.ratio(ours, theirs)) for ours, theirs in PAIRS.values())
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
  parser = argparse.ArgumentParser(
      prog="python -m benchmarks.fast_variance",
      description=__doc__.split("\n\n")[0],
      epilog="Prints a markdown table of time ratios (divnorm / flax; < 1 is faster).")
  parser.add_argument("rounds", nargs="?", type=int, default=9,
                      help="interleaved rounds per preset and shape (default: 9)")
  main(parser.parse_args().rounds)
