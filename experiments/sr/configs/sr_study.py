"""The SR study's config (results/PROTOCOL_SR.md): SRCNN, BN or DN* at one scale and seed.

Argument: "VARIANT,SCALE[,SEED[,NUM_STEPS]]" (NUM_STEPS: tests shrink it), e.g.

  python -m experiments.main --config 'experiments/sr/configs/sr_study.py:DN*,3,0' \
      --workdir runs/sr_study_dn_x3

The pilots' config (sr_srcnn_fast.py: the paper's network, N(0, 1e-3) init,
MSE / 2 loss, normalizer hyperparameters and data pipeline; our optimizer: Adam,
lr 1e-3 x0.1 at 80% of the steps, batch 16 of 33x33 patches) at the schedule the
pilots chose on the validation photographs (results/sr/pilots): `NUM_STEPS`
steps, training patches turned by a random rotation/flip (`AUGMENT`; not in the
paper). Trained on every training photograph, scored on the five held-out ones.
"""

from __future__ import annotations

from experiments.sr.configs import sr_srcnn_fast

NUM_STEPS = 12_000
AUGMENT = True


def get_config(arg: str = "SRCNN,3,0"):
  parts = [p.strip() for p in (arg or "").split(",")]
  if not 2 <= len(parts) <= 4 or not all(p.isdigit() for p in parts[2:]):
    raise ValueError(f"config argument {arg!r}: expected 'VARIANT,SCALE[,SEED[,NUM_STEPS]]', "
                     "e.g. 'DN*,3,0'.")
  num_steps = int(parts[3]) if len(parts) > 3 else NUM_STEPS
  cfg = sr_srcnn_fast.get_config(f"{parts[0]},{parts[1]},{num_steps}")
  cfg.seed = int(parts[2]) if len(parts) > 2 else 0
  cfg.augment = AUGMENT
  cfg.eval_every = max(1, num_steps // 10)
  cfg.checkpoint_every = max(1, num_steps // 20)
  cfg.schedule = "ours (results/PROTOCOL_SR.md), chosen on the validation photographs"
  return cfg
