r"""Tables and figures of the converged CNN study (results/PROTOCOL.md) from its result folders.

  python -m experiments.cnn.study report

Reads ``<results>/<job>/result.json`` (and metrics.jsonl, first_layer_samples.npz) of
whatever jobs have finished and writes, in ``<results>``:

- ``summary.md``: the main table (test accuracy, mean ± std over seeds, the 95%
  interval, the convergence check, the paper's CIFAR-10 numbers labelled as the
  paper's), the named comparisons with Welch tests and Holm's adjustment, Table 10
  beside the paper's, learned sigma, small batches and the full training split;
- ``summary.json``: the same numbers, for `make demo` and the tests;
- ``curves.png``, ``table10_joint_histograms.png``, ``sigma.png``, ``small_batch.png``,
  ``full_long.png``.

Missing jobs are shown as not run; nothing is filled in.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from experiments import seed_stats
from experiments.cnn import protocol as study
from experiments.cnn.analysis import PAPER_TABLE10, joint_histogram
from experiments.cnn.paper import PAPER_ACCURACY
from experiments.engine import read_metrics
from experiments.engine import study as runner

# The comparisons named in results/PROTOCOL.md before the runs.
ACCURACY_COMPARISONS = (("DN*", "DN"), ("LN*", "LN"), ("BN*", "BN"), ("DN*", "baseline"),
                        ("DN", "baseline"), ("DN", "BN"), ("DN", "LN"))
TABLE10_COMPARISONS = (("BN*", "BN"), ("LN*", "LN"), ("DN*", "DN"))
# Added after the runs started (PROTOCOL.md, deviation 1): against the baseline trained on the
# normalized networks' schedule. Reported unadjusted, outside the fixed family.
LONG_BASELINE = "baseline (1,200 steps)"
POST_HOC_COMPARISONS = tuple((v, LONG_BASELINE) for v in ("BN", "BN*", "LN*", "DN", "DN*"))
# PROTOCOL.md, 2026-12-03: the added families (Welch, Holm within each).
DN_SIGMA0 = "DN (sigma0)"
SIGMA_ALONE_MODELS = ("BN", "BN-s", "BN*", "LN", "LN-s", "LN*", DN_SIGMA0, "DN", "DN*")
SIGMA_ALONE_COMPARISONS = (("BN-s", "BN"), ("LN-s", "LN"), ("BN*", "BN-s"), ("LN*", "LN-s"),
                           ("DN", DN_SIGMA0))
SMALL_BATCH_COMPARISONS = (("DN", "BN"), ("LN", "BN"), ("DN*", "BN"), ("DN*", "DN"))
FULL_COMPARISONS = (("BN*", "BN"), ("DN*", "DN"), ("DN", "BN"))


def load_results(results_dir: str) -> list[dict]:
  """Every finished job's result.json under `results_dir` (failed runs included)."""
  return list(runner.load_results(results_dir).values())


def label(r: dict) -> str:
  """A row's model name: its variant and tag, e.g. "DN (sigma0)"."""
  return r["variant"] + (f" ({r['tag']})" if r.get("tag") else "")


def _group(rows, plan: str, **match) -> dict[str, list[dict]]:
  out: dict[str, list[dict]] = {}
  for r in rows:
    if r["plan"] == plan and "failed" not in r and all(r[k] == v for k, v in match.items()):
      out.setdefault(label(r), []).append(r)
  return out


def collapsed(r: dict) -> bool:
  """A run that ended at chance: test accuracy <= 0.11 and training CE >= 2.29 (ln 10 = 2.303)."""
  return bool(r["test_accuracy"] <= 0.11 and r["train_cross_entropy"] >= 2.29)


def converged(r: dict) -> bool:
  """The protocol's check: the last two tenths' mean training CE differ by <= 5%."""
  return study.converged(r)


def _comparisons(groups, pairs, key: str) -> list[dict]:
  tests = []
  for a, b in pairs:
    if a in groups and b in groups:
      t = seed_stats.welch([r[key] for r in groups[a]], [r[key] for r in groups[b]])
      tests.append({"a": a, "b": b, "key": key, **t})
  adjusted = seed_stats.holm([t["p"] for t in tests])
  for t, p in zip(tests, adjusted, strict=True):
    t["p_holm"] = p
    t["significant"] = bool(not math.isnan(p) and p < 0.05)
  return tests


def _table_entry(runs: list[dict]) -> dict:
  trained = [r["test_accuracy"] for r in runs if not collapsed(r)]
  return {
      "seeds": sorted(r["seed"] for r in runs),
      "collapsed": sorted(r["seed"] for r in runs if collapsed(r)),
      "test_accuracy": seed_stats.summarize([r["test_accuracy"] for r in runs]),
      "test_accuracy_trained": seed_stats.summarize(trained) if trained else None,
      "train_accuracy": seed_stats.summarize([r["train_accuracy"] for r in runs]),
      "train_cross_entropy": seed_stats.summarize([r["train_cross_entropy"] for r in runs]),
      "converged": [converged(r) for r in runs],
      "correlation": seed_stats.summarize([r["table10_correlation"] for r in runs]),
      "mutual_information": seed_stats.summarize([r["table10_mutual_information"] for r in runs]),
      "steps": runs[0]["num_steps"]}


