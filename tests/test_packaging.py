"""The wheel ships the library alone: `divnorm` is its only top-level package."""

import pathlib
import shutil
import subprocess
import sys
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_wheel_ships_divnorm_alone(tmp_path):
  # A copy of the repository (without git-ignored build leftovers), built without build
  # isolation: the venv's setuptools builds it offline in a few seconds.
  src = tmp_path / "src"
  ignore = shutil.ignore_patterns("__pycache__", "build", "*.egg-info", ".venv", "runs", ".git")
  shutil.copytree(ROOT, src, ignore=ignore)
  subprocess.run(
      [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
       "--wheel-dir", str(tmp_path), str(src)],
      check=True, capture_output=True, text=True, cwd=tmp_path)
  (wheel,) = tmp_path.glob("divnorm-*.whl")
  names = zipfile.ZipFile(wheel).namelist()
  top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
  assert top == {"divnorm"}, top
  assert "divnorm/_src/core.py" in names and "divnorm/linen.py" in names
  metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
  text = zipfile.ZipFile(wheel).read(metadata).decode()
  assert "License-Expression: Apache-2.0" in text
