"""The documentation site builds offline with warnings as errors, and covers the public API.

The same build as ``make docs`` (``sphinx-build -W --keep-going``), into a temporary folder.
"""

import importlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("myst_nb")

ROOT = Path(__file__).resolve().parents[1]
BUILD_SECONDS = 240  # generous: the build takes ~30-60 s on 2 shared cores


@pytest.fixture(scope="module")
def site(tmp_path_factory):
  out = tmp_path_factory.mktemp("site")
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
  env.pop("XLA_FLAGS", None)
  proc = subprocess.run(
      [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
       "-d", str(out / "doctrees"), str(ROOT / "docs"), str(out / "html")],
      capture_output=True, text=True, timeout=BUILD_SECONDS, env=env, cwd=ROOT)
  assert proc.returncode == 0, f"sphinx-build failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
  return out / "html"


def _ids(page: Path) -> set[str]:
  return set(re.findall(r'id="([^"]+)"', page.read_text()))


@pytest.mark.slow
def test_site(site):
  """One test on one build: the build writes `docs/generated/` in the source tree, so two
  tests on two pytest-xdist workers would build it at once (each removing the other's
  files: "FileNotFoundError ... divnorm_gdn.rst")."""
  _api_reference_documents_every_public_name(site)
  _pages(site)


def _api_reference_documents_every_public_name(site):
  """Every name `divnorm` exports has an entry, and every public module a page."""
  import divnorm

  ids = _ids(site / "generated" / "api" / "divnorm.html")
  modules = [n for n in divnorm.__all__ if inspect.ismodule(getattr(divnorm, n))]
  missing = [n for n in divnorm.__all__ if n not in modules and f"divnorm.{n}" not in ids]
  assert not missing, f"not in the API reference: {missing}"
  for name in ["linen", "nnx", *modules]:
    assert (site / "generated" / "api" / f"divnorm_{name}.html").exists(), name
  # The flax modules are documented with their signatures.
  linen = importlib.import_module("divnorm.linen")
  ids = _ids(site / "generated" / "api" / "divnorm_linen.html")
  assert "divnorm.linen.LayerNorm" in ids and "divnorm.linen.DivisiveNorm" in ids
  assert hasattr(linen, "LayerNorm")
  # flax.nnx's metaclass hides __init__ from inspect: the page shows its arguments anyway.
  nnx_page = re.sub(r"<[^>]+>", "", (site / "generated" / "api" / "divnorm_nnx.html").read_text())
  assert re.search(r"class divnorm\.nnx\.LayerNorm\(num_features", nnx_page)
  assert re.search(r"class divnorm\.nnx\.DivisiveNorm\(num_features.*summation_window", nnx_page)


def _pages(site):
  """The field table, the compatibility table, the notebooks, the results and benchmarks."""
  fields = (site / "fields.html").read_text()
  tables = re.findall(r"<table.*?</table>", fields, flags=re.S)
  assert any("summation field A" in t and "divisive norm (DN)" in t for t in tables), (
      "the field table (README.md, ## Fields) did not render as a table")
  for page in ["fields.html", "normalizers.html"]:
    text = (site / page).read_text()
    # A table whose rows disagree on their number of cells renders as raw pipe text.
    assert not re.search(r"\|(---|—)\|", text), f"{page}: a table rendered as text"
  normalizers = (site / "normalizers.html").read_text()
  assert "families.miller_norm" in normalizers and "divnorm.kernels" in normalizers
  assert "LayerNorm" in (site / "compatibility.html").read_text()
  notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
  assert notebooks
  for nb in notebooks:
    page = (site / "generated" / "notebooks" / f"{nb.stem}.html").read_text()
    assert "<img" in page, f"{nb.name} rendered without its figures"
  for readme in (ROOT / "results").glob("*/README.md"):
    assert (site / "generated" / "results" / f"{readme.parent.name}.html").exists()
  assert (site / "generated" / "benchmarks.html").exists()
