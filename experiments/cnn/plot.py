"""Learning-curve plots from run folders (metrics.jsonl written by the engine)."""

from __future__ import annotations

from collections.abc import Mapping

from experiments.engine import read_metrics


def plot_learning_curves(workdirs: Mapping[str, str], path: str, *, title: str = "") -> None:
  """Saves a PNG: training cross entropy (left) and test accuracy (right) per run.

  Args:
    workdirs: label -> run folder.
    path: the PNG to write.
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
  for label, wd in workdirs.items():
    train = read_metrics(wd, "train")
    ev = read_metrics(wd, "eval")
    if train:
      key = "cross_entropy" if "cross_entropy" in train[0] else "loss"
      ax_loss.plot([r["step"] for r in train], [r[key] for r in train], label=label)
    if ev:
      ax_acc.plot([r["step"] for r in ev], [r["accuracy"] for r in ev], marker="o", label=label)
  ax_loss.set(xlabel="step", ylabel="training cross entropy", yscale="log")
  ax_acc.set(xlabel="step", ylabel="test accuracy")
  for ax in (ax_loss, ax_acc):
    ax.grid(alpha=0.3)
    ax.legend()
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
