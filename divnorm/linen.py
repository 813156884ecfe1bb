"""Flax linen modules over the functional core; the survey's other normalizers too.

Re-exports only; the implementation is in `divnorm._src.linen`.
"""

from divnorm._src.flax_semantics import missing_kernel_error
from divnorm._src.linen import (
  BatchNorm,
  DivisiveNorm,
  GroupNorm,
  InstanceNorm,
  LayerNorm,
  Normalize,
  RMSNorm,
  apply_with_penalty,
  sum_penalties,
)
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
from divnorm._src.linen_families import BurgNorm, CenterSurroundNorm, GaussianNorm, MillerNorm

__all__ = [
  "BatchInstanceNorm",
  "BatchNorm",
  "BatchRenorm",
  "BurgNorm",
  "CenterSurroundNorm",
  "DivisiveNorm",
  "GDN",
  "GaussianNorm",
  "GroupNorm",
  "InstanceNorm",
  "LayerNorm",
  "LocalResponseNorm",
  "MeanOnlyBatchNorm",
  "MillerNorm",
  "Normalize",
  "RMSNorm",
  "SpectralNorm",
  "SwitchableNorm",
  "WeightNorm",
  "WeightStandardization",
  "apply_with_penalty",
  "missing_kernel_error",
  "sum_penalties",
]
