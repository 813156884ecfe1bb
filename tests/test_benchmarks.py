"""The benchmark command runs end to end in its quick mode (tiny shapes, one round).

Timing targets are not asserted: CI machines are too noisy for that.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import __main__ as bench

pytestmark = pytest.mark.loose_promotion  # drives flax, optax and the experiment models


def test_benchmarks_md_notes_are_all_in_analysis_md():
  # `python -m benchmarks` writes BENCHMARKS.md from its tables and benchmarks/analysis.md:
  # a note written into BENCHMARKS.md alone is lost at the next run.
  import pathlib
  root = pathlib.Path(__file__).parents[1]
  text = (root / "BENCHMARKS.md").read_text()
  notes = text.split("\n## ", 2)[2].split("\n## Op level")[0]  # after "## Targets"
  assert ("## " + notes).strip() == (root / "benchmarks" / "analysis.md").read_text().strip()


@pytest.mark.slow
def test_quick_mode_writes_every_section(tmp_path):
  out = tmp_path / "BENCHMARKS.md"
  assert bench.main(["--quick", "--out", str(out)]) == 0
  text = out.read_text()
  for section in ("## Targets", "## Op level", "## Drop-in at flax's settings",
                  "## Window width", "## Tensor size",
                  "## Library optimizations", "## Model level", "flax LN", "paper conv"):
    assert section in text
  assert "nan" not in text.split("## Op level")[1].split("## Window width")[0]
  targets = text.split("## Targets")[1].split("\n\n")[1].splitlines()
  for contender in ("linen", "nnx", "functional"):  # float32, per flax variance mode
    assert len([t for t in targets if t.startswith(f"| {contender} fwd+bwd <= 1.0x flax")]) == 2


@pytest.mark.slow
def test_dropin_quick_mode_prints_every_ratio(capsys):
  from benchmarks import dropin
  assert dropin.main(["--quick"]) == 0
  rows = [r for r in capsys.readouterr().out.splitlines()
          if r.startswith("| ") and "---" not in r and not r.startswith("| case")]
  expected = 0
  for _dtype in dropin.DTYPES:
    for fast in dropin.MODES.values():
      for case, _ in dropin.QUICK_CASES:
        if case in ("RMS", "DN") and not fast:
          continue
        pairs = dropin.PAIRS.get(case, dropin.PAIRS[None])
        expected += len([ours for ours, _ in pairs if ours != "nnx"])  # nnx: only with --nnx
  assert len(rows) == expected and "nan" not in "".join(rows)
  for r in rows:
    assert float(r.split(" | ")[3].split(" ")[0]) > 0  # a ratio


@pytest.mark.slow
def test_dropin_forward_times_the_output_alone_on_the_given_shapes(capsys):
  from benchmarks import dropin
  argv = ["--quick", "--forward", "--dtypes", "float32", "--modes", "one-pass", "--cases", "LN",
          "--shapes", "2x3x8,2x5"]
  assert dropin.main(argv) == 0
  out = capsys.readouterr().out
  rows = [r.split(" | ") for r in out.splitlines() if r.startswith("| LN")]
  assert "forward alone" in out
  assert [(r[1], r[2]) for r in rows] == [("2x3x8", "linen"), ("2x3x8", "functional"),
                                          ("2x5", "linen"), ("2x5", "functional")]
  # forward alone: the step returns the output, not gradients
  calls = dropin.contenders("LN", (2, 3, 8), jnp.float32, True, forward=True)
  assert all(jnp.shape(call()) == (2, 3, 8) for call in calls.values())


@pytest.mark.parametrize("case,kwargs", [("LN", dict(masked=True)), ("BN", dict(masked=True)),
                                         ("GN", dict(masked=True)), ("RMS", dict(masked=True)),
                                         ("BN", dict(evaluate=True))])
def test_dropin_masked_and_evaluation_steps_compute_what_flax_s_do(case, kwargs):
  """What --mask and --eval time: every contender's forward equals its flax reference (the
  same mask, the running averages) where the mask keeps entries (divnorm's masked-out
  outputs are 0, flax's the formula's: docs/compatibility.md), and masking changes them."""
  from benchmarks import dropin
  shape = (4, 4, 4, 8)
  kept = np.asarray(jax.random.uniform(jax.random.key(2), shape) < 0.8) | (
      not kwargs.get("masked"))
  calls = dropin.contenders(case, shape, jnp.float32, True, forward=True, **kwargs)
  plain = dropin.contenders(case, shape, jnp.float32, True, forward=True)
  for ours, theirs in dropin.PAIRS[None]:
    if ours in calls:
      np.testing.assert_allclose(np.asarray(calls[ours]())[kept],
                                 np.asarray(calls[theirs]())[kept], rtol=2e-5, atol=2e-5)
      if kwargs.get("masked"):
        assert not np.allclose(calls[ours](), plain[ours]())


def test_dropin_profile_takes_the_flags_the_ratios_take(monkeypatch):
  # --profile profiles the contenders --mask, --forward and --eval time (it took none of
  # them: --mask --profile printed unmasked programs). The contenders are recorded, not
  # built: what is tested is which programs main asks for.
  from benchmarks import dropin
  asked = []
  monkeypatch.setattr(dropin, "contenders", lambda *args, **kwargs: asked.append(kwargs) or {})
  argv = ["--quick", "--profile", "--cases", "BN", "--dtypes", "float32", "--modes", "one-pass"]
  for flag, key in (("--mask", "masked"), ("--forward", "forward"), ("--eval", "evaluate"),
                    ("--params-first", "params_first")):
    asked.clear()
    assert dropin.main([*argv, flag]) == 0
    assert asked and all(kwargs[key] for kwargs in asked), (flag, asked)


def test_dropin_params_first_returns_the_same_gradients_parameters_first(capsys):
  """--params-first times the same gradients, returned in the nnx step's order."""
  from benchmarks import dropin
  shape = (2, 3, 8)
  first = dropin.contenders("LN", shape, jnp.float32, True, params_first=True)
  plain = dropin.contenders("LN", shape, jnp.float32, True)
  for name in ("flax", "linen"):
    (dparams, dx), (dx0, dparams0) = first[name](), plain[name]()
    assert jnp.shape(dx) == shape and set(dparams) == {"scale", "bias"}
    jax.tree.map(np.testing.assert_array_equal, (dparams, dx), (dparams0, dx0))
  argv = ["--quick", "--params-first", "--cases", "LN", "--dtypes", "float32", "--modes",
          "one-pass"]
  assert dropin.main(argv) == 0
  assert "linen steps return the parameters' gradients first" in capsys.readouterr().out


