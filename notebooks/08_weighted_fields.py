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
# # 8. Weighted and learned fields
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/divnorm-org/divnorm/blob/main/notebooks/08_weighted_fields.ipynb)
#
# Ren et al.'s fields are boxes: every entry of a window counts the same. The divisive
# normalizations of neuroscience and image compression weight their pools, and many learn
# them. divnorm holds them in one formula,
#
# $$v = x - E_A[x], \qquad y = v\,\bigl(\sigma^2 + P_B[|v|^\alpha]\bigr)^{-\epsilon},$$
#
# where $E_A$ is a weighted mean and $P_B$ a weighted mean or sum. With boxes,
# $\alpha = 2$ and $\epsilon = 1/2$ it is the paper's formula. This notebook shows the zoo of
# fields on a photograph, then trains a layer whose pool is learned, and plots what it learned.

# %%
# Setup. In Colab this clones divnorm and installs it with Debian's Fashion-MNIST; elsewhere
# `pip install -e ".[experiments]"` in a clone (and `make data`).
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
# Parameters. DIVNORM_NOTEBOOK_QUICK=1 (the test suite) shrinks the runs.
QUICK = os.environ.get("DIVNORM_NOTEBOOK_QUICK") == "1"
IMAGE_SIZE = 128 if QUICK else 512        # the photograph, resized
TRAIN_STEPS = 5 if QUICK else 400         # steps of the learned layer
TRAIN_EXAMPLES = 1_000 if QUICK else 20_000
BATCH = 64

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
import skimage.data
import skimage.transform

import divnorm
from divnorm import kernels as K
from divnorm import normalize

plt.rcParams["figure.dpi"] = 72

# %% [markdown]
# ## The zoo of fields
#
# Each field is a spec beside today's `{axis: width}`: a kernel per axis (separable), or one
# kernel over several axes (a tuple key). The kernels, drawn over a 9x9 grid:

# %%
ZOO = {
  "box 7x7": {1: 7, 2: 7},
  "Gaussian, sigma 2": {1: K.gaussian(9, sigma=2.0), 2: K.gaussian(9, sigma=2.0)},
  "exponential, scale 1.5": {1: K.exponential(9, scale=1.5), 2: K.exponential(9, scale=1.5)},
  "surround, distance 3": {(1, 2): K.center_surround(3, ndim=2, dilation=3)},
}


