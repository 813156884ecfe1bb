"""The device check runs end to end in its shrunk CPU mode, so it cannot rot before a GPU.

Its numbers mean nothing here; the test asserts that every section produced rows, that
every ratio is finite and positive, and that the numerics tests ran and passed.
"""

import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

# ~70 s of CPU time (compiling ~100 small functions and three train steps, a nested pytest).
pytestmark = pytest.mark.slow


def _ratios(obj):
  """Every ratio ({median, low, high}) anywhere in the JSON results."""
  if isinstance(obj, dict):
    if set(obj) == {"median", "low", "high"}:
      yield obj
    else:
      for v in obj.values():
        yield from _ratios(v)
  elif isinstance(obj, list):
    for v in obj:
      yield from _ratios(v)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
  out = tmp_path_factory.mktemp("device_check")
  env = {**os.environ, "PYTHONPATH": str(REPO)}
  proc = subprocess.run(
      [sys.executable, "-m", "benchmarks.device_check", "--quick", "--out", str(out)],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  return out, proc.stdout


def test_quick_mode_writes_every_file(quick_run):
  out, stdout = quick_run
  for name in ("device_check.md", "device_check.json", "pytest.txt", "device_check.log"):
    assert (out / name).stat().st_size > 0, name
  assert "done in" in stdout


def test_every_section_has_rows_and_finite_positive_ratios(quick_run):
  out, _ = quick_run
  data = json.loads((out / "device_check.json").read_text())
  secs = data["sections"]
  assert data["env"]["device_count"] >= 1 and data["env"]["versions"]["jax"]
  for name in ("ops", "window", "models"):
    assert secs[name]["status"] == "done", (name, secs[name])
    assert all("error" not in u and not u["errors"] for u in secs[name]["units"]), name
  ops = secs["ops"]["units"]
  assert {u["dtype"] for u in ops} == {"float32", "bfloat16"}
  rows = [r for u in ops for r in u["rows"]]
  for preset in ("BN", "LN", "IN", "GN", "RMS"):
    assert {r["pass"] for r in rows if r["preset"] == preset} == {"fwd", "fwdbwd"}, preset
  assert any(r["preset"].startswith("DN") for r in rows)
  # Each variance mode is compared with flax's same mode.
  for r in rows:
    if r["mode"] != "default":
      assert r["flax"].endswith(r["mode"]), r
  modes = {r["mode"] for r in rows if r["preset"] == "LN"}
  assert modes == {"default", "one-pass", "two-pass"}
  assert all(b["gbps"] > 0 for u in ops for b in u["bandwidth"])
  assert [r["width"] for r in secs["window"]["units"][0]["rows"]] == [3, 5]
  families = {u["family"]: u for u in secs["models"]["units"]}
  assert set(families) == {"CNN", "LSTM"}
  assert all(r["steps_per_s"] > 0 for u in families.values() for r in u["rows"])
  ratios = list(_ratios(data["sections"]))
  assert len(ratios) > 50
  for q in ratios:
    assert all(math.isfinite(q[k]) and q[k] > 0 for k in q), q
    assert q["low"] <= q["median"] <= q["high"], q


def test_markdown_has_a_table_per_section(quick_run):
  out, _ = quick_run
  md = (out / "device_check.md").read_text()
  for heading in ("### Presets and DN against flax.linen", "#### float32, forward+backward",
                  "#### bfloat16, forward", "### Bandwidth against a copy",
                  "### DN window width", "### Train steps", "### Numerics tests on the device",
                  "### Time spent"):
    assert heading in md, heading
  assert "nan" not in md.split("### Time spent")[0].replace("n/a", "")


def test_numerics_tests_ran_and_passed(quick_run):
  out, _ = quick_run
  result = json.loads((out / "device_check.json").read_text())["sections"]["pytest"]["result"]
  assert result["counts"].get("passed", 0) >= 1 and not result["counts"].get("failed")
  assert set(result["returncodes"].values()) == {0} and result["backend"] == "cpu"
  assert "passed" in (out / "pytest.txt").read_text()
