"""SRCNN experiment: metrics vs a second implementation, VALID geometry, real steps, errors."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal
import skimage.data
import skimage.io

from experiments.sr import data as sr
from experiments.sr import metrics
from experiments.sr import model as srcnn
from experiments.sr import task as sr_task
from experiments.sr.configs import sr_srcnn, sr_srcnn_fast


def _psnr_reference(a, b):
  mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
  return 10.0 * np.log10(255.0**2 / mse)


def _ssim_reference(a, b):
  """Wang et al. (2004) as their ssim_index.m: 11x11 Gaussian (sigma 1.5), 'valid' filtering."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  r = np.arange(-5, 6)
  g = np.exp(-(r**2) / (2 * 1.5**2))
  w = np.outer(g, g) / np.outer(g, g).sum()
  f = lambda x: scipy.signal.correlate2d(x, w, mode="valid")
  c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
  mu_a, mu_b = f(a), f(b)
  s_aa, s_bb, s_ab = f(a * a) - mu_a**2, f(b * b) - mu_b**2, f(a * b) - mu_a * mu_b
  m = ((2 * mu_a * mu_b + c1) * (2 * s_ab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (s_aa + s_bb + c2))
  return float(m.mean())


def test_psnr_and_ssim_match_a_second_implementation():
  y = skimage.data.camera()[100:164, 200:280].astype(np.float64)
  rng = np.random.default_rng(0)
  noisy = np.clip(y + rng.normal(0, 12, y.shape), 0, 255)
  blurred = scipy.signal.convolve2d(y, np.ones((3, 3)) / 9, mode="same", boundary="symm")
  for est in (noisy, blurred):
    b = 8
    ref_t, ref_e = y[b:-b, b:-b], np.round(est)[b:-b, b:-b]
    assert metrics.psnr(y, est) == pytest.approx(_psnr_reference(ref_t, ref_e), abs=1e-9)
    assert metrics.ssim(y, est) == pytest.approx(_ssim_reference(ref_t, ref_e), abs=1e-6)
  assert metrics.ssim(y, y) == pytest.approx(1.0)
  with pytest.raises(ValueError, match="one shape"):
    metrics.psnr(y, y[:-1])


@pytest.mark.parametrize("variant", srcnn.NETWORK_VARIANTS)
def test_valid_output_shape(variant):
  model = srcnn.SRCNN(variant=variant)
  x = jnp.zeros((2, 33, 41, 1))
  variables = model.init(jax.random.PRNGKey(0), x, train=False)
  out = model.apply(variables, x, train=False)
  assert out.shape == (2, 33 - 16, 41 - 16, 1) and srcnn.BORDER == 8
  assert srcnn.crop_target(x).shape == out.shape


def test_output_is_aligned_with_the_cropped_target():
  # Delta kernels at the centre make the network the identity on positive inputs:
  # its output must then equal the target cropped by BORDER, pixel for pixel.
  model = srcnn.SRCNN(variant="srcnn")
  x = jax.random.uniform(jax.random.PRNGKey(1), (1, 30, 37, 1), minval=0.1, maxval=1.0)
  variables = model.init(jax.random.PRNGKey(0), x, train=False)

  def delta(kernel):
    k = jnp.zeros_like(kernel)
    c = kernel.shape[0] // 2
    return k.at[c, c, 0, 0].set(1.0)

  params = jax.tree_util.tree_map_with_path(
      lambda path, p: delta(p) if path[-1].key == "kernel" else jnp.zeros_like(p),
      variables["params"])
  out = model.apply({"params": params}, x, train=False)
  np.testing.assert_allclose(out, srcnn.crop_target(x), atol=1e-6)
  assert float(srcnn.loss_fn(out, x)) == pytest.approx(0.0, abs=1e-12)


def _folder(tmp_path):
  """Two small real photographs as an image folder (train and test source)."""
  tmp_path.mkdir(parents=True, exist_ok=True)
  photo = skimage.data.astronaut()
  # One size, so full-image prediction compiles once.
  skimage.io.imsave(tmp_path / "a.png", photo[40:100, 180:240], check_contrast=False)
  skimage.io.imsave(tmp_path / "b.png", skimage.data.coffee()[100:160, 200:260],
                    check_contrast=False)
  return f"folder:{tmp_path}"


def _tiny(cfg, source, steps=2):
  cfg.source = source
  cfg.num_steps = steps
  cfg.batch_size = 8
  cfg.eval_patches = 8
  cfg.eval_batch_size = 8
  cfg.eval_every = 0
  cfg.checkpoint_every = 0
  cfg.log_every = 1
  return cfg


@pytest.mark.loose_promotion  # optax/orbax inside the engine
@pytest.mark.parametrize("variant", [  # DN*: the quick tier's real steps
    pytest.param("SRCNN", marks=pytest.mark.slow), pytest.param("BN", marks=pytest.mark.slow),
    "DN*"])
def test_two_real_steps_of_every_variant(variant, tmp_path):
  source = _folder(tmp_path / "images")
  cfg = _tiny(sr_srcnn_fast.get_config(f"{variant},3,2"), source)
  test_images = sr.test_set(source, scale=3)
  result = sr_task.train_and_evaluate(cfg, str(tmp_path / "run"), progress=False,
                                      test_images=test_images)
  assert int(result.train_state.step) == 2
  losses = [r["loss"] for r in result.history if r["kind"] == "train"]
  assert len(losses) == 2 and all(np.isfinite(losses))
  m = result.eval_metrics
  assert np.isfinite(m["psnr"]) and 0 < m["ssim"] <= 1 and m["count"] == 2
  if variant == "BN":
    assert "batch_stats" in result.train_state.state
  if variant == "DN*":  # the L1 term is in the objective
    assert all(r["penalty"] > 0 for r in result.history if r["kind"] == "train")
  saved = json.loads((tmp_path / "run" / "sr_eval.json").read_text())
  assert saved["mean"]["psnr"] == pytest.approx(m["psnr"])


@pytest.mark.loose_promotion
def test_bicubic_variant_scores_the_input(tmp_path):
  source = _folder(tmp_path / "images")
  cfg = sr_srcnn.get_config(f"Bicubic,4,{source}")
  result = sr_task.train_and_evaluate(cfg, None, progress=False)
  images = sr.test_set(source, scale=4)
  b = srcnn.BORDER
  expect = np.mean([metrics.psnr(im.target[b:-b, b:-b], im.bicubic[b:-b, b:-b] * 255.0, border=0)
                    for im in images])
  assert result.eval_metrics["psnr"] == pytest.approx(expect)


@pytest.mark.slow  # trains
@pytest.mark.loose_promotion
def test_reproduce_writes_table_and_figure_and_trains_dn_star(tmp_path):
  from experiments import engine
  from experiments.sr import reproduce
  source = _folder(tmp_path / "images")
  out = tmp_path / "out"
  reproduce.main(["--num_steps", "2", "--scales", "3", "--variants", "bicubic,dn",
                  "--source", source, "--workdir", str(tmp_path / "runs"), "--out", str(out),
                  "--crop", "0,0,32", "--no_progress", "--set", "batch_size=8",
                  "--set", "eval_batch_size=8", "--set", "eval_patches=8",
                  "--set", "eval_every=0", "--set", "checkpoint_every=0"])
  table = (out / "table.md").read_text()
  assert "| DN* |" in table and "paper, Set14 x3" in table and "29.34 / 0.8219" in table
  assert (out / "figure.png").stat().st_size > 1000
  assert set(json.loads((out / "results.json").read_text())["mean"]["x3"]) == {"bicubic", "dn"}
  rows = engine.read_metrics(str(tmp_path / "runs" / "x3_dn"), "train")
  assert [r["step"] for r in rows] == [1, 2]
  assert all(np.isfinite(r["loss"]) and r["penalty"] > 0 for r in rows)  # DN*'s L1 term


def test_config_errors_are_clear():
  with pytest.raises(ValueError, match=r"scale=5 is not supported"):
    sr_srcnn.get_config("DN*,5")
  with pytest.raises(ValueError, match="unknown SR variant 'LN'"):
    sr_srcnn.get_config("LN,3")
  with pytest.raises(ValueError, match="NUM_STEPS"):
    sr_srcnn_fast.get_config("DN*,3")
  cfg = sr_srcnn.get_config("DN*,4")
  assert (cfg.optimizer.name, cfg.optimizer.learning_rate, cfg.optimizer.momentum,
          cfg.batch_size, cfg.patch_size) == ("momentum", 1e-4, 0.9, 1, 33)
  assert tuple(cfg.norm.dn_summation) == (5, 5) and tuple(cfg.norm.dn_suppression) == (7, 7)


def test_model_input_errors():
  model = srcnn.SRCNN()
  with pytest.raises(ValueError, match=r"\(B, H, W, 1\)"):
    model.init(jax.random.PRNGKey(0), jnp.zeros((1, 40, 40, 3)), train=False)
  with pytest.raises(ValueError, match="too small"):
    model.init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 40, 1)), train=False)


