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
# # 4. The L1 penalty: first-layer activations before normalization
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/divnorm-org/divnorm/blob/main/notebooks/04_l1_penalty.ipynb)
#
# The paper's starred variants (BN*, LN*, DN*) add the smoothing term $\sigma$ and an L1
# penalty $\alpha\,\mathrm{mean}|v|$ on the centered activations $v = z - E_A[z]$ of every
# normalized layer. Ren et al. (2017, Table 10) show what that does to the first layer: the
# responses of its filters *before* normalization become far less correlated and share less
# information. This notebook trains the paper's CNN with and without the penalty for a short
# while and measures the same two statistics, with the analysis functions of
# `experiments/cnn/analysis.py`:
#
# - each first-layer response is conv + bias at one example and position, a sample of the
#   32-channel vector;
# - **correlation**: the mean over channel pairs of |Pearson correlation|;
# - **mutual information**: the mean over channel pairs of the plug-in estimate (nats) from a
#   20 x 20 joint histogram, each unit binned over its 0.5-99.5 percentile range.

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
# Parameters. DIVNORM_NOTEBOOK_QUICK=1 (the test suite) runs one variant for a few steps.
QUICK = os.environ.get("DIVNORM_NOTEBOOK_QUICK") == "1"
VARIANTS = ("DN*",) if QUICK else ("BN", "BN*", "LN", "LN*", "DN", "DN*")
NUM_STEPS = 3 if QUICK else 80                  # steps of batch 100 per variant
MAX_TRAIN_EXAMPLES = 500 if QUICK else None     # None: all 60,000
ANALYSIS_IMAGES = 50 if QUICK else 500          # test images whose activations are measured
DATA_DIR = None                                 # None: /usr/share/datasets/fashion-mnist

# %%
import time

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from experiments.cnn import analysis
from experiments.cnn import task as cnn_task
from experiments.cnn.configs import cnn_short
from experiments.data import images as image_data

plt.rcParams["figure.dpi"] = 72

# %% [markdown]
# ## Short runs
#
# Each variant is the experiments' own CNN config (`cnn_short.py`: the paper's CIFAR-10
# recipe, $\sigma$ and $\alpha$) trained on Fashion-MNIST by the shared engine.

# %%
def config(variant):
  cfg = cnn_short.get_config(f"{variant},fashion_mnist,{NUM_STEPS}")
  cfg.max_train_examples = MAX_TRAIN_EXAMPLES
  cfg.max_eval_examples = ANALYSIS_IMAGES
  cfg.eval_every = 0
  cfg.log_every = max(1, NUM_STEPS // 10)
  if DATA_DIR:
    cfg.data_dir = DATA_DIR
  return cfg


train_split, test_split = data = cnn_task.load_data(config(VARIANTS[0]))
preprocess = image_data.make_preprocess(image_data.mean_image(train_split.images))
probe = jnp.asarray(preprocess({"image": test_split.images[:ANALYSIS_IMAGES]})["image"])

activations, accuracy = {}, {}
for variant in VARIANTS:
  start = time.perf_counter()
  cfg = config(variant)
  result = cnn_task.train_and_evaluate(cfg, None, progress=False, data=data)
  model = cnn_task.build_model(cfg, train_split.num_classes)
  variables = {"params": result.train_state.params, **result.train_state.state}
  activations[variant] = analysis.first_layer_preactivations(model, variables, probe, train=False)
  accuracy[variant] = result.eval_metrics["accuracy"]
  print(f"{variant:4s} test accuracy {accuracy[variant]:.3f}, first-layer activations "
        f"{activations[variant].shape} ({time.perf_counter() - start:.0f} s)")

# %% [markdown]
# ## Joint histograms
#
# For each variant, the joint histogram of two first-layer channels (the pair with the
# largest |correlation| under the un-penalized variant of the same normalizer, so the
# comparison is of the same two filters' responses), on a log color scale.

# %%
def strongest_pair(z):
  r = np.abs(np.corrcoef(z, rowvar=False))
  np.fill_diagonal(r, 0)
  r = np.nan_to_num(r)
  return np.unravel_index(np.argmax(r), r.shape)


samples = {v: analysis.samples(a, max_samples=20_000) for v, a in activations.items()}
fig, axes = plt.subplots(1, len(VARIANTS), figsize=(2.6 * len(VARIANTS), 2.8), squeeze=False)
for ax, variant in zip(axes[0], VARIANTS, strict=True):
  base = variant.rstrip("*")
  i, j = strongest_pair(samples[base if base in samples else variant])
  counts, ea, eb = analysis.joint_histogram(samples[variant][:, i], samples[variant][:, j])
  ax.imshow(np.log1p(counts.T), origin="lower", cmap="magma", aspect="auto",
            extent=(ea[0], ea[-1], eb[0], eb[-1]))
  ax.set_title(f"{variant}: channels {i}, {j}", fontsize=9)
  ax.set_xticks([])
  ax.set_yticks([])
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Correlation and mutual information (the paper's Table 10)

# %%
table = {v: analysis.table10(a) for v, a in activations.items()}
print(f"{'variant':8s}{'correlation':>13s}{'MI (nats)':>11s}{'paper corr':>12s}{'paper MI':>10s}"
      f"{'test acc':>10s}")
for variant, stats in table.items():
  paper = analysis.PAPER_TABLE10.get(variant, (float("nan"), float("nan")))
  print(f"{variant:8s}{stats['correlation']:13.4f}{stats['mutual_information']:11.4f}"
        f"{paper[0]:12.4f}{paper[1]:10.4f}{accuracy[variant]:10.3f}")

fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
x = np.arange(len(table))
for ax, key, paper_index, label in ((axes[0], "correlation", 0, "mean |correlation|"),
                                    (axes[1], "mutual_information", 1, "mean MI (nats)")):
  ax.bar(x - 0.2, [s[key] for s in table.values()], 0.4, label="ours (Fashion-MNIST, short)")
  ax.bar(x + 0.2, [analysis.PAPER_TABLE10.get(v, (np.nan, np.nan))[paper_index] for v in table],
         0.4, label="paper (CIFAR-10)")
  ax.set_xticks(x, list(table))
  ax.set_ylabel(label)
  ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# The paper's numbers are for CIFAR-10 after full training, and its mutual-information binning
# could not be read here (its full text is not available offline), so only the direction of
# each starred/un-starred pair is comparable, not the values. A run of 80 steps shows how far the penalty has moved the first layer
# this early. In the committed run every starred variant's first-layer responses are less
# correlated and share less information than its un-starred counterpart's (BN 0.65 -> 0.56,
# LN 0.71 -> 0.46, DN 0.53 -> 0.46 in correlation), as in the paper for BN and LN; for DN the
# paper's correlation rose a little (0.196 -> 0.203) and only its MI fell. Accuracy after 80
# steps says little. The longer runs of `python -m experiments.main
# compare` and `experiments.cnn.reproduce` train the same models further.
#
# Next: [5. An RNN language model and super-resolution](05_rnn_and_sr.ipynb).