def kernel_image(spec, size=9):
  """The field's weights around the centre of a size x size grid, as fractions of its whole
  weight: the field's mean of a point (``border="zeros"`` divides by the whole weight)."""
  point = jnp.zeros((1, size, size, 1)).at[0, size // 2, size // 2, 0].set(1.0)
  return np.asarray(divnorm.field_mean(point, spec, border="zeros"))[0, ::-1, ::-1, 0]


fig, axes = plt.subplots(1, len(ZOO), figsize=(3 * len(ZOO), 3))
for ax, (name, spec) in zip(axes, ZOO.items(), strict=True):
  ax.imshow(kernel_image(spec), cmap="magma")
  ax.set(title=name, xticks=[], yticks=[])

# %% [markdown]
# The same fields as the suppression field of divisive normalization on a photograph
# (`skimage.data.camera`), with a 7x7 box as the summation field. The top row shows what
# each position is divided by, $\sqrt{\sigma^2 + E_B[v^2]}$ (the local contrast that field
# sees), the bottom row the normalized image on a crop. The box's divisor has square halos
# around edges; the Gaussian's and the exponential's are round; the surround's is low *on*
# an edge and high beside it, because its centre is zeroed: each pixel is divided by the
# contrast around it, not by its own, as in the surround pools of V1 models.

# %%
image = skimage.transform.resize(skimage.data.camera().astype(np.float64) / 255.0,
                                 (IMAGE_SIZE, IMAGE_SIZE), anti_aliasing=True)
x = jnp.asarray(image[None, :, :, None], jnp.float32)
crop = (slice(IMAGE_SIZE // 8, IMAGE_SIZE // 2), slice(IMAGE_SIZE // 4, 5 * IMAGE_SIZE // 8))

fig, axes = plt.subplots(2, len(ZOO) + 1, figsize=(3 * (len(ZOO) + 1), 6.2))
axes[0, 0].imshow(image, cmap="gray")
axes[0, 0].set(title="camera", xticks=[], yticks=[])
axes[1, 0].imshow(image[crop], cmap="gray")
axes[1, 0].set(title="crop", xticks=[], yticks=[])
for column, (name, spec) in enumerate(ZOO.items(), start=1):
  y, v = normalize(x, {1: 7, 2: 7}, spec, sigma=0.02, return_centered=True)
  y, v = np.asarray(y[0, :, :, 0]), np.asarray(v[0, :, :, 0])
  divisor = np.where(np.abs(y) > 1e-6, v / np.where(np.abs(y) > 1e-6, y, 1.0), np.nan)
  axes[0, column].imshow(divisor, cmap="magma")
  axes[0, column].set(title=f"divisor, B: {name}", xticks=[], yticks=[])
  axes[1, column].imshow(y[crop], cmap="gray", vmin=-2.5, vmax=2.5)
  axes[1, column].set(title="normalized (crop)", xticks=[], yticks=[])
fig.tight_layout()

# %% [markdown]
# ## A learned pool
#
# A small network on Fashion-MNIST: a 5x5 convolution with 16 filters, then a layer that
# divides each response by a learned pool of its neighbours' (``alpha = 2``,
# ``epsilon = 1/2``, no centering: "spatial GDN"),
#
# $$y_i(p) = \frac{x_i(p)}{\sqrt{\beta_i + \sum_j \gamma_{ij} \sum_q u(q)\, x_j(p+q)^2}},$$
#
# then ReLU, 2x2 average pooling and a dense layer. The spatial kernel $u$ (5x5) and the
# channel weights $\gamma$ are learned nonnegative through GDN's reparameterization
# (`learned_kernel`, `learned_mixing`), starting from $u$ = a box and $\gamma = 0.1\,I$.

# %%
from experiments.data.idx import load_idx_split

images, labels = load_idx_split(split="train")
images = images[:TRAIN_EXAMPLES].astype(np.float32) / 255.0
labels = labels[:TRAIN_EXAMPLES]
FILTERS = 16


def init(key):
  k1, k2 = jax.random.split(key)
  return {
    "conv": 0.2 * jax.random.normal(k1, (5, 5, 1, FILTERS)),
    "u": divnorm.gdn.nonnegative_init(jnp.full((5, 5), 1.0 / 25)),
    "gamma": divnorm.gdn.nonnegative_init(0.1 * jnp.eye(FILTERS)),
    "beta": divnorm.gdn.nonnegative_init(jnp.ones(FILTERS)),
    "dense": 0.05 * jax.random.normal(k2, (14 * 14 * FILTERS, 10)),
  }


def learned_pool(z, params):
  pool = {(1, 2): K.learned_kernel(params["u"]), 3: K.learned_mixing(params["gamma"])}
  beta = divnorm.gdn.nonnegative(params["beta"], minimum=1e-6)
  return normalize(z, None, pool, sigma=jnp.sqrt(beta), pool="sum")


def logits(params, x):
  z = jax.lax.conv_general_dilated(x, params["conv"], (1, 1), "SAME",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  h = jax.nn.relu(learned_pool(z, params))
  h = h.reshape(h.shape[0], 14, 2, 14, 2, FILTERS).mean((2, 4))
  return h.reshape(h.shape[0], -1) @ params["dense"]


def loss(params, x, y):
  return optax.softmax_cross_entropy_with_integer_labels(logits(params, x), y).mean()


optimizer = optax.adam(3e-3)
params = init(jax.random.key(0))
state = optimizer.init(params)


@jax.jit
def step(params, state, x, y):
  value, grads = jax.value_and_grad(loss)(params, x, y)
  updates, state = optimizer.update(grads, state, params)
  return optax.apply_updates(params, updates), state, value


rng = np.random.default_rng(0)
losses = []
for _ in range(TRAIN_STEPS):
  idx = rng.integers(0, len(images), BATCH)
  params, state, value = step(params, state, jnp.asarray(images[idx]), jnp.asarray(labels[idx]))
  losses.append(float(value))
print(f"cross entropy: first {losses[0]:.3f}, last 20 steps {np.mean(losses[-20:]):.3f}")

# %% [markdown]
# What the layer learned: the spatial pool $u$, and the channel weights $\gamma_{ij}$ (the
# weight of filter $j$ in the pool of filter $i$) against how similar the two filters are
# (absolute cosine of their 5x5 kernels). Burg et al. (2021) found in V1 that features are
# normalized preferentially by similar features; a positive trend here would agree.

# %%
u = np.asarray(divnorm.gdn.nonnegative(params["u"]))
gamma = np.asarray(divnorm.gdn.nonnegative(params["gamma"]))
w = np.asarray(params["conv"]).reshape(25, FILTERS)
w = w / np.linalg.norm(w, axis=0, keepdims=True)
similarity = np.abs(w.T @ w)
off = ~np.eye(FILTERS, dtype=bool)

fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
axes[0].imshow(u, cmap="magma")
axes[0].set(title="learned spatial pool u", xticks=[], yticks=[])
axes[1].imshow(gamma, cmap="magma")
axes[1].set(title="learned channel weights gamma", xlabel="j (pooled)", ylabel="i")
axes[2].scatter(similarity[off], gamma[off], s=8)
axes[2].set(xlabel="|cos| of filters i, j", ylabel="gamma_ij", title="pool weight vs similarity")
fig.tight_layout()
print("Spearman correlation (off-diagonal):",
      f"{np.corrcoef(np.argsort(np.argsort(similarity[off])), np.argsort(np.argsort(gamma[off])))[0, 1]:.2f}")
