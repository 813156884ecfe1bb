"""Loading, overriding and checking experiment configs: shared by every command.

A config file defines `get_config(arg: str) -> ml_collections.ConfigDict`; its
`trainer` field names the function that runs it ("module:function", called as
`fn(cfg, workdir, progress=bool)`, returning an `engine.TrainResult`).

Every check raises `ConfigError` with the flag, the bad value and a valid
example, before any data is read or any step runs.
"""

from __future__ import annotations

import argparse
import ast
import functools
import glob
import importlib
import importlib.util
import inspect
import math
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

# The repository root: configs and data named by relative paths are also looked up here,
# so every command works from any working directory.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ConfigError(ValueError):
  """A config value or a command-line flag is invalid; the message says which and the fix."""


class DataError(ConfigError):
  """A data file is damaged or does not fit the config; the message names the file."""


class MissingDataError(DataError, FileNotFoundError):
  """A data file is missing; the message says how to get it and which flag names its folder."""


def find_path(path: str) -> str:
  """`path` if it exists; else, for a relative path, the same path under the repository root."""
  if os.path.exists(path) or os.path.isabs(path):
    return path
  in_repo = os.path.join(REPO_ROOT, path)
  return in_repo if os.path.exists(in_repo) else path


def available_configs() -> list[str]:
  """The config files of every experiment, as paths relative to the repository root."""
  found = glob.glob(os.path.join(REPO_ROOT, "experiments", "*", "configs", "*.py"))
  return sorted(os.path.relpath(p, REPO_ROOT) for p in found
                if not p.endswith("__init__.py"))


def load_config(spec: str):
  """Loads "path/to/config.py:ARG" (or "package.module:ARG") and calls get_config(ARG).

  A relative path is read from the working directory, else from the repository root.
  """
  path, _, arg = spec.partition(":")
  if path.endswith(".py"):
    found = find_path(path)
    if not os.path.isfile(found):
      raise ConfigError(
          f"--config {spec!r}: no config file {path!r}. Configs live in each experiment's "
          f"configs/ folder: {', '.join(available_configs())}; e.g. "
          "--config 'experiments/cnn/configs/cnn_short.py:DN,fashion_mnist,600'.")
    mod_spec = importlib.util.spec_from_file_location("_experiment_config", found)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
  else:
    try:
      module = importlib.import_module(path)
    except ModuleNotFoundError as e:
      raise ConfigError(
          f"--config {spec!r}: no config module {path!r} ({e}); pass a file such as "
          "'experiments/cnn/configs/cnn.py:DN,cifar10' or a module such as "
          "'experiments.cnn.configs.cnn:DN,cifar10'.") from e
  try:
    return module.get_config(arg) if arg else module.get_config()
  except ConfigError:
    raise
  except ValueError as e:  # the configs check their argument with ValueError
    default = inspect.signature(module.get_config).parameters.get("arg")
    example = "" if default is None or default.default is inspect.Parameter.empty else (
        f" E.g. --config '{path}:{default.default}'.")
    raise ConfigError(f"--config {spec!r}: {e}{example}") from None


def apply_overrides(cfg, overrides: Iterable[str]):
  """Applies "a.b=value" overrides (values are Python literals, else strings).

  Raises:
    ConfigError: an override names no field, or gives a value of the wrong type.
  """
  for item in overrides:
    key, sep, raw = item.partition("=")
    if not sep or not key:
      raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set batch_size=100.")
    try:
      value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
      value = raw
    *parents, leaf = key.split(".")
    node, path = cfg, []
    for p in parents:
      if not _has(node, p) or not _is_mapping(node[p]):
        where = ".".join(path) or "the config"
        raise ConfigError(
            f"--set {item}: {where} has no section {p!r}; sections and fields there: "
            f"{', '.join(sorted(node))}.")
      node, path = node[p], [*path, p]
    if not _has(node, leaf):
      where = ".".join(path) or "the config"
      raise ConfigError(f"--set {item}: {where} has no field {leaf!r}; fields there: "
                        f"{', '.join(sorted(node))}.")
    old = node[leaf]
    try:
      node[leaf] = value
    except TypeError as e:
      raise ConfigError(
          f"--set {item}: {key} must be of type {type(old).__name__} (now {old!r}); {value!r} "
          f"is a {type(value).__name__}. E.g. --set {key}={old!r}.") from e
  return cfg


def _has(node, key: str) -> bool:
  try:
    return key in node
  except TypeError:
    return False


def _is_mapping(node) -> bool:
  return hasattr(node, "keys") and hasattr(node, "__getitem__")


def resolve_trainer(cfg) -> Callable[..., Any]:
  """The function named by `cfg.trainer` ("module:function")."""
  name = cfg.get("trainer") if _is_mapping(cfg) else None
  if not name or ":" not in str(name):
    raise ConfigError(
        f"the config has no trainer (got {name!r}); set `trainer` to 'module:function', e.g. "
        "'experiments.cnn.task:train_and_evaluate'.")
  module, _, fn = str(name).partition(":")
  return getattr(importlib.import_module(module), fn)


