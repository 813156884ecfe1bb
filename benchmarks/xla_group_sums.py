"""XLA's CPU miscompile of channels-first group sums by matmuls, as a pure-JAX program.

``python -m benchmarks.xla_group_sums [--channels 768] [--positions 512] [--batch 8]``

`divnorm._src.reductions.group_sum` summed a statistic's channel groups by two matmuls with
the 0/1 membership matrix. In group norm's gradient with the channels first, XLA's CPU
backend fused the input's sums over its minor axis, both matmuls, the broadcast back and a
product with the input into one YNNPACK kernel, which returned a wrong result (BENCHMARKS.md,
"Group sums: wrong gradients from XLA"). This is that pattern alone:

    f(x) = x * ((sum(x, axis=2) @ m) @ m.T)[:, :, None]

with ``m`` the ``[C, G]`` membership of 8 groups, jitted, against float64 NumPy. It prints
the largest error over the largest entry (float32 rounding is about 1e-7), then the same
with YNNPACK fusions off (``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=``, in a
subprocess), for a report upstream and to see whether a newer XLA still does it (divnorm
gathers channels-first group sums back instead, whatever this prints).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from benchmarks import cli

GROUPS = 8


def relative_error(batch: int, channels: int, positions: int) -> float:
  """``max |jit(f)(x) - f64(x)| / max |f64(x)|`` for one random float32 `x`."""
  m = (np.arange(channels)[:, None] // (channels // GROUPS) == np.arange(GROUPS)).astype(
      np.float32)

  def f(x):
    s = lax.dot(lax.dot(jnp.sum(x, 2), m, precision="highest"), m.T, precision="highest")
    return x * s[:, :, None]

  x = np.random.default_rng(0).standard_normal((batch, channels, positions)).astype(np.float32)
  xd = x.astype(np.float64)
  want = xd * ((xd.sum(2) @ m) @ m.T)[:, :, None]
  got = np.asarray(jax.jit(f)(x), np.float64)
  return float(np.abs(got - want).max() / np.abs(want).max())


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--batch", type=cli.positive_int(8), default=8)
  p.add_argument("--channels", type=cli.positive_int(768), default=768,
                 help=f"a multiple of {GROUPS}")
  p.add_argument("--positions", type=cli.positive_int(512), default=512)
  p.add_argument("--one", action="store_true", help="print this process's error alone")
  args = p.parse_args(argv)
  if args.channels % GROUPS:
    p.error(f"--channels {args.channels} is not a multiple of {GROUPS}")
  error = relative_error(args.batch, args.channels, args.positions)
  if args.one:
    print(f"{error:.3e}")
    return 0
  flags = os.environ.get("XLA_FLAGS", "")
  off = subprocess.run(
      [sys.executable, "-m", "benchmarks.xla_group_sums", "--one", "--batch", str(args.batch),
       "--channels", str(args.channels), "--positions", str(args.positions)],
      env={**os.environ, "XLA_FLAGS": f"{flags} --xla_cpu_experimental_ynn_fusion_type="},
      capture_output=True, text=True, check=True).stdout.strip()
  shape = f"{args.batch}x{args.channels}x{args.positions}"
  print(f"jax {jax.__version__}, x of shape {shape}, {GROUPS} groups: error / largest entry")
  print(f"- XLA's defaults: {error:.3e}")
  print(f"- YNNPACK fusions off: {off}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
