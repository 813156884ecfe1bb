"""The drop-in cases now against a past revision of divnorm: forward+backward, interleaved.

``python -m benchmarks.against_rev --rev REV [--rounds N] [--quick]``

`benchmarks.same_program` says whether a change altered the compiled programs; this measures
what an altered program costs. REV's whole `divnorm` package is loaded beside the current one
(`before_after.load_normalize`). Each case of `benchmarks.dropin` is timed with both, in the
same interleaved rounds:
- the linen module at flax's default arguments;
- the functional preset.
Both are timed for each flax `use_fast_variance`, in float32 and bfloat16.

Every ratio is time(now) / time(REV): the median over rounds, then min-max.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys

import jax
import jax.numpy as jnp

import divnorm
from benchmarks import before_after, dropin, timing

CASES = [c for c in dropin.CASES if c[0] != "DN"]
QUICK_CASES = [c for c in dropin.QUICK_CASES if c[0] != "DN"]


def calls(case: str, shape, dtype, packages: dict) -> dict:
  """``"<package> <linen|functional> fast=<mode>"`` -> a zero-argument call."""
  x = jax.random.normal(jax.random.key(0), shape, dtype)
  w = jax.random.normal(jax.random.key(1), shape, jnp.float32)
  out = {}
  for fast in (True,) if case == "RMS" else (True, False):
    for tag, (lib, linen) in packages.items():
      _, module, apply_kw = dropin._modules(case, shape, fast, linen=linen)
      step, params = dropin._module_step(module, apply_kw, x)
      out[f"{tag} linen fast={fast}"] = functools.partial(step, x, params, w)
      step = dropin._function_step(dropin._functional(case, shape, fast, module.epsilon, lib))
      out[f"{tag} functional fast={fast}"] = functools.partial(step, x, w)
  return out


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--rev", required=True, help="the git revision to compare with")
  p.add_argument("--rounds", type=int, default=10)
  p.add_argument("--quick", action="store_true", help="tiny shapes, one round (CI)")
  args = p.parse_args(argv)
  if before_after.load_normalize(args.rev) is None:
    print(f"git or revision {args.rev} is not available here", file=sys.stderr)
    return 1
  old = importlib.import_module(f"divnorm_{args.rev}")
  packages = {"now": (divnorm, importlib.import_module("divnorm.linen")),
              "rev": (old, importlib.import_module(f"divnorm_{args.rev}.linen"))}
  print(f"Forward+backward, time now / time at {args.rev}; jax {jax.__version__}.\n")
  print("| case | shape | dtype | contender | now / rev | now ms |\n|---|---|---|---|---|---|")
  for dtype in (jnp.float32, jnp.bfloat16):
    for case, shape in QUICK_CASES if args.quick else CASES:
      cs = calls(case, shape, dtype, packages)
      t = timing.interleaved(cs, rounds=1 if args.quick else args.rounds,
                             target_s=0.0 if args.quick else 0.05)
      for name in (n for n in cs if n.startswith("now ")):
        print(f"| {case} | {'x'.join(map(str, shape))} | {jnp.dtype(dtype).name} | "
              f"{name[4:]} | {t.ratio(name, 'rev' + name[3:])} | {t.median(name) * 1e3:.2f} |",
              flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