# ----------------------------------------------------------------------------- checks


def flag_for(key: str) -> str:
  """How a config field is set from the command line."""
  return f"--set {key}"


def check_int(value: Any, *, flag: str, minimum: int = 1, example: Any) -> int:
  """`value` as an int >= `minimum`, else a ConfigError naming `flag`."""
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    need = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    raise ConfigError(f"{flag}={value!r}: must be {need}; e.g. {flag}={example}.")
  return int(value)


def check_float(value: Any, *, flag: str, example: Any, minimum: float = 0.0,
                inclusive: bool = False, maximum: float | None = None) -> float:
  """`value` as a finite float > `minimum` (>= if `inclusive`), < `maximum`."""
  ok = (not isinstance(value, bool) and isinstance(value, (int, float))
        and math.isfinite(value) and (value >= minimum if inclusive else value > minimum)
        and (maximum is None or value < maximum))
  if not ok:
    lo = f">= {minimum}" if inclusive else f"> {minimum}"
    rng = f"{lo} and < {maximum}" if maximum is not None else lo
    raise ConfigError(f"{flag}={value!r}: must be a finite number {rng}; e.g. {flag}={example}.")
  return float(value)


def check_choice(value: Any, choices: Sequence[Any], *, flag: str) -> Any:
  if value not in choices:
    raise ConfigError(f"{flag}={value!r}: valid choices are {', '.join(map(str, choices))}; "
                      f"e.g. {flag}={choices[0]}.")
  return value


def check_dir(path: str | None, *, flag: str, example: str, must_exist: bool = True) -> None:
  """A folder to read (`must_exist`) or to write into (not an existing file)."""
  if path is None:
    return
  if must_exist and not os.path.isdir(path):
    what = "is a file" if os.path.isfile(path) else "does not exist"
    raise ConfigError(f"{flag}={path!r}: {what}; pass an existing folder, e.g. {flag}={example}.")
  if not must_exist:
    check_writable_dir(path, flag=flag, example=example)


def check_writable_dir(path: str | None, *, flag: str, example: str) -> None:
  """`path` (a folder to create or reuse) and its ancestors are not files, and it is writable."""
  if path is None:
    return
  p = os.path.abspath(path)
  while True:
    if os.path.exists(p):
      if not os.path.isdir(p):
        which = "is a file" if p == os.path.abspath(path) else f"lies under the file {p!r}"
        raise ConfigError(f"{flag}={path!r}: {which}, not a folder; pass a folder path, e.g. "
                          f"{flag}={example}.")
      if not os.access(p, os.W_OK):
        raise ConfigError(f"{flag}={path!r}: {p!r} is not writable; pass a folder you can "
                          f"write to, e.g. {flag}={example}.")
      return
    parent = os.path.dirname(p)
    if parent == p:
      return
    p = parent


def parse_ints(text: str, *, flag: str, example: str, count: int | None = None,
               minimum: int | None = None, choices: Sequence[int] | None = None) -> list[int]:
  """A comma-separated list of ints, checked; a ConfigError names the flag otherwise."""
  parts = [t.strip() for t in str(text).split(",")]
  try:
    values = [int(t) for t in parts]
  except ValueError:
    values = None
  bad = (values is None or not values or (count is not None and len(values) != count)
         or (minimum is not None and min(values) < minimum)
         or (choices is not None and any(v not in choices for v in values)))
  if bad:
    need = []
    if count is not None:
      need.append(f"{count} comma-separated integers")
    else:
      need.append("comma-separated integers")
    if choices is not None:
      need.append(f"each one of {', '.join(map(str, choices))}")
    if minimum is not None:
      need.append(f"each >= {minimum}")
    raise ConfigError(f"{flag} {text!r}: expected {', '.join(need)}; e.g. {flag} {example}.")
  return values


def arg_type(check: Callable[[str], Any]) -> Callable[[str], Any]:
  """An argparse `type=` from a check that raises ConfigError (argparse names the flag)."""

  @functools.wraps(check)
  def convert(text: str):
    try:
      return check(text)
    except ConfigError as e:
      raise argparse.ArgumentTypeError(str(e)) from None

  return convert


def positive_int(example: int) -> Callable[[str], int]:
  """argparse type: a positive integer (the error shows `example`)."""

  def check(text: str) -> int:
    try:
      value = int(text)
    except ValueError:
      value = None
    if value is None or value < 1:
      raise ConfigError(f"{text!r} is not a positive integer; e.g. {example}")
    return value

  check.__name__ = "positive integer"
  return arg_type(check)


def cli(main: Callable[[list[str] | None], Any]) -> None:
  """Runs a command's `main`; a ConfigError ends it with exit status 2 and its message."""
  try:
    main(None)
  except ConfigError as e:
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "experiments"
    print(f"{prog}: error: {e}", file=sys.stderr)
    sys.exit(2)