def on_report_seeds(groups: dict[str, list[dict]], models, always=study.SEEDS
                    ) -> tuple[dict[str, list[dict]], list[str]]:
  """`groups` on the seeds a report uses (PROTOCOL.md's extensions of 2026-12-07 and -08):
  `always` (seeds 0-2) and each later seed complete for all `models`; and the names of the
  runs of the other seeds, left out."""
  keep = set(always) | set(complete_seeds(groups, models))
  left_out = sorted(r["name"] for runs in groups.values() for r in runs if r["seed"] not in keep)
  return {v: [r for r in runs if r["seed"] in keep] for v, runs in groups.items()}, left_out


def table_groups(rows) -> tuple[dict[str, list[dict]], list[str]]:
  """The table's runs by model on its report seeds (`on_report_seeds`), and those left out."""
  return on_report_seeds(_group(rows, "table"), study.TABLE_VARIANTS)


def _first_seeds(groups: dict[str, list[dict]]) -> dict[str, list[dict]]:
  """`groups` on seeds 0-2: the verdicts as first reported, shown beside those of more seeds."""
  return {v: [r for r in runs if r["seed"] in study.SEEDS] for v, runs in groups.items()}


def _seeds_of(groups: dict[str, list[dict]]) -> list[int]:
  return sorted({r["seed"] for runs in groups.values() for r in runs})


def _table10_family(groups) -> list[dict]:
  """Table 10's family of 6: correlation and MI, with vs without L1, Holm over the 6."""
  tests = (_comparisons(groups, TABLE10_COMPARISONS, "table10_correlation")
           + _comparisons(groups, TABLE10_COMPARISONS, "table10_mutual_information"))
  for t, p in zip(tests, seed_stats.holm([t["p"] for t in tests]), strict=True):
    t["p_holm"], t["significant"] = p, bool(not math.isnan(p) and p < 0.05)
  return tests


def summarize(rows: list[dict]) -> dict:
  """The study's numbers: per plan and variant, mean/std/ci95 over seeds, and the tests."""
  table, left_out = table_groups(rows)
  first = _first_seeds(table)  # also for the comparisons against baseline_long (seeds 0-2)
  long = _group(rows, "baseline_long").get("baseline")
  out = {"table": {}, "accuracy_tests": [], "table10_tests": [], "post_hoc_tests": [],
         "sigma": {}, "table_seeds": _seeds_of(table), "table_left_out": left_out,
         "failed": [r["name"] for r in rows if "failed" in r]}
  for v in study.TABLE_VARIANTS:
    if table.get(v):
      out["table"][v] = _table_entry(table[v])
  if long:
    out["table"][LONG_BASELINE] = _table_entry(long)
  out["accuracy_tests"] = _comparisons(table, ACCURACY_COMPARISONS, "test_accuracy")
  out["table10_tests"] = _table10_family(table)
  if out["table_seeds"] != _seeds_of(first):  # the verdicts of seeds 0-2, beside
    out["accuracy_tests_first_seeds"] = _comparisons(first, ACCURACY_COMPARISONS,
                                                     "test_accuracy")
    out["table10_tests_first_seeds"] = _table10_family(first)
  if long:
    for a, b in POST_HOC_COMPARISONS:
      if a in first:
        t = seed_stats.welch([r["test_accuracy"] for r in first[a]],
                             [r["test_accuracy"] for r in long])
        out["post_hoc_tests"].append({"a": a, "b": b, "key": "test_accuracy", **t})
  for v, runs in _group(rows, "sigma").items():
    layers = sorted(runs[0]["sigmas"])
    out["sigma"][v] = {
        "seeds": sorted(r["seed"] for r in runs),
        "test_accuracy": seed_stats.summarize([r["test_accuracy"] for r in runs]),
        "converged": [converged(r) for r in runs],
        "final_sigma": {k: seed_stats.summarize([r["sigmas"][k] for r in runs]) for k in layers}}
    # Against the table's runs of the same model with sigma fixed, on the same seeds.
    seeds = {r["seed"] for r in runs}
    pairs = {"vs_fixed_sigma": {"learned": runs,
                                "fixed": [r for r in table.get(v, []) if r["seed"] in seeds]}}
    if seeds - set(study.SEEDS):
      pairs["vs_fixed_sigma_first_seeds"] = _first_seeds(pairs["vs_fixed_sigma"])
    for key, pair in pairs.items():
      if pair["fixed"]:
        out["sigma"][v][key] = seed_stats.welch([r["test_accuracy"] for r in pair["learned"]],
                                                [r["test_accuracy"] for r in pair["fixed"]])
  out["sigma_alone"] = _sigma_alone(rows, table)
  out["small_batch"], out["small_batch_tests"], out["small_batch_seeds"] = _small_batch(rows)
  out["full_long"], out["full_long_tests"], out["full_long_gap_tests"] = _full_long(rows)
  machines = sorted({r.get("machine", "") for r in rows if r.get("machine")})
  out["machine"] = machines
  return out


