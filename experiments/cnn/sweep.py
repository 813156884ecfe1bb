r"""Small-batch sweep: BN vs LN vs DN at batch sizes 4, 16, 64 (the poster's first claim).

  python -m experiments.cnn.sweep --batch_sizes 4,16,64 --variants BN,LN,DN \
      --examples 32000 --workdir runs/cnn_sweep --out results/cnn/batch_sweep

Every run sees the same number of training examples (--examples; steps =
examples / batch), or takes the same number of steps (--steps), with the paper's lr 1e-3, momentum 0.9 and sigma, lr x0.1
at 60% and 85% of the steps; test accuracy on the full test split with batch
--eval_batch_size (BN in inference mode: its running averages). Writes
sweep.md, sweep.csv and sweep.png to --out.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time

from experiments.cnn import reproduce
from experiments.config import check_choice, check_dir, check_writable_dir, parse_ints, positive_int
from experiments.data import images


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--variants", default="BN,LN,DN")
  p.add_argument("--batch_sizes", default="4,16,64")
  p.add_argument("--examples", type=positive_int(32000), default=32000,
                 help="training examples per run")
  p.add_argument("--steps", type=positive_int(300), default=None,
                 help="equal steps per run instead (overrides --examples)")
  p.add_argument("--dataset", default="fashion_mnist")
  p.add_argument("--data_dir", default=None)
  p.add_argument("--eval_batch_size", type=positive_int(100), default=100)
  p.add_argument("--workdir", default="runs/cnn_sweep")
  p.add_argument("--out", default=None)
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
  p.add_argument("--no_progress", action="store_true")
  args = p.parse_args(argv)
  from experiments.cnn import task as cnn_task
  from experiments.engine import make_mesh

  variants = reproduce.parse_variants(args.variants)
  batch_sizes = parse_ints(args.batch_sizes, flag="--batch_sizes", example="4,16,64", minimum=1)
  check_choice(args.dataset, images.DATASETS, flag="--dataset")
  check_dir(args.data_dir, flag="--data_dir", example="/usr/share/datasets/fashion-mnist")
  out = args.out or args.workdir
  check_writable_dir(args.workdir, flag="--workdir", example="runs/cnn_sweep")
  check_writable_dir(out, flag="--out", example="results/cnn/batch_sweep")
  runs = []
  for variant in variants:
    for bs in batch_sizes:
      steps = args.steps if args.steps else max(1, args.examples // bs)
      overrides = [f"batch_size={bs}", f"eval_batch_size={args.eval_batch_size}",
                   f"eval_every={max(1, steps // 2)}", f"log_every={max(1, steps // 50)}",
                   *([f"data_dir={args.data_dir!r}"] if args.data_dir else []), *args.set]
      cfg = reproduce.build_config(variant, args.dataset, num_steps=steps, border="valid",
                                   overrides=overrides)
      runs.append((variant, bs, steps, cfg,
                   os.path.join(args.workdir, f"{reproduce.safe_name(variant)}_b{bs}")))
  reproduce.check_runs([r[3] for r in runs], [r[4] for r in runs], make_mesh())
  rows, data = [], None
  for variant, bs, steps, cfg, wd in runs:
    if data is None:
      data = cnn_task.load_data(cfg)
    print(f"== {variant} batch {bs}: {steps} steps -> {wd}", flush=True)
    t0 = time.time()
    result = cnn_task.train_and_evaluate(cfg, wd, progress=not args.no_progress, data=data)
    rows.append({"variant": variant, "batch_size": bs, "steps": steps,
                 "test_accuracy": result.eval_metrics["accuracy"],
                 "test_cross_entropy": result.eval_metrics["cross_entropy"],
                 "wall_seconds": time.time() - t0, "workdir": wd})
    print(f"   {variant} b{bs}: test accuracy {rows[-1]['test_accuracy']:.4f}", flush=True)

  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "sweep.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
  header = "| Model | " + " | ".join(f"batch {b}" for b in batch_sizes) + " |"
  lines = [header, "|---|" + "---|" * len(batch_sizes)]
  for v in variants:
    accs = {r["batch_size"]: r["test_accuracy"] for r in rows if r["variant"] == v}
    lines.append(f"| {v} | " + " | ".join(f"{accs[b]:.4f}" for b in batch_sizes) + " |")
  command = "python -m experiments.cnn.sweep " + " ".join(argv if argv is not None else sys.argv[1:])
  budget = (f"{args.steps} steps per run (examples = steps x batch)" if args.steps else
            f"{args.examples} training examples per run (steps = examples / batch)")
  md = "\n".join([
      f"# Small-batch sweep on {args.dataset}", "",
      f"Test accuracy after {budget}, paper CNN and recipe (lr 1e-3, momentum 0.9), CIFAR-10 "
      "sigma, lr x0.1 at 60% and 85% of the steps.", "", *lines, "",
      f"Command: `{command}`", "", f"Machine: {reproduce.machine_description()}", ""])
  with open(os.path.join(out, "sweep.md"), "w") as f:
    f.write(md)
  _plot(rows, variants, batch_sizes, os.path.join(out, "sweep.png"))
  print(md)
  return 0


def _plot(rows, variants, batch_sizes, path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import matplotlib.ticker
  fig, ax = plt.subplots(figsize=(5, 3.5))
  for v in variants:
    accs = {r["batch_size"]: r["test_accuracy"] for r in rows if r["variant"] == v}
    ax.plot(batch_sizes, [accs[b] for b in batch_sizes], marker="o", label=v)
  ax.set_xscale("log")
  ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
  ax.set(xlabel="batch size", ylabel="test accuracy", xticks=batch_sizes,
         xticklabels=[str(b) for b in batch_sizes])
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


if __name__ == "__main__":
  from experiments.config import cli
  cli(main)
