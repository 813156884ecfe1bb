"""SRCNN super-resolution on a schedule a shared CPU finishes (OURS, not the paper's).

Argument: "VARIANT,SCALE,NUM_STEPS[,SOURCE]", e.g.

  python -m experiments.main --config 'experiments/sr/configs/sr_srcnn_fast.py:DN*,3,2000' \
      --workdir runs/sr_fast_dn_x3

Everything is sr_srcnn.py (the paper's network, init, loss, normalizer
hyperparameters and data pipeline) except the optimizer and batch, which are
ours: Adam, lr 1e-3 x0.1 at 80% of the steps, batch 16. The paper's SGD with
momentum at lr 1e-4 and batch 1 needs millions of steps to leave the N(0, 1e-3)
initialisation.
"""

from __future__ import annotations

from experiments.sr.configs import sr_srcnn


def get_config(arg: str = "SRCNN,3,2000"):
  parts = [p.strip() for p in (arg or "").split(",")]
  if len(parts) < 3 or not parts[2].isdigit():
    raise ValueError(f"config argument {arg!r}: expected 'VARIANT,SCALE,NUM_STEPS[,SOURCE]', "
                     "e.g. 'DN*,3,2000'.")
  cfg = sr_srcnn.get_config(",".join(parts[:2] + parts[3:]))
  num_steps = int(parts[2])
  cfg.num_steps = num_steps
  cfg.batch_size = 16
  cfg.optimizer.name = "adam"
  cfg.optimizer.learning_rate = 1e-3
  cfg.optimizer.momentum = 0.0
  cfg.optimizer.boundaries = [int(0.8 * num_steps)]
  cfg.optimizer.decay = 0.1
  cfg.log_every = max(1, min(100, num_steps // 20))
  cfg.eval_every = max(1, num_steps // 5)
  cfg.checkpoint_every = max(1, num_steps // 5)
  cfg.schedule = "ours"
  return cfg
