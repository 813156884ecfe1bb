"""Super-resolution data: training patch streams and test images for SRCNN.

The pipeline, as in SRCNN's Matlab code: an 8-bit image -> Y channel (BT.601,
`rgb2ycbcr`, rounded to uint8) -> modcrop(scale) -> bicubic down by `scale` ->
bicubic up by `scale`: that is the network input; the modcropped Y is the
target. Pixels are scaled to 0..1 for the network. The pieces live in
`sr_image` (YCbCr, modcrop, bicubic), `sr_patches` (seeded patches) and
`sr_sources` (offline photographs, folders, DIV2K).

Sources are named by a string:
  "photographs"        the offline photographs (`sr_sources`): train = every training
                       photograph, test = the five held-out test photographs
  "photographs_validation"  for choosing a schedule: train = the training photographs
                       without the validation ones, test = the validation photographs
  "folder:/some/path"  a folder of images (test sets such as Set5, Set14, BSD200)
  "div2k"              DIV2K through tfds.data_source (train/validation splits)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np

from experiments.sr import imaging as sr_image
from experiments.sr import patches as sr_patches
from experiments.sr import sources as sr_sources


@dataclasses.dataclass(frozen=True)
class TestImage:
  """One evaluation image at one scale.

  Attributes:
    name: file or loader name.
    target: uint8 Y, modcropped (H x W).
    bicubic: float32 network input in 0..1 (H x W), the bicubic up-sampling of
      the bicubic down-sampling of `target`.
    chroma: float32 (H x W x 2) Cb, Cr in 0..1 of the bicubic image, to colour
      outputs for display (None for grayscale images).
  """
  name: str
  target: np.ndarray
  bicubic: np.ndarray
  chroma: np.ndarray | None


PHOTOGRAPH_SOURCES = {  # source -> {split: split of `sr_sources.photographs`}
    "photographs": {"train": "train", "test": "test"},
    "photographs_validation": {"train": "train_without_validation", "test": "validation"},
}


def _split_for(source: str, split: str) -> str:
  if source == "div2k":
    return {"train": "train", "test": "validation"}[split]
  return PHOTOGRAPH_SOURCES.get(source, {}).get(split, split)


def _check_split(split: str) -> None:
  if split not in ("train", "test"):
    raise ValueError(f"split must be 'train' or 'test'; got {split!r}.")


def images(source: str, split: str, *, data_dir: str | None = None) -> Sequence:
  """The uint8 images of a named `source` and `split` ("train" or "test").

  Returns a sequence of images (lazy for DIV2K).
  """
  _check_split(split)
  if source in PHOTOGRAPH_SOURCES:
    return [image for _, image in sr_sources.photographs(_split_for(source, split))]
  if source.startswith("folder:"):
    return [image for _, image in sr_sources.image_folder(source.split(":", 1)[1])]
  if source == "div2k":
    return sr_sources.Div2k(_split_for(source, split), data_dir=data_dir)
  raise ValueError(
      f"unknown source {source!r}; use 'photographs', 'photographs_validation', "
      "'folder:/path/to/images' or 'div2k'.")


def named_images(source: str, split: str, *, data_dir: str | None = None,
                 limit: int | None = None) -> list[tuple[str, np.ndarray]]:
  """Like `images`, with names, loaded eagerly (at most `limit` images)."""
  _check_split(split)
  if source in PHOTOGRAPH_SOURCES:
    pairs = sr_sources.photographs(_split_for(source, split))
  elif source.startswith("folder:"):
    pairs = sr_sources.image_folder(source.split(":", 1)[1])
  else:
    seq = images(source, split, data_dir=data_dir)
    count = len(seq) if limit is None else min(limit, len(seq))
    pairs = [(f"{source}_{split}_{i:04d}", seq[i]) for i in range(count)]
  return pairs[:limit] if limit is not None else pairs


def test_image(name: str, image: np.ndarray, *, scale: int, antialias: bool = True) -> TestImage:
  """Prepares one evaluation image at `scale` (see `TestImage`)."""
  scale = sr_image.check_scale(scale)
  image = np.asarray(image)
  if image.ndim == 3 and image.shape[-1] == 4:
    image = image[..., :3]
  target = sr_image.modcrop(sr_image.luma(image), scale)
  bicubic = sr_image.degrade(target.astype(np.float64), scale, antialias=antialias) / 255.0
  chroma = None
  if image.ndim == 3:
    cbcr = sr_image.rgb_to_ycbcr(sr_image.modcrop(image, scale))[..., 1:].astype(np.float64)
    chroma = (sr_image.degrade(cbcr, scale, antialias=antialias) / 255.0).astype(np.float32)
  return TestImage(name, target, bicubic.astype(np.float32), chroma)


def test_set(source: str, *, scale: int, data_dir: str | None = None,
             limit: int | None = None, antialias: bool = True) -> list[TestImage]:
  """All test images of `source` at `scale`."""
  return [test_image(name, image, scale=scale, antialias=antialias)
          for name, image in named_images(source, "test", data_dir=data_dir, limit=limit)]


def train_batches(source: str, *, scale: int, patch_size: int = 33, batch_size: int,
                  seed: int, start_step: int = 0, data_dir: str | None = None,
                  antialias: bool = True, augment: bool = False, patches_per_read: int = 8,
                  process_index: int = 0, process_count: int = 1
                  ) -> Iterator[dict[str, np.ndarray]]:
  """Endless seeded {"input", "target"} batches of float32 (B, P, P, 1) patches in 0..1.

  See `sr_patches.batches`; in-memory sources are converted to Y once here and
  checked to hold a patch, so a bad image fails now, not at an unlucky draw.
  """
  sr_image.check_scale(scale)
  train = images(source, "train", data_dir=data_dir)
  if not isinstance(train, sr_sources.Div2k):
    train = [sr_image.luma(image) for image in train]
    for i, y in enumerate(train):
      sr_patches.check_size(sr_image.modcrop(y, scale), patch_size, name=f"training image {i}")
  return sr_patches.batches(train, scale=scale, patch_size=patch_size, batch_size=batch_size,
                            seed=seed, start_step=start_step, antialias=antialias,
                            augment=augment, patches_per_read=patches_per_read, process_index=process_index,
                            process_count=process_count)
