"""The accuracy tests again, compiled at XLA's default optimization level, as users compile.

The suite compiles without LLVM's optimizations (`tests/conftest.py`: a fifth less time). That
changes only the machine code LLVM makes from the same XLA program, but "numerics are API":
the contract that every variance mode stays accurate at large offsets, and that float32
matches the float64 formula, is checked here once more with the optimizations users get.
"""

import os
import re
import subprocess
import sys

import pytest

# XLA's default `xla_backend_optimization_level` (xla/debug_options_flags.cc). Named in
# XLA_FLAGS, it is kept by tests/conftest.py's pytest_configure.
DEFAULT_LEVEL = "--xla_backend_optimization_level=3"
ACCURACY_TESTS = ["tests/test_offsets.py",
                  "tests/test_properties.py::test_float32_matches_the_float64_formula"]


@pytest.mark.slow
def test_accuracy_tests_pass_at_xla_s_default_optimization_level():
  flags = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split()
                   if "optimization_level" not in f)
  env = {**os.environ, "XLA_FLAGS": f"{flags} {DEFAULT_LEVEL}".strip()}
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run(
      [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
       "-W", "error::pytest.PytestUnknownMarkWarning", *ACCURACY_TESTS],
      cwd=root, env=env, capture_output=True, text=True, timeout=900, check=False)
  assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
  passed = re.search(r"(\d+) passed", proc.stdout)
  assert passed and int(passed.group(1)) >= 60 and "failed" not in proc.stdout, proc.stdout[-2000:]
