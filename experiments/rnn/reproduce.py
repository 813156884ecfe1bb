r"""Trains every cell x variant and writes the perplexity table in the paper's layout.

  python -m experiments.rnn.reproduce                  # rnn_lm_quick, LSTM + tanh, offline
  python -m experiments.rnn.reproduce --config rnn_lm --cells lstm,tanh,relu \
      --variants all --dataset ptb --data_dir /path/to/ptb --out results/rnn/ptb

Writes `<out>/<name>.md` (the table, our test perplexities beside the
paper's PTB numbers, labelled) and `<out>/<name>.json` (every number, the
command and the machine), rewritten after each run so partial results
survive. Tokens/s of each variant is relative to the baseline cell of the
same run (steady-state steps only: the first log window, which includes
compilation, is dropped).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import pathlib
import sys
import time
from typing import Any

import numpy as np

from experiments import engine
from experiments.config import ConfigError, apply_overrides, check_dir, check_writable_dir
from experiments.rnn import data as text
from experiments.rnn import model as rnn
from experiments.rnn import task as rnn_task
from experiments.rnn.configs import rnn_lm


def parse_runs(cells: str, variants: str) -> tuple[list[str], list[str]]:
  """``--cells`` and ``--variants`` (``all``: every variant; the paper's labels, such as
  ``BN*``, name them too); a ConfigError names the flag otherwise."""
  cell_names = list(dict.fromkeys(c.strip().lower() for c in str(cells).split(",") if c.strip()))
  unknown = [c for c in cell_names if c not in rnn.CELLS]
  if unknown or not cell_names:
    raise ConfigError(f"--cells {cells!r}: {'unknown ' + repr(unknown[0]) if unknown else 'none'}"
                      f"; valid choices: {', '.join(rnn.CELLS)}. E.g. --cells lstm,tanh.")
  if str(variants).strip().lower() == "all":
    return cell_names, list(rnn.VARIANTS)
  try:
    names = [rnn.canonical_variant(v) for v in str(variants).split(",") if v.strip()]
  except ValueError as e:
    raise ConfigError(f"--variants {variants!r}: {e} E.g. --variants baseline,BN,LN*,DN*."
                      ) from None
  if not names:
    raise ConfigError(f"--variants {variants!r}: name at least one, or all; e.g. --variants DN.")
  return cell_names, list(dict.fromkeys(names))  # a name given twice runs once


def load_config(name: str, arg: str):
  """`get_config(arg)` of the config module `name` in experiments/rnn/configs."""
  try:
    module = importlib.import_module(f"experiments.rnn.configs.{name}")
  except ModuleNotFoundError:
    raise ConfigError(f"--config {name!r}: no such config in experiments/rnn/configs; use "
                      "rnn_lm (the paper's) or rnn_lm_quick; e.g. --config rnn_lm_quick.") from None
  return module.get_config(arg)


def steady_tokens_per_second(history: list[dict[str, Any]], bptt_steps: int) -> float:
  rows = [h for h in history if h["kind"] == "train" and "examples_per_second" in h]
  rows = rows[1:] if len(rows) > 1 else rows
  return float(np.mean([h["examples_per_second"] for h in rows]) * bptt_steps) if rows else 0.0


def run_one(cfg, corpus: text.Corpus, mesh) -> dict[str, Any]:
  """Trains one config; returns valid/test perplexity, tokens/s and timing."""
  ecfg = rnn_task.engine_config(cfg, corpus.train.size)
  t0 = time.perf_counter()
  out: dict[str, Any] = {"cell": cfg.cell, "variant": cfg.variant, "steps": ecfg["num_steps"],
                         "train_tokens_seen": ecfg["num_steps"] * cfg.batch_size * cfg.bptt_steps}
  try:
    result = rnn_task.train_and_evaluate(cfg, None, mesh=mesh, progress=False, corpus=corpus)
  except engine.NonFiniteLossError as e:
    out.update(status="diverged", error=str(e), seconds=time.perf_counter() - t0)
    return out
  last_train = [h for h in result.history if h["kind"] == "train"][-1]
  out.update(status="ok", valid_perplexity=result.eval_metrics["perplexity"],
             test_perplexity=result.eval_metrics["test_perplexity"],
             final_train_perplexity=last_train["perplexity"],
             tokens_per_second=steady_tokens_per_second(result.history, cfg.bptt_steps),
             seconds=time.perf_counter() - t0)
  return out


def _fmt(x: float | None, spec: str = ".1f") -> str:
  return "-" if x is None else format(x, spec)


def render_markdown(results: list[dict[str, Any]], meta: dict[str, Any],
                    speed: dict[tuple[str, str], float] | None = None) -> str:
  """The table; `speed` (cell, variant) -> tokens/s relative to baseline (from `speed.py`)
  replaces the relative speed computed from these runs' training logs."""
  cells = [c for c in rnn.CELLS if any(r["cell"] == c for r in results)]
  variants = [v for v in rnn.VARIANTS if any(r["variant"] == v for r in results)]
  by = {(r["cell"], r["variant"]): r for r in results}
  lines = [f"# RNN LM perplexity: {meta['dataset']} ({meta['config']})", ""]
  lines += [f"Command: `{meta['command']}`  ", f"Machine: {meta['machine']}  ",
            f"Date: {meta['date']}; {meta.get('wall_label', 'wall time')} "
            f"{meta['wall_seconds']:.0f} s.  ",
            f"Corpus: {meta['corpus_stats']}", ""]
  lines.append("Test perplexity (ours, on this corpus and schedule) beside the paper's PTB test "
               "perplexity (Tables 4 and 9, full schedule; **not comparable in absolute "
               "value**: different corpus and a shrunk schedule). Valid perplexity and tokens/s "
               "relative to the same cell's baseline in parentheses.")
  lines.append("")
  header = "| model | " + " | ".join(
      f"{rnn.CELL_LABELS[c]} ours test (valid; speed) | {rnn.CELL_LABELS[c]} paper PTB"
      for c in cells) + " |"
  lines += [header, "|---|" + "---|---|" * len(cells)]
  for v in variants:
    row = [rnn.VARIANT_LABELS[v]]
    for c in cells:
      r = by.get((c, v))
      paper = rnn_lm.PAPER_PTB_TEST_PERPLEXITY[c][v]
      if r is None:
        row += ["-", f"{paper:.1f}"]
        continue
      if r["status"] != "ok":
        row += [f"diverged ({r['status']})", f"{paper:.1f}"]
        continue
      base = by.get((c, "baseline"))
      if speed is not None:
        rel = speed.get((c, v))
      else:
        rel = (r["tokens_per_second"] / base["tokens_per_second"]
               if base and base.get("status") == "ok" and base["tokens_per_second"] else None)
      row += [f"**{r['test_perplexity']:.1f}** ({r['valid_perplexity']:.1f}; "
              f"{_fmt(rel, '.2f')}x)", f"{paper:.1f}"]
    lines.append("| " + " | ".join(row) + " |")
  if speed is not None:
    lines += ["", f"Relative speed: {meta.get('speed_source', 'speed run')} (one run, "
              "round-robin timing of the jitted train step)."]
  lines += ["", "Tokens/s (absolute, steady state, from each training run's log; runs "
            "that shared the machine with other jobs are not comparable to each other):", ""]
  lines += ["| model | " + " | ".join(rnn.CELL_LABELS[c] for c in cells) + " |",
            "|---|" + "---|" * len(cells)]
  for v in variants:
    row = [rnn.VARIANT_LABELS[v]]
    for c in cells:
      r = by.get((c, v))
      row.append(_fmt(r.get("tokens_per_second") if r else None, ".0f"))
    lines.append("| " + " | ".join(row) + " |")
  return "\n".join(lines) + "\n"


