"""The RNN language model as a task of the shared engine (`experiments.engine`).

Truncated backprop through time: the hidden state of both layers lives in the
engine's non-param `state` under "carry" and is threaded from one step to the
next (stopped gradient); a per-row `reset` flag in the batch zeroes it at the
start of every epoch, so the position in the stream (and a resumed run) is a
pure function of the step. Batch-norm running averages (one per unrolled time
step) live in `state["batch_stats"]`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from divnorm import linen as dnn
from experiments import engine
from experiments.config import (
    ConfigError,
    DataError,
    check_choice,
    check_dir,
    check_float,
    check_int,
    flag_for,
)
from experiments.rnn import data as text
from experiments.rnn import model as rnn

# Batches the engine's prefetch thread places ahead of the step: 0, no thread. A batch is
# 20 x 20 token ids (nothing to hide), and XLA aborted (SIGABRT in the step) in 2 of 4 test
# runs with the thread beside the carried state. (Early stopping no longer needs it off: the
# engine's stop rule ends training without an exception.)
PREFETCH = 0

def norm_spec(cfg: Mapping[str, Any]) -> rnn.NormSpec:
  """The cell's `NormSpec` from `cfg.variant` and `cfg.norm`."""
  n = cfg["norm"]
  return rnn.NormSpec(variant=cfg["variant"], sigma=float(n["sigma"]),
                      l1_alpha=float(n["l1_alpha"]), dn_window=int(n["dn_window"]),
                      dn_border=str(n["dn_border"]), bn_momentum=float(n["bn_momentum"]))


def build_model(cfg: Mapping[str, Any], vocab_size: int, *, train: bool
                ) -> rnn.RNNLanguageModel:
  """The LM of `cfg`; raises ValueError for an unknown cell/variant or a bad window."""
  if cfg["cell"] not in rnn.CELLS:
    raise ValueError(f"Unknown RNN cell {cfg['cell']!r}; expected one of {rnn.CELLS}.")
  m = cfg["model"]
  spec = norm_spec(cfg)
  rnn.check_spec(spec, int(m["hidden_size"]))
  return rnn.RNNLanguageModel(
      vocab_size=vocab_size, hidden_size=int(m["hidden_size"]),
      num_layers=int(m["num_layers"]), cell=cfg["cell"], spec=spec, train=train,
      init_scale=float(m["init_scale"]), unroll=int(m.get("unroll", 1)))


def validate(cfg: Mapping[str, Any], mesh=None) -> None:
  """Checks every field of an RNN LM config; raises a ConfigError naming the flag and the fix."""
  check_choice(cfg["cell"], rnn.CELLS, flag=flag_for("cell"))
  check_choice(cfg["variant"], rnn.VARIANTS, flag=flag_for("variant"))
  d, m, n = cfg["data"], cfg["model"], cfg["norm"]
  check_choice(d["dataset"], ("shakespeare", "ptb"), flag=flag_for("data.dataset"))
  if d["data_dir"]:
    check_dir(d["data_dir"], flag=flag_for("data.data_dir"), example="/data/ptb")
  check_int(d["vocab_size"], flag=flag_for("data.vocab_size"), minimum=2, example=10000)
  check_int(d["max_eval_batches"], flag=flag_for("data.max_eval_batches"), minimum=0, example=0)
  for key, example in (("hidden_size", 200), ("num_layers", 2), ("unroll", 1)):
    check_int(m.get(key, 1), flag=flag_for(f"model.{key}"), example=example)
  check_float(m["init_scale"], flag=flag_for("model.init_scale"), example=0.1)
  for key, example in (("sigma", 1.0), ("l1_alpha", 0.001)):
    check_float(n[key], flag=flag_for(f"norm.{key}"), example=example, inclusive=True)
  check_float(n["bn_momentum"], flag=flag_for("norm.bn_momentum"), example=0.9, inclusive=True,
              maximum=1.0)
  window = check_int(n["dn_window"], flag=flag_for("norm.dn_window"), example=61)
  if window % 2 == 0:
    raise ConfigError(f"--set norm.dn_window={window}: a centred window needs an odd width; "
                      f"e.g. --set norm.dn_window={window + 1}.")
  check_choice(n["dn_border"], rnn.BORDERS, flag=flag_for("norm.dn_border"))
  for key, example in (("batch_size", 20), ("bptt_steps", 20), ("num_epochs", 13),
                       ("decay_from_epoch", 5)):
    check_int(cfg[key], flag=flag_for(key), example=example)
  for key, example in (("max_steps", 200), ("log_every", 100), ("eval_every", 1000)):
    check_int(cfg.get(key, 0), flag=flag_for(key), minimum=0, example=example)
  check_int(cfg.get("checkpoint_every", 0), flag=flag_for("checkpoint_every"), minimum=-1,
            example="-1 (once per epoch)")
  check_int(cfg["seed"], flag=flag_for("seed"), minimum=0, example=0)
  engine.check_optimizer(dict(cfg["optimizer"], boundaries=[]))  # boundaries come from epochs
  try:
    build_model(cfg, 10, train=True)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  if mesh is not None:
    engine.check_batch_size(cfg["batch_size"], mesh)


