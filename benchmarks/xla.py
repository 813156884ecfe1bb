"""What XLA says about a compiled function: bytes accessed and temporary memory."""

from __future__ import annotations

from collections.abc import Callable

import jax


def compiled(fn: Callable, *args):
  """The XLA executable of the jitted `fn` for `args` (callable on them)."""
  return fn.lower(*args).compile()


def bytes_accessed(exe) -> float:
  """XLA's ``cost_analysis()['bytes accessed']`` of the compiled `exe`."""
  cost = exe.cost_analysis()
  if isinstance(cost, list | tuple):  # older JAX: one dict per program
    cost = cost[0]
  return float(cost.get("bytes accessed", float("nan")))


def temp_bytes(exe) -> int:
  """``memory_analysis().temp_size_in_bytes`` of the compiled `exe`."""
  mem = exe.memory_analysis()
  return int(getattr(mem, "temp_size_in_bytes", -1)) if mem is not None else -1


def forward_bytes(f: Callable, x, w) -> float:
  """Bytes accessed by the compiled forward ``f(x)`` (`w`, the cotangent, is unused)."""
  return bytes_accessed(compiled(jax.jit(lambda x, w: f(x)), x, w))
