"""Orbax checkpoints of the whole TrainState (params, opt state, state, step, rng)."""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Saves every `every` steps and at the end; restores the latest one.

  Saves are synchronous, so a process killed at any moment leaves either a
  complete checkpoint or none (orbax writes to a temporary folder and renames).
  The data position is the step itself: batches are a function of
  (seed, step), and `TrainState.rng` is folded with the step.
  """

  def __init__(self, directory: str, *, every: int, max_to_keep: int = 2):
    self.every = int(every)
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, enable_async_checkpointing=False, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore(self, target: Any) -> Any:
    """Restores the latest checkpoint with `target`'s structure and shardings."""
    step = self._manager.latest_step()
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    restored = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
    return jax.tree.unflatten(jax.tree.structure(target), jax.tree.leaves(restored))

  def should_save(self, step: int) -> bool:
    return self.every > 0 and step % self.every == 0

  def save(self, step: int, train_state: Any) -> None:
    if self._manager.latest_step() == step:
      return
    self._manager.save(step, args=ocp.args.StandardSave(train_state), force=True)
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()
