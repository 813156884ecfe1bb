"""``python -m benchmarks.gpu_fusion``: how many kernels XLA makes of a row normalization.

The device check (`benchmarks.device_check`, BENCHMARKS.md "GPU") found divnorm's layer and
RMS norm over the last axis slower than flax's on a GPU at the same settings, where the
tensors are small enough that a call's time is mostly its kernels' launches. This measures,
for layer norm and RMS norm over the last axis, forward and forward+backward, each
contender's kernels in XLA's compiled program (the entry computation's fusions, custom
calls and other launched operations, with their fusion kinds), the bytes XLA's cost
analysis counts, and its time in one interleaved run against flax's:

- ``flax``: flax.linen's function (scale and bias off), one-pass and two-pass for LN;
- ``divnorm``: `divnorm.layer_norm` (``fast_variance`` True and False) and
  `divnorm.rms_norm`, their derivative the core's hand-written one (`core.normalized`);
- written-out forms that each leave one of divnorm's constructions out, differentiated by
  JAX: ``plain two-pass`` (no shift, no barrier); ``shifted two-pass`` (divnorm's shift
  ``k``, the mean of each row's first two entries, no barrier); ``first-entry shifted
  two-pass`` (the row's first entry as ``k``); ``plain rms`` (no overflow guard);
  ``guarded rms`` (an overflow guard that compares and selects, as
  `statistics.inverse_scale` did before it became ``rem(d, inf)``);
- divnorm's own function with one construction replaced while it is traced:
  ``divnorm two-pass, no barrier`` (`statistics.copies` returns its copies without an
  optimization barrier; on a CUDA GPU layer norm over the last axis now takes
  `statistics.row_two_pass`, which has none, so this is divnorm's own program there),
  ``divnorm, no guard`` (`inverse_scale` without the overflow guard);
- the modules at flax's defaults (scale and bias on): `divnorm.linen.LayerNorm` and
  ``RMSNorm`` against flax.linen's, forward+backward in the input and the parameters.

Each float32 forward of layer and RMS norm also gets its largest error against float64 at
offsets 0, 1e4 and 1e6 (unit spread), as the device computes it: a faster form must keep
divnorm's accuracy at large offsets.

Writes ``gpu_fusion.md`` (the tables) and ``gpu_fusion_hlo.txt`` (every compiled program of
the first shape) under ``--out``; a diagnosis, no library code depends on it. With
``--row_lengths``, ``gpu_fusion_row_lengths.md`` instead: layer norm over rows of 4096 to
65536 entries, either side of `core.FUSED_ROW_LIMIT`, divnorm's choice against each of its
two paths forced (`row_length_contenders`) and flax's. With ``--modules``,
``gpu_fusion_modules.md`` and its programs: the LayerNorm modules at flax's defaults from
8x512x768 to 32x2048x1024, forward, forward+backward, and forward+backward in the input
alone, divnorm's as it chooses and with each of its GPU paths forced (`module_contenders`).

    python -m benchmarks.gpu_fusion --out /tmp/gf [--quick] [--rounds 9] \
      [--row_lengths | --modules]
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import pathlib
import re
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import divnorm
import divnorm.linen as dl
from benchmarks import cli, report, timing, xla
from divnorm._src import core, statistics
from divnorm._src.fields import Field
from divnorm._src.statistics import variance_floor

EPS = 1e-6  # flax's default epsilon; divnorm's sigma = sqrt(EPS)
SHAPES = {"full": [((8, 512, 768), "float32"), ((8, 512, 768), "bfloat16"),
                   ((32, 2048, 1024), "float32")],
          "quick": [((2, 4, 16), "float32")]}
# LayerNorm modules from a transformer's small to large activations.
MODULE_SHAPES = {"full": [((8, 512, 768), "float32"), ((8, 2048, 1024), "float32"),
                          ((32, 2048, 1024), "float32"), ((32, 2048, 1024), "bfloat16")],
                 "quick": [((2, 4, 16), "float32")]}
# Rows either side of `core.FUSED_ROW_LIMIT` (2**14 entries), about 2**24 entries each.
ROW_LENGTHS = {"full": [(4096, 4096), (1024, 16384), (1024, 16392), (512, 32768), (256, 65536)],
               "quick": [(4, 16), (4, 24)]}
LAUNCHED = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*.*?\s([a-z][a-z0-9\-]*)\((.*)$")
NOT_LAUNCHED = {"parameter", "constant", "tuple", "get-tuple-element", "bitcast"}


# ---- the contenders: x -> y over the last axis, no scale or bias ---------------------------

def _mean(t):
  return jnp.mean(t, axis=-1, keepdims=True)


def plain_two_pass(x):
  x32 = x.astype(jnp.float32)
  v = x32 - _mean(x32)
  return (v * lax.rsqrt(_mean(v * v) + EPS)).astype(x.dtype)


def shifted_two_pass(x):
  x32 = x.astype(jnp.float32)
  k = lax.stop_gradient(_mean(x32[..., :2]))
  u = x32 - k
  v = u - _mean(u)
  return (v * lax.rsqrt(_mean(v * v) + EPS)).astype(x.dtype)


def first_entry_shifted_two_pass(x):
  x32 = x.astype(jnp.float32)
  u = x32 - lax.stop_gradient(x32[..., :1])
  v = u - _mean(u)
  return (v * lax.rsqrt(_mean(v * v) + EPS)).astype(x.dtype)


def plain_rms(x):
  x32 = x.astype(jnp.float32)
  return (x32 * lax.rsqrt(_mean(jnp.square(x32)) + EPS)).astype(x.dtype)


def guarded_rms(x):
  x32 = x.astype(jnp.float32)
  var = _mean(jnp.square(x32))
  r = lax.rsqrt(var + EPS + np.float32(variance_floor(np.float32)))
  r = r + lax.stop_gradient(jnp.where(var < np.float32(np.inf), np.float32(0), np.nan))
  return (x32 * r).astype(x.dtype)


def _patched(f, **names):
  """`f` traced with divnorm's private `names` replaced (module path -> object): one of its
  constructions left out of its own program, for this diagnosis only."""
  def g(*args):
    saved = []
    for dotted, new in names.items():
      mod, attr = dotted.rsplit(".", 1)
      mod = importlib.import_module("divnorm._src." + mod)
      saved.append((mod, attr, getattr(mod, attr)))
      setattr(mod, attr, new)
    try:
      return f(*args)
    finally:
      for mod, attr, old in saved:
        setattr(mod, attr, old)
  return g


def _no_barrier(t, n):
  return (t,) * n


def _unguarded(var, sigma, dt=None):
  dt = var.dtype if dt is None else dt
  return lax.rsqrt(var + jnp.square(jnp.asarray(sigma, dt)) + np.asarray(variance_floor(dt), dt))


def _flax(module):
  return lambda x: module.apply({}, x)


def functional() -> dict:
  """Name -> f(x) for layer norm and RMS norm over the last axis."""
  sigma = float(np.sqrt(EPS))
  bare = dict(use_scale=False, use_bias=False, epsilon=EPS)
  return {
      "LN": {
          "flax one-pass": _flax(nn.LayerNorm(**bare, use_fast_variance=True)),
          "flax two-pass": _flax(nn.LayerNorm(**bare, use_fast_variance=False)),
          "divnorm one-pass": functools.partial(divnorm.layer_norm, reduction_axes=-1,
                                                sigma=sigma, fast_variance=True),
          "divnorm two-pass": functools.partial(divnorm.layer_norm, reduction_axes=-1,
                                                sigma=sigma, fast_variance=False),
          "divnorm two-pass, no barrier": _patched(
              functools.partial(divnorm.layer_norm, reduction_axes=-1, sigma=sigma,
                                fast_variance=False),
              **{"statistics.copies": _no_barrier}),  # `widened` too
          "plain two-pass": plain_two_pass,
          "shifted two-pass": shifted_two_pass,
          "first-entry shifted two-pass": first_entry_shifted_two_pass,
      },
      "RMS": {
          "flax": _flax(nn.RMSNorm(use_scale=False, epsilon=EPS)),
          "divnorm": functools.partial(divnorm.rms_norm, reduction_axes=-1, sigma=sigma),
          "divnorm, no guard": _patched(
              functools.partial(divnorm.rms_norm, reduction_axes=-1, sigma=sigma),
              **{"rms.inverse_scale": _unguarded}),
          "plain rms": plain_rms,
          "guarded rms": guarded_rms,
      },
  }


def _function_programs(f, x, w):
  fwd = jax.jit(f)
  fwdbwd = jax.jit(jax.grad(lambda x, w: jnp.sum(f(x).astype(jnp.float32) * w)))
  return {"fwd": (fwd, (x,)), "fwd+bwd": (fwdbwd, (x, w))}


def _module_programs(module, x, w, params=None):
  """``{"fwd+bwd": (jitted grad in x and the parameters, args)}``; `params` default:
  the module's own ``init`` on `x`."""
  params = module.init(jax.random.key(0), x)["params"] if params is None else params

  def loss(x, params, w):
    return jnp.sum(module.apply({"params": params}, x).astype(jnp.float32) * w)

  return {"fwd+bwd": (jax.jit(jax.grad(loss, argnums=(0, 1))), (x, params, w))}


