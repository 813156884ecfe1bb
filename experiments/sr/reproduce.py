"""Trains the SR variants at x3 and x4 and writes the paper-layout table and a figure.

  python -m experiments.sr.reproduce                       # offline photographs, fast schedule
  python -m experiments.sr.reproduce --num_steps 3000 --workdir runs/sr --out results/sr
  python -m experiments.sr.reproduce --test_source folder:/data/Set14     # your Set14 copy
  python -m experiments.sr.reproduce --config experiments/sr/configs/sr_srcnn.py  # paper's optimizer

For every scale and variant (Bicubic, SRCNN, BN, DN*) it runs the config's
trainer (`experiments.sr.task.train_and_evaluate`, the shared engine) in
`<workdir>/x<scale>_<variant>` (re-running resumes or reuses finished runs),
then writes to `--out`:

  table.md      PSNR/SSIM at x3 and x4 on our test set, the paper's Set14 and
                BSD200 numbers beside them (labelled as the paper's)
  results.json  per-image numbers, configs, command, machine, timings
  figure.png    the same crop of one test image from every variant, side by side
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

from experiments.config import ConfigError, positive_int


def _config(path: str, variant: str, scale: int, num_steps: int | None, source: str):
  from experiments.config import load_config
  arg = f"{variant},{scale}" + (f",{num_steps}" if num_steps is not None else "") + f",{source}"
  return load_config(f"{path}:{arg}")


PAPER_DN_L1_ALPHA = 0.1  # the paper's DN* for super-resolution (REFERENCE.md section 5)


def _label(variant: str, cfg=None) -> str:
  """The variant's name; DN trained with another L1 weight than DN*'s (the paper's 0.1) is
  not DN*, and its label says so."""
  from experiments.sr import model as srcnn
  alpha = None if cfg is None or variant != "dn" else float(cfg.norm.dn_l1_alpha)
  if alpha is None or alpha == PAPER_DN_L1_ALPHA:
    return srcnn.LABELS[variant]
  return f"DN, L1 alpha {alpha:g} (DN*: {PAPER_DN_L1_ALPHA:g})"


def write_table(path: str, results: dict, scales, variants, *, test_name: str, note: str,
                cfgs: dict | None = None) -> str:
  """Markdown table: rows = models (labelled from `cfgs[variant]` where given); ours at each
  scale, then the paper's columns."""
  from experiments.sr.paper import PAPER, PAPER_SETS
  head = (["model"] + [f"ours, {test_name} x{s}" for s in scales]
          + [f"paper, {ps} x{s}" for ps in PAPER_SETS for s in scales])
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for v in variants:
    row = [_label(v, (cfgs or {}).get(v))]
    for s in scales:
      m = results.get(f"x{s}", {}).get(v)
      row.append(f"{m['psnr']:.2f} / {m['ssim']:.4f}" if m else "-")
    for ps in PAPER_SETS:
      for s in scales:
        p = PAPER[v].get((ps, s))
        row.append(f"{p[0]:.2f} / {p[1]:.4f}" if p else "-")
    lines.append("| " + " | ".join(row) + " |")
  text = ("PSNR (dB) / SSIM, Y channel, 8-pixel border cropped. "
          "Columns marked *paper* are Ren et al. (2017)'s numbers, not ours.\n\n"
          + "\n".join(lines) + "\n\n" + note + "\n")
  with open(path, "w") as f:
    f.write(text)
  return text


def command_and_machine(command: str, machine: dict) -> str:
  """A table's lines that say what ran it, and where (as `results.json` records them)."""
  return (f"Command: `{command}`  \nMachine: {machine['platform']}, {machine['cpu_count']} "
          f"CPUs, jax {machine['jax']} on {', '.join(machine['devices'])}")


def write_figure(path: str, panels_by_scale: dict, *, crop, image_name: str) -> None:
  """Rows = scales, columns = ground truth then each variant; same crop everywhere."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  scales = sorted(panels_by_scale)
  cols = len(panels_by_scale[scales[0]])
  fig, axes = plt.subplots(len(scales), cols, figsize=(2.6 * cols, 2.9 * len(scales)),
                           squeeze=False)
  r0, c0, size = crop
  for i, s in enumerate(scales):
    for j, (title, rgb) in enumerate(panels_by_scale[s]):
      ax = axes[i, j]
      ax.imshow(rgb[r0:r0 + size, c0:c0 + size], interpolation="nearest")
      ax.set_title(f"x{s} {title}", fontsize=8)
      ax.set_xticks([])
      ax.set_yticks([])
  fig.suptitle(f"{image_name}: {size}x{size} crop at ({r0}, {c0}) of the 8-pixel-cropped image",
               fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def colourize(y_0_255, chroma_0_1):
  """RGB (0..1) from a Y estimate and the bicubic Cb/Cr (grayscale: Y only)."""
  import numpy as np

  from experiments.sr import imaging as sr_image
  y = np.clip(np.round(y_0_255), 0, 255) / 255.0
  if chroma_0_1 is None:
    return np.repeat(y[..., None], 3, -1)
  return sr_image.ycbcr_to_rgb(np.concatenate([y[..., None], chroma_0_1], -1))


def main(argv=None) -> int:
  from experiments.engine import reserve_cpu_threads
  reserve_cpu_threads()  # before JAX's CPU client exists (several CPU devices)
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--config", default="experiments/sr/configs/sr_srcnn_fast.py",
                 help="sr_srcnn_fast.py (ours: Adam, takes NUM_STEPS) or sr_srcnn.py (paper)")
  p.add_argument("--num_steps", type=positive_int(800), default=800,
                 help="steps per run (fast config only; the paper config has its own)")
  p.add_argument("--scales", default="3,4")
  p.add_argument("--variants", default="bicubic,srcnn,bn,dn")
  p.add_argument("--source", default="photographs", help="photographs | div2k | folder:/path")
  p.add_argument("--test_source", default=None, help="default: the source's test split")
  p.add_argument("--data_dir", default=None, help="TFDS data_dir for div2k")
  p.add_argument("--workdir", default="runs/sr")
  p.add_argument("--out", default="results/sr")
  p.add_argument("--figure_image", default="astronaut")
  p.add_argument("--crop", default="60,150,120", help="row,col,size within the cropped image")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="config override for every run (repeatable)")
  p.add_argument("--no_progress", action="store_true")
  args = p.parse_args(argv)

  import jax
  import numpy as np

  from experiments.config import apply_overrides, check_dir, check_writable_dir, parse_ints
  from experiments.engine import check_workdir, make_mesh
  from experiments.sr import data as sr
  from experiments.sr import imaging as sr_image
  from experiments.sr import model as srcnn
  from experiments.sr import task as sr_task

  # Every flag, config and workdir is checked before the first run starts.
  scales = parse_ints(args.scales, flag="--scales", example="3,4", choices=sr_image.SCALES)
  try:
    variants = [srcnn.canonical_variant(v) for v in args.variants.split(",")]
  except ValueError as e:
    raise ConfigError(f"--variants {args.variants!r}: {e} E.g. --variants bicubic,srcnn,bn,dn."
                      ) from None
  r0, c0, size = parse_ints(args.crop, flag="--crop", example="60,150,120", count=3, minimum=0)
  if size < 1:
    raise ConfigError(f"--crop {args.crop!r}: the size must be >= 1; e.g. --crop 60,150,120.")
  sr_task.check_source(args.source, flag="--source")
  sr_task.check_source(args.test_source, flag="--test_source")
  check_dir(args.data_dir, flag="--data_dir", example="~/tensorflow_datasets")
  check_writable_dir(args.workdir, flag="--workdir", example="runs/sr")
  check_writable_dir(args.out, flag="--out", example="results/sr")
  fast = "fast" in os.path.basename(args.config)
  test_source = args.test_source or args.source
  mesh = make_mesh()
  cfgs = {}
  for s in scales:
    for v in variants:
      cfg = _config(args.config, v, s, args.num_steps if fast else None, args.source)
      cfg.test_source = args.test_source
      cfg.data_dir = args.data_dir
      apply_overrides(cfg, args.set)
      sr_task.validate(cfg, mesh)
      if v != "bicubic":
        check_workdir(os.path.join(args.workdir, f"x{s}_{v}"), cfg)
      cfgs[(s, v)] = cfg
  test_sets = {s: sr.test_set(test_source, scale=s, data_dir=args.data_dir) for s in scales}
  b = srcnn.BORDER
  for s, test_images in test_sets.items():
    names = [im.name for im in test_images]
    fig_im = test_images[names.index(args.figure_image) if args.figure_image in names else 0]
    h, w = (n - 2 * b for n in fig_im.target.shape)
    if r0 + size > h or c0 + size > w:
      raise ConfigError(
          f"--crop {args.crop!r}: the crop ends at row {r0 + size}, column {c0 + size}, outside "
          f"the {h}x{w} figure image {fig_im.name!r} at x{s} (after the {b}-pixel border); e.g. "
          f"--crop 0,0,{min(h, w, 120)}.")

  os.makedirs(args.out, exist_ok=True)
  results, per_image, configs, timings, panels = {}, {}, {}, {}, {}
  for s in scales:
    test_images = test_sets[s]
    names = [im.name for im in test_images]
    fig_idx = names.index(args.figure_image) if args.figure_image in names else 0
    fig_im = test_images[fig_idx]
    chroma = None if fig_im.chroma is None else fig_im.chroma[b:-b, b:-b]
    panels[s] = [("ground truth", colourize(fig_im.target[b:-b, b:-b].astype(float), chroma))]
    results[f"x{s}"], per_image[f"x{s}"] = {}, {}
    for v in variants:
      cfg = cfgs[(s, v)]
      workdir = os.path.join(args.workdir, f"x{s}_{v}")
      t0 = time.time()
      result = sr_task.train_and_evaluate(cfg, workdir, progress=not args.no_progress,
                                          test_images=test_images)
      timings[f"x{s}_{v}"] = time.time() - t0
      m = result.eval_metrics
      results[f"x{s}"][v] = {"psnr": m["psnr"], "ssim": m["ssim"]}
      with open(os.path.join(workdir, "sr_eval.json")) as f:
        per_image[f"x{s}"][v] = json.load(f)["images"]
      configs[f"x{s}_{v}"] = cfg.to_dict()
      if v == "bicubic":
        estimate = fig_im.bicubic[b:-b, b:-b].astype(np.float64) * 255.0
      else:
        ts = result.train_state
        variables = jax.device_get({"params": ts.params, **ts.state})
        _, (estimate,) = sr_task.evaluate_images(sr_task.build_model(cfg), variables, [fig_im],
                                                 keep_outputs=True)
      score = next(r for r in per_image[f"x{s}"][v] if r["name"] == fig_im.name)
      panels[s].append((f"{_label(v, cfg)} {score['psnr']:.2f} dB", colourize(estimate, chroma)))
      print(json.dumps({"scale": s, "variant": v, **results[f"x{s}"][v],
                        "seconds": round(timings[f"x{s}_{v}"], 1)}), flush=True)

  trained = [c for k, c in configs.items() if not k.endswith("bicubic")]
  c = trained[0] if trained else {}
  opt = c.get("optimizer", {})
  schedule = "OUR fast schedule, not the paper's" if fast else "the paper's optimizer"
  note = (f"Ours: {len(per_image[f'x{scales[0]}'][variants[0]])} test images of `{test_source}`, "
          f"trained on `{args.source}`; {c.get('num_steps', '-')} steps of batch "
          f"{c.get('batch_size', '-')}, {opt.get('name', '-')} lr {opt.get('learning_rate', '-')}"
          f" ({schedule}). Paper: their training for up to 1e8 steps; Set14 / BSD200 test sets.")
  if args.set:
    note += f" Config overrides (every run): {', '.join(args.set)}."
  command = "python -m experiments.sr.reproduce " + " ".join(
      argv if argv is not None else sys.argv[1:])
  machine = {"platform": platform.platform(), "processor": platform.processor(),
             "cpu_count": os.cpu_count(), "jax": jax.__version__,
             "devices": [str(d) for d in jax.devices()]}
  note += "\n\n" + command_and_machine(command, machine)
  test_name = test_source.split("/")[-1] if test_source.startswith("folder:") else test_source
  table = write_table(os.path.join(args.out, "table.md"), results, scales, variants,
                      test_name=test_name, note=note, cfgs={v: cfgs[(scales[0], v)]
                                                            for v in variants})
  write_figure(os.path.join(args.out, "figure.png"), panels, crop=(r0, c0, size),
               image_name=args.figure_image if args.figure_image in names else names[0])
  with open(os.path.join(args.out, "results.json"), "w") as f:
    json.dump({"command": command, "machine": machine,
               "mean": results, "images": per_image, "seconds": timings, "configs": configs},
              f, indent=1, default=str)
  print(table)
  return 0


if __name__ == "__main__":
  from experiments.config import cli
  cli(main)
