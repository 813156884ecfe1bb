"""Flax linen modules over the functional core; the survey's other normalizers too.

The modules with flax's names take flax.linen's arguments (docs/compatibility.md). Each
divnorm-only module takes the arguments of the function its docstring names, and some of
these, shared by the activation normalizers:

- `sigma`: the smoothing term, ``y = v / sqrt(sigma^2 + E_B[v^2])``: finite, >= 0, default 0
  (the modules with flax's names default to flax's `epsilon`, ``epsilon == sigma**2``; give
  one of the two).
- `learn_sigma`: learn sigma as ``exp(log_sigma)``, a ``"params"`` entry that starts at
  `sigma` (which must then be a scalar > 0).
- `l1_alpha`: if > 0, sow the paper's penalty ``l1_alpha * mean(|v|)`` of the centered input
  into ``"losses"`` (once per call); `apply_with_penalty` sums them. With `axis_name` the
  mean covers the mapped axis, as the statistics do: under ``nn.vmap`` broadcast
  ``"losses"`` as ``"batch_stats"`` (``variable_axes={..., "losses": None}``); a collection
  that ``nn.vmap`` or ``nn.scan`` does not list is dropped, as flax drops any.
- `use_scale`, `use_bias`, `scale_init`, `bias_init`, `param_dtype`: the affine step after
  normalizing, ``y * scale + bias`` with one learned ``scale`` and ``bias`` per feature, as in
  flax's LayerNorm: whether each is used, their initializers and their dtype.
- `use_running_average`, `momentum`, `axis_name`: as in flax's BatchNorm: normalize with the
  running statistics (``"batch_stats"``) instead of the batch's (given here or to
  ``__call__``, not both), their decay (``new = momentum * old + (1 - momentum) * batch``),
  and a named axis (``shard_map``, ``vmap``) that batch statistics also average over.
- `feature_axes` (`channel_axis` in the channel-wise layers): the axes whose entries keep their
  own statistics and affine parameters.

Their ``__call__(x, ..., *, mask=None)`` takes a `mask`, broadcastable to `x`: the statistics
use only its True (as in flax, nonzero) entries (`divnorm.normalize`).

The layers with flax's names compute their statistics in at least float32 whatever
`force_float32_reductions` says; only BatchNorm reads it, for its running statistics' dtype
(docs/compatibility.md).

Re-exports only; the implementation is in `divnorm._src.linen`, `linen_extra`,
`linen_families` and `flax_semantics`.
"""

from divnorm._src.flax_semantics import missing_kernel_error
from divnorm._src.linen import (
  BatchNorm,
  DivisiveNorm,
  GroupNorm,
  InstanceNorm,
  LayerNorm,
  Normalize,
  RMSNorm,
  apply_with_penalty,
  sum_penalties,
)
from divnorm._src.linen_extra import (
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
from divnorm._src.linen_families import BurgNorm, CenterSurroundNorm, GaussianNorm, MillerNorm

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
  "RMSNorm",
  "SpectralNorm",
  "SwitchableNorm",
  "WeightNorm",
  "WeightStandardization",
  "apply_with_penalty",
  "missing_kernel_error",
  "sum_penalties",
]