# ---- the study (results/PROTOCOL_SR.md) ------------------------------------------------------

def test_study_plans_are_the_protocols():
  from experiments.sr import study
  from experiments.sr.configs import sr_study
  x3 = study.STUDY.plan("x3").jobs
  assert [j.name for j in x3[:4]] == ["x3-srcnn-s0", "x3-bn-s0", "x3-dn-s0", "x3-srcnn-s1"]
  assert len(x3) == 9 and {j.seed for j in x3} == {0, 1, 2}
  assert [p.name for p in study.STUDY.plans] == ["x3", "x4", "x4_more"]
  more = study.STUDY.plan("x4_more").jobs  # PROTOCOL_SR.md's extension of 2026-12-08
  assert [j.name for j in more[:4]] == ["x4-srcnn-s3", "x4-bn-s3", "x4-dn-s3", "x4-srcnn-s4"]
  assert len(more) == 9 and {j.seed for j in more} == {3, 4, 5} and {j.scale for j in more} == {4}
  cfg = study.job_config(study.Job(3, "dn", 2))
  assert (cfg.seed, cfg.num_steps, cfg.source, cfg.test_source) == (
      2, sr_study.NUM_STEPS, "photographs", "photographs")
  assert cfg.optimizer.boundaries == [int(0.8 * sr_study.NUM_STEPS)] and cfg.augment
  # The pilots' config (results/sr/pilots) at the study's steps, with rotations/flips.
  pilot = sr_srcnn_fast.get_config(f"DN*,3,{sr_study.NUM_STEPS}")
  assert (cfg.batch_size, dict(cfg.optimizer)) == (pilot.batch_size, dict(pilot.optimizer))
  # The paper's network and DN*: only the schedule is ours.
  paper = sr_srcnn.get_config("DN*,3")
  assert dict(cfg.norm) == dict(paper.norm) and cfg.init_std == paper.init_std
  assert (cfg.norm.dn_sigma, cfg.norm.dn_l1_alpha, tuple(cfg.norm.dn_suppression)) == (
      1.0, 0.1, (7, 7))


