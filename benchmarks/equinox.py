"""divnorm.equinox against equinox's own layers: forward+backward time, one interleaved run,
and how far apart the two gradients are.

Each case's equinox layer (``eqx.nn.<Layer>``) and divnorm's (``divnorm.equinox.<Layer>``),
built with the same arguments and equinox's defaults otherwise, are timed in the same
interleaved rounds (`benchmarks.timing`). As in equinox, a layer sees one example, channels
first, under ``jax.vmap`` over the batch (and over the tokens too, for LayerNorm and RMSNorm
over the last 768 features of 8x512x768); BatchNorm's statistics average over the vmapped
``axis_name``, its state passed in and out. Forward+backward is ``jit(grad(<y, w>))`` with
respect to the input and the layer's arrays (`eqx.partition`), in the input's dtype
(float32 parameters, equinox's default). Every ratio is time(divnorm) / time(equinox): the
median over rounds, then min-max.

``grad diff`` is the largest difference between the two input gradients over the largest
entry of equinox's: two implementations of one formula agree to float32 rounding (about
1e-6), and in bfloat16 to its roundings. Where equinox's layer raises (its
``BatchNorm(mode="ema")`` on a bfloat16 input), the row says so and gives divnorm's time.

    python -m benchmarks.equinox [--rounds N] [--quick] [--cases LN,RMS,GN,BN,BN-ema]
        [--dtypes float32,bfloat16]
"""

from __future__ import annotations

import functools
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import cli, report, timing
from divnorm import equinox as dqx

CNN_SHAPES = [(100, 32, 32, 32), (128, 64, 32, 32)]  # [N, C, H, W]: channels first
SEQ_SHAPE = (8, 512, 768)
# name -> make(lib, x's shape) -> layer; its example is x's shape without the batch axis.
LAYERS = {
  "LN": lambda m, s: m.LayerNorm(s[-1:] if len(s) == 3 else s[1:]),
  "RMS": lambda m, s: m.RMSNorm(s[-1]),
  "GN": lambda m, s: m.GroupNorm(8, s[1]),
  "BN": lambda m, s: m.BatchNorm(s[1], "batch", mode="batch"),
  "BN-ema": lambda m, s: m.BatchNorm(s[1], "batch", mode="ema"),
}
CASES = [*(("LN", s) for s in CNN_SHAPES), ("LN", SEQ_SHAPE), ("RMS", SEQ_SHAPE),
         *((name, s) for name in ("GN", "BN", "BN-ema") for s in CNN_SHAPES)]
QUICK_CASES = [("LN", (2, 8, 4, 4)), ("LN", (2, 4, 16)), ("RMS", (2, 4, 16)),
               *((name, (2, 8, 4, 4)) for name in ("GN", "BN", "BN-ema"))]
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _apply(name: str, layer, state, x):
  """`layer` on the batch `x`, as an equinox model calls it: vmapped over the examples (and
  a sequence's tokens); BatchNorm with its state and the batch's ``axis_name``."""
  if name.startswith("BN"):
    return jax.vmap(layer, axis_name="batch", in_axes=(0, None), out_axes=(0, None))(x, state)[0]
  return jax.vmap(jax.vmap(layer))(x) if x.ndim == 3 else jax.vmap(layer)(x)


def step(lib, name: str, x, w):
  """``(call, input gradient)``: a zero-argument call of ``jit(grad(<y, w>))`` of `lib`'s
  layer with respect to the input and the layer's arrays, bound to its arguments."""
  layer, state = eqx.nn.make_with_state(LAYERS[name])(lib, x.shape)
  arrays, static = eqx.partition(layer, eqx.is_array)

  def loss(x, arrays, state, w):  # `w` an argument: a closed-over array is folded in
    y = _apply(name, eqx.combine(arrays, static), state, x)
    return jnp.sum(y.astype(jnp.float32) * w)

  grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
  return functools.partial(grad, x, arrays, state, w), grad(x, arrays, state, w)[0]


def speed(cases, dtype_name: str, *, rounds: int, target_s: float) -> list[str]:
  out = [f"**Forward+backward, {dtype_name}, divnorm.equinox / equinox**", "",
         "| case | shape | / equinox | divnorm ms | equinox ms | grad diff |",
         "|---|---|---|---|---|---|"]
  print("\n".join(out), flush=True)
  for name, shape in cases:
    x = jax.random.normal(jax.random.key(0), shape, DTYPES[dtype_name])
    w = jax.random.normal(jax.random.key(1), shape)
    ours, g_ours = step(dqx, name, x, w)
    try:
      theirs, g_theirs = step(eqx.nn, name, x, w)
    except TypeError as error:  # equinox's BatchNorm(mode="ema") on bfloat16 input
      t = timing.interleaved({"divnorm": ours}, rounds=rounds, target_s=target_s)
      out.append(f"| {name} | {'x'.join(map(str, shape))} | equinox raises "
                 f"{type(error).__name__} | {t.median('divnorm') * 1e3:.2f} | | |")
      print(out[-1], flush=True)
      continue
    t = timing.interleaved({"equinox": theirs, "divnorm": ours}, rounds=rounds,
                           target_s=target_s)
    a, b = (np.asarray(g, np.float64) for g in (g_ours, g_theirs))
    diff = np.abs(a - b).max() / np.abs(b).max()
    out.append(f"| {name} | {'x'.join(map(str, shape))} | {t.ratio('divnorm', 'equinox')} | "
               f"{t.median('divnorm') * 1e3:.2f} | {t.median('equinox') * 1e3:.2f} | "
               f"{diff:.1e} |")
    print(out[-1], flush=True)
  print(flush=True)
  return out + [""]


def main(argv=None) -> int:
  args, cases, rounds = cli.library_args(__doc__.split("\n\n")[0], LAYERS, DTYPES, CASES,
                                        QUICK_CASES, argv)
  report.print_command("benchmarks.equinox", argv)
  t0 = time.time()
  for dtype_name in args.dtypes:
    speed(cases, dtype_name, rounds=rounds, target_s=0.0 if args.quick else 0.05)
  print(f"Total {time.time() - t0:.0f} s; rounds {rounds}, jax {jax.__version__}, "
        f"equinox {eqx.__version__}.")
  return 0


if __name__ == "__main__":
  sys.exit(main())
