r"""Kernels of weighted fields: how much each entry of a window counts.

A box window counts every entry the same; a `Kernel` weighs the entry ``k`` steps from the
centre by ``weights[h + k]`` (``h = width // 2``), so a weighted field's mean is

.. math::
    E_w[t]_i = \frac{\sum_k w_k\, t_{i + k d}}{\sum_k w_k},

the sums running over the entries that exist (``border="valid"``) or over the whole kernel
with zeros past the border (``border="zeros"``). ``d`` is the kernel's `dilation`. The
kernels of the families of divisive normalization around Ren et al. (2017):

| constructor | weights ``w_k`` | used by |
|---|---|---|
| `box` | 1 | Ren et al. 2017 (today's windows) |
| `gaussian` | ``exp(-k^2 / (2 sigma^2))`` | Gaussian pools (Veerabadran et al. 2021) |
| `exponential` | ``exp(-|k| / scale)`` | along channels, Miller et al. 2022 |
| `center_surround` | 1, 0 at the centre; dilated | surround pools (Pan et al. 2021) |
| `kernel` | given, >= 0 | any fixed pool |
| `learned_kernel` | ``nonnegative(raw)`` | a learned pool, reparameterized as in GDN |

A kernel with one dimension applies along one axis; separable kernels (a Gaussian in two
dimensions) are one kernel per axis, applied one axis at a time. A kernel with several
dimensions (`center_surround` with ``ndim=2``, a learned 3x3 pool) applies jointly to as
many axes. A kernel can differ along another axis of the input (one spatial pool per
channel, "depthwise"): its `weights` then have one more, last, dimension, which runs along
the axis `along`.

`Mixing` is the other weighting along an axis: a full matrix, ``P[t]_i = sum_j M_ij t_j``,
not shift-invariant, e.g. GDN's ``gamma`` over the channels.

Kernels are JAX pytrees (the weights are the leaves; `dilation` and `along` are static), so
learned weights can be passed through ``jit`` and differentiated.

Derivatives: a kernel whose weights are traced (`learned_kernel`, or `kernel`, `gaussian`,
`exponential` given JAX arrays) takes reverse mode only, as ``grad``, ``vjp`` and
``jacrev``, even of ``jacrev``. Its weights' gradient is a custom VJP that reads the input
once for all taps; JAX's own transpose took 1.4-1.5x the time and 9.5x the temporary memory
(``python -m benchmarks.weighted``: 5x5 per channel, fwd+bwd, CPU). Forward mode (``jvp``,
``jacfwd``, ``jax.hessian``, a Hessian-vector product as ``jvp`` of ``grad``) stops at JAX's
"can't apply forward-mode autodiff (jvp) to a custom_vjp function": there, take
``jax.jacrev(jax.jacrev(f))`` for the Hessian and ``grad`` of ``vdot(grad(f)(x), v)`` for
the product. Inside ``lax.scan`` the second reverse pass fails in JAX 0.10.2: its scan
transpose hands the custom VJP misordered residuals ("zip() argument 2 is longer than
argument 1"), unrolled or rematerialized alike; a minimal custom VJP without divnorm did
not reproduce it, so the cause is not established. Take such second derivatives of a
Python loop over the layers. NumPy weights (fixed kernels, the box) take every mode.
`learned_mixing` and GDN's raw parameters take every mode but ``jvp`` in their raw
parameters (the reparameterization's gradient, as tensorflow_compression's, is a custom
VJP).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from divnorm._src.checks import Int, check_int, check_nonnegative, check_odd, check_positive
from divnorm._src.nonnegative import nonnegative


def _odd_width(width, name: str) -> int:
  return check_odd(width, "width", context=name, what="the kernel")


def _positive_int(value, name: str) -> int:
  return check_int(value, name, minimum=1)


def _positive_number(value, name: str) -> float:
  if np.ndim(value) != 0:
    raise ValueError(f"{name} of shape {np.shape(value)} must be a scalar: one number for the "
                     f"kernel (a kernel per axis: one per axis in the field).")
  check_positive(value, name)
  return float(value)


def _along(along, name: str) -> int | None:
  return None if along is None else check_int(along, "along", context=name)


_WEIGHTS_HINT = (" (a pool weighs entries, it cannot subtract them; to learn a kernel, use "
                 "divnorm.kernels.learned_kernel(raw), which keeps its weights nonnegative)")


def _check_weights(weights, name: str):
  """Real, finite and nonnegative (concrete weights only; traced ones pass)."""
  check_nonnegative(weights, f"{name}: weights", _WEIGHTS_HINT)


@dataclasses.dataclass(frozen=True)
class Kernel:
  """Nonnegative weights of a window along one or more axes (see the module docstring).

  Attributes:
    weights: shape ``window`` (odd sizes, one per axis the kernel applies to), or
      ``window + (n,)`` when the weights differ along the input axis `along`.
    dilation: spacing of the taps: tap ``k`` reads the entry ``k * dilation`` away.
    along: the input axis that the last dimension of `weights` runs along, or None.
  """

  weights: jax.Array | np.ndarray
  dilation: int = 1
  along: int | None = None

  @property
  def window(self) -> tuple[int, ...]:
    """The kernel's size per axis it applies to."""
    shape = np.shape(self.weights)
    return tuple(shape[:-1] if self.along is not None else shape)

  @property
  def ndim(self) -> int:
    """How many axes the kernel applies to jointly."""
    return len(self.window)

  @property
  def static(self) -> bool:
    """Whether the weights are NumPy constants (known when the program is built)."""
    return isinstance(self.weights, np.ndarray)


