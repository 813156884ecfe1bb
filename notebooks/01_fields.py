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
# # 1. Fields: what each normalizer averages over
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/divnorm-org/divnorm/blob/main/notebooks/01_fields.ipynb)
#
# Ren et al. (ICLR 2017) write batch, layer, instance, group and divisive normalization as one
# formula that differs only in two *fields*: the summation field $A$ whose mean is subtracted
# and the suppression field $B$ whose mean square divides,
#
# $$v = z - E_A[z], \qquad \tilde z = \frac{v}{\sqrt{\sigma^2 + E_B[v^2]}}.$$
#
# This notebook draws $A$ and $B$ on an NHWC tensor for each normalizer, applies each to real
# photographs, and shows the border modes and masks of windowed fields.

# %%
# Setup. In Colab this installs divnorm from its repository; elsewhere install it first
# (`pip install -e ".[experiments]"` in a clone).
import subprocess
import sys

if "google.colab" in sys.modules:
  subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                  "divnorm[experiments] @ git+https://github.com/divnorm-org/divnorm"], check=True)

# %% tags=["parameters"]
# Parameters. DIVNORM_NOTEBOOK_QUICK=1 (the test suite) shrinks the photographs.
import os

QUICK = os.environ.get("DIVNORM_NOTEBOOK_QUICK") == "1"
PHOTO_SIZE = 64 if QUICK else 192   # side of the square crops, in pixels

# %%
import io

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import skimage.data
import skimage.transform
from IPython.display import Image, display

import divnorm

plt.rcParams["figure.dpi"] = 72


def show_photos(fig):
  """Displays a figure of photographs as a JPEG (a PNG of photos is several times larger)."""
  buf = io.BytesIO()
  fig.savefig(buf, format="jpeg", pil_kwargs={"quality": 85})
  plt.close(fig)
  display(Image(buf.getvalue()))

# %% [markdown]
# ## The fields drawn on a tensor
#
# A field is a dict `{axis: None | odd width}`: `None` reduces the axis whole, a width
# averages over a centered window (a tuple of axes means all `None`). Below, a tensor of
# shape `[N=2, H=9, W=9, C=4]` is unrolled into one `H x W` panel per example (rows) and
# channel (columns). For the unit marked with a dot (example 0, channel 1, the center),
# dark cells are in its summation field $A$, light cells in its suppression field $B$.
#
# Which entries are in a field is read from divnorm itself: an entry is in the field of a
# position exactly when the field mean at that position depends on it, its gradient.

# %%
SHAPE = (2, 9, 9, 4)
CENTER = (0, 4, 4, 1)

FIELDS = {
  "batch norm": ((0, 1, 2), (0, 1, 2)),
  "layer norm": ((1, 2, 3), (1, 2, 3)),
  "instance norm": ((1, 2), (1, 2)),
  "group norm, 2 groups": (divnorm.grouped_field((1, 2), -1, 2, SHAPE),
                           divnorm.grouped_field((1, 2), -1, 2, SHAPE)),
  "divisive norm 3x3 / 5x5": ({3: None, 1: 3, 2: 3}, {3: None, 1: 5, 2: 5}),
  "DN within channels": ({1: 3, 2: 3}, {1: 5, 2: 5}),
}


def membership(field, shape=SHAPE, center=CENTER):
  """Boolean array of `shape`: the entries whose values enter the field mean at `center`."""
  if not isinstance(field, divnorm.Field):
    field = divnorm.resolve_field(field, len(shape))

  def mean_at_center(t):
    return jnp.broadcast_to(divnorm.field_mean(t, field), shape)[center]

  return np.asarray(jax.grad(mean_at_center)(jnp.zeros(shape, jnp.float32))) != 0


