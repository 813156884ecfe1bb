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
# # 9. A haiku model with divnorm inside
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/divnorm-org/divnorm/blob/main/notebooks/09_haiku_model.ipynb)
#
# `divnorm.haiku` has haiku's own normalization layers (`LayerNorm`, `InstanceNorm`,
# `RMSNorm`, `GroupNorm`, `BatchNorm`: the same arguments, parameters, state and numbers)
# and the paper's divisive normalization as a haiku module. This notebook:
#
# 1. trains a small haiku CNN with `hk.BatchNorm` on Fashion-MNIST and saves its parameters
#    and state;
# 2. loads them into the same model built with `divnorm.haiku.BatchNorm`, and checks that
#    both give the same outputs and the same running averages;
# 3. trains the CNN with `divnorm.haiku.DivisiveNorm` (5x5 windows across all channels,
#    $\sigma = 0.5$) in place of batch norm, and compares the learning curves.

# %%
# Setup. In Colab this clones the repository (the data readers are in experiments/, not in
# the wheel), installs it with haiku, and fetches Fashion-MNIST; elsewhere run it from a
# clone where `pip install -e ".[experiments,haiku]"` has run, with Debian's
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
                  repo + "[experiments,haiku]"], check=True)
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

import haiku as hk
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from divnorm import haiku as dhk
from experiments.data.idx import load_idx_split

plt.rcParams["figure.dpi"] = 72

# %% [markdown]
# ## Data
#
# Fashion-MNIST from its IDX files (`experiments.data.idx`), pixels scaled to [0, 1], channels
# last, haiku's default layout.

# %%
def split(name, count):
  images, labels = load_idx_split(DATA_DIR, name, num_classes=10)
  return images[:count].astype(np.float32) / np.float32(255), labels[:count]


x_train, y_train = split("train", TRAIN_EXAMPLES)
x_test, y_test = split("test", TEST_EXAMPLES)
print(x_train.shape, x_test.shape)

# %% [markdown]
# ## A haiku CNN
#
# Two 5x5 convolutions, each followed by a normalizer (`make_norm()`, called as
# `norm(h, training)`), ReLU and 2x2 max pooling, then a linear layer. `cnn(make_norm)` is
# the model as a pure pair of functions (`hk.transform_with_state`): its parameters and
# state are dictionaries, so a model built with other normalizer classes of the same names
# takes them as they are.

# %%
def cnn(make_norm):
  def forward(x, training):
    h = x
    for channels in (16, 32):
      h = make_norm()(hk.Conv2D(channels, 5)(h), training)
      h = hk.max_pool(jax.nn.relu(h), 2, 2, "SAME")
    return hk.Linear(10)(hk.Flatten()(h))
  return hk.transform_with_state(forward)


def train(model, steps, *, seed=0, learning_rate=1e-3, batch=64):
  params, state = model.init(jax.random.key(seed), x_train[:batch], True)
  optimizer = optax.adam(learning_rate)
  opt_state = optimizer.init(params)

  @jax.jit
  def step(params, state, opt_state, x, y):
    def loss(params):
      logits, new_state = model.apply(params, state, None, x, True)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new_state

    (value, state), grads = jax.value_and_grad(loss, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state)
    return optax.apply_updates(params, updates), state, opt_state, value

  rng, losses = np.random.default_rng(seed), []
  for _ in range(steps):
    idx = rng.integers(0, len(x_train), batch)
    params, state, opt_state, value = step(params, state, opt_state, x_train[idx],
                                           y_train[idx])
    losses.append(float(value))
  return params, state, losses


def logits(model, params, state, x):
  return jax.jit(model.apply, static_argnums=4)(params, state, None, x, False)[0]


def accuracy(model, params, state):
  return float((jnp.argmax(logits(model, params, state, x_test), -1) == y_test).mean())


haiku_bn = cnn(lambda: hk.BatchNorm(True, True, 0.9))
start = time.perf_counter()
bn_params, bn_state, bn_losses = train(haiku_bn, STEPS)
print(f"hk.BatchNorm model: test accuracy {accuracy(haiku_bn, bn_params, bn_state):.4f} "
      f"({time.perf_counter() - start:.0f} s)")

