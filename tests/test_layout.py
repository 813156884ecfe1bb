"""The package's architecture: no import cycles, public modules that only re-export, a
functional core without Flax, and every Flax module reachable from its public namespace."""

import ast
import importlib
import inspect
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "divnorm"


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, pathlib.Path]:
  return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: pathlib.Path, modules) -> set[str]:
  """The divnorm modules `path` imports anywhere (top level, functions, lazy imports)."""
  name = _module_name(path)
  package = name if path.name == "__init__.py" else name.rpartition(".")[0]
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      targets = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] +
                        ([base] if base else []))
      # `from pkg import mod` imports a module; `from mod import name` imports mod.
      targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                 for a in node.names]
    else:
      continue
    for target in targets:
      while target and target not in modules:
        target = target.rpartition(".")[0]
      if target and target != name:
        found.add(target)
  return found


def test_no_import_cycles():
  modules = _modules()
  # Importing a package runs its __init__, which this graph does not count as an edge of
  # its submodules (divnorm/__init__.py re-exports them; they never import it).
  graph = {m: {t for t in _imports(p, modules) if t != "divnorm"} for m, p in modules.items()}
  done, stack = set(), []

  def visit(m):
    if m in stack:
      cycle = stack[stack.index(m):] + [m]
      pytest.fail("import cycle: " + " -> ".join(cycle))
    if m in done:
      return
    stack.append(m)
    for t in sorted(graph[m]):
      visit(t)
    stack.pop()
    done.add(m)

  for m in sorted(graph):
    visit(m)


def _public_modules():
  return sorted(p for p in PACKAGE.glob("*.py"))


@pytest.mark.parametrize("path", _public_modules(), ids=lambda p: p.name)
def test_public_modules_only_re_export(path):
  """Outside divnorm/_src a module holds imports (for type checkers too), ``__all__`` and a
  lazy ``__getattr__`` (with its ``__dir__``): the implementation is private, in
  divnorm/_src."""
  tree = ast.parse(path.read_text())
  allowed_assignments = {"__all__", "__version__", "_LAZY_SUBMODULES"}
  for node in tree.body:
    if isinstance(node, ast.Import | ast.ImportFrom):
      continue
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
      continue  # the docstring
    if isinstance(node, ast.Assign) and all(
        isinstance(t, ast.Name) and t.id in allowed_assignments for t in node.targets):
      continue
    if isinstance(node, ast.FunctionDef) and node.name in ("__getattr__", "__dir__"):
      continue
    if (isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")
        and not node.orelse and all(isinstance(n, ast.ImportFrom) for n in node.body)):
      continue  # the lazy submodules, named for type checkers
    pytest.fail(f"{path.name}:{node.lineno} defines something ({type(node).__name__}); "
                f"implement it in divnorm/_src and re-export it.")
  module = importlib.import_module(_module_name(path))
  for name in getattr(module, "__all__", ()):
    value = getattr(module, name)
    if inspect.isfunction(value) or inspect.isclass(value) or inspect.ismodule(value):
      origin = value.__name__ if inspect.ismodule(value) else value.__module__
      assert origin.startswith("divnorm"), (path.name, name, origin)


def test_import_divnorm_imports_no_flax_equinox_or_haiku():
  """The functional API needs jax and numpy only; flax, equinox and haiku (optional extras)
  are imported by `divnorm.linen`/`divnorm.nnx`, `divnorm.equinox` and `divnorm.haiku`
  alone."""
  code = ("import sys, divnorm; divnorm.normalize; divnorm.gdn.gdn; divnorm.inputs.zca; "
          "divnorm.local_response.local_response_norm; divnorm.mixtures.batch_renorm; "
          "divnorm.weights.weight_norm; lazy = {'linen', 'linen_extra', 'nnx', 'equinox', "
          "'haiku'}; assert lazy <= set(dir(divnorm)), 'dir() lists the lazy submodules'; "
          "found = [m for m in sys.modules if m.split('.')[0] in ('flax', 'equinox', 'haiku')]; "
          "assert not found, found; divnorm.linen, divnorm.nnx; "
          "assert not [m for m in sys.modules if m.startswith('equinox')], 'equinox imported'; "
          "divnorm.equinox.LayerNorm; assert 'equinox' in sys.modules; "
          "assert 'haiku' not in sys.modules; divnorm.haiku.LayerNorm; "
          "assert 'haiku' in sys.modules")
  subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True)


@pytest.mark.parametrize("extra", ["equinox", "haiku"])
def test_divnorm_imports_without_an_extra_installed(tmp_path, extra):
  """`pip install divnorm` without the equinox or haiku extra: everything but
  divnorm.equinox (divnorm.haiku) works, and that one says how to install it."""
  (tmp_path / f"{extra}.py").write_text(f"raise ModuleNotFoundError(\"No module named "
                                        f"'{extra}'\", name='{extra}')\n")
  code = (f"import divnorm, divnorm.linen, divnorm.nnx\n"
          f"try:\n  import divnorm.{extra}\nexcept ModuleNotFoundError as e:\n"
          f"  assert 'divnorm[{extra}]' in str(e), e\nelse:\n  raise AssertionError('imported')")
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
  subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env,
                 capture_output=True)


def test_normalize_is_a_function_not_a_module():
  import divnorm

  assert inspect.isfunction(divnorm.normalize)
  assert importlib.util.find_spec("divnorm.normalize") is None


@pytest.mark.loose_promotion
@pytest.mark.parametrize("api,impls,base", [
    ("divnorm.linen", ("divnorm._src.linen", "divnorm._src.linen_extra"), "flax.linen:Module"),
    ("divnorm.nnx", ("divnorm._src.nnx", "divnorm._src.nnx_extra"), "flax.nnx:Module"),
    ("divnorm.equinox", ("divnorm._src.equinox", "divnorm._src.equinox_extra"),
     "equinox:Module"),
    ("divnorm.haiku", ("divnorm._src.haiku", "divnorm._src.haiku_extra",
                       "divnorm._src.haiku_families", "divnorm._src.haiku_weights"),
     "haiku:Module"),
])
def test_every_flax_module_is_importable_from_its_namespace(api, impls, base):
  base_module, base_name = base.split(":")
  base_cls = getattr(importlib.import_module(base_module), base_name)
  public = importlib.import_module(api)
  classes = [(name, cls) for impl in impls
             for name, cls in vars(importlib.import_module(impl)).items()
             if inspect.isclass(cls) and issubclass(cls, base_cls) and not name.startswith("_")
             and cls.__module__ == impl]
  assert classes
  for name, cls in classes:
    assert getattr(public, name, None) is cls, f"{api}.{name} missing"
