r"""The converged CNN study of results/PROTOCOL.md: every run, resumable, one worker per core.

  python -m experiments.cnn.study run                         # every plan, in the protocol's order
  python -m experiments.cnn.study run --plans table,sigma     # some plans
  python -m experiments.cnn.study list                        # the jobs, and which are done
  python -m experiments.cnn.study_report                      # tables and figures

Plans (results/PROTOCOL.md fixes every number here before the runs):

- ``table``: the variants of Tables 3/7 (baseline, BN, BN*, LN, LN*, DN, DN*) with
  the paper's CIFAR-10 sigma and alpha, seeds 0-2, on the first 5,000 training
  examples of Fashion-MNIST: batch 100, momentum 0.9, lr 1e-2, 1,200 steps for
  the normalized networks (lr x0.1 at 450 and 750: the paper's 30k and 50k of
  80k) and 750 for the baselines (x0.1 at 75 and 450: the paper's 5k and 30k of
  50k). Each run also measures Table 10 on its first layer.
- ``sigma``: DN* with sigma learned per layer (``learn_sigma``), seeds 0-2,
  the table's schedule; its train metrics log ``sigma_norm_<layer>``.
- ``baseline_long``: the baseline on the normalized networks' schedule (1,200
  steps, x0.1 at 450 and 750), seeds 0-2. Added after the runs started
  (results/PROTOCOL.md, deviation 1): on the paper's baseline schedule the
  baseline stops short of the overfitting regime.
- ``small_batch``: BN, LN and DN at batch 4, 16 and 64, seeds 0-1, 30,000
  training examples each (steps = 30,000 / batch), lr 1e-2 x batch / 100 (the
  linear scaling rule), x0.1 at 37.5% and 62.5% of the steps.
- ``full``: the table's variants on the whole 60,000-example training split,
  seed 0, the table's schedule.

Each job trains in ``<runs>/<job>`` (checkpoints; resumes) and writes
``<results>/<job>/``: ``result.json`` (the numbers), ``metrics.jsonl`` and
``config.json`` (no checkpoints). A job is done when its result.json exists.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import time

import numpy as np

from experiments.cnn import model as cnn_model
from experiments.cnn import reproduce
from experiments.cnn.configs import cnn as cnn_config
from experiments.config import (
    ConfigError,
    apply_overrides,
    check_dir,
    check_writable_dir,
    positive_int,
)
from experiments.engine.workers import result_exists as is_done
from experiments.engine.workers import write_json as _write_json

DATASET = "fashion_mnist"
SUBSET = 5_000
NORMALIZED_STEPS = 1_200
BATCH_SIZE = 100
LEARNING_RATE = 1e-2
TABLE_VARIANTS = ("baseline", "BN", "BN*", "LN", "LN*", "DN", "DN*")
SEEDS = (0, 1, 2)
SIGMA_VARIANT = "DN*"
SMALL_BATCH_VARIANTS = ("BN", "LN", "DN")
SMALL_BATCHES = (4, 16, 64)
SMALL_BATCH_SEEDS = (0, 1)
SMALL_BATCH_EXAMPLES = 30_000
FULL_SEEDS = (0,)
PLANS = ("table", "sigma", "baseline_long", "small_batch", "full")
PROBE_IMAGES = 1_000
SAMPLES_SAVED = 2_048


@dataclasses.dataclass(frozen=True)
class Job:
  """One training run of the study."""
  plan: str
  variant: str
  seed: int
  batch_size: int
  num_steps: int
  boundaries: tuple[int, int]
  learning_rate: float
  max_train_examples: int | None
  learn_sigma: bool = False

  @property
  def name(self) -> str:
    name = f"{self.plan}-{reproduce.safe_name(self.variant)}-s{self.seed}"
    return name + (f"-b{self.batch_size}" if self.plan == "small_batch" else "")


def paper_schedule(variant: str, normalized_steps: int = NORMALIZED_STEPS
                   ) -> tuple[int, tuple[int, int]]:
  """(steps, lr cuts): the paper's schedule of `variant`, scaled so 80k steps -> `normalized_steps`."""
  total, cuts = cnn_config.PAPER_SCHEDULES[cnn_model.variant_spec(variant).paper_schedule]
  steps = round(normalized_steps * total / cnn_config.PAPER_SCHEDULES["normalized"][0])
  return steps, (round(steps * cuts[0] / total), round(steps * cuts[1] / total))


