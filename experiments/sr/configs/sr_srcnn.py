"""SRCNN 9-5-5 super-resolution (Ren et al. 2017, §5.3), one variant at one scale.

Argument: "VARIANT,SCALE[,SOURCE]", e.g.

  python -m experiments.main --config 'experiments/sr/configs/sr_srcnn.py:DN*,3' --workdir runs/sr_dn_x3
  python -m experiments.main --config 'experiments/sr/configs/sr_srcnn.py:BN,4,div2k' --workdir runs/sr_bn_x4
  python -m experiments.main --config 'experiments/sr/configs/sr_srcnn.py:SRCNN,3' \
      --set test_source=folder:/data/Set14 --workdir runs/sr_x3_set14

(quote the argument: `*` is a shell character). VARIANT is Bicubic, SRCNN, BN or
DN*; SCALE 2, 3 or 4; SOURCE "photographs" (offline default: the photographs
that scikit-image, scikit-learn and matplotlib ship, fixed train/test split),
"photographs_validation" (train without the validation photographs, tested on
them: for choosing a schedule), "div2k" (tfds.data_source,
train / validation) or "folder:/path" (its images are both train and test; set
`test_source` to evaluate elsewhere).

This is the paper's recipe (the reference code's sr_exp_config.py): 33x33
patches, batch 1, momentum 0.9, lr 1e-4, N(0, 1e-3) init, MSE / 2, DN* sigma 1.0,
alpha 0.1, windows 5x5 / 7x7; the paper trains for up to 1e8 steps, here
`num_steps` defaults to 1e6. DN's border is "valid" (statistics over in-bounds
entries); the reference code zero-pads, divides by the full window and divides the
7x7 suppression sum by the 5x5 area: `--set norm.dn_border=zeros_with_divisor_bug`
reproduces it. For a schedule a CPU finishes see sr_srcnn_fast.py.
"""

from __future__ import annotations

import ml_collections

from experiments.sr import imaging as sr_image
from experiments.sr import model as srcnn


def parse_arg(arg: str) -> tuple[str, int, str]:
  parts = [p.strip() for p in (arg or "").split(",") if p.strip()]
  if not 1 <= len(parts) <= 3:
    raise ValueError(f"config argument {arg!r}: expected 'VARIANT,SCALE[,SOURCE]', e.g. 'DN*,3'.")
  variant = srcnn.canonical_variant(parts[0])
  scale = parts[1] if len(parts) > 1 else "3"
  if not scale.isdigit():
    raise ValueError(f"scale {scale!r} must be an integer in {sr_image.SCALES}.")
  source = parts[2] if len(parts) > 2 else "photographs"
  return variant, sr_image.check_scale(int(scale)), source


def get_config(arg: str = "SRCNN,3") -> ml_collections.ConfigDict:
  variant, scale, source = parse_arg(arg)
  cfg = ml_collections.ConfigDict()
  cfg.trainer = "experiments.sr.task:train_and_evaluate"
  cfg.variant = variant
  cfg.scale = scale
  cfg.source = source
  cfg.test_source = ml_collections.config_dict.placeholder(str)  # None: `source`'s test split
  cfg.data_dir = ml_collections.config_dict.placeholder(str)
  cfg.max_test_images = ml_collections.config_dict.placeholder(int)
  cfg.antialias = True  # Matlab imresize's antialiased shrinking
  cfg.augment = False  # rotations/flips of the training patches (not in the paper)
  cfg.patch_size = 33
  cfg.init_std = srcnn.INIT_STD
  cfg.norm = ml_collections.ConfigDict(dict(
      dn_summation=(5, 5), dn_suppression=(7, 7), dn_sigma=1.0, dn_l1_alpha=0.1,
      dn_border="valid", bn_sigma=1e-2, bn_momentum=0.9))
  cfg.seed = 0
  cfg.batch_size = 1
  cfg.num_steps = 1_000_000
  cfg.optimizer = ml_collections.ConfigDict(dict(
      name="momentum", learning_rate=1e-4, momentum=0.9, boundaries=[], decay=0.1,
      clip_global_norm=0.0))
  cfg.log_every = 1000
  cfg.eval_every = 25_000
  cfg.eval_patches = 256
  cfg.eval_batch_size = 64
  cfg.checkpoint_every = 50_000
  return cfg
