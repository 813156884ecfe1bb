"""Equinox modules over the functional core: equinox's normalization layers, and the paper's.

`LayerNorm`, `RMSNorm`, `GroupNorm` and `BatchNorm` take equinox 0.13's arguments with its
defaults, keep its fields (so `eqx.tree_serialise_leaves` checkpoints load into them), its
state handling (`eqx.nn.State`, ``inference``, ``axis_name``, ``mode``) and its numbers. As
in equinox, a layer sees one example, channels first (``jax.vmap`` over the batch; batch
statistics average over the vmapped ``axis_name``). equinox's ``eps`` is ``sigma**2``: each
also takes the paper's keyword-only ``sigma`` instead. Statistics are computed in at least
float32 and the output keeps the input's dtype (BatchNorm: promoted with its state).

`DivisiveNorm` and `Normalize` are the paper's normalizers as equinox modules (a learned
sigma is the array ``log_sigma``); the survey's others are in `divnorm._src.equinox_extra`.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Literal, NamedTuple, overload

import jax.numpy as jnp
import numpy as np
from jax import lax

try:
  import equinox as eqx
  from jaxtyping import Array
except ModuleNotFoundError as error:  # equinox is an optional extra
  raise ModuleNotFoundError(f"divnorm.equinox needs equinox ({error}); install it with "
                            f"pip install 'divnorm[equinox]'.", name=error.name) from error

from divnorm._src import flax_semantics as fs
from divnorm._src.batch import BatchStats, ema
from divnorm._src.checks import check_bool, check_int, check_momentum, is_concrete
from divnorm._src.core import normalize
from divnorm._src.fields import Field, grouped_field, resolve_field
from divnorm._src.kernels import Kernel, Mixing
from divnorm._src.presets import _windows, group_count
from divnorm._src.reductions import stat_dtype

_NO_STATE = object()  # equinox's convention: `state` passes through when given


def _out(y, x_dtype, state):
  """`y` (or ``(y, v)``, `return_centered`) in `x_dtype`, with `state` if one was passed."""
  y = tuple(a.astype(x_dtype) for a in y) if isinstance(y, tuple) else y.astype(x_dtype)
  return y if state is _NO_STATE else (y, state)


def _float(dtype):
  """equinox's default parameter dtype: float32, or float64 with ``jax_enable_x64``."""
  return jnp.zeros(()).dtype if dtype is None else dtype


def _affine(array, use: bool, shape: tuple[int, ...]):
  """An affine array as equinox applies it: only if its flag is set (an array put on a layer
  built without it, by ``eqx.tree_at``, is ignored), broadcast to `shape`."""
  return jnp.broadcast_to(array, shape) if use and array is not None else None


def _check_channels(layer, name: str, size, x) -> None:
  """`x` is one example, channels first, with the `size` channels (`name`) of `layer`."""
  if jnp.ndim(x) == 0:
    raise ValueError(f"{type(layer).__name__}: x is a scalar; it takes one example of shape "
                     f"(channels, ...), channels first (jax.vmap over the batch).")
  if size is not None:
    fs.check_features(layer, f"{name}={size}", size, jnp.shape(x), (0,))


