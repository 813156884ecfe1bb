"""The one study runner (experiments/engine/study.py) and the engine's stop rules (stop.py)."""

import dataclasses
import json
import math
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from experiments import engine
from experiments.config import ConfigError
from experiments.engine import stop, workers
from experiments.engine import study as runner

ROOT = pathlib.Path(__file__).resolve().parents[1]


# ---- stop rules ------------------------------------------------------------------------------

def _rows(values, key="v"):
  return [{"step": 10 * (i + 1), key: v} for i, v in enumerate(values)]


def test_early_stopping_counts_patience_from_the_first_best():
  rows = _rows([5.0, 4.0, 4.0, 4.5, 3.9])
  s = stop.early_stopping(rows[:4], 2, key="v")
  assert s["best"]["step"] == 20 and s["since_best"] == 2 and s["stop"]  # equal is no gain
  assert not stop.early_stopping(rows, 2, key="v")["stop"]
  assert stop.early_stopping(rows[::-1], 2, key="v")["best"]["step"] == 50  # any order
  # mode "max" (e.g. PSNR), and min_delta: a gain must beat the best by 10% to count.
  assert stop.early_stopping(_rows([1.0, 3.0, 2.0]), 1, key="v", mode="max")["stop"]
  assert stop.early_stopping(rows, 1, key="v", min_delta=0.1)["best"]["step"] == 20
  assert stop.early_stopping([], 1, key="v") == {"best": None, "since_best": 0, "stop": False}
  for kw, match in (({"mode": "lowest"}, "mode"), ({"min_delta": -1.0}, "min_delta")):
    with pytest.raises(ValueError, match=match):
      stop.early_stopping(rows, 1, key="v", **kw)
  with pytest.raises(ValueError, match="patience"):
    stop.early_stopping(rows, 0, key="v")


def test_plateaued_compares_the_two_halves():
  assert stop.plateaued([0.40, 0.39], tolerance=0.05)
  assert not stop.plateaued([0.363, 0.391], tolerance=0.05)  # 7% apart
  assert stop.plateaued([1.0, 1.0, 0.98, 0.97], tolerance=0.05)
  with pytest.raises(ValueError, match="at least 2"):
    stop.plateaued([1.0], tolerance=0.05)


class _Rule:
  """Stops at `at`; records every call."""

  def __init__(self, at):
    self.at, self.calls = at, []

  def __call__(self, step, ts):
    self.calls.append(step)
    return step >= self.at


@pytest.mark.loose_promotion  # optax, orbax
def test_train_stops_where_the_rule_says_and_a_rerun_returns_at_once(tmp_path):
  from tests.test_engine import CONFIG, toy_task
  rule = _Rule(5)
  result = engine.train(toy_task(), config=CONFIG, workdir=str(tmp_path), progress=False,
                        stop=rule)
  assert int(result.train_state.step) == 5 and result.stopped_early
  assert rule.calls == [0, 1, 2, 3, 4, 5]  # before the first step, then after each
  assert 5 in engine.Checkpointer(str(tmp_path / "checkpoints"), every=0).all_steps()
  train = engine.read_metrics(str(tmp_path), "train")
  assert train[-1]["step"] == 5  # the steps since the last log row are logged
  assert result.eval_metrics["count"] == 64  # the final evaluation runs
  again = _Rule(5)
  rerun = engine.train(toy_task(), config=CONFIG, workdir=str(tmp_path), progress=False,
                       stop=again)
  assert again.calls == [5] and rerun.start_step == 5 and int(rerun.train_state.step) == 5
  # Without a rule that stops, the run continues from the stop to num_steps.
  full = engine.train(toy_task(), config=CONFIG, workdir=str(tmp_path), progress=False,
                      stop=_Rule(100))
  assert int(full.train_state.step) == CONFIG["num_steps"] and not full.stopped_early


