"""Named normalizers as fields of `divnorm.normalize`.

| preset        | summation field A              | suppression field B |
|---------------|--------------------------------|---------------------|
| layer_norm    | `reduction_axes` of one example | = A                 |
| instance_norm | spatial axes, per channel      | = A                 |
| group_norm    | spatial axes x channels of a group | = A             |
| rms_norm      | none (no centering)            | `reduction_axes`    |
| divisive_norm | local spatial window (x all channels) | its own window |

Batch norm, which also carries running statistics, is `divnorm.batch_norm` (`batch.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.typing import ArrayLike

from divnorm._src.checks import (
  Bool,
  Int,
  channel_axis_index,
  check_bool,
  check_input,
  check_int,
  check_mask,
)
from divnorm._src.core import normalize
from divnorm._src.fields import check_tiles, grouped_field, resolve_field
from divnorm._src.rms import rms_normalized


def _spatial_axes(ndim: int, channel_axis: int, name: str) -> tuple[int, ...]:
  """All axes but the batch axis (0) and the channel axis."""
  c = channel_axis_index(channel_axis, ndim, name)
  return tuple(a for a in range(1, ndim) if a != c)


def layer_norm(
    x: ArrayLike,
    *,
    reduction_axes: Int | Sequence[Int] = -1,
    sigma: ArrayLike = 0.0,
    mask: ArrayLike | None = None,
    return_centered: Bool = False,
    fast_variance: Bool | None = None,
    axis_name=None,
) -> Any:  # y, or (y, v) with return_centered (see Returns)
  """Layer normalization (Ba et al., 2016): A = B = `reduction_axes` of each example.

  The paper's LN of a conv layer reduces every unit of the example: on NHWC use
  ``reduction_axes=(1, 2, 3)``. Flax's ``LayerNorm(epsilon=e)`` is ``sigma=sqrt(e)``.
  `fast_variance`: ``None`` or ``False`` (two-pass), or ``True`` (Flax's one-pass);
  `axis_name`: a named axis (``shard_map``, ``vmap``) the statistics also reduce, as
  Flax's ``LayerNorm(axis_name=...)``; see `normalize`.
  """
  x = check_input(x)
  field = check_tiles(resolve_field(reduction_axes, x.ndim, role="reduction_axes"), x.shape,
                      "reduction_axes")
  return normalize(x, field, sigma=sigma, mask=mask, return_centered=return_centered,
                   fast_variance=fast_variance, axis_name=axis_name)


def instance_norm(
    x: ArrayLike,
    *,
    channel_axis: Int = -1,
    sigma: ArrayLike = 0.0,
    mask: ArrayLike | None = None,
    return_centered: Bool = False,
    fast_variance: Bool | None = None,
    axis_name=None,
) -> Any:  # y, or (y, v) with return_centered (see Returns)
  """Instance normalization (Ulyanov et al., 2016): A = B = the spatial axes, per channel.

  `fast_variance`: ``None`` or ``False`` (two-pass), or ``True`` (Flax's one-pass);
  `axis_name`: a named axis the statistics also reduce; see `normalize`.
  """
  x = check_input(x)
  if x.ndim < 3:
    raise ValueError(
        f"instance_norm needs spatial axes between batch and channels (rank >= 3), got "
        f"shape {x.shape}; for [batch, features] use layer_norm.")
  axes = _spatial_axes(x.ndim, channel_axis, "instance_norm")
  return normalize(x, axes, sigma=sigma, mask=mask, return_centered=return_centered,
                   fast_variance=fast_variance, axis_name=axis_name)


def group_count(num_groups, group_size, channels: int, name: str = "num_groups") -> int:
  """The number of groups: exactly one of `num_groups` (spelled `name`) and `group_size`, an
  int dividing the channels (flax's GroupNorm checks, with its message)."""
  if (num_groups is None) == (group_size is None):
    raise ValueError(
        "Either `num_groups` or `group_size` should be specified. If `group_size` is to be "
        "specified, pass `num_groups=None` as argument to override the default `num_groups` "
        f"value of 32 (got num_groups={num_groups}, group_size={group_size}; give exactly one).")
  name, value = (name, num_groups) if group_size is None else ("group_size", group_size)
  n = check_int(value, name, minimum=1, hint=" (of the channels' groups)")
  if channels % n:
    divisors = [d for d in range(1, channels + 1) if channels % d == 0]
    raise ValueError(f"{name}={n} does not divide the number of channels ({channels}); "
                     f"try one of {divisors}.")
  return n if group_size is None else channels // n


def group_norm(
    x: ArrayLike,
    *,
    num_groups: Int | None = 32,
    group_size: Int | None = None,
    channel_axis: Int = -1,
    sigma: ArrayLike = 0.0,
    mask: ArrayLike | None = None,
    return_centered: Bool = False,
    fast_variance: Bool | None = None,
    axis_name=None,
) -> Any:  # y, or (y, v) with return_centered (see Returns)
  """Group normalization (Wu & He, 2018): A = B = all non-batch axes, per channel group.

  The channels are split into `num_groups` contiguous groups (or groups of `group_size`).
  With one group this is layer norm over every non-batch axis; with one channel per
  group, instance norm. `fast_variance`, `axis_name` (a named axis the statistics also
  reduce): see `normalize`.
  """
  x = check_input(x)
  if x.ndim < 2:
    raise ValueError(f"group_norm needs [batch, ..., channels], got shape {x.shape}.")
  c = channel_axis_index(channel_axis, x.ndim, "group_norm")
  channels = x.shape[c]
  groups = group_count(num_groups, group_size, channels)
  if channels == 0:  # no channels: an empty result, as for any empty axis
    return normalize(x, (c,), sigma=sigma, mask=mask, return_centered=return_centered,
                     fast_variance=fast_variance, axis_name=axis_name)
  # [B, C]: each group is a contiguous run of a row; reduce [B, G, C/G]. A sigma per example
  # or channel is checked against x's shape by the grouped field below.
  if x.ndim == 2 and np.ndim(sigma) == 0:
    return_centered = check_bool(return_centered, "return_centered")
    mask = check_mask(mask, x.shape)
    out = normalize(x.reshape(x.shape[0], groups, channels // groups), (2,), sigma=sigma,
                    mask=None if mask is None else mask.reshape(x.shape[0], groups, -1),
                    return_centered=return_centered, fast_variance=fast_variance,
                    axis_name=axis_name)
    if return_centered:
      return out[0].reshape(x.shape), out[1].reshape(x.shape)
    return out.reshape(x.shape)
  # Every non-batch axis but the channels whole, and the channels in contiguous groups:
  # statistics are reduced in x's own layout (no [..., G, C/G] reshape: `group_sum`).
  field = grouped_field(tuple(range(1, c)) + tuple(range(c + 1, x.ndim)), c,
                        channels // groups, x.shape)
  return normalize(x, field, sigma=sigma, mask=mask, return_centered=return_centered,
                   fast_variance=fast_variance, axis_name=axis_name)


def rms_norm(
    x: ArrayLike,
    *,
    reduction_axes: Int | Sequence[Int] = -1,
    sigma: ArrayLike = 0.0,
    mask: ArrayLike | None = None,
    axis_name=None,
) -> jax.Array:
  """RMS normalization (Zhang & Sennrich, 2019): no centering, B = `reduction_axes`.

  ``y = x / sqrt(sigma^2 + E_B[x^2])``; `axis_name` also averages ``x^2`` over that named
  axis (``shard_map``, ``vmap``), as flax's ``RMSNorm(axis_name=...)``.
  """
  x = check_input(x)
  field = check_tiles(resolve_field(reduction_axes, x.ndim, role="reduction_axes"), x.shape,
                      "reduction_axes")
  return rms_normalized(x, sigma, mask, field, axis_name).astype(x.dtype)


def _windows(window, spatial: tuple[int, ...], name: str, shape) -> tuple[int | None, ...]:
  """One width per spatial axis: an int-like `window` for all, or one entry per axis (an odd
  int, or None for the whole axis). The widths themselves are checked by `resolve_field`."""
  if isinstance(window, jax.Array | np.ndarray) and window.ndim == 1:
    window = tuple(window.tolist())
  if not isinstance(window, list | tuple):
    width = check_int(window, name, hint=(
        f" (an odd width for every spatial axis) or a tuple of odd widths, one per spatial "
        f"axis, e.g. {name}={(5,) * len(spatial)}"))
    return (width,) * len(spatial)
  window = tuple(window)
  if len(window) != len(spatial):
    raise ValueError(
        f"{name}={window} gives {len(window)} widths, but x of shape {tuple(shape)} has "
        f"{len(spatial)} spatial axes {spatial}; give one odd width per spatial axis, "
        f"e.g. {name}={(5,) * len(spatial)}.")
  return window


def divisive_norm(
    x: ArrayLike,
    *,
    summation_window: Int | Sequence[Int | None],
    suppression_window: Int | Sequence[Int | None] | None = None,
    sigma: ArrayLike,
    channel_axis: Int = -1,
    across_channels: Bool = True,
    border: str = "valid",
    mask: ArrayLike | None = None,
    return_centered: Bool = False,
    fast_variance: Bool | None = None,
    dtype=None,
) -> Any:  # y, or (y, v) with return_centered (see Returns)
  """Divisive normalization (Ren et al., 2017): local windows over the spatial axes.

  The spatial axes are all axes but the batch axis (0) and `channel_axis`. For a rank-2
  input ``[batch, units]`` (an RNN or dense layer) the window runs over the units.

  Args:
    x: ``[B, *spatial, C]`` (or channels at `channel_axis`), or ``[B, D]``.
    summation_window: odd width(s) of field A: an int (Python, NumPy or JAX) for every
      spatial axis, or one per spatial axis, where None reduces that axis whole.
    suppression_window: odd width(s) of field B, as `summation_window`; None means the
      summation window.
    sigma: smoothing term (the paper: 0.5 for CIFAR, 1.0 for PTB and super-resolution).
    channel_axis: the channel axis.
    across_channels: True is the paper's form, where both fields span all channels;
      False normalizes each channel within its own windows.
    border: ``"valid"``, ``"zeros"`` (the paper's code) or ``"zeros_with_divisor_bug"``;
      see `divnorm.normalize`.
    mask: boolean, broadcastable to `x`.
    return_centered: also return the centered input ``v``.
    fast_variance: ``None``, ``False`` and ``True`` (`across_channels` only; an error
      otherwise) all take the corrected two-pass statistics, centered at every position
      (`statistics.corrected_two_pass`): one-pass sums around one shift per span lose
      digits under windows; see `normalize`.
    dtype: the outputs' dtype; None: `x`'s (see `normalize`).
  """
  x = check_input(x)
  if x.ndim < 2:
    raise ValueError(f"divisive_norm needs [batch, ...] input of rank >= 2, got shape {x.shape}.")
  across_channels = check_bool(across_channels, "across_channels")
  c = channel_axis_index(channel_axis, x.ndim, "divisive_norm")  # rank 2: checked, unused
  if x.ndim == 2:
    spatial, whole = (1,), ()
  else:
    spatial = tuple(a for a in range(1, x.ndim) if a != c)
    whole = (c,) if across_channels else ()

  def field(window, name):
    widths = _windows(window, spatial, name, x.shape)
    return resolve_field({**dict.fromkeys(whole), **dict(zip(spatial, widths, strict=True))},
                         x.ndim, role=name)

  summation = field(summation_window, "summation_window")
  suppression = summation if suppression_window is None else field(
      suppression_window, "suppression_window")
  return normalize(
      x, summation, suppression, sigma=sigma, border=border, mask=mask,
      return_centered=return_centered, fast_variance=fast_variance, dtype=dtype)