class LayerNorm(eqx.Module):
  """Layer normalization (Ba et al., 2016) of a whole example: eqx.nn.LayerNorm's arguments,
  fields and numbers; the affine ``weight`` and ``bias`` have the input's shape.

  >>> import jax.numpy as jnp
  >>> from divnorm import equinox as dqx
  >>> dqx.LayerNorm(3)(jnp.arange(3.0)).round(3)
  Array([-1.225,  0.   ,  1.225], dtype=float32)
  """

  shape: tuple[int, ...] = eqx.field(static=True)
  eps: float = eqx.field(static=True)
  use_weight: bool = eqx.field(static=True)
  use_bias: bool = eqx.field(static=True)
  weight: Array | None
  bias: Array | None

  def __init__(self, shape: int | Sequence[int], eps: float = 1e-5, use_weight: bool = True,
               use_bias: bool = True, dtype=None, *, elementwise_affine: bool | None = None,
               sigma: float | None = None):
    self.shape = fs.shape_of_sizes(shape, "shape")
    self.eps = fs.epsilon_of(eps, sigma, self, "eps")
    if elementwise_affine is not None:
      use_weight = use_bias = elementwise_affine
      warnings.warn("LayerNorm(elementwise_affine=...) is deprecated in favour of "
                    "LayerNorm(use_weight=...) and LayerNorm(use_bias=...)", stacklevel=2)
    self.use_weight, self.use_bias = use_weight, use_bias
    self.weight = jnp.ones(self.shape, dtype=dtype) if use_weight else None
    self.bias = jnp.zeros(self.shape, dtype=dtype) if use_bias else None

  @overload
  def __call__(self, x: Array, *, key=None) -> Array: ...
  @overload
  def __call__(self, x: Array, state: eqx.nn.State, *, key=None) -> tuple[Array, eqx.nn.State]: ...
  def __call__(self, x: Array, state=_NO_STATE, *, key=None):  # as equinox's overloads
    """Normalizes `x` (of shape `shape`); `state` passes through (for `eqx.nn.Sequential`)."""
    if x.shape != self.shape:
      raise ValueError(f"`LayerNorm(shape)(x)` must satisfy the invariant `shape == x.shape`; "
                       f"received shape={self.shape} and x.shape={x.shape}. You might need to "
                       f"replace `layer_norm(x)` with `jax.vmap(layer_norm)(x)`.")
    y = fs.normalized(x, Field(tuple(range(x.ndim)), ()), sigma=fs.sigma_of(self.eps, name="eps"),
                      mask=None, axis_name=None, fast_variance=False, sigma_name="eps")[0]
    weight, bias = (_affine(self.weight, self.use_weight, x.shape),
                    _affine(self.bias, self.use_bias, x.shape))
    return _out(fs.affine(y, weight, bias, tuple(range(x.ndim))), x.dtype, state)


class RMSNorm(eqx.Module):
  """RMS normalization (Zhang & Sennrich, 2019) of a whole example, no centering:
  eqx.nn.RMSNorm's arguments, fields and numbers.

  >>> import jax.numpy as jnp
  >>> from divnorm import equinox as dqx
  >>> dqx.RMSNorm(4)(jnp.ones(4)).round(6)  # 1 / sqrt(1 + eps)
  Array([0.999995, 0.999995, 0.999995, 0.999995], dtype=float32)
  """

  shape: tuple[int, ...] = eqx.field(static=True)
  eps: float = eqx.field(static=True)
  use_weight: bool = eqx.field(static=True)
  use_bias: bool = eqx.field(static=True)
  weight: Array | None
  bias: Array | None

  def __init__(self, shape: int | Sequence[int], eps: float = 1e-5, use_weight: bool = True,
               use_bias: bool = True, dtype=None, *, sigma: float | None = None):
    self.shape = fs.shape_of_sizes(shape, "shape")
    self.eps = fs.epsilon_of(eps, sigma, self, "eps")
    self.use_weight, self.use_bias = use_weight, use_bias
    self.weight = jnp.ones(self.shape, dtype=_float(dtype)) if use_weight else None
    self.bias = jnp.zeros(self.shape, dtype=_float(dtype)) if use_bias else None

  @overload
  def __call__(self, x: Array, *, key=None) -> Array: ...
  @overload
  def __call__(self, x: Array, state: eqx.nn.State, *, key=None) -> tuple[Array, eqx.nn.State]: ...
  def __call__(self, x: Array, state=_NO_STATE, *, key=None):  # as equinox's overloads
    """Divides `x` (of shape `shape`) by its root mean square; `state` passes through."""
    if x.shape != self.shape:
      raise ValueError(f"`RMSNorm(shape)(x)` must satisfy the invariant `shape == x.shape`; "
                       f"received shape={self.shape} and x.shape={x.shape}. You might need to "
                       f"replace `rms_norm(x)` with `jax.vmap(rms_norm)(x)`.")
    if jnp.iscomplexobj(x):  # equinox's: the mean of x**2 (complex), not of |x|**2
      y, factors = x * lax.rsqrt(jnp.mean(x.astype(stat_dtype(x.dtype)) ** 2) + self.eps), None
    else:
      y, _, factors = fs.normalized(x, Field(tuple(range(x.ndim)), ()), center=False,
                                    sigma=fs.sigma_of(self.eps, name="eps"), mask=None,
                                    axis_name=None, fast_variance=False, sigma_name="eps")
    weight, bias = (_affine(self.weight, self.use_weight, x.shape),
                    _affine(self.bias, self.use_bias, x.shape))
    return _out(fs.affine(y, weight, bias, tuple(range(x.ndim)), factors), x.dtype, state)


