"""Layer norm over the last axis (a transformer's features): forms of the statistics.

``python -m benchmarks.row_forms [--rounds N] [--quick]``

divnorm's `layer_norm` over the last 768 features of ``8x512x768`` takes 1.3-1.4x flax's
`LayerNorm` time at flax's `use_fast_variance=True` (BENCHMARKS.md, "Drop-in at flax's
settings"). flax's forward is one XLA CPU kernel: both row sums and the output, row by row.
Its sums are of ``x`` and ``x * x``, which lose every digit at an offset of 1e4. This
measures whether a form that is accurate at any offset can be as fast as flax's. Each form
is timed in the same interleaved rounds (`benchmarks.timing`):

- ``flax one-pass`` and ``flax two-pass``: ``flax.linen.LayerNorm`` without scale and bias.
- ``divnorm one-pass`` and ``divnorm two-pass``: ``divnorm.layer_norm`` with `fast_variance`
  True and False.
- ``mean shift, autodiff``: no optimization barriers. The two-pass statistics are taken
  around the row's float32 mean ``k``, and JAX differentiates them.
- ``mean shift, overflow guard``: the same with divnorm's guard on ``r``
  (`statistics.inverse_scale`: ``rsqrt(rem(d, inf))``, NaN where ``E[v^2]`` overflowed, not
  ``rsqrt(inf) = 0``): what the guard costs the forward.
- ``mean shift, written JVP``: the same statistics. The tangent is written out as
  ``dx r - E[dx] r + v dr``, with ``v`` recomputed.
- ``mean shift, sums of k - x``: one-pass sums of ``k - x`` and ``(k - x)^2``. They are
  distinct from the output's ``(x - k) - m``, so XLA cannot share them. A written JVP.

Columns: the largest error of the forward against float64 at offsets 0, 1e4 and 1e6 (unit
spread), in float32; time over flax one-pass's, forward and forward+backward (``grad`` of
``<y, w>``); the kernels (fusions) of the compiled forward: on XLA's CPU backend with
YNNPACK, flax's whole forward is one; and the input-sized arrays that the compiled
forward+backward writes other than its result. These are XLA fusions of the input's shape,
each a full write and read. ``--shape`` sets the input (default ``8x512x768``).
"""

from __future__ import annotations

import argparse
import functools
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import divnorm
from benchmarks import cli, contenders, timing, xla

SHAPE, QUICK_SHAPE = (8, 512, 768), (2, 4, 16)
SIGMA = 1e-3  # flax's epsilon 1e-6
OFFSETS = (0.0, 1e4, 1e6)


def _mean(t):
  return jnp.mean(t, -1, keepdims=True)


def _mean_shift_two_pass(x, sigma, guard: bool = False):
  """``(k, m, r)``: k the row's mean, m = E[x - k], r = 1 / sqrt(sigma^2 + E[v^2]); with
  `guard`, divnorm's overflow guard on r (`statistics.inverse_scale`)."""
  k = lax.stop_gradient(_mean(x))
  m = _mean(x - k)
  d = _mean(jnp.square((x - k) - m)) + sigma * sigma
  return k, m, lax.rsqrt(lax.rem(d, np.float32(np.inf)) if guard else d)


def _mean_shift_sums(x, sigma):
  """The same from one-pass sums of ``k - x``, an expression the output does not use."""
  k = lax.stop_gradient(_mean(x))
  s1, s2 = _mean(k - x), _mean(jnp.square(k - x))
  return k, -s1, lax.rsqrt(jnp.maximum(s2 - s1 * s1, 0.0) + sigma * sigma)


def _written_jvp(stats):
  """Layer norm over the last axis from `stats`, with its tangent written out."""

  @jax.custom_jvp
  def f(x, sigma):
    k, m, r = stats(x, sigma)
    return ((x - k) - m) * r

  @f.defjvp
  def _(primals, tangents):
    (x, sigma), (dx, dsigma) = primals, tangents
    k, m, r = stats(x, sigma)
    v = (x - k) - m
    dr = -0.5 * r * r * r * (2.0 * _mean(v * dx) + 2.0 * sigma * dsigma)
    return v * r, dx * r - _mean(dx) * r + v * dr

  return f


