"""The early-stopped RNN study (experiments/rnn/study.py): a tiny real job, resume, the rule, report."""

import dataclasses
import json
import math
import os

import pytest

from experiments.engine import stop, workers
from experiments.engine import study as runner
from experiments.rnn import study
from experiments.rnn import task as rnn_task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.loose_promotion  # optax / engine internals

# A real job, shrunk: 2,400 training tokens, hidden 16, batch 8 (the suite's 8 CPU devices),
# 3 eval batches of valid and test; 59 steps per epoch.
TINY = study.Schedule(train_tokens=2_400, max_epochs=3, patience=1, hidden_size=16,
                      vocab_size=300, max_eval_batches=3, batch_size=8, bptt_steps=5)
JOB = study.Job("lstm", "baseline", 0)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("rnn_study")
  runs, results = str(root / "runs"), str(root / "results")
  row = study.run_job(JOB, runs, results, schedule=TINY)
  workers.write_json(os.path.join(results, JOB.name, "result.json"), row)  # as the runner does
  return row, runs, results


def _read(path):
  with open(path) as f:
    return f.read()


def _rows(valid, test_at=None):
  return [{"step": 10 * (i + 1), "epoch": i + 1, "valid_perplexity": v,
           **({"test_perplexity": test_at[i]} if test_at and test_at[i] is not None else {})}
          for i, v in enumerate(valid)]


def test_rule_picks_first_lowest_valid_and_counts_patience():
  rows = _rows([200.0, 150.0, 140.0, 145.0, 140.0, 139.0])
  state = study.early_stopping(rows[:5], patience=2)
  assert state["best"]["step"] == 30 and state["since_best"] == 2 and state["stop"]
  assert not study.early_stopping(rows[:5], patience=3)["stop"]
  # An equal valid value is no improvement; a lower one resets the count.
  late = study.early_stopping(rows, patience=3)
  assert late["best"]["step"] == 60 and late["since_best"] == 0 and not late["stop"]
  # Order of the rows does not matter (a resumed log may append out of order).
  assert study.early_stopping(rows[::-1], patience=3)["best"]["step"] == 60
  with pytest.raises(ValueError, match="patience"):
    study.early_stopping(rows, patience=0)


def test_summary_reports_test_at_best_valid_not_at_the_end():
  rows = _rows([200.0, 150.0, 160.0, 170.0], test_at=[210.0, 155.0, None, None])
  train = [{"step": s, "perplexity": p, "examples_per_second": 10.0}
           for s, p in ((10, 300.0), (20, 120.0), (30, 90.0), (40, 80.0))]
  out = study.summarize_run(rows, train, patience=2, bptt_steps=20)
  assert out["test_perplexity"] == 155.0 and out["best_epoch"] == 2
  assert out["stopped_epoch"] == 4 and out["stop_reason"] == "patience"
  assert out["train_perplexity_at_best"] == 120.0 and out["tokens_per_second"] == 200.0
  assert study.summarize_run(rows[:3], train, patience=2, bptt_steps=20)["stop_reason"] == (
      "max_epochs")


@pytest.mark.slow  # trains (the tiny job)
def test_tiny_job_writes_result_with_test_of_the_best_model(tiny_run):
  row, runs, results = tiny_run
  out = os.path.join(results, JOB.name)
  assert sorted(os.listdir(out)) == ["config.json", "early_stopping.jsonl", "metrics.jsonl",
                                     "result.json"]
  with open(os.path.join(out, "result.json")) as f:
    saved = json.load(f)
  assert saved["test_perplexity"] == row["test_perplexity"] and math.isfinite(
      row["test_perplexity"])
  epoch = rnn_task.steps_per_epoch(study.job_config(JOB, TINY), TINY.train_tokens)
  assert [r["step"] for r in row["curve"]] == [epoch * (i + 1) for i in range(len(row["curve"]))]
  best = min(row["curve"], key=lambda r: r["valid_perplexity"])
  assert row["best_step"] == best["step"] and row["test_perplexity"] == best["test_perplexity"]
  assert row["stop_reason"] == "patience" or row["stopped_epoch"] == TINY.max_epochs
  # The test perplexity is the model's at the best valid point: a fresh run of exactly
  # best_step steps (same seed, same schedule) ends with the same test perplexity.
  cfg = study.job_config(JOB, TINY)
  cfg.max_steps = row["best_step"]
  corpus = study.load_corpus(TINY.vocab_size, TINY.train_tokens)
  fresh = rnn_task.train_and_evaluate(cfg, None, progress=False, corpus=corpus)
  assert fresh.eval_metrics["test_perplexity"] == pytest.approx(row["test_perplexity"], rel=1e-5)


