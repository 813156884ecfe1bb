"""The numbers of the converged CNN study, fixed by results/PROTOCOL.md before its runs.

Shared by the study (`experiments/cnn/study.py`, which trains the jobs) and its report
(`experiments/cnn/study_report.py`), so that neither imports the other.
"""

from __future__ import annotations

from experiments.engine.stop import plateaued

DATASET = "fashion_mnist"
SUBSET = 5_000
FULL_SPLIT = 60_000
NORMALIZED_STEPS = 1_200
BATCH_SIZE = 100
LEARNING_RATE = 1e-2
TABLE_VARIANTS = ("baseline", "BN", "BN*", "LN", "LN*", "DN", "DN*")
SEEDS = (0, 1, 2)
TABLE_SEEDS = SEEDS + (3, 4, 5)  # 3-5 added 2026-12-07 (PROTOCOL.md)
SIGMA_VARIANT = "DN*"
SIGMA_SEEDS = TABLE_SEEDS  # sigma and sigma_alone: 3-5 added 2026-12-08 (PROTOCOL.md)
# sigma alone (PROTOCOL.md, 2026-12-03): (variant, config overrides, tag).
SIGMA_ALONE = (("BN-s", (), ""), ("LN-s", (), ""), ("DN", ("sigma=0.0",), "sigma0"))
SMALL_BATCH_VARIANTS = ("BN", "LN", "DN", "DN*")
SMALL_BATCHES = (4, 16, 64)
SMALL_BATCH_SEEDS = (0, 1, 2, 3, 4, 5)  # 3-5 added 2026-12-08 (PROTOCOL.md)
SMALL_BATCH_EXAMPLES = 30_000
FULL_VARIANTS = ("BN", "BN*", "DN", "DN*")
FULL_SEEDS = (0, 1, 2, 3)  # 2 and 3 added 2026-12-07 (PROTOCOL.md)
FULL_EPOCHS = 10
PLATEAU_TOLERANCE = 0.05
PROBE_IMAGES = 1_000
SAMPLES_SAVED = 2_048


def converged(row: dict) -> bool:
  """The protocol's plateau check: the last two tenths' mean training CE differ by <= 5%."""
  return plateaued([row["train_ce_80_90"], row["train_ce_90_100"]],
                   tolerance=PLATEAU_TOLERANCE)
