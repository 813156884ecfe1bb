"""Executes the notebooks and writes them back with their outputs.

Each notebook is kept twice: ``NN_name.py`` (jupytext's percent format, the one to edit and
review) and ``NN_name.ipynb`` (the same cells with outputs, for GitHub, Colab and the docs).
This script reads the ``.py``, runs it top to bottom in a fresh kernel started in this
folder, and writes the ``.ipynb``:

    python notebooks/run.py                 # every notebook, default settings
    python notebooks/run.py 02 04           # the ones whose names start so
    DIVNORM_NOTEBOOK_QUICK=1 python notebooks/run.py --no-write   # the shrunk test run

It prints each notebook's wall time (kernel start included).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jupytext
import nbclient

HERE = Path(__file__).resolve().parent
FORMATS = "ipynb,py:percent"
KERNEL = {"name": "python3", "display_name": "Python 3", "language": "python"}


def notebooks(prefixes=()) -> list[Path]:
  paths = sorted(HERE.glob("[0-9][0-9]_*.py"))
  if prefixes:
    paths = [p for p in paths if p.name.startswith(tuple(prefixes))]
  return paths


def read(path: Path):
  """The notebook of a percent-format twin, with the metadata that pairs the two files."""
  nb = jupytext.read(path)
  nb.metadata["jupytext"] = {"formats": FORMATS}
  nb.metadata["kernelspec"] = KERNEL
  return nb


def execute(nb, *, timeout: int = 600):
  """Runs `nb` in place in a kernel whose working directory is this folder."""
  client = nbclient.NotebookClient(
      nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}})
  client.execute()
  return nb


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("prefixes", nargs="*", help="run only notebooks whose names start so")
  parser.add_argument("--no-write", action="store_true", help="execute without writing")
  args = parser.parse_args(argv)
  for path in notebooks(args.prefixes):
    nb = read(path)
    start = time.perf_counter()
    execute(nb)
    seconds = time.perf_counter() - start
    if not args.no_write:
      jupytext.write(nb, path.with_suffix(".ipynb"))
      jupytext.write(nb, path, fmt="py:percent")
    print(f"{path.stem}: {seconds:.1f} s", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
