"""Stop rules for `engine.train(..., stop=rule)`: early stopping on an evaluation, and plateaus.

A stop rule is any callable `rule(step, train_state) -> bool`. The engine calls it
once before the first step (a run resumed after it had stopped returns at once)
and after every step, after that step's checkpoint; when it returns True the
engine saves the step's checkpoint, runs the final evaluation and returns. No
experiment raises to stop.

`EarlyStopping` evaluates the model every `every` steps, appends one row per
evaluation to a JSON-lines file (a resumed run does not evaluate a step twice)
and says stop once `patience` evaluations in a row did not improve on the best
by more than `min_delta` (relative). `min_delta` > 0 makes it a plateau rule.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from experiments.engine.task import Task, TrainState
from experiments.engine.writers import drop_partial_line

StopRule = Callable[[int, TrainState], bool]
MODES = ("min", "max")


def early_stopping(rows: Sequence[Mapping[str, Any]], patience: int, *, key: str,
                   mode: str = "min", min_delta: float = 0.0) -> dict[str, Any]:
  """The early-stopping state of a run's evaluation rows (any order; sorted by "step").

  The best row is the first one whose `key` beats every earlier best by more than
  `min_delta` (relative: |best| * min_delta; 0 means any strict improvement, and a
  later equal value is no improvement). The run stops once `patience` rows after
  the best did not improve on it. Returns ``{"best", "since_best", "stop"}``
  (``best`` None when there are no rows).
  """
  if patience < 1:
    raise ValueError(f"patience={patience}: must be at least 1.")
  if mode not in MODES:
    raise ValueError(f"mode={mode!r}: expected one of {MODES}.")
  if min_delta < 0:
    raise ValueError(f"min_delta={min_delta}: must be >= 0 (a relative improvement).")
  sign = 1.0 if mode == "min" else -1.0
  best, since = None, 0
  for r in sorted(rows, key=lambda r: r["step"]):
    value = sign * float(r[key])
    if best is None or value < sign * float(best[key]) - abs(float(best[key])) * min_delta:
      best, since = r, 0
    else:
      since += 1
  return {"best": best, "since_best": since, "stop": since >= patience}


def plateaued(values: Sequence[float], *, tolerance: float) -> bool:
  """Whether the mean of the last half of `values` is within `tolerance` (relative) of the first.

  The protocol's convergence check takes the mean training cross entropy over the
  steps 80-90% and 90-100% of a run: `plateaued([ce_80_90, ce_90_100], tolerance=0.05)`.
  """
  if len(values) < 2:
    raise ValueError(f"plateaued needs at least 2 values; got {len(values)}.")
  half = len(values) // 2
  a = sum(values[:half]) / half
  b = sum(values[half:]) / (len(values) - half)
  return bool(abs(a - b) <= tolerance * max(abs(a), abs(b)))


def read_rows(path: str) -> list[dict[str, Any]]:
  """The rows of a JSON-lines file (none if it does not exist; a torn last line is skipped)."""
  if not os.path.exists(path):
    return []
  rows = []
  with open(path) as f:
    for line in f:
      try:
        rows.append(json.loads(line))
      except ValueError:
        continue
  return rows


class EarlyStopping:
  """A stop rule: evaluates every `every` steps, stops `patience` evaluations after the best.

  Each evaluation runs `tasks[monitor]` and writes ``<split>_<metric>`` for every
  finalized metric (``count`` left out), e.g. ``valid_perplexity``; at a new best it
  also evaluates the splits in `at_best` (e.g. ``("test",)``), so that the reported
  test number is the model's at its best valid point. Rows are appended to `path`
  (fsynced); a step already there (replayed after a resume from an earlier
  checkpoint) is not evaluated again. At `last_step` it evaluates and stops.

  Attributes:
    rows: the evaluations so far (read back from `path` on a resume).
  """

  def __init__(self, *, tasks: Mapping[str, Task], monitor: str, metric: str, every: int,
               patience: int, last_step: int, path: str, mesh, mode: str = "min",
               min_delta: float = 0.0, at_best: Sequence[str] = (),
               extra: Callable[[int], Mapping[str, Any]] | None = None):
    import jax
    if every < 1:
      raise ValueError(f"every={every}: evaluate at least every step (every >= 1).")
    missing = [s for s in (monitor, *at_best) if s not in tasks]
    if missing:
      raise ValueError(f"EarlyStopping: no task for split(s) {missing}; tasks: {sorted(tasks)}.")
    early_stopping([], patience, key="", mode=mode, min_delta=min_delta)  # checks the rule
    self.tasks, self.monitor, self.at_best, self.mesh = dict(tasks), monitor, tuple(at_best), mesh
    self.key = f"{monitor}_{metric}"
    self.every, self.patience, self.last_step, self.path = every, patience, last_step, path
    self.mode, self.min_delta, self.extra = mode, min_delta, extra
    # One jitted eval step per distinct function (the splits of one model share theirs).
    self._eval_fns: dict[int, Any] = {}
    for task in self.tasks.values():
      self._eval_fns.setdefault(id(task.eval_step), jax.jit(task.eval_step))
    self.rows = read_rows(path)

  def state(self, step: int | None = None) -> dict[str, Any]:
    """`early_stopping` of the rows so far, or of those up to `step`: a run resumed from a
    checkpoint before a killed run's last rows replays those steps, judged as they were."""
    rows = self.rows if step is None else [r for r in self.rows if r["step"] <= step]
    return early_stopping(rows, self.patience, key=self.key, mode=self.mode,
                          min_delta=self.min_delta)

  def _evaluate(self, split: str, ts: TrainState) -> dict[str, float]:
    from experiments.engine.loop import evaluate
    task = self.tasks[split]
    metrics = evaluate(task, ts, self.mesh, eval_fn=self._eval_fns[id(task.eval_step)])
    return {f"{split}_{k}": float(v) for k, v in metrics.items() if k != "count"}

  def __call__(self, step: int, ts: TrainState) -> bool:
    if step > 0 and (step % self.every == 0 or step == self.last_step) and not any(
        r["step"] == step for r in self.rows):
      best = self.state(step)["best"]
      row = {"step": step, **(self.extra(step) if self.extra else {}),
             **self._evaluate(self.monitor, ts)}
      trial = early_stopping([*(r for r in self.rows if r["step"] < step), row],
                             self.patience, key=self.key, mode=self.mode,
                             min_delta=self.min_delta)["best"]
      if best is None or trial is row:
        for split in self.at_best:
          row.update(self._evaluate(split, ts))
      os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
      drop_partial_line(self.path)  # a row a kill cut short (`read_rows` skipped it)
      with open(self.path, "a") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
      self.rows.append(row)
    if step >= self.last_step:
      return True
    return any(r["step"] <= step for r in self.rows) and self.state(step)["stop"]