def modules() -> dict:
  """Name -> module, at flax's defaults (scale and bias on)."""
  return {"LN module": {"flax": nn.LayerNorm(), "divnorm.linen": dl.LayerNorm()},
          "RMS module": {"flax": nn.RMSNorm(), "divnorm.linen": dl.RMSNorm()}}


def layer_norm_module_programs(module, x, w, patches=None) -> dict:
  """A LayerNorm module at flax's defaults: ``fwd``, ``fwd+bwd`` (in `x` and the
  parameters) and ``fwd+bwd, x only``; traced with divnorm's private `patches` (`_patched`)."""
  params = module.init(jax.random.key(0), x)["params"]

  def apply(x, params):
    return module.apply({"params": params}, x)

  if patches:
    apply = _patched(apply, **patches)

  def loss(x, params, w):
    return jnp.sum(apply(x, params).astype(jnp.float32) * w)

  return {"fwd": (jax.jit(apply), (x, params)),
          "fwd+bwd": (jax.jit(jax.grad(loss, argnums=(0, 1))), (x, params, w)),
          "fwd+bwd, x only": (jax.jit(jax.grad(loss)), (x, params, w))}


def module_contenders() -> dict:
  """Name -> ``(LayerNorm module, patches)`` for `layer_norm_module_programs`: flax's in
  both modes, divnorm's as it chooses (`core.LAYER_FUSED_SIZE`), and with each GPU path
  forced, ``row path`` (`row_two_pass` at any size) and ``core path`` (`core.row_field`
  false, the path before `row_two_pass`)."""
  return {"flax": (nn.LayerNorm(), None),
          "flax two-pass": (nn.LayerNorm(use_fast_variance=False), None),
          "divnorm.linen": (dl.LayerNorm(), None),
          "divnorm.linen, row path": (dl.LayerNorm(), {"core.LAYER_FUSED_SIZE": 2**62}),
          "divnorm.linen, core path": (dl.LayerNorm(), {"core.row_field": lambda *a: False})}


