"""Training the paper's CNN with the shared engine: the task (model + data) and one entry point.

The jitted step is the engine's (`experiments.engine.make_train_step`); this
file only says what the loss, eval and batches of the CNN are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp

from divnorm import linen as dnn
from experiments import engine
from experiments.cnn import model as cnn
from experiments.cnn import weighted_model
from experiments.config import (
    ConfigError,
    check_choice,
    check_dir,
    check_float,
    check_int,
    flag_for,
)
from experiments.data import batching, images


def build_model(cfg, num_classes: int) -> cnn.CNN:
  if cfg.variant in weighted_model.WEIGHTED_VARIANTS:  # results/PROTOCOL_WEIGHTED.md
    return weighted_model.WeightedCNN(num_classes=num_classes, border=cfg.border,
                                      norm=weighted_model.variant_spec(cfg.variant))
  variant = cnn.canonical_variant(cfg.variant)
  check_choice(cfg.border, cnn.BORDERS, flag=flag_for("border"))
  learn_sigma = bool(cfg.get("learn_sigma", False))
  norm = cnn.variant_spec(variant, cfg.hparams)
  sigma = cfg.get("sigma")
  if sigma is not None:
    check_float(sigma, flag=flag_for("sigma"), example=0.5, inclusive=True)
    if norm.kind == "none":
      raise ConfigError(f"--set sigma={sigma}: variant {variant!r} has no normalizer; pick a "
                        f"BN, LN or DN variant, or leave sigma unset.")
    norm = dataclasses.replace(norm, sigma=float(sigma))
  if learn_sigma and norm.kind == "none":
    raise ConfigError(f"--set learn_sigma=True: variant {variant!r} has no normalizer whose "
                      f"sigma could be learned; pick a BN, LN or DN variant.")
  return cnn.CNN(num_classes=num_classes, norm=norm, border=cfg.border, learn_sigma=learn_sigma)


def make_task(cfg, *, train_split: images.ImageSplit, test_split: images.ImageSplit
              ) -> engine.Task:
  """The CNN classification task of `cfg` on in-memory splits."""
  model = build_model(cfg, train_split.num_classes)
  preprocess = images.make_preprocess(images.mean_image(train_split.images))
  train_arrays, test_arrays = train_split.arrays(), test_split.arrays()

  def init(rng, batch):
    return model.init(rng, batch["image"], train=False)

  def loss(params, state, batch, rng, train):
    del rng  # no dropout or augmentation in the paper's CNN
    mutable = list(state) if (train and state) else False
    logits_BxK, penalty, updates = dnn.apply_with_penalty(
        model, {"params": params, **state}, batch["image"], train=train, mutable=mutable)
    ce = jnp.mean(cnn.cross_entropy(logits_BxK, batch["label"]))
    accuracy = jnp.mean((jnp.argmax(logits_BxK, -1) == batch["label"]).astype(jnp.float32))
    metrics = {"cross_entropy": ce, "penalty": penalty, "accuracy": accuracy,
               **cnn.learned_sigmas(params)}
    return ce + penalty, ({**state, **updates}, metrics)

  def eval_step(params, state, batch):
    logits_BxK = model.apply({"params": params, **state}, batch["image"], train=False)
    mask_B = batch["mask"]
    correct_B = (jnp.argmax(logits_BxK, -1) == batch["label"]).astype(jnp.float32)
    sums = {"accuracy": jnp.sum(mask_B * correct_B),
            "cross_entropy": jnp.sum(mask_B * cnn.cross_entropy(logits_BxK, batch["label"])),
            "count": jnp.sum(mask_B)}
    return sums, state

  return engine.Task(
      init=init, loss=loss, eval_step=eval_step,
      train_batches=lambda start: batching.train_batches(
          train_arrays, batch_size=cfg.batch_size, seed=cfg.seed, start_step=start,
          transform=preprocess),
      eval_batches=lambda: batching.eval_batches(
          test_arrays, batch_size=cfg.eval_batch_size, transform=preprocess))


def load_data(cfg) -> tuple[images.ImageSplit, images.ImageSplit]:
  images.check_dataset(cfg.dataset)
  train_split = images.load_split(cfg.dataset, "train", data_dir=cfg.data_dir,
                                  max_examples=cfg.max_train_examples)
  test_split = images.load_split(cfg.dataset, "test", data_dir=cfg.data_dir,
                                 max_examples=cfg.max_eval_examples)
  return train_split, test_split


def validate(cfg, mesh=None) -> None:
  """Checks every field of a CNN config; raises a ConfigError naming the flag and the fix."""
  try:
    if cfg.variant not in weighted_model.WEIGHTED_VARIANTS:
      cnn.canonical_variant(cfg.variant)
  except ValueError as e:
    raise ConfigError(f"--set variant={cfg.variant!r}: {e}") from None
  images.check_dataset(cfg.dataset)
  check_choice(cfg.hparams, cnn.HPARAM_SETS, flag=flag_for("hparams"))
  check_choice(cfg.border, cnn.BORDERS, flag=flag_for("border"))
  build_model(cfg, 10)  # refuses learn_sigma on a variant without a normalizer
  check_dir(cfg.data_dir, flag=flag_for("data_dir"), example="/usr/share/datasets/fashion-mnist")
  for key in ("max_train_examples", "max_eval_examples"):
    if cfg[key] is not None:
      check_int(cfg[key], flag=flag_for(key), example=1000)
  engine.check_engine_config(cfg, mesh)  # batch_size is a positive int from here on
  if cfg.max_train_examples is not None and cfg.max_train_examples < cfg.batch_size:
    raise ConfigError(
        f"--set max_train_examples={cfg.max_train_examples} is fewer than one batch "
        f"(batch_size={cfg.batch_size}); e.g. --set max_train_examples={10 * cfg.batch_size}, "
        f"or lower --set batch_size.")


def train_and_evaluate(cfg, workdir: str | None, *, mesh=None, hooks: Sequence[Any] = (),
                       progress: bool = True, data=None) -> engine.TrainResult:
  """Trains and evaluates the CNN of `cfg`; resumes from `workdir`'s checkpoints.

  Args:
    cfg: a config from `experiments/cnn/configs/cnn.py` (or `cnn_short.py`).
    workdir: checkpoints and metrics (None: neither).
    mesh: default all devices.
    hooks: passed to the engine.
    progress: tqdm bar.
    data: optional (train_split, test_split) already in memory.
  """
  mesh = mesh or engine.make_mesh()
  validate(cfg, mesh)
  engine.check_workdir(workdir, cfg)
  train_split, test_split = data if data is not None else load_data(cfg)
  task = make_task(cfg, train_split=train_split, test_split=test_split)
  return engine.train(task, config=cfg, workdir=workdir, mesh=mesh, hooks=hooks,
                      progress=progress)

