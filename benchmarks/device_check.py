"""``python -m benchmarks.device_check``: the accelerator check, ready before an accelerator is.

One run, within ``--budget_s`` seconds of wall time (default 330: the device machine allows
six minutes, start-up and compilation included), that writes as it goes under ``--out``
(the device machine's ``$OUT``): ``device_check.md`` (the tables, to paste under a "GPU"
section of BENCHMARKS.md), ``device_check.json`` (every raw number), ``pytest.txt`` (the
core's numerics tests, run on the device) and ``device_check.log`` (the progress lines).

Sections, in order: ``ops`` (every preset and divisive norm against its flax.linen
equivalent, forward and forward+backward, each ``fast_variance`` mode against flax's same
mode, float32 and bfloat16, with the achieved bandwidth against a copy), ``window`` (DN's
window width), ``models`` (train steps of the paper's CNN and a 2-layer LSTM LM, divnorm's
modules against flax's), ``pytest``. This file is the driver: the contenders come from
`benchmarks.contenders`, the interleaved timing from `benchmarks.timing`, XLA's numbers from
`benchmarks.xla`, the networks from `benchmarks.models`, the tests' runner from
`benchmarks.device_pytest` and the output from `benchmarks.device_report`. What is here:
the budget (each section has a share; time one leaves unused passes on; a unit that would
not fit is skipped, compilations still running at a deadline are abandoned) and the
compilation of every function of a unit in parallel threads.

    bash benchmarks/device_check.sh                                  # on the device ($OUT)
    python -m benchmarks.device_check --quick --out /tmp/dc          # CPU smoke run (CI)
"""

from __future__ import annotations

import os
import time

_T0 = time.monotonic()  # the budget counts from here, imports and device start-up included
# The pytest section runs in a second process on the same device: leave it memory.
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.4")

import argparse  # noqa: E402
import concurrent.futures  # noqa: E402
import dataclasses  # noqa: E402
import datetime  # noqa: E402
import functools  # noqa: E402
import importlib.metadata  # noqa: E402
import pathlib  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import divnorm  # noqa: E402
from benchmarks import cli, contenders, models, timing, xla  # noqa: E402
from benchmarks.device_pytest import run_pytest  # noqa: E402
from benchmarks.device_report import Report, ratio_of  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SIGMA, DN_SIGMA = contenders.SIGMA, contenders.DN_SIGMA  # presets: flax epsilon = SIGMA ** 2
MODES = {"default": None, "one-pass": True, "two-pass": False}
VARIANCE_PRESETS = ("BN", "LN", "IN", "GN", "DN")  # RMS has no mean, hence no variance modes
# Shares of the budget, in running order; each section ends by its cumulative share.
SHARES = {"ops": 0.45, "window": 0.07, "models": 0.18, "pytest": 0.30}
# Train-step comparisons: divnorm's module against flax's (the LSTM's DN against flax LN).
CNN_REFS = {"BN": "flax BN", "LN": "flax LN", "DN": "flax LN", "DN*": "flax LN"}
LSTM_REFS = {"LN": "flax LN", "DN": "flax LN"}


@dataclasses.dataclass(frozen=True)
class Config:
  """What a run measures: the full device check, or the shrunk CPU smoke run."""

  shapes: tuple  # (label, shape, DN window width, dtypes), in order of importance
  rounds: int
  target_s: float  # each timing runs a function back to back for about this long
  window_shapes: tuple
  widths: tuple
  cnn: dict
  cnn_variants: tuple
  lstm: dict
  lstm_variants: tuple
  model_target_s: float
  pytest_args: tuple


