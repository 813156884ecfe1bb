"""Flax NNX modules over the functional core.

The modules with flax's names take flax.nnx's arguments (docs/compatibility.md). Each
divnorm-only module takes the arguments of the function its docstring names, and some of
these, shared by the activation normalizers:

- `num_features`: the size of the feature axes (a tuple for several), the shape of the
  affine parameters and running statistics; None is allowed without them.
- `sigma`: the smoothing term, ``y = v / sqrt(sigma^2 + E_B[v^2])``: finite, >= 0, default 0
  (the modules with flax's names default to flax's `epsilon`, ``epsilon == sigma**2``; give
  one of the two).
- `learn_sigma`: learn sigma as ``exp(log_sigma)``, an `nnx.Param` that starts at `sigma`
  (which must then be a scalar > 0).
- `l1_alpha`: if > 0, add the paper's penalty ``l1_alpha * mean(|v|)`` of the centered input
  to the module's `Penalty` at each call; `pop_penalties` sums and resets them (layers
  stacked by ``nnx.vmap`` too: one scalar). With `axis_name` the mean covers the mapped
  axis, as the statistics do, so a module broadcast over ``nnx.vmap`` takes it. `Penalty`
  is a variable type of its own: ``nnx.split(model, nnx.Param, nnx.BatchStat)`` must name
  it too (``nnx.split(model, nnx.Param, nnx.BatchStat, Penalty)``) or end with ``...``.
- `use_scale`, `use_bias`, `scale_init`, `bias_init`, `param_dtype`: the affine step after
  normalizing, ``y * scale + bias`` with one learned ``scale`` and ``bias`` per feature, as in
  flax.nnx's LayerNorm: whether each is used, their initializers and their dtype.
- `use_running_average`, `momentum`, `axis_name`: as in flax.nnx's BatchNorm: normalize with
  the running statistics (`nnx.BatchStat`) instead of the batch's (a value given to
  ``__call__`` overrides it; ``model.eval()`` sets it), their decay (``new = momentum * old +
  (1 - momentum) * batch``), and a named axis (``shard_map``, ``vmap``) that batch statistics
  also average over.
- `feature_axes` (`channel_axis` in the channel-wise layers): the axes whose entries keep their
  own statistics and affine parameters.
- `rngs`: as flax's, for the parameters' initializers; may be omitted (``nnx.Rngs(0)``).

Their ``__call__(x, ..., *, mask=None)`` takes a boolean `mask`, broadcastable to `x`: the
statistics use only its True entries (`divnorm.normalize`). RMSNorm's `mask` may also be
passed by position, as in flax.nnx (``__call__(x, mask=None)``).

Re-exports only; the implementation is in `divnorm._src.nnx`, `nnx_extra` and
`nnx_families`.
"""

from divnorm._src.nnx import (
  BatchNorm,
  DivisiveNorm,
  GroupNorm,
  InstanceNorm,
  LayerNorm,
  Normalize,
  Penalty,
  RMSNorm,
  pop_penalties,
)
from divnorm._src.nnx_extra import (
  GDN,
  BatchInstanceNorm,
  BatchRenorm,
  LocalResponseNorm,
  MeanOnlyBatchNorm,
  SpectralNorm,
  SwitchableNorm,
  WeightNorm,
  WeightStandardization,
)
from divnorm._src.nnx_families import BurgNorm, CenterSurroundNorm, GaussianNorm, MillerNorm

__all__ = [
  "BatchInstanceNorm",
  "BatchNorm",
  "BatchRenorm",
  "BurgNorm",
  "CenterSurroundNorm",
  "DivisiveNorm",
  "GDN",
  "GaussianNorm",
  "GroupNorm",
  "InstanceNorm",
  "LayerNorm",
  "LocalResponseNorm",
  "MeanOnlyBatchNorm",
  "MillerNorm",
  "Normalize",
  "Penalty",
  "RMSNorm",
  "SpectralNorm",
  "SwitchableNorm",
  "WeightNorm",
  "WeightStandardization",
  "pop_penalties",
]
