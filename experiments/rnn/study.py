r"""The converged RNN study of results/PROTOCOL_RNN.md: early-stopped runs, one worker per core.

  python -m experiments.rnn.study run                  # every job, in the protocol's order
  python -m experiments.rnn.study run --cells lstm     # a part (--cells, --variants, --seeds)
  python -m experiments.rnn.study list                 # the jobs, and which are done
  python -m experiments.rnn.study report               # results/rnn/converged/table.md + figure

The stand-in (results/PROTOCOL_RNN.md fixes every number here before the runs):
the paper's 2-layer word LM (`experiments/rnn/configs/rnn_lm.py`: batch 20 x 20
unrolled steps, SGD with the paper's per-cell learning rates, clip 5, the
paper's sigma, L1 alpha and DN windows, lr x0.5 every epoch from epoch 5, at
most 13 epochs) at hidden 128 and a 5k vocabulary, trained on the first
`TRAIN_TOKENS` tokens of the offline Shakespeare training split, with the
whole valid and test splits. The valid perplexity is measured after every
epoch; the test perplexity is measured whenever the valid one reaches a new
best, so the reported test perplexity is the model's at its best valid point;
a run stops when `PATIENCE` evaluations in a row did not improve on the best.

Each job trains in ``<runs>/<job>`` (checkpoints at every evaluation; the
evaluations in ``early_stopping.jsonl``; rerunning resumes) and writes
``<results>/<job>/``: ``result.json``, ``metrics.jsonl``, ``config.json`` and
``early_stopping.jsonl`` (no checkpoints). A job is done when its result.json
exists.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from experiments.config import ConfigError, check_writable_dir
from experiments.engine.workers import result_exists as is_done
from experiments.engine.workers import write_json as _write_json

CELLS = ("lstm", "tanh")
VARIANTS = ("baseline", "ln", "ln_star", "dn", "dn_star")
SEEDS = (0, 1)
# The protocol's run order: the most informative comparisons first, both seeds together.
ORDER = (("lstm", "baseline"), ("lstm", "dn_star"), ("lstm", "ln_star"),
         ("tanh", "baseline"), ("tanh", "dn_star"), ("tanh", "ln_star"),
         ("lstm", "dn"), ("tanh", "dn"), ("lstm", "ln"), ("tanh", "ln"))
HIDDEN_SIZE = 128
VOCAB_SIZE = 5_000
TRAIN_TOKENS = 150_000
MAX_EPOCHS = 13
DECAY_FROM_EPOCH = 5
EVALS_PER_EPOCH = 1
PATIENCE = 2
ES_FILE = "early_stopping.jsonl"
# The comparisons the protocol names, per cell: (A, B) reads "A against B".
COMPARISONS = (("dn_star", "baseline"), ("ln_star", "baseline"), ("dn_star", "dn"),
               ("ln_star", "ln"), ("dn", "baseline"), ("dn_star", "ln_star"))


@dataclasses.dataclass(frozen=True)
class Schedule:
  """The stand-in's size and early-stopping rule (the protocol's constants by default)."""
  train_tokens: int = TRAIN_TOKENS
  max_epochs: int = MAX_EPOCHS
  decay_from_epoch: int = DECAY_FROM_EPOCH
  evals_per_epoch: int = EVALS_PER_EPOCH
  patience: int = PATIENCE
  hidden_size: int = HIDDEN_SIZE
  vocab_size: int = VOCAB_SIZE
  max_eval_batches: int = 0  # 0: the whole valid and test splits (tests shrink it)
  batch_size: int = 20  # the paper's; tests shrink these three
  bptt_steps: int = 20
  dn_window: int = 0  # 0: the paper's window of the cell


@dataclasses.dataclass(frozen=True)
class Job:
  """One training run of the study."""
  cell: str
  variant: str
  seed: int

  @property
  def name(self) -> str:
    return f"{self.cell}-{self.variant}-s{self.seed}"


def jobs(cells: Sequence[str] = CELLS, variants: Sequence[str] = VARIANTS,
         seeds: Sequence[int] = SEEDS) -> list[Job]:
  """The jobs of `cells` x `variants` x `seeds`, in the protocol's order (`ORDER`, seeds inside)."""
  for flag, values, valid in (("--cells", cells, CELLS), ("--variants", variants, VARIANTS)):
    bad = [v for v in values if v not in valid]
    if bad:
      raise ConfigError(f"{flag}: unknown {', '.join(bad)}; valid choices: {', '.join(valid)}.")
  return [Job(c, v, s) for c, v in ORDER if c in cells and v in variants for s in seeds]


