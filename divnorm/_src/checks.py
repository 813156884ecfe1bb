"""Every argument check of divnorm, written once (the functions and the Flax modules call these).

Each check raises an error that names the argument and says how to fix the call: a
`TypeError` for a value of the wrong kind (a string, None, a bool where a number goes, a
float where an int goes), a `ValueError` for a value out of range. Python, NumPy and JAX
scalars are accepted alike wherever a number goes, and Python, NumPy and concrete JAX
integers wherever an int goes.

Checks of values (sigma >= 0, momentum in [0, 1], ...) apply to concrete values only: a
traced value (under ``jit``, or a learned parameter) passes, since its value is unknown
when the program is built; its dtype is still checked. Shapes, axes, widths and counts
are static: a traced int is refused with a hint to mark it static.
"""

from __future__ import annotations

import math
import operator
from typing import TypeAlias

import jax
import jax.numpy as jnp
import numpy as np

BORDERS = ("valid", "zeros", "zeros_with_divisor_bug")

_SIGMA_HINT = (" (sigma is the smoothing term of sqrt(sigma^2 + E[v^2]); Flax's epsilon is "
               "sigma**2, so pass sigma=sqrt(epsilon))")


# README "The rules": an int is a Python, NumPy or concrete JAX integer, a bool a Python,
# NumPy or concrete JAX bool (annotations of the public functions; `check_int`, `check_bool`).
Int: TypeAlias = int | np.integer | jax.Array
Bool: TypeAlias = bool | np.bool_ | jax.Array


def is_concrete(value) -> bool:
  """False for a traced value (under ``jit``, ``grad``, ``vmap``), whose value is unknown."""
  return not isinstance(value, jax.core.Tracer)


def describe(value) -> str:
  """`value` for an error message: short, whatever it is (a traced value, a big array)."""
  if not is_concrete(value):
    return f"a traced value of dtype {value.dtype}"
  if isinstance(value, jax.Array | np.ndarray | np.generic):
    if np.ndim(value) == 0:
      return repr(np.asarray(value).item())
    if np.size(value) <= 6:
      return f"array({np.asarray(value).tolist()})"
    return f"an array of shape {tuple(np.shape(value))} and dtype {value.dtype}"
  text = repr(value)
  return text if len(text) <= 80 else f"a {type(value).__name__}"


def _dtype_of(value):
  """The dtype `value` would have as an array, or None when it is not numeric data."""
  if isinstance(value, str | bytes) or value is None:
    return None
  dtype = getattr(value, "dtype", None)
  if dtype is None:
    try:
      dtype = np.asarray(value).dtype
    except (TypeError, ValueError):
      return None
  return dtype


def check_floating_dtype(dtype, name: str, *, context: str | None = None,
                         hint: str = " give one, e.g. jnp.float32 or jnp.bfloat16 (None: the "
                                     "input's).") -> np.dtype:
  """`dtype` as a NumPy dtype; a TypeError unless it names a floating dtype, whose message
  starts with the caller's name (`context`) if given and ends with `hint`."""
  try:
    out = np.dtype(jnp.dtype(dtype))
  except (TypeError, ValueError):
    out = None
  if out is None or not jnp.issubdtype(out, jnp.floating):
    where = "" if context is None else f"{context}: "
    raise TypeError(f"{where}{name}={dtype!r} is not a floating dtype;{hint}")
  return out


def _is_real_dtype(dtype) -> bool:
  return dtype is not None and (jnp.issubdtype(dtype, jnp.floating)
                                or jnp.issubdtype(dtype, jnp.integer))


def check_real(value, name: str, hint: str = "") -> None:
  """A TypeError unless `value` is real numbers: a Python, NumPy or JAX scalar or array.

  Strings, None, bools and complex numbers are refused; a traced value passes when its
  dtype is real.
  """
  if isinstance(value, bool | np.bool_) or not _is_real_dtype(_dtype_of(value)):
    fix = "pass a number"
    if isinstance(value, str):
      try:
        fix = f"pass the number itself, {name}={float(value)!r}, not a string"
      except ValueError:
        pass
    raise TypeError(
        f"{name}={describe(value)} is not a real number; {name} takes a Python, NumPy or "
        f"JAX number (or an array of them){hint}: {fix}.")


