"""Flax linen modules over the functional core: flax's normalization layers, and the paper's.

`BatchNorm`, `LayerNorm`, `RMSNorm`, `GroupNorm` and `InstanceNorm` take flax.linen's
arguments (order, defaults, variable names), so a flax model takes them with only the import
changed and loads its checkpoints. ``epsilon == sigma**2``; ``use_fast_variance=True``
(flax's default) is the core's one-pass statistics, ``False`` two-pass. Every activation
normalizer also takes divnorm's keyword-only options:

  sigma: the paper's smoothing term, ``sqrt(sigma^2 + E[v^2])`` (or flax's `epsilon`).
  learn_sigma: learn sigma as ``exp(log_sigma)`` (a parameter), starting from sigma > 0.
  l1_alpha: if > 0, sow ``l1_alpha * mean(|v|)`` of the centered input into ``"losses"``
    (appended: once per call); `apply_with_penalty` sums them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.core.scope import CollectionFilter, union_filters
from flax.linen import initializers

from divnorm._src import flax_semantics as fs
from divnorm._src.batch import BatchStats
from divnorm._src.core import normalize
from divnorm._src.fields import Field
from divnorm._src.penalty import l1_penalty
from divnorm._src.presets import divisive_norm
from divnorm._src.reductions import stat_dtype

Axes = int | Sequence[int]
Dtype = Any
Initializer = Callable[..., jax.Array]


def sum_penalties(losses) -> jax.Array:
  """The sum of every leaf of a ``"losses"`` collection, as a float32 scalar."""
  total = jnp.zeros((), jnp.float32)
  for leaf in jax.tree_util.tree_leaves(losses):
    total = total + jnp.sum(jnp.asarray(leaf).astype(jnp.float32))
  return total


def apply_with_penalty(module: nn.Module, variables, *args,
                       mutable: CollectionFilter = False, **kwargs):
  """``module.apply`` that also returns the sum of the sown penalties, counted once.

  `variables` are as ``init`` returns them (a ``"losses"`` entry is ignored); `mutable`
  names other collections to update, as in ``apply``; `args` and `kwargs` go to ``apply``.
  Returns ``(out, penalty, updates)``: the output, the float32 sum of the penalties and the
  updated collections other than ``"losses"`` (``{}`` if `mutable` is False).
  """
  variables = {k: v for k, v in variables.items() if k != "losses"}
  out, updates = module.apply(variables, *args, mutable=union_filters(mutable, "losses"),
                              **kwargs)
  updates = dict(updates)
  return out, sum_penalties(updates.pop("losses", {})), updates


class _Norm(nn.Module):
  """The activation normalizers' base: the call into the core, running statistics, the L1
  penalty and the affine step (flax's parameter names)."""

  _: dataclasses.KW_ONLY
  sigma: Any = None
  learn_sigma: bool = False
  l1_alpha: float = 0.0

  def __post_init__(self):
    fs.check_options(self.learn_sigma, self.l1_alpha, getattr(self, "fast_variance", None))
    super().__post_init__()

  def _sigma(self, sigma=None):
    """`sigma` (default: the field's, else 0), or ``exp(log_sigma)`` with `learn_sigma`."""
    if sigma is None:
      sigma = 0.0 if self.sigma is None else self.sigma
    if not self.learn_sigma:
      return sigma
    return jnp.exp(self.param("log_sigma", lambda _: fs.log_sigma_init(sigma, self.param_dtype)))

  def _axis_name(self):
    """`axis_name`, or None while initializing outside its mapped context (flax's BatchNorm)."""
    return fs.mapped_axis(self, self.is_initializing())

  def _options(self, mask):
    """The core's arguments for flax's `epsilon`, `axis_name` and `use_fast_variance`."""
    mask = None if mask is None else jnp.asarray(mask, bool)  # flax.linen's: nonzero selects
    options = fs.core_options(self, mask, self.is_initializing())
    return {**options, "sigma": self._sigma(options["sigma"])}

  def _normalize(self, x, field: Field, features: Axes, mask, *, center: bool = True):
    """Flax's layers: `x` normalized over `field` (`fs.normalized`), then `_finish`ed."""
    y, v, factors = fs.normalized(x, field, center=center, dtype=self.dtype,
                                  **self._options(mask))
    features = fs.canonical_axes(features, jnp.ndim(x), "feature_axes")
    return self._finish(x, y, v, features, mask, self.dtype, factors)

  def _running(self, function, x, use_running_average, features: Axes, out_dtype,
               stats=BatchStats, state_dtype=jnp.float32, batch_dtype=None, **kwargs):
    """``(y, v[, factors]), stats = function(x, stats, ...)``, stats in ``"batch_stats"``;
    an update promotes them with `batch_dtype`, flax's BatchNorm's batch statistics' (its real
    part: `ema` makes a complex mean complex)."""
    use_ra = nn.merge_param("use_running_average", self.use_running_average, use_running_average)
    features = fs.canonical_axes(features, jnp.ndim(x), "channel_axis" if "channel_axis" in (
        kwargs) else "feature_axes")
    shape = tuple(jnp.shape(x)[a] for a in features)
    running = [self.variable("batch_stats", n, jnp.zeros if n == "mean" else jnp.ones, shape,
                             state_dtype) for n in stats._fields]
    built = jnp.shape(running[0].value)
    fs.check_features(self, f"batch_stats of shape {built}", built, jnp.shape(x), features)
    values = [r.value if use_ra or batch_dtype is None else r.value.astype(
        fs.result_dtype(r.value, jnp.zeros((), batch_dtype).real)) for r in running]
    if self.is_initializing():  # flax's BatchNorm: each mapped index's own statistics
      kwargs["axis_name"] = None
    parts, new = function(x, stats(*values), training=not use_ra, momentum=self.momentum,
                          **kwargs)
    if not use_ra and not self.is_initializing():
      for variable, value in zip(running, new, strict=True):
        variable.value = value
    return self._finish(x, *parts[:2], features, kwargs.get("mask"), out_dtype, *parts[2:])

  def _finish(self, x, y, v, features: tuple[int, ...], mask, dtype, factors=None):
    """Sows the L1 penalty of `v`; flax's affine step; `dtype` None: flax's promotion."""
    if self.l1_alpha:
      self.sow("losses", "l1", l1_penalty(v, self.l1_alpha, mask=mask,
                                          axis_name=self._axis_name()))
    shape = tuple(jnp.shape(x)[a] for a in features)
    scale = self.param("scale", self.scale_init, shape, self.param_dtype) if (
        self.use_scale) else None
    bias = self.param("bias", self.bias_init, shape, self.param_dtype) if getattr(
        self, "use_bias", False) else None  # RMSNorm has no bias
    y = fs.affine(y, scale, bias, features, factors)
    return y.astype(fs.result_dtype(x, scale, bias, dtype=dtype))


class BatchNorm(_Norm):
  """Batch normalization (Ioffe & Szegedy, 2015): flax.linen.BatchNorm's arguments; the
  running ``mean`` and ``var`` are in ``"batch_stats"``. `feature_axes` is `axis`'s alias.

  >>> jax.tree.map(jnp.shape, BatchNorm(True).init(jax.random.key(0), jnp.ones((8, 3))))
  {'batch_stats': {'mean': (3,), 'var': (3,)}, 'params': {'bias': (3,), 'scale': (3,)}}
  """

  use_running_average: bool | None = None
  axis: int = -1
  momentum: float = 0.99
  epsilon: float = 1e-5
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32
  use_bias: bool = True
  use_scale: bool = True
  bias_init: Initializer = initializers.zeros
  scale_init: Initializer = initializers.ones
  axis_name: str | None = None
  axis_index_groups: Any = None
  use_fast_variance: bool = True
  force_float32_reductions: bool = True
  _: dataclasses.KW_ONLY
  fast_variance: bool | None = None
  feature_axes: Axes | None = None

  @nn.compact
  def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
    """Normalizes `x` with the batch's statistics (training) or the running ones."""
    axis = fs.alias("axis", self.axis, -1, "feature_axes", self.feature_axes)
    features = fs.canonical_axes(axis, jnp.ndim(x), "axis")
    dt = jnp.result_type(x) if self.dtype is None else self.dtype  # flax's batch statistics'
    return self._running(
        fs.batch_normalized, x, use_running_average, features, self.dtype,
        state_dtype=jnp.float32 if self.force_float32_reductions else self.param_dtype,
        batch_dtype=stat_dtype(dt) if self.force_float32_reductions else dt,
        feature_axes=features, dtype=self.dtype, **self._options(mask))


class LayerNorm(_Norm):
  """Layer normalization (Ba et al., 2016) over `reduction_axes`: flax.linen.LayerNorm's
  arguments; the paper's LN of a conv layer is ``LayerNorm(reduction_axes=(1, 2, 3))``.

  >>> LayerNorm(1e-5).init_with_output(jax.random.key(0), jnp.arange(3.0)[None])[0].round(3)
  Array([[-1.225,  0.   ,  1.225]], dtype=float32)
  """

  epsilon: float = 1e-6
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32
  use_bias: bool = True
  use_scale: bool = True
  bias_init: Initializer = initializers.zeros
  scale_init: Initializer = initializers.ones
  reduction_axes: Axes = -1
  feature_axes: Axes = -1
  axis_name: str | None = None
  axis_index_groups: Any = None
  use_fast_variance: bool = True
  force_float32_reductions: bool = True
  _: dataclasses.KW_ONLY
  fast_variance: bool | None = None

  @nn.compact
  def __call__(self, x, *, mask=None):
    """Normalizes `x` over `reduction_axes`; `mask` selects the statistics' entries."""
    field = Field(fs.canonical_axes(self.reduction_axes, jnp.ndim(x), "reduction_axes"), ())
    return self._normalize(x, field, self.feature_axes, mask)


class RMSNorm(_Norm):
  """RMS normalization (Zhang & Sennrich, 2019), no centering: flax.linen.RMSNorm's
  arguments (`use_fast_variance` has no effect, as in flax).

  >>> RMSNorm().init_with_output(jax.random.key(0), jnp.ones((2, 4)))[0].shape
  (2, 4)
  """

  epsilon: float = 1e-6
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32
  use_scale: bool = True
  scale_init: Initializer = initializers.ones
  reduction_axes: Axes = -1
  feature_axes: Axes = -1
  axis_name: str | None = None
  axis_index_groups: Any = None
  use_fast_variance: bool = True
  force_float32_reductions: bool = True
  _: dataclasses.KW_ONLY
  fast_variance: bool | None = None

  @nn.compact
  def __call__(self, x, *, mask=None):
    """Divides `x` by its root mean square over `reduction_axes`."""
    field = Field(fs.canonical_axes(self.reduction_axes, jnp.ndim(x), "reduction_axes"), ())
    return self._normalize(x, field, self.feature_axes, mask, center=False)


class GroupNorm(_Norm):
  """Group normalization (Wu & He, 2018): flax.linen.GroupNorm's arguments. The channels
  (the last axis, or divnorm's keyword-only `channel_axis`) form `num_groups` contiguous
  groups; the statistics reduce `reduction_axes` (default: all but the batch axis 0).

  >>> GroupNorm(2).init_with_output(jax.random.key(0), jnp.ones((2, 5, 4)))[0].shape
  (2, 5, 4)
  """

  num_groups: int | None = 32
  group_size: int | None = None
  epsilon: float = 1e-6
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32
  use_bias: bool = True
  use_scale: bool = True
  bias_init: Initializer = initializers.zeros
  scale_init: Initializer = initializers.ones
  reduction_axes: Axes | None = None
  axis_name: str | None = None
  axis_index_groups: Any = None
  use_fast_variance: bool = True
  force_float32_reductions: bool = True
  _: dataclasses.KW_ONLY
  fast_variance: bool | None = None
  channel_axis: int = -1

  @nn.compact
  def __call__(self, x, *, mask=None):
    """Normalizes `x` over `reduction_axes` and the channels of each group."""
    field = fs.group_field(jnp.shape(x), self.num_groups, self.group_size, self.reduction_axes,
                           self.channel_axis)
    return self._normalize(x, field, field.groups[0][0], mask)


class InstanceNorm(_Norm):
  """Instance normalization (Ulyanov et al., 2016): flax.linen.InstanceNorm's arguments;
  every axis but the batch axis (0) and `feature_axes` (divnorm's alias: `channel_axis`).

  >>> InstanceNorm().init_with_output(jax.random.key(0), jnp.ones((2, 5, 5, 3)))[0].shape
  (2, 5, 5, 3)
  """

  epsilon: float = 1e-6
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32
  use_bias: bool = True
  use_scale: bool = True
  bias_init: Initializer = initializers.zeros
  scale_init: Initializer = initializers.ones
  feature_axes: Axes = -1
  axis_name: str | None = None
  axis_index_groups: Any = None
  use_fast_variance: bool = True
  force_float32_reductions: bool = True
  _: dataclasses.KW_ONLY
  fast_variance: bool | None = None
  channel_axis: int | None = None

  @nn.compact
  def __call__(self, x, *, mask=None):
    """Normalizes `x` over every axis but the batch (0) and `feature_axes`."""
    feature_axes = fs.alias("feature_axes", self.feature_axes, -1, "channel_axis",
                            self.channel_axis)
    return self._normalize(x, Field(fs.instance_axes(feature_axes, jnp.ndim(x), self.channel_axis),
                                    ()), feature_axes, mask)


class DivisiveNorm(_Norm):
  """Divisive normalization (Ren et al., 2017) with local windows (`divnorm.divisive_norm`);
  no affine by default, as in the paper's models. The output keeps the input's dtype.
  Arguments: `divnorm.divisive_norm`'s (`summation_window`, `suppression_window`, `channel_axis`,
  `across_channels`, `border`) and the shared ones in `divnorm.linen` (sigma, affine step, L1).

  >>> DivisiveNorm((5, 5), sigma=0.5).apply({}, jnp.ones((2, 8, 8, 3))).shape
  (2, 8, 8, 3)
  """

  summation_window: int | Sequence[int | None]
  suppression_window: int | Sequence[int | None] | None = None
  channel_axis: int = -1
  across_channels: bool = True
  border: str = "valid"
  use_scale: bool = False
  use_bias: bool = False
  scale_init: Initializer = initializers.ones
  bias_init: Initializer = initializers.zeros
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, mask=None):
    """Divides `x`, centered by its local mean, by its local standard deviation."""
    y, v = divisive_norm(
        x, summation_window=self.summation_window, suppression_window=self.suppression_window,
        sigma=self._sigma(), channel_axis=self.channel_axis, across_channels=self.across_channels,
        border=self.border, mask=mask, return_centered=True,
        dtype=fs.function_dtype(x, self.use_scale or self.use_bias))
    features = fs.canonical_axes(self.channel_axis, y.ndim, "channel_axis")
    return self._finish(y, y, v, features, mask, jnp.asarray(x).dtype)


