"""The CNN experiment on shrunk inputs: every variant trains, sharding/multi-process equality, errors."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments import engine
from experiments.cnn import model as cnn
from experiments.cnn import task as cnn_task
from experiments.cnn.configs import cnn as cnn_config
from experiments.cnn.configs import cnn_short
from experiments.data import idx
from tests.smoke import smoke_first

pytestmark = pytest.mark.loose_promotion  # flax, optax, orbax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_tiny_idx(directory, *, n_train=64, n_test=16, size=8):
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 10, size=(n_train + n_test,), dtype=np.uint8)
  # Learnable: brightness depends on the label.
  imgs = (labels[:, None, None] * 20 + rng.integers(0, 60, size=(len(labels), size, size))
          ).astype(np.uint8)
  for prefix, sl in (("train", slice(0, n_train)), ("t10k", slice(n_train, None))):
    idx.write_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte.gz"), imgs[sl])
    idx.write_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte.gz"), labels[sl])


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("tiny_fmnist")
  write_tiny_idx(str(d))
  return str(d)


def tiny_config(variant, data_dir, *, steps=2, batch=8, border="valid"):
  cfg = cnn_short.get_config(f"{variant},fashion_mnist,{steps},{border}")
  cfg.data_dir = data_dir
  cfg.batch_size = batch
  cfg.eval_batch_size = 8
  cfg.log_every = 1
  cfg.eval_every = 0
  cfg.checkpoint_every = 0
  return cfg


# The quick tier's smoke test of the experiment: DN* (zero-padded border); the rest are slow.
@pytest.mark.parametrize("variant", smoke_first(cnn.VARIANTS, {"DN*"}))
def test_two_real_steps_of_every_variant(variant, tiny_dir):
  # DN* also exercises the reference code's zero-padded border mode.
  cfg = tiny_config(variant, tiny_dir, border="zeros" if variant == "DN*" else "valid")
  result = cnn_task.train_and_evaluate(cfg, None, progress=False)
  losses = [h["loss"] for h in result.history if h["kind"] == "train"]
  assert len(losses) == 2 and all(np.isfinite(losses))
  assert int(result.train_state.step) == 2
  assert result.eval_metrics["count"] == 16
  spec = cnn.variant_spec(variant)
  penalties = [h["penalty"] for h in result.history if h["kind"] == "train"]
  assert (min(penalties) > 0) == (spec.l1_alpha > 0)
  assert ("batch_stats" in result.train_state.state) == (spec.kind == "batch")


@pytest.mark.slow  # trains twice
def test_one_and_eight_devices_give_the_same_trajectory(tiny_dir):
  # BN: its statistics must be global over the 8 devices' shards.
  cfg = tiny_config("BN", tiny_dir, steps=3, batch=16)
  r8 = cnn_task.train_and_evaluate(cfg, None, progress=False)
  r1 = cnn_task.train_and_evaluate(cfg, None, progress=False,
                                mesh=engine.make_mesh(jax.devices()[:1]))
  l8 = [h["loss"] for h in r8.history if h["kind"] == "train"]
  l1 = [h["loss"] for h in r1.history if h["kind"] == "train"]
  np.testing.assert_allclose(l8, l1, rtol=2e-4)
  np.testing.assert_allclose(r8.eval_metrics["cross_entropy"], r1.eval_metrics["cross_entropy"],
                             rtol=2e-4)


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_process(tiny_dir, tmp_path):
  steps, wd = 3, str(tmp_path / "mp")
  port = _free_port()
  env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  cmd = [sys.executable, "-m", "experiments.main", "--config",
         f"experiments/cnn/configs/cnn_short.py:BN,fashion_mnist,{steps}", "--workdir", wd,
         "--no_progress", "--num_processes", "2", "--coordinator", f"127.0.0.1:{port}",
         "--cpu_collectives", "gloo", "--set", f"data_dir={tiny_dir!r}", "--set", "batch_size=16",
         "--set", "eval_batch_size=8", "--set", "log_every=1", "--set", "eval_every=0"]
  procs = [subprocess.Popen([*cmd, "--process_id", str(i)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  outs = [p.communicate(timeout=300) for p in procs]
  for p, (_, err) in zip(procs, outs, strict=True):
    assert p.returncode == 0, err[-3000:]
  final = json.loads(outs[0][0].strip().splitlines()[-1])
  cfg = tiny_config("BN", tiny_dir, steps=steps, batch=16)
  one = cnn_task.train_and_evaluate(cfg, None, progress=False)
  rows = engine.read_metrics(wd, "train")
  np.testing.assert_allclose([r["loss"] for r in rows],
                             [h["loss"] for h in one.history if h["kind"] == "train"], rtol=2e-4)
  np.testing.assert_allclose(final["eval"]["accuracy"], one.eval_metrics["accuracy"])
  restored = engine.Checkpointer(os.path.join(wd, "checkpoints"), every=0).restore(
      one.train_state)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6),
               jax.device_get(restored.params), jax.device_get(one.train_state.params))


def test_unknown_variant_lists_the_twelve():
  with pytest.raises(ValueError, match=r"baseline, baseline\+L1, BN, BN\+L1, BN-s, BN\*"):
    cnn_config.get_config("XN,cifar10")


def test_unknown_dataset_and_border_list_choices():
  with pytest.raises(ValueError, match="fashion_mnist, fashion_mnist_tfds, cifar10, cifar100"):
    cnn_config.get_config("DN,mnist")
  with pytest.raises(ValueError, match="valid, zeros"):
    cnn_config.get_config("DN,cifar10,reflect")


def test_batch_not_divisible_by_devices_says_the_fix(tiny_dir):
  cfg = tiny_config("BN", tiny_dir, batch=12)
  with pytest.raises(ValueError, match="not divisible by the 8 devices; use a multiple of 8"):
    cnn_task.train_and_evaluate(cfg, None, progress=False)


def test_missing_cifar_says_how_to_prepare_it(tmp_path):
  cfg = cnn_config.get_config("BN,cifar10")
  cfg.data_dir = str(tmp_path)
  cfg.batch_size = cfg.eval_batch_size = 8
  with pytest.raises(FileNotFoundError, match="tfds build cifar10"):
    cnn_task.train_and_evaluate(cfg, None, progress=False)


def test_paper_configs_follow_the_reference():
  c10, c100 = cnn_config.get_config("DN*,cifar10"), cnn_config.get_config("DN*,cifar100")
  assert c10.num_steps == 80_000 and list(c10.optimizer.boundaries) == [30_000, 50_000]
  assert c10.batch_size == 100 and c10.optimizer.learning_rate == 1e-3
  assert cnn.variant_spec("DN*", "cifar10").l1_alpha == 0.005
  assert cnn.variant_spec("DN*", c100.hparams).l1_alpha == 0.001
  assert cnn.variant_spec("BN-s", "cifar100").sigma == 0.25
  base = cnn_config.get_config("baseline,cifar10")
  assert base.num_steps == 50_000 and list(base.optimizer.boundaries) == [5_000, 30_000]
  assert cnn.canonical_variant("dn-star") == "DN*"
  assert not cnn.variant_spec("LN*").affine and cnn.variant_spec("LN").affine


@pytest.mark.slow
def test_sigkill_and_resume_equals_uninterrupted_bn(tiny_dir, tmp_path):
  """BN (params, momentum, batch_stats) killed after its step-2 checkpoint, then resumed."""
  wd = str(tmp_path / "killed")
  script = (
      "import os, signal, sys\n"
      "from experiments.cnn import task as cnn_task\n"
      "from experiments.cnn.configs import cnn_short\n"
      "cfg = cnn_short.get_config('BN,fashion_mnist,5')\n"
      f"cfg.data_dir = {tiny_dir!r}\n"
      "cfg.batch_size = 16; cfg.eval_batch_size = 8; cfg.log_every = 1; cfg.eval_every = 0\n"
      "cfg.checkpoint_every = 2\n"
      "def kill(step, ts):\n"
      "  if step == 3 and sys.argv[1] == 'kill':\n"
      "    os.kill(os.getpid(), signal.SIGKILL)\n"
      f"cnn_task.train_and_evaluate(cfg, {wd!r}, hooks=[kill], progress=False)\n")
  env = {**os.environ, "PYTHONPATH": ROOT}
  for mode, code in (("kill", -9), ("resume", 0)):
    p = subprocess.run([sys.executable, "-c", script, mode], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == code, p.stderr[-3000:]
    if mode == "kill":
      assert engine.Checkpointer(os.path.join(wd, "checkpoints"), every=2).latest_step() == 2
  cfg = tiny_config("BN", tiny_dir, steps=5, batch=16)
  full = cnn_task.train_and_evaluate(cfg, None, progress=False)
  restored = engine.Checkpointer(os.path.join(wd, "checkpoints"), every=2).restore(
      full.train_state)
  assert int(restored.step) == 5
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               jax.device_get((restored.params, restored.state, restored.opt_state)),
               jax.device_get((full.train_state.params, full.train_state.state,
                               full.train_state.opt_state)))