def draw(name, a, b, axes):
  n_ex, _, _, n_ch = SHAPE
  in_a, in_b = membership(a), membership(b)
  for i in range(n_ex):
    for c in range(n_ch):
      ax = axes[i, c]
      img = np.ones(SHAPE[1:3] + (3,))
      img[in_b[i, :, :, c]] = (1.0, 0.8, 0.5)      # B: light orange
      img[in_a[i, :, :, c]] = (0.15, 0.35, 0.7)    # A: dark blue
      ax.imshow(img, interpolation="nearest")
      ax.set_xticks(np.arange(-0.5, SHAPE[2], 1), minor=True)
      ax.set_yticks(np.arange(-0.5, SHAPE[1], 1), minor=True)
      ax.grid(which="minor", color="0.8", linewidth=0.4)
      ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
      if (i, c) == (CENTER[0], CENTER[3]):
        ax.plot(CENTER[2], CENTER[1], "o", color="crimson", markersize=5)
      if i == 0:
        ax.set_title(f"channel {c}", fontsize=8)
      if c == 0:
        ax.set_ylabel(f"example {i}", fontsize=8)
  axes[0, 0].annotate(name, (0, 1.35), xycoords="axes fraction", fontsize=10, weight="bold")
  return int(in_a.sum()), int(in_b.sum())


fig = plt.figure(figsize=(13, 5.6))
subfigs = fig.subfigures(2, 3, hspace=0.05, wspace=0.04)
sizes = {}
for sub, (name, (a, b)) in zip(subfigs.ravel(), FIELDS.items(), strict=True):
  axes = sub.subplots(SHAPE[0], SHAPE[3])
  sizes[name] = draw(name, a, b, axes)
plt.show()
for name, (na, nb) in sizes.items():
  print(f"{name:26s} |A| = {na:4d} entries, |B| = {nb:4d}")

# %% [markdown]
# Batch norm's field is one channel over the whole batch and every position; layer norm's is
# one example, every channel and position; instance norm's one example and one channel; group
# norm's one example and one group of channels. Divisive normalization is the only one whose
# field is *local*: a window around the position (here 3x3 for $A$ and 5x5 for $B$), across
# all channels by default or within the position's own channel.

# %% [markdown]
# ## What each field does to a photograph
#
# Four photographs from `skimage.data`, cropped and scaled to the same square, as one NHWC
# batch of pixels in 0..255. Each normalizer's output is shown for every photograph, each
# panel stretched to its own range for display.

# %%
def photo(image, size=PHOTO_SIZE):
  h, w = image.shape[:2]
  s = min(h, w)
  crop = image[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s, :3]
  return skimage.transform.resize(crop, (size, size), anti_aliasing=True) * 255.0


images = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(),
          skimage.data.rocket()]
x = jnp.asarray(np.stack([photo(im) for im in images]), jnp.float32)   # [4, S, S, 3]

stats = divnorm.batch_stats_init(x)
outputs = {
  "input": x,
  "batch norm": divnorm.batch_norm(x, stats, training=True, sigma=1e-2)[0],
  "layer norm": divnorm.layer_norm(x, reduction_axes=(1, 2, 3)),
  "instance norm": divnorm.instance_norm(x),
  "group norm (3 groups)": divnorm.group_norm(x, num_groups=3),
  "divisive norm 5x5/7x7": divnorm.divisive_norm(
      x, summation_window=(5, 5), suppression_window=(7, 7), sigma=8.0),
}


def show(img):
  img = np.asarray(img, np.float64)
  return (img - img.min()) / (img.max() - img.min() + 1e-12)


fig, axes = plt.subplots(len(images), len(outputs), figsize=(2.2 * len(outputs), 2.2 * len(images)))
for j, (name, y) in enumerate(outputs.items()):
  for i in range(len(images)):
    axes[i, j].imshow(show(y[i]))
    axes[i, j].axis("off")
  axes[0, j].set_title(name, fontsize=9)
fig.tight_layout()
show_photos(fig)

# %% [markdown]
# What each one equalizes, measured: the spread of each channel's standard deviation over the
# batch (BN makes it 1), of each example's (LN), of each example and channel's (IN), and of
# *local contrast*: the RMS deviation from the local mean in 7x7 windows, as the ratio of its
# 90th to 10th percentile over positions (1.0 would be uniform contrast).

# %%
def local_contrast_spread(y, width=7):
  field = divnorm.resolve_field({3: None, 1: width, 2: width}, 4)
  mean = divnorm.field_mean(y, field)
  rms = np.sqrt(np.asarray(divnorm.field_mean((y - mean) ** 2, field)))
  rms = rms[:, width:-width, width:-width]
  return float(np.percentile(rms, 90) / np.percentile(rms, 10))


print(f"{'':24s}{'std per channel':>18s}{'std per example':>18s}{'std per (ex, ch)':>18s}"
      f"{'contrast p90/p10':>18s}")