def row_length_contenders() -> dict:
  """Name -> f(x): layer norm over the last axis, divnorm's choice of path and each path
  forced (``fused rows``: `statistics.row_two_pass` differentiated by JAX; ``core
  two-pass``: `core.normalized`), against flax's, to time `core.FUSED_ROW_LIMIT`."""
  sigma = jnp.float32(np.sqrt(EPS))

  def forced(path, strategy):
    def f(x):
      a = Field((x.ndim - 1,), ())
      return path(x, sigma, None, strategy, a, a, "valid", None)[0]
    return f

  ln = functional()["LN"]
  return {"flax one-pass": ln["flax one-pass"], "flax two-pass": ln["flax two-pass"],
          "divnorm": ln["divnorm two-pass"],
          "fused rows": forced(core.formula, statistics.row_two_pass),
          "core two-pass": forced(core.normalized, statistics.two_pass)}


# ---- the compiled program ------------------------------------------------------------------

def kernels(hlo_text: str) -> list[str]:
  """The launched operations of the entry computation: ``opcode`` or ``fusion:kind``."""
  out, entry = [], False
  for line in hlo_text.splitlines():
    if line.startswith("ENTRY"):
      entry = True
      continue
    if entry and line.startswith("}"):
      break
    m = LAUNCHED.match(line) if entry else None
    if not m or m.group(1) in NOT_LAUNCHED:
      continue
    op, rest = m.group(1), m.group(2)
    kind = re.search(r"kind=(k\w+)", rest)
    name = op + (":" + kind.group(1)[1:] if kind else "")
    if "__triton" in rest or "triton" in rest.split("calls=")[-1][:80]:
      name += "(triton)"
    out.append(name)
  return out


