"""SRCNN as a task of the shared training engine, and its whole-image evaluation.

The engine (`experiments.engine.train`) owns the jitted step, checkpoints,
progress, metric files and sharding; this file says what the SR loss, batches
and evaluation are:

* train batches: seeded 33x33 patch pairs (`experiments.sr.data.train_batches`),
  batch `s` a function of (seed, s) so resumed runs continue the stream;
* loss: MSE / 2 on the border-cropped target, plus DN*'s L1 penalty;
* engine eval (every `eval_every` steps): PSNR of fixed test patches (cheap, a
  learning curve in `<workdir>/eval.csv`);
* final evaluation (`evaluate_images`): every test image whole, PSNR and SSIM
  on the border-cropped 8-bit Y channel, written to `<workdir>/sr_eval.json`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from divnorm import linen as dnn
from experiments import engine
from experiments.config import (
    ConfigError,
    check_choice,
    check_dir,
    check_float,
    check_int,
    flag_for,
)
from experiments.data import batching
from experiments.sr import data as sr
from experiments.sr import imaging as sr_image
from experiments.sr import metrics
from experiments.sr import model as srcnn


def build_model(cfg) -> srcnn.SRCNN:
  """The SRCNN of `cfg.variant` with `cfg.norm`'s hyperparameters."""
  variant = srcnn.canonical_variant(cfg.variant)
  if variant == "bicubic":
    raise ValueError("the bicubic variant has no network; see `bicubic_metrics`.")
  norm = srcnn.NormConfig(**dict(cfg.norm))
  if norm.dn_border not in srcnn.BORDERS:
    raise ValueError(f"unknown dn_border {norm.dn_border!r}; valid: {', '.join(srcnn.BORDERS)}.")
  return srcnn.SRCNN(variant=variant, norm=norm, init_std=float(cfg.init_std))


def check_source(source: str | None, *, flag: str) -> None:
  """A source name: "photographs", "photographs_validation", "div2k" or "folder:/path"."""
  if source is None:
    return
  if source in (*sr.PHOTOGRAPH_SOURCES, "div2k"):
    return
  if isinstance(source, str) and source.startswith("folder:"):
    path = source.split(":", 1)[1]
    if not os.path.isdir(path):
      raise ConfigError(f"{flag}={source!r}: the folder {path!r} does not exist; pass a folder "
                        f"of images, e.g. {flag}=folder:/data/Set14.")
    return
  raise ConfigError(f"{flag}={source!r}: use photographs, photographs_validation, div2k or "
                    "folder:/path/to/images; "
                    f"e.g. {flag}=photographs.")


def validate(cfg, mesh=None) -> None:
  """Checks every field of an SR config; raises a ConfigError naming the flag and the fix."""
  try:
    variant = srcnn.canonical_variant(cfg.variant)
  except ValueError as e:
    raise ConfigError(f"--set variant={cfg.variant!r}: {e}") from None
  try:
    sr_image.check_scale(cfg.scale)
  except ValueError as e:
    raise ConfigError(f"--set scale={cfg.scale!r}: {e} E.g. --set scale=3.") from None
  check_source(cfg.source, flag=flag_for("source"))
  check_source(cfg.test_source, flag=flag_for("test_source"))
  check_dir(cfg.data_dir, flag=flag_for("data_dir"), example="~/tensorflow_datasets")
  if cfg.max_test_images is not None:
    check_int(cfg.max_test_images, flag=flag_for("max_test_images"), example=5)
  check_choice(cfg.antialias, (True, False), flag=flag_for("antialias"))
  check_choice(cfg.augment, (True, False), flag=flag_for("augment"))
  if variant == "bicubic":
    return
  patch = check_int(cfg.patch_size, flag=flag_for("patch_size"), example=33)
  if patch <= 2 * srcnn.BORDER:
    raise ConfigError(f"--set patch_size={patch}: SRCNN 9-5-5 (VALID) needs patches of more "
                      f"than {2 * srcnn.BORDER} pixels; e.g. --set patch_size=33.")
  check_float(cfg.init_std, flag=flag_for("init_std"), example=srcnn.INIT_STD)
  n = cfg.norm
  for key in ("dn_summation", "dn_suppression"):
    w = tuple(n[key])
    if len(w) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 or v % 2 == 0
                          for v in w):
      raise ConfigError(f"--set norm.{key}={w!r}: two positive odd window widths; e.g. "
                        f"--set norm.{key}=(5,5).")
  for key, example in (("dn_sigma", 1.0), ("dn_l1_alpha", 0.1), ("bn_sigma", 0.01)):
    check_float(n[key], flag=flag_for(f"norm.{key}"), example=example, inclusive=True)
  check_float(n.bn_momentum, flag=flag_for("norm.bn_momentum"), example=0.9, inclusive=True,
              maximum=1.0)
  check_choice(n.dn_border, srcnn.BORDERS, flag=flag_for("norm.dn_border"))
  check_int(cfg.eval_patches, flag=flag_for("eval_patches"), example=256)
  engine.check_engine_config(cfg, mesh)


