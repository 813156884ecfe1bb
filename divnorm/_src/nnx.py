"""Flax NNX modules over the functional core: flax's normalization layers, and the paper's.

`BatchNorm`, `LayerNorm`, `RMSNorm`, `GroupNorm` and `InstanceNorm` take flax.nnx's
arguments (order, defaults, attribute names), so a flax model takes them with only the import
changed and loads its state; ``rngs`` may be omitted (``nnx.Rngs(0)``) and `num_features`
may be a tuple (several `feature_axes`). divnorm's keyword-only ``sigma``, ``learn_sigma``
and ``l1_alpha`` are those of `divnorm.linen`; the L1 penalty accumulates in a `Penalty`
variable, which `pop_penalties(model)` sums and resets (inside the loss, once per step).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.module import first_from
from flax.nnx.nn import dtypes, initializers

from divnorm._src import flax_semantics as fs
from divnorm._src.batch import BatchStats
from divnorm._src.checks import describe
from divnorm._src.core import normalize
from divnorm._src.fields import Field
from divnorm._src.penalty import l1_penalty
from divnorm._src.presets import divisive_norm, group_count
from divnorm._src.reductions import stat_dtype

Axes = int | Sequence[int]
Dtype = Any
Initializer = Callable[..., jax.Array]
_EMPTY: Mapping = MappingProxyType({})
_ZEROS, _ONES = initializers.zeros_init(), initializers.ones_init()  # flax's defaults
_NOT_KEPT = ("self", "__class__", "rngs", "scale_init", "bias_init", "scale_metadata",
             "bias_metadata")


class Penalty(nnx.Variable):
  """The L1 penalties a normalizer accumulated since the last `pop_penalties`: an `nnx.Variable`
  (``Penalty(value)``); a module with ``l1_alpha > 0`` keeps a float32 scalar one, ``.penalty``."""


def pop_penalties(model: nnx.Module) -> jax.Array:
  """Sum of every `Penalty` in `model` (float32 scalar); resets them to zero."""
  total = jnp.zeros((), jnp.float32)
  for _, node in nnx.iter_graph(model):
    if isinstance(node, Penalty):
      total = total + jnp.sum(node[...].astype(jnp.float32))  # stacked layers: one each
      node[...] = jnp.zeros_like(node[...])
  return total


class _Norm(nnx.Module):
  """The activation normalizers' base: keeps the arguments, creates the parameters and
  running statistics, calls the core, adds the L1 penalty and the affine step."""

  if TYPE_CHECKING:  # `_setup` sets the arguments, parameters and statistics by name
    def __getattr__(self, name: str) -> Any: ...

  def _setup(self, args: dict, running=()) -> None:
    """Keeps the arguments (as flax), creates the parameters, `Penalty` and `running` stats."""
    for name, value in args.items():
      if name not in _NOT_KEPT:
        setattr(self, name, value)
    fs.check_options(args["learn_sigma"], args["l1_alpha"], args.get("fast_variance"))
    features, rngs = args["num_features"], nnx.Rngs(0) if args["rngs"] is None else args["rngs"]
    shape = fs.shape_of_sizes(features)
    for name in ("scale", "bias"):
      if args.get(f"use_{name}") and features is None:
        raise ValueError(f"{type(self).__name__}: use_scale/use_bias need num_features (the "
                         f"size of the feature axes); pass it, or use_scale=use_bias=False.")
      setattr(self, name, nnx.Param(args[f"{name}_init"](
          rngs.params(), shape, args["param_dtype"]), **args.get(f"{name}_metadata", _EMPTY))
              if args.get(f"use_{name}") else nnx.data(None))
    sigma = self._sigma_value()
    self.log_sigma = nnx.Param(fs.log_sigma_init(sigma, args["param_dtype"])) if (
        args["learn_sigma"]) else nnx.data(None)
    self.penalty = Penalty(jnp.zeros((), jnp.float32)) if args["l1_alpha"] else nnx.data(None)
    for name in running:
      setattr(self, name, nnx.BatchStat((jnp.zeros if name == "mean" else jnp.ones)(
          shape, jnp.float32)))

  def _sigma_value(self):
    """Flax's `epsilon` or divnorm's `sigma` (``epsilon == sigma**2``), checked."""
    if hasattr(self, "epsilon"):
      return fs.sigma_of(self.epsilon, self.sigma, self)
    return 0.0 if self.sigma is None else self.sigma

  def _sigma(self):
    return self._sigma_value() if self.log_sigma is None else jnp.exp(self.log_sigma[...])

  def _params(self):
    return tuple(None if p is None else p[...] for p in (self.scale, self.bias))

  def _promoted_with_params(self, x):
    """`_promoted` of `x` and the parameters as flax passes them to `promote_dtype`:
    ``(x, scale, bias)``, or ``(x, scale)`` for a layer without a bias (RMSNorm)."""
    params = self._params()
    if not hasattr(self, "use_bias"):  # RMSNorm: flax's promote_dtype((x, scale))
      xs, scale = self._promoted(x, params[0])
      return xs, scale, None
    return self._promoted(x, *params)

  def _options(self, mask):
    """The core's arguments for flax's `epsilon`, `axis_name` and `use_fast_variance`."""
    return {**fs.core_options(self, mask), "sigma": self._sigma()}

  def _features(self, x, axes: Axes, name: str = "feature_axes", *,
                checked: bool = True) -> tuple[int, ...]:
    """`axes` of `x`, canonical, checked against `num_features` (an int: its size, as flax)
    where something was built with it (`checked`)."""
    axes = fs.canonical_axes(axes, jnp.ndim(x), name)
    if self.num_features is not None and checked:
      fs.check_features(self, f"num_features={describe(self.num_features)}", self.num_features,
                        jnp.shape(x), axes)
    return axes

  def _normalize(self, x, field: Field, features: Axes, mask, *, center: bool = True):
    """Flax's layers: `x` promoted with the parameters, normalized over `field`, `_finish`ed.
    `num_features` shapes the parameters alone, so without them it is not checked (flax's)."""
    features = self._features(x, features, checked=self.scale is not None or (
        self.bias is not None))
    (x, source), *params = self._promoted_with_params(x)
    y, v, factors = fs.normalized(source, field, center=center, dtype=self.dtype,
                                  **self._options(mask))
    return self._finish(x, y, v, params, features, mask, self.dtype, factors)

  def _promoted(self, x, *rest):
    """``((x, source), *rest)``: flax's `promote_dtype`, and `x` for the core, `source`: `x`
    itself where flax's default promotion only widened it to its statistics dtype (bfloat16
    with float32 parameters), which the core converts in each kernel that reads it."""
    promoted, *rest = self.promote_dtype((x, *rest), dtype=self.dtype)
    x = jnp.asarray(x)
    widened = (self.promote_dtype is dtypes.promote_dtype and x.dtype != promoted.dtype
               and jnp.issubdtype(x.dtype, jnp.floating) and promoted.dtype == stat_dtype(x.dtype))
    return (promoted, x if widened else promoted), *rest

  def _store(self, stats, training: bool) -> None:
    """Updates the running statistics in training (no gradient flows into them)."""
    for name, value in zip(("mean", "var"), stats if training else (), strict=False):
      getattr(self, name)[...] = jax.lax.stop_gradient(value)

  def _running(self, function, x, use_running_average, features: Axes, stats=BatchStats, **kwargs):
    """The survey's layers: ``(y, v), stats = function(x, stats, ...)``, then `_finish`."""
    features = self._features(x, features, "channel_axis" if "channel_axis" in kwargs else (
        "feature_axes"))
    training = not first_from(
        use_running_average, self.use_running_average,
        error_msg=f"No `use_running_average` argument was provided to {type(self).__name__}; "
                  "pass it to the constructor or the call, or use model.train()/model.eval().")
    (y, v), new = function(x, stats(*(getattr(self, n)[...] for n in stats._fields)),
                           training=training, momentum=self.momentum, axis_name=self.axis_name,
                           dtype=fs.function_dtype(x, self.use_scale or self.use_bias), **kwargs)
    self._store(new, training)
    return self._finish(y, y, v, self._params(), features, kwargs.get("mask"),
                        jnp.asarray(x).dtype)

  def _finish(self, x, y, v, params, features: tuple[int, ...], mask, dtype, factors=None):
    """Adds the L1 penalty of `v`; flax's affine step; `dtype` None: flax's promotion."""
    if self.penalty is not None:
      self.penalty[...] += l1_penalty(v, self.l1_alpha, mask=mask,
                                      axis_name=fs.mapped_axis(self)).astype(jnp.float32)
    y = fs.affine(y, *params, features, factors)
    return y.astype(fs.result_dtype(x, *params, dtype=dtype))


class _Running(_Norm):
  """The base of the layers with running statistics: `set_view`, as flax's BatchNorm."""

  def set_view(self, use_running_average: bool | None = None):
    """Used by ``nnx.view`` (``nnx.view(model, use_running_average=True)``).

    Args:
      use_running_average: if True, the stored batch statistics will be used instead of
        computing the batch statistics on the input (flax's; ``nnx.view_info`` reads it).
    """
    if use_running_average is not None:
      self.use_running_average = use_running_average


class BatchNorm(_Running):
  """Batch normalization (Ioffe & Szegedy, 2015): flax.nnx.BatchNorm's arguments; divnorm's
  `feature_axes` is another name of `axis`.

  >>> bn = BatchNorm(3, momentum=0.9)
  >>> bn(jnp.ones((8, 3))).shape, bn.mean.shape
  ((8, 3), (3,))
  """

  def __init__(self, num_features: int, *, use_running_average: bool | None = False, axis: int = -1,
               momentum: float = 0.99, epsilon: float = 1e-5, dtype: Dtype | None = None,
               param_dtype: Dtype = jnp.float32, use_bias: bool = True, use_scale: bool = True,
               bias_init: Initializer = _ZEROS, scale_init: Initializer = _ONES,
               axis_name: str | None = None, axis_index_groups: Any = None,
               use_fast_variance: bool = True, promote_dtype=dtypes.promote_dtype,
               rngs: nnx.Rngs | None = None, bias_metadata: Mapping = _EMPTY,
               scale_metadata: Mapping = _EMPTY, sigma: float | None = None,
               learn_sigma: bool = False, l1_alpha: float = 0.0, fast_variance: bool | None = None,
               feature_axes: Axes | None = None):
    self._setup(locals(), running=("mean", "var"))
    self.axis = fs.alias("axis", axis, -1, "feature_axes", feature_axes)

  def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
    """Normalizes `x` with the batch's statistics (training) or the running ones."""
    use_ra = first_from(
        use_running_average, self.use_running_average,
        error_msg="No `use_running_average` argument was provided to BatchNorm; pass it to "
                  "the constructor or the call, or use model.train()/model.eval().")
    features = self._features(x, self.axis, "axis")
    (x, source), mean, var, *params = self._promoted(
        x, self.mean[...], self.var[...], *self._params())
    # Running averages update from their own values (flax's), not the promoted copies.
    stats = BatchStats(mean, var) if use_ra else BatchStats(self.mean[...], self.var[...])
    (y, v, factors), stats = fs.batch_normalized(
        source, stats, training=not use_ra, feature_axes=features, momentum=self.momentum,
        dtype=self.dtype, **self._options(mask))
    self._store(stats, not use_ra)
    return self._finish(x, y, v, params, features, mask, self.dtype, factors)


class LayerNorm(_Norm):
  """Layer normalization (Ba et al., 2016) over `reduction_axes`: flax.nnx.LayerNorm's args.

  >>> LayerNorm(3, epsilon=1e-5)(jnp.arange(3.0)[None]).round(3)
  Array([[-1.225,  0.   ,  1.225]], dtype=float32)
  """

  def __init__(self, num_features: int | Sequence[int] | None, *, epsilon: float = 1e-6,
               dtype: Dtype | None = None, param_dtype: Dtype = jnp.float32, use_bias: bool = True,
               use_scale: bool = True, bias_init: Initializer = _ZEROS,
               scale_init: Initializer = _ONES, reduction_axes: Axes = -1, feature_axes: Axes = -1,
               axis_name: str | None = None, axis_index_groups: Any = None,
               use_fast_variance: bool = True, promote_dtype=dtypes.promote_dtype,
               rngs: nnx.Rngs | None = None, bias_metadata: Mapping = _EMPTY,
               scale_metadata: Mapping = _EMPTY, sigma: float | None = None,
               learn_sigma: bool = False, l1_alpha: float = 0.0, fast_variance: bool | None = None):
    self._setup(locals())

  def __call__(self, x, *, mask=None):
    """Normalizes `x` over `reduction_axes`; `mask` selects the statistics' entries."""
    field = Field(fs.canonical_axes(self.reduction_axes, jnp.ndim(x), "reduction_axes"), ())
    return self._normalize(x, field, self.feature_axes, mask)


class RMSNorm(_Norm):
  """RMS normalization (Zhang & Sennrich, 2019), no centering: flax.nnx.RMSNorm's arguments.

  >>> RMSNorm(4)(jnp.ones((2, 4))).shape
  (2, 4)
  """

  def __init__(self, num_features: int | Sequence[int] | None, *, epsilon: float = 1e-6,
               dtype: Dtype | None = None, param_dtype: Dtype = jnp.float32, use_scale: bool = True,
               scale_init: Initializer = _ONES, reduction_axes: Axes = -1, feature_axes: Axes = -1,
               axis_name: str | None = None, axis_index_groups: Any = None,
               use_fast_variance: bool = True, promote_dtype=dtypes.promote_dtype,
               rngs: nnx.Rngs | None = None, scale_metadata: Mapping = _EMPTY,
               sigma: float | None = None, learn_sigma: bool = False, l1_alpha: float = 0.0,
               fast_variance: bool | None = None):
    self._setup(locals())

  def __call__(self, x, mask=None):
    """Divides `x` by its root mean square over `reduction_axes`."""
    field = Field(fs.canonical_axes(self.reduction_axes, jnp.ndim(x), "reduction_axes"), ())
    return self._normalize(x, field, self.feature_axes, mask, center=False)


class GroupNorm(_Norm):
  """Group normalization (Wu & He, 2018): flax.nnx.GroupNorm's arguments; the channels (the
  last axis, or divnorm's `channel_axis`) form `num_groups` contiguous groups.

  >>> GroupNorm(4, num_groups=2)(jnp.ones((2, 5, 4))).shape
  (2, 5, 4)
  """

  def __init__(self, num_features: int, num_groups: int | None = 32, group_size: int | None = None,
               *, epsilon: float = 1e-6, dtype: Dtype | None = None,
               param_dtype: Dtype = jnp.float32, use_bias: bool = True, use_scale: bool = True,
               bias_init: Initializer = _ZEROS, scale_init: Initializer = _ONES,
               reduction_axes: Axes | None = None, axis_name: str | None = None,
               axis_index_groups: Any = None, use_fast_variance: bool = True,
               promote_dtype=dtypes.promote_dtype, rngs: nnx.Rngs | None = None,
               bias_metadata: Mapping = _EMPTY, scale_metadata: Mapping = _EMPTY,
               sigma: float | None = None, learn_sigma: bool = False, l1_alpha: float = 0.0,
               fast_variance: bool | None = None, channel_axis: int = -1):
    self._setup(locals())
    self.num_groups = group_count(num_groups, group_size, num_features)
    self.group_size, self.feature_axis = num_features // self.num_groups, channel_axis

  def __call__(self, x, *, mask=None):
    """Normalizes `x` over `reduction_axes` and the channels of each group."""
    field = fs.group_field(jnp.shape(x), self.num_groups, None, self.reduction_axes,
                           self.channel_axis)
    return self._normalize(x, field, field.groups[0][0], mask)


class InstanceNorm(_Norm):
  """Instance normalization (Ulyanov et al., 2016): flax.nnx.InstanceNorm's arguments; every
  axis but the batch axis (0) and `feature_axes` (divnorm's alias: `channel_axis`).

  >>> InstanceNorm(3)(jnp.ones((2, 5, 5, 3))).shape
  (2, 5, 5, 3)
  """

  def __init__(self, num_features: int | Sequence[int] | None, *, epsilon: float = 1e-6,
               dtype: Dtype | None = None, param_dtype: Dtype = jnp.float32, use_bias: bool = True,
               use_scale: bool = True, bias_init: Initializer = _ZEROS,
               scale_init: Initializer = _ONES, feature_axes: Axes = -1,
               axis_name: str | None = None, axis_index_groups: Any = None,
               use_fast_variance: bool = True, promote_dtype=dtypes.promote_dtype,
               rngs: nnx.Rngs | None = None, bias_metadata: Mapping = _EMPTY,
               scale_metadata: Mapping = _EMPTY, sigma: float | None = None,
               learn_sigma: bool = False, l1_alpha: float = 0.0, fast_variance: bool | None = None,
               channel_axis: int | None = None):
    self._setup(locals())
    self.feature_axes = fs.alias("feature_axes", feature_axes, -1, "channel_axis", channel_axis)

  def __call__(self, x, *, mask=None):
    """Normalizes `x` over every axis but the batch (0) and `feature_axes`."""
    field = Field(fs.instance_axes(self.feature_axes, jnp.ndim(x), self.channel_axis), ())
    return self._normalize(x, field, self.feature_axes, mask)


class DivisiveNorm(_Norm):
  """Divisive normalization (Ren et al., 2017) with local windows (`divnorm.divisive_norm`);
  no affine by default. The output keeps the input's dtype.
  Arguments: `divnorm.divisive_norm`'s (`summation_window`, `suppression_window`, `channel_axis`,
  `across_channels`, `border`) and the shared ones in `divnorm.nnx` (sigma, affine step, L1).

  >>> DivisiveNorm(summation_window=(5, 5), sigma=0.5)(jnp.ones((2, 8, 8, 3))).shape
  (2, 8, 8, 3)
  """

  def __init__(self, num_features: int | None = None, *, summation_window, suppression_window=None,
               channel_axis: int = -1, across_channels: bool = True, border: str = "valid",
               use_scale: bool = False, use_bias: bool = False, scale_init: Initializer = _ONES,
               bias_init: Initializer = _ZEROS, param_dtype: Dtype = jnp.float32,
               sigma: float = 0.0, learn_sigma: bool = False, l1_alpha: float = 0.0,
               rngs: nnx.Rngs | None = None):
    self._setup(locals())

  def __call__(self, x, *, mask=None):
    """Divides `x`, centered by its local mean, by its local standard deviation."""
    y, v = divisive_norm(
        x, summation_window=self.summation_window, suppression_window=self.suppression_window,
        sigma=self._sigma(), channel_axis=self.channel_axis, across_channels=self.across_channels,
        border=self.border, mask=mask, return_centered=True,
        dtype=fs.function_dtype(x, self.use_scale or self.use_bias))
    features = self._features(y, self.channel_axis, "channel_axis")
    return self._finish(y, y, v, self._params(), features, mask, jnp.asarray(x).dtype)


class Normalize(_Norm):
  """The unified normalizer over any fields (`divnorm.normalize`); no affine by default.
  Arguments: `divnorm.normalize`'s (`summation`, `suppression`, `border`, `axis_name`) and the
  shared ones in `divnorm.nnx` (`feature_axes`, sigma, affine step, L1).

  >>> Normalize(summation={3: None, 1: 3, 2: 3}, sigma=0.5)(jnp.ones((2, 8, 8, 3))).shape
  (2, 8, 8, 3)
  """

  def __init__(self, num_features: int | None = None, *, summation, suppression=None,
               border: str = "valid", feature_axes: Axes = -1, axis_name: str | None = None,
               use_scale: bool = False, use_bias: bool = False, scale_init: Initializer = _ONES,
               bias_init: Initializer = _ZEROS, param_dtype: Dtype = jnp.float32,
               sigma: float = 0.0, learn_sigma: bool = False, l1_alpha: float = 0.0,
               rngs: nnx.Rngs | None = None):
    self._setup({**locals(), "summation": nnx.data(summation), "suppression": nnx.data(
        suppression)})  # a kernel's or mixing's array is data

  def __call__(self, x, *, mask=None):
    """Normalizes `x` over the summation and suppression fields."""
    y, v = normalize(x, self.summation, self.suppression, sigma=self._sigma(), border=self.border,
                     mask=mask, axis_name=self.axis_name, return_centered=True,
                     dtype=fs.function_dtype(x, self.use_scale or self.use_bias))
    features = self._features(y, self.feature_axes)
    return self._finish(y, y, v, self._params(), features, mask, jnp.asarray(x).dtype)