def steps_per_epoch(cfg: Mapping[str, Any], num_tokens: int) -> int:
  """Batches in an epoch of `num_tokens` training tokens; too few for one is a DataError."""
  b, t = int(cfg["batch_size"]), int(cfg["bptt_steps"])
  epoch = text.num_batches(num_tokens, batch_size=b, num_steps=t)
  if epoch < 1:
    raise DataError(f"the training text has {num_tokens} tokens, too few for one batch of "
                    f"batch_size={b} x bptt_steps={t} (it needs at least {b * (t + 1)}); point "
                    f"data_dir at more text, or lower batch_size or bptt_steps.")
  return epoch


def engine_config(cfg: Mapping[str, Any], num_train_tokens: int) -> dict[str, Any]:
  """The engine's config: epochs -> `num_steps`, lr halving -> `optimizer.boundaries`,
  `checkpoint_every=-1` -> one checkpoint per epoch."""
  epoch = steps_per_epoch(cfg, num_train_tokens)
  num_steps = int(cfg["num_epochs"]) * epoch
  if int(cfg.get("max_steps", 0) or 0) > 0:
    num_steps = min(num_steps, int(cfg["max_steps"]))
  first = int(cfg["decay_from_epoch"]) - 1  # 1-based epoch -> 0-based start
  boundaries = [e * epoch for e in range(max(first, 1), int(cfg["num_epochs"]))]
  opt = dict(cfg["optimizer"])
  opt["boundaries"] = [b for b in boundaries if b < num_steps]
  checkpoint_every = int(cfg.get("checkpoint_every", 0))
  if checkpoint_every < 0:
    checkpoint_every = epoch
  return {"seed": int(cfg["seed"]), "num_steps": num_steps, "batch_size": int(cfg["batch_size"]),
          "optimizer": opt, "log_every": int(cfg.get("log_every", 100)),
          "eval_every": int(cfg.get("eval_every", 0)),
          "checkpoint_every": checkpoint_every}


def train_batches(ids: np.ndarray, cfg: Mapping[str, Any], start_step: int
                  ) -> Iterator[dict[str, np.ndarray]]:
  """The batch of step `start_step` first, then onwards (epochs repeat), with `reset` flags."""
  b, t = int(cfg["batch_size"]), int(cfg["bptt_steps"])
  epoch = text.num_batches(ids.size, batch_size=b, num_steps=t)
  rows = engine.local_rows(b)
  step = start_step
  for batch in text.ptb_batches(ids, batch_size=b, num_steps=t, start=start_step, repeat=True):
    reset = np.full((b,), 1.0 if step % epoch == 0 else 0.0, np.float32)
    step += 1
    yield {"inputs": batch["inputs"][rows], "targets": batch["targets"][rows],
           "reset": reset[rows]}


def eval_batches(ids: np.ndarray, cfg: Mapping[str, Any]) -> Iterator[dict[str, np.ndarray]]:
  """One pass over `ids` in stream order (a carried state), capped by `max_eval_batches`."""
  b, t = int(cfg["batch_size"]), int(cfg["bptt_steps"])
  cap = int(cfg["data"].get("max_eval_batches", 0) or 0)
  rows = engine.local_rows(b)
  for i, batch in enumerate(text.ptb_batches(ids, batch_size=b, num_steps=t)):
    if cap and i >= cap:
      return
    yield {"inputs": batch["inputs"][rows], "targets": batch["targets"][rows]}


def perplexity(nll_sum: float, count: float) -> float:
  """exp(mean NLL per word)."""
  return float(np.exp(nll_sum / count))


def finalize(sums: Mapping[str, float]) -> dict[str, float]:
  nll = sums["nll"] / sums["count"]
  return {"nll": nll, "perplexity": float(np.exp(nll)), "count": sums["count"]}