@pytest.mark.slow  # trains (the tiny job)
def test_finished_job_is_not_trained_again(tiny_run, monkeypatch):
  _, runs, results = tiny_run
  metrics = os.path.join(runs, JOB.name, "metrics.jsonl")
  before = _read(metrics)
  # The worker skips a job whose result exists (it would start a process for it otherwise).
  monkeypatch.setattr(workers, "run_child", lambda *a, **k: pytest.fail("ran a finished job"))
  assert runner.main(study.STUDY, ["worker", "--plans", "lstm", "--jobs", JOB.name,
                                   "--runs_dir", runs, "--results_dir", results]) == 0
  monkeypatch.undo()
  # Without its result.json, a stopped run rewrites it from its log, without training.
  again = study.run_job(JOB, runs, str(os.path.join(runs, "..", "r2")), schedule=TINY)
  assert _read(metrics) == before
  assert again["test_perplexity"] == tiny_run[0]["test_perplexity"]


@pytest.mark.slow  # trains (the tiny job)
def test_killed_job_resumes_to_the_same_evaluations(tiny_run, tmp_path, monkeypatch):
  row, _, _ = tiny_run
  epoch = row["curve"][0]["step"]
  call = stop.EarlyStopping.__call__

  def killed_mid_second_epoch(self, step, ts):
    if step == epoch + epoch // 2:
      raise KeyboardInterrupt  # after epoch 1's evaluation and checkpoint
    return call(self, step, ts)

  runs, results = str(tmp_path / "runs"), str(tmp_path / "results")
  monkeypatch.setattr(stop.EarlyStopping, "__call__", killed_mid_second_epoch)
  with pytest.raises(KeyboardInterrupt):
    study.run_job(JOB, runs, results, schedule=TINY)
  assert [r["step"] for r in stop.read_rows(os.path.join(runs, JOB.name, study.ES_FILE))] == [
      epoch]
  monkeypatch.undo()
  resumed = study.run_job(JOB, runs, results, schedule=TINY)
  assert resumed["curve"] == row["curve"]  # same evaluations, none repeated


@pytest.mark.slow  # trains (the tiny job)
def test_report_on_a_partial_results_folder(tiny_run, tmp_path):
  row, _, results = tiny_run
  folder = tmp_path / "converged"
  folder.mkdir()
  os.symlink(os.path.join(results, JOB.name), folder / JOB.name)
  failed = folder / "tanh-dn-s1"
  failed.mkdir()
  (failed / "result.json").write_text(json.dumps(
      {"cell": "tanh", "variant": "dn", "seed": 1, "name": "tanh-dn-s1",
       "failed": "NonFiniteLossError: non-finite loss nan at step 3"}))
  text = study.report(str(folder), command="python -m experiments.rnn.study report")
  assert (folder / "table.md").read_text() == text and (folder / "curves.png").stat().st_size
  base = next(line for line in text.splitlines() if line.startswith("| Baseline")
              and f"s0 {row['test_perplexity']:.1f}" in line)
  assert "s1 not run" in base and "115.7" in base  # one seed, the other marked; paper's LSTM
  assert "| DN | not run |" in text  # the LSTM DN: no seed finished
  assert "s1 failed" in text and "1 job(s) failed and are left out of every mean and test: " \
      "tanh-dn-s1" in text and "`python -m experiments.rnn.study run --retry_failed`" in text
  assert "Jobs finished: 1 of 144" in text
  assert "| LSTM | DN* vs Baseline | not run | | | | | | 0, 1 |" in text


def test_comparison_describes_the_seeds_and_tests_them():
  c = study.comparison([100.0, 102.0], [110.0, 104.0])
  assert (c["diff"], c["relative"], c["separated"]) == (-6.0, -6.0 / 107.0, "A lower")
  assert 0 < c["p"] < 1
  assert study.comparison([100.0, 105.0], [104.0, 110.0])["separated"] == "overlap"
  assert study.comparison([120.0], [110.0, 115.0])["separated"] == "A higher"
  results = {}
  for v, values in (("dn_star", (100.0, 101.0, 100.5)), ("baseline", (110.0, 111.0, 112.0)),
                    ("dn", (105.0, 120.0, 90.0))):
    for seed, x in enumerate(values):
      results[f"lstm-{v}-s{seed}"] = {"test_perplexity": x}
  rows = [r for r in study.comparisons(results) if r["cell"] == "lstm" and "diff" in r]
  assert [(r["a"], r["b"]) for r in rows] == [("dn_star", "baseline"), ("dn_star", "dn"),
                                             ("dn", "baseline")]
  assert [r["p_holm"] for r in rows] == pytest.approx(
      study.seed_stats.holm([r["p"] for r in rows]))
  assert study.verdict(rows[0]) == "A lower" and study.verdict(rows[1]) == "not established"


def _row(test_perplexity, **extra):
  """A result row with the fields the report reads."""
  return {"test_perplexity": test_perplexity, "best_valid_perplexity": test_perplexity + 1,
          "best_epoch": 13, "stopped_epoch": 13, "train_perplexity_at_best": 80.0,
          "tokens_per_second": 1e4, "machine": "test", "curve": [],
          "schedule": dataclasses.asdict(study.Schedule()), **extra}


