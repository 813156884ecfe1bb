"""Jitted outputs and gradients of divnorm's normalizers at shapes where XLA's CPU backend
once miscompiled one (`tests/test_xla_fusions.py` runs this twice, with and without
YNNPACK fusions, and compares).

``python -m tests.xla_fusion_cases OUT.npz``
"""

from __future__ import annotations

import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np

import divnorm

GROUPS = 8


def _layers(channels: int):
  """Name -> (call, shape): the layers that own a grouped or whole-axis field, channels
  first where their library puts them there."""
  import equinox as eqx  # noqa: F401  (divnorm.equinox needs it)
  import haiku as hk
  from flax import nnx

  from divnorm import equinox as dqx
  from divnorm import haiku as dhk
  from divnorm import linen as dl
  from divnorm import nnx as dx

  first, last = (8, channels, 512), (8, 512, channels)
  linen = dl.GroupNorm(num_groups=GROUPS)
  params = linen.init(jax.random.key(0), jnp.zeros(last))
  haiku = hk.without_apply_rng(hk.transform(
      lambda x: dhk.GroupNorm(GROUPS, data_format="channels_first")(x)))
  haiku_params = haiku.init(jax.random.key(0), jnp.zeros(first))
  return {
      "linen GroupNorm": (functools.partial(linen.apply, params), last),
      "nnx GroupNorm": (dx.GroupNorm(channels, num_groups=GROUPS, rngs=nnx.Rngs(0)), last),
      "equinox GroupNorm, vmap": (jax.vmap(dqx.GroupNorm(GROUPS, channels)), first),
      "haiku GroupNorm, channels first": (functools.partial(haiku.apply, haiku_params),
                                          first),
  }


def cases(channels: int = 768) -> dict:
  """Name -> (call, shape), both channel layouts at 8 examples and 512 positions."""
  out = {}
  for layout, channel_axis, shape in (("first", 1, (8, channels, 512)),
                                      ("last", -1, (8, 512, channels))):
    for fast in (None, True):
      out[f"group_norm, channels {layout}, fast_variance={fast}"] = (functools.partial(
          divnorm.group_norm, num_groups=GROUPS, channel_axis=channel_axis, sigma=1e-3,
          fast_variance=fast), shape)
    out[f"instance_norm, channels {layout}"] = (functools.partial(
        divnorm.instance_norm, channel_axis=channel_axis, sigma=1e-3), shape)
    out[f"divisive_norm, channels {layout}"] = (functools.partial(
        divnorm.divisive_norm, summation_window=5, sigma=0.5, channel_axis=channel_axis),
        shape)
    spatial, c = (2,) if channel_axis == 1 else (1,), channel_axis % 3
    out[f"normalize A != B, channels {layout}"] = (functools.partial(
        divnorm.normalize, summation=spatial, suppression=spatial + (c,), sigma=1e-3), shape)
  out["layer_norm, last axis"] = (functools.partial(divnorm.layer_norm, sigma=1e-3),
                                  (8, 512, channels))
  out["rms_norm, last axis"] = (functools.partial(divnorm.rms_norm, sigma=1e-3),
                                (8, 512, channels))
  out["divisive_norm, banded window"] = (functools.partial(
      divnorm.divisive_norm, summation_window=129, sigma=1.0), (64, 512))
  stats = divnorm.batch_stats_init((1, 1, channels))
  out["batch_norm"] = (lambda x: divnorm.batch_norm(x, stats, training=True, sigma=1e-3)[0],
                       (8, 512, channels))
  return {**out, **_layers(channels)}


def run(path: str) -> None:
  """Every case's jitted output and input gradient, in float32, saved to `path`."""
  rng = np.random.default_rng(0)
  saved = {}
  for name, (call, shape) in cases().items():
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal(shape).astype(np.float32)
    saved[f"{name}/y"] = np.asarray(jax.jit(call)(x))
    saved[f"{name}/dx"] = np.asarray(jax.jit(jax.grad(lambda x, w, call=call: jnp.sum(call(x) * w)))(
        x, w))
  np.savez(path, **saved)


if __name__ == "__main__":
  run(sys.argv[1])
