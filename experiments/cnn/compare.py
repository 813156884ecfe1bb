"""The main job: offline comparison of baseline, BN, LN, DN and DN* on Fashion-MNIST.

  python -m experiments.cnn.compare                      # ~15 min on 2 CPU cores
  python -m experiments.cnn.compare --num_steps 100      # a quick look

The paper's CIFAR CNN and recipe (REFERENCE §3) on the full Fashion-MNIST IDX
files (Debian's dataset-fashion-mnist, or --data_dir), each variant for
--num_steps steps (lr x0.1 at 60% and 85%). Prints the results table and
writes table.md, table.csv and curves.png (learning curves) to --out.
"""

from __future__ import annotations

import sys

from experiments.cnn import reproduce

DEFAULT_VARIANTS = "baseline,BN,LN,DN,DN*"


def main(argv=None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  defaults = {"--variants": DEFAULT_VARIANTS, "--dataset": "fashion_mnist",
              "--num_steps": "400", "--workdir": "runs/cnn_compare"}
  for flag, value in defaults.items():
    if not any(a == flag or a.startswith(flag + "=") for a in argv):
      argv += [flag, value]
  return reproduce.main(argv)


if __name__ == "__main__":
  from experiments.config import cli
  cli(main)
