r"""The super-resolution study of results/PROTOCOL_SR.md, through the one study runner.

  python -m experiments.sr.study run                 # x3 (then x4), resumable
  python -m experiments.sr.study run --plans x3 --jobs 'x3-*-s0'
  python -m experiments.sr.study status              # done / running / to run
  python -m experiments.sr.study report              # results/sr/study/table.md + figure.png

SRCNN 9-5-5 with no normalizer, BN and DN* (the paper's networks and
hyperparameters, `experiments/sr/configs/sr_study.py`: our Adam schedule, chosen
on the validation photographs), 3 seeds each (6 at x4: the plan `x4_more`),
trained on every training photograph and scored on the five held-out test
photographs (PSNR and SSIM on the 8-pixel-cropped Y channel of each whole image,
the mean over the images).
The model scored is the one after the last step (nothing is selected on the
test photographs). Bicubic is deterministic and is scored by `report`.

Each job trains in ``<runs>/<job>`` (checkpoints; rerunning resumes) and writes
``<results>/<job>/``: ``result.json`` (written by the runner from `run_job`'s
row), ``metrics.jsonl``, ``config.json``, ``sr_eval.json`` (per-image scores)
and ``crop.png`` (the figure's crop of its output); never checkpoints.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from experiments.engine import study as runner
from experiments.sr.configs import sr_study

VARIANTS = ("srcnn", "bn", "dn")
SEEDS = (0, 1, 2)
SCALES = (3, 4)  # x4 runs after x3, as the budget allows (the protocol)
# The extension of 2026-12-08 (PROTOCOL_SR.md): seeds 3-5 at x4, the scale whose DN* claim the
# first three seeds left open; run as the plan `x4_more`, seed by seed.
MORE_SEEDS = {4: (3, 4, 5)}
TEST_SOURCE = "photographs"
FIGURE_IMAGE = "astronaut"
FIGURE_CROP = (60, 150, 120)  # row, column, size within the 8-pixel-cropped image
LEVEL = 0.05
MARGIN_DB = 0.2  # "DN* matches SRCNN": DN* is not more than this below SRCNN
# The protocol's claims: (A, B, test, margin in dB, the claim; {paper}: the paper's A - B).
#   greater: A > B + margin; less: A < B - margin; not_worse: A > B - margin.
CLAIMS = (
    ("srcnn", "bicubic", "greater", 0.0, "SRCNN beats bicubic (paper: {paper} dB)"),
    ("bn", "srcnn", "less", 0.0, "BN is worse than SRCNN (paper: {paper} dB)"),
    ("dn", "srcnn", "not_worse", MARGIN_DB,
     f"DN* matches or beats SRCNN, i.e. is not more than {MARGIN_DB} dB below it "
     "(paper: {paper} dB)"),
)
# The paper's A - B of each claim at each scale, on Set14 and BSD200 (REFERENCE.md, section 5).
PAPER_DIFFS = {3: {"srcnn": "+1.23 to +1.81", "bn": "-6.53 to -7.04", "dn": "-0.01 to +0.02"},
               4: {"srcnn": "+0.95 to +1.52", "bn": "-5.34 to -6.13", "dn": "+0.09 to +0.11"}}


@dataclasses.dataclass(frozen=True)
class Job:
  """One training run: a variant at a scale with a seed."""
  scale: int
  variant: str
  seed: int
  num_steps: int = sr_study.NUM_STEPS

  @property
  def name(self) -> str:
    return f"x{self.scale}-{self.variant}-s{self.seed}"


def plan(scale: int, seeds: Sequence[int] = SEEDS, *, suffix: str = "", note: str = ""
         ) -> runner.Plan:
  """The jobs at `scale` with `seeds`, seed by seed (so a cut-short study has balanced seeds);
  the plan is named ``x<scale><suffix>``."""
  return runner.Plan(
      name=f"x{scale}{suffix}", jobs=tuple(Job(scale, v, s) for s in seeds for v in VARIANTS),
      about=f"SRCNN, BN and DN* at x{scale}, seeds {', '.join(map(str, seeds))}{note}")


def job_config(job: Job, overrides: Sequence[str] = ()):
  """The sr_study config of `job`, with `overrides` (`--set` syntax; tests shrink it)."""
  from experiments.config import apply_overrides, load_config
  from experiments.sr import model as srcnn
  cfg = load_config(f"experiments/sr/configs/sr_study.py:"
                    f"{srcnn.LABELS[job.variant]},{job.scale},{job.seed},{job.num_steps}")
  cfg.source = "photographs"
  cfg.test_source = TEST_SOURCE
  apply_overrides(cfg, overrides)
  return cfg


def _figure_rgb(test_image, estimate_center) -> np.ndarray:
  """uint8 RGB of the figure crop of an (H - 16) x (W - 16) Y estimate, coloured with the
  bicubic chroma."""
  from experiments.sr import model as srcnn
  from experiments.sr.reproduce import colourize
  b = srcnn.BORDER
  r0, c0, size = FIGURE_CROP
  chroma = None if test_image.chroma is None else test_image.chroma[b:-b, b:-b]
  rgb = colourize(estimate_center, chroma)[r0:r0 + size, c0:c0 + size]
  return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def _save_png(path: str, rgb: np.ndarray) -> None:
  import PIL.Image
  PIL.Image.fromarray(rgb).save(path)


def run_job(job: Job, runs_dir: str, results_dir: str, *, overrides: Sequence[str] = ()
            ) -> dict[str, Any]:
  """Trains `job` (resuming), scores the test photographs and writes its results folder."""
  import jax

  from experiments import engine
  from experiments.sr import task as sr_task
  cfg = job_config(job, overrides)
  workdir = os.path.join(runs_dir, job.name)
  out = os.path.join(results_dir, job.name)
  test_images = sr_task.load_test_images(cfg)
  t0 = time.time()
  result = sr_task.train_and_evaluate(cfg, workdir, progress=False, test_images=test_images)
  seconds = time.time() - t0
  ts = result.train_state
  variables = jax.device_get({"params": ts.params, **ts.state})
  figure_image = next(im for im in test_images if im.name == FIGURE_IMAGE)
  rows, (estimate,) = sr_task.evaluate_images(sr_task.build_model(cfg), variables,
                                              [figure_image], keep_outputs=True)
  os.makedirs(out, exist_ok=True)
  _save_png(os.path.join(out, "crop.png"), _figure_rgb(figure_image, estimate))
  for name in ("metrics.jsonl", "config.json", "sr_eval.json"):
    shutil.copyfile(os.path.join(workdir, name), os.path.join(out, name))
  train = engine.read_metrics(workdir, "train")
  speeds = [r["examples_per_second"] for r in train if "examples_per_second" in r][1:]
  last = [r for r in train if r["step"] > 0.9 * job.num_steps]
  return {
      **runner.job_fields(job), "psnr": float(result.eval_metrics["psnr"]),
      "ssim": float(result.eval_metrics["ssim"]),
      "images": _eval_images(out),
      "patch_psnr_curve": [{"step": r["step"], "psnr": r["psnr"]}
                           for r in engine.read_metrics(workdir, "eval") if "psnr" in r],
      "final_mse_half": float(np.mean([r["mse_half"] for r in last])) if last else math.nan,
      "final_penalty": float(np.mean([r["penalty"] for r in last])) if last else math.nan,
      "examples_per_second": float(np.median(speeds)) if speeds else math.nan,
      "seconds_this_process": seconds, "start_step": int(result.start_step),
      "figure_image_psnr": float(rows[0]["psnr"]), "machine": runner.machine_description(),
  }


def _eval_images(out: str) -> list[dict[str, Any]]:
  import json
  with open(os.path.join(out, "sr_eval.json")) as f:
    return json.load(f)["images"]


def summary(row: dict[str, Any]) -> str:
  return f"PSNR {row['psnr']:.3f} dB, SSIM {row['ssim']:.4f}"


# ---------------------------------------------------------------- statistics


def one_sided_p(a: Sequence[float], b: Sequence[float], *, alternative: str,
                shift: float = 0.0, constant_b: bool = False) -> float:
  """Welch's one-sided p-value for mean(a) - mean(b) > shift ("greater") or < shift ("less").

  From `seed_stats.welch`'s two-sided test of (a - shift) against b. With
  `constant_b` (bicubic, deterministic) Welch's test is the one-sample t-test of a
  against b's value, computed as such. NaN when a group of seeds has fewer than 2.
  """
  from scipy import stats

  from experiments import seed_stats
  a, b = np.asarray(a, np.float64) - shift, np.asarray(b, np.float64)
  if a.size < 2 or b.size < (1 if constant_b else 2):
    return math.nan
  if constant_b:
    return float(stats.ttest_1samp(a, b[0], alternative=alternative).pvalue)
  w = seed_stats.welch(a, b)
  if math.isnan(w["t"]):  # both groups without spread: the sign decides
    d = w["diff"] if alternative == "greater" else -w["diff"]
    return 0.0 if d > 0 else 1.0
  toward = w["t"] > 0 if alternative == "greater" else w["t"] < 0
  return w["p"] / 2 if toward else 1 - w["p"] / 2


def interval(a: Sequence[float], b: Sequence[float], *, constant_b: bool = False
             ) -> tuple[float, float]:
  """The 95% Welch confidence interval of mean(a) - mean(b) (the one-sample interval with
  `constant_b`); NaNs when a group of seeds has fewer than 2."""
  from scipy import stats
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.size < 2 or b.size < (1 if constant_b else 2):
    return (math.nan, math.nan)
  if constant_b:
    ci = stats.ttest_1samp(a, b[0]).confidence_interval(0.95)  # of mean(a)
    return float(ci.low - b[0]), float(ci.high - b[0])
  ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
  return float(ci.low), float(ci.high)


def claim_tests(values: dict[str, list[float]]) -> list[dict[str, Any]]:
  """The protocol's verdict on each claim of `CLAIMS` from PSNR `values` by variant
  (`values["bicubic"]`: bicubic's one deterministic value, a constant).

  For each claim, one one-sided Welch test for "holds" and one for "does not
  hold" (the opposite side of the same margin); each family of three is
  Holm-adjusted. holds: the "holds" test's adjusted p < LEVEL; does not hold:
  the other one's; else not established (also when a side has < 2 seeds).
  """
  from experiments import seed_stats
  rows = []
  for a_name, b_name, test, margin, text in CLAIMS:
    a, b = values.get(a_name, []), values.get(b_name, [])
    kw = {"constant_b": b_name == "bicubic"}
    if test == "greater":
      p_holds = one_sided_p(a, b, alternative="greater", shift=margin, **kw)
      p_fails = one_sided_p(a, b, alternative="less", shift=margin, **kw)
    elif test == "less":
      p_holds = one_sided_p(a, b, alternative="less", shift=-margin, **kw)
      p_fails = one_sided_p(a, b, alternative="greater", shift=-margin, **kw)
    else:  # not_worse
      p_holds = one_sided_p(a, b, alternative="greater", shift=-margin, **kw)
      p_fails = one_sided_p(a, b, alternative="less", shift=-margin, **kw)
    diff = float(np.mean(a) - np.mean(b)) if a and b else math.nan
    rows.append({"a": a_name, "b": b_name, "claim": text, "diff": diff,
                 "ci95": interval(a, b, **kw), "n": (len(a), len(b)),
                 "p_holds": p_holds, "p_fails": p_fails})
  for key in ("p_holds", "p_fails"):
    for row, adjusted in zip(rows, seed_stats.holm([r[key] for r in rows]), strict=True):
      row[key + "_holm"] = adjusted
  for row in rows:
    if row["p_holds_holm"] < LEVEL:
      row["verdict"] = "holds"
    elif row["p_fails_holm"] < LEVEL:
      row["verdict"] = "does not hold"
    else:
      row["verdict"] = "not established"
  return rows


# ---------------------------------------------------------------- report


def bicubic_reference(scale: int) -> dict[str, Any]:
  """Bicubic's per-image and mean PSNR/SSIM on the test photographs (deterministic)."""
  from experiments.sr import data as sr
  from experiments.sr import task as sr_task
  rows = sr_task.bicubic_scores(sr.test_set(TEST_SOURCE, scale=scale))
  return {"scale": scale, **sr_task.mean_scores(rows), "images": rows}


def report_seeds(results: dict[str, dict], scale: int) -> tuple[tuple[int, ...], list[str]]:
  """The seeds `scale`'s tests use (PROTOCOL_SR.md's extension of 2026-12-08): seeds 0-2 and
  each of `MORE_SEEDS` whose variants have all finished; and the runs of the others, left out."""
  later = MORE_SEEDS.get(scale, ())
  done = [s for s in later if all(Job(scale, v, s).name in results for v in VARIANTS)]
  left_out = [Job(scale, v, s).name for s in later if s not in done for v in VARIANTS
              if Job(scale, v, s).name in results]
  return SEEDS + tuple(done), left_out


def _values(results: dict[str, dict], scale: int, variant: str, key: str,
            seeds: Sequence[int] = SEEDS) -> list[float]:
  rows = [results.get(Job(scale, variant, s).name) for s in seeds]
  return [float(r[key]) for r in rows if r is not None and "failed" not in r]


def _seed_list(seeds: Sequence[int]) -> str:
  return ", ".join(map(str, seeds)) if len(seeds) < 3 or list(seeds) != list(
      range(seeds[0], seeds[-1] + 1)) else f"{seeds[0]}-{seeds[-1]}"


def _mean_std(values: Sequence[float], digits: int) -> str:
  from experiments import seed_stats
  if not values:
    return "not run"
  return seed_stats.format_mean(seed_stats.summarize(values), digits)


def _p(p: float) -> str:
  return "-" if math.isnan(p) else f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def render(results: dict[str, dict], bicubic: dict[int, dict]) -> str:
  """table.md: per scale, the mean ± std table, the claims' tests and the per-image means."""
  from experiments.sr import model as srcnn
  from experiments.sr.paper import PAPER, PAPER_SETS
  done = [r for r in results.values() if "failed" not in r]
  failed = sorted(n for n, r in results.items() if "failed" in r)
  cfg = job_config(Job(SCALES[0], VARIANTS[0], SEEDS[0]))
  opt = cfg.optimizer
  lines = [
      "# Super-resolution study (results/PROTOCOL_SR.md)", "",
      "Runs: `python -m experiments.sr.study run` (resumable; single-threaded workers, one per "
      "core)  ", "Report: `python -m experiments.sr.study report`  ",
      f"Machine: {done[0]['machine'] if done else '-'}  ",
      f"Schedule (ours): {opt.name} lr {opt.learning_rate:g} x{opt.decay:g} at step "
      f"{opt.boundaries[0]:,} of {cfg.num_steps:,}, batch {cfg.batch_size} of "
      f"{cfg.patch_size}x{cfg.patch_size} patches, rotations/flips "
      f"{'on' if cfg.augment else 'off'}; the paper's networks, init, "
      "loss and normalizer hyperparameters.  ",
      f"Data: trained on every training photograph, scored on the {TEST_SOURCE} test split "
      "(astronaut, chelsea, coffee, camera, flower), whole images, Y channel, 8 pixels cropped.  ",
      f"Jobs finished: {len(done)}.",
      *([runner.failed_note(failed, "experiments.sr.study")] if failed else []),
      "", "PSNR (dB) and SSIM of the model after the last step, mean ± std over seeds, and each "
      "seed's PSNR. The paper's columns are its numbers on Set14 and BSD200 (its "
      "data and 1e8-step schedule), for orientation only: our absolute dB are not comparable.",
      ""]
  for scale in SCALES:
    if not any(r.get("scale") == scale for r in results.values()):
      lines += [f"## x{scale}", "", "Not run.", ""]
      continue
    ref = bicubic[scale]
    seeds, left_out = report_seeds(results, scale)
    head = "| model | PSNR | SSIM | seeds (PSNR) | " + " | ".join(
        f"paper {ps} x{scale}" for ps in PAPER_SETS) + " |"
    lines += [f"## x{scale}", ""]
    if scale in MORE_SEEDS:
      lines += [f"Seeds used: {_seed_list(seeds)} (seeds 0-2, and each of seeds "
                f"{_seed_list(MORE_SEEDS[scale])} whose three models have all finished: "
                "PROTOCOL_SR.md's extension of 2026-12-08). Runs left out: "
                f"{', '.join(left_out) or 'none'}.", ""]
    lines += [head, "|---" * (4 + len(PAPER_SETS)) + "|"]
    paper_cols = lambda v, s=scale: " | ".join(  # noqa: E731
        f"{PAPER[v][(ps, s)][0]:.2f} / {PAPER[v][(ps, s)][1]:.4f}" for ps in PAPER_SETS)
    lines.append(f"| Bicubic | {ref['psnr']:.3f} | {ref['ssim']:.4f} | (deterministic) | "
                 f"{paper_cols('bicubic')} |")
    for v in VARIANTS:
      psnr, ssim = (_values(results, scale, v, k, seeds) for k in ("psnr", "ssim"))
      seed_cells = ", ".join(
          f"s{s} {results[Job(scale, v, s).name]['psnr']:.2f}" for s in seeds
          if Job(scale, v, s).name in results and "failed" not in results[Job(scale, v, s).name])
      lines.append(f"| {srcnn.LABELS[v]} | {_mean_std(psnr, 3)} | {_mean_std(ssim, 4)} | "
                   f"{seed_cells or '-'} | {paper_cols(v)} |")
    tests, ssim_values = _claims(results, scale, ref, seeds)
    first = {r["a"]: r for r in _claims(results, scale, ref, SEEDS)[0]} if seeds != SEEDS else {}
    lines += ["", f"**The protocol's claims at x{scale}** (PSNR; one-sided Welch tests at 0.05, "
              "Holm-adjusted over the three claims; bicubic is a constant, so its test is a "
              "one-sample t-test of the seeds. A one-sided test at 0.05 matches the 90% "
              "interval, so a claim can hold while the 95% interval shown touches its "
              "boundary" + ("; beside, the same tests on seeds 0-2, as first reported" if first
                            else "") + "):", "",
              "| claim | A - B (dB) | 95% CI | p holds (Holm) | p does not hold (Holm) | "
              "SSIM A - B | n (A, B) | verdict |" + (" seeds 0-2 |" if first else ""),
              "|---" * (8 + bool(first)) + "|"]
    for row in tests:
      sa, sb = ssim_values[row["a"]], ssim_values[row["b"]]
      ssim_diff = f"{np.mean(sa) - np.mean(sb):+.4f}" if sa and sb else "-"
      n_b = "-" if row["b"] == "bicubic" else row["n"][1]
      lo, hi = row["ci95"]
      ci = "-" if math.isnan(lo) else f"[{lo:+.3f}, {hi:+.3f}]"
      diff = "-" if math.isnan(row["diff"]) else f"{row['diff']:+.3f}"
      claim = row["claim"].format(paper=PAPER_DIFFS[scale][row["a"]])
      beside = ""
      if first:
        f = first[row["a"]]
        beside = (f" {f['diff']:+.3f}, {f['verdict']} (holds {_p(f['p_holds_holm'])}, does not "
                  f"hold {_p(f['p_fails_holm'])}) |")
      lines.append(f"| {claim} | {diff} | {ci} | {_p(row['p_holds_holm'])} | "
                   f"{_p(row['p_fails_holm'])} | {ssim_diff} | {row['n'][0]}, {n_b} | "
                   f"**{row['verdict']}** |{beside}")
    lines += ["", f"Per test photograph at x{scale} (PSNR, mean over the seeds used):", "",
              "| image | Bicubic | " + " | ".join(srcnn.LABELS[v] for v in VARIANTS) + " |",
              "|---" * (2 + len(VARIANTS)) + "|"]
    for im in ref["images"]:
      cells = []
      for v in VARIANTS:
        vals = [r["psnr"] for s in seeds
                for r in results.get(Job(scale, v, s).name, {}).get("images", [])
                if r["name"] == im["name"]]
        cells.append(f"{np.mean(vals):.2f}" if vals else "-")
      lines.append(f"| {im['name']} | {im['psnr']:.2f} | " + " | ".join(cells) + " |")
    lines.append("")
  figures = ", ".join(f"[`figure_x{s}.png`](figure_x{s}.png)" for s in SCALES
                      if any(r.get("scale") == s for r in results.values()))
  lines += [f"Figures: {figures or '-'} (the same crop of the held-out {FIGURE_IMAGE} photograph: "
            "ground truth, bicubic, and seed 0 of SRCNN, BN and DN*).", ""]
  return "\n".join(lines)


def _claims(results: dict[str, dict], scale: int, bicubic: dict, seeds: Sequence[int]
            ) -> tuple[list[dict[str, Any]], dict[str, list[float]]]:
  """`claim_tests` of `scale` on `seeds`, and the SSIM of each model (bicubic's: a constant)."""
  psnr, ssim = ({v: _values(results, scale, v, key, seeds) for v in VARIANTS}
                for key in ("psnr", "ssim"))
  psnr["bicubic"], ssim["bicubic"] = [bicubic["psnr"]], [bicubic["ssim"]]  # one-sample tests
  return claim_tests(psnr), ssim


def write_figure(results_dir: str, results: dict[str, dict], scale: int, bicubic: dict) -> None:
  """Ground truth, bicubic and seed 0 of every variant: the same crop of FIGURE_IMAGE."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import PIL.Image

  from experiments.sr import data as sr
  from experiments.sr import model as srcnn
  image = next(im for im in sr.test_set(TEST_SOURCE, scale=scale) if im.name == FIGURE_IMAGE)
  b = srcnn.BORDER
  ref = next(r for r in bicubic["images"] if r["name"] == FIGURE_IMAGE)
  panels = [("ground truth", _figure_rgb(image, image.target[b:-b, b:-b].astype(np.float64))),
            (f"Bicubic {ref['psnr']:.2f} dB",
             _figure_rgb(image, image.bicubic[b:-b, b:-b].astype(np.float64) * 255.0))]
  for v in VARIANTS:
    job = Job(scale, v, SEEDS[0])
    path = os.path.join(results_dir, job.name, "crop.png")
    row = results.get(job.name)
    if row is None or "failed" in row or not os.path.exists(path):
      continue
    with PIL.Image.open(path) as f:
      crop = np.asarray(f.convert("RGB"))
    panels.append((f"{srcnn.LABELS[v]} s{SEEDS[0]} {row['figure_image_psnr']:.2f} dB", crop))
  fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.0), squeeze=False)
  for ax, (title, rgb) in zip(axes[0], panels, strict=True):
    ax.imshow(rgb, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
  r0, c0, size = FIGURE_CROP
  fig.suptitle(f"x{scale}, held-out {FIGURE_IMAGE}: {size}x{size} crop at ({r0}, {c0}); "
               "PSNR of the whole image", fontsize=9)
  fig.tight_layout()
  fig.savefig(os.path.join(results_dir, f"figure_x{scale}.png"), dpi=110)
  plt.close(fig)


def report(results_dir: str) -> str:
  """Writes table.md, bicubic_x<s>.json and figure_x<s>.png; returns the table."""
  from experiments.engine.workers import write_json
  results = runner.load_results(results_dir)
  os.makedirs(results_dir, exist_ok=True)
  bicubic = {}
  for scale in SCALES:
    if any(r.get("scale") == scale for r in results.values()):
      bicubic[scale] = bicubic_reference(scale)
      write_json(os.path.join(results_dir, f"bicubic_x{scale}.json"), bicubic[scale])
      write_figure(results_dir, results, scale, bicubic[scale])
  text = render(results, bicubic)
  with open(os.path.join(results_dir, "table.md"), "w") as f:
    f.write(text)
  return text


STUDY = runner.Study(
    name="sr", module="experiments.sr.study",
    plans=(*(plan(s) for s in SCALES),
           *(plan(s, seeds, suffix="_more", note=" (PROTOCOL_SR.md, 2026-12-08)")
             for s, seeds in MORE_SEEDS.items())),
    run_job=run_job, report=report, summary=summary, runs_dir="runs/sr_study",
    results_dir="results/sr/study", protocol="results/PROTOCOL_SR.md")


if __name__ == "__main__":
  runner.cli(STUDY)
