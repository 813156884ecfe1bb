"""divnorm: every network normalizer as one pure JAX function.

The functional API below imports jax and numpy only. Flax modules live in
`divnorm.linen` (imported on first use, so ``import divnorm`` never imports Flax).
"""

import importlib

from divnorm.batch import BatchStats, batch_norm, batch_stats_init
from divnorm.fields import Field, resolve_field
from divnorm.normalize import normalize
from divnorm.presets import divisive_norm, group_norm, instance_norm, layer_norm, rms_norm
from divnorm.regularizers import l1_penalty
from divnorm.stats import field_mean, window_sum

__version__ = "0.1.0"

__all__ = [
    "BatchStats",
    "Field",
    "batch_norm",
    "batch_stats_init",
    "divisive_norm",
    "field_mean",
    "group_norm",
    "instance_norm",
    "l1_penalty",
    "layer_norm",
    "normalize",
    "resolve_field",
    "rms_norm",
    "window_sum",
]

_LAZY_SUBMODULES = ("linen", "nnx")


def __getattr__(name):
  if name in _LAZY_SUBMODULES:
    return importlib.import_module(f"divnorm.{name}")
  raise AttributeError(f"module 'divnorm' has no attribute {name!r}")
