"""``python -m benchmarks.device_check``: the accelerator check, ready before an accelerator is.

One run, within ``--budget_s`` seconds of wall time (default 330: the device machine allows
six minutes, start-up and compilation included), that writes as it goes under ``--out``
(the device machine's ``$OUT``):

- ``device_check.md``: the tables, ready to paste under a "GPU" section of BENCHMARKS.md;
- ``device_check.json``: every raw number (per-round seconds, compile times, errors);
- ``pytest.txt``: the core's numerics tests, run on the device;
- ``device_check.log``: the progress lines also printed on stdout.

Sections, in order (the environment first):

1. ``ops``: every preset (BN, LN, IN, GN, RMS) and divisive norm across channels against its
   flax.linen equivalent (DN against flax LayerNorm over the same tensor), forward and
   forward+backward, each divnorm ``fast_variance`` mode against flax's same mode
   (``use_fast_variance``), float32 and bfloat16; and, from the same rounds,
2. the achieved bandwidth as a fraction of a copy of the same tensor (the floor);
3. ``window``: divisive norm's window width, 3 to 31;
4. ``models``: train steps per second of the paper's CIFAR CNN and a 2-layer LSTM language
   model, divnorm's modules against the same models with flax's;
5. ``pytest``: the core's numerics tests on the device (a subprocess with a time limit).

Each section has a share of the budget; time a section leaves unused passes to the next.
A unit of work (one shape and dtype, one model family) that would not fit is skipped and
marked so, and the files are rewritten after every unit, so a slow section never loses the
tables already measured. Every comparison is a ratio of interleaved rounds (A B A B ...,
the order rotated each round), as a median and its min-max; absolute times are given
beside the ratios, never instead of them.

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
import inspect  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable  # noqa: E402

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import divnorm  # noqa: E402
from benchmarks import contenders, timing  # noqa: E402
from divnorm import linen as dnn  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SIGMA = contenders.SIGMA  # presets: flax epsilon = SIGMA ** 2
DN_SIGMA = contenders.DN_SIGMA
MODES = {"default": None, "one-pass": True, "two-pass": False}
VARIANCE_PRESETS = ("BN", "LN", "IN", "GN", "DN")  # RMS has no mean, hence no variance modes
# Shares of the budget, in running order; each section ends by its cumulative share.
SHARES = {"ops": 0.45, "window": 0.07, "models": 0.18, "pytest": 0.30}
CORE_TESTS = ("tests/test_presets.py", "tests/test_grouped_fields.py", "tests/test_normalize.py",
              "tests/test_properties.py")


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


# ---- clock, log, output ------------------------------------------------------------------

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


class Report:
  """Results so far; `write` rewrites the markdown, the JSON and the log."""

  def __init__(self, out: pathlib.Path, command: str):
    self.out = out
    self.command = command
    self.data: dict = {"command": command, "env": {}, "sections": {}}
    self._log = out / "device_check.log"
    self._log.write_text("")

  def log(self, msg: str) -> None:
    line = f"[{Clock.elapsed():6.1f}s] {msg}"
    print(line, flush=True)
    with open(self._log, "a") as f:
      f.write(line + "\n")

  def section(self, name: str) -> dict:
    return self.data["sections"].setdefault(
        name, {"status": "not started", "wall_s": 0.0, "compile_s": 0.0, "units": [],
               "notes": []})

  def write(self) -> None:
    self.data["elapsed_s"] = Clock.elapsed()
    (self.out / "device_check.json").write_text(json.dumps(self.data, indent=1, default=_jsonable))
    (self.out / "device_check.md").write_text(render(self.data))


def _jsonable(obj):
  if isinstance(obj, timing.Ratio):
    return {"median": obj.median, "low": obj.low, "high": obj.high}
  if isinstance(obj, np.generic):
    return obj.item()
  return str(obj)


def _ratio(values) -> timing.Ratio:
  return timing.Ratio(statistics.median(values), min(values), max(values))


def _r(d) -> str:
  """A ratio (its JSON form) as ``median (low-high)``, or "n/a"."""
  if not d:
    return "n/a"
  if isinstance(d, timing.Ratio):
    return str(d)
  return f"{d['median']:.2f} ({d['low']:.2f}-{d['high']:.2f})"


def _ms(s) -> str:
  return "n/a" if s is None else f"{s * 1e3:.3g}"


# ---- compiling and timing ----------------------------------------------------------------

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


def interleaved(calls: dict, *, rounds: int, target_s: float, deadline: float,
                min_rounds: int = 2) -> timing.Timings:
  """`timing.interleaved` that stops after `min_rounds` once `deadline` has passed."""
  names = list(calls)
  reps = {n: timing.calls_per_round(calls[n], target_s=target_s) for n in names}
  seconds: dict[str, list[float]] = {n: [] for n in names}
  for r in range(rounds):
    if r >= min_rounds and time.monotonic() > deadline:
      break
    k = r % len(names)
    for n in names[k:] + names[:k]:
      fn, n_calls = calls[n], reps[n]
      start = time.perf_counter()
      for _ in range(n_calls):
        out = fn()
      jax.block_until_ready(out)
      seconds[n].append((time.perf_counter() - start) / n_calls)
  return timing.Timings(seconds)


def _bytes_accessed(exe) -> float:
  try:
    cost = exe.cost_analysis()
    if isinstance(cost, list | tuple):
      cost = cost[0]
    return float(cost.get("bytes accessed", float("nan")))
  except Exception:  # noqa: BLE001 - a backend without cost analysis
    return float("nan")


def inputs(shape, dtype: str):
  x = jax.random.normal(jax.random.key(1), shape, jnp.float32).astype(dtype)
  w = jax.random.normal(jax.random.key(2), shape, jnp.float32).astype(dtype)
  return x, w


# ---- section 1 and 2: presets and DN against flax, like for like, and bandwidth ----------

def _accepts(fn: Callable, name: str) -> bool:
  try:
    return name in inspect.signature(fn).parameters
  except (TypeError, ValueError):
    return False


def _flax_has_fast(cls) -> bool:
  return "use_fast_variance" in getattr(cls, "__dataclass_fields__", {})


def _flax_fn(module: nn.Module, shape, *, mutable=False) -> Callable:
  # No parameters (affine off); BN's running statistics only receive updates in training
  # mode, so zeros of the right shapes serve, without running (compiling) `init` op by op.
  shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros(shape, jnp.float32))
  variables = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
  if mutable:
    return lambda x: module.apply(variables, x, mutable=["batch_stats"])
  return lambda x: module.apply(variables, x)


def _divnorm_modes(fn: Callable, preset: str, **kwargs) -> dict:
  """Mode -> divnorm function (None where the mode does not apply or is not offered)."""
  if preset not in VARIANCE_PRESETS or not _accepts(fn, "fast_variance"):
    return {"default": functools.partial(fn, **kwargs), "one-pass": None, "two-pass": None}
  return {m: functools.partial(fn, fast_variance=fv, **kwargs) for m, fv in MODES.items()}


def _flax_modes(cls, preset: str, shape, *, mutable=False, **kwargs) -> dict:
  """Mode -> (name suffix, flax function); flax's default is the module's own default."""
  if preset not in VARIANCE_PRESETS or not _flax_has_fast(cls):
    f = _flax_fn(cls(**kwargs), shape, mutable=mutable)
    return {"default": ("default", f), "one-pass": None, "two-pass": None}
  fast = {v: _flax_fn(cls(use_fast_variance=v, **kwargs), shape, mutable=mutable)
          for v in (True, False)}
  default = cls.__dataclass_fields__["use_fast_variance"].default
  name = {True: "one-pass", False: "two-pass"}
  return {"default": (name[default], fast[default]), "one-pass": ("one-pass", fast[True]),
          "two-pass": ("two-pass", fast[False])}


def op_contenders(shape, width: int, refused: dict) -> tuple[dict, list]:
  """Contender name -> f(x), and the comparisons ``(preset, mode, ours, flax)``.

  A variance mode that divnorm refuses for a preset on this shape (a ValueError) is left
  out, its message put in `refused`.
  """
  eps = SIGMA**2
  nd = len(shape)
  all_axes = tuple(range(1, nd))
  groups = 8 if shape[-1] % 8 == 0 else 1
  ours = {
      "BN": _divnorm_modes(functools.partial(divnorm.batch_norm, training=True), "BN",
                           sigma=SIGMA),
      "LN": _divnorm_modes(divnorm.layer_norm, "LN", reduction_axes=all_axes, sigma=SIGMA),
      "IN": _divnorm_modes(divnorm.instance_norm, "IN", sigma=SIGMA) if nd >= 3 else None,
      "GN": _divnorm_modes(divnorm.group_norm, "GN", num_groups=groups, sigma=SIGMA),
      "RMS": _divnorm_modes(divnorm.rms_norm, "RMS", sigma=SIGMA),  # the last axis, as the suite
      "DN": _divnorm_modes(divnorm.divisive_norm, "DN", summation_window=width,
                           sigma=DN_SIGMA),
  }
  # batch_norm takes its running statistics as the second argument: bind them.
  stats = divnorm.batch_stats_init(shape)
  ours["BN"] = {m: (None if f is None else (lambda x, f=f: f(x, stats)))
                for m, f in ours["BN"].items()}
  off = {"use_scale": False, "use_bias": False}
  theirs = {
      "BN": _flax_modes(nn.BatchNorm, "BN", shape, mutable=True, use_running_average=False,
                        epsilon=eps, **off),
      "LN": _flax_modes(nn.LayerNorm, "LN", shape, epsilon=eps, reduction_axes=all_axes, **off),
      "IN": _flax_modes(nn.InstanceNorm, "IN", shape, epsilon=eps, **off) if nd >= 3 else None,
      "GN": _flax_modes(nn.GroupNorm, "GN", shape, num_groups=groups, epsilon=eps, **off),
      "RMS": _flax_modes(nn.RMSNorm, "RMS", shape, epsilon=eps, use_scale=False),
  }
  theirs["DN"] = theirs["LN"]  # DN against flax LayerNorm over the same tensor
  fns = {"copy": contenders.copy}
  pairs = []
  probe = jax.ShapeDtypeStruct(shape, jnp.float32)
  for preset, modes in ours.items():
    if modes is None:
      continue
    for mode in ("one-pass", "two-pass"):
      try:  # a mode the library refuses for these fields (e.g. one-pass DN on [B, D])
        if modes[mode] is not None:
          jax.eval_shape(modes[mode], probe)
      except ValueError as e:
        modes[mode] = None
        refused[f"{preset} {mode}"] = str(e)
    flax_preset = "LN" if preset == "DN" else preset
    label = preset if preset != "DN" else (
        f"DN {width}x{width}" if nd > 2 else f"DN {width}")
    for mode, f in modes.items():
      if f is None or theirs[preset][mode] is None:
        continue
      suffix, g = theirs[preset][mode]
      ours_name, flax_name = f"{label} {mode}", f"flax {flax_preset} {suffix}"
      fns[ours_name] = f
      fns[flax_name] = g
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
    t = interleaved(calls, rounds=cfg.rounds, target_s=cfg.target_s, deadline=deadline)
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
                                "fraction_of_copy": _ratio(frac)})
  unit["copy_gbps"] = 2 * nbytes / statistics.median(unit["seconds"]["fwd"]["copy"]) / 1e9 \
      if "fwd" in unit["seconds"] else None
  for (ps, n), e in exes.items():
    if ps == "fwd":
      unit["fwd_bytes_over_min"][n] = _bytes_accessed(e) / (2 * nbytes)
  return unit


# ---- section 3: window width --------------------------------------------------------------

def window_unit(shape, widths, cfg: Config, pool, deadline: float) -> dict:
  """Forward+backward of DN per window width, interleaved with flax LN and the copy."""
  unit = {"shape": list(shape), "dtype": "float32", "errors": {}}
  x, w = inputs(shape, "float32")
  fns = {f"DN {k}": functools.partial(divnorm.divisive_norm, summation_window=k,
                                      sigma=DN_SIGMA) for k in widths}
  fns["flax LN"] = _flax_fn(nn.LayerNorm(epsilon=SIGMA**2, reduction_axes=tuple(
      range(1, len(shape))), use_scale=False, use_bias=False), shape)
  fns["copy"] = contenders.copy
  exes, wall, total = compile_all(
      {n: contenders.forward_backward(f) for n, f in fns.items()}, (x, w), pool, unit["errors"],
      deadline)
  unit.update(compile_wall_s=wall, compile_sum_s=total)
  if not exes or time.monotonic() > deadline:
    unit["errors"]["timing"] = "not timed: the deadline passed"
    return unit
  t = interleaved({n: (lambda e=e: e(x, w)) for n, e in exes.items()}, rounds=cfg.rounds,
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
      row["fraction_of_copy"] = _ratio(
          [1.5 * c / s for c, s in zip(t.seconds["copy"], t.seconds[n], strict=True)])
    rows.append(row)
  unit["rows"] = rows
  return unit


# ---- section 4: models ---------------------------------------------------------------------

class CNN(nn.Module):
  """The paper's CIFAR CNN: three 5x5 conv layers, each conv -> norm -> ReLU -> pool.

  Attributes:
    norm: layer index -> a new normalizer module, or None (the baseline).
  """

  norm: Callable
  num_classes: int = 10

  @nn.compact
  def __call__(self, x_BxHxWxC):
    x = x_BxHxWxC
    for i, (features, pool) in enumerate(((32, nn.max_pool), (32, nn.avg_pool),
                                          (64, nn.avg_pool))):
      x = nn.Conv(features, (5, 5), padding="SAME")(x)
      layer = self.norm(i)
      if layer is not None:
        x = layer(x)
      x = pool(nn.relu(x), (3, 3), strides=(2, 2), padding="SAME")
    x = nn.Dense(64)(x.reshape(x.shape[0], -1))
    return nn.Dense(self.num_classes)(x)


CNN_WINDOWS = (5, 3, 3)  # the paper's DN windows per layer


def cnn_variants() -> dict[str, Callable]:
  """Variant -> the normalizer factory; the paper's CIFAR-10 sigma and L1 settings."""
  return {
      "baseline": lambda i: None,
      "flax BN": lambda i: nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-4),
      "BN": lambda i: dnn.BatchNorm(use_running_average=False, momentum=0.9, sigma=1e-2),
      "flax LN": lambda i: nn.LayerNorm(reduction_axes=(1, 2, 3), epsilon=1e-4),
      "LN": lambda i: dnn.LayerNorm(reduction_axes=(1, 2, 3), sigma=1e-2),
      "DN": lambda i: dnn.DivisiveNorm(summation_window=CNN_WINDOWS[i], sigma=0.5),
      "DN*": lambda i: dnn.DivisiveNorm(summation_window=CNN_WINDOWS[i], sigma=0.5,
                                        l1_alpha=0.005),
  }


