"""Equinox modules over the functional core (``pip install divnorm[equinox]``).

Re-exports only; the implementation is in `divnorm._src.equinox` and
`divnorm._src.equinox_extra`.
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

__all__ = [
  "BatchInstanceNorm",
  "BatchNorm",
  "BatchRenorm",
  "DivisiveNorm",
  "GDN",
  "GroupNorm",
  "LayerNorm",
  "LocalResponseNorm",
  "MeanOnlyBatchNorm",
  "Normalize",
  "RMSNorm",
  "SwitchableNorm",
]