class Normalize(_Norm):
  """The unified normalizer over any fields (`divnorm.normalize`); no affine by default.
  Arguments: `divnorm.normalize`'s (`summation`, `suppression`, `border`, `axis_name`) and the
  shared ones in `divnorm.linen` (`feature_axes`, sigma, affine step, L1).

  >>> Normalize({3: None, 1: 3, 2: 3}, sigma=0.5).apply({}, jnp.ones((2, 8, 8, 3))).shape
  (2, 8, 8, 3)
  """

  summation: Any
  suppression: Any = None
  border: str = "valid"
  feature_axes: Axes = -1
  axis_name: str | None = None
  use_scale: bool = False
  use_bias: bool = False
  scale_init: Initializer = initializers.ones
  bias_init: Initializer = initializers.zeros
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, mask=None):
    """Normalizes `x` over the summation and suppression fields."""
    y, v = normalize(x, self.summation, self.suppression, sigma=self._sigma(), border=self.border,
                     mask=mask, axis_name=self._axis_name(), return_centered=True,
                     dtype=fs.function_dtype(x, self.use_scale or self.use_bias))
    features = fs.canonical_axes(self.feature_axes, y.ndim, "feature_axes")
    return self._finish(y, y, v, features, mask, jnp.asarray(x).dtype)