def _complete(cell, seeds):
  return {f"{cell}-{v}-s{s}": _row(100.0 + s + len(v)) for v in study.VARIANTS for s in seeds}


def test_an_extension_seed_counts_only_when_all_eight_variants_finished():
  """PROTOCOL_RNN.md, 2026-12-07: a cell uses seeds 0-2 and each later seed complete for all 8
  variants; the finished runs of an incomplete seed are named and enter no mean or test."""
  results = {**_complete("tanh", (0, 1, 2, 3)), **_complete("relu", (0, 1, 2))}
  results["tanh-baseline-s4"] = _row(1e6)  # seed 4: one variant of 8
  results["tanh-dn-s5"] = _row(1e6, failed="NonFiniteLossError")
  for v in study.VARIANTS[1:]:  # seed 5 of relu: all but the baseline
    results[f"relu-{v}-s5"] = _row(1e6)
  assert study.report_seeds(results, "tanh") == (0, 1, 2, 3)
  assert study.report_seeds(results, "relu") == (0, 1, 2)
  assert study.left_out(results, "tanh") == ["tanh-baseline-s4"]
  assert study.left_out(results, "relu") == [f"relu-{v}-s5" for v in study.VARIANTS[1:]]
  rows = {(r["cell"], r["a"], r["b"]): r for r in study.comparisons(results)}
  assert rows[("tanh", "dn_star", "baseline")]["n"] == (4, 4)
  assert rows[("relu", "dn_star", "baseline")]["n"] == (3, 3)
  text = study.render_table(results)
  assert "Seeds: 0, 1, 2, 3." in text and "Seeds: 0, 1, 2." in text
  assert "Runs left out (their seed has not finished all 8 variants; PROTOCOL_RNN.md, " \
         "2026-12-07): tanh-baseline-s4." in text
  tanh_baseline = next(line for line in text.split("## tanh RNN")[1].splitlines()
                       if line.startswith("| Baseline"))
  assert "s3 111.0" in tanh_baseline and "s4" not in tanh_baseline
  assert "1000000" not in text
  # An explicit seed list is used as given, in every cell.
  explicit = {(r["cell"], r["a"], r["b"]): r for r in study.comparisons(results, seeds=(0, 1))}
  assert explicit[("tanh", "dn_star", "baseline")]["n"] == (2, 2)


def test_committed_table_flags_the_collapsed_relu_runs():
  """The ReLU RNN's BN* and LN end at 315.2 on every seed: the verdicts that use them say so,
  and table.md is what the code writes from the committed results."""
  folder = os.path.join(ROOT, "results", "rnn", "converged")
  results = study.load_results(folder)
  text = study.render_table(results)
  with open(os.path.join(folder, "table.md")) as f:
    assert f.read() == text
  assert "Collapsed: BN* 315.2, LN 315.2. Every seed ends at the same test perplexity" in text
  assert "| ReLU RNN | BN* vs BN | +135.2 | +75.1% | A higher | 0.000 | 0.000 | A higher; rests " \
         "on collapsed runs of BN* | 6, 6 |" in text
  # Every cell has its 6 seeds (PROTOCOL_RNN.md, 2026-12-07): none left out.
  assert text.count("Seeds: 0, 1, 2, 3, 4, 5.") == 3 and "Runs left out" not in text
  assert "Jobs finished: 144 of 144." in text
  assert text.count("rests on collapsed runs of") == 3  # BN* vs BN, LN* vs LN, LN-s vs LN
  assert study.collapsed([315.19, 315.195, 315.196]) and not study.collapsed([180.4, 179.5])
  assert not study.collapsed([315.2])


def test_plans_order_and_names():
  names = [j.name for j in study.STUDY.jobs()]
  assert len(names) == 144 and len(set(names)) == 144
  assert names[:6] == ["lstm-baseline-s0", "lstm-baseline-s1", "lstm-baseline-s2",
                       "lstm-dn_star-s0", "lstm-dn_star-s1", "lstm-dn_star-s2"]
  assert [p.name for p in study.STUDY.plans] == ["lstm", "tanh", "relu", "tanh_more",
                                                 "relu_more", "lstm_more"]
  # The extension (PROTOCOL_RNN.md, 2026-12-07): whole seeds first, the protocol's variant order.
  more = [j.name for j in study.STUDY.jobs(("tanh_more",))]
  assert more[:9] == [f"tanh-{v}-s3" for v in study.VARIANT_ORDER] + ["tanh-baseline-s4"]
  assert {j.seed for j in study.STUDY.jobs(("relu_more", "lstm_more"))} == {3, 4, 5}
  assert [j.name for j in study.STUDY.jobs(("tanh",), ("*-dn-s1",))] == ["tanh-dn-s1"]
  with pytest.raises(study.ConfigError, match="unknown cell"):
    study.plan_jobs("gru")
