"""divnorm.haiku against haiku's own layers: forward+backward time, one interleaved run, and
the error at large offsets against float64.

Time: each case's haiku layer (``haiku.<Layer>``) and divnorm's (``divnorm.haiku.<Layer>``)
with the same arguments, haiku's defaults otherwise, timed in the same interleaved rounds
(`benchmarks.timing`); forward+backward is ``jit(grad(<y, w>))`` with respect to the input
and the parameters (created in the input's dtype, as haiku does; a bfloat16 haiku layer
computes its statistics in bfloat16, divnorm's in float32). BN is training mode (batch
statistics; the step keeps only `y`, so XLA removes the running averages' update on both
sides: it is not timed). Every ratio is time(divnorm) / time(haiku): the
median over rounds, then min-max.

Accuracy: a float32 input ``2 * N(0, 1) + offset`` of shape 16x64, each layer without
scale and offset, against divnorm's same layer run in float64 on the same float32 input:
the largest absolute error (haiku's one-pass variances turn negative there: NaN).

    python -m benchmarks.haiku [--rounds N] [--quick] [--cases LN,LN-fast,BN,GN,RMS,IN]
        [--dtypes float32,bfloat16]
"""

from __future__ import annotations

import functools
import sys
import time

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import cli, report, timing
from divnorm import haiku as dhk

CNN_SHAPES = [(100, 32, 32, 32), (128, 32, 32, 64)]
SEQ_SHAPE = (8, 512, 768)
# name -> (make(lib) -> layer, call arguments after x).
LAYERS = {
  "LN": (lambda m, ax: m.LayerNorm(ax, True, True, param_axis=-1), ()),
  "LN-fast": (lambda m, ax: m.LayerNorm(ax, True, True, param_axis=-1,
                                        use_fast_variance=True), ()),
  "BN": (lambda m, ax: m.BatchNorm(True, True, 0.9), (True,)),
  "GN": (lambda m, ax: m.GroupNorm(32), ()),
  "RMS": (lambda m, ax: m.RMSNorm(ax), ()),
  "IN": (lambda m, ax: m.InstanceNorm(True, True), ()),
}
CASES = [*((name, s) for s in CNN_SHAPES for name in ("LN", "LN-fast", "BN", "GN", "IN")),
         ("LN", SEQ_SHAPE), ("LN-fast", SEQ_SHAPE), ("RMS", SEQ_SHAPE)]
QUICK_CASES = [(name, (2, 4, 4, 32)) for name in LAYERS]
OFFSETS = (1e4, 1e6)
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _axes(name: str, shape):
  """LN over (H, W, C) of a CNN's activations, over the last axis of a sequence's."""
  return (-1,) if len(shape) == 3 or name == "RMS" else (1, 2, 3)


def _step(lib, name: str, x, w, forward: bool = False):
  """A zero-argument call: ``jit(grad(<y, w>))`` of `lib`'s layer, bound to its inputs."""
  make, args = LAYERS[name]
  f = hk.transform_with_state(lambda x: make(lib, _axes(name, x.shape))(x, *args))
  params, state = f.init(jax.random.key(0), x)

  def loss(x, params, w):  # `w` an argument: a closed-over array is folded in
    return jnp.sum(f.apply(params, state, None, x)[0].astype(jnp.float32) * w)

  step = jax.jit(jax.grad(loss, argnums=(0, 1)))
  return functools.partial(step, x, params, w)


def speed(cases, dtype_name: str, *, rounds: int, target_s: float) -> list[str]:
  out = [f"**Forward+backward, {dtype_name}, divnorm.haiku / haiku**", "",
         "| case | shape | / haiku | divnorm ms | haiku ms |", "|---|---|---|---|---|"]
  print("\n".join(out), flush=True)
  for name, shape in cases:
    x = jax.random.normal(jax.random.key(0), shape, DTYPES[dtype_name])
    w = jax.random.normal(jax.random.key(1), shape)
    t = timing.interleaved({"haiku": _step(hk, name, x, w), "divnorm": _step(dhk, name, x, w)},
                           rounds=rounds, target_s=target_s)
    out.append(f"| {name} | {'x'.join(map(str, shape))} | {t.ratio('divnorm', 'haiku')} | "
               f"{t.median('divnorm') * 1e3:.2f} | {t.median('haiku') * 1e3:.2f} |")
    print(out[-1], flush=True)
  print(flush=True)
  return out + [""]


ACCURACY_LAYERS = {
  "LN": lambda m: m.LayerNorm(-1, False, False),
  "LN-fast": lambda m: m.LayerNorm(-1, False, False, use_fast_variance=True),
  "BN": lambda m: m.BatchNorm(False, False, 0.9),
  "GN": lambda m: m.GroupNorm(2, create_scale=False, create_offset=False),
  "RMS": lambda m: m.RMSNorm(-1, create_scale=False),
}


def _error(make, args, lib, x) -> float:
  """The largest error of `lib`'s layer on float32 `x` against divnorm's in float64."""
  f = hk.transform_with_state(lambda x: make(lib)(x, *args))
  params, state = f.init(jax.random.key(0), jnp.asarray(x))
  got = np.asarray(f.apply(params, state, None, jnp.asarray(x))[0], np.float64)
  with jax.enable_x64(True):
    reference = hk.transform_with_state(lambda x: make(dhk)(x, *args))
    want = np.asarray(reference.apply(params, state, None, jnp.asarray(x, jnp.float64))[0])
  return float(np.max(np.abs(got - want)))


def accuracy(offsets=OFFSETS) -> list[str]:
  out = ["**Largest error against float64, float32 input 16x64 at an offset**", "",
         "| layer | offset | haiku | divnorm |", "|---|---|---|---|"]
  for name, make in ACCURACY_LAYERS.items():
    args = (True,) if name == "BN" else ()
    for offset in offsets:
      x = np.asarray(jax.random.normal(jax.random.key(0), (16, 64)) * 2 + offset, np.float32)
      theirs, ours = (_error(make, args, lib, x) for lib in (hk, dhk))
      out.append(f"| {name} | {offset:g} | {theirs:.2g} | {ours:.2g} |")
  return out + [""]


def main(argv=None) -> int:
  args, cases, rounds = cli.library_args(__doc__.split("\n\n")[0], LAYERS, DTYPES, CASES,
                                        QUICK_CASES, argv)
  report.print_command("benchmarks.haiku", argv)
  t0 = time.time()
  print("\n".join(accuracy()), flush=True)
  for dtype_name in args.dtypes:
    speed(cases, dtype_name, rounds=rounds, target_s=0.0 if args.quick else 0.05)
  print(f"Total {time.time() - t0:.0f} s; rounds {rounds}, jax {jax.__version__}, "
        f"haiku {hk.__version__}.")
  return 0


if __name__ == "__main__":
  sys.exit(main())
