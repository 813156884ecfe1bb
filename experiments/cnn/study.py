r"""The converged CNN study of results/PROTOCOL.md: every run, through the one study runner.

  python -m experiments.cnn.study run                          # every plan, in the protocol's order
  python -m experiments.cnn.study run --plans sigma_alone      # some plans (--jobs 'PATTERN' too)
  python -m experiments.cnn.study status                       # done / running / failed / to run
  python -m experiments.cnn.study report                       # summary.md, summary.json, figures

Plans (results/PROTOCOL.md fixes every number here before the runs):

- ``table``: the variants of Tables 3/7 (baseline, BN, BN*, LN, LN*, DN, DN*) with
  the paper's CIFAR-10 sigma and alpha, seeds 0-5 (3-5 added 2026-12-07), on the
  first 5,000 training examples of Fashion-MNIST: batch 100, momentum 0.9, lr 1e-2,
  1,200 steps for the normalized networks (lr x0.1 at 450 and 750: the paper's 30k
  and 50k of 80k) and 750 for the baselines (x0.1 at 75 and 450: the paper's 5k and 30k of
  50k). Each run also measures Table 10 on its first layer.
- ``sigma``: DN* with sigma learned per layer (``learn_sigma``), seeds 0-5 (3-5 added
  2026-12-08).
- ``baseline_long``: the baseline on the normalized networks' schedule, seeds 0-2
  (PROTOCOL.md, deviation 1).
- ``sigma_alone``: BN-s and LN-s (the paper's: sigma without L1) and DN with
  sigma 0 (tag ``sigma0``), seeds 0-5 (3-5 added 2026-12-08), the table's schedule
  (PROTOCOL.md, 2026-12-03).
- ``small_batch``: BN, LN, DN and DN* at batch 4, 16 and 64, seeds 0-5 (3-5 added
  2026-12-08), 30,000 training examples each (steps = 30,000 / batch), lr 1e-2 x
  batch / 100, x0.1 at 37.5% and 62.5% of the steps; seed by seed.
- ``full_long``: BN, BN*, DN and DN* on the whole 60,000-image training split,
  seeds 0-3 (2 and 3 added 2026-12-07), `FULL_EPOCHS` epochs with the table's cuts at
  the paper's fractions; seed by seed.

Each job trains in ``<runs>/<job>`` (checkpoints; resumes) and writes
``<results>/<job>/``: ``result.json`` (the numbers), ``metrics.jsonl`` and
``config.json`` (no checkpoints). Another module adds plans of these jobs with
``STUDY.with_plans(...)`` (experiments/engine/README.md).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time

import numpy as np

from experiments.cnn import model as cnn_model
from experiments.cnn import reproduce, weighted_model
from experiments.cnn.configs import cnn as cnn_config
from experiments.cnn.protocol import (  # noqa: F401 - the protocol's numbers, re-exported
  BATCH_SIZE,
  DATASET,
  FULL_EPOCHS,
  FULL_SEEDS,
  FULL_SPLIT,
  FULL_VARIANTS,
  LEARNING_RATE,
  NORMALIZED_STEPS,
  PLATEAU_TOLERANCE,
  PROBE_IMAGES,
  SAMPLES_SAVED,
  SEEDS,
  SIGMA_ALONE,
  SIGMA_SEEDS,
  SIGMA_VARIANT,
  SMALL_BATCH_EXAMPLES,
  SMALL_BATCH_SEEDS,
  SMALL_BATCH_VARIANTS,
  SMALL_BATCHES,
  SUBSET,
  TABLE_SEEDS,
  TABLE_VARIANTS,
  converged,
)
from experiments.config import apply_overrides
from experiments.engine import study as runner


@dataclasses.dataclass(frozen=True)
class Job:
  """One training run of the study.

  Attributes:
    overrides: further config fields, in `--set` syntax ("sigma=0.0"), for variants
      the paper's twelve do not name; `tag` then tells the job's name apart.
  """
  plan: str
  variant: str
  seed: int
  batch_size: int
  num_steps: int
  boundaries: tuple[int, int]
  learning_rate: float
  max_train_examples: int | None
  learn_sigma: bool = False
  overrides: tuple[str, ...] = ()
  tag: str = ""

  @property
  def name(self) -> str:
    name = f"{self.plan}-{reproduce.safe_name(self.variant)}"
    name += (f"-{self.tag}" if self.tag else "") + f"-s{self.seed}"
    return name + (f"-b{self.batch_size}" if self.batch_size != BATCH_SIZE else "")

  @property
  def label(self) -> str:
    """The model's name in tables: the variant, and its tag (e.g. "DN (sigma0)")."""
    return self.variant + (f" ({self.tag})" if self.tag else "")


def paper_schedule(variant: str, normalized_steps: int = NORMALIZED_STEPS
                   ) -> tuple[int, tuple[int, int]]:
  """(steps, lr cuts): the paper's schedule of `variant`, scaled so 80k steps -> `normalized_steps`."""
  total, cuts = cnn_config.PAPER_SCHEDULES[cnn_model.variant_spec(variant).paper_schedule]
  steps = round(normalized_steps * total / cnn_config.PAPER_SCHEDULES["normalized"][0])
  return steps, (round(steps * cuts[0] / total), round(steps * cuts[1] / total))


def table_job(plan: str, variant: str, seed: int, subset: int | None = SUBSET, *,
              normalized_steps: int = NORMALIZED_STEPS, **fields) -> Job:
  """A job on the table's recipe (batch 100, lr 1e-2, the paper's schedule scaled)."""
  steps, cuts = paper_schedule(variant, normalized_steps)
  return Job(plan, variant, seed, BATCH_SIZE, steps, cuts, LEARNING_RATE, subset, **fields)