def test_dropin_eval_takes_batch_norm_alone(capsys):
  from benchmarks import dropin
  with pytest.raises(SystemExit):
    dropin.main(["--quick", "--eval", "--cases", "LN"])
  assert "--eval times BatchNorm alone" in capsys.readouterr().err



@pytest.mark.parametrize("module, argv, message", [
    ("dropin", ["--modes", "fast"], "argument --modes: 'fast' not known; choose from "
                                    "one-pass,two-pass"),
    ("dropin", ["--dtypes", "float32,f16"], "argument --dtypes: 'f16' not known"),
    ("dropin", ["--cases", "LN,IN"], "argument --cases: 'IN' not known; choose from "
                                     "LN,BN,GN,RMS,DN"),
    ("dropin", ["--shapes", "64x1024x"], "argument --shapes: '64x1024x' is not a list of shapes"),
    ("dropin", ["--shapes", "8x0"], "argument --shapes: '8x0' is not a list of shapes"),
    ("against_rev", ["--rev", "HEAD", "--cases", "DN"], "argument --cases: 'DN' not known"),
    ("against_rev", ["--rev", "HEAD", "--dn", "--mask"], "--mask is for the drop-in cases"),
    ("row_forms", ["--shape", "2x8,4x8"], "--shape takes one shape, got 2"),
    ("dropin", ["--rounds", "0"], "argument --rounds: '0' is not a positive integer; e.g. 15"),
    ("jvp", ["--rounds", "x"], "argument --rounds: 'x' is not a positive integer; e.g. 15"),
    ("haiku", ["--cases", "LN,XN"], "argument --cases: 'XN' not known; choose from "),
    ("numerics", ["--draws", "0"], "argument --draws: '0' is not a positive integer; e.g. 1"),
    ("gpu_kernels", ["--target", "no/such.txt"], "argument --target: 'no/such.txt' is not a file"),
    ("channels_first", ["--dtypes", "f16"], "argument --dtypes: 'f16' not known"),
    ("equinox", ["--cases", "LN,IN"], "argument --cases: 'IN' not known; choose from "
                                      "LN,RMS,GN,BN,BN-ema"),
    ("xla_group_sums", ["--channels", "12"], "--channels 12 is not a multiple of 8"),
    ("plain_sums", ["--tables", "error,speed"], "argument --tables: 'speed' not known"),
    ("plain_sums", ["--modes", "fast"], "argument --modes: 'fast' not known"),
    ("trace_time", ["--cases", "LN,IN"], "argument --cases: 'IN' not known; choose from "
                                         "LN,BN,GN"),
    ("trace_time", ["--layers", "0"], "argument --layers: '0' is not a positive integer"),
])
def test_benchmark_commands_name_the_bad_argument(module, argv, message, capsys):
  # A misspelt list entry was a KeyError traceback (`--modes fast`) or an empty run (a case
  # not in the list), --rounds 0 a StatisticsError after compiling; now argparse's usage
  # error (exit 2, `benchmarks.cli`), before anything is compiled or timed.
  import importlib
  main = importlib.import_module(f"benchmarks.{module}").main
  with pytest.raises(SystemExit) as exit_:
    main(argv)
  assert exit_.value.code == 2
  assert message in capsys.readouterr().err

