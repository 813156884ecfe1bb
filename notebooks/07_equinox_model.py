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
# # 7. An equinox model with divnorm inside
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/divnorm-org/divnorm/blob/main/notebooks/07_equinox_model.ipynb)
#
# `divnorm.equinox` has equinox's own normalization layers (`LayerNorm`, `RMSNorm`,
# `GroupNorm`, `BatchNorm`: the same arguments, fields, state and numbers) and the paper's
# divisive normalization as an equinox module. This notebook:
#
# 1. trains a small equinox CNN with `eqx.nn.BatchNorm` on Fashion-MNIST and saves it with
#    `eqx.tree_serialise_leaves`;
# 2. loads that checkpoint into the same model built with `divnorm.equinox.BatchNorm`, and
#    checks that both give the same outputs and the same running statistics;
# 3. trains the CNN with `divnorm.equinox.DivisiveNorm` (5x5 windows across all channels,
#    $\sigma$ learned from 0.5) in place of batch norm, and compares the learning curves.

# %%
# Setup. In Colab this clones the repository (the data readers are in experiments/, not in
# the wheel), installs it with equinox, and fetches Fashion-MNIST; elsewhere run it from a
# clone where `pip install -e ".[experiments,equinox]"` has run, with Debian's
# dataset-fashion-mnist installed.
import os
import subprocess
import sys

if "google.colab" in sys.modules:
  repo = "/content/divnorm"  # absolute: a re-run of this cell starts inside the clone
  if not os.path.isdir(os.path.join(repo, ".git")):
    subprocess.run(["git", "clone", "-q", "--depth", "1",
                    "https://github.com/divnorm-org/divnorm", repo], check=True)
  subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e",
                  repo + "[experiments,equinox]"], check=True)
  subprocess.run(["apt-get", "update", "-qq"], check=True)
  subprocess.run(["apt-get", "install", "-y", "-qq", "dataset-fashion-mnist"], check=True)
  os.chdir(repo)
  if repo not in sys.path:
    sys.path.insert(0, repo)
elif os.path.isdir(os.path.join("..", "experiments")):  # in a clone's notebooks/ folder
  sys.path.insert(0, os.path.abspath(".."))  # the experiments are not in the wheel

# %% tags=["parameters"]
# Parameters. DIVNORM_NOTEBOOK_QUICK=1 (the test suite) trains a few steps on a subset.
QUICK = os.environ.get("DIVNORM_NOTEBOOK_QUICK") == "1"
STEPS = 3 if QUICK else 300              # steps of batch 64 per model
TRAIN_EXAMPLES = 512 if QUICK else None  # None: all 60,000
TEST_EXAMPLES = 256 if QUICK else 5_000
DATA_DIR = None                          # None: /usr/share/datasets/fashion-mnist

# %%
import tempfile
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from divnorm import equinox as dqx
from experiments.data.idx import load_idx_split

plt.rcParams["figure.dpi"] = 72

# %% [markdown]
# ## Data
#
# Fashion-MNIST from its IDX files (`experiments.data.idx`), pixels scaled to [0, 1] and put
# channels first, equinox's layout: a model sees one example `(1, 28, 28)`.

# %%
def split(name, count):
  images, labels = load_idx_split(DATA_DIR, name, num_classes=10)
  images = np.moveaxis(images[:count], -1, 1).astype(np.float32) / np.float32(255)
  return images, labels[:count]


x_train, y_train = split("train", TRAIN_EXAMPLES)
x_test, y_test = split("test", TEST_EXAMPLES)
print(x_train.shape, x_test.shape)

# %% [markdown]
# ## An equinox CNN
#
# Two 5x5 convolutions, each followed by a normalizer (`make_norm(channels)`), ReLU and
# 2x2 max pooling, then a linear layer. Every normalizer is called as
# `h, state = norm(h, state)`: equinox's BatchNorm needs its `eqx.nn.State`, and divnorm's
# stateless layers pass the state through, as equinox's LayerNorm does.

# %%
class CNN(eqx.Module):
  convs: tuple
  norms: tuple
  pool: eqx.nn.MaxPool2d
  linear: eqx.nn.Linear

  def __init__(self, make_norm, key):
    k1, k2, k3 = jax.random.split(key, 3)
    self.convs = (eqx.nn.Conv2d(1, 16, 5, padding=2, key=k1),
                  eqx.nn.Conv2d(16, 32, 5, padding=2, key=k2))
    self.norms = (make_norm(16), make_norm(32))
    self.pool = eqx.nn.MaxPool2d(2, 2)
    self.linear = eqx.nn.Linear(32 * 7 * 7, 10, key=k3)

  def __call__(self, x_1xHxW, state):
    h = x_1xHxW
    for conv, norm in zip(self.convs, self.norms, strict=True):
      h, state = norm(conv(h), state)
      h = self.pool(jax.nn.relu(h))
    return self.linear(h.ravel()), state


def batched(model, x, state):
  """The model over a batch: batch statistics average over the vmapped axis "batch"."""
  return jax.vmap(model, (0, None), (0, None), axis_name="batch")(x, state)


