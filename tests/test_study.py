"""The converged CNN study: its schedule, its workers, its statistics and its report."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy import stats

from experiments import seed_stats
from experiments.cnn import study, study_report
from experiments.config import ConfigError
from experiments.engine import workers

FASHION = "/usr/share/datasets/fashion-mnist"


# ---- the protocol's numbers ---------------------------------------------------------------

def test_schedule_is_the_papers_scaled():
  # 80k -> 1,200: cuts at 30k/80k and 50k/80k; baselines 50k/80k as long, cuts at 5k and 30k.
  assert study.paper_schedule("DN*") == (1200, (450, 750))
  assert study.paper_schedule("baseline") == (750, (75, 450))
  job = study.small_batch_job("BN", 4, 1)
  assert (job.num_steps, job.boundaries, job.learning_rate) == (7500, (2812, 4688), 4e-4)


def test_plans_and_names():
  jobs = study.STUDY.jobs()
  names = [j.name for j in jobs]
  assert len(names) == len(set(names)) == 7 * 6 + 6 + 3 + 3 * 6 + 4 * 3 * 6 + 4 * 4
  first = study.STUDY.jobs(("table", "sigma"))
  table = [j for j in first if j.plan == "table"]  # whole seeds first (PROTOCOL.md, 2026-12-07)
  assert [(j.seed, j.variant) for j in table] == [
      (s, v) for s in range(6) for v in study.TABLE_VARIANTS]
  assert all(j.learn_sigma == (j.plan == "sigma") for j in jobs)
  long = study.STUDY.jobs(("baseline_long",))
  assert [(j.variant, j.num_steps, j.boundaries) for j in long] == [("baseline", 1200, (450, 750))] * 3
  # The names of the finished results stay the same.
  assert {"table-DN_star-s2", "sigma-DN_star-s0", "small_batch-BN-s0-b4"} <= set(names)
  alone = study.STUDY.jobs(("sigma_alone",))
  assert [j.name for j in alone[:3]] == ["sigma_alone-BN-s-s0", "sigma_alone-LN-s-s0",
                                         "sigma_alone-DN-sigma0-s0"]
  assert [j.label for j in alone[:3]] == ["BN-s", "LN-s", "DN (sigma0)"]
  full = study.STUDY.jobs(("full_long",))
  assert {j.max_train_examples for j in full} == {None}
  assert [j.seed for j in full] == sorted(j.seed for j in full) == [0] * 4 + [1] * 4 + [2] * 4 + [
      3] * 4  # seed by seed: seed 2 of the four before seed 3 (PROTOCOL.md, 2026-12-07)
  assert full[0].name == "full_long-BN-s0"  # the finished runs keep their names
  assert full[0].num_steps == study.FULL_EPOCHS * 600
  assert full[0].boundaries == (round(full[0].num_steps * 3 / 8), round(full[0].num_steps * 5 / 8))
  small = study.STUDY.jobs(("small_batch",))
  assert [j.seed for j in small] == sorted(j.seed for j in small)  # seed by seed
  assert study.STUDY.jobs(("small_batch",), ("*-b4",))[0].name == "small_batch-BN-s0-b4"
  with pytest.raises(ConfigError, match="unknown plan"):
    study.STUDY.jobs(("table", "tabel"))


def test_job_config_carries_the_job():
  job = study.STUDY.jobs(("sigma",))[1]
  cfg = study.job_config(job)
  assert (cfg.seed, cfg.num_steps, cfg.batch_size, cfg.learn_sigma) == (1, 1200, 100, True)
  assert cfg.optimizer.boundaries == [450, 750] and cfg.optimizer.learning_rate == 1e-2
  assert cfg.max_train_examples == 5000 and cfg.eval_every == 600


def test_sigma_alone_variants_are_the_papers_and_dn_with_sigma_zero():
  from experiments.cnn import task
  by = {j.label: j for j in study.STUDY.jobs(("sigma_alone",)) if j.seed == 0}
  specs = {label: task.build_model(study.job_config(j), 10).norm for label, j in by.items()}
  assert (specs["BN-s"].kind, specs["BN-s"].sigma, specs["BN-s"].l1_alpha) == ("batch", 1.0, 0.0)
  assert (specs["LN-s"].kind, specs["LN-s"].sigma, specs["LN-s"].l1_alpha) == ("layer", 0.5, 0.0)
  dn0 = specs["DN (sigma0)"]
  assert (dn0.kind, dn0.sigma, dn0.l1_alpha, dn0.affine) == ("divisive", 0.0, 0.0, False)
  table_dn = task.build_model(study.job_config(study.table_job("table", "DN", 0)), 10).norm
  assert dataclasses.replace(table_dn, sigma=0.0) == dn0  # only sigma differs from the table's DN
  cfg = study.job_config(study.table_job("table", "baseline", 0))
  cfg.sigma = 0.0
  with pytest.raises(ConfigError, match="has no normalizer"):
    task.validate(cfg)


def test_learn_sigma_on_the_baseline_is_refused():
  from experiments.cnn import task
  cfg = study.job_config(study.STUDY.jobs(("table",))[0])
  cfg.learn_sigma = True
  with pytest.raises(ConfigError, match="no normalizer whose sigma"):
    task.validate(cfg)


# ---- statistics over seeds -------------------------------------------------------------------

def test_summarize_matches_scipy():
  x = [0.81, 0.79, 0.84]
  s = seed_stats.summarize(x)
  lo, hi = stats.t.interval(0.95, 2, loc=np.mean(x), scale=stats.sem(x))
  assert s["n"] == 3 and s["mean"] == pytest.approx(np.mean(x))
  assert s["std"] == pytest.approx(np.std(x, ddof=1))
  assert s["ci95"] == pytest.approx((hi - lo) / 2)
  assert math.isnan(seed_stats.summarize([0.5])["std"])
  with pytest.raises(ValueError, match="non-empty"):
    seed_stats.summarize([])


def test_welch_and_holm():
  a, b = [0.80, 0.81, 0.82], [0.70, 0.72, 0.71]
  t = seed_stats.welch(a, b)
  assert t["p"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
  assert t["diff"] == pytest.approx(0.1)
  # Holm: sorted p 0.01, 0.02, 0.04 -> 0.03, 0.04, 0.04 (monotone), NaN kept.
  assert seed_stats.holm([0.04, 0.01, math.nan, 0.02]) == pytest.approx(
      [0.04, 0.03, math.nan, 0.04], nan_ok=True)


# ---- workers: claims survive a killed process, and done jobs are skipped -------------------

def test_claimed_jobs_skips_done_and_held(tmp_path):
  locks = str(tmp_path / "locks")
  done = {"a"}
  holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
      import fcntl, os, sys, time
      os.makedirs({locks!r}, exist_ok=True)
      fd = os.open(os.path.join({locks!r}, "b.lock"), os.O_CREAT | os.O_RDWR)
      fcntl.flock(fd, fcntl.LOCK_EX)
      print("held", flush=True)
      time.sleep(60)
      """)], stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    got = list(workers.claimed_jobs(["a", "b", "c"], lock_dir=locks, is_done=done.__contains__))
    assert got == ["c"]
  finally:
    holder.kill()  # the kernel releases its lock: no stale claim
    holder.wait()
    holder.stdout.close()
  assert list(workers.claimed_jobs(["a", "b"], lock_dir=locks, is_done=done.__contains__)) == ["b"]