CNN_REFS = {"BN": "flax BN", "LN": "flax LN", "DN": "flax LN", "DN*": "flax LN"}


class LSTMCell(nn.Module):
  """One LSTM step; ``W[x, h] + b`` split into gates, each normalized by its own module."""

  hidden: int
  norm: Callable | None = None  # () -> a new normalizer module

  @nn.compact
  def __call__(self, carry, x_BxD):
    c, h = carry
    z = nn.Dense(4 * self.hidden)(jnp.concatenate([x_BxD, h], axis=-1))
    gates = jnp.split(z, 4, axis=-1)
    if self.norm is not None:
      gates = [self.norm()(g) for g in gates]
    i, j, f, o = gates
    c = nn.sigmoid(f) * c + nn.sigmoid(i) * jnp.tanh(j)
    h = nn.sigmoid(o) * jnp.tanh(c if self.norm is None else self.norm()(c))
    return (c, h), h


class LSTMLM(nn.Module):
  """A 2-layer LSTM language model (the paper's PTB setup)."""

  vocab: int
  hidden: int
  norm: Callable | None = None

  @nn.compact
  def __call__(self, tokens_BxT):
    x = nn.Embed(self.vocab, self.hidden)(tokens_BxT)
    scan = nn.scan(LSTMCell, variable_broadcast="params", split_rngs={"params": False},
                   in_axes=1, out_axes=1)
    for layer in range(2):
      zeros = jnp.zeros((x.shape[0], self.hidden), x.dtype)
      _, x = scan(self.hidden, self.norm, name=f"lstm_{layer}")((zeros, zeros), x)
    return nn.Dense(self.vocab)(x)