def _entry(runs: list[dict]) -> dict:
  """Seeds, test/train accuracy and cross entropy over seeds, the gap, the plateau check."""
  runs = sorted(runs, key=lambda r: r["seed"])
  gap = [r["train_accuracy"] - r["test_accuracy"] for r in runs]
  return {"seeds": [r["seed"] for r in runs],
          "test_accuracy": seed_stats.summarize([r["test_accuracy"] for r in runs]),
          "test_accuracy_by_seed": [r["test_accuracy"] for r in runs],
          "train_accuracy": seed_stats.summarize([r["train_accuracy"] for r in runs]),
          "train_cross_entropy": seed_stats.summarize([r["train_cross_entropy"] for r in runs]),
          "gap": seed_stats.summarize(gap), "gap_by_seed": gap,
          "correlation": seed_stats.summarize([r["table10_correlation"] for r in runs]),
          "converged": [converged(r) for r in runs],
          "failed_plateau": [r["name"] for r in runs if not converged(r)],
          "steps": runs[0]["num_steps"], "learning_rate": runs[0]["learning_rate"]}


def _family(groups: dict[str, list[dict]], pairs, key: str = "test_accuracy",
            value=None) -> list[dict]:
  """Welch's test of each pair that has data, Holm-adjusted over those tests."""
  value = value or (lambda r: r[key])
  tests = []
  for a, b in pairs:
    if groups.get(a) and groups.get(b):
      t = seed_stats.welch([value(r) for r in groups[a]], [value(r) for r in groups[b]])
      tests.append({"a": a, "b": b, "key": key, "n": [len(groups[a]), len(groups[b])], **t})
  for t, p in zip(tests, seed_stats.holm([t["p"] for t in tests]), strict=True):
    t["p_holm"], t["significant"] = p, bool(not math.isnan(p) and p < 0.05)
  return tests


def _sigma_alone(rows, table) -> dict:
  """The 9 models of the sigma/L1 decomposition (the table's six from plan `table`) on seeds
  0-2 and each later seed complete for all nine (PROTOCOL.md, 2026-12-08), the sigma-alone
  runs of other seeds named as left out; the family on seeds 0-2 beside, where there are more."""
  alone = _group(rows, "sigma_alone")
  groups = {**{v: table[v] for v in ("BN", "BN*", "LN", "LN*", "DN", "DN*") if v in table},
            **alone}
  groups, left_out = on_report_seeds(groups, SIGMA_ALONE_MODELS)
  out = {"models": {v: _entry(groups[v]) for v in SIGMA_ALONE_MODELS if groups.get(v)},
         "tests": _family(groups, SIGMA_ALONE_COMPARISONS) if alone else [],
         "dn_star_vs_dn": _family(groups, (("DN*", "DN"),)),
         "seeds": _seeds_of(groups), "left_out": left_out}
  if alone and set(out["seeds"]) - set(study.SEEDS):
    out["tests_first_seeds"] = _family(_first_seeds(groups), SIGMA_ALONE_COMPARISONS)
  return out


def _small_batch(rows) -> tuple[dict, list[dict], dict]:
  """Per model and batch size the entry over seeds; the family of 12 comparisons; the seeds,
  the runs left out and the family on seeds 0-2 where there are more (PROTOCOL.md,
  2026-12-08: seeds 0-2 and each later seed complete for all twelve cells)."""
  runs = [r for r in rows if r["plan"] == "small_batch" and "failed" not in r]
  cells: dict[str, list[dict]] = {}
  for r in runs:
    cells.setdefault(f"{r['variant']} b{r['batch_size']}", []).append(r)
  cells, left_out = on_report_seeds(cells, [
      f"{v} b{b}" for v in study.SMALL_BATCH_VARIANTS for b in study.SMALL_BATCHES])
  runs = [r for rs in cells.values() for r in rs]
  seeds = {"seeds": _seeds_of(cells), "left_out": left_out}
  if set(seeds["seeds"]) - set(study.SEEDS):
    seeds["tests_first_seeds"] = _small_batch_family([r for r in runs
                                                      if r["seed"] in study.SEEDS])
  out = {}
  for v, by_variant in _group(runs, "small_batch").items():
    by_batch: dict[int, list[dict]] = {}
    for r in by_variant:
      by_batch.setdefault(r["batch_size"], []).append(r)
    out[v] = {str(b): _entry(rs) for b, rs in sorted(by_batch.items())}
  return out, _small_batch_family(runs), seeds


def _small_batch_family(rows) -> list[dict]:
  """The 12 comparisons (4 at each batch size), Holm over the 12."""
  tests = []
  for b in study.SMALL_BATCHES:
    groups = {v: [r for r in runs if r["batch_size"] == b]
              for v, runs in _group(rows, "small_batch").items()}
    for t in _family(groups, SMALL_BATCH_COMPARISONS):
      tests.append({**t, "batch_size": b})
  for t, p in zip(tests, seed_stats.holm([t["p"] for t in tests]), strict=True):
    t["p_holm"], t["significant"] = p, bool(not math.isnan(p) and p < 0.05)  # one family
  return tests


