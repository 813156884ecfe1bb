r"""Runs any subset of the paper's twelve CNN variants on any dataset; writes the paper's table.

  python -m experiments.cnn.reproduce --variants 'baseline,BN,BN*,LN,LN*,DN,DN*' \
      --dataset fashion_mnist --num_steps 600 --workdir runs/cnn_fm --out results/cnn/fashion_mnist

  # the paper's CIFAR-10 recipe (50k/80k steps) for all twelve variants; DN's border is
  # "valid" unless --border zeros (the paper's code: zero padding, full-window divisor):
  python -m experiments.cnn.reproduce --dataset cifar10 --workdir runs/cnn_c10 --out results/cnn/cifar10

Writes <out>/table.md and <out>/table.csv (our test accuracy beside the
paper's CIFAR-10/100 numbers, labelled as the paper's) and <out>/curves.png.
Each variant trains in <workdir>/<variant>; re-running resumes unfinished runs
and reuses finished ones.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time

from experiments.cnn import model as cnn_model
from experiments.cnn.configs import cnn as cnn_config
from experiments.cnn.configs import cnn_short
from experiments.cnn.paper import PAPER_ACCURACY
from experiments.config import (
    ConfigError,
    apply_overrides,
    check_choice,
    check_dir,
    check_writable_dir,
    positive_int,
)
from experiments.data import images

SAFE = {"+": "_plus_", "*": "_star"}


def safe_name(variant: str) -> str:
  for k, v in SAFE.items():
    variant = variant.replace(k, v)
  return variant


def machine_description() -> str:
  from experiments.engine.study import machine_description
  return machine_description()


def build_config(variant: str, dataset: str, *, num_steps: int | None, border: str,
                 overrides=()):
  cfg = cnn_config.get_config(f"{variant},{dataset},{border}")
  if num_steps is not None:
    cnn_short.short_schedule(cfg, num_steps)
  return apply_overrides(cfg, overrides)


def parse_variants(text: str, *, flag: str = "--variants") -> list[str]:
  """Paper names from a comma-separated list; a ConfigError names the flag otherwise."""
  names = [v.strip() for v in str(text).split(",") if v.strip()]
  try:
    variants = [cnn_model.canonical_variant(v) for v in names]
  except ValueError as e:
    raise ConfigError(f"{flag} {text!r}: {e} E.g. {flag} 'baseline,BN,LN,DN,DN*'.") from None
  if not variants:
    raise ConfigError(f"{flag} {text!r}: name at least one variant; e.g. {flag} BN,DN.")
  return variants


def check_runs(cfgs, workdirs, mesh) -> None:
  """Checks every run's config and workdir before the first one starts."""
  from experiments.cnn import task as cnn_task
  from experiments.engine import check_workdir
  for cfg, wd in zip(cfgs, workdirs, strict=True):
    cnn_task.validate(cfg, mesh)
    check_workdir(wd, cfg)


def run_variants(variants, dataset: str, *, workdir: str, num_steps: int | None = None,
                 border: str = "valid", data_dir: str | None = None, overrides=(),
                 progress: bool = True) -> list[dict]:
  """Trains each variant (resuming) and returns one result row per variant.

  Every config and workdir is checked before the first run starts.
  """
  from experiments.cnn import task as cnn_task
  from experiments.engine import make_mesh
  cfgs = [build_config(variant, dataset, num_steps=num_steps, border=border,
                       overrides=[*([f"data_dir={data_dir!r}"] if data_dir else []), *overrides])
          for variant in variants]
  workdirs = [os.path.join(workdir, safe_name(variant)) for variant in variants]
  check_runs(cfgs, workdirs, make_mesh())
  rows, data = [], None
  for variant, cfg, wd in zip(variants, cfgs, workdirs, strict=True):
    if data is None:
      data = cnn_task.load_data(cfg)
    print(f"== {variant} on {dataset}: {cfg.num_steps} steps, batch {cfg.batch_size}, "
          f"sigma/alpha from {cfg.hparams} -> {wd}", flush=True)
    t0 = time.time()
    result = cnn_task.train_and_evaluate(cfg, wd, progress=progress, data=data)
    last_train = [r for r in result.history if r["kind"] == "train"]
    rows.append({
        "variant": variant, "dataset": dataset, "steps": cfg.num_steps,
        "batch_size": cfg.batch_size, "test_accuracy": result.eval_metrics["accuracy"],
        "test_cross_entropy": result.eval_metrics["cross_entropy"],
        "final_train_cross_entropy": last_train[-1]["cross_entropy"] if last_train else float("nan"),
        "wall_seconds": time.time() - t0, "workdir": wd})
    print(f"   {variant}: test accuracy {rows[-1]['test_accuracy']:.4f}", flush=True)
  return rows