def forms() -> dict:
  """Form name -> function of `x` (float32)."""
  sigma = np.float32(SIGMA)

  def flax(fast):
    module = nn.LayerNorm(epsilon=SIGMA ** 2, use_bias=False, use_scale=False,
                          use_fast_variance=fast)
    return lambda x: module.apply({}, x)

  def autodiff(guard):
    def f(x):
      k, m, r = _mean_shift_two_pass(x, sigma, guard)
      return ((x - k) - m) * r
    return f

  written, sums = _written_jvp(_mean_shift_two_pass), _written_jvp(_mean_shift_sums)
  return {"flax one-pass": flax(True), "flax two-pass": flax(False),
          "divnorm one-pass": functools.partial(divnorm.layer_norm, sigma=SIGMA,
                                                fast_variance=True),
          "divnorm two-pass": functools.partial(divnorm.layer_norm, sigma=SIGMA,
                                                fast_variance=False),
          "mean shift, autodiff": autodiff(False),
          "mean shift, overflow guard": autodiff(True),
          "mean shift, written JVP": lambda x: written(x, sigma),
          "mean shift, sums of k - x": lambda x: sums(x, sigma)}


def error(f, x: jax.Array, offset: float) -> float:
  """The largest error of `f` at ``x + offset`` (float32) against float64 layer norm."""
  x = x + np.float32(offset)
  x64 = np.asarray(x, np.float64)
  v = x64 - x64.mean(-1, keepdims=True)
  expected = v / np.sqrt((v * v).mean(-1, keepdims=True) + SIGMA ** 2)
  return float(np.max(np.abs(np.asarray(jax.jit(f)(x), np.float64) - expected)))


def _entry(step, *args) -> str:
  """The entry computation of the jitted `step` compiled for `args`, as HLO text."""
  text = xla.compiled(step, *args).as_text()
  return text[text.index("\nENTRY"):]


def intermediates(step, *args) -> int:
  """Input-sized fusions in the compiled program other than its root."""
  shape = "f32[" + ",".join(map(str, args[0].shape)) + "]"
  return sum(1 for line in _entry(step, *args).splitlines()
             if " fusion(" in line and f"= {shape}" in line and "ROOT" not in line)


def kernels(f, x) -> int:
  """The fusions (kernels) of the compiled forward of `f` at `x`."""
  return _entry(jax.jit(f), x).count(" fusion(")


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--rounds", type=cli.positive_int(15), default=15)
  p.add_argument("--quick", action="store_true", help="tiny shape, one round (CI)")
  p.add_argument("--shape", default=None, type=cli.shapes,
                 help="the input, e.g. 64x1024x16")
  args = p.parse_args(argv)
  if args.shape and len(args.shape) > 1:
    p.error(f"--shape takes one shape, got {len(args.shape)}; time each in its own run")
  shape = args.shape[0] if args.shape else QUICK_SHAPE if args.quick else SHAPE
  x = jax.random.normal(jax.random.key(0), shape)
  w = jax.random.normal(jax.random.key(1), shape)
  calls, steps = {}, {}
  for name, f in forms().items():
    steps[name] = contenders.forward_backward(f)
    calls[f"{name} fwd"] = functools.partial(jax.jit(f), x)
    calls[f"{name} fwd+bwd"] = functools.partial(steps[name], x, w)
  t = timing.interleaved(calls, rounds=1 if args.quick else args.rounds,
                         target_s=0.0 if args.quick else 0.05)
  print(f"Layer norm over the last axis of {'x'.join(map(str, shape))}, float32, "
        f"sigma {SIGMA}; jax {jax.__version__}.\n")
  print("| form | error at offset 0 / 1e4 / 1e6 | fwd / flax one-pass | fwd kernels | "
        "fwd+bwd / flax one-pass | fwd+bwd ms | input-sized intermediates |")
  print("|---|---|---|---|---|---|---|")
  for name, f in forms().items():
    errors = " / ".join(f"{error(f, x, offset):.1e}" for offset in OFFSETS)
    print(f"| {name} | {errors} | {t.ratio(f'{name} fwd', 'flax one-pass fwd')} | "
          f"{kernels(f, x)} | "
          f"{t.ratio(f'{name} fwd+bwd', 'flax one-pass fwd+bwd')} | "
          f"{t.median(f'{name} fwd+bwd') * 1e3:.2f} | {intermediates(steps[name], x, w)} |",
          flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
