"""`python -m benchmarks.dn_floor` runs end to end (tiny shapes, one round), and its floor
programs compute the normalizer they stand for.

Timing targets are not asserted: CI machines are too noisy for that.
"""

import functools

import jax
import jax.numpy as jnp
import pytest

import divnorm
from benchmarks import dn_floor

pytestmark = pytest.mark.loose_promotion  # drives flax


@pytest.mark.slow
def test_quick_mode_prints_every_contender(capsys):
  assert dn_floor.main(["--quick", "--before", "HEAD"]) == 0
  text = capsys.readouterr().out
  assert text.count("DN / DN at HEAD: forward ") == len(dn_floor.QUICK_CASES)
  for shape, width in dn_floor.QUICK_CASES:
    names = [*dn_floor.cases_fns(shape, width), "DN at HEAD"]
    block = text.split(f"**{'x'.join(map(str, shape))}**")[1].split("\n\n**")[0]
    rows = [line for line in block.splitlines() if line.startswith("| ") and "---" not in line]
    assert [r.split(" | ")[0][2:] for r in rows[1:]] == list(names)
    for r in rows[1:]:
      cells = r.strip("| ").split(" | ")
      assert len(cells) == 6 and "nan" not in r
      assert float(cells[5]) >= 1.0  # no program moves fewer bytes than the minimum


def test_quick_pieces_prints_every_pass(capsys):
  assert dn_floor.main(["--quick", "--pieces"]) == 0
  rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| ")]
  assert len(rows) == 11 and "nan" not in "".join(rows)  # the header and 10 passes


@pytest.mark.slow
def test_floor_programs_compute_divisive_norm():
  # The floor rows are the same normalizer (valid borders): on [B, D] the window two-pass,
  # on [B, H, W, C] the per-position two-pass (DN with a window of 1).
  @jax.jit
  def errors(x, y):
    dn = functools.partial(divnorm.divisive_norm, sigma=dn_floor.SIGMA)
    return (jnp.abs(dn_floor.window_two_pass(x, 7) - dn(x, summation_window=7)).max(),
            jnp.abs(dn_floor.plain_two_pass(y) - dn(y, summation_window=1)).max())
  x = jax.random.normal(jax.random.key(0), (3, 40))
  y = jax.random.normal(jax.random.key(1), (2, 4, 4, 8))
  for e in errors(x, y):
    assert e < 2e-5, e


@pytest.mark.slow
def test_quick_windows_and_profile_print_every_row(capsys):
  assert dn_floor.main(["--quick", "--windows"]) == 0
  rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| ") and "---" not in r]
  assert len(rows) == 2 + 2 * len(dn_floor.WINDOW_SUMS) and "nan" not in "".join(rows)
  assert dn_floor.main(["--quick", "--profile"]) == 0
  text = capsys.readouterr().out
  for label in ("flax LN(HWC)", "DN two-pass", "DN one-pass"):
    assert f"**{label}, " in text
  assert "reduce-window" in text  # DN's window sums are operations of their own
