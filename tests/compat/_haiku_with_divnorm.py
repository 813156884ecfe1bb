"""haiku's normalization modules with divnorm's layers in place of haiku's.

haiku's own tests (ported beside this file) import `layer_norm`, `rms_norm`, `group_norm`,
`batch_norm` and `spectral_norm` from here instead of `haiku._src`: each is a copy of haiku's module
namespace whose layer classes are divnorm's. `layer_norm.ERROR_IF_PARAM_AXIS_NOT_EXPLICIT`
reads and sets haiku's own flag, which divnorm's LayerNorm follows.
"""

import types

from haiku._src import batch_norm as _batch_norm
from haiku._src import group_norm as _group_norm
from haiku._src import layer_norm as _layer_norm
from haiku._src import rms_norm as _rms_norm
from haiku._src import spectral_norm as _spectral_norm

from divnorm import haiku as _divnorm_haiku


class _LayerNormModule(types.ModuleType):
  """haiku's layer_norm namespace whose ERROR_IF_PARAM_AXIS_NOT_EXPLICIT is haiku's."""

  @property
  def ERROR_IF_PARAM_AXIS_NOT_EXPLICIT(self):  # noqa: N802 (haiku's name)
    return _layer_norm.ERROR_IF_PARAM_AXIS_NOT_EXPLICIT

  @ERROR_IF_PARAM_AXIS_NOT_EXPLICIT.setter
  def ERROR_IF_PARAM_AXIS_NOT_EXPLICIT(self, value):  # noqa: N802
    _layer_norm.ERROR_IF_PARAM_AXIS_NOT_EXPLICIT = value


def _with_divnorm(module, names, kind=types.ModuleType):
  copy = kind(module.__name__, module.__doc__)
  copy.__dict__.update({k: v for k, v in vars(module).items()
                        if not k.startswith("__") and k != "ERROR_IF_PARAM_AXIS_NOT_EXPLICIT"})
  for name in names:
    setattr(copy, name, getattr(_divnorm_haiku, name))
  return copy


layer_norm = _with_divnorm(_layer_norm, ("LayerNorm", "InstanceNorm"), _LayerNormModule)
rms_norm = _with_divnorm(_rms_norm, ("RMSNorm",))
group_norm = _with_divnorm(_group_norm, ("GroupNorm",))
batch_norm = _with_divnorm(_batch_norm, ("BatchNorm",))
spectral_norm = _with_divnorm(_spectral_norm, ("SpectralNorm", "SNParamsTree"))