@pytest.mark.slow
def test_numerics_quick_mode_measures_every_mode(capsys):
  from benchmarks import numerics
  assert numerics.main(["--quick"]) == 0
  rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| ") and "---" not in r]
  assert rows[0].startswith("| normalizer")
  errors = {(r.split(" | ")[0][2:], r.split(" | ")[1]): [float(e.strip(" |")) for e in
                                                         r.split(" | ")[2:]] for r in rows[1:]}
  for (name, mode), errs in errors.items():
    if not name.startswith("flax"):
      assert max(errs) < 2e-5, (name, mode, errs)  # divnorm: every mode, every offset
  assert errors["flax LN (H,W,C)", "one-pass (flax's default)"][1] > 1e-2  # flax loses digits


@pytest.mark.slow
def test_strategies_quick_mode_prints_every_table(capsys):
  from benchmarks import strategies
  assert strategies.main(["--quick"]) == 0
  text = capsys.readouterr().out
  for title in ("**Two sums of x - k", "**Group sums", "**Strategies", "**Window sums"):
    assert title in text
  rows = [r for r in text.splitlines() if r.startswith("| ") and "---" not in r]
  assert len(rows) == ((1 + len(strategies.REDUCTIONS)) + 3 + 4
                       + 1 + len(strategies.QUICK_WINDOW_CASES)) and "nan" not in "".join(rows)
  assert [r.split("|")[-2].strip() for r in rows[-2:]] == ["product", "reduce_window"]


@pytest.mark.slow
def test_haiku_quick_mode_prints_every_case_and_offset(capsys):
  from benchmarks import haiku
  assert haiku.main(["--quick"]) == 0
  rows = [r.split(" | ") for r in capsys.readouterr().out.splitlines()
          if r.startswith("| ") and "---" not in r]
  accuracy = {(r[0][2:], r[1]): (float(r[2]), float(r[3].strip(" |"))) for r in rows
              if r[1] in ("10000", "1e+06")}
  assert len(accuracy) == len(haiku.ACCURACY_LAYERS) * len(haiku.OFFSETS)
  assert all(ours < 2e-6 for _, ours in accuracy.values())  # divnorm: every layer, offset
  assert np.isnan(accuracy["BN", "10000"][0])  # haiku's one-pass variance is negative there
  speed = [r for r in rows if "x" in r[1]]
  assert [r[0][2:] for r in speed] == [name for name, _ in haiku.QUICK_CASES] * len(
      haiku.DTYPES)