def job_config(job: Job, schedule: Schedule = Schedule()):
  """The rnn_lm config of `job`: the paper's recipe at the stand-in's size and schedule."""
  from experiments.rnn.configs import rnn_lm
  cfg = rnn_lm.get_config(f"{job.cell},{job.variant}")
  cfg.name = cfg.name.replace("rnn_lm/", "rnn_study/")
  cfg.seed = job.seed
  cfg.model.hidden_size = schedule.hidden_size
  cfg.data.vocab_size = schedule.vocab_size
  cfg.data.max_eval_batches = schedule.max_eval_batches
  cfg.data.train_tokens = schedule.train_tokens  # the study slices the training split
  cfg.batch_size, cfg.bptt_steps = schedule.batch_size, schedule.bptt_steps
  if schedule.dn_window:
    cfg.norm.dn_window = schedule.dn_window
  cfg.num_epochs = schedule.max_epochs
  cfg.decay_from_epoch = schedule.decay_from_epoch
  cfg.early_stopping = {"evals_per_epoch": schedule.evals_per_epoch,
                        "patience": schedule.patience}
  return cfg


@functools.lru_cache(maxsize=2)
def load_corpus(vocab_size: int, train_tokens: int):
  """The Shakespeare corpus with its training split cut to the first `train_tokens` tokens."""
  from experiments.rnn import data as text
  corpus = text.load_corpus("shakespeare", vocab_size=vocab_size)
  if train_tokens > corpus.train.size:
    raise ConfigError(f"train_tokens={train_tokens}: the training split has only "
                      f"{corpus.train.size} tokens; use at most that.")
  return dataclasses.replace(corpus, train=corpus.train[:train_tokens])


def early_stopping(rows: Sequence[dict[str, Any]], patience: int) -> dict[str, Any]:
  """The early-stopping state of a run's evaluations, in step order.

  The best row is the first one with the lowest valid perplexity (a later
  equal value is no improvement). The run stops once `patience` evaluations
  after the best did not improve on it. Returns ``{"best", "since_best", "stop"}``
  (``best`` None when there are no rows).
  """
  if patience < 1:
    raise ValueError(f"patience={patience}: must be at least 1.")
  best, since = None, 0
  for r in sorted(rows, key=lambda r: r["step"]):
    if best is None or r["valid_perplexity"] < best["valid_perplexity"]:
      best, since = r, 0
    else:
      since += 1
  return {"best": best, "since_best": since, "stop": since >= patience}


def read_rows(path: str) -> list[dict[str, Any]]:
  """The evaluations in `path` (one JSON object a line; a torn last line is ignored)."""
  if not os.path.exists(path):
    return []
  rows = []
  with open(path) as f:
    for line in f:
      try:
        rows.append(json.loads(line))
      except ValueError:
        continue
  return rows


class _Stop(Exception):
  """Raised by the hook to end training: early stop, or the last step reached."""


class EarlyStoppingHook:
  """An engine hook: evaluates valid every `every` steps, test at each new best, and stops.

  Its evaluations are appended to `path`; a step already there (replayed after
  a resume from an earlier checkpoint) is not evaluated again. When the rule
  says stop, the next step raises `_Stop` (so the engine has saved the
  checkpoint of the evaluated step); at `last_step` it raises at once.
  """

  def __init__(self, *, valid_task, test_task, mesh, every: int, last_step: int,
               steps_per_epoch: int, patience: int, path: str):
    import jax
    self.valid_task, self.test_task, self.mesh = valid_task, test_task, mesh
    self.every, self.last_step, self.patience, self.path = every, last_step, patience, path
    self.steps_per_epoch = steps_per_epoch
    self.eval_fn = jax.jit(valid_task.eval_step)  # the same function for both splits
    self.rows = read_rows(path)
    self.stopping = False

  def __call__(self, step: int, ts) -> None:
    from experiments import engine
    if self.stopping:
      raise _Stop
    if step % self.every and step != self.last_step:
      return
    if not any(r["step"] == step for r in self.rows):
      best = early_stopping(self.rows, self.patience)["best"] if self.rows else None
      valid = engine.evaluate(self.valid_task, ts, self.mesh, eval_fn=self.eval_fn)
      row = {"step": step, "epoch": step / self.steps_per_epoch,
             "valid_perplexity": valid["perplexity"], "valid_nll": valid["nll"]}
      if best is None or row["valid_perplexity"] < best["valid_perplexity"]:
        test = engine.evaluate(self.test_task, ts, self.mesh, eval_fn=self.eval_fn)
        row.update(test_perplexity=test["perplexity"], test_nll=test["nll"])
      with open(self.path, "a") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
      self.rows.append(row)
    if step == self.last_step:
      raise _Stop
    self.stopping = early_stopping(self.rows, self.patience)["stop"]


