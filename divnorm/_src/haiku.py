"""Haiku modules over the functional core: haiku's normalization layers, and the paper's.

`LayerNorm`, `InstanceNorm`, `RMSNorm`, `GroupNorm` and `BatchNorm` take dm-haiku 0.0.17's
arguments with its defaults and create its parameters and state (names, shapes, and the
input's dtype), so a haiku model's parameters and state load into them; `scale` and
`offset` passed at call time (conditional normalization) work as in haiku. Their statistics
are divnorm's: in at least float32 (a bfloat16 input gives a bfloat16 output, as haiku's)
and accurate at any offset, where haiku's ``use_fast_variance=True`` and its BatchNorm's
one-pass variance lose every digit (`tests/test_haiku.py`). haiku's ``eps`` is
``sigma**2``.

`DivisiveNorm` is the paper's normalizer as a haiku module. ``import divnorm`` never
imports haiku: ``pip install divnorm[haiku]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

try:
  import haiku as hk
  from haiku._src import layer_norm as _haiku_layer_norm  # its ERROR_IF_PARAM_AXIS_... flag
except ModuleNotFoundError as error:  # haiku is an optional extra
  raise ModuleNotFoundError(f"divnorm.haiku needs dm-haiku ({error}); install it with "
                            f"pip install 'divnorm[haiku]'.", name=error.name) from error

from divnorm._src import flax_semantics as fs
from divnorm._src.checks import (
  check_bool,
  check_int,
  check_momentum,
  check_nonempty,
  check_nonnegative,
)
from divnorm._src.core import normalize_factors, shifted_input
from divnorm._src.fields import Field, grouped_field
from divnorm._src.presets import divisive_norm
from divnorm._src.reductions import stat_dtype
from divnorm._src.statistics import inverse_scale

AxisOrAxes = int | Sequence[int] | slice


def _axes_or_slice(axis, name: str = "axis"):
  """haiku's `axis` (and `param_axis`): a slice, or a tuple of ints."""
  if isinstance(axis, slice):
    return axis
  if isinstance(axis, int):
    return (axis,)
  if isinstance(axis, Iterable) and all(isinstance(a, int) for a in axis):
    return tuple(axis)
  raise ValueError(f"`{name}` should be an int, slice or iterable of ints. Got: {axis}")


def _abs_axes(axis, ndim: int, name: str = "axis") -> tuple[int, ...]:
  """Non-negative, sorted axes of a rank-`ndim` input (haiku's `to_abs_axes`)."""
  if isinstance(axis, slice):
    return tuple(range(ndim)[axis])
  return tuple(sorted({fs.canonical_axes(a, ndim, name)[0] for a in axis}))


