"""Image operations of the SRCNN pipeline: YCbCr, modcrop, bicubic resizing.

Everything here is NumPy (float64 inside) and follows the Matlab code that
SRCNN (Dong et al. 2014) and Ren et al. (2017) evaluated with:

* `rgb_to_ycbcr` is Matlab's `rgb2ycbcr` (ITU-R BT.601, studio swing: Y in
  16..235, Cb and Cr in 16..240). uint8 in -> uint8 out, rounded as Matlab
  rounds; floats are read as 0..1 and stay floats.
* `modcrop` drops the last rows/columns so the size divides by the scale.
* `imresize` is Matlab's `imresize(x, scale, 'bicubic')` algorithm: the Keys
  cubic (a = -0.5), output pixel `x` samples input position
  `x / scale + 0.5 * (1 - 1 / scale)`, symmetric border extension and, when
  shrinking with `antialias=True` (Matlab's default), the kernel stretched by
  `1 / scale` so it also low-pass filters. It is written from Matlab's
  documented algorithm and was not compared against Matlab itself (no Matlab
  here); a test checks it against `jax.image.resize` away from the border,
  where the two differ only in border handling (JAX renormalises the in-bounds
  weights, Matlab mirrors the image). Differences from Matlab: we compute in
  float64 and never round to uint8 between the two passes or at the end (SRCNN
  also resized `im2double` images, so its intermediate images were not rounded
  either); `antialias=False` gives plain bicubic interpolation (what PIL's and
  OpenCV's `resize` do when shrinking, which aliases).
"""

from __future__ import annotations

import functools

import numpy as np

SCALES = (2, 3, 4)

# Matlab's rgb2ycbcr: origT and origOffset (for RGB and YCbCr in 0..255).
_YCBCR_FROM_RGB = np.array([
    [65.481, 128.553, 24.966],
    [-37.797, -74.203, 112.0],
    [112.0, -93.786, -18.214],
]) / 255.0
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0])


def check_scale(scale: int) -> int:
  """Returns `scale` if it is one of the supported factors, else raises."""
  if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale not in SCALES:
    raise ValueError(
        f"scale={scale!r} is not supported; super-resolution here uses an integer "
        f"scale in {SCALES} (the paper reports x3 and x4).")
  return int(scale)


def check_rgb(image: np.ndarray, *, name: str = "image") -> np.ndarray:
  """Returns `image` as an array if it is H x W x 3, else raises a clear error."""
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[-1] != 3:
    kind = "a grayscale image" if image.ndim == 2 else f"an array of shape {image.shape}"
    raise ValueError(
        f"{name} must be an RGB image of shape (H, W, 3); got {kind}. Convert grayscale "
        "with np.repeat(x[..., None], 3, -1) or pass it to `luma`, which accepts (H, W).")
  return image


def rgb_to_ycbcr(rgb_HxWx3: np.ndarray) -> np.ndarray:
  """RGB to YCbCr as Matlab's `rgb2ycbcr` (ITU-R BT.601).

  Args:
    rgb_HxWx3: uint8 in 0..255, or floats in 0..1.

  Returns:
    uint8 (rounded, as Matlab) for uint8 input; float64 in 0..1 otherwise.
  """
  rgb_HxWx3 = check_rgb(rgb_HxWx3)
  if rgb_HxWx3.dtype == np.uint8:
    ycc = rgb_HxWx3.astype(np.float64) @ _YCBCR_FROM_RGB.T + _YCBCR_OFFSET
    return np.clip(np.round(ycc), 0, 255).astype(np.uint8)
  if not np.issubdtype(rgb_HxWx3.dtype, np.floating):
    raise TypeError(f"rgb must be uint8 (0..255) or float (0..1); got {rgb_HxWx3.dtype}.")
  rgb = rgb_HxWx3.astype(np.float64)
  return rgb @ _YCBCR_FROM_RGB.T + _YCBCR_OFFSET / 255.0


def ycbcr_to_rgb(ycc_HxWx3: np.ndarray) -> np.ndarray:
  """Inverse of `rgb_to_ycbcr` for float YCbCr in 0..1; float RGB in 0..1 (clipped)."""
  ycc = np.asarray(ycc_HxWx3, np.float64)
  if ycc.ndim != 3 or ycc.shape[-1] != 3:
    raise ValueError(f"ycbcr must have shape (H, W, 3); got {ycc.shape}.")
  rgb = (ycc - _YCBCR_OFFSET / 255.0) @ np.linalg.inv(_YCBCR_FROM_RGB).T
  return np.clip(rgb, 0.0, 1.0)


