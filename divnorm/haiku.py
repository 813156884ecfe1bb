"""Haiku modules over the functional core (``pip install divnorm[haiku]``).

Re-exports only; the implementation is in `divnorm._src.haiku`.
"""

from divnorm._src.haiku import (
  BatchNorm,
  DivisiveNorm,
  GroupNorm,
  InstanceNorm,
  LayerNorm,
  RMSNorm,
)

__all__ = [
  "BatchNorm",
  "DivisiveNorm",
  "GroupNorm",
  "InstanceNorm",
  "LayerNorm",
  "RMSNorm",
]
