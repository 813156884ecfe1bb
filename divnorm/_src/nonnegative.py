r"""The nonnegative reparameterization of GDN's parameters, as tensorflow_compression has it.

A learned nonnegative weight (GDN's ``beta`` and ``gamma``, a learned pooling kernel) is
stored as a raw parameter ``p`` and used as

.. math::
    w = \max(p, \sqrt{m + o^2})^2 - o^2 \;\ge\; m,

with the lower bound ``m`` (``minimum``; GDN: 1e-6 for ``beta``, 0 for ``gamma``) and the
offset ``o = 2^{-18}`` (``offset``; the pedestal ``o^2 = 2^{-36}``). Learning the square
root slows learning down near 0, where noise in a small weight of a denominator would
reach the activations; the pedestal keeps the gradient from vanishing at exactly 0.

The bound passes gradients as tensorflow_compression's ``lower_bound`` does by default
(``gradient="identity_if_towards"``): where ``p`` is below the bound, the gradient still
flows if a descent step would raise ``p`` (towards the bound), and is 0 if it would lower
it further. A plain ``jnp.maximum`` (zero gradient below the bound) can leave a weight stuck
at its minimum forever.

Sources: ``tensorflow_compression/python/layers/parameters.py`` (``GDNParameter``:
``offset=2 ** -18``, initialization ``sqrt(max(value + pedestal, pedestal))``) and
``tensorflow_compression/python/ops/math_ops.py`` (``lower_bound``), read at commit
dda8cb4 of github.com/tensorflow/compression.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from divnorm._src.checks import check_array, check_nonnegative

OFFSET = 2.0**-18


@jax.custom_vjp
def lower_bound(x: jax.Array, bound: jax.Array) -> jax.Array:
  """``max(x, bound)``, whose gradient passes where a descent step moves `x` towards `bound`.

  No gradient flows to `bound` (as in tensorflow_compression).
  """
  return jnp.maximum(x, bound)


def _lower_bound_fwd(x, bound):
  return jnp.maximum(x, bound), (x, bound)


def _lower_bound_bwd(res, g):
  x, bound = res
  # A descent step moves x by -g: towards the bound from below when g < 0.
  passes = (x >= bound) | (g < 0)
  return jnp.where(passes, g, jnp.zeros_like(g)), jnp.zeros_like(bound)


lower_bound.defvjp(_lower_bound_fwd, _lower_bound_bwd)


def nonnegative(raw: jax.Array, *, minimum: float = 0.0, offset: float = OFFSET) -> jax.Array:
  """The weight a raw parameter stands for: ``max(raw, sqrt(minimum + offset^2))^2 - offset^2``.

  ``>= minimum`` up to one unit in the last place of `raw`'s dtype (a bound of 1e-6 gives
  9.98e-7 in bfloat16); computed in that dtype (float32 for integers).
  """
  raw = check_array(raw, "raw")
  check_nonnegative(minimum, "minimum")
  if not jnp.issubdtype(raw.dtype, jnp.floating):
    raw = raw.astype(jnp.float32)
  pedestal = np.asarray(offset**2, raw.dtype)
  bound = np.asarray(np.sqrt(minimum + offset**2), raw.dtype)
  return jnp.square(lower_bound(raw, bound)) - pedestal


def nonnegative_init(value, *, offset: float = OFFSET, dtype=jnp.float32) -> jax.Array:
  """The raw parameter for a weight `value`: ``sqrt(max(value + offset^2, offset^2))``.

  ``nonnegative(nonnegative_init(v), minimum=m) == max(v, m)`` up to rounding.
  """
  value = jnp.asarray(value, dtype)
  pedestal = np.asarray(offset**2, dtype)
  return jnp.sqrt(jnp.maximum(value + pedestal, pedestal))
