"""The benchmark command runs end to end in its quick mode (tiny shapes, one round).

Timing targets are not asserted: CI machines are too noisy for that.
"""

import pytest

from benchmarks import __main__ as bench

pytestmark = pytest.mark.loose_promotion  # drives flax, optax and the experiment models


def test_quick_mode_writes_every_section(tmp_path):
  out = tmp_path / "BENCHMARKS.md"
  assert bench.main(["--quick", "--out", str(out)]) == 0
  text = out.read_text()
  for section in ("## Targets", "## Op level", "## Window width", "## Tensor size",
                  "## Library optimizations", "## Model level", "flax LN", "paper conv"):
    assert section in text
  assert "nan" not in text.split("## Op level")[1].split("## Window width")[0]
