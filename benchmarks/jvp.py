"""Does a hand-written JVP pay? XLA's compiled bytes and temporaries, with and without one.

Deterministic numbers (no timing): XLA's ``cost_analysis()`` bytes accessed and
``memory_analysis()`` temporaries of ``jit(grad(<f(x), w>))`` on CPU, for

- ``autodiff``: the library's two-pass statistics (`statistics.moments`, `scale`),
  differentiated by JAX;
- ``custom JVP``: `divnorm.normalize`, whose unmasked path has the hand-written JVP of
  `divnorm._src.fast` (``dy = r dx - r E_A[dx] + v dr``, ``v`` recomputed, never stored);
- RMS: `divnorm.rms_norm` (autodiff) against the rule it had before (kept here only).

    python -m benchmarks.jvp [--quick]

Prints a markdown table; ratios are custom JVP / autodiff (< 1: the rule saves).
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp

import divnorm
from benchmarks import xla
from divnorm._src import statistics
from divnorm._src.fields import Field, resolve_field
from divnorm._src.reductions import field_mean

SHAPES = {"CNN conv1 100x32x32x32": (100, 32, 32, 32), "large 128x32x32x64": (128, 32, 32, 64)}
QUICK = {"tiny 2x8x8x8": (2, 8, 8, 8)}


def _autodiff(x, a: Field, b: Field, sigma):
  """The library's two-pass statistics, differentiated by JAX (no hand-written rule)."""
  stats = statistics.moments(x, a, b)
  return statistics.scale(stats.v, stats.var, sigma)


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


def _grad_costs(f, shape):
  x = jax.random.normal(jax.random.key(0), shape, jnp.float32)
  w = jax.random.normal(jax.random.key(1), shape, jnp.float32)
  g = jax.jit(jax.grad(lambda x, w: jnp.sum(f(x) * w)))
  exe = xla.compiled(g, x, w)
  return xla.bytes_accessed(exe) / x.nbytes, xla.temp_bytes(exe) / x.nbytes


def rows(shapes) -> list[str]:
  out = ["| shape | normalizer | bytes / input, autodiff | custom JVP | ratio | "
         "temp / input, autodiff | custom JVP | ratio |", "|---|---|---|---|---|---|---|---|"]
  for label, shape in shapes.items():
    ndim = len(shape)
    cases = {
        "LN (H,W,C)": ((1, 2, 3), None),
        "DN 5x5 across C": ({3: None, 1: 5, 2: 5}, None),
        "DN 3x3 / 5x5": ({3: None, 1: 3, 2: 3}, {3: None, 1: 5, 2: 5}),
    }
    for name, (sa, sb) in cases.items():
      a = resolve_field(sa, ndim)
      b = a if sb is None else resolve_field(sb, ndim)
      auto = _grad_costs(lambda x, a=a, b=b: _autodiff(x, a, b, 0.5), shape)
      rule = _grad_costs(lambda x, sa=sa, sb=sb: divnorm.normalize(x, sa, sb, sigma=0.5), shape)
      out.append(_row(label, name, auto, rule))
    rms_field = resolve_field((1, 2, 3), ndim)
    auto = _grad_costs(lambda x: divnorm.rms_norm(x, reduction_axes=(1, 2, 3), sigma=0.1), shape)
    rule = _grad_costs(lambda x, f=rms_field: _rms_with_jvp(x, jnp.float32(0.1), f), shape)
    out.append(_row(label, "RMS (H,W,C)", auto, rule))
  return out


def _row(label, name, auto, rule) -> str:
  return (f"| {label} | {name} | {auto[0]:.2f} | {rule[0]:.2f} | {rule[0] / auto[0]:.2f} | "
          f"{auto[1]:.2f} | {rule[1]:.2f} | {rule[1] / max(auto[1], 1e-9):.2f} |")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="one tiny shape (CI)")
  args = parser.parse_args(argv)
  print("\n".join(rows(QUICK if args.quick else SHAPES)))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
