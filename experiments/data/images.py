"""Image classification datasets as in-memory arrays: IDX folders and TFDS data sources.

Datasets by name (`DATASETS`):
  fashion_mnist       Fashion-MNIST IDX files (offline default; Debian's
                      dataset-fashion-mnist or any folder given as data_dir).
  fashion_mnist_tfds  TFDS `fashion_mnist` through `tfds.data_source`.
  cifar10, cifar100   TFDS `cifar10` / `cifar100` through `tfds.data_source`.

TFDS sources need no TensorFlow: they read prepared `array_record` files.
Examples are read once at start-up into uint8 arrays; training batches are
then one fancy index per field (`experiments.data.batching`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from experiments.config import ConfigError, MissingDataError
from experiments.data import idx

TFDS_NAMES = {"fashion_mnist_tfds": "fashion_mnist", "cifar10": "cifar10", "cifar100": "cifar100"}
DATASETS = ("fashion_mnist", *TFDS_NAMES)
NUM_CLASSES = {"fashion_mnist": 10, "fashion_mnist_tfds": 10, "cifar10": 10, "cifar100": 100}


@dataclasses.dataclass(frozen=True)
class ImageSplit:
  """One split: images uint8 [N, H, W, C], labels int32 [N]."""
  images: np.ndarray
  labels: np.ndarray
  num_classes: int

  def arrays(self) -> dict[str, np.ndarray]:
    return {"image": self.images, "label": self.labels}


def check_dataset(name: str) -> None:
  if name not in DATASETS:
    raise ConfigError(f"unknown dataset {name!r}; valid choices: {', '.join(DATASETS)} "
                      "(e.g. --set dataset=fashion_mnist).")


def _not_prepared(tfds_name: str, data_dir: str | None, err: Exception) -> MissingDataError:
  where = data_dir or "~/tensorflow_datasets"
  return MissingDataError(
      f"TFDS dataset {tfds_name!r} is not prepared in {where} ({type(err).__name__}: "
      f"{str(err)[:200]}). On a machine with internet run\n"
      f"  pip install tensorflow tensorflow-datasets array_record\n"
      f"  tfds build {tfds_name} --file_format=array_record --data_dir={where}\n"
      f"then copy {where}/{tfds_name} here (or pass data_dir=...). Offline, use "
      f"dataset='fashion_mnist' (IDX files).")


def load_tfds_split(tfds_name: str, split: str, *, data_dir: str | None = None,
                    max_examples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Reads a TFDS image dataset with `tfds.data_source` into uint8/int32 arrays."""
  import tensorflow_datasets as tfds
  try:
    source = tfds.data_source(tfds_name, split=split, data_dir=data_dir, download=False)
  except Exception as e:  # tfds raises several types for a missing dataset
    raise _not_prepared(tfds_name, data_dir, e) from e
  n = len(source) if max_examples is None else min(len(source), max_examples)
  first = source[0]
  images = np.empty((n, *np.shape(first["image"])), np.uint8)
  labels = np.empty((n,), np.int32)
  # Start-up only (not the training hot path): one record at a time, which also
  # works under tfds.testing.mock_data.
  for i in range(n):
    ex = first if i == 0 else source[i]
    images[i] = ex["image"]
    labels[i] = ex["label"]
  return images, labels


def load_split(name: str, split: str, *, data_dir: str | None = None,
               max_examples: int | None = None) -> ImageSplit:
  """Loads split "train" or "test" of dataset `name` (see `DATASETS`)."""
  check_dataset(name)
  if name == "fashion_mnist":
    images, labels = idx.load_idx_split(data_dir, split, num_classes=NUM_CLASSES[name])
    if max_examples is not None:
      images, labels = images[:max_examples], labels[:max_examples]
  else:
    images, labels = load_tfds_split(TFDS_NAMES[name], split, data_dir=data_dir,
                                     max_examples=max_examples)
    idx.check_labels(labels, NUM_CLASSES[name], source=f"TFDS {TFDS_NAMES[name]} {split}")
  return ImageSplit(images, labels, NUM_CLASSES[name])


def mean_image(images: np.ndarray) -> np.ndarray:
  """The per-pixel mean image (float32 [H, W, C]) of raw 0..255 pixels."""
  return images.mean(axis=0, dtype=np.float64).astype(np.float32)


def make_preprocess(mean_img: np.ndarray):
  """Batch transform of the paper: raw pixels minus the mean image, float32."""
  def preprocess(batch: dict) -> dict:
    out = dict(batch)
    out["image"] = batch["image"].astype(np.float32) - mean_img
    return out
  return preprocess