def complete_seeds(groups: dict[str, list[dict]], variants) -> list[int]:
  """The seeds that have a run of every one of `variants` (PROTOCOL.md, 2026-12-07: the full
  split's tests use these alone, so that no model is compared on seeds the others lack)."""
  seeds = [{r["seed"] for r in groups.get(v, [])} for v in variants]
  return sorted(set.intersection(*seeds)) if seeds else []


def _full_long(rows) -> tuple[dict, list[dict], list[dict]]:
  groups, left_out = on_report_seeds(_group(rows, "full_long"), study.FULL_VARIANTS, always=())
  entries = {v: _entry(groups[v]) for v in study.FULL_VARIANTS if groups.get(v)}
  for e in entries.values():
    e["left_out"] = left_out
  gap = _family(groups, (("BN*", "BN"), ("DN*", "DN")), key="gap",
                value=lambda r: r["train_accuracy"] - r["test_accuracy"])
  return entries, _family(groups, FULL_COMPARISONS), gap


def _fmt(s, digits=4):
  return seed_stats.format_mean(s, digits)


def _p(x):
  return "n/a" if x is None or math.isnan(x) else f"{x:.3f}"


def render(summary: dict) -> str:
  """summary.md."""
  lines = ["# The converged CNN study: results", "",
           "Protocol: [results/PROTOCOL.md](../../PROTOCOL.md) (fixed before the runs). "
           "Data: Fashion-MNIST, the first 5,000 training images, the full 10,000-image test "
           "split (plan `full_long`: all 60,000 training images). Every number is our measurement "
           "except the columns marked *paper*, which are Ren et al. (ICLR 2017) on CIFAR-10 "
           "(Tables 3/7 and 10), copied for reference.", "",
           "Command: `python -m experiments.cnn.study run` (resumable), then "
           "`python -m experiments.cnn.study report`.", "",
           "Machine: " + "; ".join(summary["machine"] or ["n/a"]) +
           " (one single-threaded worker process per core).", ""]
  t = summary["table"]
  lines += ["## Test accuracy (mean ± std over seeds)", "",
            "| Model | seeds | steps | test accuracy | 95% t-interval of the mean | collapsed | "
            "without collapsed | train accuracy (subset) | train CE (subset) | converged | "
            "*paper CIFAR-10* |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
  for v in (*study.TABLE_VARIANTS, LONG_BASELINE):
    paper = PAPER_ACCURACY.get(v, (math.nan,))[0]
    paper_text = "" if math.isnan(paper) else f"{paper:.4f}"
    if v not in t:
      if v != LONG_BASELINE:
        lines.append(f"| {v} | not run | | | | | | | | | {paper_text} |")
      continue
    r = t[v]
    ta = r["test_accuracy"]
    ci = ("n/a" if math.isnan(ta["ci95"])
          else f"[{ta['mean'] - ta['ci95']:.4f}, {ta['mean'] + ta['ci95']:.4f}]")
    conv = f"{sum(r['converged'])}/{len(r['converged'])}"
    gone = (f"{len(r['collapsed'])} (seed {', '.join(map(str, r['collapsed']))})"
            if r["collapsed"] else "0")
    kept = _fmt(r["test_accuracy_trained"]) if r["test_accuracy_trained"] else "n/a"
    lines.append(f"| {v} | {len(r['seeds'])} | {r['steps']} | {_fmt(ta)} | {ci} | {gone} | "
                 f"{kept} | "
                 f"{_fmt(r['train_accuracy'])} | {_fmt(r['train_cross_entropy'], 3)} | {conv} | "
                 f"{paper_text} |")
  lines += ["", _seeds_note(summary),
            "", "95% t-interval of the mean: mean ± t(0.975, n-1) · std / √n over the seeds. "
            "With few seeds and a bimodal sample (a collapsed seed beside trained ones) it is wide "
            "and can leave [0, 1]; it describes the spread of the seeds, not a range of "
            "accuracies.",
            "Collapsed: runs that ended at chance (test accuracy <= 0.11, training cross "
            "entropy >= 2.29 = ln 10); they stay in *test accuracy* and the tests below (the "
            "protocol excludes nothing) and are left out only in *without collapsed*.",
            "Converged: runs whose mean minibatch training cross entropy over the last "
            "tenth of the steps is within 5% of the tenth before it. "
            f"*{LONG_BASELINE}*: the baseline on the normalized networks' schedule, added after "
            "the runs started (PROTOCOL.md, deviation 1); the paper's baseline schedule is the "
            "row *baseline*.", "",
            "## Named comparisons of test accuracy (Welch t-test, Holm-adjusted over the 7)", "",
            "The paper (Tables 3/7) has A above B in each: *holds* = A higher at p (Holm) < "
            "0.05, *does not hold* = A lower at p (Holm) < 0.05, *not established* = neither.",
            "",
            "| comparison | difference of means | p | p (Holm) | verdict |"
            + _first_seeds_head(summary, "accuracy_tests"),
            "|---|---|---|---|---|" + _first_seeds_head(summary, "accuracy_tests", rule=True)]
  accuracy_paper = lambda c: PAPER_ACCURACY[c["a"]][0] - PAPER_ACCURACY[c["b"]][0]
  for c in summary["accuracy_tests"]:
    lines.append(f"| {c['a']} - {c['b']} | {c['diff']:+.4f} | {_p(c['p'])} | "
                 f"{_p(c['p_holm'])} | {_verdict(c, accuracy_paper(c))} |"
                 + _first_seeds_cells(summary, "accuracy_tests", c, accuracy_paper))
  if summary["post_hoc_tests"]:
    lines += ["", f"Added after the fact, against *{LONG_BASELINE}* (Welch, unadjusted, not "
              "part of the family above):", "",
              "| comparison | difference of means | p |", "|---|---|---|"]
    for c in summary["post_hoc_tests"]:
      lines.append(f"| {c['a']} - {c['b']} | {c['diff']:+.4f} | {_p(c['p'])} |")
  lines += ["", "## Table 10: first-layer pre-normalization statistics", "",
            "Mean |Pearson correlation| and mutual information (nats, 20x20 joint histograms) "
            "over the 496 pairs of the first convolution's 32 channels, on the first 1,000 "
            "test images (binning in `experiments/cnn/analysis.py`).", "",
            "| Model | correlation | MI | *paper correlation* | *paper MI* |",
            "|---|---|---|---|---|"]
  for v in (*study.TABLE_VARIANTS, LONG_BASELINE):
    pc, pm = PAPER_TABLE10.get(v, (math.nan, math.nan))
    paper = "| |" if math.isnan(pc) else f"| {pc:.4f} | {pm:.4f} |"
    if v in t:
      lines.append(f"| {v} | {_fmt(t[v]['correlation'], 3)} | "
                   f"{_fmt(t[v]['mutual_information'], 3)} {paper}")
  lines += ["", "With vs without L1 (Welch, Holm-adjusted over these 6). *holds* = our "
            "difference has the sign of the paper's (Table 10, CIFAR-10) at p (Holm) < 0.05, "
            "*does not hold* = the opposite sign at p (Holm) < 0.05, *not established* = "
            "neither.", "",
            "| comparison | statistic | difference | p | p (Holm) | verdict |"
            + _first_seeds_head(summary, "table10_tests"),
            "|---|---|---|---|---|---|" + _first_seeds_head(summary, "table10_tests", rule=True)]
  for c in summary["table10_tests"]:
    stat = "correlation" if c["key"] == "table10_correlation" else "MI"
    lines.append(f"| {c['a']} - {c['b']} | {stat} | {c['diff']:+.4f} | {_p(c['p'])} | "
                 f"{_p(c['p_holm'])} | {_verdict(c, _paper_table10_diff(c))} |"
                 + _first_seeds_cells(summary, "table10_tests", c, _paper_table10_diff))
  if summary["sigma"]:
    lines += ["", "## Learned sigma", "",
              "| Model | seeds | test accuracy | vs fixed sigma (diff, p) | final sigma per layer |",
              "|---|---|---|---|---|"]
    for v, r in summary["sigma"].items():
      vs, vs_first = r.get("vs_fixed_sigma"), r.get("vs_fixed_sigma_first_seeds")
      vs_text = f"{vs['diff']:+.4f}, p {_p(vs['p'])}" if vs else "n/a"
      if vs_first:
        vs_text += f" (seeds 0-2: {vs_first['diff']:+.4f}, p {_p(vs_first['p'])})"
      sig = ", ".join(f"{k.removeprefix('sigma_')}: {_fmt(s, 3)}"
                      for k, s in r["final_sigma"].items())
      lines.append(f"| {v} learned sigma (from 0.5) | {len(r['seeds'])} | "
                   f"{_fmt(r['test_accuracy'])} | {vs_text} | {sig} |")
    lines += ["", "![sigma per layer](sigma.png)"]
  lines += _render_sigma_alone(summary["sigma_alone"])
  lines += _render_small_batch(summary["small_batch"], summary["small_batch_tests"],
                                summary.get("small_batch_seeds", {}))
  lines += _render_full_long(summary["full_long"], summary["full_long_tests"],
                             summary["full_long_gap_tests"])
  if summary["failed"]:
    lines += ["", runner.failed_note(summary["failed"], "experiments.cnn.study")]
  lines += ["", "Figures: [curves.png](curves.png) (training cross entropy, mean over seeds), "
            "[table10_joint_histograms.png](table10_joint_histograms.png)."]
  return "\n".join(lines) + "\n"


def _seeds_note(summary: dict) -> str:
  """Which seeds the table, its two families and Table 10 use, and the runs left out."""
  seeds = ", ".join(map(str, summary.get("table_seeds", [])))
  note = (f"Seeds of the seven models, their two families of tests and Table 10: {seeds} "
          "(PROTOCOL.md, 2026-12-07: seeds 0-2 and each later seed complete for all seven "
          f"models). *{LONG_BASELINE}* has seeds 0-2, and the comparisons against it use "
          "the table's seeds 0-2; learned sigma and sigma alone name their seeds below.")
  if summary.get("table_left_out"):
    note += (" Runs left out (their seed is not complete for all seven models): "
             + ", ".join(summary["table_left_out"]) + ".")
  return note


def _first_seeds_head(summary: dict, family: str, rule: bool = False) -> str:
  """The columns of seeds 0-2's verdicts, where the family has more seeds (PROTOCOL.md,
  2026-12-07: the 3-seed verdict beside every new one)."""
  if f"{family}_first_seeds" not in summary:
    return ""
  return "---|---|---|" if rule else " seeds 0-2: difference | p (Holm) | verdict |"


def _first_seeds_cells(summary: dict, family: str, test: dict, paper_diff) -> str:
  first = summary.get(f"{family}_first_seeds")
  if first is None:
    return ""
  c = next(t for t in first if (t["a"], t["b"], t["key"]) == (test["a"], test["b"], test["key"]))
  return f" {c['diff']:+.4f} | {_p(c['p_holm'])} | {_verdict(c, paper_diff(c))} |"


def _verdict(test: dict, paper_diff: float) -> str:
  """The paper's direction (the sign of its A - B) against a Holm-adjusted test of ours."""
  if not test["significant"]:
    return "not established"
  a_higher = test["diff"] > 0
  return (("holds" if a_higher == (paper_diff > 0) else "does not hold")
          + (" (A higher)" if a_higher else " (A lower)"))


def _paper_table10_diff(test: dict) -> float:
  column = 0 if test["key"] == "table10_correlation" else 1
  return PAPER_TABLE10[test["a"]][column] - PAPER_TABLE10[test["b"]][column]


def _tests_table(tests: list[dict], *, batch: bool = False) -> list[str]:
  head = "| comparison | " + ("batch | " if batch else "") + "n | difference of means | p | " \
         "p (Holm) | verdict |"
  lines = [head, "|---|" + ("---|" if batch else "") + "---|---|---|---|---|"]
  for t in tests:
    verdict = ("holds (A higher)" if t["diff"] > 0 else "holds (A lower)") if t.get(
        "significant") else "not established"
    lines.append(f"| {t['a']} - {t['b']} | " + (f"{t['batch_size']} | " if batch else "")
                 + f"{t['n'][0]}, {t['n'][1]} | {t['diff']:+.4f} | {_p(t['p'])} | "
                 f"{_p(t.get('p_holm'))} | {verdict} |")
  return lines


def _plateau(entry: dict) -> str:
  ok = sum(entry["converged"])
  return f"{ok}/{len(entry['converged'])}"


def _render_sigma_alone(s: dict) -> list[str]:
  if not s["models"]:
    return []
  lines = ["", "## Sigma alone (PROTOCOL.md, 2026-12-03)", "",
           "BN-s and LN-s are the paper's (sigma without L1); *DN (sigma0)* is the table's DN "
           "with sigma 0. BN, BN*, LN, LN*, DN and DN* are the `table` plan's runs. Same "
           "subset and schedule (1,200 steps). Seeds: "
           + ", ".join(map(str, s.get("seeds", []))) + " (PROTOCOL.md, 2026-12-08: seeds 0-2 "
           "and each later seed complete for all nine models)."
           + (" Runs left out (their seed is not complete for all nine models): "
              + ", ".join(s["left_out"]) + "." if s.get("left_out") else ""), "",
           "| Model | sigma | L1 | seeds | test accuracy | train accuracy | train - test | "
           "correlation (Table 10) | plateau |", "|---|---|---|---|---|---|---|---|---|"]
  settings = {"BN": ("0.01", "-"), "BN-s": ("1.0", "-"), "BN*": ("1.0", "0.005"),
              "LN": ("0.01", "-"), "LN-s": ("0.5", "-"), "LN*": ("0.5", "0.005"),
              DN_SIGMA0: ("0", "-"), "DN": ("0.5", "-"), "DN*": ("0.5", "0.005")}
  for v in SIGMA_ALONE_MODELS:
    e = s["models"].get(v)
    sig, l1 = settings[v]
    if e is None:
      lines.append(f"| {v} | {sig} | {l1} | not run | | | | | |")
      continue
    lines.append(f"| {v} | {sig} | {l1} | {len(e['seeds'])} | {_fmt(e['test_accuracy'])} | "
                 f"{_fmt(e['train_accuracy'])} | {_fmt(e['gap'], 3)} | "
                 f"{_fmt(e['correlation'], 3)} | {_plateau(e)} |")
  lines += ["", "Named comparisons (Welch, Holm over these 5; DN* - DN, L1 given sigma for DN, "
            "is in the first family above and repeated here unadjusted):", ""]
  lines += _tests_table(s["tests"])
  for t in s["dn_star_vs_dn"]:
    lines.append(f"| DN* - DN (first family) | {t['n'][0]}, {t['n'][1]} | {t['diff']:+.4f} | "
                 f"{_p(t['p'])} | see above | |")
  if s.get("tests_first_seeds"):
    lines += ["", "The same family on seeds 0-2, as first reported (Holm over the 5):", ""]
    lines += _tests_table(s["tests_first_seeds"])
  return lines


def _render_small_batch(sb: dict, tests: list[dict], seeds: dict) -> list[str]:
  if not sb:
    return []
  batches = sorted({int(b) for r in sb.values() for b in r})
  lines = ["", "## Small batches (30,000 training examples each; lr = 1e-2 x batch / 100)", "",
           "Test accuracy, mean ± std over seeds [each seed]; *plateau*: runs that pass the "
           "convergence check (last two tenths' training cross entropy within 5%). Seeds: "
           + ", ".join(map(str, seeds.get("seeds", []))) + " (PROTOCOL.md, 2026-12-08: seeds "
           "0-2 and each later seed complete for all twelve cells)."
           + (" Runs left out (their seed is not complete for all twelve cells): "
              + ", ".join(seeds["left_out"]) + "." if seeds.get("left_out") else ""), "",
           "| Model | " + " | ".join(f"batch {b} | plateau" for b in batches) + " |",
           "|---|" + "---|---|" * len(batches)]
  for v in study.SMALL_BATCH_VARIANTS:
    if v not in sb:
      continue
    cells = []
    for b in batches:
      e = sb[v].get(str(b))
      if e is None:
        cells += ["not run", ""]
        continue
      cells += [f"{_fmt(e['test_accuracy'])} [" + ", ".join(
          f"{a:.4f}" for a in e["test_accuracy_by_seed"]) + "]", _plateau(e)]
    lines.append(f"| {v} | " + " | ".join(cells) + " |")
  failed = [n for r in sb.values() for e in r.values() for n in e["failed_plateau"]]
  lines += ["", "Runs that fail the plateau check (kept in every number): "
            + (", ".join(sorted(failed)) if failed else "none") + ".", "",
            "Named comparisons (Welch, Holm over the 12):", ""]
  lines += _tests_table(tests, batch=True)
  if seeds.get("tests_first_seeds"):
    lines += ["", "The same family on seeds 0-2, as first reported (Holm over the 12):", ""]
    lines += _tests_table(seeds["tests_first_seeds"], batch=True)
  return lines + ["", "![small batches](small_batch.png)"]


def _render_full_long(full: dict, tests: list[dict], gap_tests: list[dict]) -> list[str]:
  if not full:
    return []
  lines = ["", "## The full training split (60,000 images, 10 epochs; PROTOCOL.md, 2026-12-03 "
           "and 2026-12-07)",
           "", "| Model | seeds | steps | test accuracy | train accuracy (60k) | train - test | "
           "train CE | plateau |", "|---|---|---|---|---|---|---|---|"]
  for v in study.FULL_VARIANTS:
    e = full.get(v)
    if e is None:
      lines.append(f"| {v} | not run | | | | | | |")
      continue
    lines.append(f"| {v} | {len(e['seeds'])} | {e['steps']} | {_fmt(e['test_accuracy'])} | "
                 f"{_fmt(e['train_accuracy'])} | {_fmt(e['gap'], 4)} | "
                 f"{_fmt(e['train_cross_entropy'], 3)} | {_plateau(e)} |")
  left_out = next(iter(full.values()))["left_out"]
  lines += ["", "Runs left out (their seed is not complete for all four models; PROTOCOL.md, "
            "2026-12-07): " + (", ".join(left_out) if left_out else "none") + "."]
  lines += ["", "Test accuracy (Welch, Holm over these 3):", ""] + _tests_table(tests)
  lines += ["", "The train-test gap, with vs without L1 (Welch, Holm over these 2, outside the "
            "family):", ""] + _tests_table(gap_tests)
  return lines + ["", "![full split](full_long.png)"]


def _plt():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def plot_curves(results_dir: str, rows: list[dict], path: str) -> None:
  """Training cross entropy per variant of the table (mean over seeds)."""
  plt = _plt()
  fig, ax = plt.subplots(figsize=(7, 4))
  for v, runs in table_groups(rows)[0].items():
    curves = [read_metrics(os.path.join(results_dir, r["name"]), "train") for r in runs]
    steps = [c["step"] for c in curves[0]]
    n = min(len(c) for c in curves)
    ce = np.mean([[row["cross_entropy"] for row in c[:n]] for c in curves], axis=0)
    ax.plot(steps[:n], ce, label=f"{v} (n={len(runs)})")
  ax.set(xlabel="step", ylabel="training cross entropy (minibatch)", yscale="log",
         title="5,000-image subset, mean over seeds")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_joint_histograms(results_dir: str, rows: list[dict], path: str) -> None:
  """Per variant (seed 0): joint histograms of its most correlated and its median channel pair."""
  found = []
  for v in study.TABLE_VARIANTS:
    for r in rows:
      p = os.path.join(results_dir, r["name"], "first_layer_samples.npz")
      if r["plan"] == "table" and r["variant"] == v and r["seed"] == 0 and os.path.exists(p):
        found.append((v, np.load(p)["samples"].astype(np.float64)))
  if not found:
    return
  plt = _plt()
  fig, axes = plt.subplots(2, len(found), figsize=(2.6 * len(found), 5.4), squeeze=False)
  for col, (v, z) in enumerate(found):
    r = np.abs(np.corrcoef(z, rowvar=False))
    iu = np.triu_indices_from(r, k=1)
    pairs = np.argsort(np.nan_to_num(r[iu], nan=-1.0))
    for row, (label, k) in enumerate((("most correlated", pairs[-1]),
                                      ("median", pairs[len(pairs) // 2]))):
      i, j = iu[0][k], iu[1][k]
      counts, _, _ = joint_histogram(z[:, i], z[:, j])
      ax = axes[row][col]
      ax.imshow(np.log1p(counts).T, origin="lower", cmap="viridis")
      ax.set_title(f"{v}, {label}: ch {i}, {j}\n|r| = {r[i, j]:.2f}", fontsize=8)
      ax.set_xticks([])
      ax.set_yticks([])
  fig.suptitle("First-layer pre-normalization responses of channel pairs (seed 0; log counts, "
               "20x20 bins)", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_sigma(results_dir: str, rows: list[dict], path: str) -> None:
  """Learned sigma per layer against the step, one line per seed."""
  runs = [r for r in rows if r["plan"] == "sigma" and "failed" not in r]
  if not runs:
    return
  plt = _plt()
  layers = sorted(runs[0]["sigmas"])
  fig, axes = plt.subplots(1, len(layers), figsize=(3.6 * len(layers), 3.2), squeeze=False)
  for ax, key in zip(axes[0], layers, strict=True):
    for r in sorted(runs, key=lambda r: r["seed"]):
      m = read_metrics(os.path.join(results_dir, r["name"]), "train")
      ax.plot([x["step"] for x in m], [x[key] for x in m], label=f"seed {r['seed']}")
    for cut in runs[0]["boundaries"]:
      ax.axvline(cut, color="gray", lw=0.6, ls=":")
    ax.set(title=f"{runs[0]['variant']}: {key.removeprefix('sigma_')}", xlabel="step",
           ylabel="sigma")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_small_batch(summary: dict, path: str) -> None:
  sb = summary["small_batch"]
  if not sb:
    return
  plt = _plt()
  fig, ax = plt.subplots(figsize=(5, 3.5))
  for v, r in sb.items():
    bs = sorted(int(b) for b in r)
    ax.plot(bs, [r[str(b)]["test_accuracy"]["mean"] for b in bs], marker="o", label=v)
    for b in bs:
      ax.scatter([b] * len(r[str(b)]["test_accuracy_by_seed"]),
                 r[str(b)]["test_accuracy_by_seed"], s=8, color=ax.lines[-1].get_color(),
                 alpha=0.5)
  ax.set(xscale="log", xlabel="batch size", ylabel="test accuracy",
         title="30,000 examples per run; lr 1e-2 x batch / 100")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_full_long(results_dir: str, rows: list[dict], path: str) -> None:
  """Test accuracy after every epoch of the full-split runs, one line per run."""
  runs = [r for r in rows if r["plan"] == "full_long" and "failed" not in r]
  if not runs:
    return
  plt = _plt()
  fig, ax = plt.subplots(figsize=(6, 3.8))
  colors = dict(zip(study.FULL_VARIANTS, ("tab:blue", "tab:cyan", "tab:red", "tab:orange"),
                    strict=True))
  for r in sorted(runs, key=lambda r: (r["variant"], r["seed"])):
    ev = read_metrics(os.path.join(results_dir, r["name"]), "eval")
    ax.plot([e["step"] / 600 for e in ev], [e["accuracy"] for e in ev], marker=".",
            color=colors.get(r["variant"]), ls=("-", "--", ":", "-.")[r["seed"] % 4],
            label=f"{r['variant']} s{r['seed']}")
  ax.set(xlabel="epoch", ylabel="test accuracy", title="all 60,000 training images")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=6, ncol=4)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write(results_dir: str) -> str:
  """Writes summary.md, summary.json and the figures from the finished jobs; returns summary.md."""
  rows = load_results(results_dir)
  if not rows:
    return (f"no finished job in {results_dir}; run `python -m experiments.cnn.study run`.")
  summary = summarize(rows)
  with open(os.path.join(results_dir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1, sort_keys=True)
  md = render(summary)
  with open(os.path.join(results_dir, "summary.md"), "w") as f:
    f.write(md)
  plot_curves(results_dir, rows, os.path.join(results_dir, "curves.png"))
  plot_joint_histograms(results_dir, rows,
                        os.path.join(results_dir, "table10_joint_histograms.png"))
  plot_sigma(results_dir, rows, os.path.join(results_dir, "sigma.png"))
  plot_small_batch(summary, os.path.join(results_dir, "small_batch.png"))
  plot_full_long(results_dir, rows, os.path.join(results_dir, "full_long.png"))
  return md
