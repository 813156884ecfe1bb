"""PSNR and SSIM of super-resolved Y channels, as SRCNN and Ren et al. report them.

Both take 0..255 Y images, round and clip the prediction to 8 bits (SRCNN's
Matlab code converts its output with `uint8`), crop `border` pixels from every
side (the 8 pixels SRCNN 9-5-5 cannot predict with VALID padding), and call
scikit-image:

* PSNR = 10 log10(255^2 / MSE) (`skimage.metrics.peak_signal_noise_ratio`).
* SSIM as Wang et al. 2004: Gaussian window sigma 1.5 (11 x 11, scikit-image
  truncates at 3.5 sigma), K1 = 0.01, K2 = 0.03, population covariances,
  data_range 255, the mean of the SSIM map over the window's valid positions
  (`skimage.metrics.structural_similarity`).
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

DEFAULT_BORDER = 8


def to_uint8(y: np.ndarray) -> np.ndarray:
  """Rounds and clips a 0..255 float image to uint8 (Matlab's `uint8`)."""
  return np.clip(np.round(np.asarray(y, np.float64)), 0, 255).astype(np.uint8)


def _prepare(target: np.ndarray, prediction: np.ndarray, border: int):
  target, prediction = np.asarray(target), np.asarray(prediction)
  if target.ndim != 2 or target.shape != prediction.shape:
    raise ValueError(
        f"target and prediction must be Y images of one shape (H, W); got {target.shape} and "
        f"{prediction.shape}.")
  if border:
    target, prediction = target[border:-border, border:-border], prediction[border:-border, border:-border]
  return to_uint8(target).astype(np.float64), to_uint8(prediction).astype(np.float64)


def psnr(target: np.ndarray, prediction: np.ndarray, *, border: int = DEFAULT_BORDER) -> float:
  """PSNR in dB of 0..255 Y images after cropping `border` pixels per side."""
  target, prediction = _prepare(target, prediction, border)
  return float(peak_signal_noise_ratio(target, prediction, data_range=255))


def ssim(target: np.ndarray, prediction: np.ndarray, *, border: int = DEFAULT_BORDER) -> float:
  """SSIM (Wang et al. 2004) of 0..255 Y images after cropping `border` pixels per side."""
  target, prediction = _prepare(target, prediction, border)
  return float(structural_similarity(
      target, prediction, data_range=255, gaussian_weights=True, sigma=1.5,
      use_sample_covariance=False, K1=0.01, K2=0.03))
