"""Seeded sampling of aligned (bicubic input, high-resolution target) Y patches.

A patch is cut from the degradation of a region around it, not of the whole
image: the region is aligned to the scale grid and extends `margin(scale)`
pixels past the patch (more than the reach of the two bicubic passes), so the
patch equals the same crop of `degrade(whole image)` up to float rounding (a
test checks this) while a 2K DIV2K image is never resized whole.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from experiments.sr import imaging as sr_image


def margin(scale: int) -> int:
  """HR pixels a bicubic down+up pass reaches: 2*scale down (antialiased), 2*scale up."""
  return 4 * scale + 2


def crop_border(x: np.ndarray, border: int, *, axes: tuple[int, int] = (0, 1)) -> np.ndarray:
  """Removes `border` pixels from each side of the two spatial `axes`."""
  if border == 0:
    return x
  index = [slice(None)] * x.ndim
  for axis in axes:
    if x.shape[axis] <= 2 * border:
      raise ValueError(f"axis {axis} of size {x.shape[axis]} is too small to crop {border} per side.")
    index[axis] = slice(border, x.shape[axis] - border)
  return x[tuple(index)]


def check_size(hr_HxW: np.ndarray, patch_size: int, *, name: str = "image") -> None:
  """Raises if the image cannot hold one patch."""
  h, w = hr_HxW.shape[:2]
  if h < patch_size or w < patch_size:
    raise ValueError(
        f"{name} is {h}x{w} (after modcrop), smaller than a {patch_size}x{patch_size} patch; "
        "drop it from the training set or lower patch_size.")


def sample_pair(
    y_HxW: np.ndarray, *, scale: int, patch_size: int, rng: np.random.Generator,
    antialias: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """One random (input, target) patch pair from an 8-bit Y image.

  Args:
    y_HxW: uint8 luma; modcropped here.
    scale: 2, 3 or 4.
    patch_size: side of the square patch (33 in SRCNN).
    rng: NumPy generator; the only source of randomness.
    antialias: see `sr_image.imresize`.

  Returns:
    float32 (input, target), each patch_size x patch_size, in 0..1.
  """
  scale = sr_image.check_scale(scale)
  hr = sr_image.modcrop(y_HxW, scale)
  check_size(hr, patch_size)
  h, w = hr.shape
  py, px = int(rng.integers(h - patch_size + 1)), int(rng.integers(w - patch_size + 1))
  m = margin(scale)
  r0, c0 = max(0, (py - m) // scale * scale), max(0, (px - m) // scale * scale)
  r1 = min(h, -(-(py + patch_size + m) // scale) * scale)
  c1 = min(w, -(-(px + patch_size + m) // scale) * scale)
  region = hr[r0:r1, c0:c1].astype(np.float64)
  up = sr_image.degrade(region, scale, antialias=antialias)
  sl = np.s_[py - r0: py - r0 + patch_size, px - c0: px - c0 + patch_size]
  return (up[sl] / 255.0).astype(np.float32), (region[sl] / 255.0).astype(np.float32)


def dihedral(x_HxW: np.ndarray, k: int) -> np.ndarray:
  """The `k`-th of the 8 rotations/flips of a square patch (k in 0..7; 0 is the identity)."""
  return np.rot90(x_HxW[:, ::-1] if k >= 4 else x_HxW, k % 4)


def batches(
    images: Sequence[np.ndarray], *, scale: int, patch_size: int, batch_size: int, seed: int,
    start_step: int = 0, patches_per_read: int = 8, antialias: bool = True,
    augment: bool = False, process_index: int = 0, process_count: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
  """Endless seeded batches {"input", "target"}: float32 (B, P, P, 1) patches in 0..1.

  Batch `s` is a pure function of (seed, s), so a resumed run continues the same
  stream from `start_step`. The global batch is cut into groups of
  `patches_per_read` patches; group `g` of step `s` draws one image (uniformly,
  so `images` may be a lazy sequence that decodes on access, e.g. DIV2K) and its
  patches with `default_rng([seed, s, g])`. Each process builds only the groups
  that hold its rows (`batch_size / process_count` contiguous rows).

  `augment=True` turns each (input, target) pair by one of the 8 rotations and
  flips (`dihedral`, the same one for both), drawn after the patch from the same
  generator. This is not in the paper (SRCNN trains on unaugmented patches).
  """
  if not len(images):
    raise ValueError("no training images.")
  if batch_size % process_count:
    raise ValueError(f"batch_size={batch_size} does not divide by {process_count} processes.")
  per = batch_size // process_count
  lo, hi = process_index * per, (process_index + 1) * per
  k = max(1, int(patches_per_read))
  step = start_step
  while True:
    xs, ys = [], []
    for g in range(lo // k, -(-hi // k)):
      rng = np.random.default_rng([seed, step, g])
      y = sr_image.luma(images[int(rng.integers(len(images)))])
      for _ in range(min(k, batch_size - g * k)):
        x_p, y_p = sample_pair(y, scale=scale, patch_size=patch_size, rng=rng, antialias=antialias)
        if augment:
          turn = int(rng.integers(8))
          x_p, y_p = dihedral(x_p, turn), dihedral(y_p, turn)
        xs.append(x_p)
        ys.append(y_p)
    off = lo - (lo // k) * k
    yield {"input": np.stack(xs[off:off + per])[..., None],
           "target": np.stack(ys[off:off + per])[..., None]}
    step += 1