@pytest.mark.loose_promotion
def test_early_stopping_rule_evaluates_records_and_resumes(tmp_path):
  from tests.test_engine import CONFIG, toy_task
  task = toy_task()
  mesh = engine.make_mesh()
  path = str(tmp_path / "es.jsonl")

  def make():
    return stop.EarlyStopping(tasks={"valid": task, "test": task}, monitor="valid",
                              metric="mse", every=2, patience=1, last_step=12, path=path,
                              mesh=mesh, at_best=("test",), extra=lambda s: {"epoch": s / 4})

  rule = make()
  result = engine.train(task, config=CONFIG, workdir=str(tmp_path / "w"), progress=False,
                        stop=rule)
  rows = stop.read_rows(path)
  assert [r["step"] for r in rows] == list(range(2, int(result.train_state.step) + 1, 2))
  assert all(r["epoch"] == r["step"] / 4 for r in rows)
  # The test split is evaluated exactly at each new best of the valid split.
  running_best = math.inf
  for r in rows:
    assert ("test_mse" in r) == (r["valid_mse"] < running_best), r
    running_best = min(running_best, r["valid_mse"])
  assert rule.state()["stop"] or rows[-1]["step"] == 12
  # A new rule reads the rows back: no step is evaluated twice, and a stopped run stays stopped.
  again = make()
  assert again.rows == rows and again(rows[-1]["step"], None) is True
  assert stop.read_rows(path) == rows
  # A kill while appending the last row tears it: it is evaluated again, on a line of its own.
  with open(path) as f:
    text = f.read()
  with open(path, "w") as f:
    f.write(text[:-15])
  torn = make()
  assert [r["step"] for r in torn.rows] == [r["step"] for r in rows[:-1]]
  torn(rows[-1]["step"], result.train_state)
  with open(path) as f:
    assert [json.loads(line)["step"] for line in f] == [r["step"] for r in rows]
  with pytest.raises(ValueError, match="no task for split"):
    stop.EarlyStopping(tasks={"valid": task}, monitor="valid", metric="mse", every=2,
                       patience=1, last_step=12, path=path, mesh=mesh, at_best=("test",))


@pytest.mark.loose_promotion
def test_a_run_killed_after_its_stop_row_resumes_to_the_same_stop(tmp_path):
  """The killed run wrote the row that stops it (step 6) before the checkpoint of that step:
  the rerun resumes at step 4 and replays 5 and 6, judging each by the rows up to it, so it
  stops where the uninterrupted run did, with its parameters."""
  import jax
  import numpy as np

  from tests.test_engine import CONFIG, toy_task
  config = {**CONFIG, "checkpoint_every": 4, "eval_every": 0}

  def rule(workdir):
    return stop.EarlyStopping(tasks={"valid": toy_task()}, monitor="valid", metric="mse",
                              every=3, patience=1, mode="max", last_step=config["num_steps"],
                              path=f"{workdir}/early.jsonl", mesh=engine.make_mesh())

  whole = engine.train(toy_task(), config=config, workdir=str(tmp_path / "a"), progress=False,
                       stop=rule(tmp_path / "a"))
  assert whole.stopped_early and int(whole.train_state.step) == 6

  class Killed(Exception):
    pass

  def killed_after_deciding(decide):
    def call(step, ts):
      if decide(step, ts) and step > 0:
        raise Killed
      return False
    return call

  with pytest.raises(Killed):
    engine.train(toy_task(), config=config, workdir=str(tmp_path / "b"), progress=False,
                 stop=killed_after_deciding(rule(tmp_path / "b")))
  again = engine.train(toy_task(), config=config, workdir=str(tmp_path / "b"), progress=False,
                       stop=rule(tmp_path / "b"))
  assert again.start_step == 4 and again.stopped_early
  assert int(again.train_state.step) == 6
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(whole.train_state.params),
               jax.device_get(again.train_state.params))