def check_nonnegative(value, name: str, hint: str = "") -> None:
  """Rejects a `value` that is not real numbers (TypeError), or a concrete one that is
  negative or not finite (ValueError); a traced real value passes.

  Args:
    value: the value to check: a Python, NumPy or JAX number, or an array of them.
    name: the argument's name as the caller spelled it (``"sigma"``, ``"epsilon"``,
      ``"LayerNorm: epsilon"``); errors read ``"{name}=-1.0 is negative ..."``.
    hint: appended to the error's explanation, e.g. what the argument means.
  """
  check_real(value, name, hint)
  if not is_concrete(value):
    return
  array = np.asarray(value)
  if array.size and not np.all(np.isfinite(array)):
    raise ValueError(
        f"{name}={describe(value)} is not finite; it must be a finite number >= 0{hint}.")
  if array.size and np.any(array < 0):
    raise ValueError(f"{name}={describe(value)} is negative; it must be >= 0{hint}.")


def check_positive(value, name: str, hint: str = "") -> None:
  """Rejects a `value` that is not real numbers, or a concrete one that is not finite and > 0."""
  check_real(value, name, hint)
  if is_concrete(value):
    array = np.asarray(value)
    if not np.all(np.isfinite(array)) or np.any(array <= 0):
      raise ValueError(f"{name}={describe(value)} must be a finite number > 0{hint}.")


def check_finite(value, name: str, hint: str = "") -> None:
  """Rejects a `value` that is not real numbers, or a concrete one that is not finite."""
  check_real(value, name, hint)
  if is_concrete(value) and not np.all(np.isfinite(np.asarray(value))):
    raise ValueError(f"{name}={describe(value)} is not finite; it must be a finite number"
                     f"{hint}.")


def check_sigma(sigma, stats_shape: tuple[int, ...] | None = None, *, name: str = "sigma",
                hint: str | None = None):
  """`sigma` checked: real, finite, >= 0 (when concrete), and broadcastable to `stats_shape`.

  Args:
    sigma: the smoothing term: a Python, NumPy or JAX number, or an array (e.g. a learned
      parameter, or one value per example).
    stats_shape: shape of the statistics ``E_B[v^2]`` it is added to (the input's shape
      with the reduced whole axes set to 1), or None to check the value only.
    name: the argument's name in error messages, as the caller's user spelled it (a Flax
      module checking ``sqrt(epsilon)`` passes ``name="epsilon"``).
    hint: appended to the errors' explanation; by default, for ``name="sigma"``, how sigma
      relates to Flax's epsilon.

  Returns:
    `sigma` unchanged for a Python number, else an array of rank ``len(stats_shape)``
    (leading size-1 axes added), so adding it never promotes ranks.

  Raises:
    TypeError: a string, None, a bool or a complex number.
    ValueError: NaN, inf or negative sigma, or a shape that would change the output's
      shape (e.g. sigma of shape (3, 1, 1) for statistics of shape (4, 1)).
  """
  hint = (_SIGMA_HINT if name == "sigma" else "") if hint is None else hint
  check_nonnegative(sigma, name, hint)
  if stats_shape is None:
    return sigma
  return check_broadcasts(sigma, stats_shape, name, "the statistics' shape", " (the input's "
                          "shape with the reduced axes set to 1)")


def broadcasts_to(own, shape) -> bool:
  """Whether an array of shape `own` broadcasts to `shape` without changing it. Sizes may
  be symbolic (``jax.export``'s): ``(1, 4)`` broadcasts to ``(b, 4)``, ``(2, 4)`` does not."""
  own, shape = tuple(own), tuple(shape)
  try:
    return len(own) <= len(shape) and tuple(jnp.broadcast_shapes(own, shape)) == shape
  except ValueError:
    return False


def fewer_entries(shape, other) -> bool:
  """Whether `shape` has fewer entries than `other`; False where symbolic sizes leave it
  open."""
  try:
    return bool(math.prod(shape) < math.prod(other))
  except jax.errors.InconclusiveDimensionOperation:
    return False


