"""Flax NNX modules over the functional core.

Re-exports only; the implementation is in `divnorm._src.nnx` and `divnorm._src.nnx_extra`.
"""

from divnorm._src.nnx import (
  BatchNorm,
  DivisiveNorm,
  GroupNorm,
  InstanceNorm,
  LayerNorm,
  Normalize,
  Penalty,
  RMSNorm,
  pop_penalties,
)
from divnorm._src.nnx_extra import (
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
from divnorm._src.nnx_families import BurgNorm, CenterSurroundNorm, GaussianNorm, MillerNorm

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
  "Penalty",
  "RMSNorm",
  "SpectralNorm",
  "SwitchableNorm",
  "WeightNorm",
  "WeightStandardization",
  "pop_penalties",
]
