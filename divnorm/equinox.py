"""Equinox modules over the functional core (``pip install divnorm[equinox]``).

Re-exports only; the implementation is in `divnorm._src.equinox`,
`divnorm._src.equinox_extra` and `divnorm._src.equinox_families`.
"""

from divnorm._src.equinox import (
  BatchNorm,
  DivisiveNorm,
  GroupNorm,
  LayerNorm,
  Normalize,
  RMSNorm,
)
from divnorm._src.equinox_extra import (
  GDN,
  BatchInstanceNorm,
  BatchRenorm,
  LocalResponseNorm,
  MeanOnlyBatchNorm,
  SwitchableNorm,
)
from divnorm._src.equinox_families import BurgNorm, CenterSurroundNorm, GaussianNorm, MillerNorm

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
  "LayerNorm",
  "LocalResponseNorm",
  "MeanOnlyBatchNorm",
  "MillerNorm",
  "Normalize",
  "RMSNorm",
  "SwitchableNorm",
]