FULL = Config(
    shapes=tuple((label, shape, width, ("float32", "bfloat16")) for label, shape, width in (
        ("large 128x32x32x64", (128, 32, 32, 64), 5),
        ("CNN conv1 100x32x32x32", (100, 32, 32, 32), 5),
        ("GPU-sized 256x64x64x128", (256, 64, 64, 128), 5),
        ("RNN gates 20x800", (20, 800), 61),
        ("CNN conv2 100x16x16x32", (100, 16, 16, 32), 3),
        ("CNN conv3 100x8x8x64", (100, 8, 8, 64), 3))),
    rounds=9,
    target_s=0.004,
    window_shapes=((100, 32, 32, 32), (256, 64, 64, 128)),
    widths=(3, 5, 9, 15, 21, 31),
    cnn={"batch": 100, "image": (32, 32, 3), "classes": 10},
    cnn_variants=("baseline", "flax BN", "BN", "flax LN", "LN", "DN", "DN*"),
    lstm={"batch": 20, "steps": 20, "hidden": 200, "vocab": 10000, "dn_window": 31},
    lstm_variants=("baseline", "flax LN", "LN", "DN"),
    model_target_s=0.03,
    # shard_map needs 8 devices; the gradient checks (order 2, run op by op) and the vmap
    # check are the slowest and test autodiff rules rather than the device's numerics.
    pytest_args=("-k", "not shard_map and not gradients and not vmap_keeps_one_check"),
)
QUICK = Config(
    shapes=(("tiny 2x8x8x8", (2, 8, 8, 8), 3, ("float32",)),
            ("tiny gates 4x32", (4, 32), 5, ("bfloat16",))),
    rounds=2,
    target_s=0.0,
    window_shapes=((2, 8, 8, 8),),
    widths=(3, 5),
    cnn={"batch": 2, "image": (8, 8, 3), "classes": 10},
    cnn_variants=("BN", "flax LN", "DN*"),  # batch statistics, a flax module, L1
    lstm={"batch": 2, "steps": 3, "hidden": 16, "vocab": 50, "dn_window": 5},
    lstm_variants=("flax LN", "LN"),
    model_target_s=0.0,
    pytest_args=("-k", "test_layer_norm or keep_bfloat16"),
)



# ---- the budget ----------------------------------------------------------------------------

class Clock:
  """The global deadline and each section's share of it."""

  def __init__(self, budget_s: float):
    self.budget_s = budget_s
    self.end = _T0 + budget_s

  @staticmethod
  def elapsed() -> float:
    return time.monotonic() - _T0

  def section_end(self, section: str) -> float:
    share = 0.0
    for name, s in SHARES.items():
      share += s
      if name == section:
        break
    return _T0 + self.budget_s * share

  @staticmethod
  def left(deadline: float) -> float:
    return deadline - time.monotonic()



# ---- compiling: every function of a unit at once ---------------------------------------------

COMPILE_LOG: list[dict] = []


def compile_all(jitted: dict, args, pool, errors: dict, deadline: float
                ) -> tuple[dict, float, float]:
  """Lowers every jitted function here (tracing holds the GIL), compiles them in `pool`.

  `args` is the argument tuple of every function, or a dict: key -> its own tuple.
  Returns the executables, the wall time of tracing plus compiling, and the sum of the
  per-function compile times (their ratio to the wall time after tracing is the parallel
  speed-up). A function that fails to trace or compile, or whose compilation has not
  finished by `deadline`, is left out (its compilation goes on in the background, its
  result unused), with the reason in `errors`. Each call appends its times to
  `COMPILE_LOG`.
  """
  start = time.monotonic()
  lowered = {}
  for key, fn in jitted.items():
    try:
      lowered[key] = fn.lower(*(args[key] if isinstance(args, dict) else args))
    except Exception as e:  # noqa: BLE001 - one broken contender must not stop the run
      errors[str(key)] = f"lower: {type(e).__name__}: {e}"
  trace_s = time.monotonic() - start

  def one(key):
    t = time.monotonic()
    return lowered[key].compile(), time.monotonic() - t

  futures = {pool.submit(one, key): key for key in lowered}
  concurrent.futures.wait(futures, timeout=max(0.0, deadline - time.monotonic()))
  exes, total = {}, 0.0
  for fut, key in futures.items():
    if not fut.done():
      fut.cancel()
      errors[str(key)] = "compilation not finished by the deadline"
      continue
    try:
      exes[key], seconds = fut.result()
      total += seconds
    except Exception as e:  # noqa: BLE001
      errors[str(key)] = f"compile: {type(e).__name__}: {e}"
  COMPILE_LOG.append({"functions": len(jitted), "trace_s": trace_s,
                      "wall_s": time.monotonic() - start, "compile_sum_s": total})
  return exes, time.monotonic() - start, total