def eval_patches(test_images: Sequence[sr.TestImage], *, patch_size: int, count: int,
                 seed: int) -> dict[str, np.ndarray]:
  """`count` fixed patches of the test images, for the engine's periodic eval."""
  rng = np.random.default_rng(seed)
  xs, ys = [], []
  for i in range(count):
    image = test_images[i % len(test_images)]
    h, w = image.target.shape
    r, c = int(rng.integers(h - patch_size + 1)), int(rng.integers(w - patch_size + 1))
    xs.append(image.bicubic[r:r + patch_size, c:c + patch_size])
    ys.append(image.target[r:r + patch_size, c:c + patch_size] / np.float32(255))
  return {"input": np.stack(xs)[..., None].astype(np.float32),
          "target": np.stack(ys)[..., None].astype(np.float32)}


def make_task(cfg, *, test_images: Sequence[sr.TestImage]) -> engine.Task:
  """The SR task of `cfg` (see the module docstring)."""
  model = build_model(cfg)
  eval_arrays = eval_patches(test_images, patch_size=cfg.patch_size,
                             count=cfg.eval_patches, seed=cfg.seed + 1)

  def init(rng, batch):
    return model.init(rng, batch["input"], train=False)

  def loss(params, state, batch, rng, train):
    del rng
    mutable = list(state) if (train and state) else False
    pred, penalty, updates = dnn.apply_with_penalty(
        model, {"params": params, **state}, batch["input"], train=train, mutable=mutable)
    mse_half = srcnn.loss_fn(pred, batch["target"])
    return mse_half + penalty, ({**state, **updates}, {"mse_half": mse_half, "penalty": penalty})

  def eval_step(params, state, batch):
    pred = model.apply({"params": params, **state}, batch["input"], train=False)
    err = jnp.square(jnp.clip(pred, 0.0, 1.0) - srcnn.crop_target(batch["target"]))
    mse_B = jnp.mean(err, axis=(1, 2, 3))
    return {"mse": jnp.sum(batch["mask"] * mse_B), "count": jnp.sum(batch["mask"])}, state

  def finalize(sums):
    mse = sums["mse"] / max(sums["count"], 1.0)
    return {"mse": mse, "psnr": -10.0 * math.log10(max(mse, 1e-12)),
            "count": sums["count"]}

  def train_batches(start_step):
    return sr.train_batches(
        cfg.source, scale=cfg.scale, patch_size=cfg.patch_size, batch_size=cfg.batch_size,
        seed=cfg.seed, start_step=start_step, data_dir=cfg.data_dir, antialias=cfg.antialias,
        augment=cfg.augment, process_index=jax.process_index(), process_count=jax.process_count())

  return engine.Task(
      init=init, loss=loss, train_batches=train_batches, eval_step=eval_step,
      eval_finalize=finalize,
      eval_batches=lambda: batching.eval_batches(eval_arrays, batch_size=cfg.eval_batch_size))


def make_predict(model: srcnn.SRCNN):
  """A jitted `(variables, x_1xHxWx1) -> (1, H-16, W-16, 1)` (one compile per image shape)."""
  return jax.jit(lambda variables, x: model.apply(variables, x, train=False))


def predict_image(predict, variables, image: sr.TestImage) -> np.ndarray:
  """The 0..255 float Y estimate of `image`'s center, (H - 16) x (W - 16)."""
  x = jnp.asarray(image.bicubic[None, :, :, None])
  return np.asarray(predict(variables, x))[0, :, :, 0].astype(np.float64) * 255.0


