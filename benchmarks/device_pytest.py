"""The device check's numerics section: the core's test files, run on the device.

Eager tests (gradient checks run op by op) are bound by compiling each operation on the
host, so the files run side by side, one process each, within a time limit; their outputs
are joined into ``pytest.txt``.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
CORE_TESTS = ("tests/test_presets.py", "tests/test_grouped_fields.py", "tests/test_normalize.py",
              "tests/test_properties.py")

_PYTEST_WRAPPER = """
import sys, pytest
class Backend:
  def pytest_collection_finish(self, session):
    import jax
    d = jax.devices()
    print(f"device_check: backend={jax.default_backend()} devices={len(d)} "
          f"kind={d[0].device_kind}", flush=True)
sys.exit(pytest.main(sys.argv[1:], plugins=[Backend()]))
"""


def _pytest_counts(text: str) -> tuple[dict, bool]:
  """Outcome counts from pytest's final line, or from the verbose lines of a stopped run."""
  for line in reversed(text.splitlines()):
    m = re.match(r"^=+ (.*\d+ (?:passed|failed|errors?|skipped|deselected).*) in .*=+$", line)
    if m:
      found = re.findall(r"(\d+) (passed|failed|errors?|skipped|deselected|xfailed|xpassed)",
                         m.group(1))
      return {("error" if w.startswith("error") else w): int(n) for n, w in found}, True
  counts = {w.lower(): len(re.findall(rf"::\S+ {w}\b", text))
            for w in ("PASSED", "FAILED", "ERROR", "SKIPPED")}
  return {("error" if k == "error" else k): v for k, v in counts.items()}, False


def run_pytest(out: pathlib.Path, time_limit: float, platforms: str, k: str | None, *,
               pytest_args: tuple, max_files: int | None = None) -> dict:
  """The core's test files on the device, one process per file at once, for `time_limit` s.

  Args:
    out: where ``pytest.txt`` goes.
    platforms: ``JAX_PLATFORMS`` for the tests ("": JAX's default device).
    k: a pytest ``-k`` expression replacing `pytest_args` ("" runs every test), or None.
    pytest_args: the default selection.
    max_files: run only the first files (the CPU smoke run).
  """
  files = [f for f in CORE_TESTS if (REPO / f).exists()][:max_files]
  pargs = list(pytest_args)
  if k is not None:
    pargs = ["-k", k] if k else []
  opts = [*pargs, "-v", "--tb=short", "--maxfail=5", "-p", "no:cacheprovider"]
  env = dict(os.environ)
  # tests/conftest.py sets JAX_PLATFORMS=cpu unless it is set: "" is JAX's default device.
  env["JAX_PLATFORMS"] = platforms
  env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
  env["PYTHONUNBUFFERED"] = "1"
  shown = f"JAX_PLATFORMS='{platforms}' python -m pytest <file> " + " ".join(
      f"'{a}'" if " " in a else a for a in opts)
  start = time.monotonic()
  with tempfile.TemporaryDirectory() as tmp:
    logs = {f: pathlib.Path(tmp) / f"{i}.txt" for i, f in enumerate(files)}
    procs = {}
    for f in files:
      with open(logs[f], "w") as log:
        procs[f] = subprocess.Popen([sys.executable, "-c", _PYTEST_WRAPPER, f, *opts],
                                    cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    codes, stopped = {}, []
    for f, proc in procs.items():
      try:
        codes[f] = proc.wait(timeout=max(0.1, start + time_limit - time.monotonic()))
      except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        codes[f] = None
        stopped.append(f)
    texts = {f: logs[f].read_text() for f in files}
  wall = time.monotonic() - start
  counts: dict[str, int] = {}
  parts = [f"# {shown}", f"# {len(files)} files side by side, time limit {time_limit:.0f} s", ""]
  for f in files:
    c, finished = _pytest_counts(texts[f])
    for key, v in c.items():
      counts[key] = counts.get(key, 0) + v
    parts += [f"# ---- {f}: exit code {codes[f]}"
              + ("" if finished else f", stopped at the time limit ({time_limit:.0f} s)"),
              texts[f]]
  (out / "pytest.txt").write_text("\n".join(parts) + "\n")
  text = "\n".join(texts.values())
  summary = ", ".join(f"{v} {key}" for key, v in counts.items() if v) or "no test finished"
  if stopped:
    summary += f" ({len(stopped)} of {len(files)} files stopped at the time limit)"
  backend = re.search(r"device_check: backend=(\S+) devices=(\d+) kind=(.*)", text)
  failures = [ln for ln in text.splitlines() if ln.startswith(("FAILED ", "ERROR "))]
  return {"command": shown, "files": files, "returncodes": codes, "timed_out": bool(stopped),
          "stopped": stopped, "wall_s": wall, "time_limit_s": time_limit, "summary": summary,
          "counts": counts, "backend": backend.group(1) if backend else None,
          "device": (f"{backend.group(3).strip()} x{backend.group(2)}" if backend else None),
          "failures": failures[:30]}