def _alive(pid: int) -> bool:
  """Whether `pid` runs (a zombie, dead but not yet reaped by an orphan's new parent, not)."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except FileNotFoundError:
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_job_process_dies_with_its_worker(tmp_path):
  """A worker killed with SIGKILL took nothing with it: its job's process trained on, outside
  any claim, and a rerun started a second one in the same workdir. Now the job dies too."""
  pidfile = tmp_path / "job.pid"
  job = (f"from experiments.engine import workers; import os, time; workers.end_with_worker(); "
         f"open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(60)")
  worker = subprocess.Popen([sys.executable, "-c", (
      f"from experiments.engine import workers; workers.run_child(['-c', {job!r}], "
      f"log_path={str(tmp_path / 'job.log')!r}, attempts=1, is_done=lambda: False)")],
      cwd=ROOT)
  try:
    for _ in range(300):
      if pidfile.exists() and pidfile.read_text():
        break
      time.sleep(0.05)
    pid = int(pidfile.read_text())
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    for _ in range(200):
      if not _alive(pid):
        break
      time.sleep(0.05)
    else:
      os.kill(pid, signal.SIGKILL)
      pytest.fail("the job's process outlived its worker")
  finally:
    worker.kill()
    worker.wait()


# ---- the study runner ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Job:
  kind: str
  seed: int

  @property
  def name(self):
    return f"{self.kind}-s{self.seed}"


def _study(**kw):
  plans = (runner.Plan("a", (Job("ok", 0), Job("ok", 1))),
           runner.Plan("b", (Job("ok", 1), Job("bad", 0))))
  return runner.Study(name="toy", module="toy_study", plans=plans,
                      run_job=lambda job, runs, results: {"value": job.seed},
                      report=lambda d: "report", runs_dir="runs", results_dir="results", **kw)


def test_study_selects_jobs_by_plan_and_pattern():
  s = _study()
  assert [j.name for j in s.jobs()] == ["ok-s0", "ok-s1", "bad-s0"]  # listed once, in order
  assert [j.name for j in s.jobs(("b",))] == ["ok-s1", "bad-s0"]
  assert [j.name for j in s.jobs(None, ("*-s1", "bad*"))] == ["ok-s1", "bad-s0"]
  assert s.job("bad-s0") == Job("bad", 0)
  with pytest.raises(ConfigError, match="unknown plan 'c'; valid choices: a, b"):
    s.jobs(("c",))
  with pytest.raises(ConfigError, match="no job named"):
    s.job("nope")
  more = s.with_plans(runner.Plan("c", (Job("new", 0),)), module="other")
  assert [p.name for p in more.plans] == ["a", "b", "c"] and more.module == "other"
  with pytest.raises(ValueError, match="two different jobs are named 'ok-s0'"):
    _study().with_plans(runner.Plan("c", (Other("ok", 0),)), module="other")
  with pytest.raises(ValueError, match="plan names repeat"):
    _study().with_plans(runner.Plan("a", ()), module="other")


@dataclasses.dataclass(frozen=True)
class Other:
  """A job of another kind that happens to have the same name."""
  kind: str
  seed: int

  @property
  def name(self):
    return f"{self.kind}-s{self.seed}"


def test_run_one_writes_the_row_or_a_failed_row(tmp_path):
  def run_job(job, runs, results):
    if job.kind == "bad":
      raise FloatingPointError("non-finite loss nan at step 3")
    if job.kind == "config":
      raise ConfigError("--set x=1: bad")
    return {**runner.job_fields(job), "value": 1.5}

  s = dataclasses.replace(_study(), run_job=run_job)
  results = str(tmp_path)
  assert runner.run_one(s, Job("ok", 0), runs_dir="r", results_dir=results)["value"] == 1.5
  row = runner.run_one(s, Job("bad", 0), runs_dir="r", results_dir=results)
  assert row["failed"] == "FloatingPointError: non-finite loss nan at step 3"
  assert (row["kind"], row["seed"], row["name"]) == ("bad", 0, "bad-s0")
  with pytest.raises(ConfigError):
    runner.run_one(s, Job("config", 0), runs_dir="r", results_dir=results)
  assert not os.path.exists(tmp_path / "config-s0")
  loaded = runner.load_results(results)
  assert set(loaded) == {"ok-s0", "bad-s0"} and loaded["ok-s0"]["value"] == 1.5


def _write_results(results, rows: dict) -> None:
  """A result.json per job name of `rows` under `results`, as `run_one` writes them."""
  for name, row in rows.items():
    (results / name).mkdir(parents=True)
    (results / name / "result.json").write_text(json.dumps({"name": name, **row}))


def test_status_names_every_state(tmp_path):
  s = _study(summary=lambda r: f"value {r['value']}")
  results, runs = tmp_path / "results", tmp_path / "runs"
  _write_results(results, {"ok-s0": {"value": 7}, "bad-s0": {"failed": "boom\nmore"}})
  (runs / "locks").mkdir(parents=True)
  (runs / "locks" / "ok-s1.lock").write_text(f"{os.getpid()}\n")  # a live python process
  (runs / "ok-s1").mkdir()
  (runs / "ok-s1" / "metrics.jsonl").write_text('{"kind": "train", "step": 40}\n')
  args = type("A", (), {"plans": (), "jobs": (), "runs_dir": str(runs),
                        "results_dir": str(results)})
  text = runner.status(s, args)
  assert "1 done, 1 failed, 1 running, 0 to run" in text
  assert "done     ok-s0  value 7" in text and "failed   bad-s0  boom" in text
  assert f"running  ok-s1  pid {os.getpid()}, step 40" in text
  (runs / "locks" / "ok-s1.lock").write_text("999999999\n")  # no such process
  assert "to run   ok-s1  (checkpointed, step 40)" in runner.status(s, args)


def test_report_adds_the_failed_jobs_note_unless_the_report_holds_it(tmp_path, capsys):
  results = tmp_path / "results"
  _write_results(results, {"ok-s0": {"value": 7}, "bad-s0": {"failed": "MemoryError: out"}})
  note = runner.failed_note(["bad-s0"], "toy_study")
  dirs = ["--runs_dir", str(tmp_path / "runs"), "--results_dir", str(results)]
  for report, expected in ((lambda d: "tables", f"tables\n\n{note}\n"),
                           (lambda d: f"tables\n{note}", f"tables\n{note}\n"),
                           # another note's words (a report quoting the flag) do not count
                           (lambda d: "see --retry_failed", f"see --retry_failed\n\n{note}\n")):
    assert runner.main(dataclasses.replace(_study(), report=report), ["report", *dirs]) == 0
    assert capsys.readouterr().out == expected


def test_retry_failed_moves_failed_results_aside_and_status_says_how(tmp_path, capsys):
  s = _study().with_plans(runner.Plan("c", (Job("bad", 1),)), module="toy_study")
  results, runs = tmp_path / "results", tmp_path / "runs"
  _write_results(results, {"ok-s0": {"value": 7}, "bad-s0": {"failed": "MemoryError: out"},
                           "bad-s1": {"failed": "OSError: disk full"}})
  dirs = ["--runs_dir", str(runs), "--results_dir", str(results)]
  assert runner.main(s, ["status", *dirs]) == 0
  text = capsys.readouterr().out
  assert (f"2 job(s) failed and are left out of every mean and test: bad-s0, bad-s1 (the error "
          f"is in each one's result.json). `python -m {s.module} run --retry_failed` trains "
          f"them again") in text
  assert runner.main(s, ["report", *dirs]) == 0
  assert "--retry_failed" in capsys.readouterr().out
  args = type("A", (), {"plans": (), "jobs": ("bad-s0",), "runs_dir": str(runs),
                        "results_dir": str(results)})
  assert runner.retry_failed(s, args) == ["bad-s0"]
  assert not (results / "bad-s0" / "result.json").exists()  # to run again
  assert json.loads((results / "bad-s0" / runner.FAILED_RESULT).read_text())["failed"]
  assert set(runner.load_results(str(results))) == {"ok-s0", "bad-s1"}
  args.jobs = ()
  assert runner.retry_failed(s, args) == ["bad-s1"]
  assert runner.main(s, ["status", *dirs]) == 0
  assert "1 done, 0 failed, 0 running, 3 to run" in capsys.readouterr().out


TOY_STUDY = textwrap.dedent("""
    import dataclasses, json, os, sys
    from experiments.engine import study as runner

    @dataclasses.dataclass(frozen=True)
    class Job:
      kind: str
      seed: int

      @property
      def name(self):
        return f"{self.kind}-s{self.seed}"

    def run_job(job, runs, results):
      os.makedirs(os.path.join(runs, job.name), exist_ok=True)
      tries = os.path.join(runs, job.name, "tries")
      n = int(open(tries).read()) + 1 if os.path.exists(tries) else 1
      open(tries, "w").write(str(n))
      if job.kind == "abort" and n == 1:
        os.abort()  # an XLA abort: the runner starts the job again
      if job.kind == "always_abort":
        os.abort()
      if job.kind == "raise":
        raise RuntimeError("diverged")
      return {**runner.job_fields(job), "tries": n, "pid": os.getpid(),
              "xla_flags": os.environ.get("XLA_FLAGS", "")}

    STUDY = runner.Study(
        name="toy", module="toy_study", run_job=run_job, report=lambda d: "the report",
        plans=(runner.Plan("main", tuple(Job(k, s) for s in (0, 1)
                                         for k in ("ok", "abort", "raise"))),
               runner.Plan("doomed", (Job("always_abort", 0),))),
        runs_dir="runs", results_dir="results", attempts=2)

    if __name__ == "__main__":
      runner.cli(STUDY)
