r"""Where the DN LSTM's time goes: the normalizer calls of one cell step, timed alone.

  python -m experiments.rnn.speed_profile --out results/rnn

On the study's shapes (batch 20, hidden 128: the four gates as one [80, 128] call, the cell
state [20, 128], the paper's window 61), forward and forward+backward of divnorm's divisive
norm, layer norm (LN-s) and `divnorm.window_sum` alone, interleaved in rounds (the fastest
round of each is reported). For reference it also times the same DN written with the window
sums as a product with a banded 0/1 matrix (checked equal to the library's to 1e-5): what a
matmul window sum would cost on these shapes. A train step of the LM runs every call 2 layers
x 20 unrolled steps times. Writes `<out>/speed_profile.md`.
"""

from __future__ import annotations

import argparse
import functools
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import divnorm
from experiments.config import positive_int

SIGMA = 1.0  # the paper's for DN on the LSTM
CALLS_PER_STEP = 2 * 20  # layers x unrolled time steps


def band_dn(x, width: int):
  """DN over the last axis with window sums as ``x @ band`` ("valid" border): a reference."""
  n = x.shape[-1]
  i = np.arange(n)
  band = (np.abs(i[:, None] - i[None, :]) <= width // 2).astype(np.float32)
  count = band.sum(0)
  v = x - (x @ band) / count
  return v * jax.lax.rsqrt(SIGMA**2 + ((v * v) @ band) / count)


def contenders(width: int) -> dict:
  return {
      "DN (divnorm)": lambda x: divnorm.divisive_norm(x, summation_window=(width,), sigma=SIGMA),
      "LN-s (divnorm)": lambda x: divnorm.layer_norm(x, reduction_axes=-1, sigma=SIGMA),
      "window_sum alone (divnorm)": lambda x: divnorm.window_sum(x, ((1, width),)),
      "DN, banded matmul (reference)": lambda x: band_dn(x, width),
  }


def time_calls(fns: dict, x, *, rounds: int, calls: int) -> dict[str, float]:
  """Fastest per-call seconds of each function over interleaved rounds."""
  best = {n: float("inf") for n in fns}
  for f in fns.values():
    jax.block_until_ready(f(x))
  for _ in range(rounds):
    for n, f in fns.items():
      t0 = time.perf_counter()
      for _ in range(calls):
        out = f(x)
      jax.block_until_ready(out)
      best[n] = min(best[n], (time.perf_counter() - t0) / calls)
  return best


def main(argv: list[str] | None = None) -> str:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--batch", type=positive_int(20), default=20)
  p.add_argument("--hidden", type=positive_int(128), default=128)
  p.add_argument("--window", type=positive_int(61), default=61)
  p.add_argument("--rounds", type=positive_int(5), default=5)
  p.add_argument("--calls", type=positive_int(200), default=200)
  p.add_argument("--out", default="results/rnn")
  args = p.parse_args(argv)
  rows = []
  for label, rows_n in (("gates", 4 * args.batch), ("cell state", args.batch)):
    x = jax.random.normal(jax.random.key(0), (rows_n, args.hidden), jnp.float32)
    w = jax.random.normal(jax.random.key(1), (rows_n, args.hidden), jnp.float32)
    fns = contenders(args.window)
    np.testing.assert_allclose(fns["DN, banded matmul (reference)"](x),
                               fns["DN (divnorm)"](x), rtol=1e-5, atol=1e-5)
    fwd = {n: jax.jit(f) for n, f in fns.items()}
    bwd = {n: functools.partial(jax.jit(jax.grad(lambda x, w, f=f: jnp.sum(f(x) * w))), w=w)
           for n, f in fns.items()}
    tf = time_calls(fwd, x, rounds=args.rounds, calls=args.calls)
    tb = time_calls(bwd, x, rounds=args.rounds, calls=args.calls)
    rows += [(f"{label} [{rows_n}, {args.hidden}]", n, tf[n], tb[n]) for n in fns]
  command = "python -m experiments.rnn.speed_profile " + " ".join(
      argv if argv is not None else sys.argv[1:])
  lines = ["# Where the DN LSTM's time goes (one normalizer call of a cell step)", "",
           f"Command: `{command}`; window {args.window}, sigma {SIGMA}; fastest of "
           f"{args.rounds} interleaved rounds of {args.calls} calls. Per train step every "
           f"call runs {CALLS_PER_STEP} times (2 layers x 20 steps).", "",
           "| input | function | forward us | forward+backward us | fwd+bwd ms per train step |",
           "|---|---|---|---|---|"]
  for shape, n, f, b in rows:
    lines.append(f"| {shape} | {n} | {f * 1e6:.1f} | {b * 1e6:.1f} | "
                 f"{b * CALLS_PER_STEP * 1e3:.2f} |")
  text = "\n".join(lines) + "\n"
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  (out / "speed_profile.md").write_text(text)
  print(text)
  return text


if __name__ == "__main__":
  main()