def score(image: sr.TestImage, estimate_center: np.ndarray) -> dict[str, float]:
  """PSNR/SSIM of an estimate of the (H - 16) x (W - 16) center of `image.target`."""
  b = srcnn.BORDER
  target = image.target[b:-b, b:-b]
  return {"psnr": metrics.psnr(target, estimate_center, border=0),
          "ssim": metrics.ssim(target, estimate_center, border=0)}


def bicubic_scores(test_images: Sequence[sr.TestImage]) -> list[dict[str, Any]]:
  """Per-image PSNR/SSIM of the bicubic input itself, on the same cropped center."""
  b = srcnn.BORDER
  return [{"name": im.name, **score(im, im.bicubic[b:-b, b:-b].astype(np.float64) * 255.0)}
          for im in test_images]


def evaluate_images(model: srcnn.SRCNN, variables, test_images: Sequence[sr.TestImage],
                    *, keep_outputs: bool = False) -> tuple[list[dict[str, Any]], list]:
  """Per-image PSNR/SSIM of `model`; optionally the 0..255 estimates too."""
  predict = make_predict(model)
  rows, outputs = [], []
  for image in test_images:
    estimate = predict_image(predict, variables, image)
    rows.append({"name": image.name, **score(image, estimate)})
    if keep_outputs:
      outputs.append(estimate)
  return rows, outputs


def mean_scores(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
  return {"psnr": float(np.mean([r["psnr"] for r in rows])),
          "ssim": float(np.mean([r["ssim"] for r in rows])), "count": float(len(rows))}


def load_test_images(cfg) -> list[sr.TestImage]:
  source = cfg.test_source or cfg.source
  return sr.test_set(source, scale=cfg.scale, data_dir=cfg.data_dir,
                     limit=cfg.max_test_images, antialias=cfg.antialias)


def _bicubic_result(cfg, workdir, test_images) -> engine.TrainResult:
  rows = bicubic_scores(test_images)
  metrics_ = mean_scores(rows)
  _write_eval(workdir, cfg, rows, metrics_)
  ts = engine.TrainState(jnp.zeros((), jnp.int32), {}, (), {}, jax.random.PRNGKey(0))
  return engine.TrainResult(ts, [], metrics_, 0, 0.0)


def _write_eval(workdir, cfg, rows, means) -> None:
  if workdir is None or jax.process_index() != 0:
    return
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "sr_eval.json"), "w") as f:
    json.dump({"variant": srcnn.canonical_variant(cfg.variant), "scale": int(cfg.scale),
               "test_source": cfg.test_source or cfg.source, "mean": means, "images": rows},
              f, indent=1)


def train_and_evaluate(cfg, workdir: str | None, *, mesh=None, hooks=(), progress: bool = True,
                       test_images: Sequence[sr.TestImage] | None = None
                       ) -> engine.TrainResult:
  """Trains SRCNN of `cfg` with the engine (resuming from `workdir`), then scores every
  test image whole; `result.eval_metrics` holds the mean PSNR and SSIM.

  The bicubic variant trains nothing and scores the bicubic input.
  """
  variant = srcnn.canonical_variant(cfg.variant)
  mesh = mesh or engine.make_mesh()
  validate(cfg, None if variant == "bicubic" else mesh)
  if variant != "bicubic":
    engine.check_workdir(workdir, cfg)
  if test_images is None:
    test_images = load_test_images(cfg)
  if variant == "bicubic":
    return _bicubic_result(cfg, workdir, test_images)
  task = make_task(cfg, test_images=test_images)
  result = engine.train(task, config=cfg, workdir=workdir, mesh=mesh, hooks=hooks,
                        progress=progress)
  ts = result.train_state
  variables = jax.device_get({"params": ts.params, **ts.state})
  rows, _ = evaluate_images(build_model(cfg), variables, test_images)
  means = mean_scores(rows)
  _write_eval(workdir, cfg, rows, means)
  patch = {f"patch_{k}": v for k, v in result.eval_metrics.items() if k != "count"}
  return dataclasses.replace(result, eval_metrics={**means, **patch})