def _bytes_accessed(exe) -> float:
  try:
    return xla.bytes_accessed(exe)
  except Exception:  # noqa: BLE001 - a backend without cost analysis
    return float("nan")


def inputs(shape, dtype: str):
  x = jax.random.normal(jax.random.key(1), shape, jnp.float32).astype(dtype)
  w = jax.random.normal(jax.random.key(2), shape, jnp.float32).astype(dtype)
  return x, w


# ---- sections 1 and 2: presets and DN against flax, like for like, and bandwidth -----------

def op_contenders(shape, width: int, refused: dict) -> tuple[dict, list]:
  """Contender name -> f(x), and the comparisons ``(preset, mode, ours, flax)``.

  divnorm's functions in each `fast_variance` mode (`contenders.divnorm_presets`) against
  flax's in the same `use_fast_variance` mode (`contenders.flax_presets`; "default" is each
  library's own default); DN across all channels against flax LayerNorm over the same
  tensor. A mode that divnorm refuses on this shape (a ValueError) is left out, its message
  put in `refused`.
  """
  flax_default = {"one-pass": contenders.flax_presets(shape, use_fast_variance=True),
                  "two-pass": contenders.flax_presets(shape, use_fast_variance=False)}
  default_mode = "one-pass"  # flax's default: use_fast_variance=True
  fns, pairs = {"copy": contenders.copy}, []
  probe = jax.ShapeDtypeStruct(shape, jnp.float32)
  dn_label = f"DN {width}x{width}" if len(shape) > 2 else f"DN {width}"
  for mode, fv in MODES.items():
    ours = contenders.divnorm_presets(shape, fast_variance=fv)
    ours["DN"] = functools.partial(divnorm.divisive_norm, summation_window=width,
                                   sigma=DN_SIGMA, fast_variance=fv)
    flax_mode = default_mode if mode == "default" else mode
    for preset, f in ours.items():
      if mode != "default" and preset not in VARIANCE_PRESETS:
        continue
      if mode != "default":
        try:  # a mode the library refuses for these fields (e.g. one-pass DN on [B, D])
          jax.eval_shape(f, probe)
        except ValueError as e:
          refused[f"{preset} {mode}"] = str(e)
          continue
      flax_preset = "LN" if preset == "DN" else preset
      label = dn_label if preset == "DN" else preset
      suffix = flax_mode if preset in VARIANCE_PRESETS else "default"  # RMS: no modes
      ours_name, flax_name = f"{label} {mode}", f"flax {flax_preset} {suffix}"
      fns[ours_name] = f
      fns[flax_name] = flax_default[flax_mode][flax_preset]
      pairs.append((label, mode, ours_name, flax_name))
  return fns, pairs


