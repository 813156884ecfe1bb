r"""The one study runner: a plan of jobs, a resumable worker pool, and the `run|status|report` CLI.

An experiment describes its study as a `Study` (its plans of jobs, how one job
trains and measures, how the report is written) and its module ends with

    if __name__ == "__main__":
      engine.study.cli(STUDY)

which gives it the same command line as every other study:

    python -m experiments.cnn.study run                 # every plan, in the protocol's order
    python -m experiments.cnn.study run --plans sigma_alone --jobs '*-s0'   # a part
    python -m experiments.cnn.study status              # done / running / failed / to run
    python -m experiments.cnn.study report              # tables and figures from the results

`run` starts one single-threaded worker per core (`experiments.engine.workers`);
each worker claims jobs in plan order and trains each in a child process, which
resumes from the job's last checkpoint. A job is done when
``<results>/<job>/result.json`` exists; a job that raises writes a result with a
``failed`` field (a diverged run is a result too). Rerunning `run` continues;
it never retries a failed job unless asked: `run --retry_failed` moves each
selected failed job's result.json to ``failed_result.json`` and trains the job
again, from its last checkpoint. See experiments/engine/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import glob
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from experiments.config import ConfigError, check_writable_dir, positive_int
from experiments.engine import workers
from experiments.engine.stop import read_rows


class Job(Protocol):
  """What the runner needs of a job: a unique, file-name-safe `name` (a frozen dataclass)."""
  name: str


@dataclasses.dataclass(frozen=True)
class Plan:
  """A named list of jobs, in the order they run.

  Attributes:
    name: the `--plans` name.
    jobs: the jobs (frozen dataclasses with a `name`), in order.
    about: one line for `status` and `--help`.
  """
  name: str
  jobs: tuple[Any, ...]
  about: str = ""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Study:
  """An experiment's study: its plans and how to run, summarize and report a job.

  Attributes:
    name: e.g. "cnn".
    module: the module whose `cli(STUDY)` runs this study (`python -m <module>`):
      workers and job processes are started as that command.
    plans: the plans, in the protocol's order (`run` without `--plans` runs all).
    run_job: `(job, runs_dir, results_dir) -> row`: trains the job (resuming from
      `<runs_dir>/<job.name>`), writes its files (metrics, config; never
      checkpoints) to `<results_dir>/<job.name>/` and returns its result row; the
      runner writes the row as that folder's `result.json` (the job is then done).
    report: `(results_dir) -> markdown`: writes the study's tables and figures from
      whatever jobs have finished (`load_results`) and returns the main table.
    summary: `row -> str`, one line on a finished job for `status` (default: none).
    runs_dir, results_dir: the default folders (checkpoints; committed results).
    protocol: the protocol file that fixes the plans (named in `--help`).
    attempts: runs of a job whose process dies without a result (a signal, an
      abort) before the runner records it as failed.
  """
  name: str
  module: str
  plans: tuple[Plan, ...]
  run_job: Callable[[Any, str, str], dict]
  report: Callable[[str], str]
  summary: Callable[[dict], str] | None = None
  runs_dir: str
  results_dir: str
  protocol: str = ""
  attempts: int = 3

  def __post_init__(self):
    names = [p.name for p in self.plans]
    if len(set(names)) != len(names):
      raise ValueError(f"study {self.name!r}: plan names repeat: {names}.")
    seen: dict[str, Any] = {}
    for plan in self.plans:
      for job in plan.jobs:
        if job.name in seen and seen[job.name] != job:
          raise ValueError(f"study {self.name!r}: two different jobs are named {job.name!r}.")
        seen[job.name] = job

  def with_plans(self, *plans: Plan, module: str, **changes) -> Study:
    """This study with `plans` added after its own, run by `module`.

    How another module adds jobs to a study (e.g. new CNN variants): it defines its
    plans of the study's jobs and ``STUDY = cnn.study.STUDY.with_plans(..., module=__name__)``,
    then ``engine.study.cli(STUDY)``; its jobs share the study's folders and report.
    """
    return dataclasses.replace(self, plans=(*self.plans, *plans), module=module, **changes)

  def plan(self, name: str) -> Plan:
    for p in self.plans:
      if p.name == name:
        return p
    raise ConfigError(f"--plans: unknown plan {name!r}; valid choices: "
                      f"{', '.join(p.name for p in self.plans)}.")

  def jobs(self, plans: Sequence[str] | None = None, patterns: Sequence[str] = ()) -> list[Any]:
    """The jobs of `plans` (default all) whose name matches one of `patterns` (fnmatch), in order.

    A job in several plans is listed once, at its first place.
    """
    chosen = [self.plan(p) for p in plans] if plans else list(self.plans)
    out, seen = [], set()
    for plan in chosen:
      for job in plan.jobs:
        if job.name in seen or (patterns and not any(fnmatch.fnmatchcase(job.name, pat)
                                                     for pat in patterns)):
          continue
        seen.add(job.name)
        out.append(job)
    return out

  def job(self, name: str) -> Any:
    for plan in self.plans:
      for job in plan.jobs:
        if job.name == name:
          return job
    raise ConfigError(f"no job named {name!r} in study {self.name!r}; "
                      f"`python -m {self.module} status` lists them.")


# ---- one job ------------------------------------------------------------------------------

def job_fields(job: Any) -> dict[str, Any]:
  """The job's fields as JSON values, with its name."""
  fields = dataclasses.asdict(job) if dataclasses.is_dataclass(job) else {}
  return {**json.loads(json.dumps(fields, default=list)), "name": job.name}


