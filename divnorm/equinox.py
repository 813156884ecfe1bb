"""Equinox modules over the functional core (``pip install divnorm[equinox]``).

Re-exports only; the implementation is in `divnorm._src.equinox`.
"""

from divnorm._src.equinox import (
  GDN,
  BatchInstanceNorm,
  BatchNorm,
  BatchRenorm,
  DivisiveNorm,
  GroupNorm,
  LayerNorm,
  LocalResponseNorm,
  MeanOnlyBatchNorm,
  Normalize,
  RMSNorm,
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
