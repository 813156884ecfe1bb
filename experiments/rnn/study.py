r"""The early-stopped RNN study of results/PROTOCOL_RNN.md, through the one study runner.

  python -m experiments.rnn.study run                  # every plan, in the protocol's order
  python -m experiments.rnn.study run --plans lstm     # a part (--jobs 'lstm-dn*' too)
  python -m experiments.rnn.study status               # done / running / failed / to run
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
a run stops when `PATIENCE` evaluations in a row did not improve on the best
(the engine's stop rule, `experiments.engine.stop.EarlyStopping`).

Plans: one per cell (``lstm``, ``tanh``, ``relu``), each the paper's 8 variants x
seeds 0-2 in the protocol's order; and the extension of 2026-12-07, seeds 3-5 of each
cell (``tanh_more``, ``relu_more``, ``lstm_more``, whole seeds first). A cell's tables
and tests use seeds 0-2 and each later seed whose 8 variants have all finished. Each job trains in ``<runs>/<job>``
(checkpoints at every evaluation; the evaluations in ``early_stopping.jsonl``;
rerunning resumes) and writes ``<results>/<job>/``: ``result.json``,
``metrics.jsonl``, ``config.json`` and ``early_stopping.jsonl`` (no checkpoints).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import shutil
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from experiments import seed_stats
from experiments.config import ConfigError
from experiments.engine import study as runner
from experiments.engine.stop import EarlyStopping, read_rows
from experiments.engine.stop import early_stopping as _rule

CELLS = ("lstm", "tanh", "relu")
VARIANTS = ("baseline", "bn", "bn_star", "ln", "ln_s", "ln_star", "dn", "dn_star")
SEEDS = (0, 1, 2)
# The extension of 2026-12-07 (PROTOCOL_RNN.md): three more seeds of every cell and variant.
MORE_SEEDS = (3, 4, 5)
ALL_SEEDS = SEEDS + MORE_SEEDS
# The order of the extension's plans: the vanilla RNNs, whose jobs are cheapest, first.
MORE_ORDER = ("tanh", "relu", "lstm")
# The protocol's run order within a cell: the named comparisons' models first.
VARIANT_ORDER = ("baseline", "dn_star", "ln_star", "dn", "ln", "ln_s", "bn_star", "bn")
HIDDEN_SIZE = 128
VOCAB_SIZE = 5_000
TRAIN_TOKENS = 150_000
MAX_EPOCHS = 13
DECAY_FROM_EPOCH = 5
EVALS_PER_EPOCH = 1
PATIENCE = 2
ES_FILE = "early_stopping.jsonl"
METRIC = "valid_perplexity"
# The comparisons the protocol names, per cell: (A, B) reads "A against B". The first six
# were named on 2026-12-01; the last three on 2026-12-03 (with LN-s and BN).
COMPARISONS = (("dn_star", "baseline"), ("ln_star", "baseline"), ("dn_star", "dn"),
               ("ln_star", "ln"), ("dn", "baseline"), ("dn_star", "ln_star"),
               ("ln_s", "ln"), ("ln_star", "ln_s"), ("bn_star", "bn"))


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


def plan_jobs(cell: str, seeds: Sequence[int] = SEEDS) -> tuple[Job, ...]:
  """The jobs of one cell in the protocol's order: `VARIANT_ORDER`, the seeds inside."""
  if cell not in CELLS:
    raise ConfigError(f"unknown cell {cell!r}; valid choices: {', '.join(CELLS)}.")
  return tuple(Job(cell, v, s) for v in VARIANT_ORDER for s in seeds)


def plan_more_jobs(cell: str) -> tuple[Job, ...]:
  """The extension's jobs of one cell: `MORE_SEEDS` one after the other, so whole seeds finish
  first; within a seed, `VARIANT_ORDER`."""
  return tuple(job for s in MORE_SEEDS for job in plan_jobs(cell, (s,)))


def _finished(results: dict[str, dict], job: Job) -> bool:
  row = results.get(job.name)
  return row is not None and "failed" not in row


def report_seeds(results: dict[str, dict], cell: str) -> tuple[int, ...]:
  """The seeds of `cell` that its tables and tests use: seeds 0-2 (all finished; a partial
  first run shows each seed that did), and each of `MORE_SEEDS` whose 8 variants have all
  finished (PROTOCOL_RNN.md, 2026-12-07: no variant is compared on seeds the others lack)."""
  return SEEDS + tuple(s for s in MORE_SEEDS
                       if all(_finished(results, Job(cell, v, s)) for v in VARIANTS))


