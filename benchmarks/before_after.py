"""The library's optimizations, measured: `divnorm.normalize` now against a past revision.

The past `divnorm` package is read from git (``git archive REV divnorm``) and its
`normalize` run beside the current one on the same inputs, interleaved.
"""

from __future__ import annotations

import functools
import importlib
import io
import pathlib
import re
import subprocess
import sys
import tarfile
import tempfile
import types

import divnorm
from benchmarks import contenders as C
from benchmarks import ops

ROOT = pathlib.Path(__file__).resolve().parent.parent


def load_normalize(rev: str) -> types.SimpleNamespace | None:
  """`divnorm.normalize` as of git revision `rev`, or None without git or that revision.

  The revision's whole `divnorm` package is extracted (``git archive``) into a temporary
  folder under the name ``divnorm_<rev>`` (its own imports renamed to match), so every
  past layout loads beside the current one.
  """
  name = f"divnorm_{rev}"
  if name not in sys.modules:
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="divnorm_before_"))
    try:
      tar = subprocess.run(["git", "archive", rev, "divnorm"], cwd=ROOT, capture_output=True,
                           check=True).stdout
    except (OSError, subprocess.CalledProcessError):
      return None
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
      archive.extractall(tmp, filter="data")
    (tmp / "divnorm").rename(tmp / name)
    for path in (tmp / name).rglob("*.py"):
      text = path.read_text()
      text = re.sub(r"\bdivnorm([._])", lambda m: f"{name}{m.group(1)}", text)
      text = re.sub(r"\bfrom divnorm import", f"from {name} import", text)
      text = re.sub(r"\bimport divnorm\b", f"import {name}", text)
      path.write_text(text)
    sys.path.insert(0, str(tmp))
    importlib.import_module(name)
  return types.SimpleNamespace(normalize=sys.modules[name].normalize)


def _grouped(normalize, shape, groups: int):
  """Group norm through `normalize` on the ``[..., G, C/G]`` view (how `rev`s did it)."""
  split = shape[:-1] + (groups, shape[-1] // groups)

  def f(x):
    return normalize(x.reshape(split), (1, 2, 4), sigma=C.SIGMA).reshape(shape)
  return f


def rows(rev: str, shape, width: int, *, rounds: int, target_s: float) -> list[ops.Row] | None:
  """LN over (H, W, C), IN, GN and DN width x width, now ("after") and at `rev` ("before").

  Each runs with its revision's defaults (now: ``fast_variance=None``). GN after is
  `divnorm.group_norm` (a grouped field in x's layout).
  """
  old = load_normalize(rev)
  if old is None:
    return None
  dn_field = {3: None, 1: width, 2: width}
  groups = 8 if shape[-1] % 8 == 0 else 1
  fns = {
      "LN after": functools.partial(divnorm.normalize, summation=(1, 2, 3), sigma=C.SIGMA),
      "LN before": functools.partial(old.normalize, summation=(1, 2, 3), sigma=C.SIGMA),
      "IN after": functools.partial(divnorm.normalize, summation=(1, 2), sigma=C.SIGMA),
      "IN before": functools.partial(old.normalize, summation=(1, 2), sigma=C.SIGMA),
      "DN after": functools.partial(divnorm.normalize, summation=dn_field, sigma=C.DN_SIGMA),
      "GN after": functools.partial(divnorm.group_norm, num_groups=groups, sigma=C.SIGMA),
      "GN before": _grouped(old.normalize, shape, groups),
      "DN before": functools.partial(old.normalize, summation=dn_field, sigma=C.DN_SIGMA),
  }
  fns["DN after"] = fns.pop("DN after")  # keep the pairs adjacent in the table
  fns["DN before"] = fns.pop("DN before")
  refs = {f"{k} after": [f"{k} before"] for k in ("LN", "IN", "GN", "DN")}
  return ops.measure(fns, refs, shape, rounds=rounds, target_s=target_s)
