"""Flax NNX modules over the functional core.

Re-exports only; the implementation is in `divnorm._src.nnx`.
"""

from divnorm._src.nnx import (
  GDN,
  BatchInstanceNorm,
  BatchNorm,
  BatchRenorm,
  DivisiveNorm,
  GroupNorm,
  InstanceNorm,
  LayerNorm,
  LocalResponseNorm,
  MeanOnlyBatchNorm,
  Normalize,
  Penalty,
  RMSNorm,
  SpectralNorm,
  SwitchableNorm,
  WeightNorm,
  WeightStandardization,
  pop_penalties,
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