jax.tree_util.register_dataclass(Kernel, data_fields=["weights"], meta_fields=["dilation", "along"])


@dataclasses.dataclass(frozen=True)
class Mixing:
  """A nonnegative matrix along one axis: ``P[t]_i = sum_j matrix[i, j] t_j``.

  ``matrix[i, j]`` weighs entry ``j`` in the pool of entry ``i`` (divnorm's `gdn`
  convention; tensorflow_compression's ``gamma[j, i]`` is its transpose).
  """

  matrix: jax.Array | np.ndarray


jax.tree_util.register_dataclass(Mixing, data_fields=["matrix"], meta_fields=[])


def _check_kernel_shape(weights, along, name: str) -> None:
  shape = np.shape(weights)
  window = shape[:-1] if along is not None else shape
  if along is not None and len(shape) < 2:
    raise ValueError(
        f"{name}: with along={along} the weights need a window and a last dimension that runs "
        f"along axis {along}; got shape {shape}.")
  if not window:
    raise ValueError(f"{name}: weights of shape {shape} have no window dimension.")
  even = [n for n in window if n % 2 == 0]
  if even:
    raise ValueError(
        f"{name}: the window {window} has even sizes {even}; kernels are centered, so every "
        f"size must be odd (pad the weights with a zero to the next odd size).")


def kernel(weights, *, dilation: Int = 1, along: Int | None = None) -> Kernel:
  """A kernel with the given nonnegative `weights` (see `Kernel`).

  Raises:
    ValueError: an even size, negative or non-finite weights, a non-positive dilation.
  """
  dilation, along = _positive_int(dilation, "dilation"), _along(along, "kernel")
  _check_weights(weights, "kernel")
  if isinstance(weights, list | tuple | float | int):
    weights = np.asarray(weights, np.float64)
  _check_kernel_shape(weights, along, "kernel")
  return Kernel(weights, dilation, along)


def learned_kernel(raw, *, dilation: Int = 1, along: Int | None = None,
                   minimum: float = 0.0) -> Kernel:
  """A kernel whose weights are ``nonnegative(raw, minimum=minimum)``: >= 0 for any `raw`.

  Initialize `raw` with `divnorm.gdn.nonnegative_init` of the starting weights.
  """
  dilation, along = _positive_int(dilation, "dilation"), _along(along, "learned_kernel")
  _check_kernel_shape(raw, along, "learned_kernel")
  return Kernel(nonnegative(raw, minimum=minimum), dilation, along)


def box(width: Int, *, dilation: Int = 1) -> Kernel:
  """Every entry of the window weighs 1 (today's windows: ``{axis: width}``)."""
  width = _odd_width(width, "box")
  return Kernel(np.ones(width), _positive_int(dilation, "dilation"))


def _offsets(width: int) -> np.ndarray:
  return np.arange(width, dtype=np.float64) - width // 2


def _check_scalar(value, name: str) -> None:
  """A learned width (a JAX array): one number, > 0 when concrete."""
  check_positive(value, name)
  if np.ndim(value) != 0:
    raise ValueError(f"{name} of shape {np.shape(value)} must be a scalar: one width for the "
                     f"kernel.")


def _is_array(value) -> bool:
  """A JAX array (traced or concrete, e.g. a learned parameter), not a Python number."""
  return isinstance(value, jax.Array)


