r"""Runs one experiment config through the trainer it names.

  python -m experiments.main --config 'experiments/cnn/configs/cnn.py:DN*,cifar10' --workdir runs/dn
  python -m experiments.main --config 'experiments/rnn/configs/rnn_lm_quick.py:lstm,dn_star' \
      --workdir runs/lm --set max_steps=200
  python -m experiments.main --config 'experiments/sr/configs/sr_srcnn_fast.py:DN*,3,800' \
      --workdir runs/sr_dn_x3
  python -m experiments.main compare [--num_steps 400 ...]   # the main job: experiments.cnn.compare

Re-running the same command resumes from the newest checkpoint in --workdir that
restores; a workdir refuses a different config. Multi-host: the same command once
per process with --num_processes N --process_id i --coordinator HOST:PORT (add
--cpu_collectives gloo on CPUs; --num_processes -1 on a TPU pod).
"""

from __future__ import annotations

import argparse
import json
import sys

from experiments import config


def main(argv=None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if argv[:1] == ["compare"]:  # the documented name of the main job
    from experiments.cnn import compare
    return compare.main(argv[1:])
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--config", required=True,
                 help="FILE.py:ARG, e.g. experiments/cnn/configs/cnn.py:DN,cifar10")
  p.add_argument("--workdir", default=None, help="checkpoints + metrics; re-run to resume")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="override a config field (repeatable)")
  p.add_argument("--num_processes", type=int, default=None)
  p.add_argument("--process_id", type=int, default=None)
  p.add_argument("--coordinator", default=None, help="HOST:PORT of process 0")
  p.add_argument("--cpu_collectives", default=None, help='e.g. "gloo" for multi-process CPU runs')
  p.add_argument("--no_progress", action="store_true")
  args = p.parse_args(argv)

  cfg = config.apply_overrides(config.load_config(args.config), args.set)
  trainer = config.resolve_trainer(cfg)
  from experiments import engine  # after the config: a bad one fails before JAX starts
  engine.reserve_cpu_threads()  # before JAX's CPU client exists (several CPU devices)
  engine.initialize_distributed(coordinator_address=args.coordinator,
                                num_processes=args.num_processes, process_id=args.process_id,
                                cpu_collectives=args.cpu_collectives)
  result = trainer(cfg, args.workdir, progress=not args.no_progress)
  import jax
  if jax.process_index() == 0:
    print(json.dumps({"config": args.config, "step": int(jax.device_get(result.train_state.step)),
                      "eval": result.eval_metrics}))
  return 0


if __name__ == "__main__":
  config.cli(main)
