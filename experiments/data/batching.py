"""Host-side batching of in-memory arrays, positioned by step (resumable).

Batch `s` of a run is a pure function of (seed, s): the example order of epoch
`e` is `default_rng([seed, e]).permutation(n)`, and each process takes its
contiguous rows of the global batch. No per-example Python loop: one fancy
index per field and batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import jax
import numpy as np

from experiments.config import ConfigError

Arrays = Mapping[str, np.ndarray]


def _num_examples(arrays: Arrays) -> int:
  sizes = {len(v) for v in arrays.values()}
  if len(sizes) != 1:
    raise ValueError(f"fields have different lengths: { {k: len(v) for k, v in arrays.items()} }")
  return sizes.pop()


def _process_slice(batch_size: int, process_index: int | None, process_count: int | None) -> slice:
  pi = jax.process_index() if process_index is None else process_index
  pc = jax.process_count() if process_count is None else process_count
  if batch_size % pc:
    raise ValueError(f"batch_size={batch_size} is not divisible by the {pc} processes.")
  per = batch_size // pc
  return slice(pi * per, (pi + 1) * per)


def epoch_order(num_examples: int, *, seed: int, epoch: int) -> np.ndarray:
  """The example order of `epoch`."""
  return np.random.default_rng([seed, epoch]).permutation(num_examples)


def train_batches(arrays: Arrays, *, batch_size: int, seed: int, start_step: int = 0,
                  transform: Callable[[dict], dict] | None = None,
                  process_index: int | None = None, process_count: int | None = None
                  ) -> Iterator[dict[str, np.ndarray]]:
  """Endless shuffled batches, starting with the one of step `start_step`.

  Args:
    arrays: fields of equal length (e.g. {"image": uint8 [N,H,W,C], "label": [N]}).
    batch_size: the global batch size; incomplete batches at an epoch's end
      are dropped.
    seed: shuffling seed.
    start_step: first batch to yield (0 for a fresh run, the restored step on
      resume).
    transform: applied to each local batch (e.g. uint8 -> float, mean removal).
    process_index, process_count: default to JAX's; this process yields only
      its rows of every global batch.
  """
  n = _num_examples(arrays)
  steps_per_epoch = n // batch_size
  if steps_per_epoch == 0:
    raise ConfigError(
        f"--set batch_size={batch_size} exceeds the {n} training examples: lower --set "
        f"batch_size or train on more examples (e.g. raise --set max_train_examples).")
  rows = _process_slice(batch_size, process_index, process_count)
  step = start_step
  epoch, order = None, None
  while True:
    e, i = divmod(step, steps_per_epoch)
    if e != epoch:
      epoch, order = e, epoch_order(n, seed=seed, epoch=e)
    idx = order[i * batch_size:(i + 1) * batch_size][rows]
    batch = {k: v[idx] for k, v in arrays.items()}
    yield transform(batch) if transform is not None else batch
    step += 1


def eval_batches(arrays: Arrays, *, batch_size: int,
                 transform: Callable[[dict], dict] | None = None,
                 process_index: int | None = None, process_count: int | None = None
                 ) -> Iterator[dict[str, np.ndarray]]:
  """One pass in order; the last batch is padded and every batch has a float32 "mask"."""
  n = _num_examples(arrays)
  rows = _process_slice(batch_size, process_index, process_count)
  for start in range(0, n, batch_size):
    idx = np.arange(start, start + batch_size)[rows]
    mask = (idx < n).astype(np.float32)
    idx = np.minimum(idx, n - 1)
    batch = {k: v[idx] for k, v in arrays.items()}
    batch = transform(batch) if transform is not None else batch
    batch["mask"] = mask
    yield batch
