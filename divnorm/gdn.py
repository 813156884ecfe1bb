"""Generalized divisive normalization (Balle et al., 2016).

Re-exports only; the implementation is in `divnorm._src.gdn`.
"""

from divnorm._src.gdn import (
  BETA_MIN,
  PEDESTAL,
  GDNParams,
  gdn,
  gdn_init,
  gdn_values,
  igdn,
  nonnegative,
  nonnegative_init,
)

__all__ = [
  "BETA_MIN",
  "GDNParams",
  "PEDESTAL",
  "gdn",
  "gdn_init",
  "gdn_values",
  "igdn",
  "nonnegative",
  "nonnegative_init",
]