def left_out(results: dict[str, dict], cell: str) -> list[str]:
  """The finished runs of `cell` from extension seeds that are not complete, so not reported."""
  used = report_seeds(results, cell)
  return [Job(cell, v, s).name for s in MORE_SEEDS if s not in used for v in VARIANTS
          if _finished(results, Job(cell, v, s))]


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
  """The protocol's rule on a run's evaluations: the first lowest valid perplexity is the best,
  and the run stops `patience` evaluations after it (`experiments.engine.stop.early_stopping`)."""
  return _rule(rows, patience, key=METRIC, mode="min")


def stop_rule(cfg, corpus, schedule: Schedule, *, workdir: str, mesh) -> tuple[Any, dict]:
  """The job's training task, and the engine config with its early-stopping rule.

  Returns (task without its own evaluation, {"config": engine config, "stop": rule}).
  """
  from experiments.rnn import task as rnn_task
  ecfg = rnn_task.engine_config(cfg, corpus.train.size)
  epoch = rnn_task.steps_per_epoch(cfg, corpus.train.size)
  every = max(1, epoch // schedule.evals_per_epoch)
  ecfg.update(log_every=max(1, every // 10), eval_every=0, checkpoint_every=every)
  valid = rnn_task.make_task(cfg, corpus, eval_split="valid")
  # The test split through the same eval step (one compilation for both splits).
  test = dataclasses.replace(valid, eval_batches=lambda: rnn_task.eval_batches(corpus.test, cfg))
  rule = EarlyStopping(
      tasks={"valid": valid, "test": test}, monitor="valid", metric="perplexity", every=every,
      patience=schedule.patience, last_step=ecfg["num_steps"], at_best=("test",), mesh=mesh,
      path=os.path.join(workdir, ES_FILE), extra=lambda step: {"epoch": step / epoch})
  # The rule evaluates; the engine's own final evaluation would repeat the valid split.
  return dataclasses.replace(valid, eval_step=None, eval_batches=None), {
      "config": ecfg, "stop": rule}


def _train(cfg, workdir: str, corpus, schedule: Schedule) -> None:
  """Trains (resuming) until the early-stopping rule or the last epoch ends it."""
  from experiments import engine
  from experiments.rnn import task as rnn_task
  mesh = engine.make_mesh()
  rnn_task.validate(cfg, mesh)
  task, how = stop_rule(cfg, corpus, schedule, workdir=workdir, mesh=mesh)
  engine.train(task, config=how["config"], workdir=workdir, mesh=mesh, progress=False,
               run_config=cfg, stop=how["stop"], prefetch_size=rnn_task.PREFETCH)


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


def run_job(job: Job, runs_dir: str, results_dir: str, *, schedule: Schedule = Schedule()
            ) -> dict[str, Any]:
  """Trains `job` (resuming), and writes its results folder; returns its result row."""
  from experiments import engine
  cfg = job_config(job, schedule)
  workdir = os.path.join(runs_dir, job.name)
  out = os.path.join(results_dir, job.name)
  corpus = load_corpus(schedule.vocab_size, schedule.train_tokens)
  t0 = time.time()
  _train(cfg, workdir, corpus, schedule)
  rows = read_rows(os.path.join(workdir, ES_FILE))
  train_rows = engine.read_metrics(workdir, "train")
  row = {**runner.job_fields(job), "schedule": dataclasses.asdict(schedule),
         "learning_rate": float(cfg.optimizer.learning_rate), "sigma": float(cfg.norm.sigma),
         "l1_alpha": float(cfg.norm.l1_alpha), "dn_window": int(cfg.norm.dn_window),
         **summarize_run(rows, train_rows, schedule.patience, int(cfg.bptt_steps)),
         "seconds_this_process": time.time() - t0, "machine": runner.machine_description()}
  os.makedirs(out, exist_ok=True)
  for name in ("metrics.jsonl", "config.json", ES_FILE):
    shutil.copyfile(os.path.join(workdir, name), os.path.join(out, name))
  return row


def summary(row: dict[str, Any]) -> str:
  """One line on a finished job (for `status` and the workers' log)."""
  return (f"test perplexity {row['test_perplexity']:.2f} at epoch {row['best_epoch']:g} "
          f"(stopped at {row['stopped_epoch']:g}, {row['stop_reason']}), "
          f"{row['tokens_per_second']:.0f} tokens/s")


# ---------------------------------------------------------------- report

def load_results(results_dir: str) -> dict[str, dict[str, Any]]:
  """Every result.json under `results_dir`, by job name."""
  return runner.load_results(results_dir)


def _cell_text(results: dict[str, dict], cell: str, variant: str, key: str, fmt: str,
               seeds: Sequence[int]) -> str:
  """"mean (s0 a, s1 b)" over the finished seeds; "not run" when none finished."""
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
  stats = seed_stats.summarize(vals)
  mean_fmt = ".1f" if fmt == "g" else fmt
  spread = f" ± {format(stats['std'], mean_fmt)}" if len(vals) > 1 else ""
  return f"{format(stats['mean'], mean_fmt)}{spread} ({'; '.join(parts)})"


def _cell_seeds(results: dict[str, dict], cell: str, seeds: Sequence[int] | None
                ) -> tuple[int, ...]:
  return report_seeds(results, cell) if seeds is None else tuple(seeds)


def render_table(results: dict[str, dict], *, command: str = "python -m experiments.rnn.study report",
                 seeds: Sequence[int] | None = None) -> str:
  """The markdown of table.md (ours beside the paper's PTB numbers, labelled).

  `seeds`: the seeds shown and tested in every cell; None: each cell's `report_seeds`.
  """
  from experiments.rnn import model as rnn
  from experiments.rnn.configs import rnn_lm
  done = [r for r in results.values() if "failed" not in r]
  machine = done[0]["machine"] if done else "-"
  sched = done[0]["schedule"] if done else dataclasses.asdict(Schedule())
  lines = [
      "# RNN LM, early-stopped stand-in (results/PROTOCOL_RNN.md)", "",
      "Runs: `python -m experiments.rnn.study run` (resumable; single-threaded workers, one "
      "per core; how they ran: PROTOCOL_RNN.md)  ",
      f"Report: `{command}`  ", f"Machine: {machine}  ",
      f"Stand-in: hidden {sched['hidden_size']}, vocabulary {sched['vocab_size']}, the first "
      f"{sched['train_tokens']:,} tokens of the Shakespeare training split (whole valid and test "
      f"splits), the paper's recipe, at most {sched['max_epochs']} epochs (lr x0.5 every epoch "
      f"from epoch {sched['decay_from_epoch']}), valid perplexity {sched['evals_per_epoch']}x "
      f"per epoch, stop after {sched['patience']} evaluations without a new best.  ",
      f"Jobs finished: {len(done)} of "
      f"{len(CELLS) * len(VARIANTS) * len(ALL_SEEDS if seeds is None else seeds)}.",
      *([runner.failed_note(runner.failed_names(results), "experiments.rnn.study")]
        if len(done) < len(results) else []), "",
      "Test perplexity at the best valid point: mean ± std over seeds (each seed's value). "
      "The paper's numbers are its PTB test "
      "perplexities (Tables 4 and 9: hidden 200 for the LSTM and 400 for the tanh and ReLU "
      "RNNs, 10k vocabulary, 13 epochs, another corpus), "
      "for orientation only.", ""]
  for cell in CELLS:
    used = _cell_seeds(results, cell, seeds)
    lines += [f"## {rnn.CELL_LABELS[cell]}", "",
              f"Seeds: {', '.join(map(str, used))}.", *_left_out_lines(results, cell, seeds), "",
              "| model | test ppl (ours) | best valid ppl | best epoch | stopped at epoch "
              "| train ppl at best | tokens/s | test ppl, paper (PTB) |",
              "|---|---|---|---|---|---|---|---|"]
    for v in VARIANTS:
      cols = [_cell_text(results, cell, v, key, fmt, used) for key, fmt in (
          ("test_perplexity", ".1f"), ("best_valid_perplexity", ".1f"), ("best_epoch", "g"),
          ("stopped_epoch", "g"), ("train_perplexity_at_best", ".1f"),
          ("tokens_per_second", ".0f"))]
      paper = rnn_lm.PAPER_PTB_TEST_PERPLEXITY[cell][v]
      lines.append(f"| {rnn.VARIANT_LABELS[v]} | " + " | ".join(cols) + f" | {paper:.1f} |")
    gone = [v for v in VARIANTS if collapsed(_test_values(results, cell, v, used))]
    if gone:
      values = ", ".join(f"{rnn.VARIANT_LABELS[v]} "
                         f"{np.mean(_test_values(results, cell, v, used)):.1f}" for v in gone)
      lines += ["", f"Collapsed: {values}. Every seed ends at the same test perplexity (to "
                f"{COLLAPSE_TOLERANCE:.2%}): a seed-independent, unigram-like model, not a "
                "trained one (its cause was not examined). The comparisons below that use these "
                "rows are marked *rests on collapsed runs*."]
    lines.append("")
  lines += _comparison_lines(results, seeds)
  lines += ["Learning curves: [`curves.png`](curves.png) (valid perplexity per epoch, every "
            "run of the seeds above; the marker is the best valid point).", ""]
  return "\n".join(lines)


def _left_out_lines(results: dict[str, dict], cell: str, seeds: Sequence[int] | None
                    ) -> list[str]:
  names = left_out(results, cell) if seeds is None else []
  if not names:
    return []
  return ["", f"Runs left out (their seed has not finished all 8 variants; PROTOCOL_RNN.md, "
          f"2026-12-07): {', '.join(names)}."]


def _test_values(results: dict[str, dict], cell: str, variant: str, seeds: Sequence[int]
                 ) -> list[float]:
  jobs = [Job(cell, variant, s) for s in seeds]
  return [float(results[j.name]["test_perplexity"]) for j in jobs if _finished(results, j)]


def comparison(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
  """Mean test perplexity of A minus B, Welch's test, and whether A's seeds lie on one side of B's.

  ``separated`` is "A lower" when max(A) < min(B), "A higher" when min(A) > max(B),
  else "overlap" (a description of the seeds). ``p`` is Welch's two-sided p (NaN with
  fewer than 2 seeds on a side).
  """
  diff = float(np.mean(a) - np.mean(b))
  side = "A lower" if max(a) < min(b) else "A higher" if min(a) > max(b) else "overlap"
  return {"diff": diff, "relative": diff / float(np.mean(b)), "separated": side,
          "p": seed_stats.welch(a, b)["p"]}


def comparisons(results: dict[str, dict], seeds: Sequence[int] | None = None
                ) -> list[dict[str, Any]]:
  """The named comparisons of every cell; Welch's p Holm-adjusted within each cell's family.

  `seeds`: the seeds compared in every cell; None: each cell's `report_seeds`.
  """
  out = []
  for cell in CELLS:
    family, used = [], _cell_seeds(results, cell, seeds)
    for va, vb in COMPARISONS:
      a, b = (_test_values(results, cell, v, used) for v in (va, vb))
      row = {"cell": cell, "a": va, "b": vb, "n": (len(a), len(b)),
             "collapsed": [v for v, x in ((va, a), (vb, b)) if collapsed(x)]}
      if a and b:
        row.update(comparison(a, b))
        family.append(row)
      out.append(row)
    for row, p in zip(family, seed_stats.holm([r["p"] for r in family]), strict=True):
      row["p_holm"] = p
  return out


COLLAPSE_TOLERANCE = 1e-4


def collapsed(values: Sequence[float]) -> bool:
  """Whether every seed (at least 2) ended at the same test perplexity, to 0.01% of it.

  Trained models of different seeds differ by 0.1% or more in this study; the ReLU RNN's BN*
  and LN runs agree to 0.003% (315.2, a unigram-like model): they collapsed.
  """
  return len(values) >= 2 and max(values) - min(values) <= COLLAPSE_TOLERANCE * min(values)


def verdict(row: dict[str, Any]) -> str:
  """"A lower"/"A higher" when Holm's p < 0.05, else "not established" (never "no difference")."""
  p = row.get("p_holm", math.nan)
  if math.isnan(p) or p >= 0.05:
    return "not established"
  return "A lower" if row["diff"] < 0 else "A higher"


def _comparison_lines(results: dict[str, dict], seeds: Sequence[int] | None) -> list[str]:
  from experiments.rnn import model as rnn
  lines = ["## Named comparisons (test perplexity, A minus B)", "",
           "Difference of the seed means (relative to B), whether the seeds separate (every "
           "seed of A below, or above, every seed of B), Welch's two-sided p, and p "
           "Holm-adjusted over each cell's comparisons that have data. A difference counts "
           "only at p (Holm) < 0.05; otherwise it is *not established* (never \"no "
           "difference\").", "",
           "| cell | A vs B | A - B | relative | seeds | p | p (Holm) | verdict | n (A, B) |",
           "|---|---|---|---|---|---|---|---|---|"]
  for row in comparisons(results, seeds):
    label = f"{rnn.VARIANT_LABELS[row['a']]} vs {rnn.VARIANT_LABELS[row['b']]}"
    n = f"{row['n'][0]}, {row['n'][1]}"
    if "diff" not in row:
      lines.append(f"| {rnn.CELL_LABELS[row['cell']]} | {label} | not run | | | | | | {n} |")
      continue
    mark = "; rests on collapsed runs of " + " and ".join(
        rnn.VARIANT_LABELS[v] for v in row["collapsed"]) if row["collapsed"] else ""
    lines.append(f"| {rnn.CELL_LABELS[row['cell']]} | {label} | {row['diff']:+.1f} | "
                 f"{row['relative']:+.1%} | {row['separated']} | {_p(row['p'])} | "
                 f"{_p(row.get('p_holm'))} | {verdict(row)}{mark} | {n} |")
  if any(row["collapsed"] for row in comparisons(results, seeds)):
    lines += ["", "A verdict that *rests on collapsed runs* compares with a group whose seeds all "
              "collapsed to one seed-independent model (the cell tables above): Welch's test "
              "against a zero-variance group says only that the other group differs from that "
              "collapsed model, not how the normalizer compares when it trains."]
  return lines + [""]


def _p(x) -> str:
  return "n/a" if x is None or math.isnan(x) else f"{x:.3f}"


LINE_STYLES = ("-", "--", ":", "-.", (0, (1, 3)), (0, (5, 1)))  # one per seed, 0-5


def plot_curves(results: dict[str, dict], path: str) -> None:
  """Valid perplexity against epoch, one panel per cell, every run of the seeds reported."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  from experiments.rnn import model as rnn
  fig, axes = plt.subplots(1, len(CELLS), figsize=(6 * len(CELLS), 4.2), squeeze=False)
  colors = dict(zip(VARIANTS, ("black", "tab:green", "tab:olive", "tab:blue", "tab:purple",
                              "tab:cyan", "tab:red", "tab:orange"), strict=True))
  for ax, cell in zip(axes[0], CELLS, strict=True):
    for v in VARIANTS:
      for s in report_seeds(results, cell):
        job = Job(cell, v, s)
        if not _finished(results, job):
          continue
        r = results[job.name]
        x = [row["epoch"] for row in r["curve"]]
        y = [row["valid_perplexity"] for row in r["curve"]]
        ax.plot(x, y, color=colors[v], ls=LINE_STYLES[s % len(LINE_STYLES)], lw=1.0,
                label=f"{rnn.VARIANT_LABELS[v]}" if s == SEEDS[0] else None)
        ax.plot([r["best_epoch"]], [r["best_valid_perplexity"]], "o", color=colors[v], ms=4)
    ax.set_title(rnn.CELL_LABELS[cell])
    ax.set_xlabel("epoch")
    ax.set_ylabel("valid perplexity (log scale)")
    ax.set_yscale("log")  # diverged runs reach 10^4; the trained ones sit near 150
    if ax.lines:
      ax.legend(fontsize=7, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def report(results_dir: str, *, command: str = "python -m experiments.rnn.study report") -> str:
  """Writes `<results_dir>/table.md` and `curves.png` from the finished jobs; returns the table."""
  results = load_results(results_dir)
  os.makedirs(results_dir, exist_ok=True)
  text = render_table(results, command=command)
  with open(os.path.join(results_dir, "table.md"), "w") as f:
    f.write(text)
  plot_curves(results, os.path.join(results_dir, "curves.png"))
  return text


STUDY = runner.Study(
    name="rnn", module="experiments.rnn.study",
    plans=(*(runner.Plan(c, plan_jobs(c), f"the {c} cell: 8 variants x seeds 0-2")
             for c in CELLS),
           *(runner.Plan(f"{c}_more", plan_more_jobs(c), f"the {c} cell: 8 variants x seeds 3-5 "
                         f"(PROTOCOL_RNN.md, 2026-12-07)") for c in MORE_ORDER)),
    run_job=run_job, report=report, summary=summary,
    runs_dir="runs/rnn_study", results_dir="results/rnn/converged",
    protocol="results/PROTOCOL_RNN.md")


if __name__ == "__main__":
  runner.cli(STUDY)
