"""What XLA says about a compiled function: bytes accessed and temporary memory."""

from __future__ import annotations

import contextlib
import importlib
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


@contextlib.contextmanager
def guard_branch(branch: bool):
  """Compile only one branch of divnorm's one-pass guard (True: one-pass, False: two-pass).

  XLA's cost analysis of a conditional adds up both branches, but a run takes one: the
  bytes of a branch are those of a function compiled inside this context.
  """
  mod = importlib.import_module("divnorm._src.core")
  old, mod._GUARD_BRANCH = mod._GUARD_BRANCH, branch
  try:
    yield
  finally:
    mod._GUARD_BRANCH = old


def branch_bytes(f: Callable, x, w) -> tuple[float, float]:
  """Forward bytes of ``f(x)`` taking the guard's one-pass, and two-pass, branch.

  `f` is the plain (unjitted) contender; each branch compiles a fresh wrapper, since a
  jitted function keeps the trace of its first compilation.
  """
  out = []
  for branch in (True, False):
    with guard_branch(branch):
      out.append(bytes_accessed(compiled(jax.jit(lambda x, w: f(x)), x, w)))
  return out[0], out[1]
