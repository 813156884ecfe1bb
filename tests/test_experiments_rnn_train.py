"""The LM as an engine task: two real steps of every cell x variant, carry, perplexity, configs."""

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import engine
from experiments.config import ConfigError, DataError
from experiments.rnn import data as text
from experiments.rnn import model as rnn
from experiments.rnn import reproduce
from experiments.rnn import task as rnn_task
from experiments.rnn.configs import rnn_lm, rnn_lm_quick
from tests.smoke import smoke_first

pytestmark = pytest.mark.loose_promotion  # optax / engine internals

VOCAB, HIDDEN, BATCH, BPTT = 12, 8, 8, 3  # batch divisible by the suite's 8 CPU devices


def _corpus(seed=0):
  rng = np.random.default_rng(seed)
  vocab = tuple(f"w{i}" for i in range(VOCAB - 2)) + (text.EOS, text.UNK)
  ids = {s: rng.integers(0, VOCAB, n).astype(np.int32)
         for s, n in (("train", 400), ("valid", 120), ("test", 120))}
  return text.Corpus(**ids, vocab=vocab, name="random")


def _config(cell, variant, **kw):
  cfg = rnn_lm.get_config(f"{cell},{variant}")
  cfg.model.hidden_size = HIDDEN
  cfg.norm.dn_window = 3
  cfg.batch_size, cfg.bptt_steps = BATCH, BPTT
  cfg.max_steps = 2
  cfg.log_every = 1
  cfg.data.max_eval_batches = 1
  for k, v in kw.items():
    cfg[k] = v
  return cfg


# The quick tier's smoke test of the experiment: the LSTM with DN*; the rest are slow.
@pytest.mark.parametrize("cell,variant", smoke_first(
    [(c, v) for c in rnn.CELLS for v in rnn.VARIANTS], {("lstm", "dn_star")}))
def test_two_real_training_steps(cell, variant):
  corpus = _corpus()
  cfg = _config(cell, variant)
  task = dataclasses.replace(rnn_task.make_task(cfg, corpus), eval_step=None, eval_batches=None)
  ecfg = rnn_task.engine_config(cfg, corpus.train.size)
  assert ecfg["num_steps"] == 2
  seen = {}
  result = engine.train(task, config=ecfg, progress=False,
                        hooks=[lambda step, ts: seen.__setitem__(step, ts.params)])
  losses = [h["loss"] for h in result.history if h["kind"] == "train"]
  assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
  l1 = [h["l1"] for h in result.history if h["kind"] == "train"]
  assert all(x > 0 for x in l1) == variant.endswith("_star")
  moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), seen[1], seen[2])
  assert max(jax.tree.leaves(moved)) > 0
  state = result.train_state.state
  assert all(c.shape == (BATCH, HIDDEN) for c in jax.tree.leaves(state["carry"]))
  assert float(jnp.abs(jax.tree.leaves(state["carry"])[-1]).max()) > 0  # carried, not reset
  if variant in ("bn", "bn_star"):
    mean = state["batch_stats"]["rnn0"]["pre"]["norm_x"]["mean"]
    assert mean.shape[0] == BPTT and float(jnp.abs(mean).max()) > 0
  else:
    assert "batch_stats" not in state