def machine() -> str:
  """The engine's machine description and the load average when the run started."""
  from experiments.engine.study import machine_description
  load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
  return f"{machine_description()}, load average at start {load:.1f} (shared machine)"


def merge(paths: list[str], *, speed_path: str | None, out: pathlib.Path, name: str
          ) -> dict[str, Any]:
  """One table from several runs' JSON files (and a `speed.py` JSON for relative speed)."""
  runs = [json.loads(pathlib.Path(p).read_text()) for p in paths]
  results = [r for run in runs for r in run["results"]]
  first = runs[0]["meta"]
  meta = {**first, "command": "; ".join(run["meta"]["command"] for run in runs),
          "wall_seconds": sum(run["meta"]["wall_seconds"] for run in runs),
          "date": ", ".join(run["meta"]["date"] for run in runs), "merged_from": paths,
          "wall_label": f"{len(runs)} runs (some in parallel), summed wall time"}
  speed = None
  if speed_path:
    sp = json.loads(pathlib.Path(speed_path).read_text())
    speed = {(r["cell"], r["variant"]): r["relative_to_baseline"] for r in sp["results"]}
    meta["speed_source"] = f"`{sp['meta']['command']}` ({sp['meta']['shape']})"
  out.mkdir(parents=True, exist_ok=True)
  (out / f"{name}.md").write_text(render_markdown(results, meta, speed))
  (out / f"{name}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
  return {"meta": meta, "results": results}


def main(argv: list[str] | None = None) -> dict[str, Any]:
  engine.reserve_cpu_threads()  # before JAX's CPU client exists (several CPU devices)
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--config", default="rnn_lm_quick", help="a config module of experiments/rnn/configs")
  p.add_argument("--cells", default="lstm,tanh")
  p.add_argument("--variants", default="baseline,bn,ln,ln_star,dn,dn_star",
                 help="comma list (as in VARIANTS or the paper's labels: BN*, LN-s) or 'all'")
  p.add_argument("--dataset", default="shakespeare", choices=("shakespeare", "ptb"))
  p.add_argument("--data_dir", default="", help="PTB files / Markdown plays directory")
  p.add_argument("--out", default="results/rnn")
  p.add_argument("--name", default="", help="output file stem (default: dataset_config)")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="config override, e.g. --set max_steps=100 (repeatable)")
  p.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                  help="render one table from earlier runs' JSON files instead of training")
  p.add_argument("--speed", default="", help="speed.py JSON for the relative-speed column")
  args = p.parse_args(argv)
  if args.merge:
    return merge(args.merge, speed_path=args.speed or None, out=pathlib.Path(args.out),
                 name=args.name or f"{args.dataset}_{args.config}")
  if args.data_dir:
    check_dir(args.data_dir, flag="--data_dir", example="/data/simple-examples/data")
  check_writable_dir(args.out, flag="--out", example="results/rnn")
  cells, variants = parse_runs(args.cells, args.variants)
  cfgs = []
  for c in cells:
    for v in variants:
      cfg = load_config(args.config, f"{c},{v},{args.dataset}")
      cfg.data.data_dir = args.data_dir
      cfgs.append(apply_overrides(cfg, args.set))
  mesh = engine.make_mesh()
  for cfg in cfgs:  # fail fast on a bad config before any reading or training
    rnn_task.validate(cfg, mesh)
  d = cfgs[0].data
  corpus = text.load_corpus(args.dataset, data_dir=args.data_dir or None,
                            vocab_size=int(d.vocab_size))
  name = args.name or f"{args.dataset}_{args.config}"
  out_dir = pathlib.Path(args.out)
  out_dir.mkdir(parents=True, exist_ok=True)
  meta = {"dataset": args.dataset, "config": args.config,
          "command": "python -m experiments.rnn.reproduce " + " ".join(
              argv if argv is not None else sys.argv[1:]),
          "machine": machine(), "date": datetime.datetime.now(datetime.UTC).isoformat(
              timespec="seconds"), "corpus_stats": corpus.stats(), "wall_seconds": 0.0,
          "overrides": args.set}
  results: list[dict[str, Any]] = []
  t0 = time.perf_counter()
  for cfg in cfgs:
    r = run_one(cfg, corpus, mesh)
    results.append(r)
    meta["wall_seconds"] = time.perf_counter() - t0
    print(json.dumps(r), flush=True)
    (out_dir / f"{name}.json").write_text(json.dumps(
        {"meta": meta, "results": results, "configs": [c.to_dict() for c in cfgs]},
        indent=1, default=str))
    (out_dir / f"{name}.md").write_text(render_markdown(results, meta))
  return {"meta": meta, "results": results}


if __name__ == "__main__":
  from experiments.config import cli
  cli(main)
