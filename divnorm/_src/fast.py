"""The one speed path: one-pass statistics, ``fast_variance=True``.

``E_B[v^2]`` from plain sums of ``x`` and ``x^2`` (Flax's ``use_fast_variance=True``) reads the
input once for both statistics, where two-pass reads it again after the mean. The price is
cancellation: ``E[x^2] - E[x]^2`` loses about ``log2((|E[x]| / std)^2)`` bits, every digit at an
offset of 1e4 with std 1 in float32. It is therefore an explicit option, never the default
(`divnorm.normalize`'s ``fast_variance=None`` is two-pass), and it is clamped at 0.

It serves fields whose whole (and grouped) axes W are the same in A and B: batch, layer,
instance and group norm, and divisive norm across channels, whose windows may differ. With
``S1 = sum_W x``, ``S2 = sum_W x^2`` and ``n = |W|`` (masked-in entries only) at every position
q of the windowed axes, and ``m_q = E_A[x]_q`` (a window sum of ``S1``), the sum over W of
``v^2 = (x - m_q)^2`` is ``T_q = S2 - 2 m_q S1 + n m_q^2``: each position is centered by its
own mean, never ``box(x^2) - box(x)^2``. ``E_B[v^2]`` is the window sum of ``T`` over B's
windows divided by B's count.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from divnorm._src.fields import Field
from divnorm._src.reductions import divide_by_count, field_count, field_sum, select, window_sum


def serves(a: Field, b: Field) -> bool:
  """Whether one-pass statistics are ``E_B[v^2]`` for fields `a`, `b`: equal whole parts."""
  return a.whole == b.whole and a.groups == b.groups and bool(a.whole or a.groups)


def check_fast_variance(a: Field, b: Field) -> None:
  """A clear error where one-pass sums are not ``E_B[v^2]``."""
  if not serves(a, b):
    raise ValueError(
        "fast_variance=True computes one-pass sums of x and x^2 over the whole axes, which "
        "give E_B[v^2] only when the summation and suppression fields have the same whole "
        f"(and grouped) axes, and at least one (got {a} and {b}); windows may differ. "
        "Leave fast_variance=None (two-pass) for these fields.")


def one_pass_moments(
    x: jax.Array, a: Field, b: Field, count_b, *, border: str, mask=None, axis_name=None
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """``(E_A[x], E_B[v^2], v)`` from one pass of sums over the whole axes (see the module).

  Args:
    x: the input, in the statistics dtype.
    a, b: fields that pass `check_fast_variance`.
    count_b: the divisor of ``E_B[v^2]`` (B's count, or A's with the divisor bug).
    border, mask, axis_name: as in `divnorm.normalize` (mask checked, boolean).
  """
  dt = x.dtype
  pooled = a.pooled
  xs = select(x, mask)
  s1 = field_sum(xs, pooled, axis_name=axis_name)
  s2 = field_sum(xs * xs, pooled, axis_name=axis_name)
  n = field_count(x.shape, pooled, mask=mask, axis_name=axis_name, dtype=dt)
  count_a = field_count(x.shape, a, border=border, mask=mask, axis_name=axis_name, dtype=dt)
  mean = divide_by_count(window_sum(s1, a.windows), count_a)
  two, zero = np.asarray(2.0, dt), np.zeros((), dt)
  t = jnp.maximum(s2 - two * mean * s1 + n * mean * mean, zero)  # clamped: rounding < 0
  var = divide_by_count(window_sum(t, b.windows), count_b)
  return mean, var, select(x - mean, mask)
