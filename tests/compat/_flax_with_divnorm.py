"""`flax.linen` and `flax.nnx` with divnorm's seven Flax-named normalization modules.

flax's own normalization tests (ported beside this file) import `linen`/`nn` and `nnx`
from here instead of from flax: everything else they use (Dense, Module, initializers,
Sequential, Rngs, ...) is flax's own, and only these names are divnorm's.
"""

import types

from flax import linen as _flax_linen
from flax import nnx as _flax_nnx

from divnorm import linen as _divnorm_linen
from divnorm import nnx as _divnorm_nnx

NORMALIZATION_CLASSES = (
    "BatchNorm", "LayerNorm", "GroupNorm", "RMSNorm", "InstanceNorm", "WeightNorm",
    "SpectralNorm")


def _namespace(name: str, flax_module: types.ModuleType,
               divnorm_module: types.ModuleType) -> types.ModuleType:
  namespace = types.ModuleType(name, flax_module.__doc__)
  namespace.__dict__.update(
      {k: v for k, v in vars(flax_module).items() if not k.startswith("__")})
  for cls in NORMALIZATION_CLASSES:
    setattr(namespace, cls, getattr(divnorm_module, cls))
  return namespace


linen = _namespace("linen", _flax_linen, _divnorm_linen)
nnx = _namespace("nnx", _flax_nnx, _divnorm_nnx)
