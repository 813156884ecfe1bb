"""Kernels and mixings of weighted fields, for `divnorm.normalize`'s field specs.

``{1: gaussian(5, sigma=1.0), 2: gaussian(5, sigma=1.0), 3: None}`` is the paper's divisive
normalization with a Gaussian over the image instead of a box; ``{3: mixing(gamma)}`` is
GDN's channel pool. Re-exports only; the implementation is in `divnorm._src.kernels`.
"""

from divnorm._src.kernels import (
  Kernel,
  Mixing,
  box,
  center_surround,
  exponential,
  gaussian,
  kernel,
  learned_kernel,
  learned_mixing,
  miller_width,
  mixing,
)

__all__ = [
  "Kernel",
  "Mixing",
  "box",
  "center_surround",
  "exponential",
  "gaussian",
  "kernel",
  "learned_kernel",
  "learned_mixing",
  "miller_width",
  "mixing",
]