def test_single_thread_env_keeps_other_flags():
  env = workers.single_thread_env({"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
  assert env["XLA_FLAGS"].startswith("--xla_force_host_platform_device_count=8 ")
  assert "intra_op_parallelism_threads=1" in env["XLA_FLAGS"]


# ---- one real job, end to end, and the report -----------------------------------------------

@pytest.mark.slow  # trains
@pytest.mark.loose_promotion  # optax's schedules
@pytest.mark.skipif(not os.path.isdir(FASHION), reason="needs Debian's dataset-fashion-mnist")
def test_run_job_writes_results_and_the_report_reads_them(tmp_path):
  runs, results = str(tmp_path / "runs"), str(tmp_path / "results")
  job = study.Job("sigma", "DN*", 0, 16, 6, (2, 4), 1e-2, 96, learn_sigma=True)
  row = study.run_job(job, runs, results,
                      overrides=["eval_batch_size=96", "max_eval_examples=192"])
  out = os.path.join(results, job.name)
  workers.write_json(os.path.join(out, "result.json"), row)  # as the runner does
  assert sorted(os.listdir(out)) == ["config.json", "first_layer_samples.npz", "metrics.jsonl",
                                     "result.json"]
  assert not os.path.exists(os.path.join(out, "checkpoints"))
  with open(os.path.join(out, "result.json")) as f:
    assert json.load(f)["test_accuracy"] == row["test_accuracy"]
  assert sorted(row["sigmas"]) == ["sigma_norm_0", "sigma_norm_1", "sigma_norm_2"]
  assert all(0 < s < 1 for s in row["sigmas"].values())
  assert 0 <= row["table10_correlation"] <= 1 and row["table10_mutual_information"] > 0
  assert workers.result_exists(results, job.name) and row["converged"] in (True, False)

  # Two synthetic table rows beside the real one: the report tests them, marks the rest.
  for seed, acc in ((0, 0.7), (1, 0.72)):
    r = {**row, "plan": "table", "variant": "DN", "seed": seed, "test_accuracy": acc,
         "name": f"table-DN-s{seed}"}
    os.makedirs(os.path.join(results, r["name"]))
    with open(os.path.join(results, r["name"], "result.json"), "w") as f:
      json.dump(r, f)
  md = study_report.write(results)
  with open(os.path.join(results, "summary.md")) as f:
    assert f.read() == md
  assert "| baseline | not run |" in md and "| DN | 2 |" in md
  assert "0.7100 ± 0.0141" in md  # mean ± std of 0.70, 0.72
  assert "DN* learned sigma" in md and os.path.exists(os.path.join(results, "sigma.png"))


def _full_row(variant: str, seed: int, accuracy: float) -> dict:
  return {"plan": "full_long", "variant": variant, "seed": seed, "test_accuracy": accuracy,
          "train_accuracy": accuracy + 0.01, "train_cross_entropy": 0.3,
          "table10_correlation": 0.5, "train_ce_80_90": 0.3, "train_ce_90_100": 0.3,
          "num_steps": 6000, "learning_rate": 1e-2,
          "name": f"full_long-{variant.replace('*', '_star')}-s{seed}"}


def test_full_split_tests_use_the_seeds_complete_for_all_four_models():
  """PROTOCOL.md (2026-12-07): a seed that ran for some of BN, BN*, DN, DN* but not all is
  left out of the entries and the tests, and named."""
  rows = [_full_row(v, s, 0.88 + 0.01 * i + 0.001 * s)
          for s in (0, 1, 2) for i, v in enumerate(study.FULL_VARIANTS)]
  rows += [_full_row("BN", 3, 0.5), _full_row("DN", 3, 0.99)]  # seed 3: two of the four
  entries, tests, gaps = study_report._full_long(rows)
  assert all(e["seeds"] == [0, 1, 2] for e in entries.values())
  assert entries["BN"]["test_accuracy"]["mean"] == pytest.approx(0.881)
  assert [t["n"] for t in tests + gaps] == [[3, 3]] * 5
  assert entries["DN"]["left_out"] == ["full_long-BN-s3", "full_long-DN-s3"]
  md = "\n".join(study_report._render_full_long(entries, tests, gaps))
  assert "Runs left out (their seed is not complete for all four models" in md
  assert "2026-12-07): full_long-BN-s3, full_long-DN-s3." in md
  assert study_report.complete_seeds({"BN": rows[:1]}, ("BN", "DN")) == []
  entries, _, _ = study_report._full_long(rows[:8])  # seeds 0 and 1 of all four
  assert entries["BN*"]["seeds"] == [0, 1] and entries["BN*"]["left_out"] == []


def _table_row(variant: str, seed: int, accuracy: float, plan: str = "table") -> dict:
  return {**_full_row(variant, seed, accuracy), "plan": plan, "num_steps": 1200,
          "table10_correlation": accuracy / 2, "table10_mutual_information": accuracy / 3,
          "name": f"{plan}-{variant.replace('*', '_star')}-s{seed}"}


def test_table_uses_seeds_0_to_2_and_each_later_seed_complete_for_all_seven_models():
  """PROTOCOL.md (2026-12-07 23:20): the table, its two families and Table 10 take seeds
  0-2 and each later seed that has all seven models; a partial seed is left out and named;
  the comparisons against models with seeds 0-2 alone keep the table's seeds 0-2; the
  3-seed verdicts stand beside."""
  rows = [_table_row(v, s, 0.80 + 0.01 * i + 0.002 * s)
          for s in (0, 1, 2, 3) for i, v in enumerate(study.TABLE_VARIANTS)]
  rows += [_table_row("BN", 4, 0.1), _table_row("DN*", 4, 0.99)]  # seed 4: two of seven
  rows += [_table_row("baseline", s, 0.7 + 0.003 * s, "baseline_long") for s in (0, 1, 2)]
  rows += [_table_row("BN-s", s, 0.81 + 0.003 * s, "sigma_alone") for s in (0, 1, 2)]
  summary = study_report.summarize(rows)
  assert summary["table_seeds"] == [0, 1, 2, 3]
  assert summary["table_left_out"] == ["table-BN-s4", "table-DN_star-s4"]
  assert all(e["seeds"] == [0, 1, 2, 3] for v, e in summary["table"].items()
             if v != study_report.LONG_BASELINE)
  assert summary["table"]["BN"]["test_accuracy"]["mean"] == pytest.approx(0.81 + 0.003)
  bn_seeds = [0.81 + 0.002 * s for s in range(4)]
  assert summary["table"]["BN"]["correlation"]["mean"] == pytest.approx(np.mean(bn_seeds) / 2)
  first = {t["a"] + t["b"]: t for t in summary["accuracy_tests_first_seeds"]}
  for t in summary["accuracy_tests"]:  # the same 7, on 4 and on 3 seeds
    ours = [0.80 + 0.01 * study.TABLE_VARIANTS.index(m) + 0.002 * s
            for m in (t["a"], t["b"]) for s in range(4)]
    assert t["diff"] == pytest.approx(np.mean(ours[:4]) - np.mean(ours[4:]))
    assert first[t["a"] + t["b"]]["diff"] == pytest.approx(t["diff"])  # even spacing
    assert first[t["a"] + t["b"]]["p"] != pytest.approx(t["p"])
  assert len(summary["table10_tests"]) == len(summary["table10_tests_first_seeds"]) == 6
  # Against models that have seeds 0-2 alone: the table's seeds 0-2.
  post_hoc = {t["a"]: t for t in summary["post_hoc_tests"]}
  assert post_hoc["BN"]["diff"] == pytest.approx((0.81 + 0.002) - (0.7 + 0.003))
  alone = summary["sigma_alone"]["models"]
  assert alone["BN"]["seeds"] == [0, 1, 2] and alone["BN-s"]["seeds"] == [0, 1, 2]
  md = study_report.render(summary)
  assert "Table 10: 0, 1, 2, 3 (PROTOCOL.md" in md
  assert "Runs left out (their seed is not complete for all seven models): table-BN-s4, " \
         "table-DN_star-s4." in md
  assert "| verdict | seeds 0-2: difference | p (Holm) | verdict |" in md
  assert "| BN | 4 | 1200 |" in md and "0.1000" not in md and "0.9900" not in md
  # Seeds 0-2 alone: one set of verdicts, no columns beside.
  summary = study_report.summarize([r for r in rows if r["seed"] < 3])
  assert summary["table_seeds"] == [0, 1, 2] and summary["table_left_out"] == []
  assert "accuracy_tests_first_seeds" not in summary
  assert "seeds 0-2: difference" not in study_report.render(summary)


def test_sigma_alone_and_learned_sigma_use_the_seeds_complete_for_their_models():
  """PROTOCOL.md (2026-12-08): the sigma-alone family takes seeds 0-2 and each later seed
  complete for its nine models, names the runs of a partial seed, and shows its seeds 0-2
  beside; learned sigma is compared with the table's DN* on its own seeds."""
  rows = [_table_row(v, s, 0.80 + 0.01 * i + 0.002 * s)
          for s in range(5) for i, v in enumerate(study.TABLE_VARIANTS)]  # seeds 0-4
  for seed in range(4):
    rows += [_table_row("BN-s", seed, 0.83 + 0.003 * seed, "sigma_alone"),
             _table_row("LN-s", seed, 0.82 + 0.001 * seed, "sigma_alone"),
             {**_table_row("DN", seed, 0.70 + 0.004 * seed, "sigma_alone"), "tag": "sigma0",
              "name": f"sigma_alone-DN-sigma0-s{seed}"},
             {**_table_row("DN*", seed, 0.86 + 0.001 * seed * seed, "sigma"),
              "sigmas": {"sigma_norm_0": 0.5}}]
  rows.append(_table_row("BN-s", 4, 0.1, "sigma_alone"))  # seed 4: one of the three
  summary = study_report.summarize(rows)
  alone = summary["sigma_alone"]
  assert alone["seeds"] == [0, 1, 2, 3]
  assert alone["left_out"] == ["sigma_alone-BN-s-s4"] + [  # and the table's runs of seed 4
      f"table-{v}-s4" for v in ("BN", "BN_star", "DN", "DN_star", "LN", "LN_star")]
  assert all(e["seeds"] == [0, 1, 2, 3] for e in alone["models"].values())
  assert [t["n"] for t in alone["tests"]] == [[4, 4]] * 5
  assert [t["n"] for t in alone["tests_first_seeds"]] == [[3, 3]] * 5
  bn_s = next(t for t in alone["tests"] if (t["a"], t["b"]) == ("BN-s", "BN"))
  assert bn_s["diff"] == pytest.approx((0.83 + 0.0045) - (0.81 + 0.003))
  learned = summary["sigma"]["DN*"]
  fixed = [0.86 + 0.002 * s for s in range(4)]  # the table's DN* on seeds 0-3, not seed 4
  assert learned["vs_fixed_sigma"]["diff"] == pytest.approx(
      np.mean([0.86 + 0.001 * s * s for s in range(4)]) - np.mean(fixed))
  assert learned["vs_fixed_sigma_first_seeds"]["diff"] == pytest.approx(
      np.mean([0.86 + 0.001 * s * s for s in range(3)]) - np.mean(fixed[:3]))
  md = study_report.render(summary)
  assert "Seeds: 0, 1, 2, 3 (PROTOCOL.md, 2026-12-08" in md
  assert "complete for all nine models): sigma_alone-BN-s-s4, table-BN-s4," in md
  assert "The same family on seeds 0-2, as first reported" in md and "(seeds 0-2: " in md
  # Seeds 0-2 alone: nothing beside.
  summary = study_report.summarize([r for r in rows if r["seed"] < 3])
  assert "tests_first_seeds" not in summary["sigma_alone"]
  assert "vs_fixed_sigma_first_seeds" not in summary["sigma"]["DN*"]


def test_small_batch_uses_the_seeds_complete_for_all_twelve_cells():
  """PROTOCOL.md (2026-12-08): the small-batch table and family take seeds 0-2 and each later
  seed complete for the 4 models x 3 batch sizes; a partial seed is left out and named; the
  family on seeds 0-2 stands beside."""
  def row(v, b, seed, accuracy):
    return {**_table_row(v, seed, accuracy, "small_batch"), "batch_size": b,
            "name": f"small_batch-{v.replace('*', '_star')}-s{seed}-b{b}"}
  rows = [row(v, b, seed, 0.78 + 0.01 * i + 0.0001 * b + 0.002 * seed)
          for seed in range(4) for i, v in enumerate(study.SMALL_BATCH_VARIANTS)
          for b in study.SMALL_BATCHES]
  rows += [row("BN", 4, 4, 0.1), row("DN", 64, 4, 0.99)]  # seed 4: two of the twelve cells
  sb, tests, seeds = study_report._small_batch(rows)
  assert seeds["seeds"] == [0, 1, 2, 3]
  assert seeds["left_out"] == ["small_batch-BN-s4-b4", "small_batch-DN-s4-b64"]
  assert sb["BN"]["4"]["seeds"] == [0, 1, 2, 3] and len(tests) == 12
  assert [t["n"] for t in tests] == [[4, 4]] * 12
  assert [t["n"] for t in seeds["tests_first_seeds"]] == [[3, 3]] * 12
  md = "\n".join(study_report._render_small_batch(sb, tests, seeds))
  assert "Seeds: 0, 1, 2, 3 (PROTOCOL.md, 2026-12-08" in md
  assert "twelve cells): small_batch-BN-s4-b4, small_batch-DN-s4-b64." in md
  assert "The same family on seeds 0-2, as first reported (Holm over the 12)" in md
  assert "0.1000" not in md and "0.9900" not in md
  _, _, seeds = study_report._small_batch([r for r in rows if r["seed"] < 3])
  assert seeds == {"seeds": [0, 1, 2], "left_out": []}


def test_demo_prints_its_numbers_beside_the_converged_study(tmp_path):
  from experiments.cnn import compare
  table = tmp_path / "table.csv"
  table.write_text("variant,steps,test_accuracy\nBN,400,0.8286\nDN*,400,0.7739\n")
  summary = tmp_path / "summary.json"
  summary.write_text(json.dumps({"table": {"BN": {
      "steps": 1200, "test_accuracy": seed_stats.summarize([0.85, 0.86, 0.87])}}}))
  text = compare.beside_converged(str(table), str(summary))
  assert "| BN | 0.8286 (400) | 0.8600 ± 0.0100 (n=3, 1200 steps) |" in text
  assert "| DN* | 0.7739 (400) | not in the study |" in text
  assert "1 seed, full train split)" in text
  argv = ["--num_steps", "8", "--set", "max_train_examples=400", "--set=max_eval_examples=200"]
  assert compare._run_facts(argv) == ("runs/cnn_compare", "first 400 train images")
  assert compare._run_facts(["--set=max_train_examples=64"])[1] == "first 64 train images"
  assert compare._run_facts(["--num_steps", "8", "--out", "o"]) == ("o", "full train split")
  # As argparse reads them: an abbreviated flag (the table was looked for in the default
  # folder, after every variant had trained), the last --out or --workdir.
  assert compare._run_facts(["--work", "w", "--se", "max_train_examples=9"]) == (
      "w", "first 9 train images")
  assert compare._run_facts(["--workdir", "a", "--workdir=b"])[0] == "b"
  assert "1 seed, first 400 train images)" in compare.beside_converged(
      str(table), str(summary), train=compare._run_facts(argv)[1])


def test_committed_summary_reads_as_verdicts_and_intervals():
  """summary.md is what the code writes from the committed results: verdicts are holds / does
  not hold / not established, intervals are [a, b] and say what they are."""
  folder = os.path.join(root_dir(), "results", "cnn", "converged")
  text = study_report.render(study_report.summarize(study_report.load_results(folder)))
  with open(os.path.join(folder, "summary.md")) as f:
    assert f.read() == text
  assert "| baseline | 6 | 750 | 0.4407 ± 0.3732 | [0.0490, 0.8323] |" in text
  assert "Table 10: 0, 1, 2, 3, 4, 5 (PROTOCOL.md" in text
  assert "for all seven models):" not in text  # no run left out
  assert "95% t-interval of the mean: mean ± t(0.975, n-1) · std / √n" in text
  # Seeds 0-5, and beside them seeds 0-2 (PROTOCOL.md, 2026-12-07).
  assert "| DN* - DN | +0.0263 | 0.000 | 0.000 | holds (A higher) | +0.0284 | 0.026 | holds " \
         "(A higher) |" in text
  assert "| BN* - BN | +0.0349 | 0.000 | 0.001 | holds (A higher) | +0.0332 | 0.195 | not " \
         "established |" in text
  assert "| yes |" not in text and "significant at 0.05" not in text
  # Table 10: the paper has DN* above DN in correlation and below in MI.
  assert "| DN* - DN | correlation | -0.2622 | 0.000 | 0.000 | does not hold (A lower) | " \
         "-0.2839 | 0.022 | does not hold (A lower) |" in text
  assert "| DN* - DN | MI | -0.3042 | 0.000 | 0.000 | holds (A lower) | -0.3469 | 0.022 | " \
         "holds (A lower) |" in text
  # Sigma alone on seeds 0-5 (PROTOCOL.md, 2026-12-08), seeds 0-2 as first reported beside.
  assert "| BN-s - BN | 6, 6 | +0.0293 | 0.000 | 0.000 | holds (A higher) |" in text
  assert "| BN-s - BN | 3, 3 | +0.0272 | 0.071 | 0.071 | not established |" in text
  # Small batches on seeds 0-5 (PROTOCOL.md, 2026-12-08): BN above DN at batch 4.
  assert "| DN - BN | 4 | 6, 6 | -0.0151 | 0.000 | 0.000 | holds (A lower) |" in text
  assert "| DN - BN | 4 | 3, 3 | -0.0146 | 0.025 | 0.174 | not established |" in text


def test_reproduce_table_names_the_papers_schedules(tmp_path):
  from experiments.cnn import reproduce
  rows = [{"variant": "DN", "dataset": "fashion_mnist", "steps": 4, "test_accuracy": 0.5}]
  md = reproduce.write_table(rows, str(tmp_path), command="cmd")
  assert "CIFAR-10 and CIFAR-100 (on both: 80k steps for the normalized networks, 50k for the " \
         "baseline)" in md and "80k/50k" not in md
  with open(os.path.join(root_dir(), "results", "cnn", "fashion_mnist", "table.md")) as f:
    assert "CIFAR-10/100 (80k/50k steps)" not in f.read()


def root_dir():
  return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