def test_one_sided_p_is_welchs_one_sided_test():
  from scipy import stats

  from experiments.sr import study
  a, b = [30.1, 30.3, 30.2], [29.9, 30.0, 30.25]
  for alternative in ("greater", "less"):
    for shift in (0.0, -0.2, 0.2):
      expect = stats.ttest_ind(np.subtract(a, shift), b, equal_var=False,
                               alternative=alternative).pvalue
      assert study.one_sided_p(a, b, alternative=alternative, shift=shift) == pytest.approx(
          expect, rel=1e-9)
  assert np.isnan(study.one_sided_p([30.0], b, alternative="greater"))
  assert np.isnan(study.one_sided_p(a, [30.0], alternative="greater"))  # one seed is no constant
  # Bicubic is a constant: the one-sample t-test, and its interval, of the seeds against it.
  expect = stats.ttest_1samp(a, 29.9, alternative="greater").pvalue
  assert study.one_sided_p(a, [29.9], alternative="greater", constant_b=True) == pytest.approx(
      expect)
  ci = stats.ttest_1samp(a, 29.9).confidence_interval(0.95)
  np.testing.assert_allclose(study.interval(a, [29.9], constant_b=True),
                             (ci.low - 29.9, ci.high - 29.9))
  welch = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
  np.testing.assert_allclose(study.interval(a, b), (welch.low, welch.high))


