"""Interleaved timing: run the contenders in turn, many rounds, and compare per round.

A shared, noisy machine makes a lone time meaningless. Each round times every contender
once (in a rotated order), so a slow spell hits all of them; the ratio of two contenders
is taken within each round, and the median and min-max of those ratios are reported.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Mapping

import jax


@dataclasses.dataclass(frozen=True)
class Ratio:
  """Per-round ratios ``time(a) / time(b)``: median and range."""

  median: float
  low: float
  high: float

  def __str__(self) -> str:
    return f"{self.median:.2f} ({self.low:.2f}-{self.high:.2f})"


@dataclasses.dataclass(frozen=True)
class Timings:
  """Seconds per call of each contender, one entry per round."""

  seconds: Mapping[str, list[float]]

  def median(self, name: str) -> float:
    return statistics.median(self.seconds[name])

  def ratio(self, a: str, b: str) -> Ratio:
    r = [ta / tb for ta, tb in zip(self.seconds[a], self.seconds[b], strict=True)]
    return Ratio(statistics.median(r), min(r), max(r))


def _block(out):
  jax.block_until_ready(out)
  return out


def calls_per_round(fn: Callable[[], object], *, target_s: float) -> int:
  """How many back-to-back calls of `fn` take about `target_s` (at least 1)."""
  _block(fn())  # compile and warm up
  start = time.perf_counter()
  _block(fn())
  once = time.perf_counter() - start
  return max(1, min(1000, round(target_s / max(once, 1e-7))))


def interleaved(
    fns: Mapping[str, Callable[[], object]],
    *,
    rounds: int,
    target_s: float = 0.02,
    deadline: float | None = None,
    min_rounds: int = 2,
) -> Timings:
  """Times every function of `fns` once per round, `rounds` times, in a rotating order
  that every other round reverses.

  Args:
    fns: name -> a zero-argument callable (e.g. a jitted function with its inputs bound
      by ``functools.partial``); its result is blocked on.
    rounds: number of rounds.
    target_s: each timing runs a function enough times back to back to take about this
      long, so that call overhead and timer resolution do not dominate small ops.
    deadline: a `time.monotonic()` time after which no new round starts once `min_rounds`
      rounds are done (the device check's budget); None: all `rounds`.

  Returns:
    Seconds per call, per round, per function.
  """
  names = list(fns)
  reps = {n: calls_per_round(fns[n], target_s=target_s) for n in names}
  seconds: dict[str, list[float]] = {n: [] for n in names}
  for r in range(rounds):
    if deadline is not None and r >= min_rounds and time.monotonic() > deadline:
      break
    k = -(r // 2) % len(names)
    order = names[k:] + names[:k]
    # Each rotation forward, then reversed, rotating backwards: a function runs just before
    # and just after each neighbour alike, across rounds too, within one time at any count
    # (rotation alone ran a list's neighbours in one order in all but one round of each
    # cycle, and the program before a call changes its time through page faults and caches).
    for n in order[::-1] if r % 2 else order:
      fn, n_calls = fns[n], reps[n]
      start = time.perf_counter()
      for _ in range(n_calls):
        out = fn()
      _block(out)
      seconds[n].append((time.perf_counter() - start) / n_calls)
  return Timings(seconds)
