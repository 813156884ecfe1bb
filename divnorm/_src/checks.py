"""Every argument check of divnorm, written once (the functions and the Flax modules call these).

Each check raises an error that says how to fix the call. Checks of values (sigma >= 0,
momentum in [0, 1], ...) apply to concrete values only: a traced value (under ``jit``, or a
learned parameter) passes, since its value is unknown when the program is built. Shapes are
always static and always checked.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

BORDERS = ("valid", "zeros", "zeros_with_divisor_bug")

_SIGMA_HINT = (" (sigma is the smoothing term of sqrt(sigma^2 + E[v^2]); Flax's epsilon is "
               "sigma**2, so pass sigma=sqrt(epsilon))")


def is_concrete(value) -> bool:
  """False for a traced value (under ``jit``, ``grad``, ``vmap``), whose value is unknown."""
  return not isinstance(value, jax.core.Tracer)


def check_input(x) -> jax.Array:
  """`x` as a floating jax.Array, or a TypeError that says how to fix the call."""
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(
        f"normalization needs a floating-point input, got dtype {x.dtype}; cast it first, "
        f"e.g. x.astype(jnp.float32).")
  return x


def check_nonnegative(value, name: str, hint: str = "") -> None:
  """Rejects a concrete `value` that is negative or not finite; a traced one passes."""
  if not is_concrete(value):
    return
  array = np.asarray(value)
  if array.size and not np.all(np.isfinite(array)):
    raise ValueError(f"{name}={value} is not finite; it must be a finite number >= 0{hint}.")
  if array.size and np.any(array < 0):
    raise ValueError(f"{name}={value} is negative; it must be >= 0{hint}.")


def check_sigma(sigma, stats_shape: tuple[int, ...] | None = None):
  """`sigma` checked: finite, >= 0 (when concrete), and broadcastable to `stats_shape`.

  Args:
    sigma: the smoothing term: a Python number, or an array (e.g. a learned parameter).
    stats_shape: shape of the statistics ``E_B[v^2]`` it is added to (the input's shape
      with the reduced whole axes set to 1), or None to check the value only.

  Returns:
    `sigma` unchanged for a Python number, else an array of rank ``len(stats_shape)``
    (leading size-1 axes added), so adding it never promotes ranks.

  Raises:
    ValueError: NaN, inf or negative sigma, or a shape that would change the output's
      shape (e.g. sigma of shape (3, 1, 1) for statistics of shape (4, 1)).
  """
  check_nonnegative(sigma, "sigma", _SIGMA_HINT)
  if stats_shape is None or isinstance(sigma, int | float) and not isinstance(sigma, bool):
    return sigma
  shape = tuple(np.shape(sigma))
  stats_shape = tuple(stats_shape)
  try:
    ok = len(shape) <= len(stats_shape) and (
        np.broadcast_shapes(shape, stats_shape) == stats_shape)
  except ValueError:
    ok = False
  if not ok:
    raise ValueError(
        f"sigma of shape {shape} does not broadcast to the statistics' shape {stats_shape} "
        f"(the input's shape with the reduced axes set to 1), so it would change the output's "
        f"shape; pass a scalar, or an array of shape {stats_shape} or one that broadcasts to it.")
  return jnp.reshape(sigma, (1,) * (len(stats_shape) - len(shape)) + shape)


def check_learn_sigma(sigma) -> None:
  """A learned sigma is ``exp(log_sigma)``, initialised at `sigma`: it must start > 0."""
  check_nonnegative(sigma, "sigma", _SIGMA_HINT)
  if not sigma > 0:
    raise ValueError(
        f"learn_sigma=True learns sigma = exp(log_sigma) and starts from sigma, which must "
        f"be > 0 (got sigma={sigma}); e.g. sigma=0.5 as in the paper's ResNet code.")


def check_momentum(momentum) -> None:
  """Running averages decay by `momentum`, which must lie in [0, 1]."""
  if is_concrete(momentum) and not 0.0 <= np.asarray(momentum) <= 1.0:
    raise ValueError(f"momentum={momentum} must be in [0, 1] (Flax's default is 0.99).")


def check_border(border: str) -> str:
  """`border` if it names a border mode, else a ValueError listing them."""
  if not isinstance(border, str) or border not in BORDERS:
    raise ValueError(f"border={border!r} is not a border mode; use one of {BORDERS}.")
  return border


def channel_axis_index(channel_axis: int, ndim: int, name: str) -> int:
  """`channel_axis` as a non-negative index, or an error: it must be a non-batch axis."""
  if isinstance(channel_axis, bool) or not isinstance(channel_axis, int | np.integer):
    raise TypeError(f"{name}: channel_axis must be an int, got {channel_axis!r}.")
  if not -ndim <= channel_axis < ndim:
    problem = f"is out of range for an input of rank {ndim}"
  elif channel_axis % ndim == 0:
    problem = "is the batch axis (axis 0)"
  else:
    return int(channel_axis) % ndim
  raise ValueError(f"{name}: channel_axis={channel_axis} {problem}; it must name a non-batch "
                   f"axis: use -1 (NHWC) or 1 (NCHW).")


def check_mask(mask, shape: tuple[int, ...]) -> jax.Array | None:
  """`mask` broadcast to `shape`, or an error that says how to fix it."""
  if mask is None:
    return None
  mask = jnp.asarray(mask)
  if mask.dtype != jnp.bool_:
    raise TypeError(
        f"mask must be boolean (True marks entries that take part in the statistics), got "
        f"dtype {mask.dtype}; pass e.g. mask.astype(bool) or mask > 0.")
  try:
    ok = mask.ndim <= len(shape) and np.broadcast_shapes(mask.shape, shape) == tuple(shape)
  except ValueError:
    ok = False
  if not ok:
    raise ValueError(
        f"mask of shape {mask.shape} does not broadcast to the input's shape {tuple(shape)}; "
        f"give it the input's rank with size 1 on the axes it does not vary along.")
  return jnp.broadcast_to(mask, shape)


def check_nonempty(x: jax.Array, axes: tuple[int, ...], name: str) -> None:
  """Statistics that outlive the call (running averages) need at least one entry."""
  if any(x.shape[a] == 0 for a in axes):
    raise ValueError(
        f"{name}: x of shape {x.shape} has no entries on the reduced axes {axes}, so there are "
        f"no statistics to update the running averages with; skip the call for an empty batch.")


def check_renorm_limits(rmax, dmax) -> None:
  """Rejects concrete ``rmax < 1`` or ``dmax < 0`` (traced schedules pass)."""
  if is_concrete(rmax) and np.any(np.asarray(rmax) < 1.0):
    raise ValueError(
        f"rmax={rmax} must be >= 1: r is clipped to [1/rmax, rmax], and rmax=1 (with "
        f"dmax=0) is plain batch norm; the paper ramps rmax from 1 to 3.")
  if is_concrete(dmax) and np.any(np.asarray(dmax) < 0.0):
    raise ValueError(
        f"dmax={dmax} must be >= 0: d is clipped to [-dmax, dmax], and dmax=0 is plain "
        f"batch norm; the paper ramps dmax from 0 to 5.")


def check_unit_interval(value, name: str) -> None:
  """Rejects a concrete `value` outside [0, 1] (a traced one passes)."""
  if is_concrete(value) and np.any((np.asarray(value) < 0.0) | (np.asarray(value) > 1.0)):
    raise ValueError(
        f"{name}={value} must lie in [0, 1]: it weighs batch norm (1) against instance norm "
        f"(0); modules keep a learned {name} there by clipping it.")


def check_lrn_args(size, alpha, beta, k) -> None:
  """A clear error for hyperparameters `local_response_norm` cannot use."""
  if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
    raise ValueError(f"size={size!r} must be a positive int (the number of channels summed).")
  for name, value in (("alpha", alpha), ("beta", beta), ("k", k)):
    if is_concrete(value) and np.any(np.asarray(value) < 0):
      raise ValueError(f"{name}={value} must be >= 0.")