def lstm_variants(dn_window: int) -> dict[str, Callable | None]:
  """LN-s on the gates (sigma 1, no affine), flax against divnorm; DN on the gates."""
  return {
      "baseline": None,
      "flax LN": lambda: nn.LayerNorm(epsilon=1.0, use_scale=False, use_bias=False),
      "LN": lambda: dnn.LayerNorm(sigma=1.0, use_scale=False, use_bias=False),
      "DN": lambda: dnn.DivisiveNorm(summation_window=dn_window, sigma=1.0),
  }


LSTM_REFS = {"LN": "flax LN", "DN": "flax LN"}


def train_step(model: nn.Module, tx, loss_of_output: Callable):
  """A jitted step of ``loss(model(x)) + every sown penalty``; batch statistics updated."""

  def loss_fn(params, state, x, y):
    out, updates = model.apply({"params": params, **state}, x,
                               mutable=["batch_stats", "losses"])
    penalty = sum(jnp.sum(v) for v in jax.tree.leaves(updates.get("losses", {})))
    new_state = {k: v for k, v in updates.items() if k != "losses"}
    return loss_of_output(out, y) + penalty, new_state

  def step(params, state, opt_state, x, y):
    (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new_state, opt_state, loss

  return jax.jit(step)


def _variables(model: nn.Module, x, rng: np.random.Generator) -> dict:
  """The model's variables without running `init` (which compiles, or runs op by op).

  Only the speed is measured, so weights and biases are N(0, 0.05^2) draws of the right
  shapes; scales start at 1 and running statistics at mean 0 and variance 1, as flax's and
  divnorm's do.
  """
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)

  def leaf(path, s):
    collection, name = (getattr(k, "key", None) for k in (path[0], path[-1]))
    if collection == "params" and name != "scale":
      return jnp.asarray(0.05 * rng.normal(size=s.shape), s.dtype)
    fill = 1.0 if name in ("var", "scale") else 0.0
    return jnp.full(s.shape, fill, s.dtype)

  return jax.tree_util.tree_map_with_path(leaf, shapes)


