"""The drop-in cases now against a past revision of divnorm: forward+backward, interleaved.

``python -m benchmarks.against_rev --rev REV [--rounds N] [--quick] [--dn] [--forward]
[--cases LN,RMS] [--shapes 64x1024x16,...] [--mask]``

`benchmarks.same_program` says whether a change altered the compiled programs; this measures
what an altered program costs. REV's whole `divnorm` package is loaded beside the current one
(`before_after.load_normalize`). Each case of `benchmarks.dropin` is timed with both, in the
same interleaved rounds:
- the linen module at flax's default arguments;
- the functional preset.
Both are timed for each flax `use_fast_variance`, in float32 and bfloat16. With ``--dn``:
`divnorm.divisive_norm` across channels instead (`DN_CASES`: shapes, windows, a mask,
``fast_variance=True``), float32. ``--forward`` times the forward alone (`dropin`'s),
``--cases`` and ``--shapes`` choose the cases and replace their shapes, and ``--mask`` passes
every layer and function a random mask (80% kept), as in `dropin`.

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
from benchmarks import before_after, cli, dropin, timing

CASES = [c for c in dropin.CASES if c[0] != "DN"]
QUICK_CASES = [c for c in dropin.QUICK_CASES if c[0] != "DN"]
DTYPES = {**dropin.DTYPES, "float16": jnp.float16}


def calls(case: str, shape, dtype, packages: dict, forward: bool = False,
          masked: bool = False) -> dict:
  """``"<package> <linen|functional> fast=<mode>"`` -> a zero-argument call."""
  x = jax.random.normal(jax.random.key(0), shape, dtype)
  w = jax.random.normal(jax.random.key(1), shape, jnp.float32)
  mask = jax.random.uniform(jax.random.key(2), shape) < 0.8 if masked else None  # dropin's
  out = {}
  for fast in (True,) if case == "RMS" else (True, False):
    for tag, (lib, linen) in packages.items():
      _, module, apply_kw = dropin._modules(case, shape, fast, linen=linen)
      step, params = dropin._module_step(module, apply_kw, x, forward)
      out[f"{tag} linen fast={fast}"] = functools.partial(step, x, params, w, mask)
      step = dropin._function_step(dropin._functional(case, shape, fast, module.epsilon, lib),
                                   forward)
      out[f"{tag} functional fast={fast}"] = functools.partial(step, x, w, mask)
  return out


# (shape, summation window, masked, fast_variance): the paper's CNN's size first.
DN_CASES = [((128, 32, 32, 64), (5, 5), False, None), ((32, 32, 32, 3), (5, 5), False, None),
            ((64, 32, 32, 16), (3, 3), False, None), ((64, 32, 32, 16), (9, 9), False, None),
            ((64, 32, 32, 16), (5, 5), True, None), ((64, 32, 32, 16), (5, 5), False, True)]
QUICK_DN_CASES = [((2, 8, 8, 4), (3, 3), False, None), ((2, 8, 8, 4), (3, 3), True, True)]


def dn_calls(shape, window, masked: bool, fast_variance, packages: dict) -> dict:
  """``"<package>"`` -> divisive norm's forward+backward, a zero-argument call."""
  x = jax.random.normal(jax.random.key(0), shape) + 3.0
  w = jax.random.normal(jax.random.key(1), shape)
  mask = jax.random.uniform(jax.random.key(2), shape) > 0.2 if masked else None
  out = {}
  for tag, (lib, _) in packages.items():
    def loss(x, w, mask, lib=lib):
      return jnp.sum(lib.divisive_norm(x, summation_window=window, sigma=0.5, mask=mask,
                                       fast_variance=fast_variance) * w)
    out[tag] = functools.partial(jax.jit(jax.value_and_grad(loss)), x, w, mask)
  return out


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--rev", required=True, help="the git revision to compare with")
  p.add_argument("--rounds", type=cli.positive_int(10), default=10)
  p.add_argument("--quick", action="store_true", help="tiny shapes, one round (CI)")
  p.add_argument("--dn", action="store_true", help="divisive norm across channels instead")
  p.add_argument("--forward", action="store_true", help="the forward alone (not with --dn)")
  p.add_argument("--cases", default="LN,BN,GN,RMS", type=cli.names_of(dict(CASES)))
  p.add_argument("--shapes", default=None, type=cli.shapes,
                 help="shapes for every case, e.g. 64x1024x16")
  p.add_argument("--dtypes", default="float32,bfloat16", type=cli.names_of(DTYPES),
                 help="input dtypes, e.g. float16")
  p.add_argument("--mask", action="store_true",
                 help="a random mask, 80%% kept, for every layer and function (not with --dn)")
  args = p.parse_args(argv)
  if args.mask and args.dn:
    p.error("--mask is for the drop-in cases; --dn times masked cases of its own")
  cases = dropin.with_shapes(
      [c for c in (QUICK_CASES if args.quick else CASES) if c[0] in args.cases], args.shapes)
  if before_after.load_normalize(args.rev) is None:
    print(f"git or revision {args.rev} is not available here", file=sys.stderr)
    return 1
  old = importlib.import_module(f"divnorm_{args.rev}")
  packages = {"now": (divnorm, importlib.import_module("divnorm.linen")),
              "rev": (old, importlib.import_module(f"divnorm_{args.rev}.linen"))}
  what = "Forward alone" if args.forward and not args.dn else "Forward+backward"
  mask_note = ", masked (80% kept)" if args.mask else ""
  print(f"{what}{mask_note}, time now / time at {args.rev}; jax {jax.__version__}.\n")
  if args.dn:
    print("| shape | window | mask | fast_variance | now / rev | now ms |\n|---|---|---|---|---|---|")
    for shape, window, masked, fast in QUICK_DN_CASES if args.quick else DN_CASES:
      cs = dn_calls(shape, window, masked, fast, packages)
      t = timing.interleaved(cs, rounds=1 if args.quick else args.rounds,
                             target_s=0.0 if args.quick else 0.2)
      print(f"| {'x'.join(map(str, shape))} | {'x'.join(map(str, window))} | {masked} | "
            f"{fast} | {t.ratio('now', 'rev')} | {t.median('now') * 1e3:.2f} |", flush=True)
    return 0
  print("| case | shape | dtype | contender | now / rev | now ms |\n|---|---|---|---|---|---|")
  for dtype in (DTYPES[name] for name in args.dtypes):
    for case, shape in cases:
      cs = calls(case, shape, dtype, packages, args.forward, args.mask)
      t = timing.interleaved(cs, rounds=1 if args.quick else args.rounds,
                             target_s=0.0 if args.quick else 0.05)
      for name in (n for n in cs if n.startswith("now ")):
        print(f"| {case} | {'x'.join(map(str, shape))} | {jnp.dtype(dtype).name} | "
              f"{name[4:]} | {t.ratio(name, 'rev' + name[3:])} | {t.median(name) * 1e3:.2f} |",
              flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