def small_batch_job(variant: str, batch_size: int, seed: int) -> Job:
  steps = SMALL_BATCH_EXAMPLES // batch_size
  cuts = (round(steps * 30 / 80), round(steps * 50 / 80))
  return Job("small_batch", variant, seed, batch_size, steps, cuts,
             LEARNING_RATE * batch_size / BATCH_SIZE, SUBSET)


def _plans() -> tuple[runner.Plan, ...]:
  table = [table_job("table", v, s) for s in TABLE_SEEDS for v in TABLE_VARIANTS]
  sigma = [table_job("sigma", SIGMA_VARIANT, s, learn_sigma=True) for s in SIGMA_SEEDS]
  steps, cuts = paper_schedule("DN")
  long = [Job("baseline_long", "baseline", s, BATCH_SIZE, steps, cuts, LEARNING_RATE, SUBSET)
          for s in SEEDS]
  alone = [table_job("sigma_alone", v, s, overrides=o, tag=t)
           for s in SIGMA_SEEDS for v, o, t in SIGMA_ALONE]
  small = [small_batch_job(v, b, s) for s in SMALL_BATCH_SEEDS for v in SMALL_BATCH_VARIANTS
           for b in SMALL_BATCHES]
  full_steps = FULL_EPOCHS * FULL_SPLIT // BATCH_SIZE
  full = [table_job("full_long", v, s, None, normalized_steps=full_steps)
          for s in FULL_SEEDS for v in FULL_VARIANTS]
  return (
      runner.Plan("table", tuple(table),
                  f"Tables 3/7 and 10: 7 variants x {len(TABLE_SEEDS)} seeds"),
      runner.Plan("sigma", tuple(sigma),
                  f"DN* with sigma learned per layer, {len(SIGMA_SEEDS)} seeds"),
      runner.Plan("baseline_long", tuple(long), "the baseline on 1,200 steps, 3 seeds"),
      runner.Plan("sigma_alone", tuple(alone),
                  f"BN-s, LN-s, DN with sigma 0, {len(SIGMA_SEEDS)} seeds"),
      runner.Plan("small_batch", tuple(small),
                  f"BN, LN, DN, DN* at batch 4/16/64, {len(SMALL_BATCH_SEEDS)} seeds"),
      runner.Plan("full_long", tuple(full),
                  f"BN, BN*, DN, DN* on all 60k images, {FULL_EPOCHS} epochs, {len(FULL_SEEDS)} seeds"),
  )


def job_config(job: Job, data_dir: str | None = None, overrides=()):
  """The engine config of `job` (the paper's CNN and recipe, the protocol's schedule).

  The job's own overrides apply, then `overrides` ("key=value", as `--set`): for tests
  and shrunk runs only.
  """
  weighted = job.variant in weighted_model.WEIGHTED_VARIANTS  # the recipe of DN*'s config
  cfg = reproduce.build_config("DN*" if weighted else job.variant, DATASET, num_steps=None,
                               border="valid")
  cfg.variant = job.variant
  cfg.data_dir = data_dir
  cfg.seed = job.seed
  cfg.batch_size = job.batch_size
  cfg.num_steps = job.num_steps
  cfg.optimizer.learning_rate = job.learning_rate
  cfg.optimizer.boundaries = list(job.boundaries)
  cfg.max_train_examples = job.max_train_examples
  cfg.learn_sigma = job.learn_sigma
  cfg.log_every = max(1, min(20, job.num_steps // 60))
  cfg.eval_every = (job.num_steps if job.plan == "small_batch"
                    else max(1, min(job.num_steps // 2, 600)))
  cfg.checkpoint_every = max(1, min(job.num_steps // 4, 600))
  return apply_overrides(cfg, [*job.overrides, *overrides])


def _mean_between(rows, key: str, lo: float, hi: float) -> float:
  values = [r[key] for r in rows if lo < r["step"] <= hi and key in r]
  return float(np.mean(values)) if values else float("nan")


def run_job(job: Job, runs_dir: str, results_dir: str, *, data_dir: str | None = None,
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
      **runner.job_fields(job),
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
      "machine": runner.machine_description(),
  }
  row["converged"] = converged(row)
  os.makedirs(out, exist_ok=True)
  for name in ("metrics.jsonl", "config.json"):
    shutil.copyfile(os.path.join(workdir, name), os.path.join(out, name))
  if job.seed == 0 and job.plan in ("table", "sigma", "sigma_alone"):
    z = analysis.samples(acts, max_samples=SAMPLES_SAVED, seed=0).astype(np.float32)
    np.savez_compressed(os.path.join(out, "first_layer_samples.npz"), samples=z)
  return row


def summary(row: dict) -> str:
  """One line on a finished job (for `status` and the workers' log)."""
  return (f"test accuracy {row['test_accuracy']:.4f}, train {row['train_accuracy']:.4f}, "
          f"plateau {'passed' if converged(row) else 'FAILED'}")


def report(results_dir: str) -> str:
  from experiments.cnn import study_report
  return study_report.write(results_dir)


STUDY = runner.Study(
    name="cnn", module="experiments.cnn.study", plans=_plans(), run_job=run_job, report=report,
    summary=summary, runs_dir="runs/study", results_dir="results/cnn/converged",
    protocol="results/PROTOCOL.md")


if __name__ == "__main__":
  runner.cli(STUDY)
