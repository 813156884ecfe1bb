"""Does the hand-written JVP pay? XLA's compiled bytes and temporaries, and time.

For ``jit(grad(<f(x), w>))`` on CPU, each normalizer two ways:

- ``autodiff``: `divnorm._src.core.normalized` without its rule (``normalized.fun``: the
  same statistics strategy and the same two lines, differentiated by JAX);
- ``custom JVP``: `divnorm._src.core.normalized` with the hand-written JVP.

Deterministic numbers (XLA's ``cost_analysis()`` bytes accessed and ``memory_analysis()``
temporaries, in units of the input's size) and, unless ``--no-time``, the forward+backward
time of the JVP over autodiff's (interleaved rounds, `benchmarks.timing`: median and
min-max). RMS: `divnorm.rms_norm` (autodiff) against the rule it had before (kept here).

    python -m benchmarks.jvp [--quick] [--no-time] [--rounds N]

Also prints the compiled bytes of the defaults against flax's LayerNorm and fcc08ac (the
revision before the core's redesign).
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp

import divnorm
from benchmarks import cli, timing, xla
from divnorm import field_mean
from divnorm._src import core, statistics
from divnorm._src.fields import Field, grouped_field, resolve_field

SHAPES = {"CNN conv1 100x32x32x32": (100, 32, 32, 32), "large 128x32x32x64": (128, 32, 32, 64)}
QUICK = {"tiny 2x8x8x8": (2, 8, 8, 8)}


def _fields(shape) -> dict[str, tuple[Field, Field, bool | None]]:
  """Normalizer name -> (A, B, fast_variance) on an NHWC `shape`."""
  ln = resolve_field((1, 2, 3), 4)
  dn = resolve_field({3: None, 1: 5, 2: 5}, 4)
  return {
      "LN (H,W,C) one-pass": (ln, ln, True),
      "LN (H,W,C) two-pass": (ln, ln, None),
      "BN one-pass": (resolve_field((0, 1, 2), 4),) * 2 + (True,),
      "GN (8) one-pass": (grouped_field((1, 2), 3, shape[-1] // 8, shape),) * 2 + (True,),
      "DN 5x5 across C two-pass": (dn, dn, None),
      "DN 5x5 across C one-pass": (dn, dn, True),
      "DN 3x3 / 5x5 two-pass": (resolve_field({3: None, 1: 3, 2: 3}, 4), dn, None),
  }


def _normalizer(a: Field, b: Field, fast_variance, *, rule: bool):
  strategy = statistics.pick_statistics(a, b, fast_variance)
  f = core.normalized if rule else core.normalized.fun
  sigma = jnp.float32(0.5)
  return lambda x: f(x, sigma, None, strategy, a, b, "valid", None)[0]


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _rms_with_jvp(x, sigma, field: Field):
  """RMS norm with the rule the library had: ``dy = r dx - r^3 x (E_B[x dx] + s ds)``."""
  return x * statistics.inverse_scale(field_mean(x * x, field), sigma)


@_rms_with_jvp.defjvp
def _rms_rule(field, primals, tangents):
  x, sigma = primals
  dx, dsigma = tangents
  r = statistics.inverse_scale(field_mean(x * x, field), sigma)
  dr = -(r * r * r) * (field_mean(x * dx, field) + sigma * dsigma)
  return x * r, dx * r + x * dr


def _grad(f):
  return jax.jit(jax.grad(lambda x, w: jnp.sum(f(x) * w)))


def rows(shapes, *, rounds: int = 0) -> list[str]:
  """Markdown rows: bytes and temporaries of autodiff and the JVP, and the time ratio."""
  out = ["| shape | normalizer | bytes / input, autodiff | custom JVP | ratio | "
         "temp / input, autodiff | custom JVP | fwd+bwd time, JVP / autodiff |",
         "|---|---|---|---|---|---|---|---|"]
  for label, shape in shapes.items():
    x = jax.random.normal(jax.random.key(0), shape, jnp.float32)
    w = jax.random.normal(jax.random.key(1), shape, jnp.float32)
    pairs = {name: (_normalizer(a, b, fv, rule=False), _normalizer(a, b, fv, rule=True))
             for name, (a, b, fv) in _fields(shape).items()}
    rms = resolve_field((1, 2, 3), 4)
    pairs["RMS (H,W,C)"] = (
        lambda x: divnorm.rms_norm(x, reduction_axes=(1, 2, 3), sigma=0.1),
        lambda x, f=rms: _rms_with_jvp(x, jnp.float32(0.1), f))
    for name, (auto, rule) in pairs.items():
      exes = [xla.compiled(_grad(f), x, w) for f in (auto, rule)]
      cost = [(xla.bytes_accessed(e) / x.nbytes, xla.temp_bytes(e) / x.nbytes) for e in exes]
      ratio = ""
      if rounds:
        t = timing.interleaved({"auto": functools.partial(exes[0], x, w),
                                "rule": functools.partial(exes[1], x, w)},
                               rounds=rounds, target_s=0.05)
        ratio = str(t.ratio("rule", "auto"))
      out.append(f"| {label} | {name} | {cost[0][0]:.2f} | {cost[1][0]:.2f} | "
                 f"{cost[1][0] / cost[0][0]:.2f} | {cost[0][1]:.2f} | {cost[1][1]:.2f} | "
                 f"{ratio} |")
      print(out[-1], flush=True)
  return out


def _fwd_bwd_costs(f, shape) -> str:
  x = jax.random.normal(jax.random.key(0), shape, jnp.float32)
  w = jax.random.normal(jax.random.key(1), shape, jnp.float32)
  out = []
  for g in (jax.jit(lambda x, w: f(x)), jax.jit(jax.grad(lambda x, w: jnp.sum(f(x) * w)))):
    exe = xla.compiled(g, x, w)
    out.append(f"{xla.bytes_accessed(exe) / (2 * x.nbytes):.2f}, "
               f"{xla.temp_bytes(exe) / x.nbytes:.2f}")
  return " | ".join(out)


def flax_rows(shapes, rev: str = "fcc08ac") -> list[str]:
  """Forward and forward+backward bytes over the minimum (and temporaries): the default,
  one-pass, `rev`'s default and two-pass, and flax's LayerNorm (one- and two-pass)."""
  import flax.linen as nn

  from benchmarks import before_after

  old = before_after.load_normalize(rev)
  dn = {3: None, 1: 5, 2: 5}

  def flax_ln(fast):
    m = nn.LayerNorm(epsilon=0.01, use_bias=False, use_scale=False, reduction_axes=(1, 2, 3),
                     use_fast_variance=fast)
    return lambda x: m.apply({}, x)

  fns = {
      "divnorm LN (default, two-pass)": lambda x: divnorm.layer_norm(
          x, reduction_axes=(1, 2, 3), sigma=0.1),
      "divnorm LN `fast_variance=True`": lambda x: divnorm.layer_norm(
          x, reduction_axes=(1, 2, 3), sigma=0.1, fast_variance=True),
      "flax LN (one-pass, its default)": flax_ln(True),
      "flax LN two-pass": flax_ln(False),
      "divnorm DN 5x5 (default, two-pass)": lambda x: divnorm.normalize(x, dn, sigma=0.5),
      "divnorm DN 5x5 `fast_variance=True`": lambda x: divnorm.normalize(
          x, dn, sigma=0.5, fast_variance=True),
  }
  if old is not None:
    fns.update({
        f"{rev} LN default (guard)": lambda x: old.normalize(x, (1, 2, 3), sigma=0.1),
        f"{rev} LN two-pass": lambda x: old.normalize(x, (1, 2, 3), sigma=0.1,
                                                      fast_variance=False),
        f"{rev} DN 5x5 default (guard)": lambda x: old.normalize(x, dn, sigma=0.5),
        f"{rev} DN 5x5 two-pass": lambda x: old.normalize(x, dn, sigma=0.5,
                                                          fast_variance=False),
    })
  out = ["| shape | contender | fwd bytes / min, temp | fwd+bwd bytes / min, temp |",
         "|---|---|---|---|"]
  with jax.numpy_dtype_promotion("standard"):
    for label, shape in shapes.items():
      out += [f"| {label} | {n} | {_fwd_bwd_costs(f, shape)} |" for n, f in fns.items()]
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="one tiny shape, one round (CI)")
  parser.add_argument("--no-time", action="store_true", help="XLA's numbers only")
  parser.add_argument("--rounds", type=cli.positive_int(15), default=15)
  args = parser.parse_args(argv)
  shapes = QUICK if args.quick else SHAPES
  print("\n".join(flax_rows(shapes)))
  print()
  rows(shapes, rounds=0 if args.no_time else (1 if args.quick else args.rounds))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
