"""The paper's CNN on a short schedule that a 2-core CPU finishes (Fashion-MNIST by default).

Argument: "VARIANT,DATASET,NUM_STEPS[,BORDER]", e.g.

  python -m experiments.main --config 'experiments/cnn/configs/cnn_short.py:DN*,fashion_mnist,600' --workdir /tmp/dn_star_fm

Everything is the paper's CIFAR-10 recipe (network, inits, momentum 0.9, lr
1e-3, batch 100, mean-image subtraction, sigma, alpha) except the schedule:
NUM_STEPS steps for every variant, lr x0.1 at 60% and 85% of them.
"""

from __future__ import annotations

from experiments.cnn.configs import cnn as cnn_config


def short_schedule(cfg, num_steps: int):
  """Sets `num_steps` with lr x0.1 at 60% and 85%, eval/checkpoint every quarter."""
  cfg.num_steps = int(num_steps)
  cfg.optimizer.boundaries = [int(0.6 * num_steps), int(0.85 * num_steps)]
  cfg.eval_every = max(1, num_steps // 4)
  cfg.checkpoint_every = max(1, num_steps // 4)
  cfg.log_every = max(1, min(50, num_steps // 20))
  return cfg


def get_config(arg: str = "DN,fashion_mnist,600"):
  parts = [p.strip() for p in arg.split(",")]
  if len(parts) < 3 or not parts[2].isdigit():
    raise ValueError(f"config argument {arg!r}: expected 'VARIANT,DATASET,NUM_STEPS[,BORDER]', "
                     "e.g. 'DN*,fashion_mnist,600'.")
  cfg = cnn_config.get_config(",".join(parts[:2] + parts[3:]))
  return short_schedule(cfg, int(parts[2]))
