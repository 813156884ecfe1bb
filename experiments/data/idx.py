"""Reader for the IDX format of MNIST / Fashion-MNIST (plain or .gz)."""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from experiments.config import DataError, MissingDataError

# Debian's dataset-fashion-mnist package installs the four files here.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


_REPAIR = ("Replace it: reinstall Debian's dataset-fashion-mnist (`make data`) or copy the "
           "four IDX files again, then pass their folder as --data_dir.")


def read_idx(path: str) -> np.ndarray:
  """Reads one IDX file (optionally gzipped) into an array of its stored shape.

  Raises:
    DataError: the file is damaged (a truncated or corrupt gzip stream, a cut
      header, a size that disagrees with the header); the message names it.
  """
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      data = f.read()
  except (EOFError, gzip.BadGzipFile, zlib.error) as e:
    raise DataError(f"{path} is a damaged gzip file ({type(e).__name__}: {e}). {_REPAIR}") from e
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
    raise DataError(f"{path} is not an IDX file (bad magic number {data[:4]!r}). {_REPAIR}")
  dtype = np.dtype(_DTYPES[data[2]])
  ndim = data[3]
  if len(data) < 4 + 4 * ndim:
    raise DataError(f"{path}: the header is cut short ({len(data)} bytes; a {ndim}-d IDX "
                    f"header has {4 + 4 * ndim}). {_REPAIR}")
  shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
  payload = len(data) - 4 - 4 * ndim
  if payload != int(np.prod(shape)) * dtype.itemsize:
    raise DataError(f"{path}: the header says shape {shape} ({int(np.prod(shape))} values) but "
                    f"the file holds {payload // dtype.itemsize}; it is truncated or damaged. "
                    f"{_REPAIR}")
  array = np.frombuffer(data, dtype, offset=4 + 4 * ndim)
  return array.reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str, array: np.ndarray) -> None:
  """Writes `array` as IDX (gzipped if `path` ends in .gz); used by tests."""
  codes = {np.dtype(v).newbyteorder(">").str if np.dtype(v).itemsize > 1 else np.dtype(v).str: k
           for k, v in _DTYPES.items()}
  dt = np.dtype(array.dtype)
  big = dt.newbyteorder(">") if dt.itemsize > 1 else dt
  header = bytes([0, 0, codes[big.str], array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
  payload = header + np.ascontiguousarray(array, big).tobytes()
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "wb") as f:
    f.write(payload)


def _find(directory: str, stem: str) -> str | None:
  for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
    p = os.path.join(directory, name)
    if os.path.exists(p):
      return p
  return None


def load_idx_split(directory: str | None = None, split: str = "train", *,
                   num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Images uint8 [N, H, W, 1] and labels int32 [N] of an MNIST-style folder.

  Args:
    directory: a folder with the standard files (`train-images-idx3-ubyte[.gz]`,
      `train-labels-idx1-ubyte[.gz]`, `t10k-...`); default: Debian's
      Fashion-MNIST folder.
    split: "train" or "test".
    num_classes: when given, every label must lie in 0..num_classes-1.

  Raises:
    MissingDataError: a file is missing (a FileNotFoundError and a ConfigError).
    DataError: a file is damaged, the two files disagree, or a label is out of range.
  """
  directory = directory or FASHION_MNIST_DIR
  if split not in _FILES:
    raise ValueError(f"unknown split {split!r}; valid choices: {', '.join(_FILES)}.")
  paths = [_find(directory, stem) for stem in _FILES[split]]
  if None in paths:
    missing = [s for s, p in zip(_FILES[split], paths, strict=True) if p is None]
    raise MissingDataError(
        f"no {' / '.join(missing)}[.gz] in {directory}. Install Debian's Fashion-MNIST with "
        "`sudo apt-get install dataset-fashion-mnist` (or `make data`), or name a folder with "
        "the four standard IDX files (MNIST works too) with --set data_dir=FOLDER.")
  images, labels = read_idx(paths[0]), read_idx(paths[1])
  if images.ndim == 3:
    images = images[..., None]
  if len(images) != len(labels):
    raise DataError(f"{paths[0]} holds {len(images)} images but {paths[1]} holds {len(labels)} "
                    f"labels; one of them is damaged. {_REPAIR}")
  if labels.ndim != 1:
    raise DataError(f"{paths[1]}: labels must be one number per image; got shape "
                    f"{labels.shape}. {_REPAIR}")
  if num_classes is not None:
    check_labels(labels, num_classes, source=paths[1])
  return images.astype(np.uint8), labels.astype(np.int32)


def check_labels(labels: np.ndarray, num_classes: int, *, source: str) -> None:
  """Raises a DataError naming `source` if a label lies outside 0..num_classes-1."""
  labels = np.asarray(labels)
  bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
  if bad.size:
    raise DataError(
        f"{source}: {bad.size} labels lie outside the {num_classes} classes 0..{num_classes - 1} "
        f"(e.g. {labels[bad[0]]} at example {bad[0]}); the labels do not belong to this "
        f"dataset or the file is damaged.")
