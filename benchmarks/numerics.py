"""Float32 error against float64 of every variance mode, at large offsets.

For each normalizer and mode, the input is ``offset + N(0, 1)`` in float32 (one fixed
draw per offset), and the error is ``max |y - y64|`` with ``y64`` the same normalizer on
the same float32 input in float64 (`divnorm` under ``jax.enable_x64``; the float64 path
equals the paper's formula, written as loops in `tests/reference.py`, to 1e-10:
tests/test_properties.py). flax.linen's modules are measured the same way, against the
same float64 reference.

    python -m benchmarks.numerics [--quick] [--draws 1] [--jit]

Modes: ``two-pass`` (``fast_variance=None``, the functions' default; ``False`` is the same
program) and ``one-pass`` (``fast_variance=True``, what the modules' default
``use_fast_variance=True`` maps to); flax's ``use_fast_variance=True`` (its default) and
``False``.

``LN (C)`` is layer norm over the last axis alone: on a CUDA GPU both of its modes run the
fused row path (``statistics.row_two_pass``), which this table then measures on the device.
"""

from __future__ import annotations

import argparse
import functools
import sys

import flax.linen as nn
import jax
import numpy as np

import divnorm
from benchmarks import cli

OFFSETS = (0.0, 1e4, 1e6)
SHAPE = (16, 16, 16, 32)
QUICK_SHAPE = (2, 6, 6, 8)
SIGMA = 0.1


def divnorm_cases(shape) -> dict:
  """Name -> f(x, fast_variance) for the presets and two raw fields."""
  groups = 8 if shape[-1] % 8 == 0 else 1
  return {
      "BN": lambda x, fv: divnorm.batch_norm(x, divnorm.batch_stats_init(x), training=True,
                                             sigma=SIGMA, fast_variance=fv)[0],
      "LN (H,W,C)": lambda x, fv: divnorm.layer_norm(x, reduction_axes=(1, 2, 3), sigma=SIGMA,
                                                     fast_variance=fv),
      "LN (C)": lambda x, fv: divnorm.layer_norm(x, reduction_axes=-1, sigma=SIGMA,
                                                 fast_variance=fv),
      "IN": lambda x, fv: divnorm.instance_norm(x, sigma=SIGMA, fast_variance=fv),
      f"GN ({groups})": lambda x, fv: divnorm.group_norm(x, num_groups=groups, sigma=SIGMA,
                                                         fast_variance=fv),
      "DN 5x5 across C": lambda x, fv: divnorm.divisive_norm(
          x, summation_window=5, sigma=0.5, fast_variance=fv),
      "DN 3x3 / 5x5 across C": lambda x, fv: divnorm.divisive_norm(
          x, summation_window=3, suppression_window=5, sigma=0.5, fast_variance=fv),
      "DN 5x5 per channel": lambda x, fv: divnorm.divisive_norm(
          x, summation_window=5, sigma=0.5, across_channels=False, fast_variance=fv),
  }


def flax_cases(shape) -> dict:
  """Name -> f(x, use_fast_variance) for flax.linen's modules (scale and bias off)."""
  eps = SIGMA**2
  groups = 8 if shape[-1] % 8 == 0 else 1
  off = dict(use_scale=False, use_bias=False, epsilon=eps)

  def apply(module, x, **kw):
    variables = module.init(jax.random.key(0), x)
    out = module.apply(variables, x, **kw)
    return out[0] if isinstance(out, tuple) else out

  return {
      "flax BN": lambda x, fv: apply(nn.BatchNorm(use_running_average=False,
                                                  use_fast_variance=fv, **off), x,
                                     mutable=["batch_stats"]),
      "flax LN (H,W,C)": lambda x, fv: apply(nn.LayerNorm(reduction_axes=(1, 2, 3),
                                                          use_fast_variance=fv, **off), x),
      "flax LN (C)": lambda x, fv: apply(nn.LayerNorm(use_fast_variance=fv, **off), x),
      "flax IN": lambda x, fv: apply(nn.InstanceNorm(use_fast_variance=fv, **off), x),
      f"flax GN ({groups})": lambda x, fv: apply(nn.GroupNorm(num_groups=groups,
                                                              use_fast_variance=fv, **off), x),
  }


def error(f, x32, reference) -> float:
  return float(np.max(np.abs(np.asarray(f(x32), np.float64) - reference)))


def table(shape, draws: int = 1, jit: bool = False) -> list[str]:
  """Markdown: one row per normalizer and mode, one column per offset; printed as it goes.

  Each cell is the largest error over `draws` inputs (seeds 0, 1, ...); with `jit`, every
  function is compiled whole, as users call it, instead of run op by op.
  """
  inputs = {o: [(o + np.random.default_rng(seed).normal(size=shape)).astype(np.float32)
                for seed in range(draws)] for o in OFFSETS}
  ours, theirs = divnorm_cases(shape), flax_cases(shape)
  compiled = jax.jit if jit else (lambda f: f)
  references = {}
  with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
    for name, f in ours.items():
      for o, xs in inputs.items():
        references[name, o] = [np.asarray(f(x.astype(np.float64), None), np.float64) for x in xs]
  lines = ["| normalizer | mode | " + " | ".join(f"offset {o:g}" for o in OFFSETS) + " |",
           "|---|---|" + "---|" * len(OFFSETS)]
  print("\n".join(lines), flush=True)

  def row(name, mode, f, ref_name):
    errs = [max(error(f, x, r) for x, r in zip(inputs[o], references[ref_name, o], strict=True))
            for o in OFFSETS]
    lines.append(f"| {name} | {mode} | " + " | ".join(f"{e:.1e}" for e in errs) + " |")
    print(lines[-1], flush=True)

  with jax.numpy_dtype_promotion("standard"):
    for name, f in ours.items():
      for mode, fv in (("two-pass (default)", None), ("one-pass", True)):
        if "per channel" in name and fv:
          continue  # one-pass needs whole axes: fast_variance=True is an error there
        row(name, mode, compiled(functools.partial(f, fv=fv)), name)
    for name, f in theirs.items():
      for mode, fv in (("one-pass (flax's default)", True), ("two-pass", False)):
        row(name, mode, compiled(functools.partial(f, fv=fv)), name.removeprefix("flax "))
  return lines


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--quick", action="store_true", help="a tiny shape (CI)")
  p.add_argument("--draws", type=cli.positive_int(1), default=1,
                 help="inputs per offset (seeds 0, 1, ...)")
  p.add_argument("--jit", action="store_true", help="compile each function whole")
  args = p.parse_args(argv)
  shape = QUICK_SHAPE if args.quick else SHAPE
  drawn = f"{args.draws} draws of " if args.draws > 1 else ""
  print(f"Input {'x'.join(map(str, shape))}: {drawn}offset + N(0, 1) in float32; error = max "
        f"|y - y64| (y64: float64 on the same input){', over the draws' if drawn else ''}; "
        f"{'jitted' if args.jit else 'op by op'}.\n")
  table(shape, args.draws, args.jit)
  return 0


if __name__ == "__main__":
  sys.exit(main())
