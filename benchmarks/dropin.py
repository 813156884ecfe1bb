"""divnorm as a drop-in for flax.linen: forward+backward time over flax's, one interleaved run.

For each case (a normalizer and an input shape) and dtype, every contender is timed in the
same interleaved rounds (`benchmarks.timing`), and each ratio is taken within a round:

- ``linen``: ``divnorm.linen.<Module>`` against ``flax.linen.<Module>``, both with flax's
  default arguments (scale and bias on, flax's default epsilon) and the variance mode of
  the table: ``use_fast_variance=True`` (flax's default) or ``False`` (flax's two-pass).
  Forward+backward is ``grad`` of ``<y, w>`` with respect to the input and the parameters
  (a training step's backward).
- ``nnx``: ``divnorm.nnx.<Module>`` against ``flax.nnx.<Module>``, the same way (``--nnx``).
- ``functional``: the functional preset (``divnorm.layer_norm``, ``batch_norm``,
  ``group_norm``, ``rms_norm``) with ``fast_variance`` set to the same mode, against the
  flax module with scale and bias off (the functions have none); ``grad`` with respect to
  the input.
- ``DN``: ``divnorm.divisive_norm(summation_window=(5, 5))`` across channels, in the
  table's ``fast_variance`` mode, against flax's LayerNorm over (H, W, C) at its default
  (one-pass, scale and bias off). Both modes take divisive norm's corrected two-pass (windows
  in A): its one-pass and two-pass rows are one compiled program, and their gap is noise.

BN is training mode: batch statistics; the step returns only the gradient, so XLA removes the
running averages' update on both sides (it is not timed). LN reduces
(H, W, C) on the CNN shapes and the last axis on ``8x512x768``. Every ratio is
time(divnorm) / time(flax): the median over rounds, then min-max.

    python -m benchmarks.dropin [--rounds N] [--quick] [--dtypes float32,bfloat16]
        [--cases LN,BN,GN,RMS,DN] [--modes one-pass,two-pass] [--nnx] [--profile]
        [--forward] [--shapes 64x1024x16,...] [--mask] [--eval] [--params-first]

``--forward`` times the forward alone (``jit`` of the output: inference), ``--shapes``
replaces every case's shapes (e.g. ``--cases LN --shapes 64x1024x16``). ``--mask`` passes
every layer and preset a random boolean mask (80% kept, the same for all; an argument of
the jitted step, not a constant; no nnx, no DN). The work is the same up to the masked-out
positions: divnorm's output is 0 there and their gradient 0, where flax computes the
formula's value (`docs/compatibility.md`); the kept positions agree. ``--eval`` times
BatchNorm in evaluation (``use_running_average=True``, the preset's ``training=False``: a
CNN's inference; BN only). ``--params-first``: the linen steps return the parameters'
gradients before the input's, as the nnx steps do. The outputs' order is the compiled
program's: XLA's CPU backend may schedule its kernels otherwise (layer norm over 768
features: analysis.md, session 31).

``--profile`` prints, instead of the ratios, the time of each XLA operation of every
contender's compiled program (`benchmarks.xla.op_times`): where a ratio comes from.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import time
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import divnorm
import divnorm.linen as dl
import divnorm.nnx as dx
from benchmarks import cli, report, timing, xla

CNN_SHAPES = [(100, 32, 32, 32), (128, 32, 32, 64)]
SEQ_SHAPE = (8, 512, 768)
CASES = [*((name, s) for s in CNN_SHAPES for name in ("LN", "BN", "GN")),
         ("LN", SEQ_SHAPE), ("RMS", SEQ_SHAPE), *(("DN", s) for s in CNN_SHAPES)]
QUICK_CASES = [("LN", (2, 8, 8, 8)), ("BN", (2, 8, 8, 8)), ("GN", (2, 8, 8, 8)),
               ("LN", (2, 4, 16)), ("RMS", (2, 4, 16)), ("DN", (2, 8, 8, 8))]
MODES = {"one-pass": True, "two-pass": False}  # flax's use_fast_variance
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
DN_SIGMA = 0.5


def _ln_axes(shape) -> tuple[int, ...]:
  return tuple(range(1, len(shape))) if len(shape) == 4 else (len(shape) - 1,)


def _modules(case: str, shape, fast: bool, linen=dl, evaluate: bool = False, **affine):
  """``(flax module, divnorm module, apply kwargs)`` for a case, at flax's defaults; the
  divnorm module from the package `linen` (a past revision's ``divnorm.linen``, too);
  `evaluate`: BatchNorm with its running averages."""
  mode = {"use_fast_variance": fast}
  if case == "LN":
    kw = dict(reduction_axes=_ln_axes(shape), **mode, **affine)
    return nn.LayerNorm(**kw), linen.LayerNorm(**kw), {}
  if case == "BN":
    kw = dict(use_running_average=evaluate, **mode, **affine)
    return nn.BatchNorm(**kw), linen.BatchNorm(**kw), {} if evaluate else {
        "mutable": ["batch_stats"]}
  if case == "GN":
    kw = dict(num_groups=8, **mode, **affine)
    return nn.GroupNorm(**kw), linen.GroupNorm(**kw), {}
  if case == "RMS":
    kw = dict(use_scale=affine.get("use_scale", True))
    return nn.RMSNorm(**kw), linen.RMSNorm(**kw), {}
  raise ValueError(case)


def _nnx_modules(case: str, shape, fast: bool):
  """``(flax.nnx module, divnorm.nnx module)`` for a case, at flax's defaults."""
  from flax import nnx

  c, mode = shape[-1], {"use_fast_variance": fast}
  kw = {"LN": dict(reduction_axes=_ln_axes(shape), **mode),
        "BN": dict(use_running_average=False, **mode), "GN": dict(num_groups=8, **mode),
        "RMS": {}}[case]
  name = {"LN": "LayerNorm", "BN": "BatchNorm", "GN": "GroupNorm", "RMS": "RMSNorm"}[case]
  return (getattr(nnx, name)(c, **kw, rngs=nnx.Rngs(0)), getattr(dx, name)(c, **kw))


def _nnx_step(module):
  """``jit(grad(<y, w>))`` of an nnx module with respect to the input and its parameters
  (`nnx.grad`, which lets BatchNorm update its statistics inside the traced step)."""
  from flax import nnx

  graphdef, params, rest = nnx.split(module, nnx.Param, ...)

  def step(x, params, w, rest):
    module = nnx.merge(graphdef, params, rest)
    loss = lambda m, x: jnp.sum(m(x).astype(jnp.float32) * w)  # noqa: E731
    return nnx.grad(loss, argnums=(0, 1))(module, x)

  return jax.jit(step), params, rest


def _functional(case: str, shape, fast: bool, epsilon: float, lib=divnorm,
                evaluate: bool = False):
  """The case's functional preset from the package `lib` (a past revision's, too)."""
  sigma = math.sqrt(epsilon)
  if case == "LN":
    return functools.partial(lib.layer_norm, reduction_axes=_ln_axes(shape), sigma=sigma,
                             fast_variance=fast)
  if case == "BN":
    stats = lib.batch_stats_init(shape)
    return lambda x, **kw: lib.batch_norm(x, stats, training=not evaluate, sigma=sigma,
                                          fast_variance=fast, **kw)
  if case == "GN":
    return functools.partial(lib.group_norm, num_groups=8, sigma=sigma, fast_variance=fast)
  return functools.partial(lib.rms_norm, reduction_axes=-1, sigma=sigma)


def _first(out):
  return out[0] if isinstance(out, tuple) else out


def _module_step(module, apply_kw, x, forward: bool = False, params_first: bool = False):
  """``jit(grad(<y, w>))`` with respect to the input and the parameters, bound to `x`;
  `forward`: ``jit`` of the output alone (`w` unused); `params_first`: the parameters'
  gradients returned first (as `_nnx_step`'s). The step takes a mask last (None: no mask)."""
  variables = module.init(jax.random.key(0), x)
  params = variables.get("params", {})
  rest = {k: v for k, v in variables.items() if k != "params"}

  def apply(x, params, w, mask):
    kw = apply_kw if mask is None else {**apply_kw, "mask": mask}
    return _first(module.apply({"params": params, **rest}, x, **kw))

  def loss(x, params, w, mask):
    return jnp.sum(apply(x, params, w, mask).astype(jnp.float32) * w)

  grad = jax.grad(loss, argnums=(0, 1))
  step = apply if forward else (lambda *a: grad(*a)[::-1]) if params_first else grad
  return jax.jit(step), params


def _function_step(f, forward: bool = False):
  """As `_module_step`, for a function of `x` (and a ``mask`` keyword)."""
  def out(x, mask):
    return _first(f(x) if mask is None else f(x, mask=mask))

  def loss(x, w, mask):
    return jnp.sum(out(x, mask).astype(jnp.float32) * w)
  return jax.jit((lambda x, w, mask: out(x, mask)) if forward else jax.grad(loss))


def contenders(case: str, shape, dtype, fast: bool, with_nnx: bool = False,
               forward: bool = False, masked: bool = False, evaluate: bool = False,
               params_first: bool = False) -> dict:
  """Name -> zero-argument call (compiled and warmed by `timing`), the references first;
  `forward`: the forward alone (no nnx); `masked`: a random mask, 80% kept (no nnx, no
  DN); `evaluate`: BatchNorm's running averages; `params_first`: the linen steps return
  the parameters' gradients first."""
  x = jax.random.normal(jax.random.key(0), shape, dtype)
  w = jax.random.normal(jax.random.key(1), shape, jnp.float32)
  mask = jax.random.uniform(jax.random.key(2), shape) < 0.8 if masked else None
  calls = {}
  if case == "DN":
    flax_ln, _, _ = _modules("LN", shape, True, use_scale=False, use_bias=False)
    g = _function_step(lambda x: flax_ln.apply({}, x), forward)
    calls["flax LN(HWC)"] = functools.partial(g, x, w, None)
    for label, fv in (("DN two-pass", None), ("DN one-pass", True)):
      g = _function_step(functools.partial(divnorm.divisive_norm, summation_window=(5, 5),
                                           sigma=DN_SIGMA, fast_variance=fv), forward)
      calls[label] = functools.partial(g, x, w, None)
    return calls
  theirs, ours, apply_kw = _modules(case, shape, fast, evaluate=evaluate)
  for label, module in (("flax", theirs), ("linen", ours)):
    g, params = _module_step(module, apply_kw, x, forward, params_first)
    calls[label] = functools.partial(g, x, params, w, mask)
  if with_nnx and not (forward or masked or evaluate):
    for label, module in zip(("flax nnx", "nnx"), _nnx_modules(case, shape, fast), strict=True):
      g, params, rest = _nnx_step(module)
      calls[label] = functools.partial(g, x, params, w, rest)
  bare, _, apply_kw = _modules(case, shape, fast, evaluate=evaluate, use_scale=False,
                               use_bias=False)
  g, params = _module_step(bare, apply_kw, x, forward)
  calls["flax, no affine"] = functools.partial(g, x, params, w, mask)
  functional = _functional(case, shape, fast, bare.epsilon, evaluate=evaluate)
  calls["functional"] = functools.partial(_function_step(functional, forward), x, w, mask)
  return calls


# (contender, reference) pairs reported per case.
PAIRS = {"DN": [("DN two-pass", "flax LN(HWC)"), ("DN one-pass", "flax LN(HWC)")],
         None: [("linen", "flax"), ("nnx", "flax nnx"), ("functional", "flax, no affine")]}


class Row(NamedTuple):
  """One contender against its reference, in one case, dtype and variance mode."""

  case: str
  shape: tuple[int, ...]
  contender: str
  ratio: timing.Ratio
  ms: float
  reference_ms: float


def measure(cases, dtype_name: str, mode: str, *, rounds: int, target_s: float,
            with_nnx: bool = False, forward: bool = False, masked: bool = False,
            evaluate: bool = False, params_first: bool = False) -> list[Row]:
  """Every (contender, reference) pair of `PAIRS`, per case, in one dtype and variance mode."""
  fast = MODES[mode]
  rows = []
  for case, shape in cases:
    if case in ("RMS", "DN") and not fast:
      continue  # RMS has no variance mode; DN is timed once, in both of its modes
    calls = contenders(case, shape, DTYPES[dtype_name], fast, with_nnx, forward, masked,
                       evaluate, params_first)
    t = timing.interleaved(calls, rounds=rounds, target_s=target_s)
    rows += [Row(case, tuple(shape), ours, t.ratio(ours, theirs), t.median(ours) * 1e3,
                 t.median(theirs) * 1e3)
             for ours, theirs in PAIRS.get(case, PAIRS[None]) if ours in calls]
  return rows


def table_lines(rows: list[Row], dtype_name: str, mode: str, forward: bool = False,
                masked: bool = False, evaluate: bool = False,
                params_first: bool = False) -> list[str]:
  """The markdown table of `measure`'s rows for one dtype and one variance mode."""
  fast = MODES[mode]
  notes = [n for n, on in (("forward alone", forward), ("masked (80% kept)", masked),
                           ("BatchNorm in evaluation", evaluate),
                           ("linen steps return the parameters' gradients first",
                            params_first)) if on]
  out = [f"**{dtype_name}, flax `use_fast_variance={fast}`** (divnorm `fast_variance={fast}`)"
         + "".join(f", {n}" for n in notes),
         "", "| case | shape | divnorm | / flax | divnorm ms | flax ms |",
         "|---|---|---|---|---|---|"]
  out += [f"| {r.case} | {'x'.join(map(str, r.shape))} | {r.contender} | {r.ratio} | "
          f"{r.ms:.2f} | {r.reference_ms:.2f} |" for r in rows]
  return out + [""]


def table(cases, dtype_name: str, mode: str, *, rounds: int, target_s: float,
          with_nnx: bool = False, forward: bool = False, masked: bool = False,
          evaluate: bool = False, params_first: bool = False) -> list[str]:
  """Markdown lines for one dtype and one variance mode, printed when measured."""
  lines = table_lines(measure(cases, dtype_name, mode, rounds=rounds, target_s=target_s,
                              with_nnx=with_nnx, forward=forward, masked=masked,
                              evaluate=evaluate, params_first=params_first),
                      dtype_name, mode, forward, masked, evaluate, params_first)
  print("\n".join(lines), flush=True)
  return lines


def profile(cases, dtype_name: str, mode: str, *, forward: bool = False, masked: bool = False,
            evaluate: bool = False, params_first: bool = False) -> None:
  """Prints each contender's XLA operations and their time per call, largest first, for the
  programs `measure` times with the same options."""
  fast = MODES[mode]
  for case, shape in cases:
    if case in ("RMS", "DN") and not fast:
      continue
    for name, call in contenders(case, shape, DTYPES[dtype_name], fast, forward=forward,
                                 masked=masked, evaluate=evaluate,
                                 params_first=params_first).items():
      times = xla.op_times(call)
      print(f"**{case} {'x'.join(map(str, shape))} {dtype_name} {mode}, {name}**: "
            f"{sum(times.values()) * 1e3:.2f} ms in {len(times)} operations\n")
      print("| operation | ms |\n|---|---|")
      for op, seconds in times.items():
        print(f"| {op} | {seconds * 1e3:.3f} |")
      print(flush=True)


def with_shapes(cases, shapes: list[tuple[int, ...]] | None):
  """`cases` ``(case, shape)``, each case on every shape of `shapes` (``--shapes``, parsed)
  instead of its own; unchanged if `shapes` is None."""
  if not shapes:
    return cases
  return [(c, s) for c in dict(cases) for s in shapes]


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--rounds", type=cli.positive_int(15), default=15)
  p.add_argument("--quick", action="store_true", help="tiny shapes, one round (CI)")
  p.add_argument("--dtypes", default="float32,bfloat16", type=cli.names_of(DTYPES))
  p.add_argument("--modes", default="one-pass,two-pass", type=cli.names_of(MODES))
  p.add_argument("--cases", default="LN,BN,GN,RMS,DN", type=cli.names_of(dict(CASES)))
  p.add_argument("--nnx", action="store_true", help="also divnorm.nnx against flax.nnx")
  p.add_argument("--profile", action="store_true", help="XLA operation times, no ratios")
  p.add_argument("--forward", action="store_true",
                 help="the forward alone (jit of the output; no nnx), not forward+backward")
  p.add_argument("--shapes", default=None, type=cli.shapes,
                 help="input shapes for every case instead of its own, e.g. 64x1024x16,8x512x768")
  p.add_argument("--mask", action="store_true",
                 help="a random mask (80%% kept) for every layer and preset (no nnx, no DN)")
  p.add_argument("--eval", action="store_true",
                 help="BatchNorm in evaluation (its running averages); BN only")
  p.add_argument("--params-first", action="store_true",
                 help="the linen steps return the parameters' gradients first (as nnx's)")
  args = p.parse_args(argv)
  if args.mask and "DN" in args.cases:
    args.cases = [c for c in args.cases if c != "DN"]  # DN has no flax counterpart with a mask
  if args.eval and set(args.cases) != {"BN"}:
    p.error("--eval times BatchNorm alone: pass --cases BN")
  cases = [(c, s) for c, s in (QUICK_CASES if args.quick else CASES) if c in args.cases]
  cases = with_shapes(cases, args.shapes)
  rounds = 1 if args.quick else args.rounds
  target_s = 0.0 if args.quick else 0.05
  cmd = "python -m benchmarks.dropin " + " ".join(argv if argv is not None else sys.argv[1:])
  print("\n".join([f"Command: `{cmd.strip()}`", "", *report.machine(), ""]), flush=True)
  t0 = time.time()
  for dtype_name in args.dtypes:
    for mode in args.modes:
      if args.profile:
        profile(cases, dtype_name, mode, forward=args.forward, masked=args.mask,
                evaluate=args.eval, params_first=args.params_first)
      else:
        table(cases, dtype_name, mode, rounds=rounds, target_s=target_s, with_nnx=args.nnx,
              forward=args.forward, masked=args.mask, evaluate=args.eval,
              params_first=args.params_first)
  print(f"Total {time.time() - t0:.0f} s; rounds {rounds}, jax {jax.__version__}, "
        f"numpy {np.__version__}.")
  return 0


if __name__ == "__main__":
  sys.exit(main())
