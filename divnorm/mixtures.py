"""Batch-norm variants and adaptive mixtures of the core normalizers.

Re-exports only; the implementation is in `divnorm._src.mixtures`.
"""

from divnorm._src.mixtures import (
  SWITCHABLE_STATISTICS,
  MeanStats,
  batch_instance_norm,
  batch_renorm,
  check_renorm_limits,
  check_unit_interval,
  learned_rho,
  mean_only_batch_norm,
  mean_stats_init,
  switchable_norm,
)

__all__ = [
  "MeanStats",
  "SWITCHABLE_STATISTICS",
  "batch_instance_norm",
  "batch_renorm",
  "check_renorm_limits",
  "check_unit_interval",
  "learned_rho",
  "mean_only_batch_norm",
  "mean_stats_init",
  "switchable_norm",
]
