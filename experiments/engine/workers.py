"""Independent training runs on one worker process per CPU core, resumable by rerunning.

On a small CPU machine XLA's intra-op threads gain little on the paper's small
networks: two single-threaded processes, each pinned to its own core, train
two CNN runs at about 1.6x the examples per second of one process that uses
both cores (measured on the 2-core CI machine: 420 + 370 examples/s against
500). So a study of many runs starts `workers` copies of one command, each
with its index, its core and single-threaded XLA.

Each worker walks the same job list and takes a job by locking
``<locks>/<job>.lock`` (`fcntl.flock`, held for the whole job and released by
the kernel when the process dies, so a killed worker leaves no stale claim;
the holder's pid is written into the file for `status`; the job's process dies with
its worker, `end_with_worker`). A job whose result
exists is skipped. Each job runs in a child process of its own (`run_child`):
a job that crashes the interpreter (a signal, an XLA abort) is retried from its
last checkpoint, and a long study never grows one process's memory. Rerunning
the command after a crash or a kill therefore continues: finished jobs are
kept, and a job cut short resumes from its last checkpoint through the engine.
Nothing here has a wall-clock timeout: a worker paused with SIGSTOP (as
/work/bin/quiet does to time benchmarks) simply continues on SIGCONT.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence

from experiments.engine import heap

SINGLE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
# Exit status of a job process that refused its config: the worker stops (every job would).
CONFIG_ERROR_STATUS = 3
WORKER_PID_ENV = "DIVNORM_STUDY_WORKER"  # set by `run_child`: the job's worker's pid


def single_thread_env(env: dict[str, str] | None = None) -> dict[str, str]:
  """`env` (default os.environ) with XLA's CPU backend limited to one thread."""
  env = dict(os.environ if env is None else env)
  env["XLA_FLAGS"] = " ".join(filter(None, [env.get("XLA_FLAGS", ""), SINGLE_THREAD_XLA]))
  return env


def available_cores() -> list[int]:
  """The CPU cores this process may run on."""
  return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(
      range(os.cpu_count() or 1))


def run_workers(argv: Sequence[str], *, workers: int, cores: Sequence[int] | None = None) -> int:
  """Runs ``python <argv> --worker_index i`` for i < workers, worker i on ``cores[i % n]``.

  `cores` defaults to `available_cores()`. Returns the largest exit status, 0 when every
  worker succeeded; a worker killed by a signal counts as ``128 + signal`` (the shell's
  status: ``-9`` from `subprocess` took 0 against another worker's 0), and each failed
  worker is named on stderr. The workers, and the jobs they start, run with single-threaded
  XLA (`single_thread_env`) and glibc's heap kept (`heap.started_with_kept_memory`).
  """
  if workers < 1:
    raise ValueError(f"workers={workers}: must be at least 1.")
  cores = list(cores) if cores else available_cores()
  procs = []
  for i in range(workers):
    core = cores[i % len(cores)]
    preexec = (lambda c=core: os.sched_setaffinity(0, {c})) if hasattr(
        os, "sched_setaffinity") else None
    procs.append(subprocess.Popen([sys.executable, *argv, "--worker_index", str(i)],
                                  env=heap.started_with_kept_memory(single_thread_env()),
                                  preexec_fn=preexec))
  try:
    statuses = [p.wait() for p in procs]
  except KeyboardInterrupt:
    for p in procs:
      p.terminate()
    raise
  for i, status in enumerate(statuses):
    if status:
      print(f"worker {i} ended with {describe_status(status)}; the jobs it did not finish "
            f"stay to run: run the same command again to train them.", file=sys.stderr,
            flush=True)
  return max(128 - s if s < 0 else s for s in statuses)


def claimed_jobs(names: Sequence[str], *, lock_dir: str, is_done: Callable[[str], bool]
                 ) -> Iterator[str]:
  """Yields each job of `names` that is not done and that no other live process holds.

  The lock of a yielded job is held until the generator advances past it; the
  holder's pid is written into the lock file (read by `holder`).
  """
  os.makedirs(lock_dir, exist_ok=True)
  for name in names:
    if is_done(name):
      continue
    fd = try_lock(lock_path(lock_dir, name))
    if fd is None:
      continue  # another worker runs it
    try:
      if is_done(name):  # finished while we waited for the lock
        continue
      mark_holder(fd)
      yield name
    finally:
      os.close(fd)  # releases the lock