def check_broadcasts(value, shape: tuple[int, ...], name: str, what: str = "the input's shape",
                     hint: str = ""):
  """`value` unchanged if a Python number, else an array of rank ``len(shape)`` (leading
  size-1 axes added) that broadcasts to `shape`; else a ValueError: a hyperparameter given
  per entry must not change the output's shape."""
  if isinstance(value, int | float):
    return value
  if isinstance(value, list | tuple):
    value = np.asarray(value)
  own, shape = tuple(np.shape(value)), tuple(shape)
  if not broadcasts_to(own, shape):
    raise ValueError(
        f"{name} of shape {own} does not broadcast to {what} {shape}{hint}, so it would "
        f"change the output's shape; pass a scalar, or an array of shape {shape} or one that "
        f"broadcasts to it.")
  return jnp.reshape(value, (1,) * (len(shape) - len(own)) + own)


def check_learn_sigma(sigma) -> None:
  """A learned sigma is ``exp(log_sigma)``, initialised at `sigma`: it must start > 0."""
  check_nonnegative(sigma, "sigma", _SIGMA_HINT)
  if not sigma > 0:
    raise ValueError(
        f"learn_sigma=True learns sigma = exp(log_sigma) and starts from sigma, which must "
        f"be > 0 (got sigma={sigma}); e.g. sigma=0.5 as in the paper's ResNet code.")


def check_momentum(momentum, name: str = "momentum", default: str = "Flax's default is 0.99"
                   ) -> None:
  """Running averages decay by `momentum`, a real number in [0, 1]; errors name it `name`
  (haiku's `decay_rate`) and quote the library's `default`."""
  check_real(momentum, name, " (the decay of the running averages)")
  if is_concrete(momentum) and not np.all((np.asarray(momentum) >= 0.0)
                                          & (np.asarray(momentum) <= 1.0)):
    raise ValueError(f"{name}={describe(momentum)} must be in [0, 1] ({default}).")


def check_border(border: str) -> str:
  """`border` if it names a border mode, else a ValueError listing them."""
  if not isinstance(border, str) or border not in BORDERS:
    raise ValueError(f"border={border!r} is not a border mode; use one of {BORDERS}.")
  return border


def check_int(value, name: str, *, minimum: int | None = None, hint: str = "",
              context: str = "") -> int:
  """`value` as a Python int: a Python, NumPy or concrete JAX integer, never a bool.

  Args:
    value: the argument.
    name: its name, as the user spelled it.
    minimum: the smallest value allowed, if any.
    hint: appended to the errors' explanation (what the argument means).
    context: the function's name, prefixed to the errors (``"group_norm: ..."``).

  Raises:
    TypeError: a float, a bool, a string, None, or a traced value (shapes, widths and
      counts are static: under ``jit`` pass them as ``static_argnames``).
    ValueError: an int below `minimum`.
  """
  where = f"{context}: " if context else ""
  if not is_concrete(value):
    raise TypeError(
        f"{where}{name} is traced ({describe(value)}), but it sets a shape, so it must be a "
        f"static int: under jax.jit pass it with static_argnames=('{name}',), or close over "
        f"it.")
  if isinstance(value, bool | np.bool_):
    raise TypeError(f"{where}{name}={value!r} is a bool; {name} must be an int{hint}.")
  try:
    index = operator.index(value)
  except TypeError:
    fix = ""
    if isinstance(value, float | np.floating) and float(value).is_integer():
      fix = f": pass {name}={int(value)}"
    raise TypeError(f"{where}{name}={describe(value)} is not an int; {name} must be an int"
                    f"{hint}{fix}.") from None
  if minimum is not None and index < minimum:
    raise ValueError(f"{where}{name}={index} must be an int >= {minimum}{hint}.")
  return index


def check_odd(value, name: str, *, context: str, what: str) -> int:
  """`value` as a positive odd int: the size of a centered window (`what`), or an error."""
  value = check_int(value, name, minimum=1, context=context)
  if value % 2 == 0:
    raise ValueError(
        f"{context}: {name}={value} must be odd: {what} has a centre entry with {name} // 2 "
        f"entries either side, which an even size lacks (use {value - 1} or {value + 1}).")
  return value


def check_bool(value, name: str) -> bool:
  """`value` as a Python bool: a Python, NumPy or concrete JAX bool (not an int, None, str)."""
  if not is_concrete(value):
    raise TypeError(
        f"{name} is traced ({describe(value)}), but it picks the computation, so it must be "
        f"a static bool: under jax.jit pass it with static_argnames=('{name}',), or close "
        f"over it; to switch at run time, call both and select with jnp.where.")
  if isinstance(value, bool | np.bool_) or (
      isinstance(value, jax.Array | np.ndarray) and value.shape == () and value.dtype == bool):
    return bool(value)
  raise TypeError(f"{name}={describe(value)} is not a bool; pass {name}=True or {name}=False.")


