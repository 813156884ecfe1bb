"""The weighted-fields study's tables and figures (results/PROTOCOL_WEIGHTED.md).

Pure functions of the study's result rows (one per job: ``variant``, ``seed``,
``test_accuracy``, ``train_accuracy``, ``converged``, and for the models with a channel pool
``pool_similarity``: ``{"rho", "p", "pairs"}``) and of each job's saved pools
(``pools.npz``), so that the report can be rebuilt from the committed results alone.
"""

from __future__ import annotations

import os

import numpy as np

from experiments import seed_stats
from experiments.cnn.reproduce import safe_name
from experiments.cnn.weighted_model import STUDY_VARIANTS, WEIGHTED_VARIANTS

BASELINES = ("DN*", "BN*")
POOL_MODELS = ("GDN", "Burg", "CS")
CHANCE = 0.15  # test accuracy at or below: the run fell to chance (10 classes)


def _by_variant(rows: dict) -> dict[str, list[dict]]:
  out: dict[str, list[dict]] = {v: [] for v in STUDY_VARIANTS}
  for row in rows.values():
    if row.get("variant") in out:
      out[row["variant"]].append(row)
  return {v: sorted(r, key=lambda row: row["seed"]) for v, r in out.items()}


def _accuracies(runs: list[dict]) -> list[float]:
  """Test accuracies of the finished runs; a failed (diverged) run counts as chance, 0.1."""
  return [0.1 if "failed" in r else float(r["test_accuracy"]) for r in runs]


def accuracy_table(rows: dict) -> str:
  """Markdown: test and train accuracy per model, mean ± std over seeds (n), with counts."""
  lines = ["| model | test accuracy | train accuracy | at chance | plateau check failed |",
           "|---|---|---|---|---|"]
  for variant, runs in _by_variant(rows).items():
    if not runs:
      lines.append(f"| {variant} | not run | | | |")
      continue
    test = seed_stats.summarize(_accuracies(runs))
    done = [r for r in runs if "failed" not in r]
    train = seed_stats.summarize([r["train_accuracy"] for r in done]) if done else None
    chance = sum(a <= CHANCE for a in _accuracies(runs))
    unconverged = sum(not r.get("converged", False) for r in done)
    lines.append(
        f"| {variant} | {seed_stats.format_mean(test)} (n={test['n']}) | "
        f"{seed_stats.format_mean(train, 3) if train else '-'} | {chance} | {unconverged} |")
  return "\n".join(lines)


def comparisons(rows: dict) -> list[dict]:
  """The protocol's family: each learned model against DN* and BN*, Welch, Holm-adjusted."""
  groups = {v: _accuracies(r) for v, r in _by_variant(rows).items()}
  out = []
  for model in WEIGHTED_VARIANTS:
    for baseline in BASELINES:
      a, b = groups[model], groups[baseline]
      if len(a) < 2 or len(b) < 2:
        continue
      test = seed_stats.welch(a, b)
      out.append({"model": model, "baseline": baseline,
                  "difference": float(np.mean(a) - np.mean(b)), "p": test["p"]})
  for row, p in zip(out, seed_stats.holm([r["p"] for r in out]), strict=True):
    row["p_holm"] = p
    row["verdict"] = "holds" if p < 0.05 else "not established"
  return out


def comparison_table(rows: dict) -> str:
  found = comparisons(rows)
  lines = [f"| comparison | difference of means | p (Welch) | p (Holm, family of {len(found)}) "
           "| |", "|---|---|---|---|---|"]
  for c in found:
    lines.append(f"| {c['model']} - {c['baseline']} | {c['difference']:+.4f} | {c['p']:.3f} | "
                 f"{c['p_holm']:.3f} | {c['verdict']} |")
  return "\n".join(lines)


def v1_verdict(rhos_and_ps: list[tuple[float, float]], seeds: int = 3) -> str:
  """The protocol's rule: "holds" if rho > 0 with p < 0.05 in every one of `seeds` seeds,
  "does not hold" if rho < 0 with p < 0.05 in every one, else "not established"."""
  if len(rhos_and_ps) < seeds:
    return "not established"
  if all(r > 0 and p < 0.05 for r, p in rhos_and_ps):
    return "holds"
  if all(r < 0 and p < 0.05 for r, p in rhos_and_ps):
    return "does not hold"
  return "not established"


