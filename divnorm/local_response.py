"""Local response normalization across channels.

Re-exports only; the implementation is in `divnorm._src.lrn`.
"""

from divnorm._src.lrn import (
  check_lrn_args,
  local_response_norm,
)

__all__ = [
  "check_lrn_args",
  "local_response_norm",
]
