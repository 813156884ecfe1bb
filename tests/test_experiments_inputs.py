"""Bad flags, config values and data files fail before any work, naming the flag or file (issue 13)."""

import gzip
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import skimage.data
import skimage.io

from experiments import config, main
from experiments.config import ConfigError, DataError
from experiments.data import idx, images

pytestmark = pytest.mark.loose_promotion  # orbax, optax, tfds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CNN = "experiments/cnn/configs/cnn_short.py:BN,fashion_mnist,2"


def _main_fails(*flags, match):
  with pytest.raises(ConfigError, match=match):
    main.main(["--config", CNN, "--no_progress", *flags])


def test_bad_set_flags_fail_before_any_work(tmp_path):
  wd = str(tmp_path / "run")
  _main_fails("--set", "num_steps=-3", "--workdir", wd,
              match=r"--set num_steps=-3: must be a positive integer; e.g. --set num_steps=600")
  _main_fails("--set", "batch_size=0",
              match=r"--set batch_size=0: must be a positive integer; e.g. --set batch_size=")
  _main_fails("--set", "batch_size=-4", match=r"--set batch_size=-4: must be a positive integer")
  _main_fails("--set", "nope.lr=1", match=r"--set nope.lr=1: the config has no section 'nope'; "
                                          r"sections and fields there: .*batch_size")
  _main_fails("--set", "batch_sise=8", match=r"the config has no field 'batch_sise'")
  _main_fails("--set", "batch_size=abc",
              match=r"--set batch_size=abc: batch_size must be of type int \(now 100\); 'abc' "
                    r"is a str. E.g. --set batch_size=100")
  _main_fails("--set", "optimizer.learning_rate=-1.0",
              match=r"--set optimizer.learning_rate=-1.0: must be a finite number > 0")
  _main_fails("--set", "max_train_examples=0", match=r"--set max_train_examples=0: must be a "
                                                     r"positive integer; e.g.")
  _main_fails("--set", f"data_dir={str(tmp_path / 'missing')!r}",
              match=r"--set data_dir=.*missing': does not exist; pass an existing folder")
  _main_fails("--set", "border='reflect'",
              match=r"--set border='reflect': valid choices are valid, zeros, "
                    r"zeros_with_divisor_bug")
  assert not os.path.exists(wd)  # nothing was written


def test_bad_config_arguments_are_flag_errors():
  """A bad `--config FILE:ARG` is a ConfigError naming --config and a valid argument."""
  cases = {
      "experiments/cnn/configs/cnn.py:XN,cifar10": r"unknown variant 'XN'",
      "experiments/cnn/configs/cnn_short.py:DN,fashion_mnist":
          r"expected 'VARIANT,DATASET,NUM_STEPS\[,BORDER\]'",
      "experiments/rnn/configs/rnn_lm_quick.py:gru,dn": r"Unknown RNN cell 'gru'",
      "experiments/rnn/configs/rnn_lm.py:lstm,XN": r"Unknown RNN variant 'XN'",
      "experiments/sr/configs/sr_srcnn_fast.py:DN*,5,10": r"scale=5 is not supported",
      "experiments/sr/configs/sr_srcnn_fast.py:XN,3,10": r"XN",
  }
  for spec, message in cases.items():
    path = spec.partition(":")[0]
    with pytest.raises(ConfigError, match=rf"^--config '{re.escape(spec)}': .*{message}.* "
                                          rf"E\.g\. --config '{re.escape(path)}:"):
      main.main(["--config", spec, "--no_progress"])