def summary(names: list[str]) -> str:
  counts: dict[str, int] = {}
  for n in names:
    counts[n] = counts.get(n, 0) + 1
  return ", ".join(f"{c} {n}" for n, c in sorted(counts.items()))


# ---- the run -------------------------------------------------------------------------------

OFFSETS = (0.0, 1e4, 1e6)


def reference(kind: str, x: np.ndarray) -> np.ndarray:
  """Layer norm (``kind`` "LN") or RMS norm over the last axis in float64, epsilon `EPS`."""
  v = x - x.mean(-1, keepdims=True) if kind == "LN" else x
  return v / np.sqrt((v * v).mean(-1, keepdims=True) + EPS)


def errors(kind: str, fn, x: jax.Array) -> str:
  """The largest error of the float32 forward `fn` against float64 at each offset of
  `OFFSETS` added to `x` (unit spread): accuracy on the device that compiled it."""
  out = []
  for offset in OFFSETS:
    xo = x + np.float32(offset)
    y = np.asarray(fn(xo), np.float64)
    out.append(float(np.max(np.abs(y - reference(kind, np.asarray(xo, np.float64))))))
  return " / ".join(f"{e:.1e}" for e in out)


def group_rows(label, programs: dict, pass_name: str, rounds: int, target_s: float,
               hlo_out: list[str] | None, kind: str | None = None) -> list[str]:
  """One interleaved timing of every contender of a group (one pass), and its table rows;
  with `kind` ("LN" or "RMS"), also each float32 forward's error (`errors`)."""
  exes, info = {}, {}
  for name, progs in programs.items():
    if pass_name not in progs:
      continue
    fn, args = progs[pass_name]
    exe = fn.lower(*args).compile()
    text = exe.as_text()
    ks = kernels(text)
    info[name] = (len(ks), summary(ks), xla.bytes_accessed(exe))
    exes[name] = functools.partial(exe, *args)
    if kind and pass_name == "fwd" and args[0].dtype == jnp.float32:
      info[name] += (errors(kind, exe, args[0]),)
    if hlo_out is not None:
      hlo_out += [f"===== {label} {pass_name}: {name} =====", text, ""]
  t = timing.interleaved(exes, rounds=rounds, target_s=target_s)
  refs = [n for n in exes if n.startswith("flax")]
  rows = []
  for name in exes:
    n_k, kinds, nbytes, *error = info[name]
    vs = " / ".join(str(t.ratio(name, r)) for r in refs)
    rows.append(f"| {label} | {pass_name} | {name} | {n_k} | {kinds} | {nbytes / 1e6:.1f} | "
                f"{t.median(name) * 1e3:.4f} | {vs} | {error[0] if error else ''} |")
  return rows


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--out", default=os.environ.get("OUT") or "gpu_fusion_out")
  p.add_argument("--quick", action="store_true", help="one tiny shape, 2 rounds (CPU smoke)")
  p.add_argument("--rounds", type=cli.positive_int(9), default=9)
  p.add_argument("--row_lengths", action="store_true",
                 help="layer norm either side of core.FUSED_ROW_LIMIT, each path forced")
  p.add_argument("--modules", action="store_true",
                 help="LayerNorm modules, small to large, divnorm's with each path")
  args = p.parse_args(argv)
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  rounds, target_s = (2, 0.0) if args.quick else (args.rounds, 0.02)
  cmd = "python -m benchmarks.gpu_fusion " + " ".join(argv if argv is not None else sys.argv[1:])
  lines = [f"Command: `{cmd.strip()}`", "", *report.machine(), "",
           "Kernels: the launched operations of XLA's compiled entry computation (fusions with "
           "their kind, custom calls, unfused reductions and copies). MB: XLA cost analysis "
           "bytes accessed. Ratios: time / each flax reference of the group (listed first), "
           "median (min-max) of interleaved rounds. Error: the float32 forward's largest "
           "error against float64 at offsets 0 / 1e4 / 1e6 added to N(0, 1) data, on this "
           "device.", "",
           "| shape dtype | pass | contender | kernels | which | MB | ms | / flax | error |",
           "|---|---|---|---|---|---|---|---|---|"]
  hlo: list[str] = []
  t0 = time.time()
  size = "quick" if args.quick else "full"
  if args.row_lengths:
    name, shapes = "gpu_fusion_row_lengths", [(s, "float32") for s in ROW_LENGTHS[size]]
  elif args.modules:
    name, shapes = "gpu_fusion_modules", MODULE_SHAPES[size]
  else:
    name, shapes = "gpu_fusion", SHAPES[size]
  for i, (shape, dtype) in enumerate(shapes):
    x = jax.random.normal(jax.random.key(0), shape, jnp.float32).astype(dtype)
    w = jax.random.normal(jax.random.key(1), shape, jnp.float32)
    keep = hlo if (i == 0 or args.modules) and not args.row_lengths else None
    if args.row_lengths:
      groups = {"LN": {n: _function_programs(f, x, w) for n, f in row_length_contenders().items()}}
    elif args.modules:
      groups = {"LN module": {n: layer_norm_module_programs(m, x, w, patches)
                              for n, (m, patches) in module_contenders().items()}}
    else:
      groups = {k: {n: _function_programs(f, x, w) for n, f in fs.items()}
                for k, fs in functional().items()}
      groups.update({k: {n: _module_programs(m, x, w) for n, m in ms.items()}
                     for k, ms in modules().items()})
    for kind, programs in groups.items():
      for pass_name in ("fwd", "fwd+bwd", "fwd+bwd, x only"):
        if not any(pass_name in progs for progs in programs.values()):
          continue
        label = f"{kind} {'x'.join(map(str, shape))} {dtype}"
        try:
          rows = group_rows(label, programs, pass_name, rounds, target_s, keep,
                            kind if kind in ("LN", "RMS") else None)
        except Exception as e:  # noqa: BLE001 - one failing group must not stop the run
          rows = [f"| {label} | {pass_name} | FAILED: {type(e).__name__}: {e} |"]
        lines += rows
        print("\n".join(rows), flush=True)
        (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    if not args.row_lengths:
      (out / f"{name}_hlo.txt").write_text("\n".join(hlo))
  lines += ["", f"Total {time.time() - t0:.0f} s."]
  (out / f"{name}.md").write_text("\n".join(lines) + "\n")
  print(lines[-1])
  return 0


if __name__ == "__main__":
  sys.exit(main())