def ops_unit(label: str, shape, width: int, dtype: str, cfg: Config, pool,
             deadline: float) -> dict:
  """One shape and dtype: compile every contender both ways, time, compare, bandwidth."""
  unit = {"label": label, "shape": list(shape), "dtype": dtype, "width": width, "errors": {},
          "refused": {}}
  x, w = inputs(shape, dtype)
  fns, pairs = op_contenders(shape, width, unit["refused"])
  jitted = {}
  for name, f in fns.items():
    jitted[("fwd", name)] = contenders.forward(f)
    jitted[("fwdbwd", name)] = contenders.forward_backward(f)
  exes, wall, total = compile_all(jitted, (x, w), pool, unit["errors"], deadline)
  unit.update(compile_wall_s=wall, compile_sum_s=total, functions=len(jitted))
  nbytes = x.nbytes
  unit["seconds"], unit["rows"], unit["bandwidth"], unit["fwd_bytes_over_min"] = {}, [], [], {}
  for ps in ("fwd", "fwdbwd"):
    calls = {n: (lambda e=e: e(x, w)) for (p, n), e in exes.items() if p == ps}
    if "copy" not in calls:
      unit["errors"][ps] = "the copy did not compile: nothing to compare"
      continue
    if time.monotonic() > deadline:
      unit["errors"][ps] = "not timed: the deadline passed"
      continue
    t = timing.interleaved(calls, rounds=cfg.rounds, target_s=cfg.target_s, deadline=deadline)
    unit["seconds"][ps] = t.seconds
    unit["rounds"] = min(len(t.seconds["copy"]), unit.get("rounds", cfg.rounds))
    for preset, mode, ours, theirs in pairs:
      if ours in calls and theirs in calls:
        unit["rows"].append({"preset": preset, "mode": mode, "pass": ps, "ours": ours,
                             "flax": theirs, "ratio": t.ratio(ours, theirs),
                             "ours_s": t.median(ours), "flax_s": t.median(theirs)})
    # Minimal bytes: read x, write y (forward); read x and dy, write dx (forward+backward).
    # A copy moves 2 * nbytes; its GB/s is the floor's.
    factor = 1.0 if ps == "fwd" else 1.5
    min_bytes = (2 if ps == "fwd" else 3) * nbytes
    copy_s = t.seconds["copy"]
    for n in calls:
      frac = [factor * c / s for c, s in zip(copy_s, t.seconds[n], strict=True)]
      unit["bandwidth"].append({"contender": n, "pass": ps, "gbps": min_bytes / t.median(n) / 1e9,
                                "fraction_of_copy": ratio_of(frac)})
  unit["copy_gbps"] = 2 * nbytes / statistics.median(unit["seconds"]["fwd"]["copy"]) / 1e9 \
      if "fwd" in unit["seconds"] else None
  for (ps, n), e in exes.items():
    if ps == "fwd":
      unit["fwd_bytes_over_min"][n] = _bytes_accessed(e) / (2 * nbytes)
  return unit


# ---- section 3: window width ----------------------------------------------------------------

def window_unit(shape, widths, cfg: Config, pool, deadline: float) -> dict:
  """Forward+backward of DN per window width, interleaved with flax LN and the copy."""
  unit = {"shape": list(shape), "dtype": "float32", "errors": {}}
  x, w = inputs(shape, "float32")
  fns = {f"DN {k}": contenders.divisive(shape, k)["DN"] for k in widths}
  fns["flax LN"] = contenders.flax_presets(shape)["LN"]
  fns["copy"] = contenders.copy
  exes, wall, total = compile_all(
      {n: contenders.forward_backward(f) for n, f in fns.items()}, (x, w), pool, unit["errors"],
      deadline)
  unit.update(compile_wall_s=wall, compile_sum_s=total)
  if not exes or time.monotonic() > deadline:
    unit["errors"]["timing"] = "not timed: the deadline passed"
    return unit
  t = timing.interleaved({n: (lambda e=e: e(x, w)) for n, e in exes.items()}, rounds=cfg.rounds,
                         target_s=cfg.target_s, deadline=deadline)
  unit["seconds"] = t.seconds
  unit["rounds"] = len(next(iter(t.seconds.values())))
  first = f"DN {widths[0]}"
  rows = []
  for k in widths:
    n = f"DN {k}"
    if n not in exes:
      continue
    row = {"width": k, "s": t.median(n)}
    if first in exes:
      row["vs_first"] = t.ratio(n, first)
    if "flax LN" in exes:
      row["vs_flax_ln"] = t.ratio(n, "flax LN")
    if "copy" in exes:
      row["fraction_of_copy"] = ratio_of(
          [1.5 * c / s for c, s in zip(t.seconds["copy"], t.seconds[n], strict=True)])
    rows.append(row)
  unit["rows"] = rows
  return unit


# ---- section 4: train steps ----------------------------------------------------------------

def _xent(logits, labels):
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), labels))


