"""Group norm with the channels first: forward+backward time and the gradient's error.

``python -m benchmarks.channels_first [--rounds N] [--quick] [--rev REV] [--shapes ...]
[--dtypes float32,bfloat16]``

Channels first is how equinox lays out an example (``eqx.nn.GroupNorm`` on ``[C, ...]``,
under ``vmap``) and how a model ported from PyTorch holds its activations. Contenders, each
``jit(grad(<y, w>))`` with respect to the input, in the same interleaved rounds
(`benchmarks.timing`):
- ``equinox``: ``eqx.nn.GroupNorm(8, C)`` under ``vmap`` (the reference of the ratios);
- ``divnorm.equinox``: ``divnorm.equinox.GroupNorm(8, C)`` under ``vmap``;
- ``group_norm``: ``divnorm.group_norm(x, num_groups=8, channel_axis=1)``, no affine;
- ``flax, channels last``: ``flax.linen.GroupNorm(8)`` on a channels-last copy of the data
  (flax's layout: its time, with no transpose counted);
- with ``--rev``: REV's ``divnorm.group_norm(channel_axis=1)`` (`before_after.load_normalize`).

Error: each contender's float32 gradient against the float64 closed form
``r (w - E[w] - y E[w y])`` per group (with a unit scale), the largest absolute difference
over the largest entry of the gradient (float32 rounding is about 1e-6). Every ratio is
time(contender) / time(equinox): the median over rounds, then min-max.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import divnorm
from benchmarks import before_after, cli, report, timing
from divnorm import equinox as dqx

SHAPES = [(8, 768, 512), (8, 1280, 16, 16), (16, 256, 32, 32)]
QUICK_SHAPES = [(2, 16, 4, 4)]
GROUPS = 8
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def gradient_error(grad: np.ndarray, x: np.ndarray, w: np.ndarray, epsilon: float) -> float:
  """``max |grad - exact| / max |exact|``, exact: the float64 closed form, channels at 1."""
  x, w = (np.moveaxis(t.astype(np.float64), 1, -1) for t in (x, w))
  split = x.shape[:1] + (-1, GROUPS, x.shape[-1] // GROUPS)
  x, w, axes = x.reshape(split), w.reshape(split), (1, 3)
  r = 1 / np.sqrt(x.var(axes, keepdims=True) + epsilon)
  y = (x - x.mean(axes, keepdims=True)) * r
  exact = r * (w - w.mean(axes, keepdims=True) - y * (w * y).mean(axes, keepdims=True))
  got = np.moveaxis(np.asarray(grad, np.float64), 1, -1).reshape(exact.shape)
  return float(np.abs(got - exact).max() / np.abs(exact).max())


def contenders(shape, dtype, rev: str | None = None) -> dict:
  """Name -> ``(step, x, w)``: the jitted input gradient and its arguments, channels at 1
  (flax's: channels last); `rev`: also that revision's `group_norm` (loaded)."""
  c = shape[1]
  x = jax.random.normal(jax.random.key(0), shape, dtype)
  w = jax.random.normal(jax.random.key(1), shape, jnp.float32)
  last = (jnp.moveaxis(x, 1, -1), jnp.moveaxis(w, 1, -1))

  def step(f):
    return jax.jit(jax.grad(lambda x, w: jnp.sum(f(x).astype(jnp.float32) * w)))

  flax_gn = nn.GroupNorm(GROUPS, use_scale=False, use_bias=False)
  out = {"equinox": (step(jax.vmap(eqx.nn.GroupNorm(GROUPS, c))), x, w),
         "divnorm.equinox": (step(jax.vmap(dqx.GroupNorm(GROUPS, c))), x, w),
         "group_norm": (step(functools.partial(divnorm.group_norm, num_groups=GROUPS,
                                               channel_axis=1, sigma=1e-5 ** 0.5)), x, w),
         "flax, channels last": (step(lambda x: flax_gn.apply({}, x)), *last)}
  if rev is not None:
    old = sys.modules[f"divnorm_{rev}"]
    out[f"group_norm at {rev}"] = (step(functools.partial(
        old.group_norm, num_groups=GROUPS, channel_axis=1, sigma=1e-5 ** 0.5)), x, w)
  return out


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--rounds", type=cli.positive_int(10), default=10)
  p.add_argument("--quick", action="store_true", help="tiny shapes, one round (CI)")
  p.add_argument("--rev", default=None, help="also a past revision's group_norm")
  p.add_argument("--shapes", default=None, type=cli.shapes, help="e.g. 8x768x512,8x1280x16x16")
  p.add_argument("--dtypes", default="float32,bfloat16", type=cli.names_of(DTYPES))
  args = p.parse_args(argv)
  if args.rev is not None and before_after.load_normalize(args.rev) is None:
    print(f"git or revision {args.rev} is not available here", file=sys.stderr)
    return 1
  shapes = args.shapes or (QUICK_SHAPES if args.quick else SHAPES)
  cmd = "python -m benchmarks.channels_first " + " ".join(
      argv if argv is not None else sys.argv[1:])
  print("\n".join([f"Command: `{cmd.strip()}`", "", *report.machine(), ""]), flush=True)
  print("| shape | dtype | contender | / equinox | ms | gradient error |\n"
        "|---|---|---|---|---|---|", flush=True)
  t0 = time.time()
  for dtype_name in args.dtypes:
    for shape in shapes:
      cs = contenders(shape, DTYPES[dtype_name], args.rev)
      t = timing.interleaved({k: functools.partial(*v) for k, v in cs.items()},
                             rounds=1 if args.quick else args.rounds,
                             target_s=0.0 if args.quick else 0.05)
      _, x1, w1 = cs["equinox"]  # channels at 1
      for name, (g, x, w) in cs.items():
        last = name.startswith("flax")
        grad = jnp.moveaxis(g(x, w), -1, 1) if last else g(x, w)
        error = gradient_error(np.asarray(grad, np.float32), np.asarray(x1, np.float32),
                               np.asarray(w1), 1e-6 if last else 1e-5)
        print(f"| {'x'.join(map(str, shape))} | {dtype_name} | {name} | "
              f"{t.ratio(name, 'equinox')} | {t.median(name) * 1e3:.2f} | {error:.1e} |",
              flush=True)
  print(f"\nTotal {time.time() - t0:.0f} s; jax {jax.__version__}.")
  return 0


if __name__ == "__main__":
  sys.exit(main())
