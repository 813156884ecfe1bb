"""The experiments' layout: one folder per experiment, no import cycles, one trainer per config."""

import ast
import os
import pathlib

import pytest

from experiments import config

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "experiments"


def _module_name(path: pathlib.Path) -> str:
  parts = list(path.relative_to(ROOT).with_suffix("").parts)
  if parts[-1] == "__init__":
    parts.pop()
  return ".".join(parts)


def _modules() -> dict[str, pathlib.Path]:
  return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def import_graph() -> dict[str, set[str]]:
  """experiments module -> the experiments modules it imports (at any depth of its code).

  `from a.b import c` is an edge to `a.b.c` when that is a module, else to `a.b`;
  function-level imports count too (they form cycles all the same).
  """
  modules = _modules()
  graph: dict[str, set[str]] = {}
  for name, path in modules.items():
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      targets = []
      if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
          up = package.split(".")
          base = ".".join(up[:len(up) - node.level + 1] + ([base] if base else []))
        targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                   for a in node.names]
      edges |= {t for t in targets if t in modules and t != name}
    graph[name] = edges
  return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One import cycle as a list of modules (first == last), or None."""
  state: dict[str, int] = {}  # 1: on the current path, 2: done
  stack: list[str] = []

  def visit(node):
    state[node] = 1
    stack.append(node)
    for nxt in sorted(graph[node]):
      if state.get(nxt) == 1:
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state and (cycle := visit(nxt)):
        return cycle
    stack.pop()
    state[node] = 2
    return None

  for node in sorted(graph):
    if node not in state and (cycle := visit(node)):
      return cycle
  return None


def test_no_import_cycle_among_experiment_modules():
  graph = import_graph()
  assert len(graph) > 30 and "experiments.cnn.compare" in graph
  assert "experiments.cnn.reproduce" in graph["experiments.cnn.compare"]
  assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
  # The cycle this layout removed: main -> cnn.compare -> cnn.reproduce -> main.
  graph = {"main": {"compare"}, "compare": {"reproduce"}, "reproduce": {"main", "config"},
           "config": set()}
  cycle = find_cycle(graph)
  assert cycle[0] == cycle[-1] and set(cycle) == {"main", "compare", "reproduce"}
  assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_one_folder_per_experiment():
  for experiment in ("cnn", "rnn", "sr"):
    folder = PACKAGE / experiment
    for needed in ("__init__.py", "model.py", "task.py", "README.md", "configs/__init__.py"):
      assert (folder / needed).exists(), f"{folder / needed} is missing"
  for gone in ("train.py", "models", "configs"):  # the old spread-out layout
    assert not (PACKAGE / gone).exists()
  library = [p for p in (ROOT / "divnorm").rglob("*.py")
             if "import experiments" in p.read_text() or "from experiments" in p.read_text()]
  assert not library, f"the library imports the experiments: {library}"


@pytest.mark.parametrize("path", config.available_configs())
def test_every_config_names_its_own_experiments_trainer(path):
  experiment = pathlib.Path(path).parts[1]
  module = config.load_config(path).trainer.partition(":")[0]
  assert module == f"experiments.{experiment}.task", (path, module)
  assert callable(config.resolve_trainer(config.load_config(path)))


def test_config_paths_work_from_any_directory(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  cfg = config.load_config("experiments/rnn/configs/rnn_lm_quick.py:lstm,dn_star")
  assert cfg.trainer == "experiments.rnn.task:train_and_evaluate" and cfg.model.hidden_size == 128
  with pytest.raises(config.ConfigError, match="experiments/cnn/configs/cnn.py"):
    config.load_config("experiments/configs/cnn.py:DN,cifar10")  # the old place
  assert os.path.isdir(config.REPO_ROOT)
