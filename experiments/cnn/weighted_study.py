r"""The weighted-fields study of results/PROTOCOL_WEIGHTED.md, through the one study runner.

  python -m experiments.cnn.weighted_study run --workers 1 --cores 0   # seed 0 of every variant first
  python -m experiments.cnn.weighted_study status
  python -m experiments.cnn.weighted_study report                      # summary.md and the pools' figures

One plan, ``weighted``: BN*, DN*, GDN, Miller, Miller+BN, Burg and centre-surround (CS) on
the converged study's table recipe (`experiments.cnn.study.table_job`: the first 5,000
Fashion-MNIST training images, batch 100, lr 1e-2, 1,200 steps, x0.1 at 450 and 750),
seeds 0-2, seed by seed. Each job is the CNN study's (`experiments.cnn.study.run_job`) and
also writes its learned pools (``pools.npz``) and the first layer's pool-similarity rho.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from experiments.cnn import study as cnn_study
from experiments.cnn import weighted_model, weighted_report
from experiments.engine import study as runner

PLAN = "weighted"
SEEDS = (0, 1, 2)


def weighted_job(variant: str, seed: int) -> cnn_study.Job:
  """A job on the table's recipe with the normalized networks' schedule (DN*'s)."""
  steps, cuts = cnn_study.paper_schedule("DN*")
  return cnn_study.Job(PLAN, variant, seed, cnn_study.BATCH_SIZE, steps, cuts,
                       cnn_study.LEARNING_RATE, cnn_study.SUBSET)


def run_job(job: cnn_study.Job, runs_dir: str, results_dir: str, *, data_dir=None,
            overrides=()) -> dict:
  """`cnn_study.run_job`, then the learned pools of the trained model (read back from its
  last checkpoint) into ``pools.npz`` and the first layer's pool similarity into the row."""
  from experiments.cnn import task as cnn_task

  row = cnn_study.run_job(job, runs_dir, results_dir, data_dir=data_dir, overrides=overrides)
  cfg = cnn_study.job_config(job, data_dir, overrides)
  params = cnn_task.train_and_evaluate(cfg, os.path.join(runs_dir, job.name),
                                       progress=False).train_state.params
  pools = weighted_model.learned_pools(params)
  flat = {f"{layer}/{name}": v for layer, p in pools.items() for name, v in p.items()}
  np.savez_compressed(os.path.join(results_dir, job.name, "pools.npz"), **flat)
  similarity = weighted_model.first_layer_pool_similarity(params)
  if similarity is not None:
    row["pool_similarity"] = dataclasses.asdict(similarity)
  return row


def report(results_dir: str) -> str:
  text = weighted_report.report(runner.load_results(results_dir), results_dir)
  with open(os.path.join(results_dir, "summary.md"), "w") as f:
    f.write(text + "\n")
  return text


STUDY = runner.Study(
    name="weighted", module="experiments.cnn.weighted_study",
    plans=(runner.Plan(PLAN, tuple(weighted_job(v, s) for s in SEEDS
                                   for v in weighted_model.STUDY_VARIANTS),
                       "BN*, DN*, GDN, Miller, Miller+BN, Burg, CS x 3 seeds, seed by seed"),),
    run_job=run_job, report=report, summary=cnn_study.summary, runs_dir="runs/weighted",
    results_dir="results/cnn/weighted", protocol="results/PROTOCOL_WEIGHTED.md")


if __name__ == "__main__":
  runner.cli(STUDY)
