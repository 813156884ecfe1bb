"""Where super-resolution images come from: offline photographs, folders, DIV2K.

Every source is a sequence of (name, uint8 image) or, for DIV2K, a lazy sequence
of uint8 RGB images; the pipeline takes the Y channel itself, so all sources go
through one degradation (`sr_image.degrade`).

* `photographs(split)`: the offline default, every camera photograph that an
  installed package ships (`skimage.data` without a pooch download, scikit-learn's
  two sample images, matplotlib's sample photograph), split into fixed, disjoint
  train and test sets, with a validation set carved from train for choosing the
  schedule. Grayscale photographs are used as their own Y channel.
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

from experiments.config import MissingDataError

# Every photograph that a package installed here ships inside its wheel (nothing is
# downloaded; scikit-image's pooch registry is not used). A name is a `skimage.data`
# loader, "sklearn:<file>" (`sklearn.datasets.load_sample_image`), "matplotlib:<file>"
# (matplotlib's sample_data) or "motorcycle_left" (the left view of
# `skimage.data.stereo_motorcycle`; the right view is the same scene and is left out).
# Test: five held-out photographs of different content and size (Set5-sized).
PHOTOGRAPHS_TEST = ("astronaut", "chelsea", "coffee", "camera", "sklearn:flower.jpg")
# Train: every other photograph; never overlaps the test set (a test checks it).
PHOTOGRAPHS_TRAIN = (
    "rocket", "motorcycle_left", "sklearn:china.jpg", "matplotlib:grace_hopper.jpg",
    "coins", "clock", "moon", "text", "page", "brick", "grass", "gravel",
)
# Validation: carved from PHOTOGRAPHS_TRAIN to choose the schedule (pilots train on the
# rest of the training photographs); the study then trains on all of PHOTOGRAPHS_TRAIN.
PHOTOGRAPHS_VALIDATION = ("rocket", "coins", "matplotlib:grace_hopper.jpg")
# What the installed packages ship that is not used, and why (the list is complete for
# scikit-image 0.26, scikit-learn and matplotlib as installed).
NOT_USED = {
    "cat": "the same photograph as chelsea",
    "stereo_motorcycle (right view)": "the same scene as motorcycle_left",
    "hubble_deep_field": "astronomical false-colour composite, not a camera photograph",
    "retina": "medical fundus image",
    "immunohistochemistry": "microscopy",
    "cell": "microscopy",
    "microaneurysms": "microscopy",
    "lfw_subset": "25x25 faces, smaller than one 33x33 patch",
    "horse, logo, colorwheel, checkerboard, shepp_logan_phantom, binary_blobs":
        "synthetic",
    "matplotlib:Minduka_Present_Blue_Pack.png, matplotlib:logo2.png": "rendered graphics",
    "brain, cells3d, eagle, kidney, lily, skin, ...": "need a pooch download",
}
SPLITS = ("train", "test", "validation", "train_without_validation")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@functools.cache
def _load_photograph(name: str) -> np.ndarray:
  """Decoded once per process (the set is ~25 MB); read-only."""
  if name.startswith("sklearn:"):
    from sklearn.datasets import load_sample_image
    image = np.asarray(load_sample_image(name.split(":", 1)[1]))
  elif name.startswith("matplotlib:"):
    import matplotlib.cbook
    import PIL.Image
    path = matplotlib.cbook.get_sample_data(name.split(":", 1)[1], asfileobj=False)
    with PIL.Image.open(path) as file:
      image = np.asarray(file.convert("RGB"))
  elif name == "motorcycle_left":
    import skimage.data
    image = np.asarray(skimage.data.stereo_motorcycle()[0])
  else:
    import skimage.data
    image = np.asarray(getattr(skimage.data, name)())
  image.setflags(write=False)
  return image


def photograph_name(name: str) -> str:
  """The display name of a photograph: "sklearn:flower.jpg" -> "flower"."""
  return name.split(":")[-1].split(".")[0]


def photograph_names(split: str) -> tuple[str, ...]:
  """The loader names of `split`, one of SPLITS."""
  if split == "train_without_validation":
    return tuple(n for n in PHOTOGRAPHS_TRAIN if n not in PHOTOGRAPHS_VALIDATION)
  names = {"train": PHOTOGRAPHS_TRAIN, "test": PHOTOGRAPHS_TEST,
           "validation": PHOTOGRAPHS_VALIDATION}.get(split)
  if names is None:
    raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}.")
  return names


def photographs(split: str) -> list[tuple[str, np.ndarray]]:
  """The offline photographs of `split` (one of SPLITS) as (name, uint8 image)."""
  return [(photograph_name(name), _load_photograph(name)) for name in photograph_names(split)]


def image_folder(path: str) -> list[tuple[str, np.ndarray]]:
  """Every image file in `path` (not recursive), sorted, as (stem, uint8 image)."""
  import skimage.io
  if not os.path.isdir(path):
    raise MissingDataError(
        f"image folder {path!r} does not exist; pass a folder of "
        f"{'/'.join(IMAGE_EXTENSIONS)} files (e.g. Set5, Set14 or BSD200's test images).")
  files = sorted(f for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTENSIONS))
  if not files:
    raise MissingDataError(f"image folder {path!r} holds no {'/'.join(IMAGE_EXTENSIONS)} files.")
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
      raise MissingDataError(
          f"DIV2K ({config}, split {split!r}) is not prepared in "
          f"{data_dir or 'the default TFDS data_dir'}. Prepare it once where TensorFlow is "
          f"installed: `tfds build {config} --file_format=array_record --data_dir=DIR` "
          f"(data_source reads array_record), then pass data_dir=DIR. "
          f"({type(error).__name__}: {error})") from error

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> np.ndarray:
    return np.asarray(self._source[int(index)]["hr"])
