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
# # 6. A Flax model with divnorm inside
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/divnorm-org/divnorm/blob/main/notebooks/06_flax_model.ipynb)
#
# `divnorm.linen` mirrors `flax.linen`'s normalization modules: same class names,
# constructor arguments, defaults and variable names, so an existing Flax model takes them
# without other changes and loads the checkpoints it already has. This notebook:
#
# 1. trains a small Flax CNN (group, batch and layer norm from `flax.linen`) on Fashion-MNIST
#    and saves a checkpoint with Orbax;
# 2. swaps its normalizers for divnorm's, restores the same checkpoint, and checks that the
#    outputs agree;
# 3. replaces the first normalizer by the paper's DN* (divisive normalization with
#    $\sigma$ and the L1 penalty) and fine-tunes from the checkpoint;
# 4. exports the DN* model with `jax.export` for any batch size.

# %%
# Setup. In Colab this installs divnorm from its repository and fetches Fashion-MNIST;
# elsewhere install it first (`pip install -e ".[experiments]"` in a clone) and Debian's
# dataset-fashion-mnist.
import subprocess
import sys

if "google.colab" in sys.modules:
  subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                  "divnorm[experiments] @ git+https://github.com/divnorm-org/divnorm"], check=True)
  subprocess.run(["apt-get", "update", "-qq"], check=True)
  subprocess.run(["apt-get", "install", "-y", "-qq", "dataset-fashion-mnist"], check=True)

# %% tags=["parameters"]
# Parameters. DIVNORM_NOTEBOOK_QUICK=1 (the test suite) trains a few steps on a subset.
import os

QUICK = os.environ.get("DIVNORM_NOTEBOOK_QUICK") == "1"
TRAIN_STEPS = 3 if QUICK else 300     # steps of the Flax model, batch 64
FINETUNE_STEPS = 3 if QUICK else 150  # steps after adding DN*
TRAIN_EXAMPLES = 512 if QUICK else 60_000
TEST_EXAMPLES = 256 if QUICK else 5_000
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"

# %%
import gzip
import tempfile
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
import orbax.checkpoint as ocp

from divnorm import linen as dnn

plt.rcParams["figure.dpi"] = 72

# %% [markdown]
# ## Data
#
# Fashion-MNIST from its IDX files, pixels scaled to [0, 1].

# %%
def read_idx(name, count):
  path = Path(FASHION_MNIST) / name
  opener = gzip.open if path.suffix == ".gz" else open
  with opener(path, "rb") as f:
    data = f.read()
  ndim = data[3]
  shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
  array = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)
  return array[:count]


x_train = read_idx("train-images-idx3-ubyte.gz", TRAIN_EXAMPLES)[..., None] / np.float32(255)
y_train = read_idx("train-labels-idx1-ubyte.gz", TRAIN_EXAMPLES).astype(np.int32)
x_test = read_idx("t10k-images-idx3-ubyte.gz", TEST_EXAMPLES)[..., None] / np.float32(255)
y_test = read_idx("t10k-labels-idx1-ubyte.gz", TEST_EXAMPLES).astype(np.int32)
print(x_train.shape, x_test.shape)

# %% [markdown]
# ## A Flax model
#
# An ordinary Flax CNN, written against a namespace of normalization modules (`norms`),
# `flax.linen` by default. `first_norm` lets us replace its first normalizer later.

# %%
class CNN(nn.Module):
  norms: Any = nn
  first_norm: Any = None  # a module factory, replacing the first GroupNorm
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = nn.Conv(32, (3, 3))(x)
    x = self.first_norm()(x) if self.first_norm else self.norms.GroupNorm(num_groups=8)(x)
    x = nn.max_pool(nn.relu(x), (2, 2), (2, 2))
    x = nn.Conv(64, (3, 3))(x)
    x = self.norms.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    x = nn.avg_pool(nn.relu(x), (2, 2), (2, 2))
    x = nn.Dense(128)(x.reshape((x.shape[0], -1)))
    x = nn.relu(self.norms.LayerNorm()(x))
    return nn.Dense(self.num_classes)(x)


def make_train_step(model, tx):
  @jax.jit
  def step(variables, opt_state, x, y):
    def loss_fn(params):
      logits, penalty, updates = dnn.apply_with_penalty(
          model, {**variables, "params": params}, x, train=True, mutable=["batch_stats"])
      ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
      return ce + penalty, (updates, ce)

    (_, (updates, ce)), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])
    steps, opt_state = tx.update(grads, opt_state, variables["params"])
    params = optax.apply_updates(variables["params"], steps)
    return {**variables, **updates, "params": params}, opt_state, ce

  return step


def train(model, variables, steps, *, seed=0, learning_rate=1e-3, batch=64):
  tx = optax.adam(learning_rate)
  opt_state = tx.init(variables["params"])
  step = make_train_step(model, tx)
  rng = np.random.default_rng(seed)
  losses = []
  for _ in range(steps):
    idx = rng.integers(0, len(x_train), batch)
    variables, opt_state, ce = step(variables, opt_state, x_train[idx], y_train[idx])
    losses.append(float(ce))
  return variables, losses


def accuracy(model, variables):
  logits = model.apply(variables, x_test, train=False)
  return float((jnp.argmax(logits, -1) == y_test).mean())


flax_model = CNN()
variables = flax_model.init(jax.random.key(0), x_train[:2], train=False)
variables, flax_losses = train(flax_model, variables, TRAIN_STEPS)
print(f"flax.linen model: test accuracy {accuracy(flax_model, variables):.4f}")
print(jax.tree_util.tree_map(jnp.shape, {k: v for k, v in variables.items()}))