@pytest.mark.slow  # trains
def test_carry_threaded_through_engine_loss_and_reset():
  corpus = _corpus(1)
  cfg = _config("lstm", "dn_star")
  task = rnn_task.make_task(cfg, corpus)
  batches = task.train_batches(0)
  b0, b1 = next(batches), next(batches)
  assert b0["reset"].tolist() == [1.0] * BATCH and b1["reset"].tolist() == [0.0] * BATCH
  variables = task.init(jax.random.key(0), b0)
  params = variables.pop("params")
  loss = jax.jit(task.loss, static_argnums=4)
  _, (s1, m1) = loss(params, variables, b0, jax.random.key(1), True)
  _, (s2, _) = loss(params, s1, b1, jax.random.key(1), True)
  model = rnn_task.build_model(cfg, VOCAB, train=True)
  zero = rnn.initial_carry("lstm", BATCH, HIDDEN, 2)
  tokens = np.concatenate([b0["inputs"], b1["inputs"]], 1)
  _, whole = model.apply({"params": params}, tokens, zero)
  for a, b in zip(jax.tree.leaves(s2["carry"]), jax.tree.leaves(whole), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # Loss = sum over steps of the batch-mean NLL (+ L1): about BPTT x the per-token NLL.
  assert float(m1["l1"]) > 0
  # A reset row starts from zeros whatever the carried state.
  _, (s_reset, _) = loss(params, s1, b0, jax.random.key(1), True)
  for a, b in zip(jax.tree.leaves(s_reset["carry"]), jax.tree.leaves(s1["carry"]), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_perplexity_is_exp_mean_nll():
  assert rnn_task.finalize({"nll": 2 * math.log(4.0), "count": 2.0})["perplexity"] == \
      pytest.approx(4.0)
  assert rnn_task.perplexity(math.log(3.0) + math.log(5.0), 2.0) == pytest.approx(math.sqrt(15))
  # Uniform predictions (zero softmax weights) have perplexity == vocabulary size.
  corpus = _corpus(2)
  cfg = _config("tanh", "ln_star")
  cfg.data.max_eval_batches = 0
  task = rnn_task.make_task(cfg, corpus, eval_split="test")
  mesh = engine.make_mesh()
  ts = engine.init_train_state(task, engine.make_optimizer(rnn_task.engine_config(
      cfg, corpus.train.size)["optimizer"]), engine.put_batch(next(task.train_batches(0)), mesh),
      seed=0, mesh=mesh)
  params = jax.tree.map(lambda a: a, ts.params)
  params["softmax"] = jax.tree.map(jnp.zeros_like, params["softmax"])
  metrics = engine.evaluate(task, ts._replace(params=params), mesh)
  assert metrics["perplexity"] == pytest.approx(VOCAB, rel=1e-5)
  n_eval = text.num_batches(120, batch_size=BATCH, num_steps=BPTT) * BATCH * BPTT
  assert metrics["count"] == n_eval


def test_paper_schedule_and_hyperparameters():
  cfg = rnn_lm.get_config("lstm,dn_star")
  assert (cfg.norm.sigma, cfg.norm.l1_alpha, cfg.norm.dn_window) == (1.0, 1e-4, 61)
  assert rnn_lm.get_config("tanh,dn").norm.dn_window == 121
  assert rnn_lm.dn_window("tanh", "code_width") == 61
  assert rnn_lm.get_config("tanh,baseline").optimizer.learning_rate == 0.1
  assert rnn_lm.get_config("relu,bn").optimizer.learning_rate == 0.1
  assert rnn_lm.get_config("tanh,ln_star").optimizer.learning_rate == 1.0
  epoch = text.num_batches(929589, batch_size=20, num_steps=20)  # PTB train tokens
  ecfg = rnn_task.engine_config(cfg, 929589)
  assert ecfg["num_steps"] == 13 * epoch
  assert ecfg["optimizer"]["boundaries"] == [e * epoch for e in range(4, 13)]
  lr = engine.learning_rate_schedule(ecfg["optimizer"])
  assert float(lr(4 * epoch - 1)) == 1.0 and float(lr(4 * epoch)) == 0.5
  assert float(lr(13 * epoch - 1)) == pytest.approx(0.5**9)
  assert ecfg["optimizer"]["clip_global_norm"] == 5.0 and ecfg["optimizer"]["name"] == "sgd"
  quick = rnn_task.engine_config(rnn_lm_quick.get_config("lstm,baseline"), 929589)
  assert quick["num_steps"] == 2 * epoch and quick["optimizer"]["boundaries"] == [epoch]


def test_default_runs_checkpoint_once_per_epoch():
  """A killed default run resumes from its last epoch (it kept only the final checkpoint)."""
  epoch = text.num_batches(929589, batch_size=20, num_steps=20)
  for cfg in (rnn_lm.get_config("lstm,dn_star"), rnn_lm_quick.get_config("relu,baseline")):
    rnn_task.validate(cfg)
    assert rnn_task.engine_config(cfg, 929589)["checkpoint_every"] == epoch
  cfg = rnn_lm.get_config("lstm,dn_star")
  cfg.checkpoint_every = 0  # only at the end, as asked
  assert rnn_task.engine_config(cfg, 929589)["checkpoint_every"] == 0
  cfg.checkpoint_every = -2
  with pytest.raises(ConfigError, match=r"--set checkpoint_every=-2: must be an integer >= -1"):
    rnn_task.validate(cfg)


def test_bad_configs_fail_clearly(tmp_path):
  with pytest.raises(ValueError, match="Unknown RNN cell 'gru'"):
    rnn_lm.get_config("gru,baseline")
  with pytest.raises(ValueError, match="Unknown RNN variant 'gn'"):
    rnn_lm.get_config("lstm,gn")
  cfg = rnn_lm.get_config("lstm,dn")
  cfg.model.hidden_size = 32
  with pytest.raises(ValueError, match="dn_window=61 is wider than the hidden size 32"):
    rnn_task.build_model(cfg, 100, train=True)
  with pytest.raises(ConfigError, match="--data_dir=.*missing': does not exist"):
    reproduce.main(["--dataset", "ptb", "--data_dir", str(tmp_path / "missing"),
                "--out", str(tmp_path / "out")])
  with pytest.raises(ValueError, match="wider than the hidden size 8"):  # before any training
    reproduce.main(["--variants", "dn", "--set", "model.hidden_size=8", "--out", str(tmp_path)])


def test_cells_and_variants_take_the_paper_labels_and_name_the_flag(tmp_path):
  # The CNN and SR commands take the paper's labels (BN*, DN*); the RNN's took only its own
  # names, and a misspelt one was get_config's traceback, not the command line's error.
  assert reproduce.parse_runs("LSTM, tanh", "baseline,BN*,ln-s,DN,dn") == (
      ["lstm", "tanh"], ["baseline", "bn_star", "ln_s", "dn"])
  assert reproduce.parse_runs("relu", "ALL") == (["relu"], list(rnn.VARIANTS))
  assert [rnn.canonical_variant(rnn.VARIANT_LABELS[v]) for v in rnn.VARIANTS] == list(
      rnn.VARIANTS)
  with pytest.raises(ConfigError, match=r"--variants 'BN,GN': unknown RNN variant 'GN'; "
                                        r"valid choices: baseline, bn, .* \(or the paper's "
                                        r"Baseline, BN, BN\*"):
    reproduce.parse_runs("lstm", "BN,GN")
  with pytest.raises(ConfigError, match=r"--cells 'lstm,gru': unknown 'gru'; valid choices: "
                                        r"lstm, tanh, relu"):
    reproduce.parse_runs("lstm,gru", "all")
  with pytest.raises(ConfigError, match="--variants ',': name at least one"):
    reproduce.parse_runs("lstm", ",")
  with pytest.raises(ConfigError, match="--cells '': none; valid choices"):
    reproduce.parse_runs("", "all")
  from experiments.rnn import speed  # the speed command checks them the same way, first
  with pytest.raises(ConfigError, match="--variants 'XX': unknown RNN variant 'XX'"):
    speed.main(["--variants", "XX", "--out", str(tmp_path)])
  from experiments.rnn import speed_profile  # counts are positive integers, before any timing
  for main, argv in ((speed.main, ["--rounds", "0"]), (speed_profile.main, ["--batch", "-3"])):
    with pytest.raises(SystemExit) as exit_:
      main(argv)
    assert exit_.value.code == 2


@pytest.mark.slow  # trains
def test_reproduce_command_end_to_end(tmp_path):
  out = reproduce.main([
      "--cells", "tanh", "--variants", "baseline,dn_star", "--out", str(tmp_path),
      "--name", "tiny", "--set", "max_steps=3", "--set", "model.hidden_size=8",
      "--set", "norm.dn_window=3", "--set", "batch_size=8", "--set", "bptt_steps=4",
      "--set", "data.max_eval_batches=2", "--set", "data.vocab_size=50", "--set", "log_every=1"])
  assert [r["status"] for r in out["results"]] == ["ok", "ok"]
  md = (tmp_path / "tiny.md").read_text()
  assert "| DN* |" in md and "123.7" in md and "paper PTB" in md  # the paper's number, labelled
  saved = json.loads((tmp_path / "tiny.json").read_text())
  assert saved["meta"]["corpus_stats"]["vocab"] == 50
  assert all(math.isfinite(r["test_perplexity"]) for r in saved["results"])


def test_too_little_training_text_is_a_data_error_naming_what_it_needs():
  """Too few tokens for one batch: an error about the data (once a flag the user never
  passed: "--set num_steps=-2: must be a positive integer")."""
  with pytest.raises(DataError, match="7 tokens, too few .* at least 420"):
    rnn_task.steps_per_epoch({"batch_size": 20, "bptt_steps": 20}, 7)
  assert rnn_task.steps_per_epoch({"batch_size": 20, "bptt_steps": 20}, 420) == 1
  with pytest.raises(DataError, match="0 tokens are too few for batch_size=20"):
    text.batchify(np.zeros(0, np.int32), 20)
