"""``python -m benchmarks [--quick] [--out BENCHMARKS.md] [--no-models]``: the whole suite.

Prints the report and writes it as markdown. ``--quick`` (CI) uses tiny shapes and one
round so the command cannot rot; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import jax
import numpy as np

from benchmarks import before_after, cli, dropin, fast_variance, models, ops, reductions, report

# Library revisions before each round of optimizations (benchmarks/analysis.md).
BEFORE_REVS = {
    "23b0555": "before the fused centering and the hand-written JVP",
    "3cd37b4": "before grouped fields (group norm) and the guarded one-pass default",
    "fcc08ac": "before the core's redesign (guard removed; two-pass around a shift from the "
               "data; masks select)",
}


def _targets(found: dict) -> list[str]:
  lines = ["| target | measured (median, min-max) | met |", "|---|---|---|"]
  for name, value, ok in found["targets"]:
    lines.append(f"| {name} | {value} | {'yes' if ok else '**no**'} |")
  return lines


DROPIN_TEXT = [
    "Forward+backward (`grad` of `<y, w>` with respect to the input and the parameters), "
    "`python -m benchmarks.dropin`'s tables: `linen` is `divnorm.linen.<Module>` against "
    "`flax.linen.<Module>`, `nnx` is `divnorm.nnx.<Module>` against `flax.nnx.<Module>`, both "
    "at flax's default arguments (scale and bias on) and the table's `use_fast_variance`; "
    "`functional` is the preset with the same `fast_variance` against the flax module with "
    "scale and bias off. LN reduces (H, W, C) on the 4-D shapes and the last axis of 8x512x768; "
    "BN is training mode. The targets above are these ratios: at flax's own settings, divnorm "
    "takes at most flax's time."]


def _dropin_targets(rows, dtype_name: str, mode: str) -> list[tuple[str, str, bool]]:
  """One target per contender: every case of the table at most 1.0x flax (the worst named)."""
  out = []
  for contender in dict.fromkeys(r.contender for r in rows):
    mine = [r for r in rows if r.contender == contender]
    worst = max(mine, key=lambda r: r.ratio.median)
    met = sum(r.ratio.median <= 1.0 for r in mine)
    value = (f"{met} of {len(mine)} cases; worst {worst.ratio} "
             f"({worst.case} {'x'.join(map(str, worst.shape))})")
    out.append((f"{contender} fwd+bwd <= 1.0x flax, {dtype_name}, flax "
                f"`use_fast_variance={dropin.MODES[mode]}`", value, met == len(mine)))
  return out


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--quick", action="store_true", help="tiny shapes, one round (CI)")
  p.add_argument("--out", default="BENCHMARKS.md", help="markdown output ('' for none)")
  p.add_argument("--rounds", type=cli.positive_int(9), default=None,
                 help="interleaved rounds per group")
  p.add_argument("--no-models", action="store_true", help="skip the model-level steps")
  args = p.parse_args(argv)
  quick = args.quick
  rounds = args.rounds or (1 if quick else 9)
  target_s = 0.0 if quick else 0.03
  shapes = ops.QUICK_SHAPES if quick else ops.SHAPES
  t0 = time.time()
  cmd = "python -m benchmarks" + (" --quick" if quick else "") + (
      f" --rounds {args.rounds}" if args.rounds else "") + (" --no-models" if args.no_models else "")
  md = ["# divnorm benchmarks", "", f"Command: `{cmd}` (from the repository root).", ""]
  md += report.machine()
  md += [f"- Timings on a shared machine are noisy ({os.cpu_count()} cores visible here): "
         "absolute times mean little, so every comparison is a ratio of interleaved rounds "
         "(A B A B ..., each rotation of the order run forward, then reversed), given "
         "as the median and min-max over rounds.",
         f"- Devices: {', '.join(sorted({d.platform for d in jax.devices()}))}; the GPU "
         "tables are separate runs (`benchmarks/gpu_runs/`).",
         ""]
  targets = []
  body = ["## Op level", "",
          "divnorm's presets at their default (two-pass, exact at any offset) against flax at "
          "its default (one-pass): two algorithms, so these ratios are not the speed targets "
          "(like for like: \"Drop-in at flax's settings\" and \"Variance modes\"). "
          "jit forward, and forward+backward (`grad` of `<f(x), w>`, fixed random `w`). flax "
          "modules have scale and bias off, `epsilon = sigma**2` (0.01; DN sigma 0.5). "
          "`flax LN two-pass` is flax with `use_fast_variance=False`. BN is training mode "
          "(batch statistics and the running-average update). `paper conv` is the reference "
          "code's DN (channel mean, zero-padded ones-kernel convolution); `reduce_window 2-D` "
          "the same with one 2-D `reduce_window`. Bytes: XLA `cost_analysis()` bytes "
          "accessed / (input read + output written) of the compiled forward (divnorm's "
          "default, two-pass). Temp: compiled `memory_analysis()` temporary bytes of forward+backward.", ""]
  for label, (shape, width) in shapes.items():
    rows = ops.preset_rows(shape, width, rounds=rounds, target_s=target_s)
    by = {r.name: r for r in rows}
    body += [f"### {label} (DN window {width})", ""]
    body += report.preset_table(rows, int(np.prod(shape)) * 4)
    body += ["", *report.dn_table(rows), ""]
    q = by["DN"].bytes_ratio
    targets.append((f"DN fwd bytes <= 2.5x min, {label}", report.fwd_bytes(by["DN"]), q <= 2.5))
    if shape == (128, 32, 32, 64) or quick:
      q = by["DN"].fwdbwd["flax LN"]
      targets.append((f"DN {width}x{width} fwd+bwd <= 1.1x flax LN(H,W,C), {label}", str(q),
                      q.median <= 1.1))
      q = by["DN zeros"].fwdbwd["paper conv"]  # the paper's zero border: the same function
      speedup = f"{1 / q.median:.2f}x ({1 / q.high:.2f}-{1 / q.low:.2f})"
      targets.append((f"DN zeros fwd+bwd >= 5x faster than paper conv, {label}", speedup,
                      1 / q.median >= 5))
    print(f"[{time.time() - t0:.0f}s] {label}", file=sys.stderr)

  body += ["## Drop-in at flax's settings", "", *DROPIN_TEXT, ""]
  cases = [c for c in (dropin.QUICK_CASES if quick else dropin.CASES) if c[0] != "DN"]
  dropin_targets = []
  for dtype_name in ("float32",) if quick else dropin.DTYPES:  # quick: `dropin --quick` has both
    for mode in dropin.MODES:
      rows = dropin.measure(cases, dtype_name, mode, rounds=rounds, target_s=target_s,
                            with_nnx=True)
      body += dropin.table_lines(rows, dtype_name, mode)
      dropin_targets += _dropin_targets(rows, dtype_name, mode)
      print(f"[{time.time() - t0:.0f}s] drop-in {dtype_name} {mode}", file=sys.stderr)

  widths = (3, 5) if quick else (3, 5, 9, 15, 21, 31)
  wshape = (2, 8, 8, 8) if quick else (100, 32, 32, 32)
  scal = ops.window_scaling(wshape, widths, rounds=rounds, target_s=target_s)
  body += ["## Window width", "",
           f"Forward+backward on {'x'.join(map(str, wshape))}, time relative to width "
           f"{widths[0]} (all widths interleaved).", "",
           "| width | DN ms | DN | reduce_window 2-D |", "|---|---|---|---|"]
  for width in widths:
    body.append(f"| {width} | {scal['_ms'][width]:.1f} | {scal['DN'][width]} | "
                f"{scal['reduce_window 2-D'][width]} |")
  q = scal["DN"][widths[-1]]
  targets.append((f"window {widths[0]} -> {widths[-1]} <= 2x", str(q), q.median <= 2.0))
  print(f"[{time.time() - t0:.0f}s] window scaling", file=sys.stderr)

  batches = (2,) if quick else (8, 32, 128)
  hwc = (8, 8, 8) if quick else (32, 32, 64)
  sizes = ops.size_scaling(batches, hwc, rounds=rounds, target_s=target_s)
  body += ["", "## Tensor size", "",
           "Forward+backward against a copy of the same tensor (LN over (H, W, C), DN 5x5).",
           "", "| shape | MiB | copy ms | LN vs copy | flax LN vs copy | DN vs copy | "
           "DN vs flax LN |", "|---|---|---|---|---|---|---|"]
  for s in sizes:
    body.append(f"| {'x'.join(map(str, s['shape']))} | {s['mib']:.1f} | {s['ms']['copy']:.2f} "
                f"| {s['vs copy']['LN']} | {s['vs copy']['flax LN']} | {s['vs copy']['DN']} "
                f"| {s['DN vs flax LN']} |")
  print(f"[{time.time() - t0:.0f}s] size scaling", file=sys.stderr)

  rshape = (2, 8, 8, 8) if quick else (128, 32, 32, 64)
  red = reductions.rows(rshape, rounds=rounds, target_s=target_s)
  body += ["", "## XLA CPU reductions", "",
           f"The building blocks on {'x'.join(map(str, rshape))} (`p` a per-example "
           "[B,1,1,1] statistic), interleaved; ratio to `sum(x)`. Bytes: accessed / input.",
           "", "| reduction | ms | vs sum(x) | bytes / input |", "|---|---|---|---|"]
  body += [f"| {n} | {t:.2f} | {q} | {b:.2f} |" for n, t, q, b in red]
  print(f"[{time.time() - t0:.0f}s] reductions", file=sys.stderr)

  ba_shape, ba_width = ((2, 8, 8, 8), 3) if quick else ((128, 32, 32, 64), 5)
  body += ["", "## Library optimizations: before / after", ""]
  for rev, what in BEFORE_REVS.items():
    ba = before_after.rows(rev, ba_shape, ba_width, rounds=rounds, target_s=target_s)
    body += [f"### Against `{rev}` ({what})", "",
             f"`divnorm.normalize` (GN: `group_norm`) now against revision `{rev}` (read with "
             f"`git show`), on {'x'.join(map(str, ba_shape))}, interleaved; ratio = after / "
             "before.", ""]
    if ba is None:
      body.append("(git or the revision is not available here: skipped)")
    else:
      body += report.ratio_table(ba, "normalize")
    body.append("")
  print(f"[{time.time() - t0:.0f}s] before/after", file=sys.stderr)

  vshapes = [(2, 8, 8, 8)] if quick else fast_variance.SHAPES
  body += ["## Variance modes, like for like", "",
           "Forward+backward, interleaved: each `fast_variance` mode against flax.linen's "
           "same `use_fast_variance` mode, and the two defaults (divnorm two-pass, flax "
           "one-pass). DN is divisive norm 5x5 across channels against flax's LayerNorm over "
           "(H, W, C) in the same mode; its `fast_variance=True` (the one-pass column) takes "
           "the corrected two-pass, as its default does (windows in A). Flax's one-pass "
           "loses its digits at an offset of 1e4.", "",
           *fast_variance.HEADER]
  for vshape in vshapes:
    body += fast_variance.rows(vshape, rounds=rounds, target_s=target_s)
  body += fast_variance.rows(vshapes[-1], rounds=rounds, target_s=target_s, offset=1e4)
  body.append("")
  print(f"[{time.time() - t0:.0f}s] variance modes", file=sys.stderr)

  if not args.no_models:
    body += ["", "## Model level", ""]
    cnn_vars = ("DN*",) if quick else models.CNN_VARIANTS
    calls = models.cnn_steps(cnn_vars, batch_size=2 if quick else 100,
                             image_shape=(8, 8, 3) if quick else (32, 32, 3))
    cnn_ref = "BN" if "BN" in cnn_vars else cnn_vars[0]
    thr = models.throughput(calls, cnn_ref, rounds=rounds, target_s=target_s)
    body += ["CNN train step (`experiments.cnn.model.CNN`, SGD momentum, loss + L1 "
             f"penalties), batch {2 if quick else 100}, random inputs; throughput relative "
             f"to the {cnn_ref} CNN (higher is faster).", "",
             f"| variant | steps/s | throughput vs {cnn_ref} |", "|---|---|---|"]
    for name, r in thr.items():
      body.append(f"| {name} | {r['steps_per_s']:.1f} | {r['vs_ref']} |")
    if cnn_ref == "BN":
      q = thr["DN*"]["vs_ref"]
      targets.append(("CNN step DN* >= 0.85x BN throughput", str(q), q.median >= 0.85))
    print(f"[{time.time() - t0:.0f}s] CNN", file=sys.stderr)
    rnn_vars = ("dn_star",) if quick else models.RNN_VARIANTS
    rcalls = models.rnn_steps(rnn_vars, batch_size=2 if quick else 20,
                              num_steps=3 if quick else 20, hidden=16 if quick else 200,
                              vocab=50 if quick else 10000, dn_window=5 if quick else 61)
    rthr = models.throughput(rcalls, rnn_vars[0], rounds=rounds, target_s=target_s)
    body += ["", "2-layer LSTM LM train step (`experiments.rnn.model.RNNLanguageModel`), "
             f"batch {2 if quick else 20}, {3 if quick else 20} steps, hidden "
             f"{16 if quick else 200}, vocabulary {50 if quick else 10000}; throughput "
             f"relative to the {rnn_vars[0]} LSTM.", "",
             "| variant | steps/s | throughput vs baseline |", "|---|---|---|"]
    for name, r in rthr.items():
      body.append(f"| {name} | {r['steps_per_s']:.1f} | {r['vs_ref']} |")
    pipe = models.pipeline_rate(batch_size=100, seconds=0.2 if quick else 3.0)
    if pipe is not None:
      step_rate = thr[cnn_ref]["steps_per_s"]
      body += ["", f"Input pipeline (`experiments.data.batching.train_batches` + mean-image "
               f"preprocessing + `device_put`, Fashion-MNIST {pipe['shape']}, batch 100): "
               f"{pipe['batches_per_s']:.0f} batches/s, "
               f"{pipe['batches_per_s'] / step_rate:.1f}x the {cnn_ref} CNN's step rate."]
    print(f"[{time.time() - t0:.0f}s] models", file=sys.stderr)

  analysis = pathlib.Path(__file__).with_name("analysis.md")
  notes = analysis.read_text().splitlines() if analysis.exists() and not quick else []
  md += ["## Targets", "", *_targets({"targets": dropin_targets + targets}), "", *notes, "",
         *body, "", f"Total wall time {time.time() - t0:.0f} s."]
  text = "\n".join(md) + "\n"
  print(text)
  if args.out:
    with open(args.out, "w") as f:
      f.write(text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
