"""The SR study's config (results/PROTOCOL_SR.md): SRCNN, BN or DN* at one scale and seed.

Argument: "VARIANT,SCALE[,SEED[,NUM_STEPS]]" (NUM_STEPS: tests shrink it), e.g.

  python -m experiments.main --config 'experiments/sr/configs/sr_study.py:DN*,3,0' \
      --workdir runs/sr_study_dn_x3

Everything is sr_srcnn.py (the paper's network, N(0, 1e-3) init, MSE / 2 loss,
normalizer hyperparameters and data pipeline), trained on every training
photograph and scored on the five held-out ones, except the schedule, which is
ours and was chosen on the validation photographs (`experiments.sr.pilot`,
results/sr/pilots): Adam, `LEARNING_RATE` x0.1 at `DECAY_AT` of the steps,
batch `BATCH_SIZE` of 33x33 patches, `NUM_STEPS` steps, training patches turned
by a random rotation/flip (`AUGMENT`; not in the paper).
"""

from __future__ import annotations

from experiments.sr.configs import sr_srcnn

NUM_STEPS = 12_000
BATCH_SIZE = 16
LEARNING_RATE = 1e-3
DECAY_AT = 0.8
AUGMENT = True


def get_config(arg: str = "SRCNN,3,0"):
  parts = [p.strip() for p in (arg or "").split(",")]
  if not 2 <= len(parts) <= 4 or not all(p.isdigit() for p in parts[2:]):
    raise ValueError(f"config argument {arg!r}: expected 'VARIANT,SCALE[,SEED[,NUM_STEPS]]', "
                     "e.g. 'DN*,3,0'.")
  cfg = sr_srcnn.get_config(",".join(parts[:2]))
  cfg.seed = int(parts[2]) if len(parts) > 2 else 0
  num_steps = int(parts[3]) if len(parts) > 3 else NUM_STEPS
  cfg.num_steps = num_steps
  cfg.batch_size = BATCH_SIZE
  cfg.augment = AUGMENT
  cfg.optimizer.name = "adam"
  cfg.optimizer.learning_rate = LEARNING_RATE
  cfg.optimizer.momentum = 0.0
  cfg.optimizer.boundaries = [int(DECAY_AT * num_steps)]
  cfg.optimizer.decay = 0.1
  cfg.log_every = max(1, min(100, num_steps // 20))
  cfg.eval_every = max(1, num_steps // 10)
  cfg.checkpoint_every = max(1, num_steps // 20)
  cfg.schedule = "ours (results/PROTOCOL_SR.md), chosen on the validation photographs"
  return cfg
