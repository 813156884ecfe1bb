"""The wheel ships the library alone (`divnorm` is its only top-level package), with its
license and the PEP 561 marker; the source distribution holds no partial test suite."""

import pathlib
import shutil
import subprocess
import sys
import tarfile
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _copy(tmp_path) -> pathlib.Path:
  """A copy of the repository, without git-ignored build leftovers."""
  src = tmp_path / "src"
  ignore = shutil.ignore_patterns("__pycache__", "build", "*.egg-info", ".venv", "runs", ".git")
  shutil.copytree(ROOT, src, ignore=ignore)
  return src


def test_wheel_ships_divnorm_alone(tmp_path):
  # Built without build isolation: the venv's setuptools builds it offline in a few seconds.
  src = _copy(tmp_path)
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
  assert "License-Expression: Apache-2.0" in text and "License-File: LICENSE" in text
  assert "divnorm/py.typed" in names
  (license_,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
  assert b"Apache License" in zipfile.ZipFile(wheel).read(license_)


def test_sdist_holds_the_library_and_its_license_but_no_partial_test_suite(tmp_path):
  src = _copy(tmp_path)
  code = ("import sys; from setuptools import build_meta; "
          "print(build_meta.build_sdist(sys.argv[1]))")
  name = subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True,
                        capture_output=True, text=True, cwd=src).stdout.split()[-1]
  with tarfile.open(tmp_path / name) as sdist:
    names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
  assert {"LICENSE", "README.md", "pyproject.toml", "divnorm/py.typed",
          "divnorm/_src/core.py"} <= names
  assert not [n for n in names if n.split("/")[0] in ("tests", "experiments", "benchmarks")]


def test_the_docs_extra_installs_what_the_api_pages_import():
  """docs/conf.py imports every public module, divnorm.equinox and divnorm.haiku too: the
  docs extra holds their optional libraries (without them `sphinx -W` stops at the config)."""
  import tomllib
  extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
      "optional-dependencies"]
  conf = (ROOT / "docs" / "conf.py").read_text()
  for module, extra in (("divnorm.equinox", "equinox"), ("divnorm.haiku", "haiku")):
    assert module in conf
    assert set(extras[extra]) <= set(extras["docs"]), extra


def test_a_missing_optional_library_is_an_absent_attribute_and_an_import_error():
  """Without equinox and haiku: help(divnorm), hasattr and getattr with a default work (the
  lazy attribute is absent), and importing the module says which extra to install."""
  code = """if True:
    import inspect, pydoc, sys
    sys.modules["equinox"] = sys.modules["haiku"] = None  # not installed
    import divnorm
    assert not hasattr(divnorm, "equinox") and getattr(divnorm, "haiku", None) is None
    assert "normalize" in pydoc.render_doc(divnorm) and inspect.getmembers(divnorm)
    try:
      from divnorm import equinox
    except ModuleNotFoundError as e:
      assert "pip install 'divnorm[equinox]'" in str(e), e
    else:
      raise AssertionError("imported")
    assert divnorm.linen.LayerNorm and divnorm.nnx.LayerNorm
  """
  subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