def luma(image: np.ndarray) -> np.ndarray:
  """The Y channel in 0..255 (uint8) of an 8-bit image, as SRCNN's Matlab code.

  RGB goes through `rgb_to_ycbcr` (Y rounded to uint8, as Matlab does for uint8
  images); an alpha channel is dropped; a grayscale (H, W) image is its own Y, as in
  SRCNN's evaluation code.
  """
  image = np.asarray(image)
  if image.dtype == np.bool_ or image.dtype != np.uint8:
    raise TypeError(f"expected an 8-bit image (uint8); got {image.dtype}.")
  if image.ndim == 2:
    return image
  if image.ndim == 3 and image.shape[-1] == 4:
    image = image[..., :3]
  return rgb_to_ycbcr(image)[..., 0]


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
  """Crops the bottom/right so height and width divide by `scale` (Matlab's modcrop)."""
  scale = check_scale(scale)
  h, w = image.shape[:2]
  return image[: h - h % scale, : w - w % scale]


def _cubic(x: np.ndarray) -> np.ndarray:
  """Keys' cubic convolution kernel with a = -0.5 (Matlab's `cubic`)."""
  ax = np.abs(x)
  ax2, ax3 = ax**2, ax**3
  return ((1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
          + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2)))


@functools.lru_cache(maxsize=256)
def resize_matrix(in_length: int, out_length: int, scale: float, antialias: bool) -> np.ndarray:
  """The (out_length, in_length) matrix of Matlab's bicubic `imresize` along one axis."""
  kernel_width = 4.0
  if scale < 1 and antialias:
    kernel = lambda x: scale * _cubic(scale * x)
    kernel_width /= scale
  else:
    kernel = _cubic
  x = np.arange(1, out_length + 1, dtype=np.float64)[:, None]  # Matlab is 1-based.
  u = x / scale + 0.5 * (1.0 - 1.0 / scale)
  left = np.floor(u - kernel_width / 2)
  taps = int(np.ceil(kernel_width)) + 2
  indices = left + np.arange(taps)[None, :]
  weights = kernel(u - indices)
  weights /= weights.sum(axis=1, keepdims=True)
  # Symmetric extension: ... 2 1 | 1 2 ... n | n n-1 ...
  mirror = np.concatenate([np.arange(in_length), np.arange(in_length)[::-1]])
  indices = mirror[(indices.astype(np.int64) - 1) % (2 * in_length)]
  matrix = np.zeros((out_length, in_length))
  np.add.at(matrix, (np.repeat(np.arange(out_length), taps), indices.ravel()), weights.ravel())
  matrix.setflags(write=False)
  return matrix


def imresize(image: np.ndarray, scale: float, *, antialias: bool = True) -> np.ndarray:
  """Bicubic resize of an (H, W) or (H, W, C) image by `scale`, in float64.

  The output size is `ceil(H * scale) x ceil(W * scale)`, as Matlab's. Values are
  not clipped or rounded.
  """
  image = np.asarray(image, np.float64)
  if image.ndim not in (2, 3):
    raise ValueError(f"image must be (H, W) or (H, W, C); got shape {image.shape}.")
  h, w = image.shape[:2]
  out_h, out_w = int(np.ceil(h * scale - 1e-9)), int(np.ceil(w * scale - 1e-9))
  rows = resize_matrix(h, out_h, float(scale), antialias)
  cols = resize_matrix(w, out_w, float(scale), antialias)
  out = np.tensordot(rows, image, axes=(1, 0))  # (out_h, W, ...)
  out = np.tensordot(cols, out, axes=(1, 1))  # (out_w, out_h, ...)
  return np.swapaxes(out, 0, 1)


def degrade(hr_HxW: np.ndarray, scale: int, *, antialias: bool = True) -> np.ndarray:
  """The network input: bicubic down by `scale`, then bicubic up by `scale`.

  `hr_HxW` must already be modcropped; the output has its shape (float64, same
  range as the input).
  """
  scale = check_scale(scale)
  h, w = hr_HxW.shape[:2]
  if h % scale or w % scale:
    raise ValueError(f"image {h}x{w} does not divide by scale {scale}; modcrop it first.")
  low = imresize(hr_HxW, 1.0 / scale, antialias=antialias)
  return imresize(low, scale, antialias=antialias)
