"""divnorm's compiled programs give the same numbers with XLA's YNNPACK fusions and without.

XLA's CPU backend fused channels-first group sums by matmuls with the input's sums and the
output into one YNNPACK kernel that computed wrong gradients (up to 0.07 off where they
reach 5; BENCHMARKS.md, "Group sums: wrong gradients from XLA"). This runs the normalizers
and layers of `tests/xla_fusion_cases.py`, at the shapes where that happened, once with
XLA's defaults and once with YNNPACK fusions off (XLA's own loops), and compares: a
miscompile in any of them, from divnorm's program or a new XLA, shows as a difference far
above float32 rounding.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from tests import xla_fusion_cases

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(path, extra_flags=""):
  env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {extra_flags}".strip()}
  return subprocess.Popen([sys.executable, "-m", "tests.xla_fusion_cases", str(path)],
                          cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_outputs_and_gradients_do_not_depend_on_ynnpack_fusions(tmp_path):
  fused, plain = tmp_path / "fused.npz", tmp_path / "plain.npz"
  runs = [_run(fused), _run(plain, "--xla_cpu_experimental_ynn_fusion_type=")]
  for run in runs:
    _, err = run.communicate()
    assert run.returncode == 0, err[-2000:]
  a, b = np.load(fused), np.load(plain)
  names = {f"{name}/{part}" for name in xla_fusion_cases.cases() for part in ("y", "dx")}
  assert set(a.files) == set(b.files) == names
  # Float32 programs that differ in fusion differ in rounding: about 1e-6 of the largest entry.
  differ = {k: float(np.abs(a[k] - b[k]).max() / np.abs(b[k]).max()) for k in a.files}
  assert {k: e for k, e in differ.items() if not e < 1e-4} == {}
