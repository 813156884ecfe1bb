"""Orbax checkpoints of the whole TrainState (params, opt state, state, step, rng)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from experiments.config import ConfigError

# Orbax writes a step into "<step>.orbax-checkpoint-tmp..." and renames it when complete.
TMP_MARK = ".orbax-checkpoint-tmp"
# Beside orbax's files in each step folder: the sha256 of every TrainState leaf at save time.
CHECKSUM_FILE = "divnorm_checksums.json"


class CheckpointWarning(UserWarning):
  """A checkpoint did not restore and was moved aside; an older one was used."""


class CheckpointError(RuntimeError):
  """No checkpoint of a workdir restores; the message says what to delete."""


class ChecksumMismatch(ValueError):
  """A restored leaf differs from the checksum written when its checkpoint was saved."""


class Checkpointer:
  """Saves every `every` steps and at the end; restores the newest checkpoint that restores.

  Saves are synchronous and atomic (orbax writes a temporary folder and renames
  it), so a process killed at any moment, even during a save, loses at most the
  steps since the previous checkpoint; temporary folders left by a kill are
  removed on the next start. Each save also writes the sha256 of every leaf
  (`CHECKSUM_FILE` in the step's folder), and a restore compares them: orbax does
  not notice every garbled byte of its array data. A checkpoint that does not
  restore (truncated or garbled files, an emptied folder) or whose restored leaves
  differ from their checksums is moved aside to `<directory>_damaged/` with a
  `CheckpointWarning`, and the next newest is used. A checkpoint without the
  checksum file (written before it existed, or killed between orbax's commit and
  the checksum's) is trusted as it restores. The data position is the
  step itself: batches are a function of (seed, step), and `TrainState.rng` is
  folded with the step.
  """

  def __init__(self, directory: str, *, every: int, max_to_keep: int = 2):
    self.every = int(every)
    self.directory = os.path.abspath(directory)
    check_directory(self.directory)
    self._remove_unfinished_saves()
    self._options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, enable_async_checkpointing=False, create=True)
    self._manager = self._new_manager()

  def _remove_unfinished_saves(self) -> None:
    """Deletes the temporary folders of saves cut short by a kill (never a committed step).

    Done here, synchronously, rather than by orbax's `cleanup_tmp_directories`,
    which deletes in a background thread of every manager.
    """
    if jax.process_index() != 0 or not os.path.isdir(self.directory):
      return
    for name in os.listdir(self.directory):
      if TMP_MARK in name:
        shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

  def _new_manager(self) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(self.directory, options=self._options)

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore(self, target: Any) -> Any:
    """Restores the newest checkpoint that restores, with `target`'s structure and shardings.

    Newer checkpoints that fail to restore are moved aside (never deleted) with a
    `CheckpointWarning` naming their path and error.

    Raises:
      CheckpointError: no checkpoint restores (it says what to delete), or there is none.
    """
    steps = sorted(self._manager.all_steps(), reverse=True)
    if not steps:
      raise CheckpointError(f"no checkpoint in {self.directory}.")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    failures: list[tuple[int, Exception]] = []
    for step in steps:
      # A fresh manager per attempt: a failed restore can leave orbax's handler state
      # unusable for the next one (an emptied step folder does).
      manager = self._new_manager()
      try:
        restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
        restored = jax.tree.unflatten(jax.tree.structure(target), jax.tree.leaves(restored))
        check_checksums(restored, self._step_path(step))
      except Exception as e:  # noqa: BLE001 - orbax raises many types for damaged files
        failures.append((step, e))
        continue
      finally:
        manager.close()
      for bad_step, error in failures:
        moved = self._move_aside(bad_step)
        warnings.warn(
            f"checkpoint {self._step_path(bad_step)} does not restore ({_describe(error)}); "
            f"moved it to {moved} and resumed from step {step} "
            f"({self._step_path(step)}).", CheckpointWarning, stacklevel=2)
      if failures:
        self._manager.close()
        self._manager = self._new_manager()
      return restored
    listing = "; ".join(f"{self._step_path(s)}: {_describe(e)}" for s, e in failures)
    raise CheckpointError(
        f"no checkpoint in {self.directory} restores ({listing}). If the config or the code "
        f"changed since they were written, rerun in another --workdir; otherwise they are "
        f"damaged: delete {self.directory} (or move it away) to train from step 0.")

  def _step_path(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def _move_aside(self, step: int) -> str:
    """Moves a step's folder to `<directory>_damaged/<step>[.n]`; returns the new path."""
    aside = self.directory.rstrip(os.sep) + "_damaged"
    os.makedirs(aside, exist_ok=True)
    dest, n = os.path.join(aside, str(step)), 0
    while os.path.exists(dest):
      n += 1
      dest = os.path.join(aside, f"{step}.{n}")
    if jax.process_index() == 0:
      shutil.move(self._step_path(step), dest)
    return dest

  def should_save(self, step: int) -> bool:
    return self.every > 0 and step % self.every == 0

  def save(self, step: int, train_state: Any) -> None:
    """Saves `step` (atomically, with its checksums).

    Raises:
      CheckpointError: the save failed (a full disk, a read-only folder); it names the
        folder, orbax's error and the step a rerun resumes from.
    """
    latest = self._manager.latest_step()
    if latest == step:
      return
    try:
      self._manager.save(step, args=ocp.args.StandardSave(train_state), force=True)
      self._manager.wait_until_finished()
      write_checksums(train_state, self._step_path(step))
    except Exception as e:  # noqa: BLE001 - orbax raises many types for a failed write
      resume = "step 0" if latest is None else f"step {latest}"
      raise CheckpointError(
          f"saving the checkpoint of step {step} in {self.directory} failed ({_describe(e)}). "
          f"Free space or make the folder writable, and rerun the same command: it resumes "
          f"from {resume}, the last checkpoint saved.") from e

  def close(self) -> None:
    self._manager.close()


def check_directory(directory: str) -> None:
  """Raises a ConfigError if `directory` (or a folder above it) is a file."""
  p = os.path.abspath(directory)
  while p != os.path.dirname(p):
    if os.path.exists(p) and not os.path.isdir(p):
      raise ConfigError(
          f"checkpoint folder {directory} cannot be created: {p} is a file. Move the file "
          f"away or pass another --workdir, e.g. --workdir runs/my_run.")
    p = os.path.dirname(p)


def leaf_checksums(tree: Any) -> dict[str, str | None]:
  """The sha256 of each leaf's dtype, shape and bytes, keyed by the leaf's path in `tree`.

  A leaf whose whole value this process does not hold (sharded over several processes) gets
  None: it is not checked.
  """
  sums: dict[str, str | None] = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      leaf = jax.random.key_data(leaf)
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
      if not leaf.sharding.is_fully_replicated:
        sums[jax.tree_util.keystr(path)] = None
        continue
      leaf = leaf.addressable_data(0)
    a = np.ascontiguousarray(jax.device_get(leaf))
    digest = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    digest.update(a.tobytes())
    sums[jax.tree_util.keystr(path)] = digest.hexdigest()
  return sums


def write_checksums(train_state: Any, step_dir: str) -> None:
  """Writes `leaf_checksums(train_state)` to `step_dir`/CHECKSUM_FILE, atomically."""
  sums = leaf_checksums(train_state)  # every process: fetching a leaf may be collective
  if jax.process_index() != 0:
    return
  path = os.path.join(step_dir, CHECKSUM_FILE)
  with open(path + ".tmp", "w") as f:
    json.dump({"sha256": sums}, f, indent=0)
  os.replace(path + ".tmp", path)


def check_checksums(restored: Any, step_dir: str) -> None:
  """Raises ChecksumMismatch if a restored leaf differs from the checksum saved with it.

  A checkpoint without a checksum file is trusted (written before checksums existed).
  """
  path = os.path.join(step_dir, CHECKSUM_FILE)
  if not os.path.exists(path):
    return
  with open(path) as f:
    saved = json.load(f)["sha256"]
  now = leaf_checksums(restored)
  if set(saved) != set(now):
    raise ChecksumMismatch(
        f"{path} lists other leaves than the restored TrainState "
        f"(saved {sorted(saved)[:4]}, restored {sorted(now)[:4]})")
  bad = [k for k, v in now.items() if v is not None and saved[k] is not None and v != saved[k]]
  if bad:
    raise ChecksumMismatch(
        f"{len(bad)} restored leaves differ from the sha256 written at save time "
        f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}): garbled bytes")


def _describe(error: Exception) -> str:
  text = " ".join(str(error).split())
  return f"{type(error).__name__}: {text[:300]}" if text else type(error).__name__
