"""Equinox modules over the functional core (``pip install divnorm[equinox]``).

Re-exports only; the implementation is in `divnorm._src.equinox`,
`divnorm._src.equinox_extra`, `divnorm._src.equinox_weights` and
`divnorm._src.equinox_families`.
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
from divnorm._src.equinox_weights import SpectralNorm, WeightNorm, WeightStandardization

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
  "SpectralNorm",
  "SwitchableNorm",
  "WeightNorm",
  "WeightStandardization",
]
