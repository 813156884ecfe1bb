"""The speed paths, in one module: one-pass statistics and a hand-written JVP.

`moments` and `normalized` are what the functions call: they pick the path. Two paths:

1. One-pass statistics, ``fast_variance=True`` (`one_pass_moments`).
2. A hand-written JVP for unmasked, single-device inputs (`_normalized`), either statistics.

**One-pass statistics.**

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

**The hand-written JVP** writes every input-sized term of the derivative from `x`, the
tangent and statistic-sized arrays (``v`` is recomputed, never stored), so reverse mode
(its transpose) reads `x` and the cotangent a few times and writes one gradient. Measured
with ``python -m benchmarks.jvp`` (XLA CPU, ``jit(grad(<f(x), w>))``, bytes accessed and
temporaries in units of the input's size; deterministic, no timing):

| 100x32x32x32 (CNN conv1) | autodiff bytes | JVP bytes | ratio | autodiff temp | JVP temp |
|---|---|---|---|---|---|
| LN over (H, W, C)        | 16.00 | 11.00 | 0.69 | 1.00 | 0.00 |
| DN 5x5 across channels   | 17.25 | 13.35 | 0.77 | 1.16 | 0.22 |
| RMS over (H, W, C)       |  6.00 |  6.00 | 1.00 | 0.00 | 0.00 |

It pays for the centered normalizers (30% fewer bytes, no input-sized temporary) and is
kept; RMS norm's former rule saved nothing and was removed (autodiff is used).

Measured and not kept (BENCHMARKS.md, issue 14): a shift from a strided sample of the span
instead of `statistics.shift`'s whole pass, and a JVP reusing the forward's pooled sums: XLA
bytes 10-13% lower, time 0.93-1.31x on XLA CPU (the tensors sit in cache there).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from divnorm._src import statistics
from divnorm._src.fields import Field
from divnorm._src.reductions import (
    divide_by_count,
    field_count,
    field_sum,
    select,
    stat_dtype,
    window_sum,
)


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
    x: jax.Array, a: Field, b: Field, *, border: str, mask=None, axis_name=None
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """``(E_A[x], E_B[v^2], v)`` from one pass of sums over the whole axes (see the module).

  Args:
    x: the input, in the statistics dtype.
    a, b: fields that pass `check_fast_variance`.
    border, mask, axis_name: as in `divnorm.normalize` (mask checked, boolean).
  """
  dt = x.dtype
  count_b = statistics.suppression_count(x.shape, a, b, border=border, mask=mask,
                                   axis_name=axis_name, dtype=dt)
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


def moments(x: jax.Array, a: Field, b: Field, *, border: str = "valid", mask=None,
            axis_name=None, fast_variance: bool | None = None) -> statistics.Moments:
  """`statistics.moments`, or the one-pass statistics with ``fast_variance=True``."""
  if not fast_variance:
    return statistics.moments(x, a, b, border=border, mask=mask, axis_name=axis_name)
  check_fast_variance(a, b)
  x = x.astype(stat_dtype(x.dtype))
  mean, var, v = one_pass_moments(x, a, b, border=border, mask=mask, axis_name=axis_name)
  return statistics.Moments(mean, var, v)


def normalized(x: jax.Array, sigma, a: Field, b: Field, *, border: str = "valid", mask=None,
               axis_name=None, fast_variance: bool | None = None):
  """``(y, Moments)`` in the statistics dtype: `statistics.scale` of the statistics of `x`.

  Unmasked single-device inputs take the hand-written JVP (see the module); masks and
  `axis_name` are differentiated by JAX. `sigma` is checked (`checks.check_sigma`).
  """
  if fast_variance:
    check_fast_variance(a, b)
  if mask is not None or axis_name is not None:
    stats = moments(x, a, b, border=border, mask=mask, axis_name=axis_name,
                    fast_variance=fast_variance)
    return select(statistics.scale(stats.v, stats.var, sigma), mask), stats
  x = x.astype(stat_dtype(x.dtype))
  y, k, m, var = _normalized(x, jnp.asarray(sigma, x.dtype), a, b, border, bool(fast_variance))
  return y, statistics.Moments(k + m, var, statistics.centered(x, k, m)[0])


def _stats(x, a: Field, b: Field, border: str, one_pass: bool):
  """``(k, m, var)`` with ``E_A[x] = k + m``, two-pass or one-pass (``k = 0``)."""
  if one_pass:
    mean, var, _ = one_pass_moments(x, a, b, border=border)
    return jnp.zeros_like(mean), mean, var
  return statistics.centered_moments(x, a, b, border=border)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5))
def _normalized(x, sigma, a: Field, b: Field, border: str, one_pass: bool):
  """``(y, k, m, var)`` of an unmasked input, with the hand-written JVP below."""
  k, m, var = _stats(x, a, b, border, one_pass)
  return statistics.scale(statistics.centered(x, k, m)[0], var, sigma), k, m, var


@_normalized.defjvp
def _normalized_jvp(a, b, border, one_pass, primals, tangents):
  x, sigma = primals
  dx, dsigma = tangents
  y, k, m, var = _normalized(x, sigma, a, b, border, one_pass)
  dt = x.dtype
  count_a = field_count(x.shape, a, border=border, dtype=dt)
  count_b = statistics.suppression_count(x.shape, a, b, border=border, dtype=dt)
  dmean = divide_by_count(field_sum(dx, a), count_a)
  # d var = E_B[2 v dv] = 2 E_B[v dx] - 2 E_B[v dmean], expanded so that no input-sized
  # term feeds two consumers: XLA then fuses every reduction of the transposed
  # (reverse-mode) program into its inputs.
  v = statistics.centered(x, k, m)[0]
  two = np.asarray(2.0, dt)
  dvar = two * divide_by_count(field_sum(v * dx, b), count_b)
  # - 2 E_B[v dmean]. With A == B whole, that is 2 dmean E_A[v], and E_A[v] is 0 up to the
  # rounding of the mean (~eps * std): below float32 rounding of dvar.
  if a != b or a.windows:
    dvar = dvar - two * divide_by_count(field_sum(v * dmean, b), count_b)
  r = statistics.inverse_scale(var, sigma)
  dr = np.asarray(-0.5, dt) * r * r * r * (dvar + two * sigma * dsigma)
  dy = dx * r - dmean * r + v * dr
  return (y, k, m, var), (dy, jnp.zeros_like(k), dmean, dvar)
