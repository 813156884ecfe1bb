r"""Training tokens/s of every cell x variant relative to the baseline cell, in one run.

  python -m experiments.rnn.speed --config rnn_lm_quick --cells lstm,tanh,relu --variants all

Times the engine's jitted train step (`engine.make_train_step`) on real
batches of the offline corpus. All steps are compiled first; then the
variants are timed round-robin (`--rounds` x `--steps` steps each) so that
load changes on a shared machine hit every variant alike. The fastest round
(the least disturbed by other jobs) gives the reported tokens/s; the median
round's is kept in the JSON. Writes `<out>/speed_<config>.md` and `.json`.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
from typing import Any

import jax
import numpy as np

from experiments import engine
from experiments.config import positive_int
from experiments.rnn import data as text
from experiments.rnn import model as rnn
from experiments.rnn import reproduce
from experiments.rnn import task as rnn_task


def main(argv: list[str] | None = None) -> dict[str, Any]:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--config", default="rnn_lm_quick")
  p.add_argument("--cells", default="lstm,tanh,relu")
  p.add_argument("--variants", default="all")
  p.add_argument("--steps", type=positive_int(10), default=10,
                 help="timed steps per variant per round")
  p.add_argument("--rounds", type=positive_int(3), default=3)
  p.add_argument("--out", default="results/rnn")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
  args = p.parse_args(argv)
  cells, variants = reproduce.parse_runs(args.cells, args.variants)
  cfgs = [reproduce.apply_overrides(reproduce.load_config(args.config, f"{c},{v}"), args.set)
          for c in cells for v in variants]
  corpus = text.load_corpus("shakespeare", vocab_size=int(cfgs[0].data.vocab_size))
  mesh = engine.make_mesh()
  runs = []
  for cfg in cfgs:  # compile everything first
    task = rnn_task.make_task(cfg, corpus)
    tx = engine.make_optimizer(rnn_task.engine_config(cfg, corpus.train.size)["optimizer"])
    batches = task.train_batches(0)
    first = engine.put_batch(next(batches), mesh)
    ts = engine.init_train_state(task, tx, first, seed=0, mesh=mesh)
    step = jax.jit(engine.make_train_step(task, tx))
    data = [engine.put_batch(next(batches), mesh) for _ in range(args.steps)]
    for b in data[:2]:
      ts, _ = step(ts, b)
    jax.block_until_ready(ts)
    runs.append({"cfg": cfg, "step": step, "ts": ts, "data": data, "times": []})
  for _ in range(args.rounds):
    for r in runs:
      ts = r["ts"]
      t0 = time.perf_counter()
      for b in r["data"]:
        ts, _ = r["step"](ts, b)
      jax.block_until_ready(ts)
      r["times"].append(time.perf_counter() - t0)
      r["ts"] = ts
  results = []
  for r in runs:
    cfg = r["cfg"]
    tokens = args.steps * cfg.batch_size * cfg.bptt_steps
    results.append({"cell": cfg.cell, "variant": cfg.variant,
                    "tokens_per_second": tokens / float(np.min(r["times"])),
                    "median_tokens_per_second": tokens / float(np.median(r["times"])),
                    "round_seconds": r["times"]})
  base = {r["cell"]: r["tokens_per_second"] for r in results if r["variant"] == "baseline"}
  for r in results:
    r["relative_to_baseline"] = (r["tokens_per_second"] / base[r["cell"]]
                                 if r["cell"] in base else None)
  meta = {"config": args.config, "machine": reproduce.machine(), "overrides": args.set,
          "command": "python -m experiments.rnn.speed " + " ".join(
              argv if argv is not None else sys.argv[1:]),
          "shape": f"batch {cfgs[0].batch_size} x {cfgs[0].bptt_steps} steps, hidden "
                   f"{cfgs[0].model.hidden_size}, vocab {corpus.vocab_size}"}
  lines = [f"# Training speed relative to the baseline cell ({args.config})", "",
           f"Command: `{meta['command']}`  ", f"Machine: {meta['machine']}  ",
           f"Shape: {meta['shape']}; fastest of {args.rounds} round-robin rounds of "
           f"{args.steps} steps.", "",
           "| model | " + " | ".join(f"{rnn.CELL_LABELS[c]} rel. (tokens/s)" for c in cells)
           + " |", "|---|" + "---|" * len(cells)]
  by = {(r["cell"], r["variant"]): r for r in results}
  for v in variants:
    row = [rnn.VARIANT_LABELS[v]]
    for c in cells:
      r = by[(c, v)]
      rel = r["relative_to_baseline"]
      row.append(f"{rel:.2f}x ({r['tokens_per_second']:.0f})" if rel is not None
                 else f"({r['tokens_per_second']:.0f})")
    lines.append("| " + " | ".join(row) + " |")
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  (out / f"speed_{args.config}.md").write_text("\n".join(lines) + "\n")
  (out / f"speed_{args.config}.json").write_text(json.dumps({"meta": meta, "results": results},
                                                            indent=1))
  print("\n".join(lines))
  return {"meta": meta, "results": results}


if __name__ == "__main__":
  from experiments.config import cli
  cli(main)