def _table_job(plan: str, variant: str, seed: int, subset: int | None, learn_sigma=False) -> Job:
  steps, cuts = paper_schedule(variant)
  return Job(plan, variant, seed, BATCH_SIZE, steps, cuts, LEARNING_RATE, subset, learn_sigma)


def small_batch_job(variant: str, batch_size: int, seed: int) -> Job:
  steps = SMALL_BATCH_EXAMPLES // batch_size
  cuts = (round(steps * 30 / 80), round(steps * 50 / 80))
  return Job("small_batch", variant, seed, batch_size, steps, cuts,
             LEARNING_RATE * batch_size / BATCH_SIZE, SUBSET)


def jobs(plans=PLANS) -> list[Job]:
  """Every job of `plans`, in the protocol's order (seed by seed, so partial tables balance)."""
  unknown = [p for p in plans if p not in PLANS]
  if unknown:
    raise ConfigError(f"--plans: unknown plan(s) {', '.join(unknown)}; valid choices: "
                      f"{', '.join(PLANS)}.")
  out = []
  for seed in SEEDS:
    if "table" in plans:
      out += [_table_job("table", v, seed, SUBSET) for v in TABLE_VARIANTS]
    if "sigma" in plans:
      out.append(_table_job("sigma", SIGMA_VARIANT, seed, SUBSET, learn_sigma=True))
    if "baseline_long" in plans:
      steps, cuts = paper_schedule("DN")
      out.append(Job("baseline_long", "baseline", seed, BATCH_SIZE, steps, cuts, LEARNING_RATE,
                     SUBSET))
  if "small_batch" in plans:
    out += [small_batch_job(v, b, s) for s in SMALL_BATCH_SEEDS for v in SMALL_BATCH_VARIANTS
            for b in SMALL_BATCHES]
  if "full" in plans:
    out += [_table_job("full", v, s, None) for s in FULL_SEEDS for v in TABLE_VARIANTS]
  return out


