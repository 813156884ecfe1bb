"""Weight normalizers: functions of a kernel.

Re-exports only; the implementation is in `divnorm._src.weights`.
"""

from divnorm._src.weights import (
  kernel_norm,
  spectral_norm,
  spectral_norm_init,
  weight_norm,
  weight_norm_init,
  weight_standardization,
)

__all__ = [
  "kernel_norm",
  "spectral_norm",
  "spectral_norm_init",
  "weight_norm",
  "weight_norm_init",
  "weight_standardization",
]
