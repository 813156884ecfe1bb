"""Op-level benchmarks: presets vs flax.linen, divisive norm vs the paper's way, scaling."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from benchmarks import contenders as C
from benchmarks import timing, xla

# The CNN's three normalized layers at batch 100, the RNN's [20, 4 * 200] gates, a large one.
SHAPES = {
    "CNN conv1 100x32x32x32": ((100, 32, 32, 32), 5),
    "CNN conv2 100x16x16x32": ((100, 16, 16, 32), 3),
    "CNN conv3 100x8x8x64": ((100, 8, 8, 64), 3),
    "RNN gates 20x800": ((20, 800), 61),
    "large 128x32x32x64": ((128, 32, 32, 64), 5),
}
QUICK_SHAPES = {"tiny 2x8x8x8": ((2, 8, 8, 8), 3)}


@dataclasses.dataclass
class Row:
  """One contender on one shape: times (s), ratios, XLA's bytes and temporaries."""

  name: str
  fwd_s: float
  fwdbwd_s: float
  fwd: dict[str, timing.Ratio]  # ratio to each named reference, forward
  fwdbwd: dict[str, timing.Ratio]
  bytes_ratio: float  # forward bytes accessed / (input read + output written)
  temp_bytes: int  # forward+backward temporaries


def inputs(shape):
  x = jax.random.normal(jax.random.key(1), shape, np.float32)
  w = jax.random.normal(jax.random.key(2), shape, np.float32)
  return x, w


def measure(fns: dict, refs: dict[str, list[str]], shape, *, rounds: int,
            target_s: float) -> list[Row]:
  """Times `fns` (name -> f(x)) forward and forward+backward, all interleaved.

  Args:
    refs: contender name -> names of the contenders it is compared with.
  """
  x, w = inputs(shape)
  results = {}
  jitted = {}
  for mode, wrap in (("fwd", C.forward), ("fwdbwd", C.forward_backward)):
    jitted[mode] = {n: xla.compiled(wrap(f), x, w) for n, f in fns.items()}
    calls = {n: (lambda j=j: j(x, w)) for n, j in jitted[mode].items()}
    results[mode] = timing.interleaved(calls, rounds=rounds, target_s=target_s)
  rows = []
  minimum = 2 * x.nbytes
  fwd_bytes = {n: xla.forward_bytes(f, x, w) for n, f in fns.items()}
  for n in fns:
    t_f, t_b = results["fwd"], results["fwdbwd"]
    rows.append(Row(
        name=n,
        fwd_s=t_f.median(n),
        fwdbwd_s=t_b.median(n),
        fwd={r: t_f.ratio(n, r) for r in refs.get(n, [])},
        fwdbwd={r: t_b.ratio(n, r) for r in refs.get(n, [])},
        bytes_ratio=fwd_bytes[n] / minimum,
        temp_bytes=xla.temp_bytes(jitted["fwdbwd"][n]),
    ))
  return rows


def preset_rows(shape, width, *, rounds, target_s) -> list[Row]:
  """Every preset and its flax.linen equivalent, divisive norm and its alternatives."""
  fns = {"copy x*2": C.copy}
  refs: dict[str, list[str]] = {}
  for name, (ours, theirs) in C.presets(shape).items():
    fns[name] = ours
    fns[f"flax {name}"] = theirs
    refs[name] = [f"flax {name}", "copy x*2"]
    refs[f"flax {name}"] = ["copy x*2"]
  fns["flax LN two-pass"] = C.flax_two_pass(shape)["LN"]
  refs["flax LN two-pass"] = ["copy x*2"]
  refs["LN"] = ["flax LN", "copy x*2", "flax LN two-pass"]
  for name, f in C.divisive(shape, width).items():
    fns[name] = f
    refs[name] = ["copy x*2"]
  for name in ("DN", "DN zeros"):
    refs[name] = ["flax LN", "paper conv", "reduce_window 2-D", "copy x*2"]
  refs["DN"] = [r for r in refs["DN"] if r in fns]
  refs["DN zeros"] = [r for r in refs["DN zeros"] if r in fns]
  return measure(fns, refs, shape, rounds=rounds, target_s=target_s)


def window_scaling(shape, widths, *, rounds, target_s) -> dict[str, dict[int, timing.Ratio]]:
  """Forward+backward time of divisive norm per window width, relative to the first width.

  All widths (and the 2-D reduce_window way) run interleaved in the same rounds.
  """
  x, w = inputs(shape)
  fns = {}
  for width in widths:
    ways = C.divisive(shape, width)
    fns[("DN", width)] = C.forward_backward(ways["DN"])
    if "reduce_window 2-D" in ways:
      fns[("reduce_window 2-D", width)] = C.forward_backward(ways["reduce_window 2-D"])
  names = {f"{k[0]} {k[1]}": j for k, j in fns.items()}
  t = timing.interleaved({n: (lambda j=j: j(x, w)) for n, j in names.items()},
                         rounds=rounds, target_s=target_s)
  out: dict[str, dict[int, timing.Ratio]] = {}
  for way, width in fns:
    out.setdefault(way, {})[width] = t.ratio(f"{way} {width}", f"{way} {widths[0]}")
  out["_ms"] = {width: t.median(f"DN {width}") * 1e3 for width in widths}
  return out


def size_scaling(batches, hwc, *, rounds, target_s) -> list[dict]:
  """Forward+backward time of LN and DN 5x5 against the copy, per tensor size."""
  rows = []
  for b in batches:
    shape = (b, *hwc)
    x, w = inputs(shape)
    fns = {"copy": C.forward_backward(C.copy),
           "LN": C.forward_backward(C.presets(shape)["LN"][0]),
           "flax LN": C.forward_backward(C.presets(shape)["LN"][1]),
           "DN": C.forward_backward(C.divisive(shape, 5)["DN"])}
    t = timing.interleaved({n: (lambda j=j, x=x, w=w: j(x, w)) for n, j in fns.items()},
                           rounds=rounds, target_s=target_s)
    rows.append({"shape": shape, "mib": x.nbytes / 2**20,
                 "ms": {n: t.median(n) * 1e3 for n in fns},
                 "vs copy": {n: t.ratio(n, "copy") for n in ("LN", "flax LN", "DN")},
                 "DN vs flax LN": t.ratio("DN", "flax LN")})
  return rows