def gaussian(width: Int, *, sigma) -> Kernel:
  """``w_k = exp(-k^2 / (2 sigma^2))`` for ``|k| <= width // 2`` (the mean divides by the sum).

  One per axis gives a separable Gaussian with a width per axis:
  ``{1: gaussian(7, sigma=1.5), 2: gaussian(5, sigma=1.0), 3: None}``. `sigma` may be a
  JAX array (a learned width): the weights are then computed in JAX.
  """
  width = _odd_width(width, "gaussian")
  if _is_array(sigma):
    _check_scalar(sigma, "gaussian: sigma")
    return Kernel(jnp.exp(-jnp.square(jnp.asarray(_offsets(width), sigma.dtype))
                          / (2.0 * sigma * sigma)))
  sigma = _positive_number(sigma, "gaussian: sigma")
  return Kernel(np.exp(-np.square(_offsets(width)) / (2.0 * sigma * sigma)))


def miller_width(scale: float) -> int:
  """The width of Miller et al.'s exponential kernel: ``ceil(8 scale)``, made odd.

  Their sum runs over ``j = -4 lambda .. 4 lambda`` (code: ``neighbors = ceil(2 * 4 *
  lamb)``, plus one if even; github.com/MikiMiller95/DivisiveNormalization).
  """
  scale = _positive_number(scale, "miller_width: scale")
  n = math.ceil(8.0 * scale)
  return n + 1 if n % 2 == 0 else n


def exponential(width: Int | None = None, *, scale) -> Kernel:
  """``w_k = exp(-|k| / scale)``: Miller et al.'s decay along channels (``scale = lambda``).

  Args:
    width: odd width; None takes Miller et al.'s ``miller_width(scale)``.
    scale: the decay length lambda, > 0; a JAX array (a learned lambda) needs `width`.
  """
  if _is_array(scale):
    if width is None:
      raise ValueError(
          "exponential: a learned (array) scale needs a static width, e.g. "
          "width=miller_width(initial_scale); the window cannot change size under jit.")
    width = _odd_width(width, "exponential")
    _check_scalar(scale, "exponential: scale")
    return Kernel(jnp.exp(-jnp.abs(jnp.asarray(_offsets(width), scale.dtype)) / scale))
  scale = _positive_number(scale, "exponential: scale")
  width = miller_width(scale) if width is None else _odd_width(width, "exponential")
  return Kernel(np.exp(-np.abs(_offsets(width)) / scale))


def center_surround(width: Int = 3, *, dilation: Int = 1, ndim: Int = 1) -> Kernel:
  """A box with its centre zeroed: the surround alone (Pan et al. 2021: 3x3, dilated).

  Args:
    width: odd width >= 3 of each axis.
    dilation: spacing of the taps, i.e. the surround's distance from the centre.
    ndim: how many axes it spans jointly (2: the 3x3 ring of Pan et al.).
  """
  width = _odd_width(width, "center_surround")
  if width < 3:
    raise ValueError(f"center_surround: width={width} leaves no surround; use 3 or more.")
  ndim = _positive_int(ndim, "center_surround: ndim")
  weights = np.ones((width,) * ndim)
  weights[(width // 2,) * ndim] = 0.0
  return Kernel(weights, _positive_int(dilation, "dilation"))


def mixing(matrix) -> Mixing:
  """A nonnegative square matrix along one axis (GDN's channel pool; see `Mixing`).

  Raises:
    ValueError: not square, or concrete entries negative or not finite.
  """
  shape = np.shape(matrix)
  if len(shape) != 2 or shape[0] != shape[1]:
    raise ValueError(f"mixing: the matrix must be square [n, n], got shape {shape}.")
  _check_weights(matrix, "mixing")
  if isinstance(matrix, list | tuple):
    matrix = np.asarray(matrix, np.float64)
  return Mixing(matrix)


def learned_mixing(raw, *, minimum: float = 0.0) -> Mixing:
  """A mixing matrix ``nonnegative(raw, minimum=minimum)``: GDN's learned ``gamma``."""
  shape = np.shape(raw)
  if len(shape) != 2 or shape[0] != shape[1]:
    raise ValueError(f"learned_mixing: raw must be square [n, n], got shape {shape}.")
  return Mixing(nonnegative(raw, minimum=minimum))


def taps(k: Kernel) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
  """``(index, offset)`` per tap: the weights' index and the entry's offset per axis.

  Static zero weights (the centre of `center_surround`) are left out.
  """
  out = []
  for index in np.ndindex(*k.window):
    if k.static and not np.any(k.weights[index]):
      continue
    offset = tuple((i - n // 2) * k.dilation for i, n in zip(index, k.window, strict=True))
    out.append((index, offset))
  return out


def tap_weight(k: Kernel, index: tuple[int, ...], dtype) -> jax.Array:
  """The weight of tap `index` (a scalar, or a vector along `k.along`)."""
  w = k.weights[index]
  return np.asarray(w, dtype) if k.static else jnp.asarray(w).astype(dtype)
