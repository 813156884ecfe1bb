"""RMS normalization, no centering: ``y = v r``, ``v = x`` (masked), ``r = 1 / sqrt(sigma^2 +
E_B[v^2])``; its statistics (`rms_factors`) and, for a narrower input on XLA's CPU backend,
its derivative written out (`rms_normalized`: `divnorm.rms_norm`'s, and the RMSNorm layers'
with their scale).
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.export import is_symbolic_dim

from divnorm._src.checks import check_mask, check_sigma
from divnorm._src.fields import Field
from divnorm._src.reductions import divide_by_count, field_count, field_sum, select, stat_dtype
from divnorm._src.statistics import copies, inverse_scale, stats_shape, widened


def rms_factors(x: jax.Array, field: Field, *, sigma, mask, axis_name=None
                ) -> tuple[jax.Array, jax.Array]:
  """``(v, r)`` of `divnorm.rms_norm` over `field`: ``v`` is `x` masked, ``r = 1 / sqrt(sigma^2
  + E[v^2])`` at the statistics' size (modules fold their scale into ``r``)."""
  sigma, mask = check_sigma(sigma, stats_shape(x.shape, field)), check_mask(mask, x.shape)
  v = select(x, mask)
  # square, not v * v: the product rule's two terms split XLA's fusion; but over 4 and 8
  # entries the product took 0.68-0.89x its time (over 12, 1.15x; BENCHMARKS.md, "RMS norm
  # over few features")
  squares = v * v if _entries(x.shape, field) < 12 else jnp.square(v)
  count = field_count(x.shape, field, mask=mask, axis_name=axis_name, dtype=x.dtype)
  return v, inverse_scale(divide_by_count(
      field_sum(squares, field, axis_name=axis_name), count), sigma)


def rms_normalized(x: jax.Array, sigma, mask, field: Field, axis_name, scale=None) -> jax.Array:
  """``v r`` over `field` in the statistics dtype (0 outside `mask`: ``v`` is 0 there and ``r``
  finite, an empty field's too, so no second select, which doubled a masked call's time);
  ``v scale r`` with a layer's `scale` (broadcastable to `x`, in the statistics dtype).

  A narrower `x` (bfloat16, float16) on XLA's CPU backend takes the derivative written out
  (`_written`): JAX's own keeps the input's float32 conversion as a residual, and XLA
  writes that copy to memory for the forward's sum of squares as well. Written out, every
  input-sized term reads `x` through a copy of its own (`statistics.widened`), converted
  inside the kernel that reads it, as the centered normalizers' derivative does
  (`core._normalized_jvp`): bfloat16, one core, the function's forward took 0.09-0.78x its
  time before and its forward+backward 0.24-0.89x, the linen layer's forward+backward
  0.32-1.01x; float16, which YNNPACK does not convert in its kernels, 0.82-1.12x
  (BENCHMARKS.md, "RMS norm's written derivative").
  Elsewhere JAX differentiates `rms_factors`: in float32 the written one took 0.94-1.17x
  its time, and a GPU fuses the forward into one kernel, which a barrier would split; so
  does a layer's (with `scale`) over fields of fewer than 16 entries, where the written
  one took 1.2x its time (linen RMSNorm over 4, 8 and 12 features; BENCHMARKS.md, "RMS
  norm over few features").
  """
  dt = stat_dtype(x.dtype)
  sigma = jnp.asarray(check_sigma(sigma, stats_shape(x.shape, field)), dt)
  mask = check_mask(mask, x.shape)

  def default(x, sigma, mask, scale):
    v, r = rms_factors(x.astype(dt), field, sigma=sigma, mask=mask, axis_name=axis_name)
    return v * r if scale is None else v * scale * r

  if x.dtype == dt or (scale is not None and _entries(x.shape, field) < 16):
    return default(x, sigma, mask, scale)
  return lax.platform_dependent(
      x, sigma, mask, scale, cpu=lambda *args: _written(*args, field, axis_name),
      default=default)


