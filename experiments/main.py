r"""Runs one experiment config: `python -m experiments.main --config FILE:ARG --workdir DIR`.

  python -m experiments.main --config 'experiments/configs/cnn.py:DN*,cifar10' --workdir runs/dn_star
  python -m experiments.main --config 'experiments/configs/cnn_short.py:BN,fashion_mnist,500' \
      --workdir runs/bn_fm --set batch_size=50 --set optimizer.learning_rate=0.01

  python -m experiments.main compare [--num_steps 400 ...]   # the CNN comparison demo
                                                               # (experiments.cnn.compare)

Re-running the same command resumes from the last checkpoint in --workdir.
Multi-host: run the same command once per process with --num_processes N
--process_id i --coordinator HOST:PORT (add --cpu_collectives gloo on CPUs;
--num_processes -1 on a TPU pod).

The config's `trainer` field ("module:function") names the training function,
called as `fn(cfg, workdir)`.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import json
import os
import sys


def load_config(spec: str):
  """Loads "path/to/config.py:ARG" (or "package.module:ARG") and calls get_config(ARG)."""
  path, _, arg = spec.partition(":")
  if path.endswith(".py"):
    if not os.path.exists(path):
      raise FileNotFoundError(f"config file {path} does not exist.")
    mod_spec = importlib.util.spec_from_file_location("_experiment_config", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
  else:
    module = importlib.import_module(path)
  return module.get_config(arg) if arg else module.get_config()


def apply_overrides(cfg, overrides):
  """Applies "a.b=value" overrides; values are Python literals, else strings."""
  for item in overrides:
    key, sep, raw = item.partition("=")
    if not sep:
      raise ValueError(f"--set {item!r}: expected key=value.")
    try:
      value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
      value = raw
    *parents, leaf = key.split(".")
    node = cfg
    for p in parents:
      node = node[p]
    if leaf not in node:
      raise KeyError(f"--set {key}: no such config field; fields here: {', '.join(sorted(node))}.")
    node[leaf] = value
  return cfg


def resolve(name: str):
  module, _, fn = name.partition(":")
  return getattr(importlib.import_module(module), fn)


def main(argv=None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if argv[:1] == ["compare"]:
    from experiments.cnn import compare
    return compare.main(argv[1:])
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--config", required=True, help="FILE.py:ARG, e.g. experiments/configs/cnn.py:DN,cifar10")
  p.add_argument("--workdir", default=None, help="checkpoints + metrics; re-run to resume")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="override a config field (repeatable)")
  p.add_argument("--num_processes", type=int, default=None)
  p.add_argument("--process_id", type=int, default=None)
  p.add_argument("--coordinator", default=None, help="HOST:PORT of process 0")
  p.add_argument("--cpu_collectives", default=None, help='e.g. "gloo" for multi-process CPU runs')
  p.add_argument("--no_progress", action="store_true")
  args = p.parse_args(argv)

  from experiments import engine  # imports jax: after argument parsing
  engine.initialize_distributed(coordinator_address=args.coordinator,
                                num_processes=args.num_processes, process_id=args.process_id,
                                cpu_collectives=args.cpu_collectives)
  cfg = apply_overrides(load_config(args.config), args.set)
  trainer = resolve(cfg.get("trainer", "experiments.train:train_and_evaluate"))
  result = trainer(cfg, args.workdir, progress=not args.no_progress)
  import jax
  if jax.process_index() == 0:
    print(json.dumps({"config": args.config, "step": int(jax.device_get(result.train_state.step)),
                      "eval": result.eval_metrics}))
  return 0


if __name__ == "__main__":
  sys.exit(main())
