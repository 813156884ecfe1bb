"""Haiku modules over the functional core (``pip install divnorm[haiku]``).

Re-exports only; the implementation is in `divnorm._src.haiku` (haiku's layers and the
paper's DivisiveNorm), `divnorm._src.haiku_extra` (the unified normalizer, the survey's
other normalizers and haiku's spectral normalization), `divnorm._src.haiku_weights` (weight
normalization and standardization) and `divnorm._src.haiku_families` (the divisive
normalization families).
"""

from divnorm._src.haiku import (
  BatchNorm,
  DivisiveNorm,
  GroupNorm,
  InstanceNorm,
  LayerNorm,
  RMSNorm,
)
from divnorm._src.haiku_extra import (
  GDN,
  BatchInstanceNorm,
  BatchRenorm,
  LocalResponseNorm,
  MeanOnlyBatchNorm,
  Normalize,
  SNParamsTree,
  SpectralNorm,
  SwitchableNorm,
)
from divnorm._src.haiku_families import BurgNorm, CenterSurroundNorm, GaussianNorm, MillerNorm
from divnorm._src.haiku_weights import WeightNorm, WeightStandardization

__all__ = [
  "GDN",
  "BatchInstanceNorm",
  "BatchNorm",
  "BatchRenorm",
  "BurgNorm",
  "CenterSurroundNorm",
  "DivisiveNorm",
  "GaussianNorm",
  "GroupNorm",
  "InstanceNorm",
  "LayerNorm",
  "LocalResponseNorm",
  "MeanOnlyBatchNorm",
  "MillerNorm",
  "Normalize",
  "RMSNorm",
  "SNParamsTree",
  "SpectralNorm",
  "SwitchableNorm",
  "WeightNorm",
  "WeightStandardization",
]