def test_data_and_size_errors_name_the_flag_to_change(tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(FileNotFoundError, match=r"with --set data_dir=FOLDER\.") as e:
    main.main(["--config", CNN, "--no_progress", "--set", f"data_dir={str(empty)!r}",
               "--set", "batch_size=96", "--set", "eval_batch_size=96"])
  assert isinstance(e.value, ConfigError)  # a flag error on the command line, no traceback
  _main_fails("--set", "max_train_examples=50", "--set", "batch_size=96",
              "--set", "eval_batch_size=96",
              match=r"--set max_train_examples=50 is fewer than one batch \(batch_size=96\); "
                    r"e.g. --set max_train_examples=960, or lower --set batch_size")
  with pytest.raises(ConfigError, match=r"--set norm.dn_window=31, or a wider model with --set "
                                        r"model.hidden_size=61"):
    main.main(["--config", "experiments/rnn/configs/rnn_lm_quick.py:lstm,dn", "--no_progress",
               "--set", "model.hidden_size=32"])
  from experiments.data import batching
  with pytest.raises(ConfigError, match=r"--set batch_size=8 exceeds the 5 training examples"):
    next(batching.train_batches({"x": np.zeros((5, 1))}, batch_size=8, seed=0))


def test_a_bad_config_argument_exits_2_without_a_traceback(tmp_path):
  env = {**os.environ, "PYTHONPATH": ROOT}
  p = subprocess.run([sys.executable, "-m", "experiments.main", "--config",
                      "experiments/cnn/configs/cnn.py:XN,cifar10"], env=env, cwd=tmp_path,
                     capture_output=True, text=True, timeout=120)
  assert p.returncode == 2, p.stderr[-2000:]
  assert "main.py: error: --config 'experiments/cnn/configs/cnn.py:XN,cifar10': " in p.stderr
  assert "Traceback" not in p.stderr


def test_a_missing_config_file_lists_the_configs():
  with pytest.raises(ConfigError, match=r"no config file 'experiments/configs/cnn.py'.*"
                                        r"experiments/cnn/configs/cnn_short.py"):
    main.main(["--config", "experiments/configs/cnn.py:DN,cifar10"])


def test_command_line_exit_status_and_message_from_another_directory(tmp_path):
  """`python -m experiments.main` from outside the repository: config found, flag named."""
  env = {**os.environ, "PYTHONPATH": ROOT}
  p = subprocess.run([sys.executable, "-m", "experiments.main", "--config", CNN,
                      "--set", "num_steps=-3"], env=env, cwd=tmp_path, capture_output=True,
                     text=True, timeout=120)
  assert p.returncode == 2, p.stderr[-2000:]
  assert "error: --set num_steps=-3: must be a positive integer" in p.stderr
  assert "Traceback" not in p.stderr


def _write_split(directory, *, labels=None, n=16, gz=True):
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 10, size=(n,), dtype=np.uint8) if labels is None else labels
  ext = ".gz" if gz else ""
  imgs = rng.integers(0, 256, size=(len(labels), 6, 6), dtype=np.uint8)
  for prefix in ("train", "t10k"):
    idx.write_idx(str(directory / f"{prefix}-images-idx3-ubyte{ext}"), imgs)
    idx.write_idx(str(directory / f"{prefix}-labels-idx1-ubyte{ext}"), labels)
  return directory / f"train-images-idx3-ubyte{ext}"


