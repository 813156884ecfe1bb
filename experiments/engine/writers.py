"""Metrics to JSONL, CSV and TensorBoard event files (process 0 only)."""

from __future__ import annotations

import csv
import json
import os
import time
from typing import Any

import jax


def drop_partial_line(path: str) -> None:
  """Cuts a last line that has no newline (a run killed while writing it) off `path`."""
  if not os.path.exists(path) or os.path.getsize(path) == 0:
    return
  with open(path, "rb+") as f:
    data = f.read()
    if data.endswith(b"\n"):
      return
    f.truncate(data.rfind(b"\n") + 1)


class MetricWriter:
  """Appends metric rows to `<workdir>/metrics.jsonl`, `<workdir>/<kind>.csv`, `<workdir>/tb/`.

  A resumed run appends; rows for steps redone after the last checkpoint
  appear twice, and `read_metrics` keeps the last one. A row cut short by a
  killed run is dropped before appending, so the files stay readable.
  """

  def __init__(self, workdir: str | None, *, tensorboard: bool = True):
    self.workdir = workdir
    self.active = workdir is not None and jax.process_index() == 0
    self._csv: dict[str, tuple[Any, csv.DictWriter]] = {}
    self._tb = None
    if not self.active:
      return
    os.makedirs(workdir, exist_ok=True)
    drop_partial_line(os.path.join(workdir, "metrics.jsonl"))
    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
    if tensorboard:
      from tensorboardX import SummaryWriter
      self._tb = SummaryWriter(os.path.join(workdir, "tb"))

  def write(self, kind: str, step: int, metrics: dict[str, float]) -> None:
    """Writes one row; `kind` is e.g. "train" or "eval"."""
    if not self.active:
      return
    row = {"kind": kind, "step": int(step), "time": time.time(),
           **{k: float(v) for k, v in metrics.items()}}
    self._jsonl.write(json.dumps(row) + "\n")
    self._jsonl.flush()
    if kind not in self._csv:
      path = os.path.join(self.workdir, f"{kind}.csv")
      drop_partial_line(path)
      exists = os.path.exists(path) and os.path.getsize(path) > 0
      f = open(path, "a", newline="")
      w = csv.DictWriter(f, fieldnames=list(row), extrasaction="ignore")
      if not exists:
        w.writeheader()
      self._csv[kind] = (f, w)
    f, w = self._csv[kind]
    w.writerow(row)
    f.flush()
    if self._tb is not None:
      for k, v in metrics.items():
        self._tb.add_scalar(f"{kind}/{k}", float(v), int(step))
      self._tb.flush()

  def close(self) -> None:
    if not self.active:
      return
    self._jsonl.close()
    for f, _ in self._csv.values():
      f.close()
    if self._tb is not None:
      self._tb.close()


def read_metrics(workdir: str, kind: str | None = None) -> list[dict[str, float]]:
  """Rows of `<workdir>/metrics.jsonl`, one per (kind, step), the last written wins.

  A last line cut short (a run killed while writing it) is skipped; a damaged
  line before it raises a ValueError naming the file and line.
  """
  rows: dict[tuple[str, int], dict] = {}
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    lines = f.read().split("\n")
  for number, line in enumerate(lines, 1):
    if not line.strip():
      continue
    try:
      r = json.loads(line)
      key = (r["kind"], r["step"])
    except (ValueError, KeyError, TypeError) as e:
      if number == len(lines):  # no newline after it: cut short by a kill
        break
      raise ValueError(f"{path}, line {number}: not a metrics row ({type(e).__name__}: {e}); "
                       f"delete that line.") from e
    if kind is None or r["kind"] == kind:
      rows[key] = r
  return [rows[k] for k in sorted(rows, key=lambda k: (k[0], k[1]))]


def eval_row_lost(workdir: str | None, step: int, *, eval_every: int) -> bool:
  """Whether `workdir`'s run evaluated at `step` but metrics.jsonl or eval.csv has no eval
  row there.

  The run evaluated there if `step` is a multiple of `eval_every` (> 0) or either file
  holds a row of `step` (a final evaluation). A run killed after a step's checkpoint and
  before or while writing that step's eval rows loses them (or the CSV's alone: it is
  written second): a resume starts after the step, so the step is evaluated again.
  """
  if workdir is None or step <= 0:
    return False
  try:
    in_jsonl = any(r["step"] == step for r in read_metrics(workdir, "eval"))
  except ValueError:  # a damaged line: reading the metrics back will name it
    return False
  in_csv = step in _csv_steps(os.path.join(workdir, "eval.csv"))
  if in_jsonl and in_csv:
    return False
  return (eval_every > 0 and step % eval_every == 0) or in_jsonl or in_csv


def _csv_steps(path: str) -> set[int]:
  """The steps of the complete rows of a metrics CSV (none if it does not exist)."""
  if not os.path.exists(path):
    return set()
  with open(path, newline="") as f:
    lines = f.read().split("\n")
  steps = set()
  for row in csv.DictReader(lines[:-1]):  # the last piece: empty, or cut short by a kill
    try:
      steps.add(int(float(row.get("step") or "nan")))
    except ValueError:
      continue
  return steps