def model_unit(family: str, cfg: Config, pool, deadline: float) -> dict:
  """Steps per second of every variant of one model family (`benchmarks.models`), interleaved."""
  unit = {"family": family, "errors": {}}
  rng = np.random.default_rng(0)
  if family == "CNN":
    c = cfg.cnn
    x = jnp.asarray(rng.normal(size=(c["batch"], *c["image"])), jnp.float32)
    y = jnp.asarray(rng.integers(0, c["classes"], size=c["batch"]), jnp.int32)
    nets = {n: models.PluggableCNN(norm=f, num_classes=c["classes"])
            for n, f in models.pluggable_cnn_norms().items()}
    tx = optax.sgd(1e-3, momentum=0.9)
    refs, variants = CNN_REFS, cfg.cnn_variants
    unit["setup"] = (f"batch {c['batch']}, {'x'.join(map(str, c['image']))} inputs, "
                     "SGD momentum 0.9")
  else:
    c = cfg.lstm
    tokens = jnp.asarray(rng.integers(0, c["vocab"], size=(c["batch"], c["steps"] + 1)),
                         jnp.int32)
    x, y = tokens[:, :-1], tokens[:, 1:]
    nets = {n: models.PluggableLSTMLM(vocab=c["vocab"], hidden=c["hidden"], norm=f)
            for n, f in models.pluggable_lstm_norms(c["dn_window"]).items()}
    tx = optax.chain(optax.clip_by_global_norm(5.0), optax.sgd(1.0))
    refs, variants = LSTM_REFS, cfg.lstm_variants
    unit["setup"] = (f"batch {c['batch']}, {c['steps']} steps, hidden {c['hidden']}, "
                     f"vocabulary {c['vocab']}, DN window {c['dn_window']}, clipped SGD")
  jitted, args = {}, {}
  for name in variants:
    net = nets[name]
    try:
      variables = models.random_variables(net, x, rng)
    except Exception as e:  # noqa: BLE001 - one broken variant must not stop the run
      unit["errors"][name] = f"init: {type(e).__name__}: {e}"
      continue
    params = variables["params"]
    state = {k: v for k, v in variables.items() if k not in ("params", "losses")}
    jitted[name] = models.pluggable_train_step(net, tx, _xent)
    args[name] = (params, state, tx.init(params), x, y)
  exes, wall, total = compile_all(jitted, args, pool, unit["errors"], deadline)
  unit.update(compile_wall_s=wall, compile_sum_s=total)
  calls = {n: (lambda e=e, a=args[n]: e(*a)) for n, e in exes.items()}
  if not calls or time.monotonic() > deadline:
    unit["errors"]["timing"] = "not timed: the deadline passed"
    return unit
  t = timing.interleaved(calls, rounds=cfg.rounds, target_s=cfg.model_target_s,
                         deadline=deadline)
  unit["seconds"] = t.seconds
  unit["rounds"] = len(next(iter(t.seconds.values())))
  rows = []
  for n in calls:
    row = {"variant": n, "steps_per_s": 1.0 / t.median(n), "s": t.median(n)}
    # time(ref) / time(n) = throughput(n) / throughput(ref): above 1 is faster.
    for key, ref in (("vs_flax", refs.get(n)), ("vs_flax_ln", "flax LN"),
                     ("vs_baseline", "baseline")):
      if ref in calls and ref != n:
        row[key] = t.ratio(ref, n)
        row[key + "_ref"] = ref
    rows.append(row)
  unit["rows"] = rows
  return unit


# ---- the environment ---------------------------------------------------------------------

def _git_revision() -> str:
  try:
    rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                         text=True, timeout=10, check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                           capture_output=True, text=True, timeout=10).stdout.strip()
    return rev + (" (with uncommitted changes)" if dirty else "")
  except (OSError, subprocess.SubprocessError):
    return "unknown (no git repository in this copy; pass --rev)"