def write_table(rows: list[dict], out: str, *, command: str, note: str = "") -> str:
  """Writes table.md and table.csv in the paper's layout; returns the markdown."""
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "table.csv"), "w", newline="") as f:
    fields = list(rows[0]) + ["paper_cifar10", "paper_cifar100"]
    w = csv.DictWriter(f, fieldnames=fields)
    w.writeheader()
    for r in rows:
      c10, c100 = PAPER_ACCURACY[r["variant"]]
      w.writerow({**r, "paper_cifar10": c10, "paper_cifar100": c100})
  ds = rows[0]["dataset"]
  lines = [
      f"| Model | ours: {ds} test acc. | ours: steps | paper: CIFAR-10 | paper: CIFAR-100 |",
      "|---|---|---|---|---|"]
  for r in rows:
    c10, c100 = PAPER_ACCURACY[r["variant"]]
    lines.append(f"| {r['variant']} | {r['test_accuracy']:.4f} | {r['steps']} | {c10:.4f} | "
                 f"{c100:.4f} |")
  md = "\n".join([
      f"# CNN variants on {ds}", "",
      "Our numbers: test accuracy of the paper's CIFAR CNN trained with the command below. "
      "The paper columns are Ren et al. (ICLR 2017) Tables 3/7 on CIFAR-10 and CIFAR-100 "
      "(on both: 80k steps for the normalized networks, 50k for the baseline), copied for "
      "reference, not produced by us.", "",
      *lines, "",
      f"Command: `{command}`", "",
      f"Machine: {machine_description()}", "",
      note]).rstrip() + "\n"
  with open(os.path.join(out, "table.md"), "w") as f:
    f.write(md)
  return md


def parser(module: str = "experiments.cnn.reproduce", doc: str = __doc__,
           defaults: dict | None = None) -> argparse.ArgumentParser:
  """The command line of `main` as `module`, with its `doc` and `defaults`."""
  p = argparse.ArgumentParser(prog=f"python -m {module}", description=doc,
                              formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--variants", default=",".join(cnn_model.VARIANTS),
                 help=f"comma-separated subset of: {', '.join(cnn_model.VARIANTS)}")
  p.add_argument("--dataset", default="fashion_mnist")
  p.add_argument("--num_steps", type=positive_int(400), default=None,
                 help="short schedule (lr x0.1 at 60%%, 85%%); default: %(default)s "
                      "(None: the paper's)")
  p.add_argument("--border", default="valid")
  p.add_argument("--data_dir", default=None)
  p.add_argument("--workdir", default="runs/cnn", help="default: %(default)s")
  p.add_argument("--out", default=None, help="table/plot folder (default: <workdir>)")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
  p.add_argument("--no_progress", action="store_true")
  p.set_defaults(**(defaults or {}))
  return p


def main(argv=None, *, module: str = "experiments.cnn.reproduce", doc: str = __doc__,
         defaults: dict | None = None) -> int:
  """This command; `experiments.cnn.compare` runs it as `module`, with its own `doc` (the
  --help text) and `defaults` (flag values by destination)."""
  from experiments.engine import reserve_cpu_threads
  reserve_cpu_threads()  # before JAX's CPU client exists (several CPU devices)
  args = parser(module, doc, defaults).parse_args(argv)
  variants = parse_variants(args.variants)
  check_choice(args.dataset, images.DATASETS, flag="--dataset")
  check_choice(args.border, cnn_model.BORDERS, flag="--border")
  check_dir(args.data_dir, flag="--data_dir", example="/usr/share/datasets/fashion-mnist")
  out = args.out or args.workdir
  check_writable_dir(args.workdir, flag="--workdir", example="runs/cnn")
  check_writable_dir(out, flag="--out", example="results/cnn/fashion_mnist")
  rows = run_variants(variants, args.dataset, workdir=args.workdir, num_steps=args.num_steps,
                      border=args.border, data_dir=args.data_dir, overrides=args.set,
                      progress=not args.no_progress)
  command = f"python -m {module} " + " ".join(
      f"'{a}'" if any(c in a for c in "*+ ") else a for a in (argv or sys.argv[1:]))
  md = write_table(rows, out, command=command)
  from experiments.cnn.plot import plot_learning_curves
  plot_learning_curves({r["variant"]: r["workdir"] for r in rows}, os.path.join(out, "curves.png"),
                       title=f"paper CNN on {args.dataset}")
  print(md)
  print(f"wrote {out}/table.md, table.csv, curves.png")
  return 0


if __name__ == "__main__":
  from experiments.config import cli
  cli(main)