@pytest.mark.slow
@pytest.mark.parametrize("api", [[], ["--nnx"]])
def test_trace_time_quick_mode_times_every_case(api, capsys):
  from benchmarks import trace_time
  assert trace_time.main(["--quick", *api]) == 0
  rows = [r.split(" | ") for r in capsys.readouterr().out.splitlines()
          if r.startswith("| ") and "---" not in r and not r.startswith("| case")]
  assert [r[0][2:] for r in rows] == list(trace_time.CASES)
  for row in rows:  # "divnorm / flax" seconds of tracing and compiling, each > 0
    assert all(float(t) > 0 for part in (row[2], row[4]) for t in part.split(" / "))


@pytest.mark.slow
def test_equinox_quick_mode_times_every_case_and_compares_the_gradients(capsys):
  from benchmarks import equinox
  assert equinox.main(["--quick"]) == 0
  rows = [r.split(" | ") for r in capsys.readouterr().out.splitlines()
          if r.startswith("| ") and "---" not in r and not r.startswith("| case")]
  assert [r[0][2:] for r in rows] == [name for name, _ in equinox.QUICK_CASES] * 2
  float32, bfloat16 = rows[:len(rows) // 2], rows[len(rows) // 2:]
  assert all(float(r[5].strip(" |")) < 1e-6 for r in float32)  # one formula, two codes
  assert all(float(r[5].strip(" |")) < 2e-2 for r in bfloat16[:-1])
  # equinox 0.13.8's BatchNorm(mode="ema") raises on a bfloat16 input (its `lax.select` of
  # a float32 and a bfloat16 mean): divnorm's is then timed alone
  ema = bfloat16[-1]
  assert float(ema[3]) > 0 and (ema[2] == "equinox raises TypeError"
                                or float(ema[5].strip(" |")) < 2e-2)


def test_channels_first_quick_mode_times_every_contender_and_its_error(capsys):
  from benchmarks import channels_first
  assert channels_first.main(["--quick", "--rev", "HEAD", "--dtypes", "float32"]) == 0
  rows = [r.split(" | ") for r in capsys.readouterr().out.splitlines()
          if r.startswith("| 2x") and "---" not in r]
  assert [r[2] for r in rows] == ["equinox", "divnorm.equinox", "group_norm",
                                  "flax, channels last", "group_norm at HEAD"]
  assert all(float(r[5].strip(" |")) < 1e-5 for r in rows)  # the gradients' error


def test_xla_group_sums_prints_both_errors_and_is_exact_without_ynnpack(capsys):
  from benchmarks import xla_group_sums
  assert xla_group_sums.main(["--batch", "2", "--channels", "16", "--positions", "8"]) == 0
  lines = capsys.readouterr().out.splitlines()
  assert lines[0].startswith("jax ") and "2x16x8" in lines[0]
  errors = [float(line.rsplit(": ", 1)[1]) for line in lines[1:]]
  assert len(errors) == 2 and errors[1] < 1e-6  # YNNPACK fusions off: float32 rounding


def test_plain_sums_quick_mode_prints_every_table(capsys):
  from benchmarks import plain_sums
  assert plain_sums.main(["--quick", "--dtypes", "float32"]) == 0
  rows = [r.split(" | ") for r in capsys.readouterr().out.splitlines()
          if r.startswith("| ") and "---" not in r and not r.startswith("| case")]
  cases, modes = plain_sums.cases(quick=True), list(plain_sums.MODES)
  errors = [r for r in rows if r[2] in ("normal", "exponential")]
  assert len(errors) == len(cases) * len(modes) * 2 * len(plain_sums.MEANS)
  # float32 rounding of outputs up to ~4 (sigma 0, fields of 96 to 1152 entries): ~1e-5
  assert all(float(e) < 5e-5 for r in errors for e in (r[4], r[5].strip(" |")))
  times = [r for r in rows if "N(0, 1)" in r[3]]
  assert len(times) == (len(cases) + 2) * len(modes)  # BN at an offset, GN under vmap
  sizes = [r for r in rows if r[2].isdigit()]
  assert [(r[1], int(r[2])) for r in sizes] == [(mode, 32) for mode in modes]


def test_same_program_ignores_metadata_only():
  from benchmarks.same_program import instructions
  a = '%add.1 = f32[3]{0} add(%x, %y), metadata={op_name="jit(f)/add" source_file="/a/b.py"}'
  b = '%add.1 = f32[3]{0} add(%x, %y), metadata={op_name="jit(f)/add" source_file="/c/d.py"}'
  c = '%add.1 = f32[3]{0} multiply(%x, %y), metadata={op_name="jit(f)/mul"}'
  assert instructions(a) == instructions(b) != instructions(c)


@pytest.mark.slow
def test_same_program_finds_head_unchanged(capsys):
  import subprocess

  from benchmarks import same_program
  status = subprocess.run(["git", "status", "--porcelain", "divnorm"], cwd=same_program.ROOT,
                          capture_output=True, text=True)
  if status.returncode or status.stdout:
    pytest.skip("not a git checkout, or divnorm/ has uncommitted changes (HEAD is not now)")
  assert same_program.main(["--rev", "HEAD"]) == 0
  rows = [r for r in capsys.readouterr().out.splitlines()[2:] if r.startswith("| ")]
  assert len(rows) == 19 and all(r.endswith("| yes |") for r in rows)


@pytest.mark.slow
def test_row_forms_quick_mode_measures_every_form(capsys):
  from benchmarks import row_forms
  assert row_forms.main(["--quick"]) == 0
  rows = [r.split(" | ") for r in capsys.readouterr().out.splitlines()
          if r.startswith("| ") and "---" not in r][1:]
  assert [r[0][2:] for r in rows] == list(row_forms.forms())
  for name, errors, *ratios in rows:
    errors = [float(e) for e in errors.split(" / ")]
    if name[2:].startswith("flax"):
      assert errors[1] > 1e-3  # flax's float32 sums lose digits at an offset of 1e4
    else:
      assert max(errors) < 1e-5, (name, errors)  # every other form: accurate at any offset
    assert all(float(q.split(" ")[0]) > 0 for q in ratios[:2])


@pytest.mark.slow
@pytest.mark.parametrize("masked", [False, True])
def test_against_rev_quick_mode_compares_every_case(capsys, masked):
  from benchmarks import against_rev
  assert against_rev.main(["--quick", "--rev", "HEAD"] + ["--mask"] * masked) == 0
  out = capsys.readouterr().out
  assert ("masked (80% kept)" in out) == masked
  rows = [r.split(" | ") for r in out.splitlines()
          if r.startswith("| ") and "---" not in r][1:]
  modes = sum(1 if case == "RMS" else 2 for case, _ in against_rev.QUICK_CASES)
  assert len(rows) == 2 * 2 * modes  # dtypes, then linen and functional per variance mode
  assert all(float(r[4].split(" ")[0]) > 0 for r in rows)


def test_against_rev_masks_every_call_with_mask():
  import divnorm
  import divnorm.linen
  from benchmarks import against_rev
  packages = {"now": (divnorm, divnorm.linen), "rev": (divnorm, divnorm.linen)}
  for masked in (False, True):
    for case, shape in against_rev.QUICK_CASES:
      calls = against_rev.calls(case, shape, jnp.float32, packages, masked=masked)
      masks = [c.args[-1] for c in calls.values()]
      assert all((m is not None) == masked for m in masks), case
      if masked:
        assert all(m.shape == shape and 0.5 < float(m.mean()) < 1 for m in masks), case


@pytest.mark.slow
def test_against_rev_dn_quick_mode_compares_every_case(capsys):
  from benchmarks import against_rev
  assert against_rev.main(["--quick", "--dn", "--rev", "HEAD"]) == 0
  rows = [r.split(" | ") for r in capsys.readouterr().out.splitlines()
          if r.startswith("| ") and "---" not in r][1:]
  assert len(rows) == len(against_rev.QUICK_DN_CASES)
  assert all(float(r[4].split(" ")[0]) > 0 for r in rows)


def test_gpu_fusion_counts_the_launched_kernels():
  import jax
  import jax.numpy as jnp

  from benchmarks.gpu_fusion import kernels, summary
  x = jnp.ones((4, 8))
  one = jax.jit(lambda x: x * 2).lower(x).compile().as_text()
  two = jax.jit(lambda x: (jnp.sum(x), x * 2)).lower(x).compile().as_text()
  assert len(kernels(one)) == 1
  assert len(kernels(two)) >= 2  # a reduce and an elementwise loop (or one multi-output)
  assert "parameter" not in summary(kernels(two))
  hlo = ("ENTRY %main (p: f32[4]) -> f32[4] {\n  %p = f32[4]{0} parameter(0)\n"
         "  ROOT %f = f32[4]{0} fusion(%p), kind=kCustom, calls=%c, backend_config="
         '{"fusion_backend_config":{"kind":"__triton"}}\n}\n')
  assert kernels(hlo) == ["fusion:Custom(triton)"]


def test_gpu_kernels_builds_every_program_and_reads_a_device_report():
  # The programs compile here for the CPU (no CUDA plugin in CI); on a described GPU the
  # same `rows` call is what `python -m benchmarks.gpu_kernels` prints.
  import jax

  from benchmarks import gpu_fusion, gpu_kernels
  got = gpu_kernels.rows(lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype),
                         gpu_fusion.SHAPES["quick"])
  expected = 2 * (sum(len(v) for v in gpu_fusion.functional().values())
                  + sum(len(v) for v in gpu_fusion.modules().values()))
  assert len(got) == expected and all(len(ks) >= 1 for *_, ks in got)
  report = ("| shape dtype | pass | contender | kernels | which | MB | ms |\n|---|---|\n"
            "| LN 8x512x768 float32 | fwd | flax two-pass | 1 | 1 fusion:Custom(triton) | 25.2 "
            "| 0.05 |\n| LN 8x512x768 float32 | fwd | x | FAILED: ValueError |\n")
  assert gpu_kernels.device_counts(report) == {
      ("LN 8x512x768 float32", "fwd", "flax two-pass"): (1, "1 fusion:Custom(triton)")}