def job_config(job: Job, data_dir: str | None = None, overrides=()):
  """The engine config of `job` (the paper's CNN and recipe, the protocol's schedule).

  `overrides` ("key=value", as `--set`) apply last: for tests and shrunk runs only.
  """
  cfg = reproduce.build_config(job.variant, DATASET, num_steps=None, border="valid")
  cfg.data_dir = data_dir
  cfg.seed = job.seed
  cfg.batch_size = job.batch_size
  cfg.num_steps = job.num_steps
  cfg.optimizer.learning_rate = job.learning_rate
  cfg.optimizer.boundaries = list(job.boundaries)
  cfg.max_train_examples = job.max_train_examples
  cfg.learn_sigma = job.learn_sigma
  cfg.log_every = max(1, min(20, job.num_steps // 60))
  cfg.eval_every = job.num_steps if job.plan == "small_batch" else max(1, job.num_steps // 2)
  cfg.checkpoint_every = max(1, job.num_steps // 4)
  return apply_overrides(cfg, overrides)


def _mean_between(rows, key: str, lo: float, hi: float) -> float:
  values = [r[key] for r in rows if lo < r["step"] <= hi and key in r]
  return float(np.mean(values)) if values else float("nan")


def run_job(job: Job, *, runs_dir: str, results_dir: str, data_dir: str | None = None,
            overrides=()) -> dict:
  """Trains `job` (resuming), measures it, and writes its results folder; returns its row."""
  from experiments import engine
  from experiments.cnn import analysis
  from experiments.cnn import task as cnn_task
  from experiments.data import images

  cfg = job_config(job, data_dir, overrides)
  workdir = os.path.join(runs_dir, job.name)
  out = os.path.join(results_dir, job.name)
  train_split, test_split = data = cnn_task.load_data(cfg)
  t0 = time.time()
  result = cnn_task.train_and_evaluate(cfg, workdir, progress=False, data=data)
  seconds = time.time() - t0
  ts = result.train_state
  mesh = engine.make_mesh()
  on_train = engine.evaluate(
      cnn_task.make_task(cfg, train_split=train_split, test_split=train_split), ts, mesh)

  model = cnn_task.build_model(cfg, train_split.num_classes)
  preprocess = images.make_preprocess(images.mean_image(train_split.images))
  probe = preprocess({"image": test_split.images[:PROBE_IMAGES]})["image"]
  acts = analysis.first_layer_preactivations(model, {"params": ts.params, **ts.state}, probe,
                                             train=False)
  table10 = analysis.table10(acts)

  history = engine.read_metrics(workdir, "train")
  n = job.num_steps
  last = history[-1] if history else {}
  row = {
      **dataclasses.asdict(job), "name": job.name,
      "test_accuracy": result.eval_metrics["accuracy"],
      "test_cross_entropy": result.eval_metrics["cross_entropy"],
      "train_accuracy": on_train["accuracy"],
      "train_cross_entropy": on_train["cross_entropy"],
      # Plateau check: mean minibatch cross entropy over the last two tenths of the steps.
      "train_ce_80_90": _mean_between(history, "cross_entropy", 0.8 * n, 0.9 * n),
      "train_ce_90_100": _mean_between(history, "cross_entropy", 0.9 * n, n),
      "table10_correlation": table10["correlation"],
      "table10_mutual_information": table10["mutual_information"],
      "sigmas": {k: v for k, v in last.items() if k.startswith("sigma_")},
      "examples_per_second": float(np.median([r["examples_per_second"] for r in history
                                              if "examples_per_second" in r] or [np.nan])),
      "seconds_this_process": seconds,
      "machine": reproduce.machine_description(),
  }
  os.makedirs(out, exist_ok=True)
  for name in ("metrics.jsonl", "config.json"):
    shutil.copyfile(os.path.join(workdir, name), os.path.join(out, name))
  if job.seed == 0 and job.plan in ("table", "sigma"):
    z = analysis.samples(acts, max_samples=SAMPLES_SAVED, seed=0).astype(np.float32)
    np.savez_compressed(os.path.join(out, "first_layer_samples.npz"), samples=z)
  _write_json(os.path.join(out, "result.json"), row)
  return row


def worker(args) -> int:
  from experiments.engine.workers import claimed_jobs
  by_name = {j.name: j for j in jobs(args.plans)}
  for name in claimed_jobs(list(by_name), lock_dir=os.path.join(args.runs_dir, "locks"),
                           is_done=lambda n: is_done(args.results_dir, n)):
    job = by_name[name]
    print(f"[worker {args.worker_index}] {name}: {job.num_steps} steps of batch "
          f"{job.batch_size}, lr {job.learning_rate:g}", flush=True)
    try:
      row = run_job(job, runs_dir=args.runs_dir, results_dir=args.results_dir,
                    data_dir=args.data_dir)
    except Exception as e:  # a diverged run is a result too; the others go on
      if isinstance(e, ConfigError):
        raise
      os.makedirs(os.path.join(args.results_dir, name), exist_ok=True)
      row = {**dataclasses.asdict(job), "name": name, "failed": f"{type(e).__name__}: {e}"}
      _write_json(os.path.join(args.results_dir, name, "result.json"), row)
    print(f"[worker {args.worker_index}] {name}: "
          + (row.get("failed") or f"test accuracy {row['test_accuracy']:.4f}"), flush=True)
  return 0


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("command", choices=("run", "list", "worker"))
  p.add_argument("--plans", default=",".join(PLANS), help=f"subset of {','.join(PLANS)}")
  p.add_argument("--workers", type=positive_int(2), default=2,
                 help="processes, each on its own core with single-threaded XLA")
  p.add_argument("--runs_dir", default="runs/study", help="checkpoints (resumable)")
  p.add_argument("--results_dir", default="results/cnn/converged")
  p.add_argument("--data_dir", default=None)
  p.add_argument("--worker_index", type=int, default=0, help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  args.plans = tuple(x.strip() for x in args.plans.split(",") if x.strip())
  todo = jobs(args.plans)
  check_dir(args.data_dir, flag="--data_dir", example="/usr/share/datasets/fashion-mnist")
  if args.command == "list":
    for j in todo:
      print(f"{'done' if is_done(args.results_dir, j.name) else '    '}  {j.name}: "
            f"{j.num_steps} steps, batch {j.batch_size}, lr {j.learning_rate:g}, "
            f"cuts {j.boundaries}")
    return 0
  check_writable_dir(args.runs_dir, flag="--runs_dir", example="runs/study")
  check_writable_dir(args.results_dir, flag="--results_dir", example="results/cnn/converged")
  if args.command == "worker":
    return worker(args)
  from experiments.engine.workers import run_workers
  argv = ["-m", "experiments.cnn.study", "worker", "--plans", ",".join(args.plans),
          "--runs_dir", args.runs_dir, "--results_dir", args.results_dir,
          *(["--data_dir", args.data_dir] if args.data_dir else [])]
  return run_workers(argv, workers=args.workers)


if __name__ == "__main__":
  from experiments.config import cli
  cli(main)
