"""The main job: offline comparison of baseline, BN, LN, DN and DN* on Fashion-MNIST.

  python -m experiments.cnn.compare                      # ~10 min on 2 CPU cores
  python -m experiments.cnn.compare --num_steps 100      # a quick look

The paper's CIFAR CNN and recipe (REFERENCE §3) on the full Fashion-MNIST IDX
files (Debian's dataset-fashion-mnist, or --data_dir), each variant for
--num_steps steps (lr x0.1 at 60% and 85%). Prints the results table and
writes table.md, table.csv and curves.png (learning curves) to --out.

It is a smoke run of early training (400 steps, 2/3 of an epoch, one seed), not
the paper's claims: at the end it prints its numbers beside the converged study's
(results/cnn/converged/summary.json: 6 seeds, trained to a plateau; see
results/REPORT.md), so the two can be told apart.
"""

from __future__ import annotations

import csv
import json
import os
import sys

from experiments import seed_stats
from experiments.cnn import reproduce

DEFAULT_VARIANTS = "baseline,BN,LN,DN,DN*"
CONVERGED = os.path.join(os.path.dirname(__file__), "..", "..", "results", "cnn", "converged",
                         "summary.json")


def _run_facts(argv) -> tuple[str, str]:
  """Where the run wrote its table, and what it trained on (the full train split, or its
  first ``max_train_examples``), as the command line parsed them (abbreviations included)."""
  args = reproduce.parser(defaults=DEFAULTS).parse_args(argv)
  limits = [v.split("=", 1)[1] for v in args.set if v.startswith("max_train_examples=")]
  train = f"first {limits[-1]} train images" if limits else "full train split"
  return args.out or args.workdir, train


def beside_converged(table_csv: str, summary_json: str = CONVERGED,
                     train: str = "full train split") -> str:
  """This run's test accuracies (trained on `train`) beside the converged study's (mean ±
  std over seeds)."""
  with open(table_csv) as f:
    rows = list(csv.DictReader(f))
  converged = {}
  if os.path.exists(summary_json):
    with open(summary_json) as f:
      converged = json.load(f).get("table", {})
  lines = [f"| model | this run (steps, 1 seed, {train}) | converged study "
           "(5k-image subset, seeds; results/REPORT.md) |", "|---|---|---|"]
  for r in rows:
    c = converged.get(r["variant"])
    cell = (f"{seed_stats.format_mean(c['test_accuracy'])} (n={c['test_accuracy']['n']}, "
            f"{c['steps']} steps)" if c else "not in the study")
    lines.append(f"| {r['variant']} | {float(r['test_accuracy']):.4f} ({r['steps']}) | {cell} |")
  return "\n".join(lines)


DEFAULTS = {"variants": DEFAULT_VARIANTS, "dataset": "fashion_mnist", "num_steps": 400,
            "workdir": "runs/cnn_compare"}


def main(argv=None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  status = reproduce.main(argv, module="experiments.cnn.compare", doc=__doc__,
                          defaults=DEFAULTS)
  out, train = _run_facts(argv)
  print("\nThis smoke run beside the converged study (test accuracy):\n")
  print(beside_converged(os.path.join(out, "table.csv"), train=train))
  return status


if __name__ == "__main__":
  from experiments.config import cli
  cli(main)