def test_gpu_kernels_counts_every_dropin_program(monkeypatch):
  import jax

  from benchmarks import dropin, gpu_kernels
  monkeypatch.setattr(dropin, "CASES", [("LN", (2, 4, 16)), ("BN", (2, 8, 8, 8)),
                                         ("DN", (2, 8, 8, 8))])
  monkeypatch.setattr(dropin, "DTYPES", {"float32": dropin.DTYPES["float32"]})
  rows = gpu_kernels.dropin_rows(lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype))
  assert len(rows) == 2 * len(dropin.MODES)  # DN has no flax module: not counted
  assert all(int(n) >= 1 for r in rows for n in r.strip("| ").split(" | ")[3:])


def test_gpu_kernels_counts_layer_norm_over_any_row_length():
  import jax

  from benchmarks import gpu_kernels
  rows = gpu_kernels.row_length_rows(lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype),
                                     [(4, 8), (2, 3, 5)])
  assert [r.split(" | ")[0] for r in rows] == ["| 4x8", "| 2x3x5"]
  assert all(len(r.strip("| ").split(" | ")) == 4 for r in rows)


@pytest.mark.slow
def test_gpu_fusion_quick_mode_times_every_contender(tmp_path):
  from benchmarks import gpu_fusion
  assert gpu_fusion.main(["--quick", "--out", str(tmp_path)]) == 0
  text = (tmp_path / "gpu_fusion.md").read_text()
  rows = [r.split(" | ") for r in text.splitlines() if r.startswith("| ") and "---" not in r][1:]
  functions = gpu_fusion.functional()
  expected = 2 * sum(len(v) for v in functions.values()) + sum(
      len(v) for v in gpu_fusion.modules().values())
  assert len(rows) == expected and "FAILED" not in text
  assert all(int(r[3]) >= 1 and float(r[6]) > 0 for r in rows)
  errors = {r[2]: [float(e) for e in r[8].split(" |")[0].split(" / ")] for r in rows
            if r[0] == "| LN 2x4x16 float32" and r[1] == "fwd"}
  assert set(errors) == set(functions["LN"])
  for name, errs in errors.items():  # offsets 0, 1e4, 1e6
    if name in ("flax one-pass", "flax two-pass", "plain two-pass"):
      assert errs[2] > 1e-2, (name, errs)  # unshifted float32 sums lose digits at 1e6
    else:
      assert max(errs) < 1e-5, (name, errs)  # a shift from the data: accurate at any offset
  assert "===== LN 2x4x16 float32 fwd: divnorm two-pass =====" in (
      tmp_path / "gpu_fusion_hlo.txt").read_text()