def check_scalar(value, name: str, what: str, *, context: str = "") -> None:
  """A ValueError unless `value` is a scalar: one hyperparameter (`what` it is, e.g. "one
  exponent"), not one per entry."""
  if np.ndim(value) != 0:
    where = f"{context}: " if context else ""
    raise ValueError(f"{where}{name} has shape {np.shape(value)}; it is {what}, a scalar.")


def check_axis_name(axis_name):
  """`axis_name` (a mapped axis' name, or a tuple of names; a list of them as a tuple, which
  a jitted function can take as a static argument), or a TypeError for an int or a bool in
  it: JAX's collectives read an int as a positional axis of the array, so it would sum over
  an array axis instead of the mapped one, silently."""
  for name in axis_name if isinstance(axis_name, tuple | list) else (axis_name,):
    if isinstance(name, int | np.integer):
      raise TypeError(
          f"axis_name={axis_name!r}: {name!r} is an int, which JAX's collectives read as an "
          f"array axis, not a mapped one; name the mapped axis with a string, e.g. "
          f"jax.vmap(f, axis_name='batch') and axis_name='batch'.")
  return tuple(axis_name) if isinstance(axis_name, list) else axis_name


def check_key(key, name: str = "key"):
  """`key` if it is a JAX PRNG key (``jax.random.key``, or a legacy ``jax.random.PRNGKey``),
  else a TypeError."""
  dtype = getattr(key, "dtype", None)
  if isinstance(key, jax.Array | np.ndarray) and (
      jnp.issubdtype(dtype, jax.dtypes.prng_key)
      or (dtype == np.uint32 and np.shape(key)[-1:] == (2,))):
    return key
  raise TypeError(f"{name}={describe(key)} is not a PRNG key; pass one, e.g. "
                  f"{name}=jax.random.key(0).")


def axis_range(ndim: int) -> str:
  """How to name an axis of an input of rank `ndim`, for error messages."""
  if ndim == 0:
    return "the input is a scalar (rank 0), which has no axes"
  return f"use an axis in [{-ndim}, {ndim - 1}]"


def axis_index(axis, ndim: int, name: str, *, context: str = "") -> int:
  """`axis` (an int in ``[-ndim, ndim)``) as a non-negative index, or a clear error."""
  a = check_int(axis, name, context=context)
  if not -ndim <= a < ndim:
    where = f"{context}: " if context else ""
    raise ValueError(f"{where}{name}={a} is out of range for an input of rank {ndim}; "
                     f"{axis_range(ndim)}.")
  return a % ndim


def channel_axis_index(channel_axis: int, ndim: int, name: str) -> int:
  """`channel_axis` as a non-negative index, or an error: it must be a non-batch axis."""
  c = check_int(channel_axis, "channel_axis", context=name)
  if not -ndim <= c < ndim:
    problem = f"is out of range for an input of rank {ndim}"
  elif c % ndim == 0:
    problem = "is the batch axis (axis 0)"
  else:
    return c % ndim
  raise ValueError(f"{name}: channel_axis={c} {problem}; it must name a non-batch axis: use -1 "
                   f"(NHWC) or 1 (NCHW).")


def check_device_groups(groups, size: int | None = None) -> tuple[tuple[int, ...], ...]:
  """Flax's `axis_index_groups` as a tuple of equal-sized tuples of distinct device indices
  that cover ``range(size)`` (the mapped axis, if known)."""
  try:
    checked = tuple(tuple(operator.index(i) for i in group) for group in groups)
  except TypeError:
    checked = ()
  indices = sorted(i for group in checked for i in group)
  if (not indices or len({len(g) for g in checked}) != 1 or len(set(indices)) != len(indices)
      or indices[0] < 0 or (size is not None and indices != list(range(size)))):
    axis = "the mapped axis" if size is None else f"the mapped axis (size {size})"
    raise ValueError(
        f"axis_index_groups={describe(groups)} must be groups of equal size of distinct "
        f"device indices that cover {axis}, e.g. [[0, 1], [2, 3]] for 4 devices in pairs "
        f"(JAX's psum under pmap).")
  return checked