def _train(cfg, workdir: str, corpus, schedule: Schedule) -> None:
  """Trains (resuming) until the early-stopping rule or the last epoch ends it."""
  from experiments import engine
  from experiments.rnn import task as rnn_task
  mesh = engine.make_mesh()
  rnn_task.validate(cfg, mesh)
  ecfg = rnn_task.engine_config(cfg, corpus.train.size)
  epoch = rnn_task.steps_per_epoch(cfg, corpus.train.size)
  every = max(1, epoch // schedule.evals_per_epoch)
  ecfg.update(log_every=max(1, every // 10), eval_every=0, checkpoint_every=every)
  hook = EarlyStoppingHook(
      valid_task=rnn_task.make_task(cfg, corpus, eval_split="valid"),
      test_task=rnn_task.make_task(cfg, corpus, eval_split="test"), mesh=mesh, every=every,
      last_step=ecfg["num_steps"], steps_per_epoch=epoch, patience=schedule.patience,
      path=os.path.join(workdir, ES_FILE))
  if hook.rows and (early_stopping(hook.rows, schedule.patience)["stop"]
                    or any(r["step"] >= ecfg["num_steps"] for r in hook.rows)):
    return  # stopped before; only the result is missing
  try:
    # No prefetch thread: the hook ends training by raising, which would leave the
    # producer thread blocked on its full queue for the life of the worker.
    engine.train(hook.valid_task, config=ecfg, workdir=workdir, mesh=mesh, hooks=[hook],
                 progress=False, run_config=cfg, prefetch_size=0)
  except _Stop:
    pass


def summarize_run(rows: Sequence[dict[str, Any]], train_rows: Sequence[dict[str, Any]],
                  patience: int, bptt_steps: int) -> dict[str, Any]:
  """The measures of one run from its evaluations and its train metric rows."""
  state = early_stopping(rows, patience)
  best = state["best"]
  last = max(rows, key=lambda r: r["step"])
  speeds = [r["examples_per_second"] for r in train_rows if "examples_per_second" in r][1:]
  return {
      "test_perplexity": best["test_perplexity"],
      "best_valid_perplexity": best["valid_perplexity"],
      "best_step": best["step"], "best_epoch": best["epoch"],
      "stopped_step": last["step"], "stopped_epoch": last["epoch"],
      "stop_reason": "patience" if state["stop"] else "max_epochs",
      "train_perplexity_at_best": _train_perplexity_before(train_rows, best["step"]),
      "tokens_per_second": float(np.median(speeds) * bptt_steps) if speeds else math.nan,
      "curve": sorted(rows, key=lambda r: r["step"]),
  }


def _train_perplexity_before(train_rows, step: int) -> float:
  """The mean minibatch perplexity of the last logged window at or before `step`."""
  before = [r for r in train_rows if r["step"] <= step and "perplexity" in r]
  return float(before[-1]["perplexity"]) if before else math.nan


def run_job(job: Job, *, runs_dir: str, results_dir: str, schedule: Schedule = Schedule()
            ) -> dict[str, Any]:
  """Trains `job` (resuming), and writes its results folder; returns its result row."""
  from experiments import engine
  from experiments.rnn import table
  cfg = job_config(job, schedule)
  workdir = os.path.join(runs_dir, job.name)
  out = os.path.join(results_dir, job.name)
  corpus = load_corpus(schedule.vocab_size, schedule.train_tokens)
  t0 = time.time()
  _train(cfg, workdir, corpus, schedule)
  rows = read_rows(os.path.join(workdir, ES_FILE))
  train_rows = engine.read_metrics(workdir, "train")
  row = {**dataclasses.asdict(job), "name": job.name, "schedule": dataclasses.asdict(schedule),
         "learning_rate": float(cfg.optimizer.learning_rate), "sigma": float(cfg.norm.sigma),
         "l1_alpha": float(cfg.norm.l1_alpha), "dn_window": int(cfg.norm.dn_window),
         **summarize_run(rows, train_rows, schedule.patience, int(cfg.bptt_steps)),
         "seconds_this_process": time.time() - t0, "machine": table.machine()}
  os.makedirs(out, exist_ok=True)
  for name in ("metrics.jsonl", "config.json", ES_FILE):
    shutil.copyfile(os.path.join(workdir, name), os.path.join(out, name))
  _write_json(os.path.join(out, "result.json"), row)
  return row


def worker(args, schedule: Schedule = Schedule()) -> int:
  from experiments.engine.workers import claimed_jobs
  by_name = {j.name: j for j in jobs(args.cells, args.variants, args.seeds)}
  for name in claimed_jobs(list(by_name), lock_dir=os.path.join(args.runs_dir, "locks"),
                           is_done=lambda n: is_done(args.results_dir, n)):
    job = by_name[name]
    print(f"[worker {args.worker_index}] {name}", flush=True)
    try:
      row = run_job(job, runs_dir=args.runs_dir, results_dir=args.results_dir,
                    schedule=schedule)
    except Exception as e:  # a diverged run is a result too; the others go on
      if isinstance(e, ConfigError):
        raise
      os.makedirs(os.path.join(args.results_dir, name), exist_ok=True)
      row = {**dataclasses.asdict(job), "name": name, "failed": f"{type(e).__name__}: {e}"}
      _write_json(os.path.join(args.results_dir, name, "result.json"), row)
    print(f"[worker {args.worker_index}] {name}: " + (
        row.get("failed") or f"test perplexity {row['test_perplexity']:.2f} at epoch "
        f"{row['best_epoch']:g} (stopped at {row['stopped_epoch']:g})"), flush=True)
  return 0


# ---------------------------------------------------------------- report

def load_results(results_dir: str) -> dict[str, dict[str, Any]]:
  """Every result.json under `results_dir`, by job name."""
  out = {}
  if os.path.isdir(results_dir):
    for name in sorted(os.listdir(results_dir)):
      path = os.path.join(results_dir, name, "result.json")
      if os.path.exists(path):
        with open(path) as f:
          out[name] = json.load(f)
  return out


def _cell_text(results: dict[str, dict], cell: str, variant: str, key: str, fmt: str,
               seeds: Sequence[int]) -> str:
  """"mean (s0 a, s1 b)" over the finished seeds; "not run" when none finished."""
  from experiments import seed_stats
  vals, parts = [], []
  for s in seeds:
    r = results.get(Job(cell, variant, s).name)
    if r is None:
      parts.append(f"s{s} not run")
    elif "failed" in r:
      parts.append(f"s{s} failed")
    else:
      vals.append(float(r[key]))
      parts.append(f"s{s} {format(float(r[key]), fmt)}")
  if not vals:
    return "not run" if all(p.endswith("not run") for p in parts) else "; ".join(parts)
  mean = seed_stats.summarize(vals)["mean"]
  return f"{format(mean, fmt)} ({'; '.join(parts)})"


def render_table(results: dict[str, dict], *, command: str, seeds: Sequence[int] = SEEDS) -> str:
  """The markdown of table.md (ours beside the paper's PTB numbers, labelled)."""
  from experiments.rnn import model as rnn
  from experiments.rnn.configs import rnn_lm
  done = [r for r in results.values() if "failed" not in r]
  machine = done[0]["machine"] if done else "-"
  sched = done[0]["schedule"] if done else dataclasses.asdict(Schedule())
  lines = [
      "# RNN LM, early-stopped stand-in (results/PROTOCOL_RNN.md)", "",
      "Runs: `python -m experiments.rnn.study run` (resumable; 2 single-threaded workers)  ",
      f"Report: `{command}`  ", f"Machine: {machine}  ",
      f"Stand-in: hidden {sched['hidden_size']}, vocabulary {sched['vocab_size']}, the first "
      f"{sched['train_tokens']:,} tokens of the Shakespeare training split (whole valid and test "
      f"splits), the paper's recipe, at most {sched['max_epochs']} epochs (lr x0.5 every epoch "
      f"from epoch {sched['decay_from_epoch']}), valid perplexity {sched['evals_per_epoch']}x "
      f"per epoch, stop after {sched['patience']} evaluations without a new best.  ",
      f"Jobs finished: {len(done)} of {len(CELLS) * len(VARIANTS) * len(seeds)}"
      + (f"; failed: {', '.join(sorted(n for n, r in results.items() if 'failed' in r))}"
         if len(done) < len(results) else "") + ".", "",
      "Test perplexity at the best valid point: mean over seeds (each seed's value). "
      "2 seeds: no significance test is claimed. The paper's numbers are its PTB test "
      "perplexities (Tables 4 and 9: hidden 200, 10k vocabulary, 13 epochs, another corpus), "
      "for orientation only.", ""]
  for cell in CELLS:
    lines += [f"## {rnn.CELL_LABELS[cell]}", "",
              "| model | test ppl (ours) | best valid ppl | best epoch | stopped at epoch "
              "| train ppl at best | tokens/s | test ppl, paper (PTB) |",
              "|---|---|---|---|---|---|---|---|"]
    for v in VARIANTS:
      cols = [_cell_text(results, cell, v, key, fmt, seeds) for key, fmt in (
          ("test_perplexity", ".1f"), ("best_valid_perplexity", ".1f"), ("best_epoch", "g"),
          ("stopped_epoch", "g"), ("train_perplexity_at_best", ".1f"),
          ("tokens_per_second", ".0f"))]
      paper = rnn_lm.PAPER_PTB_TEST_PERPLEXITY[cell][v]
      lines.append(f"| {rnn.VARIANT_LABELS[v]} | " + " | ".join(cols) + f" | {paper:.1f} |")
    lines.append("")
  lines += _comparison_lines(results, seeds)
  lines += ["Learning curves: [`curves.png`](curves.png) (valid perplexity per epoch, every "
            "finished run; the marker is the best valid point).", ""]
  return "\n".join(lines)


def _test_values(results: dict[str, dict], cell: str, variant: str, seeds: Sequence[int]
                 ) -> list[float]:
  rows = [results.get(Job(cell, variant, s).name) for s in seeds]
  return [float(r["test_perplexity"]) for r in rows if r is not None and "failed" not in r]


def comparison(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
  """Mean test perplexity of A minus B, and whether every seed of A lies on one side of B's.

  ``separated`` is "A lower" when max(A) < min(B), "A higher" when min(A) > max(B),
  else "overlap" (a description of the seeds, not a significance test).
  """
  diff = float(np.mean(a) - np.mean(b))
  side = "A lower" if max(a) < min(b) else "A higher" if min(a) > max(b) else "overlap"
  return {"diff": diff, "relative": diff / float(np.mean(b)), "separated": side}


def _comparison_lines(results: dict[str, dict], seeds: Sequence[int]) -> list[str]:
  from experiments.rnn import model as rnn
  lines = ["## Named comparisons (test perplexity, A minus B)", "",
           "Difference of the seed means, relative to B, and whether the seeds separate "
           "(every seed of A below, or above, every seed of B); a description of 2 seeds, "
           "not a significance test.", "",
           "| cell | A vs B | A - B | relative | seeds | n (A, B) |", "|---|---|---|---|---|---|"]
  for cell in CELLS:
    for va, vb in COMPARISONS:
      a, b = (_test_values(results, cell, v, seeds) for v in (va, vb))
      label = f"{rnn.VARIANT_LABELS[va]} vs {rnn.VARIANT_LABELS[vb]}"
      if not a or not b:
        lines.append(f"| {rnn.CELL_LABELS[cell]} | {label} | not run | | | "
                     f"{len(a)}, {len(b)} |")
        continue
      c = comparison(a, b)
      lines.append(f"| {rnn.CELL_LABELS[cell]} | {label} | {c['diff']:+.1f} | "
                   f"{c['relative']:+.1%} | {c['separated']} | {len(a)}, {len(b)} |")
  return lines + [""]


def plot_curves(results: dict[str, dict], path: str) -> None:
  """Valid perplexity against epoch, one panel per cell, every finished run."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  from experiments.rnn import model as rnn
  fig, axes = plt.subplots(1, len(CELLS), figsize=(6 * len(CELLS), 4.2), squeeze=False)
  colors = dict(zip(VARIANTS, ("black", "tab:blue", "tab:cyan", "tab:red", "tab:orange"),
                    strict=True))
  for ax, cell in zip(axes[0], CELLS, strict=True):
    for v in VARIANTS:
      for s in SEEDS:
        r = results.get(Job(cell, v, s).name)
        if r is None or "failed" in r:
          continue
        x = [row["epoch"] for row in r["curve"]]
        y = [row["valid_perplexity"] for row in r["curve"]]
        ax.plot(x, y, color=colors[v], ls="-" if s == SEEDS[0] else "--", lw=1.2,
                label=f"{rnn.VARIANT_LABELS[v]} s{s}")
        ax.plot([r["best_epoch"]], [r["best_valid_perplexity"]], "o", color=colors[v], ms=4)
    ax.set_title(rnn.CELL_LABELS[cell])
    ax.set_xlabel("epoch")
    ax.set_ylabel("valid perplexity")
    if ax.lines:
      ax.legend(fontsize=7, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def report(results_dir: str, *, command: str) -> str:
  """Writes `<results_dir>/table.md` and `curves.png` from the finished jobs; returns the table."""
  results = load_results(results_dir)
  os.makedirs(results_dir, exist_ok=True)
  text = render_table(results, command=command)
  with open(os.path.join(results_dir, "table.md"), "w") as f:
    f.write(text)
  plot_curves(results, os.path.join(results_dir, "curves.png"))
  return text


def _ints(text: str) -> tuple[int, ...]:
  try:
    return tuple(int(x) for x in text.split(",") if x.strip())
  except ValueError:
    raise ConfigError(f"--seeds {text!r}: expected comma-separated integers, e.g. "
                      "--seeds 0,1.") from None


def main(argv=None) -> int:
  from experiments.config import positive_int
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("command", choices=("run", "list", "report", "worker"))
  p.add_argument("--cells", default=",".join(CELLS), help=f"subset of {','.join(CELLS)}")
  p.add_argument("--variants", default=",".join(VARIANTS),
                 help=f"subset of {','.join(VARIANTS)}")
  p.add_argument("--seeds", default=",".join(map(str, SEEDS)))
  p.add_argument("--workers", type=positive_int(2), default=2,
                 help="processes, each on its own core with single-threaded XLA")
  p.add_argument("--runs_dir", default="runs/rnn_study", help="checkpoints (resumable)")
  p.add_argument("--results_dir", default="results/rnn/converged")
  p.add_argument("--worker_index", type=int, default=0, help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  args.cells = tuple(x.strip() for x in args.cells.split(",") if x.strip())
  args.variants = tuple(x.strip() for x in args.variants.split(",") if x.strip())
  args.seeds = _ints(args.seeds)
  todo = jobs(args.cells, args.variants, args.seeds)
  if args.command == "list":
    for j in todo:
      print(f"{'done' if is_done(args.results_dir, j.name) else '    '}  {j.name}")
    return 0
  if args.command == "report":
    command = "python -m experiments.rnn.study " + " ".join(
        argv if argv is not None else sys.argv[1:])
    print(report(args.results_dir, command=command))
    return 0
  check_writable_dir(args.runs_dir, flag="--runs_dir", example="runs/rnn_study")
  check_writable_dir(args.results_dir, flag="--results_dir", example="results/rnn/converged")
  if args.command == "worker":
    return worker(args)
  from experiments.engine.workers import run_workers
  argv = ["-m", "experiments.rnn.study", "worker", "--cells", ",".join(args.cells),
          "--variants", ",".join(args.variants), "--seeds", ",".join(map(str, args.seeds)),
          "--runs_dir", args.runs_dir, "--results_dir", args.results_dir]
  return run_workers(argv, workers=args.workers)


if __name__ == "__main__":
  from experiments.config import cli
  cli(main)