def run_one(study: Study, job: Any, *, runs_dir: str, results_dir: str) -> dict:
  """Runs `job` (resuming) and writes its result.json: the row, or a failed row.

  A `ConfigError` is re-raised (the study itself is wrong; no result is written);
  any other exception becomes ``{..., "failed": "<type>: <message>"}``.
  """
  out = os.path.join(results_dir, job.name)
  t0 = time.time()
  try:
    row = study.run_job(job, runs_dir, results_dir)
  except ConfigError:
    raise
  except Exception as e:  # noqa: BLE001 - a diverged run is a result too; the others go on
    row = {**job_fields(job), "failed": f"{type(e).__name__}: {e}",
           "seconds_this_process": time.time() - t0, "machine": machine_description()}
  os.makedirs(out, exist_ok=True)
  workers.write_json(os.path.join(out, "result.json"), row)
  return row


FAILED_RESULT = "failed_result.json"  # a failed result.json, moved aside by --retry_failed


def failed_names(results: dict[str, dict]) -> list[str]:
  """The failed jobs of `load_results(...)`, sorted."""
  return sorted(n for n, r in results.items() if "failed" in r)


def failed_note(failed: Sequence[str], module: str) -> str:
  """One line for a report or `status`: how many jobs failed, which, and how to retry them.

  "" when none failed.
  """
  if not failed:
    return ""
  return (f"{len(failed)} job(s) failed and are left out of every mean and test: "
          f"{', '.join(failed)} (the error is in each one's result.json). `python -m {module} "
          f"run --retry_failed` trains them again from their last checkpoints (add --jobs "
          f"'NAME,...' to choose); a run that diverged will diverge again unless its cause is "
          f"fixed.")


def retry_failed(study: Study, args) -> list[str]:
  """Moves the result.json of each selected failed job to `FAILED_RESULT`, so `run` retrains it.

  Returns the names of those jobs. The job resumes from its last checkpoint in `runs_dir`.
  """
  results = load_results(args.results_dir)
  names = [job.name for job in study.jobs(args.plans, args.jobs)
           if "failed" in results.get(job.name, {})]
  for name in names:
    folder = os.path.join(args.results_dir, name)
    os.replace(os.path.join(folder, "result.json"), os.path.join(folder, FAILED_RESULT))
  return names


def load_results(results_dir: str) -> dict[str, dict]:
  """Every ``<results_dir>/<job>/result.json``, by job name (failed jobs included)."""
  out = {}
  for path in sorted(glob.glob(os.path.join(results_dir, "*", "result.json"))):
    with open(path) as f:
      row = json.load(f)
    out[row.get("name") or os.path.basename(os.path.dirname(path))] = row
  return out


def machine_description() -> str:
  """The machine a result was measured on: host, CPU model and cores, JAX backend and version."""
  import jax
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
    cpu = names[0] if names else cpu
  except OSError:
    pass
  return (f"{platform.node() or 'host'}: {os.cpu_count()} CPU cores visible ({cpu}), "
          f"{jax.device_count()} {jax.default_backend()} device(s), jax {jax.__version__}")


