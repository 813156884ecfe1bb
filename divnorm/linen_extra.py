"""Flax linen modules of the survey's other normalizers (also in `divnorm.linen`).

Re-exports only; the implementation is in `divnorm._src.linen_extra`.
"""

from divnorm._src.flax_semantics import missing_kernel_error
from divnorm._src.linen_extra import (
  GDN,
  BatchInstanceNorm,
  BatchRenorm,
  LocalResponseNorm,
  MeanOnlyBatchNorm,
  SpectralNorm,
  SwitchableNorm,
  WeightNorm,
  WeightStandardization,
)

__all__ = [
  "BatchInstanceNorm",
  "BatchRenorm",
  "GDN",
  "LocalResponseNorm",
  "MeanOnlyBatchNorm",
  "SpectralNorm",
  "SwitchableNorm",
  "WeightNorm",
  "WeightStandardization",
  "missing_kernel_error",
]