def environment(rev: str | None) -> dict:
  versions = {}
  for pkg in ("jax", "jaxlib", "flax", "optax", "numpy", "jax-cuda12-plugin",
              "jax-cuda13-plugin"):
    try:
      versions[pkg] = importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
      pass
  devices = jax.devices()
  d = devices[0]
  x = jnp.zeros((2, 4, 4, 8), jnp.float32)
  lowered = jax.jit(functools.partial(divnorm.layer_norm, reduction_axes=(1, 2, 3))).lower(x)
  text = lowered.as_text()
  return {
      "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime(  # noqa: UP017 (py3.10)
          "%Y-%m-%d %H:%M"),
      "python": platform.python_version(),
      "versions": versions,
      "backend": jax.default_backend(),
      "device_kind": d.device_kind,
      "device_count": len(devices),
      "platform_version": " ".join(str(getattr(getattr(d, "client", None), "platform_version",
                                               "")).split()),
      "cpus": os.cpu_count(),
      "git_revision": rev or _git_revision(),
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
      # divnorm's default takes a run-time one-pass check (a conditional) only where that
      # pays; elsewhere it is plain two-pass.
      "layer_norm_default_has_conditional": ("stablehlo.case" in text
                                             or "stablehlo.if" in text),
  }



# ---- main ----------------------------------------------------------------------------------

def _units(section: str, cfg: Config) -> list[tuple[str, tuple]]:
  if section == "ops":
    return [(f"{label} {dtype}", (label, shape, width, dtype))
            for label, shape, width, dtypes in cfg.shapes for dtype in dtypes]
  if section == "window":
    return [("x".join(map(str, s)), (s,)) for s in cfg.window_shapes]
  return [("CNN", ("CNN",)), ("LSTM", ("LSTM",))]


def _unit_name(u: dict) -> str:
  if "family" in u:
    return u["family"]
  if "dtype" in u and "label" in u:
    return f"{u['label']} {u['dtype']}"
  return u.get("label") or "x".join(map(str, u.get("shape", [])))