""")


@pytest.mark.slow  # subprocesses: 2 workers, a child process per job
def test_run_trains_every_job_once_on_two_workers_and_retries_a_crash(tmp_path):
  (tmp_path / "toy_study.py").write_text(TOY_STUDY)
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
  dirs = ["--runs_dir", str(tmp_path / "runs"), "--results_dir", str(tmp_path / "results")]

  def cli(*args):
    return subprocess.run([sys.executable, "-m", "toy_study", *args, *dirs], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=900)

  proc = cli("run", "--plans", "main", "--workers", "2")
  assert proc.returncode == 0, proc.stdout + proc.stderr
  rows = runner.load_results(str(tmp_path / "results"))
  assert sorted(rows) == ["abort-s0", "abort-s1", "ok-s0", "ok-s1", "raise-s0", "raise-s1"]
  assert all(rows[f"ok-s{s}"]["tries"] == 1 for s in (0, 1))
  assert all(rows[f"abort-s{s}"]["tries"] == 2 for s in (0, 1))  # crashed once, rerun
  assert rows["raise-s0"]["failed"] == "RuntimeError: diverged"
  assert all(workers.SINGLE_THREAD_XLA in r.get("xla_flags", workers.SINGLE_THREAD_XLA)
             for r in rows.values())
  assert len({r["pid"] for r in rows.values() if "pid" in r}) == 4  # a process per job
  assert "attempt 2" in (tmp_path / "runs" / "logs" / "abort-s0.log").read_text()
  # Rerunning does nothing more; a job that always crashes ends as a failed result.
  proc = cli("run", "--workers", "1")
  assert proc.returncode == 0, proc.stdout + proc.stderr
  assert runner.load_results(str(tmp_path / "results"))["ok-s0"] == rows["ok-s0"]
  doomed = runner.load_results(str(tmp_path / "results"))["always_abort-s0"]
  assert "ended without a result 2 time(s) (signal SIGABRT, signal SIGABRT)" in doomed["failed"]
  status = cli("status")
  assert "4 done, 3 failed, 0 running, 0 to run" in status.stdout, status.stdout
  assert "`python -m toy_study run --retry_failed`" in status.stdout
  assert cli("report").stdout.startswith("the report\n\n3 job(s) failed")
  # A failed job stays failed until asked: --retry_failed runs it again.
  assert cli("run", "--jobs", "raise-s0", "--workers", "1").returncode == 0
  assert (tmp_path / "runs" / "raise-s0" / "tries").read_text() == "1"
  proc = cli("run", "--jobs", "raise-s0", "--workers", "1", "--retry_failed")
  assert proc.returncode == 0 and "retrying 1 failed job(s): raise-s0" in proc.stdout
  assert (tmp_path / "runs" / "raise-s0" / "tries").read_text() == "2"
  assert (tmp_path / "results" / "raise-s0" / runner.FAILED_RESULT).exists()
  bad = cli("run", "--plans", "nope")
  assert bad.returncode == 2 and "unknown plan 'nope'" in bad.stderr


def test_a_worker_killed_by_a_signal_fails_the_run():
  """``max`` of the return codes took a SIGKILLed worker's -9 as success beside another's
  0: the run exited 0 with a job never trained. (In a process of its own: this one runs JAX,
  which warns at the fork of a worker.)"""
  kill = ("import os, signal, sys; "
          "os.kill(os.getpid(), signal.SIGKILL) if sys.argv[-1] == '0' else sys.exit(0)")
  check = textwrap.dedent(f"""
      from experiments.engine import workers
      print(workers.run_workers(["-c", {kill!r}], workers=2),
            workers.run_workers(["-c", "import sys; sys.exit(3)"], workers=2),
            workers.run_workers(["-c", "pass"], workers=2))""")
  done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                        cwd=ROOT, timeout=120)
  assert done.stdout.split() == [str(128 + signal.SIGKILL), "3", "0"], done.stderr
  assert "worker 0 ended with signal SIGKILL" in done.stderr


def test_worker_status_words():
  assert workers.describe_status(-6) == "signal SIGABRT"
  assert workers.describe_status(1) == "exit status 1"