def _entries(shape: tuple[int, ...], field: Field) -> float:
  """The entries of a field of whole axes (inf for windows, groups or symbolic sizes)."""
  sizes = [shape[a] for a in field.whole]
  if field.windows or field.groups or any(is_symbolic_dim(n) for n in sizes):
    return math.inf
  return math.prod(sizes)


class RmsRead(NamedTuple):
  """`rms_normalized`'s arguments, as `flax_semantics.normalized` hands them to
  `flax_semantics.affine` for RMS norm of a narrower input, which multiplies by the scale
  inside `rms_normalized`: its derivative reads the narrow `x` through copies of its own
  (the layers' forward+backward in bfloat16 took 0.32-1.01x the time of JAX's derivative of
  ``(u * scale) * r``, which kept a float32 copy of `x`; BENCHMARKS.md, "RMS norm's written
  derivative")."""
  x: jax.Array
  sigma: jax.Array
  field: Field
  axis_name: Any
  mask: jax.Array | None = None


def _factors(x: jax.Array, sigma, mask, field: Field, axis_name, n: int):
  """``(vs, r, count)``: `n` copies of ``v`` (`x` in the statistics dtype, masked), ``r``
  from one more, and the field's count. Each copy is selected by a copy of the mask: one
  selected ``v`` shared by every consumer was kept for the backward, and a masked bfloat16
  RMSNorm's training step took 60 MiB of temporaries at 8x512x768 against 48 MiB now
  (flax's: 36), in the same time (``python -m benchmarks.against_rev --mask --cases RMS``;
  BENCHMARKS.md, "Masked RMS norm of a narrower input")."""
  vs = [select(c, m) for c, m in widened(x, mask, n + 1)]
  count = field_count(x.shape, field, mask=mask, axis_name=axis_name, dtype=vs[0].dtype)
  r = inverse_scale(divide_by_count(field_sum(jnp.square(vs[0]), field, axis_name=axis_name),
                                    count), sigma)
  return vs[1:], r, count


@functools.partial(jax.custom_jvp, nondiff_argnums=(4, 5))
def _written(x: jax.Array, sigma: jax.Array, mask: jax.Array | None, scale, field: Field,
             axis_name) -> jax.Array:
  """`rms_normalized` with the derivative below; `x` read in its own dtype."""
  (v,), r, _ = _factors(x, sigma, mask, field, axis_name, 1)
  return v * r if scale is None else v * scale * r


@_written.defjvp
def _written_jvp(field, axis_name, primals, tangents):
  """``dy = dx r + v dr`` with ``dr = -r^3 (E_B[v dx] + sigma dsigma)`` (with a scale ``g``:
  ``dy = (dx g + v dg) r + v g dr``): `x` and the tangent are the only input-sized factors,
  so reverse mode reads `x` (through copies of its own) and the cotangent, and writes one
  gradient."""
  x, sigma, mask, scale = primals
  dx, dsigma, _, dscale = tangents
  (v_out, v_sum, v_dy, *v_ds), r, count = _factors(x, sigma, mask, field, axis_name,
                                                   3 if scale is None else 4)
  dt = r.dtype
  dx = select(dx.astype(dt), mask)  # 0 outside the mask: the sums need no select of their own
  q = divide_by_count(field_sum(v_sum * dx, field, axis_name=axis_name), count)
  dr = np.asarray(-1.0, dt) * r * r * r * (q + sigma * dsigma)
  # r from a copy of its own, as in `core._normalized_jvp` (one broadcast of r per kernel)
  if scale is None:
    return v_out * r, dx * copies(r, 1)[0] + v_dy * dr
  r1, r2 = copies(r, 2)
  return (v_out * scale * r,
          dx * scale * r1 + v_dy * scale * dr + v_ds[0] * dscale.astype(dt) * r2)
