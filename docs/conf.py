"""Sphinx configuration of the divnorm documentation site.

    make docs        # sphinx-build -W --keep-going docs docs/_build/html (offline)

Three kinds of pages are made at build time into ``docs/generated/`` (ignored by git):
the API reference (one page per public module, from the names the module exports), the
notebooks (copies of ``notebooks/*.ipynb`` with their committed outputs; never executed
here) and the results and benchmark reports (copies of ``results/*/README.md`` and
``BENCHMARKS.md``, with their links pointing at the repository and their pictures copied).
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
GENERATED = DOCS / "generated"
sys.path.insert(0, str(ROOT))

# The repository's GitHub home. The organisation is a placeholder until the project has one;
# the README, the notebooks' Colab badges and this line use the same name.
GITHUB_ORG = "divnorm-org"
GITHUB = f"https://github.com/{GITHUB_ORG}/divnorm/blob/main"

project = "divnorm"
author = "the divnorm authors"
copyright = "2026, the divnorm authors"  # noqa: A001 (Sphinx's name)

extensions = [
  "myst_nb",
  "sphinx.ext.autodoc",
  "sphinx.ext.napoleon",
  "sphinx.ext.mathjax",
  "sphinx.ext.viewcode",
]

html_theme = "furo"
html_title = "divnorm"
exclude_patterns = ["_build", "README.md", "**/.ipynb_checkpoints"]

# Notebooks are rendered from their committed outputs; CI executes them in tests/.
nb_execution_mode = "off"
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

# Docstrings are Google style (Args:/Returns:/Raises:) with `name` for code.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
default_role = "code"
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_default_options = {"show-inheritance": False}

# Public modules, each with the title of its API page. A module named here that does not
# import is a build error: the API reference must cover every public module.
API_MODULES = {
  "divnorm": "divnorm: the functions",
  "divnorm.linen": "divnorm.linen: Flax linen modules",
  "divnorm.linen_extra": "divnorm.linen_extra: more linen modules",
  "divnorm.nnx": "divnorm.nnx: Flax NNX modules",
  "divnorm.equinox": "divnorm.equinox: equinox modules",
  "divnorm.haiku": "divnorm.haiku: haiku modules",
  "divnorm.mixtures": "divnorm.mixtures: batch statistics mixed with others",
  "divnorm.gdn": "divnorm.gdn: generalized divisive normalization",
  "divnorm.kernels": "divnorm.kernels: kernels and mixings of weighted fields",
  "divnorm.families": "divnorm.families: divisive normalizations of V1 models",
  "divnorm.local_response": "divnorm.local_response: local response normalization",
  "divnorm.weights": "divnorm.weights: weight normalizers",
  "divnorm.inputs": "divnorm.inputs: input transforms",
}
# Modules whose page may be absent (a module that is folded into another one).
OPTIONAL_API_MODULES = {"divnorm.linen_extra"}


def public_names(module) -> list[str]:
  """The names `module` exports: its ``__all__``, or else the public functions and classes
  defined in divnorm (re-exports from ``divnorm._src`` included), in source order."""
  names = getattr(module, "__all__", None)
  if names is not None:
    return list(names)
  found = []
  for name, value in vars(module).items():
    if name.startswith("_") or not (inspect.isfunction(value) or inspect.isclass(value)):
      continue
    if getattr(value, "__module__", "").startswith("divnorm"):
      found.append(name)
  return found


def _directive(modname: str, name: str, value) -> str:
  if inspect.ismodule(value):
    return ""
  if inspect.isclass(value):
    # A NamedTuple's fields and a Flax module's __call__ are its API.
    options = ["   :members:", "   :special-members: __call__"]
    if issubclass(value, tuple):
      options = ["   :members:"]
    return "\n".join([f".. autoclass:: {modname}.{name}", *options, ""])
  if callable(value):
    return f".. autofunction:: {modname}.{name}\n"
  return f".. autodata:: {modname}.{name}\n   :no-value:\n"


def write_api_pages() -> None:
  """One page per public module: its docstring, then every exported name.

  Each object is documented once, on the first page (in `API_MODULES` order) that exports
  it; a later module that re-exports it links there instead of repeating it.
  """
  out = GENERATED / "api"
  out.mkdir(parents=True, exist_ok=True)
  documented: dict[int, str] = {}
  pages = []
  for modname, title in API_MODULES.items():
    try:
      module = importlib.import_module(modname)
    except ModuleNotFoundError:
      if modname in OPTIONAL_API_MODULES:
        continue
      raise
    lines = [title, "=" * len(title), "", f".. automodule:: {modname}", ""]
    links = []
    for name in public_names(module):
      value = getattr(module, name)
      if inspect.ismodule(value):
        continue
      if id(value) in documented:
        links.append(f"- ``{modname}.{name}`` is :py:obj:`{documented[id(value)]}`")
        continue
      documented[id(value)] = f"{modname}.{name}"
      lines.append(_directive(modname, name, value))
    if links:
      lines += ["Documented on another page:", "", *links, ""]
    page = modname.replace(".", "_")
    (out / f"{page}.rst").write_text("\n".join(lines))
    pages.append(page)
  index = ["API reference", "=============", "",
           "Generated from the docstrings of every public module.", "",
           ".. toctree::", "   :maxdepth: 1", "", *[f"   {p}" for p in pages], ""]
  (out / "index.rst").write_text("\n".join(index))


_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def copy_markdown(src: Path, dst: Path, title: str | None = None, keep=()) -> None:
  """Copies a repository Markdown file into the site.

  Pictures it shows are copied beside it; other relative links point at the file in the
  repository, since the site does not hold the CSV/JSON/Markdown files they name.
  """
  text = src.read_text()

  def fix(match):
    bang, label, target = match.groups()
    if re.match(r"^[a-z]+:|^#", target):
      return match.group(0)
    path, _, anchor = target.partition("#")
    if path in keep:
      return match.group(0)
    resolved = (src.parent / path).resolve()
    if not resolved.exists():
      raise FileNotFoundError(f"{src}: the link {target!r} names a file that does not exist")
    rel = resolved.relative_to(ROOT).as_posix()
    if bang:
      image = dst.parent / "images" / rel.replace("/", "__")
      image.parent.mkdir(parents=True, exist_ok=True)
      shutil.copyfile(resolved, image)
      return f"![{label}](images/{image.name})"
    return f"[{label}]({GITHUB}/{rel}{'#' + anchor if anchor else ''})"

  text = _LINK.sub(fix, text)
  if title is not None:
    text = re.sub(r"\A# .*", f"# {title}", text, count=1)
  dst.parent.mkdir(parents=True, exist_ok=True)
  dst.write_text(text)


def copy_reports() -> None:
  out = GENERATED / "results"
  pages = []
  # The report of the converged study and its protocols first, then each experiment's report.
  for name in ("REPORT", "PROTOCOL", "PROTOCOL_RNN"):
    if (ROOT / "results" / f"{name}.md").exists():
      copy_markdown(ROOT / "results" / f"{name}.md", out / f"{name.lower()}.md")
      pages.append(name.lower())
  for readme in sorted(ROOT.glob("results/*/README.md")):
    name = readme.parent.name
    copy_markdown(readme, out / f"{name}.md")
    pages.append(name)
  if not pages:
    raise FileNotFoundError("no results/*/README.md to include")
  index = ["# Results", "",
           "What this project measured with the paper's experiments, read from the reports in",
           f"[`results/`]({GITHUB}/results). Each report names the command that made it.", "",
           "```{toctree}", ":maxdepth: 1", "", *pages, "```", ""]
  (out / "index.md").write_text("\n".join(index))
  copy_markdown(ROOT / "BENCHMARKS.md", GENERATED / "benchmarks.md")


def copy_notebooks() -> None:
  out = GENERATED / "notebooks"
  out.mkdir(parents=True, exist_ok=True)
  notebooks = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
  if not notebooks:
    raise FileNotFoundError("no notebooks/NN_*.ipynb to render")
  for nb in notebooks:
    shutil.copyfile(nb, out / nb.name)
  readme = ROOT / "notebooks" / "README.md"
  copy_markdown(readme, out / "index.md", keep={nb.name for nb in notebooks})
  with open(out / "index.md", "a") as f:
    f.write("\n```{toctree}\n:maxdepth: 1\n:hidden:\n\n")
    f.writelines(f"{nb.stem}\n" for nb in notebooks)
    f.write("```\n")


def generate() -> None:
  if GENERATED.exists():
    shutil.rmtree(GENERATED)
  GENERATED.mkdir()
  write_api_pages()
  copy_reports()
  copy_notebooks()


generate()
os.environ.setdefault("JAX_PLATFORMS", "cpu")


# --- Docstring rendering -------------------------------------------------------------------
# The docstrings are Google style read by napoleon, plus two Markdown habits this hook turns
# into reST: pipe tables (``| a | b |`` rows) become list tables, and indented ``name: text``
# option blocks under a line ending in ":" become bullet lists (continuation lines joined).

_ROW = re.compile(r"^(\s*)\|(.*)\|\s*$")
_RULE = re.compile(r"^\s*\|[\s:|-]+\|\s*$")
_ENTRY = re.compile(r"^(\s+)([A-Za-z_][\w ,/.*()]*): (\S.*)$")


def _cells(row: str) -> list[str]:
  inner = row.strip()[1:-1]
  return [c.strip() for c in re.split(r"\s\|\s", f" {inner} ")]


def _pipe_tables(lines: list[str]) -> list[str]:
  out, i = [], 0
  while i < len(lines):
    if i + 1 < len(lines) and _ROW.match(lines[i]) and _RULE.match(lines[i + 1]):
      indent = _ROW.match(lines[i]).group(1)
      rows = [_cells(lines[i])]
      i += 2
      while i < len(lines) and _ROW.match(lines[i]):
        rows.append(_cells(lines[i]))
        i += 1
      out += [f"{indent}.. list-table::", f"{indent}   :header-rows: 1", ""]
      for row in rows:
        for j, cell in enumerate(row):
          out.append(f"{indent}   {'* -' if j == 0 else '  -'} {cell or '..'}")
      out.append("")
    else:
      out.append(lines[i])
      i += 1
  return out


def _option_blocks(lines: list[str]) -> list[str]:
  out, i = [], 0
  while i < len(lines):
    line = lines[i]
    intro = next((p for p in reversed(out) if p.strip()), "")
    match = _ENTRY.match(line)
    intro_indent = len(intro) - len(intro.lstrip())
    if (match and intro.rstrip().endswith(":") and not intro.rstrip().endswith("::")
        and not intro.lstrip().startswith((":", "..")) and len(match.group(1)) > intro_indent):
      indent = match.group(1)
      if out and out[-1].strip():
        out.append("")
      while i < len(lines) and (m := _ENTRY.match(lines[i])) and m.group(1) == indent:
        text = m.group(3)
        i += 1
        while (i < len(lines) and lines[i].strip()
               and len(lines[i]) - len(lines[i].lstrip()) > len(indent)):
          text += " " + lines[i].strip()
          i += 1
        out.append(f"{indent}- **{m.group(2)}**: {text}")
      out.append("")
      continue
    out.append(line)
    i += 1
  return out


def _init_signature(app, what, name, obj, options, signature, return_annotation):
  """A class whose metaclass hides its ``__init__`` from `inspect` (flax.nnx's modules:
  autodoc would show ``(*args, **kwargs)``) is shown with ``__init__``'s arguments."""
  if what != "class" or not inspect.isclass(obj):
    return None
  try:
    shown = inspect.signature(obj)
  except (TypeError, ValueError):
    return None
  if [p.kind for p in shown.parameters.values()] != [inspect.Parameter.VAR_POSITIONAL,
                                                     inspect.Parameter.VAR_KEYWORD]:
    return None
  from sphinx.util.inspect import stringify_signature

  init = inspect.signature(obj.__init__)
  init = init.replace(parameters=list(init.parameters.values())[1:],
                      return_annotation=inspect.Signature.empty)
  return stringify_signature(init), None


def _process_docstring(app, what, name, obj, options, lines):
  lines[:] = _option_blocks(_pipe_tables(list(lines)))


napoleon_use_ivar = True


def setup(app):
  # After napoleon (priority 500), on the reST it produced.
  app.connect("autodoc-process-docstring", _process_docstring, priority=600)
  app.connect("autodoc-process-signature", _init_signature)
