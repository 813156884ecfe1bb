"""Where super-resolution images come from: offline photographs, folders, DIV2K.

Every source is a sequence of (name, uint8 image) or, for DIV2K, a lazy sequence
of uint8 RGB images; the pipeline takes the Y channel itself, so all sources go
through one degradation (`sr_image.degrade`).

* `photographs(split)`: the offline default, natural photographs bundled with
  scikit-image (`skimage.data`, no pooch download) and scikit-learn's two sample
  images, split into fixed train and test sets. Grayscale photographs are used as
  their own Y channel.
* `image_folder(path)`: any folder of PNG/JPEG/BMP/TIFF files (Set5, Set14,
  BSD200 as you have them), sorted by file name.
* `Div2k(split)`: DIV2K's high-resolution images through `tfds.data_source`
  (needs the dataset prepared by TFDS; we make the low-resolution inputs
  ourselves and ignore TFDS's `lr`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import numpy as np

# skimage.data loaders whose files ship inside the wheel (no pooch download).
# Test: Set5-like, five photographs of different content and size.
PHOTOGRAPHS_TEST = ("astronaut", "chelsea", "coffee", "camera", "sklearn:flower.jpg")
PHOTOGRAPHS_TRAIN = (
    "rocket", "hubble_deep_field", "retina", "immunohistochemistry", "sklearn:china.jpg",
    "moon", "coins", "grass", "gravel", "brick", "clock", "cell",
)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@functools.cache
def _load_photograph(name: str) -> np.ndarray:
  """Decoded once per process (the set is ~25 MB); read-only."""
  if name.startswith("sklearn:"):
    from sklearn.datasets import load_sample_image
    image = np.asarray(load_sample_image(name.split(":", 1)[1]))
  else:
    import skimage.data
    image = np.asarray(getattr(skimage.data, name)())
  image.setflags(write=False)
  return image


def photographs(split: str) -> list[tuple[str, np.ndarray]]:
  """The offline photographs of `split` ("train" or "test") as (name, uint8 image)."""
  names = {"train": PHOTOGRAPHS_TRAIN, "test": PHOTOGRAPHS_TEST}.get(split)
  if names is None:
    raise ValueError(f"split must be 'train' or 'test'; got {split!r}.")
  return [(name.split(":")[-1].split(".")[0], _load_photograph(name)) for name in names]


def image_folder(path: str) -> list[tuple[str, np.ndarray]]:
  """Every image file in `path` (not recursive), sorted, as (stem, uint8 image)."""
  import skimage.io
  if not os.path.isdir(path):
    raise FileNotFoundError(
        f"image folder {path!r} does not exist; pass a folder of "
        f"{'/'.join(IMAGE_EXTENSIONS)} files (e.g. Set5, Set14 or BSD200's test images).")
  files = sorted(f for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTENSIONS))
  if not files:
    raise FileNotFoundError(f"image folder {path!r} holds no {'/'.join(IMAGE_EXTENSIONS)} files.")
  images = []
  for file in files:
    image = np.asarray(skimage.io.imread(os.path.join(path, file)))
    if image.dtype != np.uint8:
      raise TypeError(f"{file}: expected 8-bit images, got {image.dtype}.")
    images.append((os.path.splitext(file)[0], image))
  return images


class Div2k(Sequence):
  """DIV2K high-resolution images (uint8 RGB), read lazily with `tfds.data_source`.

  Args:
    split: "train" (800 images) or "validation" (100 images).
    config: any `div2k/...` builder config; only its `hr` feature is read, and
      every config holds the same high-resolution images.
    data_dir: TFDS data directory (default: TFDS's, usually ~/tensorflow_datasets).
  """

  def __init__(self, split: str, *, config: str = "div2k/bicubic_x4", data_dir: str | None = None):
    import tensorflow_datasets as tfds
    try:
      self._source = tfds.data_source(config, split=split, data_dir=data_dir)
    except Exception as error:  # TFDS raises several types for "not prepared".
      raise FileNotFoundError(
          f"DIV2K ({config}, split {split!r}) is not prepared in "
          f"{data_dir or 'the default TFDS data_dir'}. Prepare it once where TensorFlow is "
          f"installed: `tfds build {config} --file_format=array_record --data_dir=DIR` "
          f"(data_source reads array_record), then pass data_dir=DIR. "
          f"({type(error).__name__}: {error})") from error

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> np.ndarray:
    return np.asarray(self._source[int(index)]["hr"])
