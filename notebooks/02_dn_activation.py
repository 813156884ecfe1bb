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
# # 2. Divisive normalization as an activation function
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/divnorm-org/divnorm/blob/main/notebooks/02_dn_activation.ipynb)
#
# Ren et al. (ICLR 2017) note that divisive normalization followed by a ReLU "can be viewed as
# a new activation function": a unit's output depends on its own input *and* on the activity
# of its neighbours, and the smoothing term $\sigma$ in
#
# $$\tilde z_i = \frac{z_i - E_A[z]}{\sqrt{\sigma^2 + E_B[(z - E_A[z])^2]}}$$
#
# sets where it moves from a saturating, contrast-invariant response (small $\sigma$) to a
# rectifier that passes small inputs through almost linearly (large $\sigma$). This notebook
# plots that response, applies 1-D divisive normalization to a signal, and learns $\sigma$
# by gradient descent.

# %%
# Setup. In Colab this installs divnorm from its repository; elsewhere install it first
# (`pip install -e ".[experiments]"` in a clone).
import subprocess
import sys

if "google.colab" in sys.modules:
  subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                  "divnorm[experiments] @ git+https://github.com/divnorm-org/divnorm"], check=True)

# %% tags=["parameters"]
# Parameters. DIVNORM_NOTEBOOK_QUICK=1 (the test suite) shrinks the runs.
import os

QUICK = os.environ.get("DIVNORM_NOTEBOOK_QUICK") == "1"
NUM_CONTEXTS = 16 if QUICK else 256   # random neighbourhoods per input value
SIGNAL_LENGTH = 512 if QUICK else 2048
SIGMA_STEPS = 20 if QUICK else 300    # gradient steps when learning sigma

# %%
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import divnorm

plt.rcParams["figure.dpi"] = 72
FIGURES = Path("figures")

# %% [markdown]
# ## DN followed by ReLU, output against input
#
# A layer of 64 units, normalized by 1-D divisive normalization over windows of 9
# neighbouring units (a rank-2 `[batch, units]` input, as for the paper's RNNs). Unit 32's
# input $z$ sweeps from -6 to 6 while its neighbours take random normal values (std 0.5):
# each curve is the median output over many such neighbourhoods, the band its 10-90%
# range. The same sweep runs for several $\sigma$.

# %%
UNITS, UNIT, WINDOW = 64, 32, 9
SIGMAS = (0.1, 0.5, 1.0, 2.0, 4.0)
z = jnp.linspace(-6.0, 6.0, 241)
neighbours = 0.5 * jax.random.normal(jax.random.key(0), (NUM_CONTEXTS, UNITS))


@jax.jit
def dn_relu(z_unit, sigma):
  """ReLU(DN(x))[unit] for every neighbourhood, with x[:, unit] = z_unit: [contexts]."""
  x = neighbours.at[:, UNIT].set(z_unit)
  y = divnorm.divisive_norm(x, summation_window=WINDOW, sigma=sigma)
  return jax.nn.relu(y[:, UNIT])


responses = {s: np.asarray(jax.vmap(dn_relu, in_axes=(0, None))(z, s)) for s in SIGMAS}

fig, axes = plt.subplots(1, 2, figsize=(11, 4))
colors = plt.cm.viridis(np.linspace(0, 0.9, len(SIGMAS)))
for color, (s, r) in zip(colors, responses.items(), strict=True):
  median = np.median(r, axis=1)
  lo, hi = np.percentile(r, [10, 90], axis=1)
  axes[0].plot(z, median, color=color, label=f"$\\sigma$ = {s:g}")
  axes[0].fill_between(z, lo, hi, color=color, alpha=0.15, linewidth=0)
  axes[1].plot(z, median / median.max(), color=color, label=f"$\\sigma$ = {s:g}")
axes[1].plot(z, np.maximum(z, 0) / 6.0, "k--", linewidth=1, label="ReLU (scaled)")
axes[0].set_title("ReLU(DN(z)) of one unit, neighbours random")
axes[1].set_title("the same, each scaled to its maximum")
for ax in axes:
  ax.set_xlabel("input z of the unit")
  ax.legend(fontsize=8)
axes[0].set_ylabel("output")
fig.tight_layout()
if not QUICK:
  FIGURES.mkdir(exist_ok=True)
  fig.savefig(FIGURES / "dn_activation.png", dpi=100)
plt.show()

