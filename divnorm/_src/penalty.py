"""The paper's L1 penalty on centered, pre-normalization activations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from divnorm._src.checks import check_input, check_mask, check_nonnegative
from divnorm._src.reductions import psum, select, stat_dtype


def l1_penalty(v: ArrayLike, alpha, *, mask: ArrayLike | None = None,
               axis_name=None) -> jax.Array:
  r"""``alpha * mean(|v|)``, the sparsity term of Ren et al. (2017).

  .. math:: L_1 = \alpha \frac{1}{NL} \sum_{n,j} |v_{n,j}|

  Args:
    v: centered activations, e.g. from ``normalize(..., return_centered=True)``; the
      penalty uses the same mean the normalizer subtracted (local for divisive norm).
    alpha: penalty weight (>= 0).
    mask: boolean, broadcastable to `v`; average over its True entries only.
    axis_name: a mapped axis (``vmap``, ``shard_map``) whose members' entries the mean
      also covers, as batch statistics do: every member gets the whole batch's penalty.

  Returns:
    A scalar in ``promote_types(v.dtype, float32)``; 0 for an empty `v` (or mask).
  """
  v = check_input(v, "v")
  check_nonnegative(alpha, "alpha", " (the weight of the L1 penalty)")
  if np.ndim(alpha) != 0:
    raise ValueError(f"alpha has shape {np.shape(alpha)}; the penalty's weight is one number "
                     f"(weigh features by scaling v).")
  dt = stat_dtype(v.dtype)
  a = jnp.abs(v.astype(dt))
  alpha = jnp.asarray(alpha, dt)
  mask = check_mask(mask, v.shape)
  if mask is None:
    total, count = jnp.sum(a), jnp.asarray(a.size, dt)  # a.size may be symbolic
  else:
    total, count = jnp.sum(select(a, mask)), jnp.sum(mask.astype(dt))
  if axis_name is not None:
    total, count = psum((total, count), axis_name)
  return alpha * total / jnp.maximum(count, np.ones((), dt))