# ---- the worker ----------------------------------------------------------------------------

def _selection_args(args) -> list[str]:
  return [*(["--plans", ",".join(args.plans)] if args.plans else []),
          *(["--jobs", ",".join(args.jobs)] if args.jobs else []),
          "--runs_dir", args.runs_dir, "--results_dir", args.results_dir]


def worker(study: Study, args) -> int:
  """Claims the selected jobs one by one and runs each in a child process until it has a result."""
  done = lambda n: workers.result_exists(args.results_dir, n)  # noqa: E731
  tag = f"[{study.name} worker {args.worker_index}]"
  lock_dir = os.path.join(args.runs_dir, "locks")
  for name in workers.claimed_jobs([j.name for j in study.jobs(args.plans, args.jobs)],
                                   lock_dir=lock_dir, is_done=done):
    log = os.path.join(args.runs_dir, "logs", f"{name}.log")
    print(f"{tag} {time.strftime('%H:%M:%S')} {name}: started (log {log})", flush=True)
    ok, what = workers.run_child(
        ["-m", study.module, "job", name, "--runs_dir", args.runs_dir,
         "--results_dir", args.results_dir],
        log_path=log, attempts=study.attempts, is_done=lambda n=name: done(n))
    if not ok:
      tail = workers.log_tail(log)
      if "ConfigError" in tail:
        print(f"{tag} {name}: the study's config is wrong; stopping.\n{tail}", flush=True)
        return workers.CONFIG_ERROR_STATUS
      job = study.job(name)
      os.makedirs(os.path.join(args.results_dir, name), exist_ok=True)
      workers.write_json(os.path.join(args.results_dir, name, "result.json"), {
          **job_fields(job), "failed": f"the job's process {what}; log tail:\n{tail}"})
    row = load_results_row(args.results_dir, name)
    line = row.get("failed", "").splitlines()[0] if "failed" in row else (
        study.summary(row) if study.summary else "done")
    print(f"{tag} {time.strftime('%H:%M:%S')} {name}: {line}", flush=True)
  return 0


def load_results_row(results_dir: str, name: str) -> dict:
  with open(os.path.join(results_dir, name, "result.json")) as f:
    return json.load(f)


# ---- status ---------------------------------------------------------------------------------

def progress(runs_dir: str, job: Any) -> str:
  """"step S[/N]" from the job's training metrics so far ("" before its first log row)."""
  rows = [r for r in read_rows(os.path.join(runs_dir, job.name, "metrics.jsonl"))
          if r.get("kind") == "train"]
  if not rows:
    return ""
  total = getattr(job, "num_steps", None)
  return f"step {rows[-1]['step']}" + (f"/{total}" if total else "")


def status(study: Study, args) -> str:
  """One line per selected job (done, failed, running with its step, to run) and the counts."""
  results = load_results(args.results_dir)
  lock_dir = os.path.join(args.runs_dir, "locks")
  counts = {"done": 0, "failed": 0, "running": 0, "to run": 0}
  lines = []
  for job in study.jobs(args.plans, args.jobs):
    row = results.get(job.name)
    if row is not None and "failed" in row:
      state, note = "failed", row["failed"].splitlines()[0][:120]
    elif row is not None:
      state, note = "done", study.summary(row) if study.summary else ""
    elif (pid := workers.holder(lock_dir, job.name)) is not None:
      state, note = "running", f"pid {pid}, {progress(args.runs_dir, job) or 'starting'}"
    else:
      state, note = "to run", progress(args.runs_dir, job)
      note = f"(checkpointed, {note})" if note else ""
    counts[state] += 1
    lines.append(f"{state:8s} {job.name}  {note}".rstrip())
  plans = ", ".join(args.plans) if args.plans else ", ".join(p.name for p in study.plans)
  head = (f"{study.name} study ({plans}; results {args.results_dir}, checkpoints "
          f"{args.runs_dir}): " + ", ".join(f"{v} {k}" for k, v in counts.items()))
  chosen = {job.name for job in study.jobs(args.plans, args.jobs)}
  note = failed_note([n for n in failed_names(results) if n in chosen], study.module)
  return "\n".join([head, *lines, *([note] if note else [])])


# ---- the command line -----------------------------------------------------------------------

