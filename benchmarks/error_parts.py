"""``python -m benchmarks.error_parts``: batch norm's float32 error at large offsets, in parts.

For BN over a 16x16x16x32 input (``offset + N(0, 1)``, seeds 0-2, offsets 0, 1e4, 1e6),
each form's largest error against float64 (NumPy, on the same float32 input) is split per
channel into ``err = a + b * y64 + rest``: a centre part ``a`` (the mean's error over the
spread), a scale part ``b`` (half the variance's relative error) and the rest (the
output's own rounding); with the variance's relative error. The forms: divnorm's
`batch_norm` in both modes, a two-pass written in jnp around the same shift (the mean of
the first two entries, no optimization barrier), and divnorm in float64 on the device.

On an H200 (``gpu_runs/2026-12-04/error_parts.md``) divnorm's two-pass was off by 1.0e-5 at
1e6, where the CPU is off by 7.4e-7; it is the scale part (the variance off by 5e-6), and
the jnp-written form has the same error to the digit: the device's float32 column sums of
4096 squares, not divnorm's construction. A diagnosis; no library code depends on it.
"""

from __future__ import annotations

import argparse
import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import divnorm

SHAPE = (16, 16, 16, 32)
AXES = (0, 1, 2)
SIGMA = 0.1


def bn(x, fast_variance=None):
  """divnorm's batch norm: ``(y, mean, var)`` of the batch."""
  y, stats = divnorm.batch_norm(x, divnorm.batch_stats_init(x), training=True, sigma=SIGMA,
                                momentum=0.0, fast_variance=fast_variance)
  return y, stats.mean, stats.var


def jnp_two_pass(x):
  """The same shift and two passes, written in jnp: ``(y, mean, var)``."""
  k = jnp.mean(x[:1, :1, :2], axis=2, keepdims=True)
  s = x - k
  m = jnp.mean(s, AXES, keepdims=True)
  v = s - m
  var = jnp.mean(v * v, AXES, keepdims=True)
  return v * lax.rsqrt(var + SIGMA**2), (k + m).ravel(), var.ravel()


def bn_float64(x):
  with jax.enable_x64(True):
    return [np.asarray(t) for t in jax.jit(bn)(jnp.asarray(x, jnp.float64))]


def main(argv=None) -> int:
  argparse.ArgumentParser(prog="python -m benchmarks.error_parts", description=__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
  print("backend", jax.default_backend(), jax.devices()[0].device_kind, jax.__version__)
  forms = {"divnorm two-pass": jax.jit(bn),
           "divnorm one-pass": jax.jit(functools.partial(bn, fast_variance=True)),
           "hand shifted two-pass": jax.jit(jnp_two_pass)}
  print("| seed | offset | form | max err y | centre part | scale part | rest | rel err var |")
  print("|---|---|---|---|---|---|---|---|")
  for seed in range(3):
    for offset in (0.0, 1e4, 1e6):
      x = (offset + np.random.default_rng(seed).normal(size=SHAPE)).astype(np.float32)
      x64 = x.astype(np.float64)
      v64 = x64 - x64.mean(AXES)
      var64 = (v64 * v64).mean(AXES)
      y64 = v64 / np.sqrt(var64 + SIGMA**2)
      results = {n: [np.asarray(t, np.float64) for t in f(jnp.asarray(x))]
                 for n, f in forms.items()}
      results["divnorm float64 on device"] = bn_float64(x)
      for name, (y, _, var) in results.items():
        err = y - y64  # per channel: err = a + b * y64 + rest
        a = err.mean(AXES)
        b = ((err - a) * y64).mean(AXES) / (y64 * y64).mean(AXES)
        rest = err - a - b * y64
        print(f"| {seed} | {offset:g} | {name} | {np.abs(err).max():.1e} | "
              f"{np.abs(a).max():.1e} | {np.abs(b).max():.1e} | {np.abs(rest).max():.1e} | "
              f"{np.abs(var / var64 - 1).max():.1e} |", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
