"""Does a hand-written JVP pay? XLA's compiled bytes and temporaries, with and without one.

Deterministic numbers (no timing): XLA's ``cost_analysis()`` bytes accessed and
``memory_analysis()`` temporaries of ``jit(grad(<f(x), w>))`` on CPU, for

- ``autodiff``: the library's two-pass statistics (`statistics.moments`, `scale`),
  differentiated by JAX;
- ``custom JVP``: `divnorm.normalize`, whose unmasked path has the hand-written JVP of
  `divnorm._src.fast` (``dy = r dx - r E_A[dx] + v dr``, ``v`` recomputed, never stored);
- RMS: `divnorm.rms_norm` (autodiff) against the rule it had before (kept here only).

    python -m benchmarks.jvp [--quick]

Prints two markdown tables: the compiled bytes of the two-pass default against flax's
LayerNorm and fcc08ac (the revision before the core's redesign), and the JVP's table,
whose ratios are custom JVP / autodiff (< 1: the rule saves).
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
  parser.add_argument("--quick", action="store_true", help="one tiny shape (CI)")
  args = parser.parse_args(argv)
  shapes = QUICK if args.quick else SHAPES
  print("\n".join(flax_rows(shapes)))
  print()
  print("\n".join(rows(shapes)))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
