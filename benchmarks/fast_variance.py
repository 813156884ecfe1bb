"""divnorm's presets with ``fast_variance=True`` (and the two-pass default) against flax.linen.

Forward+backward, interleaved rounds, ratios to flax's default (one-pass) layers:

    python -m benchmarks.fast_variance [rounds]
"""

import functools
import sys

import jax

import divnorm
from benchmarks import contenders, timing

SHAPES = [(100, 32, 32, 32), (100, 16, 16, 32), (100, 8, 8, 64), (128, 32, 32, 64)]
SIGMA = contenders.SIGMA


def main(rounds: int) -> None:
  print("| preset | shape | fast_variance=True / flax | two-pass default / flax |")
  print("|---|---|---|---|")
  for shape in SHAPES:
    _rows(shape, rounds)


def _rows(shape, rounds: int) -> None:
  stats = divnorm.batch_stats_init(shape)
  fast = {
    "BN": lambda x: divnorm.batch_norm(x, stats, training=True, sigma=SIGMA, fast_variance=True),
    "LN": functools.partial(divnorm.layer_norm, reduction_axes=tuple(range(1, len(shape))), sigma=SIGMA, fast_variance=True),
    "IN": functools.partial(divnorm.instance_norm, sigma=SIGMA, fast_variance=True),
    "GN": functools.partial(divnorm.group_norm, num_groups=8 if shape[-1] % 8 == 0 else 1, sigma=SIGMA, fast_variance=True),
  }
  pre = contenders.presets(shape)
  x = jax.random.normal(jax.random.key(0), shape)
  w = jax.random.normal(jax.random.key(1), shape)
  for name, f_fast in fast.items():
    two, flax_f = pre[name]
    fns = {}
    for label, f in (("fast", f_fast), ("two", two), ("flax", flax_f)):
      g = contenders.forward_backward(f)
      g(x, w)
      fns[label] = functools.partial(g, x, w)
    t = timing.interleaved(fns, rounds=rounds)
    print(f"| {name} | {'x'.join(map(str, shape))} | {t.ratio('fast', 'flax')} | {t.ratio('two', 'flax')} |", flush=True)


if __name__ == "__main__":
  main(int(sys.argv[1]) if len(sys.argv) > 1 else 9)
