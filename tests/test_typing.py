"""divnorm ships `py.typed`: its annotations are API. mypy must accept correct user code.

`tests/typed/user_code.py` holds calls the docs promise (NumPy inputs and masks, numbers
given as arrays, resolved and grouped fields, windows of None, nnx layers' attributes, ...);
each ran as written, and each was rejected by an annotation before they were corrected. A
misspelt name must still be an error: the lazy submodules' `__getattr__` is typed to return
modules, not Any.
"""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parents[1]
MISTAKES = """
import divnorm
divnorm.layer_norml(1.0)
divnorm.normalize(1.0, (1, 2), sigma="wide")
divnorm.divisive_norm(1.0, summation_window=(5, "5"), sigma=0.5)
"""


@pytest.mark.slow
def test_mypy_accepts_correct_user_code_and_rejects_mistakes(tmp_path):
  mistakes = tmp_path / "mistakes.py"
  mistakes.write_text(MISTAKES)
  proc = subprocess.run(
      [sys.executable, "-m", "mypy", "--follow-imports=silent", "--check-untyped-defs",
       "--no-error-summary", "--cache-dir", str(tmp_path / "cache"),
       str(ROOT / "tests" / "typed" / "user_code.py"), str(mistakes)],
      cwd=ROOT, env={**os.environ, "MYPYPATH": str(ROOT)}, capture_output=True, text=True,
      timeout=600, check=False)
  errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
  assert not [e for e in errors if "user_code.py" in e], proc.stdout
  lines = sorted(int(e.split(":")[1]) for e in errors if "mistakes.py" in e)
  assert lines == [3, 4, 5], proc.stdout + proc.stderr
