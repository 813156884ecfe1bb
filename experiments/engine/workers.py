"""Independent training runs on one worker process per CPU core, resumable by rerunning.

On a small CPU machine XLA's intra-op threads gain little on the paper's small
networks: two single-threaded processes, each pinned to its own core, train
two CNN runs at about 1.6x the examples per second of one process that uses
both cores (measured on the 2-core CI machine: 420 + 370 examples/s against
500). So a study of many runs
starts `workers` copies of one command, each with its index, its core and
single-threaded XLA.

Each worker walks the same job list and takes a job by locking
``<locks>/<job>.lock`` (`fcntl.flock`, held for the whole job and released by
the kernel when the process dies, so a killed worker leaves no stale claim).
A job whose result exists is skipped. Rerunning the command after a crash or a
kill therefore continues: finished jobs are kept, and a job cut short resumes
from its last checkpoint through the engine.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence

SINGLE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def single_thread_env(env: dict[str, str] | None = None) -> dict[str, str]:
  """`env` (default os.environ) with XLA's CPU backend limited to one thread."""
  env = dict(os.environ if env is None else env)
  env["XLA_FLAGS"] = " ".join(filter(None, [env.get("XLA_FLAGS", ""), SINGLE_THREAD_XLA]))
  return env


def available_cores() -> list[int]:
  """The CPU cores this process may run on."""
  return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(
      range(os.cpu_count() or 1))


def run_workers(argv: Sequence[str], *, workers: int) -> int:
  """Runs ``python <argv> --worker_index i`` for i < workers, each on its own core.

  Returns the largest exit status (0 when every worker succeeded).
  """
  if workers < 1:
    raise ValueError(f"workers={workers}: must be at least 1.")
  cores = available_cores()
  procs = []
  for i in range(workers):
    core = cores[i % len(cores)]
    preexec = (lambda c=core: os.sched_setaffinity(0, {c})) if hasattr(
        os, "sched_setaffinity") else None
    procs.append(subprocess.Popen([sys.executable, *argv, "--worker_index", str(i)],
                                  env=single_thread_env(), preexec_fn=preexec))
  try:
    return max(p.wait() for p in procs)
  except KeyboardInterrupt:
    for p in procs:
      p.terminate()
    raise


def claimed_jobs(names: Sequence[str], *, lock_dir: str, is_done: Callable[[str], bool]
                 ) -> Iterator[str]:
  """Yields each job of `names` that is not done and that no other live process holds.

  The lock of a yielded job is held until the generator advances past it.
  """
  os.makedirs(lock_dir, exist_ok=True)
  for name in names:
    if is_done(name):
      continue
    fd = os.open(os.path.join(lock_dir, f"{name}.lock"), os.O_CREAT | os.O_RDWR, 0o644)
    try:
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        continue  # another worker runs it
      if is_done(name):  # finished while we waited for the lock
        continue
      yield name
    finally:
      os.close(fd)  # releases the lock


def write_json(path: str, obj) -> None:
  """Writes `obj` as JSON to `path` atomically (a killed process leaves the old file or none)."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=1, sort_keys=True, default=float)
  os.replace(tmp, path)


def result_exists(results_dir: str, name: str) -> bool:
  """Whether job `name` is done: its ``<results_dir>/<name>/result.json`` exists."""
  return os.path.exists(os.path.join(results_dir, name, "result.json"))