# %%
checkpoint_dir = Path(tempfile.mkdtemp()) / "flax_cnn"
checkpointer = ocp.StandardCheckpointer()
checkpointer.save(checkpoint_dir, variables)
checkpointer.wait_until_finished()
print("saved", checkpoint_dir)

# %% [markdown]
# ## Swap in divnorm's normalizers and load the checkpoint
#
# The same model class with `norms=divnorm.linen`: every `GroupNorm`, `BatchNorm` and
# `LayerNorm` is now divnorm's, with the same arguments. Its variables have the same tree, so
# the checkpoint restores into it as is, and both models give the same logits up to float32
# rounding, in evaluation (running statistics) and in training mode (batch statistics and
# their update).

# %%
dn_model = CNN(norms=dnn)
abstract = jax.eval_shape(lambda: dn_model.init(jax.random.key(0), x_train[:2], train=False))
print("same variable tree:", jax.tree_util.tree_structure(abstract)
      == jax.tree_util.tree_structure(variables))
restored = checkpointer.restore(checkpoint_dir, abstract)

logits_flax = flax_model.apply(variables, x_test[:256], train=False)
logits_dn = dn_model.apply(restored, x_test[:256], train=False)
(train_flax, upd_flax) = flax_model.apply(variables, x_test[:256], train=True,
                                          mutable=["batch_stats"])
(train_dn, upd_dn) = dn_model.apply(restored, x_test[:256], train=True, mutable=["batch_stats"])
stats_diff = jax.tree_util.tree_map(lambda a, b: float(jnp.abs(a - b).max()), upd_flax, upd_dn)
print(f"evaluation logits, max |flax - divnorm|: {float(jnp.abs(logits_flax - logits_dn).max()):.2e}")
print(f"training logits,   max |flax - divnorm|: {float(jnp.abs(train_flax - train_dn).max()):.2e}")
print(f"updated batch statistics, max difference: {max(jax.tree_util.tree_leaves(stats_diff)):.2e}")
print(f"divnorm model, flax checkpoint: test accuracy {accuracy(dn_model, restored):.4f}")

# %% [markdown]
# ## Add DN*
#
# Now the first `GroupNorm` becomes the paper's DN*: divisive normalization over 5x5 windows
# across all channels, $\sigma = 0.5$, and the L1 penalty $\alpha\,\mathrm{mean}|v|$ on its
# centered input ($\alpha = 0.005$), sown into Flax's `"losses"` collection, which
# `divnorm.linen.apply_with_penalty` adds to the loss once. DN* has no parameters, so the
# rest of the checkpoint loads unchanged; only `GroupNorm_0`'s scale and bias are dropped.

# %%
def dn_star():
  return dnn.DivisiveNorm(summation_window=(5, 5), sigma=0.5, l1_alpha=0.005, name="DN_star")


star_model = CNN(norms=dnn, first_norm=dn_star)
fresh = star_model.init(jax.random.key(1), x_train[:2], train=False)
star_vars = {
    "params": {k: restored["params"].get(k, v) for k, v in fresh["params"].items()},
    "batch_stats": restored["batch_stats"],
}
print("restored from the checkpoint:", sorted(k for k in star_vars["params"] if k in restored["params"]))
print("dropped:", sorted(set(restored["params"]) - set(star_vars["params"])))
before = accuracy(star_model, star_vars)
star_vars, star_losses = train(star_model, star_vars, FINETUNE_STEPS, seed=1)
after = accuracy(star_model, star_vars)
print(f"DN* model: test accuracy {before:.4f} with the checkpoint as is, {after:.4f} after "
      f"{FINETUNE_STEPS} fine-tuning steps")

_, penalty, _ = dnn.apply_with_penalty(star_model, star_vars, x_test[:256], train=False)
print(f"L1 penalty on a test batch: {float(penalty):.4f}")

# %%
fig, ax = plt.subplots(figsize=(7, 3.4))
ax.plot(flax_losses, label="flax.linen model, from scratch", linewidth=0.8)
ax.plot(np.arange(len(star_losses)) + len(flax_losses), star_losses,
        label="DN* model, fine-tuned from the checkpoint", linewidth=0.8)
ax.set(xlabel="step", ylabel="training cross entropy", yscale="log")
ax.legend()
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# ## Export it for any batch size
#
# `jax.export` with a symbolic batch size writes the DN* model once, for serving at any batch
# size; divnorm's layers export as flax's do. The variables are an argument, not constants
# of the program. At each batch size the exported program gives the jitted logits.

# %%
from jax import export

serve = jax.jit(lambda variables, x: star_model.apply(variables, x, train=False))
(batch,) = export.symbolic_shape("batch")
exported = export.export(serve)(
    jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), star_vars),
    jax.ShapeDtypeStruct((batch, *x_test.shape[1:]), jnp.float32))
print("exported:", exported.in_avals[-1], "->", exported.out_avals[0])
for n in (1, 7, 256):
  diff = float(jnp.abs(exported.call(star_vars, x_test[:n]) - serve(star_vars, x_test[:n])).max())
  print(f"batch {n:3d}: max |exported - jitted| = {diff:.1e}")

# %% [markdown]
# The same pattern works with `divnorm.nnx` for NNX models, and with any normalizer of the
# [compatibility table](https://github.com/divnorm-org/divnorm/blob/main/docs/compatibility.md).
