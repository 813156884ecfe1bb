# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 3. Train and compare: baseline, BN, LN, DN and DN* on Fashion-MNIST
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/divnorm-org/divnorm/blob/main/notebooks/03_train_compare.ipynb)
#
# The paper's CIFAR CNN (three 5x5 convolutions with a normalizer between each and its ReLU,
# then two dense layers; Ren et al. 2017, Section 5.1) with five of its variants: no
# normalizer, batch norm, layer norm, divisive norm, and DN* (divisive norm with the smoothing
# term $\sigma$ and the L1 penalty). Everything below is the experiments' own code
# (`experiments/cnn/`: the model, its config with the paper's recipe, the task, and the shared
# training engine); only the schedule is short, 100 steps of batch 100 on the full
# Fashion-MNIST, and the plots are drawn here. `python -m experiments.main compare` runs the
# same comparison longer from the command line.

# %%
# Setup. In Colab this clones the repository (the experiments are not in the wheel),
# installs it, and fetches Fashion-MNIST; elsewhere run it from a clone where
# `pip install -e ".[experiments]"` has run, with Debian's dataset-fashion-mnist installed.
import os
import subprocess
import sys

if "google.colab" in sys.modules:
  repo = "/content/divnorm"  # absolute: a re-run of this cell starts inside the clone
  if not os.path.isdir(os.path.join(repo, ".git")):
    subprocess.run(["git", "clone", "-q", "--depth", "1",
                    "https://github.com/divnorm-org/divnorm", repo], check=True)
  subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", repo + "[experiments]"],
                 check=True)
  subprocess.run(["apt-get", "update", "-qq"], check=True)
  subprocess.run(["apt-get", "install", "-y", "-qq", "dataset-fashion-mnist"], check=True)
  os.chdir(repo)
  if repo not in sys.path:
    sys.path.insert(0, repo)
elif os.path.isdir(os.path.join("..", "experiments")):  # in a clone's notebooks/ folder
  sys.path.insert(0, os.path.abspath(".."))  # the experiments are not in the wheel

# %% tags=["parameters"]
# Parameters. DIVNORM_NOTEBOOK_QUICK=1 (the test suite) runs one variant for a few steps on
# a subset (compiling each variant's step is most of a quick run's time).
QUICK = os.environ.get("DIVNORM_NOTEBOOK_QUICK") == "1"
VARIANTS = ("DN*",) if QUICK else ("baseline", "BN", "LN", "DN", "DN*")
NUM_STEPS = 3 if QUICK else 100                 # steps of batch 100 per variant
MAX_TRAIN_EXAMPLES = 500 if QUICK else None     # None: all 60,000
MAX_EVAL_EXAMPLES = 100 if QUICK else 1000      # of the 10,000 test images
DATA_DIR = None                                 # None: /usr/share/datasets/fashion-mnist

# %%
import time

import matplotlib.pyplot as plt

from experiments.cnn import model as cnn_model
from experiments.cnn import task as cnn_task
from experiments.cnn.configs import cnn_short

plt.rcParams["figure.dpi"] = 72

# %% [markdown]
# ## The configs
#
# One config per variant from `experiments/cnn/configs/cnn_short.py`: the paper's CIFAR-10
# recipe (inits, momentum 0.9, learning rate 1e-3, batch 100, mean-image subtraction, the
# paper's $\sigma$ and L1 $\alpha$ per variant) on a short schedule of our own: the learning
# rate divided by 10 at 60% and 85% of the steps (the paper's normalized models drop at 30k
# and 50k of 80k). The normalizer settings come from the model file:

# %%
def config(variant):
  cfg = cnn_short.get_config(f"{variant},fashion_mnist,{NUM_STEPS}")
  cfg.max_train_examples = MAX_TRAIN_EXAMPLES
  cfg.max_eval_examples = MAX_EVAL_EXAMPLES
  cfg.eval_every = max(1, NUM_STEPS // 5)
  cfg.log_every = max(1, NUM_STEPS // 30)
  if DATA_DIR:
    cfg.data_dir = DATA_DIR
  return cfg


for variant in VARIANTS:
  spec = cnn_model.variant_spec(variant)
  print(f"{variant:9s} normalizer={spec.kind:9s} sigma={spec.sigma:<5g} L1 alpha={spec.l1_alpha:<6g}"
        f" affine={spec.affine}")

# %% [markdown]
# ## Training
#
# The data is read once (the IDX files of Fashion-MNIST) and shared by the runs; each run is
# `experiments.cnn.task.train_and_evaluate` with no work folder (no checkpoints or metric
# files), which returns the engine's history of training and evaluation rows.

# %%
data = cnn_task.load_data(config(VARIANTS[0]))
print(f"train {data[0].images.shape}, test {data[1].images.shape}")

results = {}
for variant in VARIANTS:
  start = time.perf_counter()
  results[variant] = cnn_task.train_and_evaluate(config(variant), None, progress=False, data=data)
  print(f"{variant:9s} test accuracy {results[variant].eval_metrics['accuracy']:.4f}  "
        f"({time.perf_counter() - start:.0f} s)")

# %% [markdown]
# ## Learning curves

# %%
def rows(result, kind):
  return [r for r in result.history if r["kind"] == kind]


fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
for variant, result in results.items():
  train = rows(result, "train")
  ax_loss.plot([r["step"] for r in train], [r["cross_entropy"] for r in train], label=variant)
  evals = rows(result, "eval")
  ax_acc.plot([r["step"] for r in evals], [r["accuracy"] for r in evals], "o-", label=variant)
ax_loss.set(xlabel="step", ylabel="training cross entropy", yscale="log")
ax_acc.set(xlabel="step", ylabel=f"test accuracy ({MAX_EVAL_EXAMPLES} images)")
for ax in (ax_loss, ax_acc):
  ax.grid(alpha=0.3)
  ax.legend()
fig.tight_layout()
plt.show()

# %%
print(f"{'variant':10s}{'test accuracy':>15s}{'test cross entropy':>20s}{'train CE (last)':>17s}")
for variant, result in results.items():
  last = rows(result, "train")[-1]
  print(f"{variant:10s}{result.eval_metrics['accuracy']:15.4f}"
        f"{result.eval_metrics['cross_entropy']:20.4f}{last['cross_entropy']:17.4f}")

# %% [markdown]
# After 100 steps (a sixth of an epoch) this measures early training only, one seed:
# read gaps of a point or less as noise. In this project's longer runs
# ([results/cnn](https://github.com/divnorm-org/divnorm/blob/main/results/cnn/README.md): 400 steps) batch norm and the baseline lead at this
# point, layer norm trails, and DN* and DN sit between them, ahead of LN, as in the paper; the
# paper's full schedule (50k-80k steps on CIFAR) is where $\sigma$ and the L1 penalty pay off.
#
# Next: [4. The L1 penalty](04_l1_penalty.ipynb).