class GroupNorm(eqx.Module):
  """Group normalization (Wu & He, 2018): eqx.nn.GroupNorm's arguments, fields and numbers.
  The first axis (channels) forms `groups` contiguous groups, each normalized with every
  other axis (the core's grouped field: no reshape).

  >>> import jax.numpy as jnp
  >>> from divnorm import equinox as dqx
  >>> dqx.GroupNorm(2, 4)(jnp.arange(8.0).reshape(4, 2)).shape
  (4, 2)
  """

  groups: int = eqx.field(static=True)
  channels: int | None = eqx.field(static=True)
  eps: float = eqx.field(static=True)
  channelwise_affine: bool = eqx.field(static=True)
  weight: Array | None
  bias: Array | None

  def __init__(self, groups: int, channels: int | None = None, eps: float = 1e-5,
               channelwise_affine: bool = True, dtype=None, *, sigma: float | None = None):
    if channels is not None:
      group_count(groups, None, check_int(channels, "channels", minimum=0), "groups")
    if channels is None and channelwise_affine:
      raise ValueError("The number of channels should be specified if "
                       "`channelwise_affine=True`")
    self.groups, self.channels, self.eps = groups, channels, fs.epsilon_of(eps, sigma, self, "eps")
    self.channelwise_affine = channelwise_affine
    self.weight = jnp.ones(channels, dtype=dtype) if channelwise_affine else None
    self.bias = jnp.zeros(channels, dtype=dtype) if channelwise_affine else None

  @overload
  def __call__(self, x: Array, *, key=None) -> Array: ...
  @overload
  def __call__(self, x: Array, state: eqx.nn.State, *, key=None) -> tuple[Array, eqx.nn.State]: ...
  def __call__(self, x: Array, state=_NO_STATE, *, key=None):  # as equinox's overloads
    """Normalizes `x` of shape ``(channels, ...)`` per group; `state` passes through."""
    # equinox reads `channels` for the affine arrays alone
    _check_channels(self, "channels", self.channels if self.channelwise_affine else None, x)
    groups = group_count(self.groups, None, x.shape[0], "groups")
    field = grouped_field(tuple(range(1, x.ndim)), 0, x.shape[0] // groups, x.shape)
    y, _, factors = fs.normalized(x, field, sigma=fs.sigma_of(self.eps, name="eps"), mask=None,
                                  axis_name=None, fast_variance=False, sigma_name="eps")
    weight, bias = (_affine(a, self.channelwise_affine, x.shape[:1])
                    for a in (self.weight, self.bias))
    return _out(fs.affine(y, weight, bias, (0,), factors), x.dtype, state)


class BatchNorm(eqx.nn.StatefulLayer):
  """Batch normalization (Ioffe & Szegedy, 2015): eqx.nn.BatchNorm's arguments, fields, state
  and numbers. Call it inside ``jax.vmap(..., axis_name=...)`` over the batch; the running
  statistics live in an `eqx.nn.State`; ``mode="ema"`` normalizes with the moving averages
  also in training, ``mode="batch"`` with the batch's (and debiased averages at inference).

  >>> import jax, jax.numpy as jnp, equinox as eqx
  >>> from divnorm import equinox as dqx
  >>> bn, state = eqx.nn.make_with_state(dqx.BatchNorm)(3, "batch", mode="batch")
  >>> y, state = jax.vmap(bn, (0, None), (0, None), axis_name="batch")(jnp.ones((4, 3)), state)
  >>> y.shape
  (4, 3)
  """

  weight: Array | None
  bias: Array | None
  ema_first_time_index: eqx.nn.StateIndex | None
  ema_state_index: eqx.nn.StateIndex | None
  batch_counter: eqx.nn.StateIndex | None
  batch_state_index: eqx.nn.StateIndex | None
  axis_name: Hashable | Sequence[Hashable]
  inference: bool
  input_size: int = eqx.field(static=True)
  eps: float = eqx.field(static=True)
  channelwise_affine: bool = eqx.field(static=True)
  momentum: float = eqx.field(static=True)
  mode: Literal["ema", "batch"] = eqx.field(static=True)

  def __init__(self, input_size: int, axis_name: Hashable | Sequence[Hashable],
               eps: float = 1e-5, channelwise_affine: bool = True, momentum: float = 0.99,
               inference: bool = False, dtype=None,
               mode: Literal["ema", "batch", "legacy"] = "legacy", *,
               sigma: float | None = None):
    if mode == "legacy":
      mode = "ema"
      warnings.warn(
          "When `eqx.nn.BatchNorm(..., mode=...)` is unspecified it defaults to 'ema', for "
          "backward compatibility. This typically has a performance impact, and for new code "
          "the user is encouraged to use 'batch' instead. See "
          "`https://github.com/patrick-kidger/equinox/issues/659`.", stacklevel=2)
    if mode not in {"ema", "batch"}:
      raise ValueError("Invalid mode, must be 'ema' or 'batch'.")
    dtype, input_size = _float(dtype), check_int(input_size, "input_size", minimum=0)
    check_momentum(momentum, default="equinox's default is 0.99")
    self.weight = jnp.ones((input_size,), dtype) if channelwise_affine else None
    self.bias = jnp.zeros((input_size,), dtype) if channelwise_affine else None
    init = (jnp.zeros((input_size,), dtype), jnp.ones((input_size,), dtype))
    ema = mode == "ema"
    self.ema_first_time_index = eqx.nn.StateIndex(jnp.array(True)) if ema else None
    # Two arrays, never one twice: a donating step (`donate="all"`) donates each leaf once.
    self.ema_state_index = eqx.nn.StateIndex(tuple(
        jnp.empty((input_size,), dtype) for _ in range(2))) if ema else None
    self.batch_counter = None if ema else eqx.nn.StateIndex(jnp.array(0))
    self.batch_state_index = None if ema else eqx.nn.StateIndex(init)
    self.axis_name, self.inference, self.input_size = axis_name, inference, input_size
    self.eps, self.mode = fs.epsilon_of(eps, sigma, self, "eps"), mode
    self.channelwise_affine, self.momentum = channelwise_affine, momentum

  def __call__(self, x: Array, state: eqx.nn.State, *, key=None, inference: bool | None = None):
    """Normalizes one example `x` of shape ``(input_size, ...)``; returns ``(y, state)``.

    Raises:
      NameError: outside a ``vmap``/``pmap`` with a matching `axis_name` (as equinox).
    """
    inference = self.inference if inference is None else inference
    _check_channels(self, "input_size", self.input_size, x)
    x32 = x.astype(stat_dtype(x.dtype))  # read as x, converted where read (`source`)

    def normalized(stats, training, momentum):
      return fs.batch_normalized(x32, stats, source=x, training=training, feature_axes=(0,),
                                 momentum=momentum, sigma=fs.sigma_of(self.eps, name="eps"),
                                 mask=None, axis_name=self.axis_name, fast_variance=False)

    if self.mode == "ema":
      stats = BatchStats(*state.get(self.ema_state_index))
      if not inference:
        zero = jnp.zeros(stats.mean.shape, stats.mean.dtype)
        _, batch = normalized(BatchStats(zero, zero), True, 0.0)
        first = state.get(self.ema_first_time_index)
        stats = BatchStats(*(jnp.where(first, b, ema(r, b, self.momentum))
                             for b, r in zip(batch, stats, strict=True)))
        state = state.set(self.ema_first_time_index, jnp.array(False))
        state = state.set(self.ema_state_index, tuple(stats))
      (y, _, factors), _ = normalized(stats, False, self.momentum)
    else:
      counter, hidden = state.get(self.batch_counter), state.get(self.batch_state_index)
      if inference:  # the averages debiased for their zero start
        scale = jnp.where(counter == 0, 1, 1 - self.momentum**counter)
        debiased = BatchStats(hidden[0] / scale, hidden[1] / scale)
        (y, _, factors), _ = normalized(debiased, False, 0.0)
      else:
        (y, _, factors), hidden = normalized(BatchStats(*hidden), True, self.momentum)
        state = state.set(self.batch_counter, counter + 1)
        state = state.set(self.batch_state_index, tuple(hidden))
    # equinox's: the statistics used promote the output (mode="batch" in training: x's own)
    used = () if self.mode == "batch" and not inference else (state.get(
        self.ema_state_index or self.batch_state_index)[0],)
    weight, bias = (_affine(a, self.channelwise_affine, x.shape[:1])
                    for a in (self.weight, self.bias))
    dtype = fs.result_dtype(x, weight, bias, *used)
    return fs.affine(y, weight, bias, (0,), factors).astype(dtype), state


def _learned_sigma(sigma, learn_sigma: bool, dtype):
  learn = check_bool(learn_sigma, "learn_sigma")
  return fs.log_sigma_init(sigma, _float(dtype)) if learn else None


def _window(window, name: str):
  """A window as a static field holds it: an int, or a tuple of them (or None) per axis."""
  if isinstance(window, Sequence | np.ndarray | jnp.ndarray) and np.ndim(window) == 1:
    return tuple(None if w is None else check_int(w, name, minimum=1) for w in window)
  return check_int(window, name, minimum=1, hint=" (an odd width for every spatial axis) or a "
                   "tuple of odd widths, one per spatial axis")


class DivisiveNorm(eqx.Module):
  """Divisive normalization (Ren et al., 2017) of one example ``(channels, *spatial)``:
  each position is centered by the mean over its summation window (across all channels,
  with `across_channels`) and divided by the root mean square over its suppression window.
  A rank-1 input ``(units,)`` (a dense or RNN layer) is windowed over its units.

  Args:
    summation_window: the window each position is centered over, along the spatial axes: an
      odd width for every spatial axis, or a tuple of them (None: the whole axis), one per
      axis (`divnorm.divisive_norm`).
    suppression_window: the window of the root mean square, the same way; None: as
      `summation_window`.
    sigma: the smoothing term, ``y = v / sqrt(sigma^2 + E_B[v^2])``: finite, >= 0.
    across_channels: whether the windows span every channel (the paper's) or each channel
      alone.
    border: ``"valid"``, ``"zeros"`` or ``"zeros_with_divisor_bug"`` (`divnorm.normalize`).
    learn_sigma: learn sigma as ``exp(log_sigma)``, an array field that starts at `sigma`
      (then a scalar > 0).
    dtype: the dtype of the learned arrays (equinox's default: float32, or float64
      with ``jax_enable_x64``).

  >>> import jax, jax.numpy as jnp
  >>> from divnorm import equinox as dqx
  >>> dn = dqx.DivisiveNorm((5, 5), sigma=0.5)
  >>> jax.vmap(dn)(jnp.ones((2, 3, 8, 8))).shape
  (2, 3, 8, 8)

  DN* (the paper's DN with its L1 penalty on ``v``, added to the loss):

  >>> import divnorm
  >>> y, v = jax.vmap(lambda x: dn(x, return_centered=True))(jnp.ones((2, 3, 8, 8)))
  >>> float(divnorm.l1_penalty(v, 1e-4))
  0.0
  """

  summation_window: int | tuple[int, ...] = eqx.field(static=True)
  suppression_window: int | tuple[int, ...] | None = eqx.field(static=True)
  sigma: float = eqx.field(static=True)
  across_channels: bool = eqx.field(static=True)
  border: str = eqx.field(static=True)
  log_sigma: Array | None

  def __init__(self, summation_window: int | Sequence[int | None],
               suppression_window: int | Sequence[int | None] | None = None, *, sigma: float = 0.0,
               across_channels: bool = True, border: str = "valid", learn_sigma: bool = False,
               dtype=None):
    self.summation_window = _window(summation_window, "summation_window")
    self.suppression_window = None if suppression_window is None else _window(
        suppression_window, "suppression_window")
    self.sigma, self.border = sigma, border
    self.across_channels = check_bool(across_channels, "across_channels")
    self.log_sigma = _learned_sigma(sigma, learn_sigma, dtype)

  def _field(self, window, x, name: str) -> Field:
    spatial = tuple(range(1, x.ndim)) if x.ndim > 1 else (0,)
    whole = {0: None} if x.ndim > 1 and self.across_channels else {}
    widths = _windows(window, spatial, name, x.shape)
    return resolve_field({**whole, **dict(zip(spatial, widths, strict=True))}, x.ndim, role=name)

  def __call__(self, x: Array, state=_NO_STATE, *, key=None,
               return_centered: bool = False) -> Any:  # y, (y, v), with state: (., state)
    """Divisively normalizes one example; `state` passes through. `return_centered`: the
    output is ``(y, v)``, with ``v = x - E_A[x]`` for the paper's L1 penalty (DN*:
    ``divnorm.l1_penalty(v, alpha)`` added to the loss)."""
    _check_channels(self, "", None, x)
    suppression, name = (self.summation_window, "summation_window") if (
        self.suppression_window is None) else (self.suppression_window, "suppression_window")
    y = normalize(x, self._field(self.summation_window, x, "summation_window"),
                  self._field(suppression, x, name), border=self.border,
                  sigma=self.sigma if self.log_sigma is None else jnp.exp(self.log_sigma),
                  return_centered=check_bool(return_centered, "return_centered"))
    return _out(y, x.dtype, state)


class Normalize(eqx.Module):
  """The unified normalizer over any fields of one example (`divnorm.normalize`).

  Args:
    summation, suppression, border: `divnorm.normalize`'s, over the axes of one example
      (channels first). Their kernels and mixings are constants (static fields, never
      trained); a learned kernel belongs in a module that keeps its raw weights as an array
      field and calls `divnorm.normalize` with `divnorm.kernels.learned_kernel`.
    sigma: the smoothing term, ``y = v / sqrt(sigma^2 + E_B[v^2])``: finite, >= 0.
    learn_sigma: learn sigma as ``exp(log_sigma)``, an array field that starts at `sigma`
      (then a scalar > 0).
    dtype: the dtype of the learned arrays (equinox's default: float32, or float64
      with ``jax_enable_x64``).

  >>> import jax.numpy as jnp
  >>> from divnorm import equinox as dqx
  >>> dqx.Normalize({0: None, 1: 3, 2: 3}, sigma=0.5)(jnp.ones((3, 8, 8))).shape
  (3, 8, 8)
  """

  summation: object = eqx.field(static=True)
  suppression: object = eqx.field(static=True)
  sigma: float = eqx.field(static=True)
  border: str = eqx.field(static=True)
  log_sigma: Array | None

  def __init__(self, summation, suppression=None, *, sigma: float = 0.0,
               border: str = "valid", learn_sigma: bool = False, dtype=None):
    self.summation, self.suppression, self.sigma, self.border = (
        _hashable(summation), _hashable(suppression), sigma, border)
    self.log_sigma = _learned_sigma(sigma, learn_sigma, dtype)

  def __call__(self, x: Array, state=_NO_STATE, *, key=None,
               return_centered: bool = False) -> Any:  # y, (y, v), with state: (., state)
    """Normalizes one example over the fields; `state` passes through. `return_centered`:
    the output is ``(y, v)``, with ``v = x - E_A[x]`` for the paper's L1 penalty."""
    y = normalize(x, _spec(self.summation), _spec(self.suppression), border=self.border,
                  sigma=self.sigma if self.log_sigma is None else jnp.exp(self.log_sigma),
                  return_centered=check_bool(return_centered, "return_centered"))
    return _out(y, x.dtype, state)


class _Array(NamedTuple):
  """A NumPy array as a static field holds it (hashable): its bytes, shape and dtype (the
  dtype itself: bfloat16's string, ``'<V2'``, would read back as raw bytes)."""
  data: bytes
  shape: tuple[int, ...]
  dtype: np.dtype


def _hashable(field):
  """A field spec that a static field can hold: a dict as a frozenset of its items, a kernel's
  or a mixing's weights as an `_Array` (`_spec` restores them)."""
  if isinstance(field, Mapping):
    return frozenset((k, _hashable(v)) for k, v in field.items())
  if isinstance(field, Kernel | Mixing):
    return type(field)(*(_hashable(getattr(field, f.name)) for f in dataclasses.fields(field)))
  if not is_concrete(field):
    raise TypeError(
        "Normalize holds its fields' kernels and mixings as constants (static fields), so "
        "their weights cannot be traced; to learn them, keep the raw weights as an array "
        "field of your own module and call divnorm.normalize with "
        "divnorm.kernels.learned_kernel(raw) in its __call__.")
  if isinstance(field, np.ndarray | jnp.ndarray):
    array = np.asarray(field)
    return _Array(array.tobytes(), array.shape, array.dtype)
  return tuple(field) if isinstance(field, list) else field


def _spec(field):
  if isinstance(field, frozenset):
    return {k: _spec(v) for k, v in field}
  if isinstance(field, Kernel | Mixing):
    return type(field)(*(_spec(getattr(field, f.name)) for f in dataclasses.fields(field)))
  if isinstance(field, _Array):
    return np.frombuffer(field.data, field.dtype).reshape(field.shape)
  return field