@pytest.mark.parametrize("dn, verdict", [
    ([30.21, 30.25, 30.23], "holds"),            # equal to SRCNN within 0.05 dB
    ([30.55, 30.60, 30.58], "holds"),            # beats it
    ([29.70, 29.75, 29.72], "does not hold"),    # 0.5 dB below, tightly
    ([29.2, 30.9, 30.1], "not established"),     # too noisy to say
    ([30.2], "not established"),                 # one seed
])
def test_claims_verdicts(dn, verdict):
  from experiments.sr import study
  values = {"bicubic": [29.9], "srcnn": [30.20, 30.25, 30.24], "bn": [24.0, 24.6, 23.9],
            "dn": dn}
  rows = {r["a"]: r for r in study.claim_tests(values)}
  assert rows["srcnn"]["verdict"] == "holds" and rows["bn"]["verdict"] == "holds"
  assert rows["dn"]["verdict"] == verdict
  low, high = rows["dn"]["ci95"]
  if len(dn) > 1:
    assert low < rows["dn"]["diff"] < high


def _sr_rows(psnr_by_job):
  """Synthetic study results: {job name: row} with one test photograph scored as the run."""
  from experiments.engine import study as runner
  from experiments.sr import study
  rows = {}
  for (scale, variant, seed), psnr in psnr_by_job.items():
    job = study.Job(scale, variant, seed)
    rows[job.name] = {**runner.job_fields(job), "machine": "test", "psnr": psnr, "ssim": 0.8,
                      "images": [{"name": "astronaut", "psnr": psnr, "ssim": 0.8}]}
  return rows


def test_x4_uses_seeds_0_to_2_and_each_later_seed_complete_for_all_three_models():
  """PROTOCOL_SR.md's extension of 2026-12-08: x4's table and tests use seeds 0-2 and each of
  seeds 3-5 whose three models all finished; a partial seed's runs are named, not used; the
  claims on seeds 0-2 stand beside; x3 keeps seeds 0-2."""
  from experiments.sr import study
  first = {"srcnn": [29.06, 29.12, 29.09], "bn": [26.68, 26.47, 26.50],
           "dn": [27.36, 27.18, 28.29]}
  psnr = {(4, v, s): x for v, xs in first.items() for s, x in enumerate(xs)}
  psnr |= {(3, v, s): x + 1 for (_, v, s), x in psnr.items()}
  bicubic = {s: {"psnr": 28.43, "ssim": 0.81, "images": [
      {"name": "astronaut", "psnr": 28.0, "ssim": 0.8}]} for s in (3, 4)}
  only_first = study.render(_sr_rows(psnr), bicubic)
  assert "Runs left out: none." in only_first and "seeds 0-2 |" not in only_first
  assert only_first.count("Seeds used: 0-2 ") == 1  # x4 only
  later = {"srcnn": 29.10, "bn": 26.55, "dn": 27.41}
  psnr |= {(4, v, 3): x for v, x in later.items()}
  psnr |= {(4, "srcnn", 4): 99.0, (3, "dn", 3): 99.0}  # a partial seed 4; x3 is not extended
  md = study.render(_sr_rows(psnr), bicubic)
  assert "Seeds used: 0-3 (" in md and "Runs left out: x4-srcnn-s4." in md
  assert "99.00" not in md and md.count("Seeds used") == 1
  x3, x4 = md.split("## x4")
  assert "| DN* | 28.610 ± 0.596 |" in x3 and "s2 29.29 |" in x3
  assert "| DN* | 27.560 ± 0.497 |" in x4 and "s2 28.29, s3 27.41 |" in x4
  assert f"| astronaut | 28.00 | {np.mean(first['srcnn'] + [29.10]):.2f} |" in x4
  four = {v: xs + [later[v]] for v, xs in first.items()}
  for row, old in zip(study.claim_tests({**four, "bicubic": [28.43]}),
                      study.claim_tests({**first, "bicubic": [28.43]}), strict=True):
    line = next(x for x in x4.splitlines() if x.startswith(f"| {row['claim'][:20]}"))
    cells = [c.strip() for c in line.split("|")[2:-1]]
    assert cells[0] == f"{row['diff']:+.3f}" and cells[2] == study._p(row["p_holds_holm"])
    assert cells[3] == study._p(row["p_fails_holm"]) and cells[6] == f"**{row['verdict']}**"
    assert cells[5] == ("4, -" if row["b"] == "bicubic" else "4, 4")
    assert cells[7] == (f"{old['diff']:+.3f}, {old['verdict']} (holds "
                        f"{study._p(old['p_holds_holm'])}, does not hold "
                        f"{study._p(old['p_fails_holm'])})")


