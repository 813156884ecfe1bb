"""The task protocol: what a model + data pair gives the training engine."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import jax

Batch = Mapping[str, Any]
PyTree = Any


class TrainState(NamedTuple):
  """Everything a checkpoint restores.

  Attributes:
    step: int32 scalar, the number of optimizer steps taken.
    params: the trainable parameters.
    opt_state: the optax state.
    state: non-parameter collections (e.g. {"batch_stats": ...}, an RNN's
      carried hidden state); {} when there are none.
    rng: uint32 PRNG key; the key of step `s` is `fold_in(rng, s)`, so the
      random stream does not depend on where a run was resumed.
  """
  step: jax.Array
  params: PyTree
  opt_state: PyTree
  state: PyTree
  rng: jax.Array


@dataclasses.dataclass(frozen=True, kw_only=True)
class Task:
  """A model + data pair, as pure functions the engine jits.

  Attributes:
    init: `(rng, batch) -> variables`, a dict with "params" and any other
      collections; a "losses" collection is dropped.
    loss: `(params, state, batch, rng, train) -> (loss, (new_state, metrics))`.
      `train` is a Python bool. `loss` is the full objective (data term plus
      penalties, e.g. from `divnorm.linen.apply_with_penalty`). `metrics` is a
      dict of float scalars averaged over the (global) batch.
    train_batches: `(start_step) -> iterator` of host-local numpy batches
      (this process's rows of the global batch), positioned so that the first
      batch is the one of step `start_step` (resume).
    eval_step: `(params, state, batch) -> (sums, state)`; `sums` is a dict of
      float scalars summed over the batch (include "count"); the returned
      state is passed to the next eval batch (carried RNN state); the CNN
      returns it unchanged.
    eval_batches: `() -> iterable` of host-local numpy eval batches.
    eval_init: `state -> state` for the first eval batch (default identity).
    eval_finalize: `sums -> metrics` (default: every sum divided by "count").
    state_sharding: `(mesh, state) -> tree of shardings` for `state`
      (default: replicated); e.g. batch-shard a carried hidden state.
  """
  init: Callable[[jax.Array, Batch], PyTree]
  loss: Callable[..., tuple[jax.Array, tuple[PyTree, dict]]]
  train_batches: Callable[[int], Iterator[Batch]]
  eval_step: Callable[..., tuple[dict, PyTree]] | None = None
  eval_batches: Callable[[], Iterable[Batch]] | None = None
  eval_init: Callable[[PyTree], PyTree] | None = None
  eval_finalize: Callable[[dict], dict] | None = None
  state_sharding: Callable[[Any, PyTree], PyTree] | None = None


def default_finalize(sums: dict) -> dict:
  """Divides every sum by sums["count"] (kept as is)."""
  count = sums.get("count")
  if not count:
    return dict(sums)
  return {k: (v if k == "count" else v / count) for k, v in sums.items()}
