"""A workdir remembers the config it trains: `<workdir>/config.json`.

Rerunning in the same workdir with the same config resumes; with a different one
it is refused, naming the first key that differs and how to start fresh. Fields
in `RESUMABLE_KEYS` may change between runs: they decide how long to train, how
often to log, evaluate and save, and where the data lives, not what a step
computes (e.g. raise `num_steps` to train further).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

import jax

from experiments.config import ConfigError, check_writable_dir
from experiments.engine import workers

CONFIG_FILE = "config.json"
LOCK_FILE = ".lock"  # one per process of a run: `.lock.<jax.process_index()>`
RESUMABLE_KEYS = frozenset({
    "num_steps", "max_steps", "log_every", "eval_every", "checkpoint_every", "trainer",
    "data_dir", "data.data_dir", "eval_batch_size", "max_eval_examples",
    "data.max_eval_batches", "eval_patches", "max_test_images", "test_source",
})


def plain(config: Any) -> Any:
  """`config` (a ConfigDict, dict, list...) as plain JSON values."""
  if hasattr(config, "to_dict"):
    config = config.to_dict()
  return json.loads(json.dumps(config, default=str, sort_keys=True))


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, Mapping):
    out: dict[str, Any] = {}
    for k, v in tree.items():
      out.update(_flatten(v, f"{prefix}{k}."))
    return out
  return {prefix[:-1]: tree}


def config_difference(saved: Any, current: Any) -> tuple[str, Any, Any] | None:
  """The first (key, saved value, current value) that differs, outside RESUMABLE_KEYS."""
  a, b = _flatten(plain(saved)), _flatten(plain(current))
  missing = object()
  for key in sorted(set(a) | set(b)):
    if key in RESUMABLE_KEYS:
      continue
    va, vb = a.get(key, missing), b.get(key, missing)
    if va != vb:
      return (key, "(absent)" if va is missing else va, "(absent)" if vb is missing else vb)
  return None


def check_workdir(workdir: str | None, config: Any) -> None:
  """Raises a ConfigError if `workdir` cannot hold a run or holds another config's run."""
  if workdir is None:
    return
  check_writable_dir(workdir, flag="--workdir", example="runs/my_run")
  for sub in ("checkpoints", "metrics.jsonl"):
    p = os.path.join(workdir, sub)
    if sub == "checkpoints" and os.path.exists(p) and not os.path.isdir(p):
      raise ConfigError(
          f"--workdir={workdir!r}: {p} is a file, where the checkpoints folder goes; move it "
          f"away or pass another --workdir, e.g. --workdir {workdir.rstrip('/')}_2.")
    if sub == "metrics.jsonl" and os.path.isdir(p):
      raise ConfigError(f"--workdir={workdir!r}: {p} is a folder, where the metrics file goes; "
                        f"move it away or pass another --workdir.")
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return
  try:
    with open(path) as f:
      saved = json.load(f)
  except (OSError, ValueError) as e:
    raise ConfigError(
        f"--workdir={workdir!r}: {path} is damaged ({type(e).__name__}: {e}). If this workdir "
        f"holds a run of the config you are passing, delete {path} and rerun to resume; "
        f"otherwise pass another --workdir.") from e
  diff = config_difference(saved, config)
  if diff is not None:
    key, old, new = diff
    raise ConfigError(
        f"--workdir={workdir!r} holds a run of another config: {key} is {old!r} there "
        f"({path}) and {new!r} now. Rerun with the same config to resume it, or start fresh: "
        f"pass another --workdir, or delete {workdir}.")


def save_config(workdir: str | None, config: Any) -> None:
  """Writes `<workdir>/config.json` atomically (process 0)."""
  if workdir is None or jax.process_index() != 0:
    return
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, CONFIG_FILE)
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    json.dump(plain(config), f, indent=1, sort_keys=True)
    f.write("\n")
  os.replace(tmp, path)


class WorkdirBusy(RuntimeError):
  """Another live process trains in the workdir (`hold_workdir`)."""


@contextlib.contextmanager
def hold_workdir(workdir: str | None) -> Iterator[None]:
  """Holds ``<workdir>/.lock.<process index>`` (`fcntl.flock`) while a run trains there.

  A second run of the same process index in the workdir is refused: two runs would delete
  each other's unfinished checkpoints and overwrite their metrics. The lock goes with the
  run's end or its process's death (a killed run's rerun takes it at once); the file keeps
  the holder's pid, for the error.

  Raises:
    WorkdirBusy: another live process holds the workdir.
  """
  if workdir is None:
    yield
    return
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, f"{LOCK_FILE}.{jax.process_index()}")
  fd = workers.try_lock(path)
  if fd is None:
    pid = workers.holder_pid(path)
    raise WorkdirBusy(
        f"workdir {workdir} is in use by process {'of unknown pid' if pid is None else pid}, "
        f"which trains a run there; wait for it to end (or stop it) before running again: "
        f"two runs in one workdir delete each other's checkpoints.")
  try:
    workers.mark_holder(fd)
    yield
  finally:
    os.close(fd)  # releases the lock