# %% [markdown]
# With small $\sigma$ the response saturates: once the unit dominates its window, scaling its
# input up changes nothing (the output is bounded by $\sqrt{|A|-1}$ for a lone active unit),
# and it depends on the neighbours (the wide band). As $\sigma$ grows the denominator is
# dominated by $\sigma$ and the response straightens into a ReLU, slope $(1-1/|A|)/\sigma$: the
# smoothing term decides how much contrast normalization the layer does.

# %% [markdown]
# ## 1-D divisive normalization on a signal
#
# A signal whose amplitude changes by a factor of 50 (0.1 to 5) along its length, plus noise.
# Divisive normalization with a 31-sample summation window and a 63-sample suppression
# window equalizes the local amplitude; $\sigma$ sets the amplitude below which a stretch is
# left small instead of being blown up to unit scale (the noise-only end).

# %%
t = np.linspace(0.0, 1.0, SIGNAL_LENGTH, dtype=np.float32)
envelope = np.where(t < 0.85, 10.0 ** (2.0 * t - 1.0), 0.0).astype(np.float32)  # 0.1 .. ~5
rng = np.random.default_rng(0)
signal = envelope * np.sin(2 * np.pi * 60 * t) + 0.02 * rng.standard_normal(t.shape)
x = jnp.asarray(signal[None, :], jnp.float32)        # [batch=1, samples]

fig, axes = plt.subplots(3, 1, figsize=(11, 6.5), sharex=True)
axes[0].plot(t, signal, linewidth=0.6)
axes[0].set_title("input")
for ax, sigma in zip(axes[1:], (0.01, 0.3), strict=True):
  y = divnorm.divisive_norm(x, summation_window=31, suppression_window=63, sigma=sigma)
  ax.plot(t, np.asarray(y[0]), linewidth=0.6, color="C1")
  ax.set_title(f"divisive norm, windows 31 / 63, sigma = {sigma}")
axes[-1].set_xlabel("time")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Learning sigma
#
# $\sigma$ is an ordinary differentiable argument: every function takes a traced value, and
# the Flax modules learn it as `exp(log_sigma)` with `learn_sigma=True`. Here a target is made
# with $\sigma^\ast = 1.5$, and $\log\sigma$ is fitted by Adam from two starting points; the
# loss as a function of $\sigma$ is drawn beside the paths.

# %%
SIGMA_TRUE = 1.5
inputs = jax.random.normal(jax.random.key(1), (32, UNITS)) * jnp.linspace(0.2, 3.0, UNITS)


def model(log_sigma, x):
  return jax.nn.relu(divnorm.divisive_norm(x, summation_window=WINDOW,
                                           sigma=jnp.exp(log_sigma)))


target = model(jnp.log(SIGMA_TRUE), inputs)


def loss_fn(log_sigma):
  return jnp.mean((model(log_sigma, inputs) - target) ** 2)


def fit(sigma0, steps=SIGMA_STEPS, learning_rate=0.05):
  opt = optax.adam(learning_rate)
  log_sigma = jnp.log(jnp.float32(sigma0))
  state = opt.init(log_sigma)

  @jax.jit
  def step(log_sigma, state):
    loss, grad = jax.value_and_grad(loss_fn)(log_sigma)
    updates, state = opt.update(grad, state)
    return optax.apply_updates(log_sigma, updates), state, loss

  path = []
  for _ in range(steps):
    log_sigma, state, loss = step(log_sigma, state)
    path.append((float(jnp.exp(log_sigma)), float(loss)))
  return np.array(path)


paths = {s0: fit(s0) for s0 in (0.2, 6.0)}
grid = jnp.exp(jnp.linspace(jnp.log(0.1), jnp.log(10.0), 60))
landscape = jax.vmap(loss_fn)(jnp.log(grid))

fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
axes[0].semilogx(grid, landscape, "k", linewidth=1)
for s0, path in paths.items():
  axes[0].semilogx(path[:, 0], path[:, 1], ".-", markersize=3, label=f"start {s0}")
  axes[1].plot(path[:, 0], label=f"start {s0}")
  print(f"start sigma = {s0:4.1f} -> {path[-1, 0]:.4f} after {len(path)} steps "
        f"(loss {path[-1, 1]:.2e})")
axes[0].axvline(SIGMA_TRUE, color="0.6", linestyle=":")
axes[0].set_xlabel("sigma")
axes[0].set_ylabel("mean squared error")
axes[0].set_title("loss against sigma, and the Adam paths")
axes[1].axhline(SIGMA_TRUE, color="0.6", linestyle=":", label="sigma* = 1.5")
axes[1].set_xlabel("step")
axes[1].set_ylabel("sigma")
axes[1].set_title("sigma during training")
for ax in axes:
  ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# Next: [3. Train and compare](03_train_compare.ipynb).
