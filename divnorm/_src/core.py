r"""The unified normalizer of Ren et al. (ICLR 2017), `divnorm.normalize`.

.. math::
    v = x - E_A[x], \qquad y = \frac{v}{\sqrt{\sigma^2 + E_B[v^2]}}

`normalize` checks the call (`divnorm._src.checks`), resolves ``summation`` and
``suppression`` into `Field` s once, then composes the two functions of
`divnorm._src.statistics`: `moments` (``E_A[x]``, ``E_B[v^2]``) and `scale` (the division),
through `divnorm._src.fast`, which picks the speed path (one-pass sums, the hand-written
JVP).
"""

from __future__ import annotations

import jax

from divnorm._src import fast
from divnorm._src.checks import check_border, check_input, check_mask, check_sigma
from divnorm._src.fields import FieldSpec, resolve_field
from divnorm._src.statistics import Moments, moments, scale, stats_shape

# Also importable from here: the statistics and the checks the Flax modules use.
__all__ = ["Moments", "check_mask", "moments", "normalize", "scale"]


def normalize(
    x: jax.Array,
    summation: FieldSpec,
    suppression: FieldSpec | None = None,
    *,
    sigma=0.0,
    border: str = "valid",
    mask: jax.Array | None = None,
    axis_name=None,
    return_centered: bool = False,
    fast_variance: bool | None = None,
):
  r"""Normalizes `x` over a summation field and a suppression field.

  .. math::
      v = x - E_A[x], \qquad y = \frac{v}{\sqrt{\sigma^2 + E_B[v^2]}}

  ``E_B[v^2]`` is centered: each position is centered by its own mean ``E_A`` first
  (two-pass, around a shift taken from the data), so an offset far larger than the spread
  costs no digits. With local windows it is not a variance and could not be computed as
  ``E[x^2] - E[x]^2`` anyway.

  Args:
    x: floating input of any rank.
    summation: field A, ``{axis: None | odd width}`` or a tuple of axes
      (see `divnorm.resolve_field`).
    suppression: field B; None means the same as `summation`.
    sigma: smoothing term (``sigma ** 2`` is Flax's ``epsilon``): finite and >= 0, a
      float or an array (e.g. a learned parameter) that broadcasts to the statistics'
      shape (`x`'s shape with A and B's whole axes set to 1).
    border: ``"valid"`` (default) averages only the entries that exist;
      ``"zeros"`` reproduces the paper's TensorFlow code (zero padding, division by the
      full window); ``"zeros_with_divisor_bug"`` also reproduces that code's division of
      the suppression sum by the summation window's size (differs from ``"zeros"`` only
      when the windows differ).
    mask: boolean, broadcastable to `x`; statistics use only entries where it is True,
      whatever the others hold (NaN and inf included). Masked-out outputs (and centered
      values) are 0, with zero gradient.
    axis_name: treat this named axis (``jax.shard_map``, ``vmap(axis_name=...)``) as one
      more whole axis of both fields. Under plain ``jit`` with a sharded input, XLA
      computes global statistics by itself: no argument is needed.
    return_centered: also return ``v`` (e.g. for `divnorm.l1_penalty`).
    fast_variance: ``None`` (the library default) and ``False``: two-pass statistics,
      accurate at any offset. ``True``: one-pass ``E[x^2] - E[x]^2`` sums, clamped at 0
      (Flax's ``use_fast_variance=True``), for fields whose whole and grouped axes are the
      same in A and B (BN, LN, IN, GN, and divisive norm across channels, whose windows
      may differ); it loses digits when ``|E[x]| >> std(x)``.

  Returns:
    ``y`` with the shape and dtype of `x`, or ``(y, v)`` with `return_centered`.
    Statistics are computed in ``promote_types(x.dtype, float32)``.

  Raises:
    TypeError: integer `x`, non-boolean mask, malformed field.
    ValueError: bad axes or windows; NaN, inf, negative or shape-changing sigma; unknown
      border; mask shape; ``fast_variance=True`` for fields it does not serve.
  """
  x = check_input(x)
  a = resolve_field(summation, x.ndim, role="summation")
  b = a if suppression is None else resolve_field(suppression, x.ndim, role="suppression")
  check_border(border)
  sigma = check_sigma(sigma, stats_shape(x.shape, b))
  mask = check_mask(mask, x.shape)
  y, stats = fast.normalized(x, sigma, a, b, border=border, mask=mask, axis_name=axis_name,
                             fast_variance=fast_variance)
  v = stats.v
  if return_centered:
    return y.astype(x.dtype), v.astype(x.dtype)
  return y.astype(x.dtype)