def check_input(x, name: str = "x") -> jax.Array:
  """`x` as a floating jax.Array, or a TypeError that says how to fix the call."""
  dtype = _dtype_of(x)
  if dtype is None or dtype == np.dtype(object):
    raise TypeError(
        f"{name}={describe(x)} is not an array; normalization needs a floating-point array "
        f"(a jax.Array, a NumPy array or nested lists of floats).")
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(
        f"normalization needs a floating-point input, got {name} of dtype {x.dtype}; cast it "
        f"first, e.g. {name}.astype(jnp.float32).")
  return x


def check_array(value, name: str, hint: str = "") -> jax.Array:
  """`value` (real numbers: a parameter, a weight vector) as a jax.Array, or a TypeError."""
  check_real(value, name, hint)
  return jnp.asarray(value)


def check_mask(mask, shape: tuple[int, ...], *, nonzero: bool = False) -> jax.Array | None:
  """`mask` broadcast to `shape`, or an error that says how to fix it. With `nonzero`, a
  real-valued mask selects its nonzero entries (`field_mean`'s documented form)."""
  if mask is None:
    return None
  dtype = _dtype_of(mask)
  if nonzero and dtype is not None and _is_real_dtype(dtype) and dtype != np.dtype(bool):
    mask, dtype = jnp.asarray(mask) != 0, np.dtype(bool)
  if dtype != np.dtype(bool):
    raise TypeError(
        f"mask must be boolean (True marks entries that take part in the statistics), got "
        f"{describe(mask) if dtype is None else f'dtype {dtype}'}; pass e.g. mask.astype(bool) "
        f"or mask > 0.")
  mask = jnp.asarray(mask)
  if not broadcasts_to(mask.shape, shape):
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
  """Checks the clipping limits of `batch_renorm` (and the BatchRenorm modules).

  Raises TypeError unless `rmax` and `dmax` are real numbers, and ValueError for a concrete
  ``rmax < 1``, ``dmax < 0`` or NaN; traced values (a schedule under ``jit``) pass, and inf
  means no clipping. Returns None.
  """
  for name, value, hint in (("rmax", rmax, " (r is clipped to [1/rmax, rmax])"),
                            ("dmax", dmax, " (d is clipped to [-dmax, dmax])")):
    check_real(value, name, hint)
    if is_concrete(value) and np.any(np.isnan(np.asarray(value))):
      raise ValueError(f"{name}={describe(value)} is NaN; it must be a number{hint}.")
  if is_concrete(rmax) and np.any(np.asarray(rmax) < 1.0):
    raise ValueError(
        f"rmax={describe(rmax)} must be >= 1: r is clipped to [1/rmax, rmax], and rmax=1 "
        f"(with dmax=0) is plain batch norm; the paper ramps rmax from 1 to 3.")
  if is_concrete(dmax) and np.any(np.asarray(dmax) < 0.0):
    raise ValueError(
        f"dmax={describe(dmax)} must be >= 0: d is clipped to [-dmax, dmax], and dmax=0 is "
        f"plain batch norm; the paper ramps dmax from 0 to 5.")


def check_unit_interval(value, name: str) -> None:
  """Checks a batch-instance mixing weight (`batch_instance_norm`'s `rho`, the modules'
  `rho_init`): TypeError unless `value` is real numbers, ValueError for a concrete one
  outside [0, 1] (NaN too); a traced value passes. `name` is the argument's name, for the
  message. Returns None.
  """
  check_real(value, name, " (a weight in [0, 1])")
  if is_concrete(value) and not np.all((np.asarray(value) >= 0.0) & (np.asarray(value) <= 1.0)):
    raise ValueError(
        f"{name}={describe(value)} must lie in [0, 1]: it weighs batch norm (1) against "
        f"instance norm (0); modules keep a learned {name} there by clipping it.")


def check_lrn_args(size, alpha, beta, k) -> int:
  """Checks the hyperparameters of `local_response_norm` (and the LocalResponseNorm modules).

  Returns `size` as a Python int. Raises TypeError for a `size` that is not an integer (a
  float or a bool), or an `alpha`, `beta` or `k` that is not real numbers; ValueError for
  ``size < 1`` or a concrete `alpha`, `beta` or `k` that is negative or not finite.
  """
  size = check_int(size, "size", minimum=1, hint=" (the number of channels summed)")
  for name, value in (("alpha", alpha), ("beta", beta), ("k", k)):
    check_nonnegative(value, name)
  return size