def make_task(cfg: Mapping[str, Any], corpus: text.Corpus, *, eval_split: str = "valid"
              ) -> engine.Task:
  """The engine task that trains the LM of `cfg` on `corpus.train`, evaluating `eval_split`."""
  train_model = build_model(cfg, corpus.vocab_size, train=True)
  eval_model = build_model(cfg, corpus.vocab_size, train=False)
  cell, layers = cfg["cell"], int(cfg["model"]["num_layers"])
  hidden = int(cfg["model"]["hidden_size"])
  train_ids, eval_ids = corpus.train, corpus.split(eval_split)

  def zero_carry(batch_rows: int):
    return rnn.initial_carry(cell, batch_rows, hidden, layers)

  def init(rng, batch):
    rows = batch["inputs"].shape[0]
    variables = dict(train_model.init(rng, batch["inputs"], zero_carry(rows)))
    variables.pop("losses", None)
    variables["carry"] = zero_carry(rows)
    return variables

  def variables_of(params, state):
    return {"params": params, **{k: v for k, v in state.items() if k != "carry"}}

  def loss(params, state, batch, rng, train):
    del rng  # no dropout in the paper's small setup
    keep_BxH = (1.0 - batch["reset"])[:, None]
    carry = jax.tree.map(lambda c: jax.lax.stop_gradient(c) * keep_BxH, state["carry"])
    model = train_model if train else eval_model
    mutable = ["batch_stats"] if "batch_stats" in state and train else False
    (logits_BxTxV, new_carry), penalty, updates = dnn.apply_with_penalty(
        model, variables_of(params, state), batch["inputs"], carry, mutable=mutable)
    nll_BxT = optax.softmax_cross_entropy_with_integer_labels(
        logits_BxTxV.astype(jnp.float32), batch["targets"])
    # TF ptb_word_lm's cost: batch-mean NLL summed over the unrolled steps.
    data_loss = jnp.sum(jnp.mean(nll_BxT, axis=0))
    new_state = {**state, **updates, "carry": new_carry}
    nll = jnp.mean(nll_BxT)
    metrics = {"nll": nll, "perplexity": jnp.exp(nll), "l1": penalty}
    return data_loss + penalty, (new_state, metrics)

  def eval_step(params, state, batch):
    (logits_BxTxV, new_carry) = eval_model.apply(
        variables_of(params, state), batch["inputs"], state["carry"])
    nll_BxT = optax.softmax_cross_entropy_with_integer_labels(
        logits_BxTxV.astype(jnp.float32), batch["targets"])
    sums = {"nll": jnp.sum(nll_BxT), "count": jnp.asarray(nll_BxT.size, jnp.float32)}
    return sums, {**state, "carry": new_carry}

  def eval_init(state):
    return {**state, "carry": jax.tree.map(jnp.zeros_like, state["carry"])}

  def state_sharding(mesh, state):
    rep, rows = engine.replicated(mesh), engine.batch_sharded(mesh)
    return {k: jax.tree.map(lambda _, s=(rows if k == "carry" else rep): s, v)
            for k, v in state.items()}

  return engine.Task(
      init=init, loss=loss,
      train_batches=lambda start: train_batches(train_ids, cfg, start),
      eval_step=eval_step, eval_batches=lambda: eval_batches(eval_ids, cfg),
      eval_init=eval_init, eval_finalize=finalize, state_sharding=state_sharding)


def load_corpus(cfg: Mapping[str, Any]) -> text.Corpus:
  """The corpus named by `cfg.data` (dataset, data_dir, vocab_size)."""
  d = cfg["data"]
  return text.load_corpus(str(d["dataset"]), data_dir=d["data_dir"] or None,
                          vocab_size=int(d["vocab_size"]))


def train_and_evaluate(cfg, workdir: str | None, *, mesh=None, hooks: Sequence[Any] = (),
                       progress: bool = True, corpus: text.Corpus | None = None
                       ) -> engine.TrainResult:
  """Trains the LM of `cfg` (resuming from `workdir`), then evaluates valid and test.

  `result.eval_metrics` holds the valid split's `nll` and `perplexity`, and the test
  split's as `test_nll` and `test_perplexity`.

  Args:
    cfg: a config from `experiments/rnn/configs/` (rnn_lm.py, rnn_lm_quick.py).
    workdir: checkpoints and metrics (None: neither).
    mesh: default all devices.
    hooks: passed to the engine.
    progress: tqdm bar.
    corpus: the corpus already in memory (default: read the one `cfg.data` names).
  """
  mesh = mesh or engine.make_mesh()
  validate(cfg, mesh)
  engine.check_workdir(workdir, cfg)
  corpus = corpus if corpus is not None else load_corpus(cfg)
  ecfg = engine_config(cfg, corpus.train.size)
  result = engine.train(make_task(cfg, corpus, eval_split="valid"), config=ecfg,
                        workdir=workdir, mesh=mesh, hooks=hooks, progress=progress,
                        run_config=cfg, prefetch_size=PREFETCH)
  test = engine.evaluate(make_task(cfg, corpus, eval_split="test"), result.train_state, mesh)
  return dataclasses.replace(result, eval_metrics={
      **result.eval_metrics, **{f"test_{k}": v for k, v in test.items() if k != "count"}})