def train(model, state, steps, *, seed=0, learning_rate=1e-3, batch=64):
  optimizer = optax.adam(learning_rate)
  opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))

  @eqx.filter_jit
  def step(model, state, opt_state, x, y):
    def loss(model):
      logits, new_state = batched(model, x, state)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new_state

    (value, state), grads = eqx.filter_value_and_grad(loss, has_aux=True)(model)
    updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(model, eqx.is_array))
    return eqx.apply_updates(model, updates), state, opt_state, value

  rng, losses = np.random.default_rng(seed), []
  for _ in range(steps):
    idx = rng.integers(0, len(x_train), batch)
    model, state, opt_state, value = step(model, state, opt_state, x_train[idx], y_train[idx])
    losses.append(float(value))
  return model, state, losses


@eqx.filter_jit
def logits(model, state, x):
  return batched(eqx.nn.inference_mode(model), x, state)[0]


def accuracy(model, state):
  return float((jnp.argmax(logits(model, state, x_test), -1) == y_test).mean())


def equinox_bn(channels):
  return eqx.nn.BatchNorm(channels, "batch", momentum=0.9, mode="batch")


start = time.perf_counter()
bn_model, bn_state = eqx.nn.make_with_state(CNN)(equinox_bn, jax.random.key(0))
bn_model, bn_state, bn_losses = train(bn_model, bn_state, STEPS)
print(f"eqx.nn.BatchNorm model: test accuracy {accuracy(bn_model, bn_state):.4f} "
      f"({time.perf_counter() - start:.0f} s)")

# %%
checkpoint = Path(tempfile.mkdtemp()) / "cnn.eqx"
eqx.tree_serialise_leaves(checkpoint, (bn_model, bn_state))
print("saved", checkpoint)

# %% [markdown]
# ## Swap in divnorm's BatchNorm and load the checkpoint
#
# The same model with `divnorm.equinox.BatchNorm`: its fields are equinox's, so the
# checkpoint's leaves load into it one for one, and both models agree in inference (the
# running statistics) and in training (the batch statistics and their update).

# %%
def divnorm_bn(channels):
  return dqx.BatchNorm(channels, "batch", momentum=0.9, mode="batch")


dn_bn_model, dn_bn_state = eqx.nn.make_with_state(CNN)(divnorm_bn, jax.random.key(1))
dn_bn_model, dn_bn_state = eqx.tree_deserialise_leaves(checkpoint, (dn_bn_model, dn_bn_state))
difference = float(jnp.abs(logits(bn_model, bn_state, x_test[:256])
                           - logits(dn_bn_model, dn_bn_state, x_test[:256])).max())
print(f"inference logits, max |equinox - divnorm|: {difference:.2e}")
(train_eqx, state_eqx), (train_dn, state_dn) = (
    batched(m, x_test[:256], s) for m, s in ((bn_model, bn_state), (dn_bn_model, dn_bn_state)))
print(f"training logits,  max |equinox - divnorm|: {float(jnp.abs(train_eqx - train_dn).max()):.2e}")
print("updated running statistics, max difference: "
      f"{max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(state_eqx), jax.tree.leaves(state_dn), strict=True)):.2e}")
print(f"divnorm model, equinox checkpoint: test accuracy {accuracy(dn_bn_model, dn_bn_state):.4f}")

# %% [markdown]
# ## Divisive normalization
#
# Now each normalizer is the paper's DN: every position centered by the mean over a 5x5
# window across all channels and divided by $\sqrt{\sigma^2 + E[v^2]}$ over the same window.
# $\sigma$ is learned, as $\exp(\log\sigma)$ from 0.5. DN has no running statistics, so
# training and inference compute the same thing.

# %%
def divisive(channels):
  return dqx.DivisiveNorm((5, 5), sigma=0.5, learn_sigma=True)


start = time.perf_counter()
dn_model, dn_state = eqx.nn.make_with_state(CNN)(divisive, jax.random.key(0))
dn_model, dn_state, dn_losses = train(dn_model, dn_state, STEPS)
sigmas = [float(jnp.exp(norm.log_sigma)) for norm in dn_model.norms]
print(f"DivisiveNorm model: test accuracy {accuracy(dn_model, dn_state):.4f} "
      f"({time.perf_counter() - start:.0f} s); learned sigma {sigmas[0]:.3f}, {sigmas[1]:.3f}")

# %%
fig, ax = plt.subplots(figsize=(7, 3.4))
window = min(20, STEPS)
for losses, label in ((bn_losses, "eqx.nn.BatchNorm"), (dn_losses, "divnorm.equinox.DivisiveNorm")):
  smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
  ax.plot(np.arange(len(smooth)) + window - 1, smooth, label=label, linewidth=1)
ax.set(xlabel="step", ylabel=f"training cross entropy ({window}-step mean)")
ax.legend()
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# One seed and a few hundred steps: the curves show that both train, not which normalizer is
# better (the paper's comparison, with seeds and error bars, is in `results/`). The other
# layers of `divnorm.equinox` (`LayerNorm`, `RMSNorm`, `GroupNorm`, `Normalize`,
# `LocalResponseNorm`, `GDN`) are used the same way.
