"""Equinox modules over the functional core (``pip install divnorm[equinox]``).

Re-exports only; the implementation is in `divnorm._src.equinox`.
"""

from divnorm._src.equinox import (
  GDN,
  BatchNorm,
  DivisiveNorm,
  GroupNorm,
  LayerNorm,
  LocalResponseNorm,
  Normalize,
  RMSNorm,
)

__all__ = [
  "BatchNorm",
  "DivisiveNorm",
  "GDN",
  "GroupNorm",
  "LayerNorm",
  "LocalResponseNorm",
  "Normalize",
  "RMSNorm",
]