# %%
checkpoint = Path(tempfile.mkdtemp()) / "cnn.npz"
flat = {f"{kind}/{module}/{name}": np.asarray(value)
        for kind, tree in (("params", bn_params), ("state", bn_state))
        for module, values in tree.items() for name, value in values.items()}
np.savez(checkpoint, **flat)
print("saved", checkpoint, f"({len(flat)} arrays)")

# %% [markdown]
# ## Swap in divnorm's BatchNorm and load the checkpoint
#
# The same model with `divnorm.haiku.BatchNorm`: it creates haiku's parameters and state
# (`batch_norm/~/mean_ema` and `var_ema` are haiku's own moving averages), so the saved
# arrays load into it one for one, and both models agree in evaluation (the running
# averages) and in training (the batch statistics and the averages' update).

# %%
def load(path):
  params, state = {}, {}
  for key, value in np.load(path).items():
    kind, name = key.split("/", 1)[0], key.split("/", 1)[1].rsplit("/", 1)
    (params if kind == "params" else state).setdefault(name[0], {})[name[1]] = value
  return params, state


divnorm_bn = cnn(lambda: dhk.BatchNorm(True, True, 0.9))
dn_bn_params, dn_bn_state = load(checkpoint)
assert jax.tree.structure((dn_bn_params, dn_bn_state)) == jax.tree.structure(
    divnorm_bn.init(jax.random.key(1), x_train[:2], True))
difference = float(jnp.abs(logits(haiku_bn, bn_params, bn_state, x_test[:256])
                           - logits(divnorm_bn, dn_bn_params, dn_bn_state, x_test[:256])).max())
print(f"evaluation logits, max |haiku - divnorm|: {difference:.2e}")
(train_hk, state_hk), (train_dn, state_dn) = (
    jax.jit(model.apply, static_argnums=4)(p, s, None, x_test[:256], True)
    for model, p, s in ((haiku_bn, bn_params, bn_state),
                        (divnorm_bn, dn_bn_params, dn_bn_state)))
print(f"training logits,   max |haiku - divnorm|: {float(jnp.abs(train_hk - train_dn).max()):.2e}")
print("updated running averages, max difference: "
      f"{max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(state_hk), jax.tree.leaves(state_dn), strict=True)):.2e}")
print(f"divnorm model, haiku checkpoint: test accuracy "
      f"{accuracy(divnorm_bn, dn_bn_params, dn_bn_state):.4f}")

# %% [markdown]
# ## Divisive normalization
#
# Now each normalizer is the paper's DN: every position centered by the mean over a 5x5
# window across all channels and divided by $\sqrt{\sigma^2 + E[v^2]}$ over the same window,
# $\sigma = 0.5$. DN has no running statistics, so training and evaluation compute the same
# thing (`training` is ignored).

# %%
divisive = cnn(lambda: lambda h, training: dhk.DivisiveNorm((5, 5), sigma=0.5)(h))
start = time.perf_counter()
dn_params, dn_state, dn_losses = train(divisive, STEPS)
print(f"DivisiveNorm model: test accuracy {accuracy(divisive, dn_params, dn_state):.4f} "
      f"({time.perf_counter() - start:.0f} s)")

# %%
fig, ax = plt.subplots(figsize=(7, 3.4))
window = min(20, STEPS)
for losses, label in ((bn_losses, "hk.BatchNorm"), (dn_losses, "divnorm.haiku.DivisiveNorm")):
  smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
  ax.plot(np.arange(len(smooth)) + window - 1, smooth, label=label, linewidth=1)
ax.set(xlabel="step", ylabel=f"training cross entropy ({window}-step mean)")
ax.legend()
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# One seed and a few hundred steps: the curves show that both train, not which normalizer is
# better (the paper's comparison, with seeds and error bars, is in `results/`). The other
# layers of `divnorm.haiku` (`LayerNorm`, `InstanceNorm`, `RMSNorm`, `GroupNorm`) are used the
# same way, with haiku's arguments.