def v1_table(rows: dict) -> str:
  """Markdown: Spearman's rho of first-layer pool weight against filter similarity."""
  lines = ["| model | rho per seed (p) | verdict |", "|---|---|---|"]
  for variant, runs in _by_variant(rows).items():
    if variant not in POOL_MODELS:
      continue
    found = [(r["pool_similarity"]["rho"], r["pool_similarity"]["p"])
             for r in runs if "pool_similarity" in r]
    cells = ", ".join(f"{rho:+.2f} ({p:.2g})" for rho, p in found) or "not run"
    lines.append(f"| {variant} | {cells} | {v1_verdict(found)} |")
  return "\n".join(lines)


def plot_pools(pools_npz: str, path: str, title: str) -> None:
  """One figure of a run's learned pools (the arrays of `weighted_model.learned_pools`)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  data = np.load(pools_npz)
  images = [k for k in sorted(data.files) if data[k].ndim == 2 and k != "conv_0"]
  if not images:
    return
  fig, axes = plt.subplots(1, len(images), figsize=(3.2 * len(images), 3.2), squeeze=False)
  for ax, key in zip(axes[0], images, strict=True):
    ax.imshow(data[key], cmap="magma")
    ax.set(title=key.replace("/", " "), xticks=[], yticks=[])
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


def converged_reference(results_dir: str) -> str:
  """BN*'s and DN*'s test accuracy in the converged study (`results/cnn/converged`, beside
  `results_dir`), mean ± std over its seeds 0-2 (this study's; its table added 3-5 later),
  or where it is missing."""
  from experiments.cnn.protocol import SEEDS
  from experiments.engine.study import load_results
  converged = os.path.join(os.path.dirname(os.path.abspath(results_dir)), "converged")
  rows = [r for r in load_results(converged).values()
          if r.get("plan") == "table" and "failed" not in r and r.get("seed") in SEEDS]
  parts = []
  for variant in BASELINES:
    accuracy = [r["test_accuracy"] for r in rows if r.get("variant") == variant]
    parts.append(f"{variant} {seed_stats.format_mean(seed_stats.summarize(accuracy))} "
                 f"(n={len(accuracy)})" if accuracy else f"{variant} not found")
  return ", ".join(parts) + " (results/cnn/converged)"


def report(rows: dict, results_dir: str) -> str:
  """The study's markdown (written to results_dir/summary.md by the caller) and figures."""
  for variant in WEIGHTED_VARIANTS:
    npz = os.path.join(results_dir, f"weighted-{safe_name(variant)}-s0", "pools.npz")
    if os.path.exists(npz):
      plot_pools(npz, os.path.join(results_dir, f"pools_{safe_name(variant)}.png"),
                 f"{variant}, seed 0: learned pools")
  machines = sorted({r["machine"] for r in rows.values() if r.get("machine")})
  steps = sorted({r["num_steps"] for r in rows.values() if r.get("num_steps")})
  examples = sorted({r["max_train_examples"] for r in rows.values()
                     if r.get("max_train_examples")})
  return "\n\n".join([
      "# Weighted and learned fields: the study's tables",
      "Runs: `python -m experiments.cnn.weighted_study run` (resumable)  \n"
      "Report: `python -m experiments.cnn.weighted_study report`  \n"
      f"Machine: {'; '.join(machines) or 'n/a'}  \n"
      f"Training: {', '.join(map(str, steps)) or 'n/a'} steps on "
      f"{', '.join(f'{n:,}' for n in examples) or 'all'} Fashion-MNIST training images",
      "Protocol: results/PROTOCOL_WEIGHTED.md. Test accuracy on the 10,000 Fashion-MNIST test "
      "images after the last step; mean ± std over seeds (n). BN* and DN* are re-run here; the "
      "converged study's, with the same seeds and recipe, for reference only (the protocol): "
      f"{converged_reference(results_dir)}.",
      accuracy_table(rows), "## Each learned pool against DN* and BN*", comparison_table(rows),
      "## Do the first layer's pools prefer similar filters? (Spearman's rho)", v1_table(rows)])