def try_lock(path: str) -> int | None:
  """An fd of `path` (created if missing) holding its exclusive `fcntl.flock`, or None where
  another process holds it. Closing the fd, or the process's death, releases the lock."""
  fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    os.close(fd)
    return None
  return fd


def mark_holder(fd: int) -> None:
  """Writes this process's pid into the lock file `fd` holds (read by `holder_pid`)."""
  os.ftruncate(fd, 0)
  os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def holder_pid(path: str) -> int | None:
  """The pid `mark_holder` wrote into lock file `path`, or None; read without the lock."""
  try:
    with open(path) as f:
      return int(f.read().split()[0])
  except (OSError, ValueError, IndexError):
    return None


def lock_path(lock_dir: str, name: str) -> str:
  return os.path.join(lock_dir, f"{name}.lock")


def holder(lock_dir: str, name: str) -> int | None:
  """The pid of the live worker that holds job `name`, or None.

  Read from the lock file without taking the lock (taking it, even briefly, would
  make a worker skip the job).
  """
  pid = holder_pid(lock_path(lock_dir, name))
  if pid is None:
    return None
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return None
  except PermissionError:
    return pid
  try:  # a recycled pid of another program does not count
    with open(f"/proc/{pid}/cmdline", "rb") as f:
      if b"python" not in f.read():
        return None
  except OSError:
    pass
  return pid


def describe_status(status: int) -> str:
  """A subprocess return code in words ("exit status 1", "signal SIGABRT")."""
  if status < 0:
    try:
      return f"signal {signal.Signals(-status).name}"
    except ValueError:
      return f"signal {-status}"
  return f"exit status {status}"


def run_child(argv: Sequence[str], *, log_path: str, attempts: int,
              is_done: Callable[[], bool]) -> tuple[bool, str]:
  """Runs ``python <argv>`` until `is_done()` or `attempts` runs; output appended to `log_path`.

  Returns (done, what happened). A run that ends without the job being done (a
  crash, a signal) is started again: the job resumes from its last checkpoint.
  A run that exits with `CONFIG_ERROR_STATUS` is not retried.
  """
  os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
  outcomes = []
  for attempt in range(1, attempts + 1):
    with open(log_path, "ab") as log:
      log.write(f"== attempt {attempt}: {' '.join(argv)}\n".encode())
      log.flush()
      status = subprocess.call([sys.executable, *argv], stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, WORKER_PID_ENV: str(os.getpid())})
    if is_done():
      return True, f"done after {attempt} attempt(s)"
    outcomes.append(describe_status(status))
    if status == CONFIG_ERROR_STATUS:
      break
  return False, f"ended without a result {len(outcomes)} time(s) ({', '.join(outcomes)})"


def end_with_worker() -> None:
  """In a job's process that a worker started (`run_child`): the job dies with its worker.

  Linux sends the job SIGKILL when its worker dies (``PR_SET_PDEATHSIG``), so a killed
  worker leaves no job training outside any claim: a rerun's worker claims it and resumes
  it from its checkpoint. A worker gone before this call ends the job at once. Elsewhere the
  workdir's lock (`hold_workdir`) still refuses a second run of the job.
  """
  worker = os.environ.get(WORKER_PID_ENV)
  if worker is None:
    return
  try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
  except (OSError, AttributeError):  # not Linux
    return
  if os.getppid() != int(worker):
    sys.exit(f"the worker (pid {worker}) that started this job has ended; rerun the study.")


def log_tail(path: str, lines: int = 15) -> str:
  """The last `lines` lines of a text file ("" if it does not exist)."""
  try:
    with open(path, "rb") as f:
      f.seek(0, os.SEEK_END)
      f.seek(max(0, f.tell() - 16_000))
      return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])
  except OSError:
    return ""


def write_json(path: str, obj) -> None:
  """Writes `obj` as JSON to `path` atomically (a killed process leaves the old file or none)."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=1, sort_keys=True, default=float)
  os.replace(tmp, path)


def result_exists(results_dir: str, name: str) -> bool:
  """Whether job `name` is done: its ``<results_dir>/<name>/result.json`` exists."""
  return os.path.exists(os.path.join(results_dir, name, "result.json"))
