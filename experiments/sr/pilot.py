"""Schedule pilots: train on the training photographs without the validation ones,
score the validation photographs whole every `--eval_every` steps, beside bicubic.

  python -m experiments.sr.pilot --name adam1e-3_b16 --num_steps 12000 --eval_every 2000
  python -m experiments.sr.pilot --name adam3e-4_b16 --num_steps 12000 --eval_every 2000 \\
      --set optimizer.learning_rate=3e-4

A pilot chooses the schedule, never the test photographs: its source is
`photographs_validation` (train = `PHOTOGRAPHS_TRAIN` minus `PHOTOGRAPHS_VALIDATION`,
scored on `PHOTOGRAPHS_VALIDATION`; see `experiments.sr.sources`). The config is
`sr_srcnn_fast.py` (Adam, lr x0.1 at 80% of the steps, batch 16) with `--set`
overrides. Writes `<out>/<name>.json`: the validation curve (mean PSNR/SSIM of the
network and of bicubic at every evaluation), the config, the command, the machine
and the seconds taken. The run lives in `<workdir>/<name>`; rerunning resumes it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

from experiments.config import ConfigError, positive_int


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--name", required=True, help="the pilot's name (its folder and JSON file)")
  p.add_argument("--variant", default="SRCNN")
  p.add_argument("--scale", type=positive_int(3), default=3)
  p.add_argument("--num_steps", type=positive_int(12000), default=12000)
  p.add_argument("--eval_every", type=positive_int(2000), default=2000)
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="config override (repeatable), e.g. --set optimizer.learning_rate=3e-4")
  p.add_argument("--workdir", default="runs/sr_pilots")
  p.add_argument("--out", default="results/sr/pilots")
  p.add_argument("--no_progress", action="store_true")
  args = p.parse_args(argv)

  import jax

  from experiments.config import apply_overrides, check_writable_dir, load_config
  from experiments.sr import data as sr
  from experiments.sr import task as sr_task

  cfg = load_config(f"experiments/sr/configs/sr_srcnn_fast.py:"
                    f"{args.variant},{args.scale},{args.num_steps},photographs_validation")
  cfg.eval_every = args.eval_every
  cfg.checkpoint_every = args.eval_every
  apply_overrides(cfg, args.set)
  if cfg.source != "photographs_validation" or cfg.test_source is not None:
    raise ConfigError("a pilot trains on `photographs_validation` and scores its validation "
                      "photographs; do not --set source or test_source.")
  check_writable_dir(args.workdir, flag="--workdir", example="runs/sr_pilots")
  check_writable_dir(args.out, flag="--out", example="results/sr/pilots")
  workdir = os.path.join(args.workdir, args.name)
  validation = sr.test_set("photographs_validation", scale=cfg.scale, antialias=cfg.antialias)
  bicubic = sr_task.mean_scores(sr_task.bicubic_scores(validation))
  model = sr_task.build_model(cfg)
  curve_path = os.path.join(workdir, "validation.jsonl")

  def score_validation(step, ts):
    if step % args.eval_every or step == cfg.num_steps:
      return
    variables = jax.device_get({"params": ts.params, **ts.state})
    rows, _ = sr_task.evaluate_images(model, variables, validation)
    with open(curve_path, "a") as f:
      f.write(json.dumps({"step": step, **sr_task.mean_scores(rows)}) + "\n")

  t0 = time.time()
  result = sr_task.train_and_evaluate(cfg, workdir, hooks=[score_validation],
                                      progress=not args.no_progress, test_images=validation)
  curve = {}
  if os.path.exists(curve_path):
    with open(curve_path) as f:
      for line in f:
        if line.strip():
          row = json.loads(line)
          curve[row["step"]] = row
  curve[cfg.num_steps] = {"step": cfg.num_steps, "psnr": result.eval_metrics["psnr"],
                          "ssim": result.eval_metrics["ssim"]}
  rows = [curve[s] for s in sorted(curve)]
  os.makedirs(args.out, exist_ok=True)
  record = {
      "command": "python -m experiments.sr.pilot " + " ".join(
          argv if argv is not None else sys.argv[1:]),
      "what": "a pilot (schedule search), scored on the validation photographs, not the test ones",
      "validation": [im.name for im in validation], "bicubic": bicubic,
      "curve": [{"step": r["step"], "psnr": r["psnr"], "ssim": r["ssim"],
                 "psnr_minus_bicubic": r["psnr"] - bicubic["psnr"]} for r in rows],
      "seconds_this_call": time.time() - t0, "steps_per_second": result.steps_per_second,
      "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                  "jax": jax.__version__, "xla_flags": os.environ.get("XLA_FLAGS", "")},
      "config": cfg.to_dict(),
  }
  with open(os.path.join(args.out, f"{args.name}.json"), "w") as f:
    json.dump(record, f, indent=1, default=str)
  for r in record["curve"]:
    print(f"step {r['step']:6d}  PSNR {r['psnr']:.3f}  SSIM {r['ssim']:.4f}  "
          f"vs bicubic {r['psnr_minus_bicubic']:+.3f} dB")
  print(f"bicubic on validation: {bicubic['psnr']:.3f} / {bicubic['ssim']:.4f}")
  return 0


if __name__ == "__main__":
  from experiments.config import cli
  cli(main)
