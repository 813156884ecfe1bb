"""What each normalization field does, on real photographs.

Crops of the two photographs scikit-learn ships (china.jpg, flower.jpg) go through batch,
layer, instance, group and divisive normalization. For each field the table shows which
statistics come out equalized: per-channel over the batch (BN), per example (LN), per
example and channel (IN), and local contrast (DN), measured as the spread over the image of
the RMS deviation from the local mean in 7x7 windows (p90 / p10; 1.0 is uniform contrast).

    python examples/fields_demo.py [--out runs/demo]
"""

import argparse
import os

import jax.numpy as jnp
import numpy as np
from sklearn.datasets import load_sample_images

import divnorm


def crops(size: int = 96, per_image: int = 4, seed: int = 0) -> np.ndarray:
  """[N, size, size, 3] float32 crops (0..255) of the sample photographs."""
  rng = np.random.default_rng(seed)
  out = []
  for image in load_sample_images().images:
    for _ in range(per_image):
      i = rng.integers(0, image.shape[0] - size)
      j = rng.integers(0, image.shape[1] - size)
      out.append(image[i : i + size, j : j + size])
  return np.stack(out).astype(np.float32)


def local_contrast_spread(y: jnp.ndarray, width: int = 7) -> float:
  """p90 / p10 over positions of the local contrast (border excluded).

  Local contrast: the RMS deviation from the local mean over a width x width x channels
  window, the energy divisive normalization divides by.
  """
  field = divnorm.resolve_field({3: None, 1: width, 2: width}, 4)
  mean = divnorm.field_mean(y, field)
  rms = np.sqrt(np.asarray(divnorm.field_mean((y - mean) ** 2, field)))[:, width:-width, width:-width]
  return float(np.percentile(rms, 90) / np.percentile(rms, 10))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="runs/demo", help="folder for the PNG")
  args = parser.parse_args()

  x = jnp.asarray(crops())
  stats = divnorm.batch_stats_init(x)
  fields = [
    ("input (pixels 0..255)", "-", "-", x),
    ("batch norm", "(0, 1, 2)", "= A",
     divnorm.batch_norm(x, stats, training=True, sigma=1e-2)[0]),
    ("layer norm", "(1, 2, 3)", "= A", divnorm.layer_norm(x, reduction_axes=(1, 2, 3))),
    ("instance norm", "(1, 2)", "= A", divnorm.instance_norm(x)),
    ("group norm, 3 groups", "(1, 2, 3 in group)", "= A", divnorm.group_norm(x, num_groups=3)),
    ("divisive norm 5x5 / 7x7", "{3: None, 1: 5, 2: 5}", "{3: None, 1: 7, 2: 7}",
     divnorm.divisive_norm(x, summation_window=(5, 5), suppression_window=(7, 7), sigma=1.0)),
    ("divisive norm, paper border", "same, zero padded", "same, zero padded",
     divnorm.divisive_norm(x, summation_window=(5, 5), suppression_window=(7, 7), sigma=1.0,
                           border="zeros")),
  ]
  print(f"{x.shape[0]} crops of {x.shape[1]}x{x.shape[2]}x3 from scikit-learn's sample photographs\n")
  header = (f"{'normalizer':30s} {'summation A':22s} {'suppression B':22s} "
            f"{'std/channel over batch':>24s} {'std/example':>14s} {'contrast p90/p10':>17s} "
            f"{'|y| border/inside':>18s}")
  print(header)
  print("-" * len(header))
  for name, a, b, y in fields:
    y = np.asarray(y)
    per_channel = y.std(axis=(0, 1, 2))
    per_example = y.std(axis=(1, 2, 3))
    border = np.concatenate([np.abs(y[:, :2]).ravel(), np.abs(y[:, -2:]).ravel()]).mean()
    inside = np.abs(y[:, 8:-8, 8:-8]).mean()
    print(f"{name:30s} {a:22s} {b:22s} "
          f"{per_channel.min():8.2f} .. {per_channel.max():<8.2f}   "
          f"{per_example.min():5.2f} .. {per_example.max():<5.2f} "
          f"{local_contrast_spread(jnp.asarray(y)):17.2f} {border / inside:18.2f}")
  print("\nReading: BN equalizes each channel over the batch, LN each example, IN each example")
  print("and channel; only DN equalizes local contrast (its p90/p10 over positions falls")
  print("toward 1). The paper's zero padding pulls border statistics toward zero, inflating")
  print("|y| at the image border; border='valid' (the default) averages what exists.")

  try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    return
  os.makedirs(args.out, exist_ok=True)
  fig, axes = plt.subplots(1, len(fields), figsize=(3 * len(fields), 3.3))
  for ax, (name, _, _, y) in zip(axes, fields, strict=True):
    img = np.asarray(y[0])
    img = (img - img.min()) / (img.max() - img.min() + 1e-12)
    ax.imshow(img)
    ax.set_title(name, fontsize=8)
    ax.axis("off")
  path = os.path.join(args.out, "fields.png")
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  print(f"\nwrote {path}")


if __name__ == "__main__":
  main()
