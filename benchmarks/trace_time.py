"""Trace and compile time of a training step: divnorm's layers over flax's, one interleaved run.

A model of `--layers` blocks, each with one normalization layer, built with flax's layer or
divnorm's (the same arguments: flax's defaults), and its training step, ``value_and_grad``
of a squared loss with respect to the parameters (BatchNorm's running averages updated):

- ``LN``: a transformer-like stack, ``x + Dense(gelu(Dense(LayerNorm(x))))`` on 4x128x256;
- ``BN``: a ResNet-like stack, ``relu(BatchNorm(Conv3x3(x)))`` on 8x16x16x64 (training);
- ``GN``: the same with ``GroupNorm(32)``.

Each round builds both models and a fresh step function (no cache of a previous round can
serve it), then times ``jax.jit(step).lower(...)`` (tracing: the Python that builds the
program) and ``.compile()`` (XLA) of each, in a rotated order. Ratios are
time(divnorm) / time(flax) within a round: the median over rounds, then min-max.

    python -m benchmarks.trace_time [--rounds N] [--quick] [--cases LN,BN,GN]
        [--layers 20] [--nnx]

``--nnx`` builds the models from ``divnorm.nnx`` and ``flax.nnx`` (the step on
``nnx.split``'s state), else from the linen modules.
"""

from __future__ import annotations

import argparse
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from benchmarks import cli, report, timing
from divnorm import linen as dlinen
from divnorm import nnx as dnnx

CASES = {"LN": (4, 128, 256), "BN": (8, 16, 16, 64), "GN": (8, 16, 16, 64)}
QUICK = {"LN": (2, 4, 16), "BN": (2, 4, 4, 32), "GN": (2, 4, 4, 32)}


class _LinenStack(nn.Module):
  lib: object
  case: str
  layers: int

  @nn.compact
  def __call__(self, x):
    for _ in range(self.layers):
      if self.case == "LN":
        h = self.lib.LayerNorm()(x)
        x = x + nn.Dense(x.shape[-1])(nn.gelu(nn.Dense(x.shape[-1])(h)))
      else:
        h = nn.Conv(x.shape[-1], (3, 3), use_bias=False)(x)
        norm = (self.lib.BatchNorm(use_running_average=False) if self.case == "BN" else
                self.lib.GroupNorm(num_groups=32))
        x = nn.relu(norm(h))
    return x


class _NnxStack(nnx.Module):
  def __init__(self, lib, case: str, layers: int, features: int):
    rngs, f, n = nnx.Rngs(0), features, range(layers)
    if case == "LN":
      self.norms = nnx.List([lib.LayerNorm(f, rngs=rngs) for _ in n])
      self.inner = nnx.List([nnx.Linear(f, f, rngs=rngs) for _ in n])
      self.outer = nnx.List([nnx.Linear(f, f, rngs=rngs) for _ in n])
    else:
      self.norms = nnx.List([lib.BatchNorm(f, use_running_average=False, rngs=rngs)
                             if case == "BN" else lib.GroupNorm(f, num_groups=32, rngs=rngs)
                             for _ in n])
      self.convs = nnx.List([nnx.Conv(f, f, (3, 3), use_bias=False, rngs=rngs) for _ in n])
    self.case = case

  def __call__(self, x):
    for i, norm in enumerate(self.norms):
      if self.case == "LN":
        x = x + self.outer[i](nnx.gelu(self.inner[i](norm(x))))
      else:
        x = nnx.relu(norm(self.convs[i](x)))
    return x


def _step(api: str, lib, case: str, shape, layers: int):
  """``(step, args)``: a fresh training step of the `case` stack built from `lib`."""
  x = jnp.ones(shape, jnp.float32)
  if api == "nnx":
    graph, params, rest = nnx.split(_NnxStack(lib, case, layers, shape[-1]), nnx.Param, ...)

    def loss(params, rest, x):
      model = nnx.merge(graph, params, rest, copy=True)
      y = model(x)
      return jnp.sum(jnp.square(y)), nnx.state(model, nnx.BatchStat)

    return jax.value_and_grad(loss, has_aux=True), (params, rest, x)
  model = _LinenStack(lib, case, layers)
  variables = model.init(jax.random.key(0), x)
  params, rest = variables["params"], {k: v for k, v in variables.items() if k != "params"}

  def loss(params, x):
    y, updates = model.apply({"params": params, **rest}, x, mutable=list(rest))
    return jnp.sum(jnp.square(y)), updates

  return jax.value_and_grad(loss, has_aux=True), (params, x)


def _times(api: str, lib, case: str, shape, layers: int) -> tuple[float, float]:
  step, args = _step(api, lib, case, shape, layers)
  start = time.perf_counter()
  lowered = jax.jit(lambda *a: step(*a)).lower(*args)  # a new function: no cached trace
  traced = time.perf_counter()
  lowered.compile()
  return traced - start, time.perf_counter() - traced


def measure(api: str, case: str, shape, layers: int, rounds: int) -> dict:
  """Per-round ``(trace, compile)`` seconds of divnorm's and flax's stacks, interleaved."""
  libs = {"divnorm": dnnx if api == "nnx" else dlinen, "flax": nnx if api == "nnx" else nn}
  for lib in libs.values():
    _times(api, lib, case, shape, 1)  # warm: imports and JAX's own first-use costs
  seconds = {name: [] for name in libs}
  for r in range(rounds):
    for name in (("divnorm", "flax") if r % 2 == 0 else ("flax", "divnorm")):
      seconds[name].append(_times(api, libs[name], case, shape, layers))
  return seconds


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--rounds", type=cli.positive_int(7), default=7)
  p.add_argument("--quick", action="store_true", help="tiny shapes, 2 layers, one round (CI)")
  p.add_argument("--cases", default="LN,BN,GN", type=cli.names_of(list(CASES)))
  p.add_argument("--layers", type=cli.positive_int(20), default=20)
  p.add_argument("--nnx", action="store_true", help="divnorm.nnx against flax.nnx")
  args = p.parse_args(argv)
  report.print_command("benchmarks.trace_time", argv)
  api, layers = ("nnx" if args.nnx else "linen"), (2 if args.quick else args.layers)
  rounds = 1 if args.quick else args.rounds
  print(f"{api}, {layers} layers, {rounds} rounds; seconds are medians (divnorm / flax).\n")
  print("| case | shape | trace s | trace ratio | compile s | compile ratio |")
  print("|---|---|---|---|---|---|")
  for case in args.cases:
    shape = (QUICK if args.quick else CASES)[case]
    s = measure(api, case, shape, layers, rounds)
    cells = []
    for part in (0, 1):  # tracing, compiling
      t = timing.Timings({name: [r[part] for r in s[name]] for name in s})
      cells += [f"{t.median('divnorm'):.2f} / {t.median('flax'):.2f}",
                str(t.ratio("divnorm", "flax"))]
    print(f"| {case} | {'x'.join(map(str, shape))} | {' | '.join(cells)} |", flush=True)
  print(f"\njax {jax.__version__}.")
  return 0


if __name__ == "__main__":
  sys.exit(main())