@pytest.mark.slow
def test_gpu_fusion_row_lengths_and_modules_time_every_contender(tmp_path):
  from benchmarks import gpu_fusion
  assert gpu_fusion.main(["--quick", "--row_lengths", "--out", str(tmp_path)]) == 0
  assert gpu_fusion.main(["--quick", "--modules", "--out", str(tmp_path)]) == 0
  for name, contenders, passes in (
      ("gpu_fusion_row_lengths", gpu_fusion.row_length_contenders(), 2),
      ("gpu_fusion_modules", gpu_fusion.module_contenders(), 3)):
    text = (tmp_path / f"{name}.md").read_text()
    rows = [r.split(" | ") for r in text.splitlines() if r.startswith("| ") and "---" not in r][1:]
    assert "FAILED" not in text
    assert len(rows) == passes * len(contenders) * (
        len(gpu_fusion.ROW_LENGTHS["quick"]) if passes == 2 else 1)
    assert {r[2] for r in rows} == set(contenders)
    assert all(int(r[3]) >= 1 and float(r[6]) > 0 for r in rows)
  # the forced paths are the two paths: on the CPU both are the core's program
  text = (tmp_path / "gpu_fusion_modules_hlo.txt").read_text()
  assert "===== LN module 2x4x16 float32 fwd+bwd: divnorm.linen, core path =====" in text


