"""Data parallelism with jit + NamedSharding, on one host or many.

The batch is sharded over a 1-D mesh axis "data"; parameters and state are
replicated. Under `jit` XLA inserts the cross-device reductions itself, so
batch-norm statistics (a mean over the batch axis) are global.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from experiments.config import ConfigError

DATA_AXIS = "data"


def reserve_cpu_threads(environ: MutableMapping[str, str] = os.environ) -> int | None:
  """Gives XLA's CPU client twice as many pool threads as it has forced host devices.

  XLA runs the parallel branches of every device's program, a scan's loop among them, on
  one thread pool of ``max(cores, devices)`` threads. When a loop all-reduces (batch norm
  over a batch-sharded axis, at every time step), the loops of some devices can block all
  of the pool's threads at the rendezvous while another device's loop waits in the pool's
  queue: a deadlock that XLA ends after 40 s by aborting the process (results/SUITE.md).
  The pool's size is the environment variable ``PJRT_NPROC``, read when JAX creates its CPU
  client, so call this before the first computation. Leaves a ``PJRT_NPROC`` that is set.

  Returns the ``PJRT_NPROC`` set, or None when nothing was changed.
  """
  if "PJRT_NPROC" in environ:
    return None
  found = re.search(r"--xla_force_host_platform_device_count=(\d+)",
                    environ.get("XLA_FLAGS", ""))
  devices = int(found.group(1)) if found else 1
  if devices < 2:
    return None
  threads = max(2 * devices, os.cpu_count() or 1)
  environ["PJRT_NPROC"] = str(threads)
  return threads


def initialize_distributed(*, coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None,
                           cpu_collectives: str | None = None) -> None:
  """Calls `jax.distributed.initialize` when running as several processes.

  Does nothing when `num_processes` is None or 1 and no coordinator is given.
  On a TPU pod call it with no arguments set except `num_processes=-1`: JAX
  finds the topology itself.

  Args:
    coordinator_address: "host:port" of process 0.
    num_processes: how many processes run the same command.
    process_id: this process's index.
    cpu_collectives: e.g. "gloo", needed for CPU-only multi-process runs.
  """
  if cpu_collectives:
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
  if num_processes == -1:
    jax.distributed.initialize()
    return
  if coordinator_address is None and (num_processes or 1) == 1:
    return
  jax.distributed.initialize(coordinator_address, num_processes=num_processes,
                             process_id=process_id)


def make_mesh(devices: Sequence[Any] | None = None) -> Mesh:
  """A 1-D "data" mesh over `devices` (default: every device of every process).

  Devices are ordered by process, so process p's local rows of a global batch
  are the p-th contiguous block.
  """
  if devices is None:
    devices = jax.devices()
  devices = sorted(devices, key=lambda d: (d.process_index, d.id))
  return Mesh(np.asarray(devices), (DATA_AXIS,),
              axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh, *, name: str = "batch_size") -> None:
  """Raises a ConfigError naming the fix when `batch_size` does not split evenly."""
  n = mesh.size
  if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
    raise ConfigError(f"--set {name}={batch_size!r}: must be a positive integer; e.g. "
                      f"--set {name}={max(n, 100 - 100 % n)}.")
  if batch_size % n:
    lo = max(n, batch_size - batch_size % n)
    raise ConfigError(
        f"--set {name}={batch_size}: {name}={batch_size} is not divisible by the {n} devices; "
        f"use a multiple of {n} (e.g. --set {name}={lo} or {lo + n}), or run on fewer devices.")
  if batch_size % jax.process_count():
    raise ConfigError(f"--set {name}={batch_size}: not divisible by the "
                      f"{jax.process_count()} processes.")


def local_rows(global_batch_size: int) -> slice:
  """The rows of a global batch that this process reads."""
  per = global_batch_size // jax.process_count()
  start = jax.process_index() * per
  return slice(start, start + per)


def put_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Places a host-local batch as one global batch-sharded array per field.

  Each process passes only its own rows (`local_rows`); the global batch is
  their concatenation in process order.
  """
  sharding = batch_sharded(mesh)
  out = {}
  for k, v in batch.items():
    v = np.asarray(v)
    global_shape = (v.shape[0] * jax.process_count(),) + v.shape[1:]
    out[k] = jax.make_array_from_process_local_data(sharding, v, global_shape)
  return out


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places a pytree of host values replicated on every device of `mesh`."""
  return jax.device_put(tree, replicated(mesh))
