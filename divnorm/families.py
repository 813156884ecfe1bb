"""The divisive normalizations of neuroscience and image compression, as presets of
`divnorm.normalize`: Miller et al. (2022), Burg et al. (2021), Pan et al.'s centre-surround
(2021) and Veerabadran et al.'s Gaussian pools (2021). GDN is `divnorm.gdn`.

Re-exports only; the implementation is in `divnorm._src.families`.
"""

from divnorm._src.families import (
  burg_norm,
  burg_penalty,
  center_surround_norm,
  gaussian_filterbank,
  gaussian_norm,
  group_mixing,
  miller_norm,
)

__all__ = [
  "burg_norm",
  "burg_penalty",
  "center_surround_norm",
  "gaussian_filterbank",
  "gaussian_norm",
  "group_mixing",
  "miller_norm",
]