def test_damaged_gzip_idx_files_name_the_file(tmp_path):
  path = _write_split(tmp_path)
  good = path.read_bytes()
  cases = {
      "truncated": (good[:len(good) // 2], r"is a damaged gzip file \(EOFError"),
      "bad CRC": (good[:-8] + bytes(b ^ 0xFF for b in good[-8:-4]) + good[-4:],
                  r"is a damaged gzip file \(BadGzipFile"),
      "cut header": (gzip.compress(gzip.decompress(good)[:6]),
                     r"the header is cut short \(6 bytes; a 3-d IDX header has 16\)"),
      "cut data": (gzip.compress(gzip.decompress(good)[:-5]),
                   r"the header says shape \(16, 6, 6\) \(576 values\) but the file holds 571"),
  }
  for name, (data, message) in cases.items():
    path.write_bytes(data)
    with pytest.raises(DataError) as info:
      images.load_split("fashion_mnist", "train", data_dir=str(tmp_path))
    assert str(path) in str(info.value), name
    with pytest.raises(DataError, match=message):
      idx.read_idx(str(path))


def test_labels_outside_the_class_range_fail_at_load(tmp_path):
  labels = np.array([0, 3, 12, 9, 1, 2, 3, 4], np.uint8)
  _write_split(tmp_path, labels=labels)
  with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz: 1 labels lie outside the 10 "
                                      r"classes 0..9 \(e.g. 12 at example 2\)"):
    images.load_split("fashion_mnist", "train", data_dir=str(tmp_path))


def _folder(path):
  path.mkdir(parents=True, exist_ok=True)
  skimage.io.imsave(path / "a.png", skimage.data.astronaut()[40:100, 180:240],
                    check_contrast=False)
  skimage.io.imsave(path / "b.png", skimage.data.coffee()[100:160, 200:260],
                    check_contrast=False)
  return f"folder:{path}"


def test_sr_reproduce_checks_its_flags_before_training(tmp_path, monkeypatch):
  from experiments.sr import reproduce
  monkeypatch.chdir(tmp_path)  # the default config is found from any directory
  source = _folder(tmp_path / "images")
  common = ["--source", source, "--workdir", str(tmp_path / "runs"), "--out",
            str(tmp_path / "out"), "--no_progress", "--num_steps", "2"]
  for flags, message in (
      (["--scales", "3,x"], r"--scales '3,x': expected comma-separated integers, each one of "
                            r"2, 3, 4; e.g. --scales 3,4"),
      (["--scales", "5"], r"--scales '5': expected comma-separated integers, each one of 2, 3, 4"),
      (["--crop", "1,2"], r"--crop '1,2': expected 3 comma-separated integers"),
      (["--crop", "0,0,999", "--scales", "3"],
       r"--crop '0,0,999': the crop ends at row 999, column 999, outside the 44x44 figure image"),
      (["--variants", "srcnn,xx"], r"--variants 'srcnn,xx': unknown SR variant 'xx'"),
      (["--source", "folder:/no/such/folder"],
       r"--source='folder:/no/such/folder': the folder '/no/such/folder' does not exist"),
      (["--set", "patch_size=9"], r"--set patch_size=9: SRCNN 9-5-5 \(VALID\) needs patches"),
      (["--set", "optimizer.learning_rate=0.0"], r"--set optimizer.learning_rate=0.0: must be"),
      (["--set", "batch_size=12"], r"--set batch_size=12: batch_size=12 is not divisible by the "
                                   r"8 devices; use a multiple of 8 \(e.g. --set batch_size=8")):
    with pytest.raises(ConfigError, match=message):
      reproduce.main(common + flags)
    assert not (tmp_path / "runs").exists()  # no run started


def test_sr_reproduce_runs_from_another_directory_with_the_default_config(tmp_path, monkeypatch):
  """Issue 13: the default config path was relative to the working directory."""
  from experiments.sr import reproduce
  monkeypatch.chdir(tmp_path)
  source = _folder(tmp_path / "images")
  reproduce.main(["--num_steps", "1", "--scales", "3", "--variants", "bicubic", "--source", source,
                  "--workdir", "runs", "--out", "out", "--crop", "0,0,32", "--no_progress"])
  assert (tmp_path / "out" / "table.md").exists()


def test_cnn_commands_check_their_flags(tmp_path):
  from experiments.cnn import compare, sweep
  out = ["--workdir", str(tmp_path / "runs")]
  for command, flags, message in (
      (compare, ["--num_steps", "-3"], None),
      (compare, ["--variants", "BN,XN"], r"--variants 'BN,XN': unknown variant 'XN'"),
      (compare, ["--dataset", "mnist"], r"--dataset='mnist': valid choices are fashion_mnist"),
      (sweep, ["--batch_sizes", "4,0"], r"--batch_sizes '4,0': expected comma-separated "
                                        r"integers, each >= 1; e.g. --batch_sizes 4,16,64"),
      (sweep, ["--batch_sizes", "12"], r"--set batch_size=12: batch_size=12 is not divisible")):
    if message is None:  # argparse: exit status 2, the flag named on stderr
      with pytest.raises(SystemExit):
        command.main(flags + out)
      continue
    with pytest.raises(ConfigError, match=message):
      command.main(flags + out)
  assert not (tmp_path / "runs").exists()


def test_sweep_takes_set_over_its_own_schedule(tmp_path, monkeypatch):
  """``--set eval_every=`` and ``log_every=`` reach the runs' configs (the sweep overwrote
  them with its own steps // 2 and steps // 50); without them, those are the defaults."""
  from experiments.cnn import sweep
  from experiments.cnn import task as cnn_task
  seen = []

  def record(cfg, workdir, **kwargs):
    seen.append((cfg.eval_every, cfg.log_every))
    raise KeyboardInterrupt  # the config is all this test needs

  monkeypatch.setattr(cnn_task, "load_data", lambda cfg: None)
  monkeypatch.setattr(cnn_task, "train_and_evaluate", record)
  for flags in ([], ["--set", "eval_every=1", "--set", "log_every=3"]):
    with pytest.raises(KeyboardInterrupt):
      sweep.main(["--variants", "BN", "--batch_sizes", "8", "--steps", "200",
                  "--eval_batch_size", "8", "--workdir", str(tmp_path / "runs"), *flags])
  assert seen == [(100, 4), (1, 3)]


def test_compare_help_describes_compare_with_its_own_defaults(capsys):
  """The main job reuses reproduce's flags; its --help is its own (it printed reproduce's)."""
  from experiments.cnn import compare
  with pytest.raises(SystemExit):
    compare.main(["--help"])
  text = capsys.readouterr().out
  assert text.startswith("usage: python -m experiments.cnn.compare")
  assert "The main job: offline comparison" in text and "paper's table" not in text
  assert "default: 400" in text and "default: runs/cnn_compare" in text


def test_rnn_table_checks_every_config_before_training(tmp_path):
  from experiments.rnn import reproduce as table
  for flags, message in (
      (["--set", "bptt_steps=0"], r"--set bptt_steps=0: must be a positive integer"),
      (["--set", "norm.dn_window=4", "--variants", "dn"],
       r"--set norm.dn_window=4: a centred window needs an odd width; e.g. "
       r"--set norm.dn_window=5"),
      (["--set", "data.vocab_size=1"], r"--set data.vocab_size=1: must be an integer >= 2"),
      (["--config", "rnn_lm_fast"], r"--config 'rnn_lm_fast': no such config")):
    with pytest.raises(ConfigError, match=message):
      table.main(flags + ["--out", str(tmp_path / "out")])
  assert not (tmp_path / "out").exists()


def test_find_path_and_argparse_types():
  assert os.path.isfile(config.find_path("experiments/main.py"))
  with pytest.raises(Exception, match=r"'-3' is not a positive integer; e.g. 400"):
    config.positive_int(400)("-3")
  assert config.parse_ints("3, 4", flag="--scales", example="3,4", choices=(2, 3, 4)) == [3, 4]
