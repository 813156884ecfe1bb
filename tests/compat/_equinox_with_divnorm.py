"""`equinox` with divnorm's six normalization layers in `eqx.nn`.

equinox's own tests (ported beside this file) import `eqx` from here instead of equinox:
everything else they use (Linear, Sequential, State, inference_mode, serialisation, ...) is
equinox's own, and only these names are divnorm's.
"""

import types

import equinox as _equinox

from divnorm import equinox as _divnorm_equinox

NORMALIZATION_CLASSES = ("LayerNorm", "RMSNorm", "GroupNorm", "BatchNorm", "SpectralNorm",
                         "WeightNorm")

nn = types.ModuleType("nn", _equinox.nn.__doc__)
nn.__dict__.update({k: v for k, v in vars(_equinox.nn).items() if not k.startswith("__")})
for _name in NORMALIZATION_CLASSES:
  setattr(nn, _name, getattr(_divnorm_equinox, _name))

eqx = types.ModuleType("equinox", _equinox.__doc__)
eqx.__dict__.update({k: v for k, v in vars(_equinox).items() if not k.startswith("__")})
eqx.nn = nn