def test_committed_table_is_what_the_report_writes_from_the_committed_results():
  """results/sr/study/table.md is `render` of the committed results (each job's result.json and
  bicubic's scores): x3 on seeds 0-2, x4 on seeds 0-5 with seeds 0-2 beside."""
  from experiments.engine import study as runner
  from experiments.sr import study
  folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        study.STUDY.results_dir)
  bicubic = {}
  for scale in study.SCALES:
    with open(os.path.join(folder, f"bicubic_x{scale}.json")) as f:
      bicubic[scale] = json.load(f)
  text = study.render(runner.load_results(folder), bicubic)
  with open(os.path.join(folder, "table.md")) as f:
    assert f.read() == text
  assert "Seeds used: 0-5 (" in text and "Runs left out: none." in text
  assert "| -1.614 | [-2.064, -1.165] | 1.000 | 6.7e-04 | -0.0283 | 6, 6 | **does not hold** | " \
         "-1.480, not established (holds 0.967, does not hold 0.098) |" in text
  x3 = text.split("## x4")[0]
  assert "| -2.141 | [-3.259, -1.024] |" in x3 and "**does not hold**" in x3 and "seeds 0-2 |" not in x3


def test_claims_that_fail_say_so():
  from experiments.sr import study
  values = {"bicubic": [29.9], "srcnn": [29.1, 29.2, 29.15], "bn": [29.5, 29.6, 29.55],
            "dn": [29.1, 29.2, 29.15]}
  rows = {r["a"]: r for r in study.claim_tests(values)}
  assert rows["srcnn"]["verdict"] == "does not hold"  # below bicubic on every seed
  assert rows["bn"]["verdict"] == "does not hold"  # BN above SRCNN
  assert rows["dn"]["verdict"] == "holds"


