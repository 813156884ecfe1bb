"""The notebooks: each text twin matches its executed notebook, and each runs top to bottom.

Every notebook runs in a fresh kernel with ``DIVNORM_NOTEBOOK_QUICK=1``, which its parameter
cell reads to shrink steps and shapes, so a notebook that breaks fails here.
"""

import importlib.util
import json
import os
import re
import time
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
_spec = importlib.util.spec_from_file_location("notebook_runner", NOTEBOOKS / "run.py")
notebook_runner = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(notebook_runner)

TWINS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))
IDS = [p.stem for p in TWINS]
COLAB = "https://colab.research.google.com/github/{org}/divnorm/blob/main/notebooks/{name}"
# Each notebook's budget in quick mode, in CPU seconds of its kernel (wall time on a shared
# machine says more about the other jobs); a cell that runs longer than CELL_TIMEOUT fails.
QUICK_CPU_SECONDS = 60
CELL_TIMEOUT = 600


EXPECTED = ["01", "02", "03", "04", "05", "06", "07", "08", "09"]


def test_every_notebook():
  assert [p.stem[:2] for p in TWINS] == EXPECTED, IDS
  for twin in TWINS:
    assert twin.with_suffix(".ipynb").exists(), f"{twin.name} has no executed .ipynb twin"


def _sources(nb):
  return [(c.cell_type, c.source.strip()) for c in nb.cells]


@pytest.mark.parametrize("twin", TWINS, ids=IDS)
def test_twins_in_sync_and_executed(twin):
  """The .ipynb holds the .py's cells, executed in order without errors, paired by jupytext."""
  ipynb = twin.with_suffix(".ipynb")
  text_nb, full_nb = jupytext.read(twin), jupytext.read(ipynb)
  assert _sources(text_nb) == _sources(full_nb), (
      f"{twin.name} and {ipynb.name} differ: run `python notebooks/run.py {twin.stem[:2]}`")
  assert full_nb.metadata["jupytext"]["formats"] == "ipynb,py:percent"
  code = [c for c in full_nb.cells if c.cell_type == "code"]
  counts = [c.execution_count for c in code]
  assert counts == list(range(1, len(code) + 1)), f"{ipynb.name} is not executed top to bottom"
  for cell in code:
    for out in cell.outputs:
      assert out.output_type != "error", f"{ipynb.name}: {out.ename}: {out.evalue}"
  # Outputs are committed so the notebook renders: at least one figure.
  raw = json.loads(ipynb.read_text())
  assert any("image/png" in o.get("data", {}) or "image/jpeg" in o.get("data", {})
             for c in raw["cells"] for o in c.get("outputs", []))


@pytest.mark.parametrize("twin", TWINS, ids=IDS)
def test_colab_badge_and_install_cell(twin):
  nb = jupytext.read(twin)
  first_md = nb.cells[0].source
  url = re.search(r"\(https://colab\.research\.google\.com/github/([\w.-]+)/divnorm/blob/main/"
                  r"notebooks/([\w.]+)\)", first_md)
  assert url, f"{twin.name}: the first cell has no Open in Colab badge"
  assert url.group(2) == twin.with_suffix(".ipynb").name
  first_code = next(c for c in nb.cells if c.cell_type == "code").source
  assert '"google.colab" in sys.modules' in first_code and "pip" in first_code
  params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
  assert len(params) == 1 and "DIVNORM_NOTEBOOK_QUICK" in params[0].source
  # The experiments are not in the wheel: outside Colab, a notebook that imports them puts
  # the clone's root on sys.path (Jupyter and notebooks/run.py start it in notebooks/).
  if re.search(r"^\s*(from|import) experiments", "".join(c.source for c in nb.cells), re.M):
    assert 'sys.path.insert(0, os.path.abspath(".."))' in first_code, twin.name


@pytest.mark.slow
@pytest.mark.loose_promotion
@pytest.mark.parametrize("twin", TWINS, ids=IDS)
def test_runs_in_quick_mode(twin, monkeypatch):
  """Top to bottom in a fresh kernel, shrunk; a failing cell raises CellExecutionError."""
  monkeypatch.setenv("DIVNORM_NOTEBOOK_QUICK", "1")
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
      [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
  monkeypatch.delenv("XLA_FLAGS", raising=False)  # one CPU device, as in Colab
  nb = notebook_runner.read(twin)
  figures = NOTEBOOKS / "figures"
  before = {p: p.stat().st_mtime for p in figures.rglob("*") if p.is_file()}
  start = time.perf_counter()
  cpu = notebook_runner.execute(nb, timeout=CELL_TIMEOUT)
  seconds = time.perf_counter() - start
  assert cpu < QUICK_CPU_SECONDS, (
      f"{twin.name} took {cpu:.0f} s of CPU ({seconds:.0f} s wall) in quick mode")
  after = {p: p.stat().st_mtime for p in figures.rglob("*") if p.is_file()}
  assert after == before, "a quick run must not overwrite the committed figures"
