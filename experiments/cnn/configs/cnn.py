"""The paper's CIFAR CNN (Ren et al. 2017, Tables 3 and 7), one variant on one dataset.

Argument: "VARIANT,DATASET[,BORDER]", e.g.

  python -m experiments.main --config 'experiments/cnn/configs/cnn.py:DN*,cifar10' --workdir /tmp/dn_star_c10
  python -m experiments.main --config 'experiments/cnn/configs/cnn.py:BN,cifar100' --workdir /tmp/bn_c100
  python -m experiments.main --config 'experiments/cnn/configs/cnn.py:DN,cifar10,zeros' --workdir /tmp/dn_ref

(quote the argument: `*` and `+` are shell characters). VARIANT is one of
baseline, baseline+L1, BN, BN+L1, BN-s, BN*, LN, LN+L1, LN-s, LN*, DN, DN*;
DATASET one of fashion_mnist, fashion_mnist_tfds, cifar10, cifar100. BORDER
(DN only) is "valid" (default: statistics over the in-bounds entries of each
window), or one of the two reproduction modes of the paper's code: "zeros" (its
zero padding: out-of-bounds entries count as zeros) and "zeros_with_divisor_bug"
(its zero padding and its division of the suppression sum by the summation
window's size), kept only to match its numbers. Schedule, optimizer and batch are the paper's:
momentum 0.9, lr 1e-3, batch 100; baseline 50k steps (x0.1 at 5k, 30k),
normalized 80k steps (x0.1 at 30k, 50k). sigma and alpha are the paper's for
CIFAR-100 on cifar100 and for CIFAR-10 otherwise.
"""

from __future__ import annotations

import ml_collections

from experiments.cnn import model as cnn
from experiments.data import images

PAPER_SCHEDULES = {
    "baseline": (50_000, (5_000, 30_000)),
    "normalized": (80_000, (30_000, 50_000)),
}


def parse_arg(arg: str) -> tuple[str, str, str]:
  parts = [p.strip() for p in (arg or "").split(",") if p.strip()]
  if not 1 <= len(parts) <= 3:
    raise ValueError(f"config argument {arg!r}: expected 'VARIANT,DATASET[,BORDER]', e.g. "
                     f"'DN*,cifar10'. Variants: {', '.join(cnn.VARIANTS)}; datasets: "
                     f"{', '.join(images.DATASETS)}.")
  variant = cnn.canonical_variant(parts[0])
  dataset = parts[1] if len(parts) > 1 else "cifar10"
  images.check_dataset(dataset)
  border = parts[2] if len(parts) > 2 else "valid"
  if border not in cnn.BORDERS:
    raise ValueError(f"unknown border {border!r}; valid choices: {', '.join(cnn.BORDERS)}.")
  return variant, dataset, border


def get_config(arg: str = "DN,cifar10") -> ml_collections.ConfigDict:
  variant, dataset, border = parse_arg(arg)
  hparams = "cifar100" if dataset == "cifar100" else "cifar10"
  spec = cnn.variant_spec(variant, hparams)
  num_steps, boundaries = PAPER_SCHEDULES[spec.paper_schedule]
  cfg = ml_collections.ConfigDict()
  cfg.trainer = "experiments.cnn.task:train_and_evaluate"
  cfg.variant = variant
  cfg.dataset = dataset
  cfg.data_dir = ml_collections.config_dict.placeholder(str)
  cfg.hparams = hparams
  cfg.border = border
  # Learn each normalizer's sigma (exp(log_sigma), from the variant's sigma), as the
  # paper's ResNet config does; train metrics then log sigma_norm_<layer>.
  cfg.learn_sigma = False
  # The normalizers' sigma instead of the variant's (None: the paper's for the variant);
  # e.g. DN with sigma 0, to separate sigma's effect from L1's.
  cfg.sigma = ml_collections.config_dict.placeholder(float)
  cfg.seed = 0
  cfg.batch_size = 100
  cfg.eval_batch_size = 100
  cfg.num_steps = num_steps
  cfg.optimizer = ml_collections.ConfigDict(dict(
      name="momentum", learning_rate=1e-3, momentum=0.9, boundaries=list(boundaries),
      decay=0.1, clip_global_norm=0.0))
  cfg.log_every = 100
  cfg.eval_every = 5_000
  cfg.checkpoint_every = 5_000
  # Shrinking knobs for tests and short runs (None: the whole split).
  cfg.max_train_examples = ml_collections.config_dict.placeholder(int)
  cfg.max_eval_examples = ml_collections.config_dict.placeholder(int)
  return cfg
