"""Optimizers from a config: momentum SGD / SGD / Adam, piecewise schedules, clipping."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import optax

OPTIMIZERS = ("momentum", "sgd", "adam")


def learning_rate_schedule(cfg: Mapping[str, Any]) -> optax.Schedule:
  """Piecewise-constant schedule: `learning_rate`, times `decay` at each boundary.

  Args:
    cfg: fields `learning_rate`, `boundaries` (steps, may be empty) and `decay`
      (one factor for every boundary, or one per boundary).
  """
  boundaries: Sequence[int] = list(cfg.get("boundaries", ()) or ())
  decay = cfg.get("decay", 0.1)
  if isinstance(decay, (int, float)):
    decay = [float(decay)] * len(boundaries)
  if len(decay) != len(boundaries):
    raise ValueError(f"decay has {len(decay)} factors for {len(boundaries)} boundaries; "
                     "give one factor or one per boundary.")
  scales: dict[int, float] = {}
  for b, d in zip(boundaries, decay, strict=True):
    scales[int(b)] = scales.get(int(b), 1.0) * float(d)
  return optax.piecewise_constant_schedule(float(cfg["learning_rate"]), scales)


def make_optimizer(cfg: Mapping[str, Any]) -> optax.GradientTransformation:
  """Builds the optax optimizer described by `cfg`.

  Args:
    cfg: `name` in OPTIMIZERS, `learning_rate`, `boundaries`, `decay`,
      `momentum` (for "momentum", default 0.9), `clip_global_norm` (0 or
      missing: no clipping; applied before the update, as in the PTB recipe).

  Examples:
    CNN (paper): name="momentum", learning_rate=1e-3, momentum=0.9,
      boundaries=[30000, 50000], decay=0.1.
    PTB LSTM: name="sgd", learning_rate=1.0, clip_global_norm=5.0,
      boundaries=[e * steps_per_epoch for e in range(4, 13)], decay=0.5.
  """
  name = cfg.get("name", "momentum")
  lr = learning_rate_schedule(cfg)
  if name == "momentum":
    tx = optax.sgd(lr, momentum=float(cfg.get("momentum", 0.9)))
  elif name == "sgd":
    tx = optax.sgd(lr)
  elif name == "adam":
    tx = optax.adam(lr)
  else:
    raise ValueError(f"unknown optimizer {name!r}; valid choices: {', '.join(OPTIMIZERS)}.")
  clip = float(cfg.get("clip_global_norm", 0.0) or 0.0)
  if clip > 0:
    tx = optax.chain(optax.clip_by_global_norm(clip), tx)
  return tx
