"""Executes the notebooks and writes them back with their outputs.

Each notebook is kept twice: ``NN_name.py`` (jupytext's percent format, the one to edit and
review) and ``NN_name.ipynb`` (the same cells with outputs, for GitHub, Colab and the docs).
This script reads the ``.py``, runs it top to bottom in a fresh kernel started in this
folder, and writes the ``.ipynb``:

    python notebooks/run.py                 # every notebook, default settings
    python notebooks/run.py 02 04           # the ones whose names start so
    DIVNORM_NOTEBOOK_QUICK=1 python notebooks/run.py --no-write   # the shrunk test run

It prints each notebook's wall time (kernel start included) and its kernel's CPU time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jupytext
import nbclient
import nbformat

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


_CPU_SECONDS = ("import resource as _r; _u = _r.getrusage(_r.RUSAGE_SELF); "
                "print(_u.ru_utime + _u.ru_stime)")


def execute(nb, *, timeout: int = 1800) -> float:
  """Runs `nb` in place in a kernel whose working directory is this folder.

  Returns:
    the CPU seconds (user + system, all threads) the kernel used: on a shared machine a
    steadier measure than wall time.
  """
  client = nbclient.NotebookClient(
      nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}})
  client.reset_execution_trackers()
  with client.setup_kernel():
    info = client.wait_for_reply(client.kc.kernel_info())
    nb.metadata["language_info"] = info["content"]["language_info"]
    for index, cell in enumerate(nb.cells):
      client.execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
    probe = nbformat.v4.new_code_cell(_CPU_SECONDS)
    nb.cells.append(probe)  # executed, then taken out again
    try:
      client.execute_cell(probe, len(nb.cells) - 1, store_history=False)
    finally:
      nb.cells.pop()
  return float(probe.outputs[0]["text"])


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("prefixes", nargs="*", help="run only notebooks whose names start so")
  parser.add_argument("--no-write", action="store_true", help="execute without writing")
  args = parser.parse_args(argv)
  for path in notebooks(args.prefixes):
    nb = read(path)
    start = time.perf_counter()
    cpu = execute(nb)
    seconds = time.perf_counter() - start
    if not args.no_write:
      jupytext.write(nb, path.with_suffix(".ipynb"))
      jupytext.write(nb, path, fmt="py:percent")
    print(f"{path.stem}: {seconds:.1f} s wall, {cpu:.1f} s CPU (kernel)", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