def _list(text: str | None) -> tuple[str, ...]:
  return tuple(x.strip() for x in (text or "").split(",") if x.strip())


def _cores(text: str) -> tuple[int, ...]:
  try:
    cores = tuple(int(x) for x in _list(text))
  except ValueError:
    raise ConfigError(f"--cores {text!r}: expected comma-separated core numbers, e.g. "
                      f"--cores 0,1.") from None
  bad = [c for c in cores if c not in workers.available_cores()]
  if bad:
    raise ConfigError(f"--cores {text!r}: core(s) {bad} are not available here; available: "
                      f"{workers.available_cores()}.")
  return cores


def main(study: Study, argv: Sequence[str] | None = None) -> int:
  """The study's command line: run, status, report (and the internal worker, job)."""
  about = "\n".join(f"  {p.name}: {p.about}" for p in study.plans)
  p = argparse.ArgumentParser(
      prog=f"python -m {study.module}",
      description=f"The {study.name} study" + (f" of {study.protocol}" if study.protocol else "")
      + f". Plans, in order:\n{about}", formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("command", choices=("run", "status", "report", "worker", "job"),
                 help="run: train the selected jobs (resumable); status: what is done; "
                      "report: tables and figures")
  p.add_argument("name", nargs="?", help=argparse.SUPPRESS)  # the job of `job`
  p.add_argument("--plans", default="", help="comma-separated plans (default: all, in order)")
  p.add_argument("--jobs", default="", help="comma-separated job-name patterns, e.g. '*-s0'")
  p.add_argument("--workers", type=positive_int(2), default=2,
                 help="processes, each on its own core with single-threaded XLA")
  p.add_argument("--cores", default="", help="the cores the workers run on (default: all)")
  p.add_argument("--runs_dir", default=study.runs_dir, help="checkpoints and logs (resumable)")
  p.add_argument("--results_dir", default=study.results_dir, help="results (committed)")
  p.add_argument("--retry_failed", action="store_true",
                 help="run: train the selected failed jobs again (their result.json is kept as "
                      f"{FAILED_RESULT}); without it a failed job stays failed")
  p.add_argument("--worker_index", type=int, default=0, help=argparse.SUPPRESS)
  args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
  args.plans, args.jobs = _list(args.plans), _list(args.jobs)
  for name in args.plans:
    study.plan(name)  # unknown plans fail here, before any work
  if args.command == "status":
    print(status(study, args))
    return 0
  if args.command == "report":
    text = study.report(args.results_dir)
    print(text)
    note = failed_note(failed_names(load_results(args.results_dir)), study.module)
    if note and note not in text:  # a report may say it itself (`failed_note`), once
      print(f"\n{note}")
    return 0
  check_writable_dir(args.runs_dir, flag="--runs_dir", example=study.runs_dir)
  check_writable_dir(args.results_dir, flag="--results_dir", example=study.results_dir)
  if args.command == "job":
    workers.end_with_worker()
    if not args.name:
      raise ConfigError("job: name the job, e.g. `job table-DN-s0`.")
    try:
      row = run_one(study, study.job(args.name), runs_dir=args.runs_dir,
                    results_dir=args.results_dir)
    except ConfigError as e:
      print(f"ConfigError: {e}", file=sys.stderr, flush=True)
      return workers.CONFIG_ERROR_STATUS
    return 0 if row else 1
  if args.command == "worker":
    return worker(study, args)
  todo = study.jobs(args.plans, args.jobs)
  if not todo:
    raise ConfigError(f"--jobs {','.join(args.jobs)!r} matches no job of the selected plans; "
                      f"`python -m {study.module} status` lists them.")
  if args.retry_failed:
    retried = retry_failed(study, args)
    print(f"[{study.name}] retrying {len(retried)} failed job(s)"
          + (f": {', '.join(retried)} (each failure kept as {FAILED_RESULT})" if retried else "")
          + ".", flush=True)
  argv = ["-m", study.module, "worker", *_selection_args(args)]
  return workers.run_workers(argv, workers=args.workers, cores=_cores(args.cores))


def cli(study: Study) -> None:
  """Runs `main(study)` on the command line and exits with its status; a ConfigError prints
  its message and exits 2."""
  try:
    code = main(study)
  except ConfigError as e:
    print(f"python -m {study.module}: error: {e}", file=sys.stderr)
    sys.exit(2)
  sys.exit(code)