def _param_shape(features: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
  """haiku's parameter shape: ``(C,)`` for the last axis, else `shape` with 1 off `features`."""
  if features == (len(shape) - 1,):
    return shape[-1:]
  return tuple(n if a in features else 1 for a, n in enumerate(shape))


def _check_sigma(sigma, learn_sigma: bool = False) -> None:
  """The paper's `sigma` (>= 0) and, to learn it, its start (a scalar > 0): checked when the
  layer is built, not at its first call."""
  check_nonnegative(sigma, "sigma", " (the paper's smoothing term)")
  if check_bool(learn_sigma, "learn_sigma"):
    fs.log_sigma_init(sigma, jnp.float32)


class _Norm(hk.Module):
  """The base: haiku's scale and offset (created, or passed at call time), checked as
  haiku checks them, and the affine step over divnorm's normalized output."""

  def __init__(self, create_scale: bool, create_offset: bool, scale_init, offset_init,
               name: str | None):
    super().__init__(name=name)
    if not create_scale and scale_init is not None:
      raise ValueError("Cannot set `scale_init` if `create_scale=False`.")
    if not create_offset and offset_init is not None:
      raise ValueError("Cannot set `offset_init` if `create_offset=False`.")
    self.create_scale, self.create_offset = create_scale, create_offset
    self.scale_init = scale_init or jnp.ones
    self.offset_init = offset_init or jnp.zeros

  @staticmethod
  def _sigma(sigma, learn_sigma: bool):
    """`sigma`, or with `learn_sigma` ``exp(log_sigma)``: a float32 parameter from `sigma`."""
    if not learn_sigma:
      return sigma
    return jnp.exp(hk.get_parameter("log_sigma", (), jnp.float32,
                                    init=lambda _, dtype: fs.log_sigma_init(sigma, dtype)))

  @hk.transparent  # a helper of __call__: no scope or summary entry of its own
  def _call_time_affine(self, scale, offset) -> None:
    if self.create_scale and scale is not None:
      raise ValueError("Cannot pass `scale` at call time if `create_scale=True`.")
    if self.create_offset and offset is not None:
      raise ValueError("Cannot pass `offset` at call time if `create_offset=True`.")

  @hk.transparent
  def _affine(self, x, normalized, features: tuple[int, ...], scale, offset,
              param_shape=None):
    """``y * scale + offset`` for ``normalized = (y, v, factors)`` (`fs.normalized`), in
    the statistics dtype (a narrow `y`, as `divnorm.normalize` gives it, widened), then in
    haiku's output dtype (the input's, promoted with a scale or offset passed at call
    time). Created parameters are over `features`, in haiku's `param_shape` (default
    `_param_shape`), and take flax's fold (`fs.affine`); arrays passed at call time
    broadcast against `x`, as in haiku."""
    y, _, factors = normalized
    y = y.astype(stat_dtype(y.dtype))
    param_shape = param_shape or _param_shape(features, x.shape)
    if self.create_scale:
      scale = hk.get_parameter("scale", param_shape, x.dtype, init=self.scale_init)
    if self.create_offset:
      offset = hk.get_parameter("offset", param_shape, x.dtype, init=self.offset_init)
    out = fs.result_dtype(x, scale, offset)

    def apply(op, y, a):  # both promoted, explicitly: a complex `a` keeps its imaginary part
      a = jnp.asarray(a)
      with jax.numpy_dtype_promotion("standard"):  # haiku's promotion, made explicit
        dtype = jnp.promote_types(y.dtype, a.dtype)
      return op(y.astype(dtype), jnp.broadcast_to(a.astype(dtype), y.shape))

    if scale is not None and not self.create_scale:  # conditional: no fold
      y = apply(jnp.multiply, y, scale)
      return (y if offset is None else apply(jnp.add, y, offset)).astype(out)
    y = fs.affine(y, scale, offset if self.create_offset else None, features, factors)
    return (y if offset is None or self.create_offset else apply(jnp.add, y, offset)).astype(out)


class LayerNorm(_Norm):
  """Layer normalization (Ba et al., 2016) over `axis`: hk.LayerNorm's arguments. The
  parameters' shape follows `param_axis` (default: the last axis), as in haiku.

  >>> import haiku as hk, jax, jax.numpy as jnp
  >>> from divnorm import haiku as dhk
  >>> f = hk.transform(lambda x: dhk.LayerNorm(-1, True, True)(x))
  >>> x = jnp.arange(3.0)[None]
  >>> f.apply(f.init(jax.random.key(0), x), None, x).round(3)
  Array([[-1.225,  0.   ,  1.225]], dtype=float32)
  """

  def __init__(self, axis: AxisOrAxes, create_scale: bool, create_offset: bool,
               eps: float = 1e-5, scale_init=None, offset_init=None,
               use_fast_variance: bool = False, name: str | None = None, *,
               param_axis: AxisOrAxes | None = None):
    super().__init__(create_scale, create_offset, scale_init, offset_init, name)
    self.axis, self.eps = _axes_or_slice(axis), fs.epsilon_of(eps, name="eps")
    self.use_fast_variance = use_fast_variance
    self._param_axis_passed_explicitly = param_axis is not None
    self.param_axis = (-1,) if param_axis is None else _axes_or_slice(param_axis, "param_axis")

  def __call__(self, inputs, scale=None, offset=None):
    """Normalizes `inputs` over `axis`; `scale` and `offset` only where not created."""
    x = jnp.asarray(inputs)
    self._call_time_affine(scale, offset)
    if jnp.iscomplexobj(x) and self.use_fast_variance:
      raise TypeError("divnorm.haiku.LayerNorm(use_fast_variance=True) takes real inputs; "
                      "haiku's divides complex ones by a complex 'variance' E[x^2] - E[x]^2. "
                      "Pass use_fast_variance=False (haiku's default: E[|x - E[x]|^2], the "
                      "same numbers as haiku's), or normalize the real and imaginary parts "
                      "apart.")
    axes = _abs_axes(self.axis, x.ndim)
    if ((self.create_scale or self.create_offset) and not self._param_axis_passed_explicitly
        and _haiku_layer_norm.ERROR_IF_PARAM_AXIS_NOT_EXPLICIT and axes != (x.ndim - 1,)):
      raise ValueError(f"When axis is not the final dimension we require you to also pass "
                       f"`param_axis` in the ctor. axis={axes} ndim={x.ndim}")
    normalized = fs.normalized(x, Field(axes, ()), sigma=fs.sigma_of(self.eps, name="eps"),
                               mask=None, axis_name=None,
                               fast_variance=bool(self.use_fast_variance), sigma_name="eps")
    return self._affine(x, normalized, _abs_axes(self.param_axis, x.ndim, "param_axis"), scale,
                        offset)


class InstanceNorm(LayerNorm):
  """Instance normalization (Ulyanov et al., 2016) over the spatial axes: hk.InstanceNorm's
  arguments (`data_format` ``"channels_last"`` or ``"channels_first"``, haiku's spellings).

  >>> import haiku as hk, jax, jax.numpy as jnp
  >>> from divnorm import haiku as dhk
  >>> f = hk.transform(lambda x: dhk.InstanceNorm(True, True)(x))
  >>> x = jnp.ones((2, 4, 4, 3))
  >>> f.apply(f.init(jax.random.key(0), x), None, x).shape
  (2, 4, 4, 3)
  """

  def __init__(self, create_scale: bool, create_offset: bool, eps: float = 1e-5,
               scale_init=None, offset_init=None, data_format: str = "channels_last",
               name: str | None = None):
    param_axis = hk.get_channel_index(data_format)
    axis = slice(2, None) if param_axis == 1 else slice(1, -1)
    super().__init__(axis=axis, create_scale=create_scale, create_offset=create_offset,
                     eps=eps, scale_init=scale_init, offset_init=offset_init,
                     param_axis=param_axis, name=name)


class RMSNorm(_Norm):
  """RMS normalization (Zhang & Sennrich, 2019) over `axis`, no centering and no offset:
  hk.RMSNorm's arguments.

  >>> import haiku as hk, jax, jax.numpy as jnp
  >>> from divnorm import haiku as dhk
  >>> f = hk.transform(lambda x: dhk.RMSNorm(-1)(x))
  >>> x = jnp.full((1, 4), 2.0)
  >>> f.apply(f.init(jax.random.key(0), x), None, x).round(6)  # 2 / sqrt(4 + eps)
  Array([[0.999999, 0.999999, 0.999999, 0.999999]], dtype=float32)
  """

  def __init__(self, axis: AxisOrAxes, eps: float = 1e-5, scale_init=None,
               name: str | None = None, create_scale: bool = True, *,
               param_axis: AxisOrAxes | None = None):
    super().__init__(create_scale, False, scale_init, None, name)
    self.axis, self.eps = _axes_or_slice(axis), fs.epsilon_of(eps, name="eps")
    self.param_axis = (-1,) if param_axis is None else _axes_or_slice(param_axis, "param_axis")

  def __call__(self, inputs):
    """Divides `inputs` by its root mean square over `axis` (times `scale`)."""
    x, axes = jnp.asarray(inputs), _abs_axes(self.axis, jnp.ndim(inputs))
    if jnp.iscomplexobj(x):  # haiku's: the mean of x**2 (complex), not of |x|**2
      u = x.astype(stat_dtype(x.dtype))
      normalized = (u * lax.rsqrt(jnp.mean(u * u, axes, keepdims=True) + self.eps), u, None)
    else:
      normalized = fs.normalized(x, Field(axes, ()), center=False, mask=None,
                                 sigma=fs.sigma_of(self.eps, name="eps"), axis_name=None,
                                 fast_variance=False, sigma_name="eps")
    return self._affine(x, normalized, _abs_axes(self.param_axis, x.ndim, "param_axis"), None,
                        None)


class GroupNorm(_Norm):
  """Group normalization (Wu & He, 2018): hk.GroupNorm's arguments. The channels form
  `groups` contiguous groups; `axis` (default: all but the batch axis) are the reduced
  axes, the channel axis among them meaning each group's channels. divnorm's grouped
  field reduces them without haiku's reshape, and the rank may not change between calls.

  >>> import haiku as hk, jax, jax.numpy as jnp
  >>> from divnorm import haiku as dhk
  >>> f = hk.transform(lambda x: dhk.GroupNorm(2)(x))
  >>> x = jnp.ones((2, 5, 4))
  >>> f.apply(f.init(jax.random.key(0), x), None, x).shape
  (2, 5, 4)
  """

  def __init__(self, groups: int, axis: int | slice | Sequence[int] = slice(1, None),
               create_scale: bool = True, create_offset: bool = True, eps: float = 1e-5,
               scale_init=None, offset_init=None, data_format: str = "channels_last",
               name: str | None = None):
    super().__init__(create_scale, create_offset, scale_init, offset_init, name)
    self.axis, self.eps = _axes_or_slice(axis), fs.epsilon_of(eps, name="eps")
    self.groups = check_int(groups, "groups", minimum=1, hint=" (the number of channel groups)")
    self.data_format = data_format
    self.channel_index = hk.get_channel_index(data_format)
    self.rank = None

  def __call__(self, x, scale=None, offset=None):
    """Normalizes `x` over `axis`, each group of channels alone."""
    x = jnp.asarray(x)
    if self.rank is not None and x.ndim != self.rank:
      raise ValueError(f"The rank of the inputs cannot change between calls, the original "
                       f"call was rank={self.rank} but this call was rank={x.ndim}.")
    self._call_time_affine(scale, offset)
    c = self.channel_index % x.ndim
    channels = x.shape[c]
    if channels % self.groups != 0:
      raise ValueError(f"The number of channels must be divisible by the number of groups, "
                       f"was channels={channels}, groups={self.groups}")
    self.rank = x.ndim
    axes = _abs_axes(self.axis, x.ndim)
    others = tuple(a for a in axes if a != c)
    field = (grouped_field(others, c, channels // self.groups, x.shape) if c in axes
             else Field(others, ()))
    normalized = fs.normalized(x, field, sigma=fs.sigma_of(self.eps, name="eps"), mask=None,
                               axis_name=None, fast_variance=False, sigma_name="eps")
    shape = (channels,) if c == x.ndim - 1 else (channels,) + (1,) * (x.ndim - 2)
    return self._affine(x, normalized, (c,), scale, offset, param_shape=shape)


class BatchNorm(_Norm):
  """Batch normalization (Ioffe & Szegedy, 2015): hk.BatchNorm's arguments. The running
  averages are haiku's own `hk.ExponentialMovingAverage` state (``mean_ema`` and
  ``var_ema``, zero-debiased, in the input's dtype) of divnorm's batch statistics, which
  are accurate at any offset where haiku's one-pass variance is not. `cross_replica_axis`
  (and its `cross_replica_axis_index_groups`, pmap only) pool the batch over mapped axes.

  >>> import haiku as hk, jax, jax.numpy as jnp
  >>> from divnorm import haiku as dhk
  >>> f = hk.transform_with_state(lambda x: dhk.BatchNorm(True, True, 0.9)(x, True))
  >>> x = jnp.arange(6.0).reshape(3, 2)
  >>> params, state = f.init(jax.random.key(0), x)
  >>> f.apply(params, state, None, x)[0].round(3)
  Array([[-1.225, -1.225],
         [ 0.   ,  0.   ],
         [ 1.225,  1.225]], dtype=float32)
  """

  def __init__(self, create_scale: bool, create_offset: bool, decay_rate: float,
               eps: float = 1e-5, scale_init=None, offset_init=None,
               axis: Sequence[int] | None = None,
               cross_replica_axis: str | Sequence[str] | None = None,
               cross_replica_axis_index_groups: Sequence[Sequence[int]] | None = None,
               data_format: str = "channels_last", name: str | None = None):
    super().__init__(create_scale, create_offset, scale_init, offset_init, name)
    self.eps = fs.epsilon_of(eps, name="eps")
    check_momentum(decay_rate, "decay_rate", "e.g. 0.9 or 0.99")
    if cross_replica_axis is None and cross_replica_axis_index_groups is not None:
      raise ValueError("`cross_replica_axis` name must be specified if "
                       "`cross_replica_axis_index_groups` are used.")
    self.axis = axis
    self.cross_replica_axis = cross_replica_axis
    self.cross_replica_axis_index_groups = cross_replica_axis_index_groups
    self.channel_index = hk.get_channel_index(data_format)
    self.mean_ema = hk.ExponentialMovingAverage(decay_rate, name="mean_ema")
    self.var_ema = hk.ExponentialMovingAverage(decay_rate, name="var_ema")

  def __call__(self, inputs, is_training: bool, test_local_stats: bool = False, scale=None,
               offset=None):
    """Normalizes with the batch's statistics (training, or `test_local_stats`) or the
    running averages, which training updates."""
    x = jnp.asarray(inputs)
    self._call_time_affine(scale, offset)
    if jnp.iscomplexobj(x):
      raise TypeError("divnorm.haiku.BatchNorm takes real inputs; haiku's complex batch norm "
                      "divides by a complex 'variance' E[x^2] - E[x]^2. Normalize the real and "
                      "imaginary parts apart, or use divnorm.linen.BatchNorm (flax's "
                      "E[|x - E[x]|^2]).")
    # haiku's channel index: negative counts from the end; past the rank it is no axis
    c = self.channel_index + x.ndim if self.channel_index < 0 else self.channel_index
    axes = fs.canonical_axes(tuple(a for a in range(x.ndim) if a != c) if self.axis is None
                             else self.axis, x.ndim, "axis")
    if is_training:
      check_nonempty(x, axes, "BatchNorm")
    sigma, u = fs.sigma_of(self.eps, name="eps"), x.astype(stat_dtype(x.dtype))
    if is_training or test_local_stats:  # one-pass as haiku's, over local axes (if any)
      replicas = self.cross_replica_axis or None  # haiku's test: "" or () is no axis
      axis_name = fs.axis_name_of(replicas, self.cross_replica_axis_index_groups)
      y, v, r, batch = normalize_factors(u, Field(axes, ()), sigma=sigma, axis_name=axis_name,
                                         fast_variance=bool(axes), source=x)
      normalized = (y, v, (shifted_input(u, x, batch.shift), batch.mean, r))
      mean, var = batch.shift + batch.mean, batch.var
    else:
      mean, var = self.mean_ema.average, self.var_ema.average
      v, r = u - mean.astype(u.dtype), inverse_scale(var.astype(u.dtype), sigma)
      normalized = (v * r, v, (v, None, r))
    if is_training:  # haiku's state dtype: the input's (its statistics' dtype)
      dtype = fs.result_dtype(x)
      with jax.numpy_dtype_promotion("standard"):  # haiku's debiasing: float ** int32 count
        self.mean_ema(mean.astype(dtype))
        self.var_ema(var.astype(dtype))
    # haiku's parameters: size 1 on each axis named in `axis` as given (a negative one names
    # none of them), so that its checkpoints load
    named = tuple(self.axis) if isinstance(self.axis, Sequence) else axes
    features = tuple(a for a in range(x.ndim) if a not in named)
    return self._affine(x, normalized, features, scale, offset,
                        param_shape=tuple(1 if a in named else n for a, n in enumerate(x.shape)))


class DivisiveNorm(_Norm):
  """Divisive normalization (Ren et al., 2017) of ``[batch, *spatial, channels]`` (or
  channels first): each position centered by the mean over its summation window (across
  all channels, with `across_channels`) and divided by the root mean square over its
  suppression window; a rank-2 input ``[batch, units]`` is windowed over its units.
  Arguments: `divnorm.divisive_norm`'s windows, `sigma`, `across_channels` and `border`,
  with haiku's `create_scale`, `create_offset` (per channel; off by default, as the paper's
  layer) and `data_format`; `learn_sigma` learns sigma as ``exp(log_sigma)`` (a float32
  parameter), from `sigma` > 0. At call time, `mask` (True: in) selects the entries that
  enter the statistics (masked-out outputs are 0, or the offset).

  >>> import haiku as hk, jax, jax.numpy as jnp
  >>> from divnorm import haiku as dhk
  >>> f = hk.transform(lambda x: dhk.DivisiveNorm((5, 5), sigma=0.5)(x))
  >>> x = jnp.ones((2, 8, 8, 3))
  >>> f.apply(f.init(jax.random.key(0), x), None, x).shape
  (2, 8, 8, 3)

  DN* (the paper's DN with its L1 penalty on ``v``, added to the loss):
  ``y, v = dn(x, return_centered=True)``, then ``divnorm.l1_penalty(v, alpha)``.
  """

  def __init__(self, summation_window: int | Sequence[int | None],
               suppression_window: int | Sequence[int | None] | None = None, *, sigma: float = 0.0,
               learn_sigma: bool = False, across_channels: bool = True,
               border: str = "valid", create_scale: bool = False, create_offset: bool = False,
               scale_init=None, offset_init=None, data_format: str = "channels_last",
               name: str | None = None):
    _check_sigma(sigma, learn_sigma)
    super().__init__(create_scale, create_offset, scale_init, offset_init, name)
    self.summation_window, self.suppression_window = summation_window, suppression_window
    self.sigma, self.learn_sigma = sigma, learn_sigma
    self.across_channels, self.border = across_channels, border
    self.channel_index = hk.get_channel_index(data_format)

  def __call__(self, x, *, mask=None, return_centered: bool = False) -> Any:  # y, or (y, v)
    """Divisively normalizes `x`; `return_centered`: ``(y, v)``, ``v = x - E_A[x]``."""
    return_centered, x = check_bool(return_centered, "return_centered"), jnp.asarray(x)
    c = self.channel_index % x.ndim if x.ndim else -1
    y, v = divisive_norm(x, summation_window=self.summation_window,
                         suppression_window=self.suppression_window,
                         sigma=self._sigma(self.sigma, self.learn_sigma), channel_axis=c,
                         across_channels=self.across_channels, border=self.border, mask=mask,
                         return_centered=True,
                         dtype=fs.function_dtype(x, self.create_scale or self.create_offset))
    y = self._affine(x, (y, v, None), (c,), None, None)
    return (y, v.astype(y.dtype)) if return_centered else y