def run_section(name: str, cfg: Config, clock: Clock, report: Report, pool) -> None:
  """Runs the units of one timing section that fit before its deadline."""
  sec = report.section(name)
  deadline = clock.section_end(name)
  start = time.monotonic()
  sec["status"] = "running"
  report.log(f"{name}: {clock.left(deadline):.0f} s left for this section")
  # A unit starts only with half the time the last one took left (the first unit: 40% of
  # the section's own share): a unit's compilation cannot be cut short, its rounds can.
  need = 0.4 * SHARES[name] * clock.budget_s
  skipped = []
  for uname, uargs in _units(name, cfg):
    if clock.left(deadline) < need:
      skipped.append(uname)
      report.log(f"{name}: {uname} skipped (deadline)")
      continue
    t, n_log = time.monotonic(), len(COMPILE_LOG)
    try:
      if name == "ops":
        label, shape, width, dtype = uargs
        unit = ops_unit(label, shape, width, dtype, cfg, pool, deadline)
      elif name == "window":
        unit = window_unit(uargs[0], cfg.widths, cfg, pool, deadline)
      else:
        unit = model_unit(uargs[0], cfg, pool, deadline)
    except Exception as e:  # noqa: BLE001 - record, keep the other units
      unit = {"label": uname, "error": f"{type(e).__name__}: {e}",
              "traceback": traceback.format_exc()}
      report.log(f"{name}: {uname} FAILED: {type(e).__name__}: {e}")
    last_wall = time.monotonic() - t
    need = max(1.0, 0.5 * last_wall)
    unit["wall_s"] = last_wall
    sec["units"].append(unit)
    sec["compile_s"] += unit.get("compile_wall_s", 0.0)
    unit["compile_log"] = COMPILE_LOG[n_log:]
    sec["wall_s"] = time.monotonic() - start
    errs = unit.get("errors") or {}
    report.log(f"{name}: {uname} done in {last_wall:.1f} s (compile "
               f"{unit.get('compile_wall_s', 0):.1f} s, {unit.get('rounds', 0)} rounds"
               + (f", {len(errs)} errors" if errs else "") + ")")
    report.write()
  sec["wall_s"] = time.monotonic() - start
  if skipped:
    sec["notes"].append("skipped (deadline): " + ", ".join(skipped))
  failed = [_unit_name(u) for u in sec["units"] if "error" in u]
  if failed:
    sec["notes"].append("failed: " + ", ".join(failed))
  cut = [_unit_name(u) for u in sec["units"]
         if any("deadline" in str(v) for v in (u.get("errors") or {}).values())]
  if cut:
    sec["notes"].append("cut short by the deadline: " + ", ".join(cut))
  sec["status"] = ("skipped" if not sec["units"] else
                   "partial" if skipped or failed or cut else "done")
  report.write()


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--out", default=os.environ.get("OUT") or "device_check_out",
                 help="output folder (default: $OUT)")
  p.add_argument("--quick", action="store_true", help="tiny shapes, 2 rounds (CPU smoke run)")
  p.add_argument("--budget_s", type=float, default=330.0,
                 help="wall-clock budget from process start; later sections are skipped")
  p.add_argument("--sections", default="ops,window,models,pytest",
                 help="comma-separated subset of ops,window,models,pytest")
  p.add_argument("--rounds", type=cli.positive_int(9), default=None,
                 help="interleaved rounds per group")
  p.add_argument("--rev", default=None, help="git revision to record (the copy may lack .git)")
  p.add_argument("--pytest_k", default=None, help="pytest -k expression ('' for all tests)")
  p.add_argument("--pytest_platforms", default="",
                 help="JAX_PLATFORMS for the tests ('' = JAX's default device)")
  p.add_argument("--compile_threads", type=int, default=min(12, os.cpu_count() or 1))
  args = p.parse_args(argv)
  cfg = QUICK if args.quick else FULL
  if args.rounds:
    cfg = dataclasses.replace(cfg, rounds=args.rounds)
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  command = "python -m benchmarks.device_check " + " ".join(argv if argv is not None
                                                           else sys.argv[1:])
  report = Report(out, command.strip(), Clock.elapsed)
  clock = Clock(args.budget_s)
  report.data["budget_s"] = args.budget_s
  report.data["config"] = dataclasses.asdict(cfg)
  wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
  report.log(f"device check: out={out}, budget {args.budget_s:.0f} s, sections {wanted}")
  try:
    report.data["env"] = environment(args.rev)
    e = report.data["env"]
    report.log(f"env: {e['device_kind']} x{e['device_count']} ({e['backend']}), jax "
               f"{e['versions'].get('jax')}, revision {e['git_revision']}")
  except Exception as exc:  # noqa: BLE001
    report.data["env_error"] = traceback.format_exc()
    report.log(f"env FAILED: {exc}")
  report.write()
  pool = concurrent.futures.ThreadPoolExecutor(max(1, args.compile_threads))
  for name in ("ops", "window", "models"):
    if name in wanted:
      run_section(name, cfg, clock, report, pool)
    else:
      report.section(name)["status"] = "not requested"
  pool.shutdown(wait=False, cancel_futures=True)  # compilations past a deadline: abandoned
  sec = report.section("pytest")
  if "pytest" not in wanted:
    sec["status"] = "not requested"
  else:
    limit = clock.left(clock.end) - 3.0  # leave time to write the files
    if limit < 15:
      sec["status"] = "skipped"
      sec["notes"].append(f"skipped (deadline): {limit:.0f} s left")
      report.log("pytest skipped (deadline)")
    else:
      report.log(f"pytest: running with a {limit:.0f} s limit")
      res = run_pytest(out, limit, args.pytest_platforms, args.pytest_k,
                       pytest_args=cfg.pytest_args, max_files=1 if cfg is QUICK else None)
      sec.update(result=res, wall_s=res["wall_s"],
                 status="partial" if res["timed_out"] else "done")
      if res["timed_out"]:
        sec["notes"].append("stopped at the time limit")
      report.log(f"pytest: {res['summary']} (backend {res['backend']}, exit codes "
                 f"{list(res['returncodes'].values())})")
  report.write()
  report.log(f"done in {Clock.elapsed():.0f} s: {out / 'device_check.md'}")
  return 0


if __name__ == "__main__":
  code = main()
  sys.stdout.flush()
  # Exit now: do not wait for compilations abandoned at a deadline (the files are written).
  os._exit(code)