@pytest.mark.slow
def test_numerics_draws_and_jit_take_the_largest_error(capsys):
  from benchmarks import numerics
  rows = {}
  for argv in (["--quick"], ["--quick", "--draws", "2"], ["--quick", "--draws", "2", "--jit"]):
    assert numerics.main(argv) == 0
    out = capsys.readouterr().out
    rows[tuple(argv)] = {tuple(r.split(" | ")[:2]): [float(e.strip(" |")) for e in
                                                     r.split(" | ")[2:]]
                         for r in out.splitlines() if r.startswith("| ") and "---" not in r
                         and not r.startswith("| normalizer")}
  one, two, jitted = rows.values()
  assert one.keys() == two.keys() == jitted.keys()
  assert ("| LN (C)", "two-pass (default)") in one
  for key, errs in one.items():  # the first draw is seed 0's: the max over two is no less
    assert all(b >= a for a, b in zip(errs, two[key], strict=True)), key
    if not key[0].startswith("| flax"):
      assert max(jitted[key]) < 2e-5, key


def test_error_parts_help_prints_usage_and_runs_nothing(capsys):
  """`python -m benchmarks.error_parts --help` (it once ignored its arguments and measured)."""
  from benchmarks import error_parts
  with pytest.raises(SystemExit) as exit_info:
    error_parts.main(["--help"])
  out = capsys.readouterr().out
  assert exit_info.value.code == 0 and "usage: python -m benchmarks.error_parts" in out
  assert "| seed | offset |" not in out


@pytest.mark.parametrize("rounds", [5, 7, 25])
def test_interleaved_rounds_run_neighbours_in_both_orders_alike(rounds, monkeypatch):
  """The program run before a call changes its time (page faults, caches): each function
  runs just before and just after each neighbour within one round of each other (rotation
  alone ran the drop-in list's flax contender before its divnorm partner in 21 of 25 rounds
  and never after)."""
  from collections import Counter

  from benchmarks import timing
  monkeypatch.setattr(timing, "calls_per_round", lambda fn, target_s: 1)
  ran = []
  names = ["flax", "linen", "flax nnx", "nnx", "flax no-affine", "functional"]
  timing.interleaved({n: (lambda n=n: ran.append(n)) for n in names}, rounds=rounds)
  pairs = Counter(zip(ran, ran[1:], strict=False))
  for a, b in zip(names, names[1:], strict=False):
    assert pairs[a, b] + pairs[b, a] >= rounds - 2
    assert abs(pairs[a, b] - pairs[b, a]) <= 1, (a, b, pairs[a, b], pairs[b, a])
