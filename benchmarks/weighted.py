"""Weighted fields against box fields and a depthwise separable convolution, fwd+bwd.

    python -m benchmarks.weighted [--rounds 15]

One interleaved run (`benchmarks.timing`): per CNN shape, the fwd+bwd time of

- DN 5x5 across channels with box windows (`divnorm.divisive_norm`, the reference: 1.00);
- the same with separable Gaussian windows (sigma 1.5);
- a 5x5 weighted window alone: one kernel per channel over (H, W) (a depthwise pool);
- the same sum differentiated by JAX instead of its custom VJP (whose weight gradient is one
  multi-operand reduce over the input, `divnorm._src.weighted`; forward mode needs JAX's);
- a depthwise separable convolution of the same width (5x5 depthwise + 1x1 pointwise,
  ``lax.conv_general_dilated``), the cost the issue sets as the bound for a weighted window;
- the families' presets (Miller along channels, Gaussian DN, centre-surround, GDN).

Ratios are per round against the box DN; medians and min-max over rounds; and the temporary
memory of each compiled fwd+bwd, as XLA's memory analysis gives it.
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import divnorm
from benchmarks import cli, xla
from benchmarks.timing import interleaved
from divnorm import normalize
from divnorm._src import families as F
from divnorm._src import kernels as K
from divnorm._src import weighted as W
from divnorm._src.weighted_fields import resolve_weighted_field, weighted_sum

SHAPES = ((100, 32, 32, 32), (128, 32, 32, 64))



def contenders(shape):
  """name -> zero-argument call of a jitted fwd+bwd; inputs and weights are arguments (a
  jitted function never closes over a large array, which XLA would constant-fold)."""
  rng = np.random.default_rng(0)
  c = shape[-1]
  x = jnp.asarray(rng.normal(size=shape), jnp.float32)
  ct = jnp.asarray(rng.normal(size=shape), jnp.float32)
  dw = jnp.asarray(rng.uniform(0.1, 1.0, (5, 5, c)), jnp.float32)
  pw = jnp.asarray(rng.normal(size=(1, 1, c, c)) / np.sqrt(c), jnp.float32)
  beta, gamma = divnorm.gdn.gdn_values(divnorm.gdn.gdn_init(c))
  g5 = K.gaussian(5, sigma=1.5)
  nhwc = ("NHWC", "HWIO", "NHWC")
  fns = {  # name: (f(x, *params), params)
    "box DN 5x5": (lambda x: divnorm.divisive_norm(x, summation_window=5, sigma=0.5), ()),
    "Gaussian DN 5x5": (lambda x: normalize(x, {1: g5, 2: g5, 3: None}, sigma=0.5),
                        ()),
    "weighted window 5x5": (lambda x, dw: weighted_sum(x, resolve_weighted_field(
        {(1, 2): K.Kernel(dw, 1, 3)}, x.shape)), (dw,)),
    # The same sum without its custom VJP: JAX transposes it, a reduction per tap.
    "weighted window 5x5, JAX's VJP": (lambda x, dw: W._shifted_sum(
        x, (1, 2), K.Kernel(dw, 1, 3)), (dw,)),
    "depthwise separable conv 5x5": (lambda x, dw, pw: lax.conv_general_dilated(
        lax.conv_general_dilated(x, dw[:, :, None, :], (1, 1), "SAME", dimension_numbers=nhwc,
                                 feature_group_count=c),
        pw, (1, 1), "SAME", dimension_numbers=nhwc), (dw, pw)),
    "Miller (lambda 2, 17 ch.)": (lambda x: F.miller_norm(
        jax.nn.relu(x), lamb=2.0, alpha=0.1, beta=1.0, k=1.0), ()),
    "Gaussian DN (Veerabadran)": (lambda x, dw: F.gaussian_norm(x, weights=dw, sigma=1.0),
                                  (dw,)),
    "centre-surround (Pan)": (lambda x: F.center_surround_norm(
        x, beta=jnp.full((c,), 1e-6), gamma_k=jnp.full((8, c), 1 / 16),
        gamma_s=jnp.full((3, 3, c), 1 / 16), surround_dist=2), ()),
    "GDN": (lambda x, beta, gamma: divnorm.gdn.gdn(x, beta=beta, gamma=gamma), (beta, gamma)),
  }
  out = {}
  for name, (f, params) in fns.items():
    argnums = (0,) + tuple(range(2, 2 + len(params)))  # x and the weights
    g = jax.jit(jax.grad(lambda x, ct, *p, f=f: jnp.sum(f(x, *p) * ct), argnums=argnums))
    out[name] = functools.partial(g, x, ct, *params)
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=cli.positive_int(15), default=15)
  args = parser.parse_args(argv)
  print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}, fwd+bwd, float32")
  for shape in SHAPES:
    fns = contenders(shape)
    t = interleaved(fns, rounds=args.rounds)
    print(f"\n{'x'.join(map(str, shape))}: time / box DN 5x5 (median, min-max), median ms, "
          f"XLA's temporary memory (MB)")
    for name, f in fns.items():
      temp = xla.temp_bytes(xla.compiled(f.func, *f.args)) / 1e6
      print(f"  {name:32s} {str(t.ratio(name, 'box DN 5x5')):22s} {t.median(name) * 1e3:8.2f} "
            f"{temp:8.1f}")


if __name__ == "__main__":
  main()
