"""Why does SRCNN+BN lose? Re-scores a finished BN run three ways.

  python -m experiments.sr.bn_diagnosis --workdir runs/sr/x3_bn --scale 3 --num_steps 800

For each test image: PSNR with BN's running averages (how the table scores it),
PSNR with the image's own batch statistics (BN in training mode on the whole
image), and the mean Y offset (output - target, 0..255) and the ratio of standard
deviations (contrast) of the output to the target, for BN and, when
`--srcnn_workdir` is given, for plain SRCNN.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def unfinished(workdir: str, variant: str, scale: int) -> str | None:
  """Why `workdir` is not a finished SRCNN run of `variant` at `scale`, or None if it is
  (the run's ``sr_eval.json``, written after its last step, says so)."""
  path = os.path.join(workdir, "sr_eval.json")
  if not os.path.isfile(path):
    return "no finished run there (no sr_eval.json)"
  with open(path) as f:
    run = json.load(f)
  if str(run.get("variant", "")).lower() != variant or run.get("scale") != scale:
    return (f"a run of variant {run.get('variant')!r} at x{run.get('scale')}, not "
            f"{variant!r} at x{scale}")
  return None


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--workdir", required=True, help="a finished BN run of experiments.sr.reproduce")
  p.add_argument("--srcnn_workdir", default=None, help="a finished SRCNN run, for comparison")
  p.add_argument("--scale", type=int, default=3)
  p.add_argument("--num_steps", type=int, default=800)
  p.add_argument("--source", default="photographs")
  p.add_argument("--out", default=None, help="write the JSON here too")
  args = p.parse_args(argv)
  for flag, workdir, variant in (("--workdir", args.workdir, "bn"),
                                 ("--srcnn_workdir", args.srcnn_workdir, "srcnn")):
    problem = workdir and unfinished(workdir, variant, args.scale)
    if problem:
      p.error(f"{flag} {workdir}: {problem}; pass the workdir of a finished run of "
              f"experiments.sr.reproduce (this command re-scores it, it does not train).")

  import jax
  import jax.numpy as jnp
  import numpy as np

  from experiments.sr import data as sr
  from experiments.sr import metrics
  from experiments.sr import model as srcnn
  from experiments.sr import task as sr_task
  from experiments.sr.configs import sr_srcnn_fast

  test_images = sr.test_set(args.source, scale=args.scale)
  b = srcnn.BORDER

  def restored(variant, workdir):
    cfg = sr_srcnn_fast.get_config(f"{variant},{args.scale},{args.num_steps},{args.source}")
    result = sr_task.train_and_evaluate(cfg, workdir, progress=False, test_images=test_images)
    ts = result.train_state
    return sr_task.build_model(cfg), jax.device_get({"params": ts.params, **ts.state})

  def stats(image, estimate):
    target = image.target[b:-b, b:-b].astype(np.float64)
    out = metrics.to_uint8(estimate).astype(np.float64)
    return {"psnr": metrics.psnr(target, estimate, border=0),
            "mean_offset": float(out.mean() - target.mean()),
            "contrast_ratio": float(out.std() / target.std())}

  rows = {}
  model, variables = restored("bn", args.workdir)
  own = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"])[0])
  running = sr_task.make_predict(model)
  for image in test_images:
    x = jnp.asarray(image.bicubic[None, :, :, None])
    est_run = sr_task.predict_image(running, variables, image)
    est_own = np.asarray(own(variables, x))[0, :, :, 0].astype(np.float64) * 255.0
    rows[image.name] = {"bn_running_averages": stats(image, est_run),
                        "bn_image_statistics": stats(image, est_own)}
  if args.srcnn_workdir:
    model, variables = restored("srcnn", args.srcnn_workdir)
    predict = sr_task.make_predict(model)
    for image in test_images:
      rows[image.name]["srcnn"] = stats(image, sr_task.predict_image(predict, variables, image))
  kinds = list(next(iter(rows.values())))
  mean = {k: {m: float(np.mean([r[k][m] for r in rows.values()]))
              for m in ("psnr", "mean_offset", "contrast_ratio")} for k in kinds}
  report = {"command": "python -m experiments.sr.bn_diagnosis " + " ".join(
      argv if argv is not None else sys.argv[1:]), "mean": mean, "images": rows}
  text = json.dumps(report, indent=1)
  if args.out:
    with open(args.out, "w") as f:
      f.write(text + "\n")
  print(json.dumps(mean, indent=1))
  return 0


if __name__ == "__main__":
  from experiments.config import cli
  cli(main)