@pytest.mark.slow  # trains and scores a whole photograph
@pytest.mark.loose_promotion  # optax/orbax inside the engine
def test_study_job_trains_dn_star_and_the_report_reads_it(tmp_path):
  """One study job of DN*, shrunk to 2 steps, then the report on it."""
  from experiments import engine
  from experiments.engine import workers
  from experiments.sr import study
  runs, results = str(tmp_path / "runs"), str(tmp_path / "results")
  job = study.Job(3, "dn", 0, num_steps=2)
  row = study.run_job(job, runs, results, overrides=[
      "batch_size=8", "eval_patches=8", "eval_batch_size=8", "max_test_images=1"])
  out = tmp_path / "results" / job.name
  workers.write_json(str(out / "result.json"), row)  # as the runner does
  assert sorted(p.name for p in out.iterdir()) == [
      "config.json", "crop.png", "metrics.jsonl", "result.json", "sr_eval.json"]
  rows = engine.read_metrics(str(tmp_path / "runs" / job.name), "train")
  assert [r["step"] for r in rows] == [1, 2] and all(r["penalty"] > 0 for r in rows)
  assert [im["name"] for im in row["images"]] == ["astronaut"]
  assert row["psnr"] == pytest.approx(row["images"][0]["psnr"]) == pytest.approx(
      row["figure_image_psnr"])
  # Two synthetic SRCNN seeds beside the real job: the report tests what it has.
  for seed, psnr in ((0, 30.0), (1, 30.1)):
    name = study.Job(3, "srcnn", seed).name
    os.makedirs(os.path.join(results, name))
    workers.write_json(os.path.join(results, name, "result.json"), {
        **row, "variant": "srcnn", "seed": seed, "name": name, "psnr": psnr, "ssim": 0.9})
  md = study.report(results)
  assert md == (tmp_path / "results" / "table.md").read_text()
  assert "| SRCNN | 30.050 ± 0.071 | 0.9000 ± 0.0000 | s0 30.00, s1 30.10 |" in md
  assert "| BN | not run |" in md and "## x4" in md and "Not run." in md
  assert "SRCNN beats bicubic" in md and "**not established**" in md
  assert (tmp_path / "results" / "figure_x3.png").stat().st_size > 10_000
  assert json.loads((tmp_path / "results" / "bicubic_x3.json").read_text())["count"] == 5


def test_bn_diagnosis_refuses_a_workdir_without_a_finished_run(tmp_path, capsys):
  """It re-scores a finished run; a mistyped or unfinished workdir is an error, not a new
  training run in a new folder (once it trained one)."""
  from experiments.sr import bn_diagnosis

  missing = tmp_path / "typo_x3_bn"
  with pytest.raises(SystemExit) as exit_info:
    bn_diagnosis.main(["--workdir", str(missing), "--scale", "3", "--num_steps", "2"])
  assert exit_info.value.code == 2 and not missing.exists()
  assert "no finished run there" in capsys.readouterr().err
  srcnn = tmp_path / "x3_srcnn"
  srcnn.mkdir()
  (srcnn / "sr_eval.json").write_text(json.dumps({"variant": "srcnn", "scale": 3}))
  with pytest.raises(SystemExit):
    bn_diagnosis.main(["--workdir", str(srcnn), "--scale", "3"])
  assert "variant 'srcnn' at x3, not 'bn' at x3" in capsys.readouterr().err
  assert bn_diagnosis.unfinished(str(srcnn), "srcnn", 3) is None


def test_table_labels_dn_without_the_paper_s_l1_weight_as_not_dn_star(tmp_path):
  """An ablation run with another L1 weight is not the paper's DN*: its row says so."""
  import ml_collections

  from experiments.sr import reproduce
  results = {"x3": {"dn": {"psnr": 29.0, "ssim": 0.83}, "srcnn": {"psnr": 28.8, "ssim": 0.82}}}
  cfgs = {v: ml_collections.ConfigDict({"norm": {"dn_l1_alpha": alpha}})
          for v, alpha in (("dn", 0.0), ("srcnn", 0.1))}
  text = reproduce.write_table(str(tmp_path / "t.md"), results, [3], ["srcnn", "dn"],
                               test_name="photographs", note="", cfgs=cfgs)
  assert "| DN, L1 alpha 0 (DN*: 0.1) | 29.00 / 0.8300 |" in text and "| SRCNN |" in text
  cfgs["dn"].norm.dn_l1_alpha = 0.1
  assert "| DN* | 29.00" in reproduce.write_table(
      str(tmp_path / "t.md"), results, [3], ["dn"], test_name="p", note="", cfgs=cfgs)
