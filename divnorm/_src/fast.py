"""The speed paths, in one module: one-pass statistics and a hand-written JVP.

`moments` and `normalized` are what the functions call: they pick the path. Three paths:

1. One-pass statistics, ``fast_variance=True`` (`one_pass_moments`).
2. A hand-written JVP for unmasked, single-device inputs (`_normalized`), either statistics.
3. For those inputs, the two-pass statistics of divisive norm across channels (windows,
   and the same whole axes in A and B) by a rough mean and a corrected pass
   (`corrected_two_pass`).

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

**The corrected two-pass** (issue 14). `statistics.centered_moments` reads `x` three times
for divisive norm: the shift (a whole sum), ``sum_C (x - k)`` and ``sum_C ((x - k) - m)^2``.
On XLA CPU the last two are YNNPACK reductions with an elementwise operation inside, 1.6-2x
slower than a plain sum (BENCHMARKS.md, "pieces"). `corrected_two_pass` takes the plain sum
``sum_C x`` (the shift then comes from its small result), and ``sum_C (x - c)`` with
``sum_C (x - c)^2`` as one two-output reduce, which XLA runs with its own emitter (passes
alone, 100x32x32x32: 0.63 + 0.73 ms against 0.26 + 1.00 + 1.26 ms for the shift and the
two sums). The same accuracy (the terms are small numbers, none cancelling;
tests/test_edges.py at offsets 1e4 and 1e6).
DN across channels, `divnorm.divisive_norm` against 1a57d38's path, interleaved medians
on a quiet 2-core CPU (after / before,
min-max; BENCHMARKS.md, issue 14):

| shape, window | forward | forward+backward |
|---|---|---|
| 100x32x32x32, 5x5 | 0.75 (0.51-1.10) | 0.95 (0.73-1.08) |
| 100x16x16x32, 3x3 | 0.78 (0.62-0.92) | 0.96 (0.80-1.05) |
| 100x8x8x64, 3x3   | 1.07 (0.97-1.45) | 1.00 (0.79-1.28) |
| 128x32x32x64, 5x5 | 1.08 (0.86-1.16) | 0.95 (0.78-1.11) |

Kept: training (forward+backward) is no slower (medians 0.95-1.00), and the forward of the
CNN's 32-channel layers a fourth faster. Not kept: a shift from a strided sample of the span, and a
JVP reusing the forward's pooled sums: XLA bytes 10-13% lower, time 0.93-1.31x.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from divnorm._src import statistics
from divnorm._src.fields import Field
from divnorm._src.reductions import (
    border_count,
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
  if a.pooled == b.pooled and a.whole and not a.groups and (a.windows or b.windows):
    return corrected_two_pass(x, a, b, border=border)
  return statistics.centered_moments(x, a, b, border=border)


def _sums(t, u, axes):
  """``(sum t, sum u)`` over `axes` (kept as size 1) by one two-output reduce."""
  def add(p, q):
    return p[0] + q[0], p[1] + q[1]
  zero = np.zeros((), t.dtype)
  st, su = lax.reduce((t, u), (zero, zero), add, axes)
  shape = tuple(1 if i in axes else n for i, n in enumerate(t.shape))
  return st.reshape(shape), su.reshape(shape)


def corrected_two_pass(x, a: Field, b: Field, *, border: str):
  """`statistics.centered_moments` of unmasked `x` by a rough mean and a corrected pass.

  For fields with windows whose whole axes W are the same in A and B (divisive norm across
  channels). Pass 1 is the plain sum over W: a rough per-position mean ``c`` (its rounding
  is ~eps |x|). Pass 2 sums ``x - c`` and ``(x - c)^2`` in one reduce: ``d`` is the
  rounding of ``c`` (the corrected two-pass algorithm), ``q`` the centered sum of squares.
  The shift ``k`` is the mean of ``c`` over A's span (0 where not finite); then, exactly,
  ``sum_W (x - k) = n (c - k) + d`` and, with ``e = (c - k) - m``,
  ``sum_W (x - k - m)^2 = q + 2 e d + n e^2``: small terms, none cancelling.
  """
  dt = x.dtype
  whole = a.whole
  n = field_count(x.shape, a.pooled, dtype=dt)
  c = divide_by_count(jnp.sum(x, axis=whole, keepdims=True), n)
  span = tuple(axis for axis, _ in a.windows)
  k = jnp.mean(c, axis=span, keepdims=True) if span else c
  k = lax.stop_gradient(jnp.where(jnp.isfinite(k), k, jnp.zeros((), dt)))
  cc = statistics.fresh(c)
  d, q = _sums(x - cc, jnp.square(x - cc), whole)
  ck = c - k
  outside = border_count(x.shape, a, border).astype(dt)
  count_a = field_count(x.shape, a, border=border, dtype=dt)
  m = divide_by_count(window_sum(n * ck + d, a.windows) - k * outside, count_a)
  e = ck - m
  two = np.asarray(2.0, dt)
  count_b = statistics.suppression_count(x.shape, a, b, border=border, dtype=dt)
  var = divide_by_count(window_sum(q + two * e * d + n * e * e, b.windows), count_b)
  return k, m, var


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
