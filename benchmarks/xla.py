"""What XLA says about a compiled function: bytes accessed and temporary memory."""

from __future__ import annotations

from collections.abc import Callable

import jax


def compiled(fn: Callable, *args):
  """The XLA executable of the jitted `fn` for `args` (callable on them)."""
  return fn.lower(*args).compile()


def bytes_accessed(exe) -> float:
  """XLA's ``cost_analysis()['bytes accessed']`` of the compiled `exe` (NaN if XLA has
  none: a program compiled without its device)."""
  cost = exe.cost_analysis()
  if isinstance(cost, list | tuple):  # older JAX: one dict per program
    cost = cost[0]
  return float((cost or {}).get("bytes accessed", float("nan")))


def temp_bytes(exe) -> int:
  """``memory_analysis().temp_size_in_bytes`` of the compiled `exe`."""
  mem = exe.memory_analysis()
  return int(getattr(mem, "temp_size_in_bytes", -1)) if mem is not None else -1


def forward_bytes(f: Callable, x, w) -> float:
  """Bytes accessed by the compiled forward ``f(x)`` (`w`, the cotangent, is unused)."""
  return bytes_accessed(compiled(jax.jit(lambda x, w: f(x)), x, w))


def op_times(fn: Callable, *args, calls: int = 20) -> dict[str, float]:
  """Seconds per call spent in each XLA operation (fusion) of the jitted `fn` on `args`.

  From a `jax.profiler` trace of `calls` calls (XLA's CPU runtime records one event per
  executed thunk). Profiling slows every op a little; compare ops within one program.
  """
  import collections
  import glob
  import gzip
  import json
  import os
  import tempfile

  jax.block_until_ready(fn(*args))
  with tempfile.TemporaryDirectory() as d:
    jax.profiler.start_trace(d)
    for _ in range(calls):
      out = fn(*args)
    jax.block_until_ready(out)
    jax.profiler.stop_trace()
    (path,) = glob.glob(os.path.join(d, "**", "*.trace.json.gz"), recursive=True)
    with gzip.open(path) as f:
      events = json.load(f)["traceEvents"]
  total: dict[str, float] = collections.defaultdict(float)
  for e in events:
    name = e.get("name", "")
    if (e.get("ph") == "X" and "dur" in e and not name.startswith("end:")
        and ("fusion" in name or name.startswith("wrapped"))):
      total[name] += e["dur"] * 1e-6 / calls
  return dict(sorted(total.items(), key=lambda kv: -kv[1]))