for name, y in outputs.items():
  yn = np.asarray(y)
  ch, ex, exch = yn.std(axis=(0, 1, 2)), yn.std(axis=(1, 2, 3)), yn.std(axis=(1, 2))
  print(f"{name:24s}{ch.min():8.2f} ..{ch.max():7.2f}{ex.min():8.2f} ..{ex.max():7.2f}"
        f"{exch.min():8.2f} ..{exch.max():7.2f}{local_contrast_spread(y):18.2f}")

# %% [markdown]
# Batch norm equalizes each channel over the batch, layer norm each example, instance norm
# each example and channel; only divisive normalization evens out local contrast: the flat
# sky of the rocket and the cat's fur end up with comparable texture energy. Its `sigma`
# (here 8, in pixel units) keeps flat regions from being amplified into noise.

# %% [markdown]
# ## Borders
#
# A window near the image border sticks out of the image. `border="valid"` (the default)
# averages only over the entries that exist; `border="zeros"` zero pads and divides by the
# full window size, as the paper's TensorFlow code does. With pixel values around 100, zero
# padding pulls the border means toward 0, so a frame as wide as half the window lights up
# in the output (15x15 windows here).

# %%
kw = dict(summation_window=(15, 15), suppression_window=(15, 15), sigma=8.0)
borders = {mode: divnorm.divisive_norm(x, border=mode, **kw) for mode in ("valid", "zeros")}
fig, axes = plt.subplots(1, 2, figsize=(6, 3.2))
for ax, (mode, y) in zip(axes, borders.items(), strict=True):
  ax.imshow(show(y[1]))
  ax.set_title(f'border="{mode}"', fontsize=10)
  ax.axis("off")
fig.tight_layout()
show_photos(fig)

fig, ax = plt.subplots(figsize=(6, 3))
for mode, y in borders.items():
  ax.plot(np.abs(np.asarray(y)).mean(axis=(0, 1, 3)), label=f'border="{mode}"')
ax.set_xlabel("column")
ax.set_ylabel("mean |output|")
ax.set_title("mean |output| over examples, rows and channels")
ax.legend()
plt.show()

# %% [markdown]
# ## Masks
#
# `mask` (boolean, broadcastable to `x`) restricts every statistic to its True entries:
# masked-out outputs are 0, and nothing outside the mask enters any statistic. Below, the
# left half of each photograph is masked out and then overwritten, once with garbage (values
# up to a million) and once with NaN. Since no statistic reads it, the output does not
# change, even right next to the mask's edge where the windows of divisive normalization
# straddle it; the cell prints the largest change and whether every output is finite.

# %%
cols = jnp.arange(PHOTO_SIZE)[None, None, :, None]
mask = jnp.broadcast_to(cols >= PHOTO_SIZE // 2, x.shape[:3] + (1,))
garbage = jax.random.uniform(jax.random.key(0), x.shape, minval=-1e6, maxval=1e6)
x_garbage = jnp.where(mask, x, garbage)
x_nan = jnp.where(mask, x, jnp.nan)

masked = {
  "layer norm": lambda t: divnorm.layer_norm(t, reduction_axes=(1, 2, 3), mask=mask),
  "instance norm": lambda t: divnorm.instance_norm(t, mask=mask),
  "divisive norm 5x5/7x7": lambda t: divnorm.divisive_norm(
      t, summation_window=(5, 5), suppression_window=(7, 7), sigma=8.0, mask=mask),
}
fig, axes = plt.subplots(1, len(masked), figsize=(3.0 * len(masked), 3.2))
for ax, (name, fn) in zip(axes, masked.items(), strict=True):
  y, y_garbage, y_nan = fn(x), fn(x_garbage), fn(x_nan)
  print(f"{name:22s} largest change: {float(jnp.abs(y - y_garbage).max()):.2g} (garbage), "
        f"{float(jnp.abs(y - y_nan).max()):.2g} (NaN); all finite: "
        f"{bool(jnp.isfinite(y_nan).all())}; masked-out outputs all 0: "
        f"{bool((y_nan[~mask[..., 0]] == 0).all())}")
  ax.imshow(show(y_nan[0]))
  ax.set_title(name, fontsize=9)
  ax.axis("off")
fig.tight_layout()
show_photos(fig)

# %% [markdown]
# Next: [2. Divisive normalization as an activation function](02_dn_activation.ipynb).
