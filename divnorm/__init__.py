"""divnorm: every network normalizer as one pure JAX function.

The functional API below imports jax and numpy only. Flax modules live in
`divnorm.linen` (with the survey's other normalizers re-exported from `divnorm.linen_extra`)
and `divnorm.nnx`, equinox modules in `divnorm.equinox` (``pip install divnorm[equinox]``),
haiku modules in `divnorm.haiku` (``pip install divnorm[haiku]``), each imported on first
use, so ``import divnorm`` never imports Flax, equinox or haiku.
"""

import importlib
import types as _types
import typing as _typing

# gdn and inputs stay module namespaces (divnorm.gdn.gdn, divnorm.inputs.zca, ...);
# families, kernels, local_response, mixtures and weights are public modules too. The
# implementation is private, in divnorm._src; these modules only re-export it.
from divnorm import families, gdn, inputs, kernels, local_response, mixtures, weights
from divnorm._src.batch import BatchStats, batch_norm, batch_stats_init
from divnorm._src.core import normalize
from divnorm._src.fields import Field, grouped_field, resolve_field
from divnorm._src.lrn import local_response_norm
from divnorm._src.mixtures import (
  MeanStats,
  batch_instance_norm,
  batch_renorm,
  mean_only_batch_norm,
  mean_stats_init,
  switchable_norm,
)
from divnorm._src.penalty import l1_penalty
from divnorm._src.presets import divisive_norm, group_norm, instance_norm, layer_norm, rms_norm
from divnorm._src.reductions import window_sum
from divnorm._src.weighted_fields import field_mean
from divnorm._src.weights import (
  spectral_norm,
  spectral_norm_init,
  weight_norm,
  weight_norm_init,
  weight_standardization,
)

__version__ = "0.1.0"

__all__ = [
  "BatchStats",
  "Field",
  "grouped_field",
  "MeanStats",
  "batch_instance_norm",
  "batch_norm",
  "batch_renorm",
  "batch_stats_init",
  "divisive_norm",
  "families",
  "field_mean",
  "gdn",
  "group_norm",
  "inputs",
  "instance_norm",
  "kernels",
  "l1_penalty",
  "layer_norm",
  "local_response",
  "local_response_norm",
  "mean_only_batch_norm",
  "mean_stats_init",
  "mixtures",
  "normalize",
  "resolve_field",
  "rms_norm",
  "spectral_norm",
  "spectral_norm_init",
  "switchable_norm",
  "weight_norm",
  "weight_norm_init",
  "weight_standardization",
  "weights",
  "window_sum",
]

_LAZY_SUBMODULES = ("linen", "linen_extra", "nnx", "equinox", "haiku")


if _typing.TYPE_CHECKING:  # what `__getattr__` imports on first use, for type checkers
  from divnorm import equinox as equinox
  from divnorm import haiku as haiku
  from divnorm import linen as linen
  from divnorm import linen_extra as linen_extra
  from divnorm import nnx as nnx


def __getattr__(name: str) -> _types.ModuleType:
  if name in _LAZY_SUBMODULES:
    try:
      return importlib.import_module(f"divnorm.{name}")
    except ModuleNotFoundError as e:  # its optional library is missing: `import` says which
      if e.name == f"divnorm.{name}":
        raise
      # an attribute that is not there (hasattr, getattr with a default, help) is this error
      raise AttributeError(f"module 'divnorm' has no attribute {name!r}: {e}") from e
  raise AttributeError(f"module 'divnorm' has no attribute {name!r}")


def __dir__():
  """The names above and the lazy submodules, for tab completion (imports none of them)."""
  return sorted({*globals(), *_LAZY_SUBMODULES})