def _xent(logits, labels):
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), labels))


def model_unit(family: str, cfg: Config, pool, deadline: float) -> dict:
  """Steps per second of every variant of one model family, interleaved."""
  unit = {"family": family, "errors": {}}
  rng = np.random.default_rng(0)
  if family == "CNN":
    c = cfg.cnn
    x = jnp.asarray(rng.normal(size=(c["batch"], *c["image"])), jnp.float32)
    y = jnp.asarray(rng.integers(0, c["classes"], size=c["batch"]), jnp.int32)
    models = {n: CNN(norm=f, num_classes=c["classes"]) for n, f in cnn_variants().items()}
    tx = optax.sgd(1e-3, momentum=0.9)
    refs, variants = CNN_REFS, cfg.cnn_variants
    unit["setup"] = (f"batch {c['batch']}, {'x'.join(map(str, c['image']))} inputs, "
                     "SGD momentum 0.9")
  else:
    c = cfg.lstm
    tokens = jnp.asarray(rng.integers(0, c["vocab"], size=(c["batch"], c["steps"] + 1)),
                         jnp.int32)
    x, y = tokens[:, :-1], tokens[:, 1:]
    models = {n: LSTMLM(vocab=c["vocab"], hidden=c["hidden"], norm=f)
              for n, f in lstm_variants(c["dn_window"]).items()}
    tx = optax.chain(optax.clip_by_global_norm(5.0), optax.sgd(1.0))
    refs, variants = LSTM_REFS, cfg.lstm_variants
    unit["setup"] = (f"batch {c['batch']}, {c['steps']} steps, hidden {c['hidden']}, "
                     f"vocabulary {c['vocab']}, DN window {c['dn_window']}, clipped SGD")
  jitted, args = {}, {}
  for name in variants:
    model = models[name]
    try:
      variables = _variables(model, x, rng)
    except Exception as e:  # noqa: BLE001 - one broken variant must not stop the run
      unit["errors"][name] = f"init: {type(e).__name__}: {e}"
      continue
    params = variables["params"]
    state = {k: v for k, v in variables.items() if k not in ("params", "losses")}
    jitted[name] = train_step(model, tx, _xent)
    args[name] = (params, state, tx.init(params), x, y)
  exes, wall, total = compile_all(jitted, args, pool, unit["errors"], deadline)
  unit.update(compile_wall_s=wall, compile_sum_s=total)
  calls = {n: (lambda e=e, a=args[n]: e(*a)) for n, e in exes.items()}
  if not calls or time.monotonic() > deadline:
    unit["errors"]["timing"] = "not timed: the deadline passed"
    return unit
  t = interleaved(calls, rounds=cfg.rounds, target_s=cfg.model_target_s, deadline=deadline)
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


# ---- section 5: the numerics tests -------------------------------------------------------

_PYTEST_WRAPPER = """
import sys, pytest
class Backend:
  def pytest_collection_finish(self, session):
    import jax
    d = jax.devices()
    print(f"device_check: backend={jax.default_backend()} devices={len(d)} "
          f"kind={d[0].device_kind}", flush=True)
sys.exit(pytest.main(sys.argv[1:], plugins=[Backend()]))
"""


def _pytest_counts(text: str) -> tuple[dict, bool]:
  """Outcome counts from pytest's final line, or from the verbose lines of a stopped run."""
  for line in reversed(text.splitlines()):
    m = re.match(r"^=+ (.*\d+ (?:passed|failed|errors?|skipped|deselected).*) in .*=+$", line)
    if m:
      found = re.findall(r"(\d+) (passed|failed|errors?|skipped|deselected|xfailed|xpassed)",
                         m.group(1))
      return {("error" if w.startswith("error") else w): int(n) for n, w in found}, True
  counts = {w.lower(): len(re.findall(rf"::\S+ {w}\b", text))
            for w in ("PASSED", "FAILED", "ERROR", "SKIPPED")}
  return {("error" if k == "error" else k): v for k, v in counts.items()}, False


def run_pytest(cfg: Config, out: pathlib.Path, time_limit: float, platforms: str,
               k: str | None) -> dict:
  """The core's test files on the device, one process per file at once, for `time_limit` s.

  Eager tests (gradient checks run op by op) are bound by compiling each operation on the
  host, so the files run side by side; their outputs are joined into ``pytest.txt``.
  """
  files = [f for f in CORE_TESTS if (REPO / f).exists()]
  if cfg is QUICK:
    files = files[:1]
  pargs = list(cfg.pytest_args)
  if k is not None:
    pargs = ["-k", k] if k else []
  opts = [*pargs, "-v", "--tb=short", "--maxfail=5", "-p", "no:cacheprovider"]
  env = dict(os.environ)
  # tests/conftest.py sets JAX_PLATFORMS=cpu unless it is set: "" is JAX's default device.
  env["JAX_PLATFORMS"] = platforms
  env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
  env["PYTHONUNBUFFERED"] = "1"
  shown = f"JAX_PLATFORMS='{platforms}' python -m pytest <file> " + " ".join(
      f"'{a}'" if " " in a else a for a in opts)
  start = time.monotonic()
  with tempfile.TemporaryDirectory() as tmp:
    logs = {f: pathlib.Path(tmp) / f"{i}.txt" for i, f in enumerate(files)}
    procs = {}
    for f in files:
      with open(logs[f], "w") as log:
        procs[f] = subprocess.Popen([sys.executable, "-c", _PYTEST_WRAPPER, f, *opts],
                                    cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    codes, stopped = {}, []
    for f, proc in procs.items():
      try:
        codes[f] = proc.wait(timeout=max(0.1, start + time_limit - time.monotonic()))
      except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        codes[f] = None
        stopped.append(f)
    texts = {f: logs[f].read_text() for f in files}
  wall = time.monotonic() - start
  counts: dict[str, int] = {}
  parts = [f"# {shown}", f"# {len(files)} files side by side, time limit {time_limit:.0f} s", ""]
  for f in files:
    c, finished = _pytest_counts(texts[f])
    for key, v in c.items():
      counts[key] = counts.get(key, 0) + v
    parts += [f"# ---- {f}: exit code {codes[f]}"
              + ("" if finished else f", stopped at the time limit ({time_limit:.0f} s)"),
              texts[f]]
  (out / "pytest.txt").write_text("\n".join(parts) + "\n")
  text = "\n".join(texts.values())
  summary = ", ".join(f"{v} {key}" for key, v in counts.items() if v) or "no test finished"
  if stopped:
    summary += f" ({len(stopped)} of {len(files)} files stopped at the time limit)"
  backend = re.search(r"device_check: backend=(\S+) devices=(\d+) kind=(.*)", text)
  failures = [ln for ln in text.splitlines() if ln.startswith(("FAILED ", "ERROR "))]
  return {"command": shown, "files": files, "returncodes": codes, "timed_out": bool(stopped),
          "stopped": stopped, "wall_s": wall, "time_limit_s": time_limit, "summary": summary,
          "counts": counts, "backend": backend.group(1) if backend else None,
          "device": (f"{backend.group(3).strip()} x{backend.group(2)}" if backend else None),
          "failures": failures[:30]}


# ---- section 6: the environment ----------------------------------------------------------

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


# ---- markdown ------------------------------------------------------------------------------

def render(data: dict) -> str:
  env = data.get("env", {})
  secs = data["sections"]
  md = ["## GPU", "", f"Command: `{data['command']}` (from the repository root).", ""]
  if env:
    v = env["versions"]
    md += [f"- Date: {env['date_utc']} UTC; revision {env['git_revision']}",
           f"- Device: {env['device_kind']} x{env['device_count']} (JAX backend "
           f"`{env['backend']}`, {env['platform_version']}); {env['cpus']} CPU cores",
           f"- Python {env['python']}; " + ", ".join(f"{k} {x}" for k, x in v.items()),
           "- divnorm's default variance mode here: "
           + ("a run-time check that picks one-pass or two-pass" if
              env["layer_norm_default_has_conditional"]
              else "no run-time check (two-pass, as documented)")
           + "; flax's default is one-pass."]
    if env["backend"] == "cpu":
      md.append("- **This run was on CPU: its numbers are a smoke test, not results.**")
  md += ["- Every ratio is over interleaved rounds (A B A B ..., the order rotated each "
         "round): median (min-max). Times are medians over rounds, per call; small tensors "
         "are bounded by the launch of each call, not by the device.", ""]

  ops = secs.get("ops")
  if ops:
    md += ["### Presets and DN against flax.linen, like for like", "",
           "Time of divnorm / time of flax.linen in the same variance mode (below 1: divnorm "
           "is faster): `default` is each library's default (flax: one-pass), `one-pass` "
           "divnorm `fast_variance=True` against flax `use_fast_variance=True`, `two-pass` "
           "`False` against `False`. Affine parts off, flax `epsilon = sigma**2` (0.01). DN "
           f"(sigma {DN_SIGMA}, window across all channels; over the units on `[B, D]`) is "
           "against flax LayerNorm over all non-batch axes of the same tensor. BN is training "
           "mode. Forward+backward is `grad` of `<f(x), w>`. Times in ms: divnorm / flax, "
           "default mode. n/a: RMS has no variance modes; divnorm refuses one-pass where the "
           "fields have no whole axis (DN on `[B, D]`; `refused` in the JSON).", ""]
    for dtype in ("float32", "bfloat16"):
      for ps, title in (("fwd", "forward"), ("fwdbwd", "forward+backward")):
        rows = [(u, r) for u in ops["units"] if u.get("dtype") == dtype
                for r in u.get("rows", []) if r["pass"] == ps]
        if not rows:
          continue
        md += [f"#### {dtype}, {title}", "",
               "| shape | rounds | normalizer | default | one-pass | two-pass | ms divnorm / flax |",
               "|---|---|---|---|---|---|---|"]
        seen = []
        for u, r in rows:
          if (u["label"], r["preset"]) not in seen:
            seen.append((u["label"], r["preset"]))
        for label, preset in seen:
          u = next(u for u, _ in rows if u["label"] == label)
          by = {r["mode"]: r for uu, r in rows if uu is u and r["preset"] == preset}
          d = by.get("default")
          times = f"{_ms(d['ours_s'])} / {_ms(d['flax_s'])}" if d else "n/a"
          md.append(f"| {label} | {u.get('rounds', '')} | {preset} | "
                    + " | ".join(_r(by[m]["ratio"]) if m in by else "n/a" for m in MODES)
                    + f" | {times} |")
        md.append("")
    md += ["### Bandwidth against a copy", "",
           "Achieved GB/s = minimal bytes / time (forward: read x, write y; forward+backward: "
           "read x and dy, write dx), as a fraction of the GB/s of a copy of the same tensor "
           "(`x * 2`: read x, write y) in the same rounds; 1.0 is the floor, higher is "
           "better. Default variance modes. XLA bytes: `cost_analysis()` bytes accessed of "
           "the forward / (read x + write y); a run-time conditional counts both of its "
           "branches.", "",
           "| shape | dtype | copy GB/s | normalizer | fwd divnorm | fwd flax | fwd+bwd divnorm "
           "| fwd+bwd flax | XLA fwd bytes divnorm / flax |", "|---|---|---|---|---|---|---|---|---|"]
    for u in ops["units"]:
      if "bandwidth" not in u:
        continue
      bw = {(b["contender"], b["pass"]): b for b in u["bandwidth"]}
      for r in [r for r in u["rows"] if r["mode"] == "default" and r["pass"] == "fwd"]:
        cells = []
        for ps in ("fwd", "fwdbwd"):
          for n in (r["ours"], r["flax"]):
            b = bw.get((n, ps))
            cells.append(_r(b["fraction_of_copy"]) if b else "n/a")
        xb = u["fwd_bytes_over_min"]
        gb = f"{u['copy_gbps']:.3g}" if u.get("copy_gbps") else "n/a"
        md.append(f"| {u['label']} | {u['dtype']} | {gb} | {r['preset']} | "
                  + " | ".join(cells)
                  + f" | {xb.get(r['ours'], float('nan')):.2f} / "
                    f"{xb.get(r['flax'], float('nan')):.2f} |")
    md.append("")

  win = secs.get("window")
  if win and any(u.get("rows") for u in win["units"]):
    md += ["### DN window width", "",
           "Forward+backward of DN (window w x w across all channels), float32, interleaved "
           "with flax LayerNorm over the same tensor and the copy.", "",
           "| shape | width | ms | vs the smallest width | vs flax LN | fraction of copy GB/s |",
           "|---|---|---|---|---|---|"]
    for u in win["units"]:
      for r in u.get("rows", []):
        md.append(f"| {'x'.join(map(str, u['shape']))} | {r['width']} | {_ms(r['s'])} | "
                  f"{_r(r.get('vs_first'))} | {_r(r.get('vs_flax_ln'))} | "
                  f"{_r(r.get('fraction_of_copy'))} |")
    md.append("")

  mod = secs.get("models")
  if mod and any(u.get("rows") for u in mod["units"]):
    md += ["### Train steps", "",
           "Steps per second of one jitted train step (loss + sown L1 penalties, optimizer "
           "update, batch statistics), random inputs; throughput ratios to the named model "
           "(above 1: faster). Each library's default variance mode.", ""]
    for u in [u for u in mod["units"] if u.get("rows")]:
      what = ("the paper's CIFAR CNN (3 conv 5x5 layers, norm before ReLU; DN windows 5, 3, 3, "
              "sigma 0.5; DN* with L1 0.005)" if u["family"] == "CNN" else
              "2-layer LSTM LM, each gate and the cell normalized (LN-s: sigma 1, no affine)")
      md += [f"{u['family']}: {what}; {u['setup']}; {u.get('rounds', '')} rounds.", "",
             "| variant | steps/s | ms/step | vs flax same | vs flax LN | vs baseline |",
             "|---|---|---|---|---|---|"]
      for r in u.get("rows", []):
        same = f"{_r(r['vs_flax'])} ({r['vs_flax_ref']})" if "vs_flax" in r else "n/a"
        md.append(f"| {r['variant']} | {r['steps_per_s']:.1f} | {_ms(r['s'])} | {same} | "
                  f"{_r(r.get('vs_flax_ln'))} | {_r(r.get('vs_baseline'))} |")
      md.append("")

  pt = secs.get("pytest")
  if pt and pt.get("result"):
    p = pt["result"]
    md += ["### Numerics tests on the device", "",
           f"`{p['command']}` on {', '.join(f'`{f}`' for f in p['files'])} (side by side): "
           f"**{p['summary']}** in {p['wall_s']:.0f} s (limit {p['time_limit_s']:.0f} s); "
           f"backend `{p['backend']}`, {p['device']}. Output: `pytest.txt`.", ""]
    md += [f"- `{ln}`" for ln in p["failures"]]
    md.append("")

  md += ["### Time spent", "",
         "Compile: functions compiled, their tracing time, and the wall time of tracing "
         "and compiling them (in parallel threads) / the sum of the compile times.", "",
         "| section | status | wall s | functions | trace s | trace+compile s (sum) | notes |",
         "|---|---|---|---|---|---|---|"]
  for name, s in secs.items():
    notes = "; ".join(s.get("notes", []))
    log = [c for u in s.get("units", []) for c in u.get("compile_log", [])]
    n, trace = sum(c["functions"] for c in log), sum(c["trace_s"] for c in log)
    wall, total = sum(c["wall_s"] for c in log), sum(c["compile_sum_s"] for c in log)
    md.append(f"| {name} | {s['status']} | {s['wall_s']:.0f} | {n} | {trace:.0f} | "
              f"{wall:.0f} ({total:.0f}) | {notes} |")
  md += ["", f"Total wall time {data.get('elapsed_s', 0):.0f} s (budget {data.get('budget_s')} "
         "s, from process start).", ""]
  return "\n".join(md)


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
  p.add_argument("--rounds", type=int, default=None, help="interleaved rounds per group")
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
  report = Report(out, command.strip())
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
      res = run_pytest(cfg, out, limit, args.pytest_platforms, args.pytest_k)
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
