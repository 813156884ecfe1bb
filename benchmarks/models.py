"""Model-level throughput: one jitted train step per normalizer variant, interleaved.

The CNN is `experiments.cnn.model.CNN` (the paper's CIFAR network, batch 100, 32x32x3
inputs); the language model is `experiments.rnn.model.RNNLanguageModel` (2-layer
LSTM, hidden 200, batch 20, 20 steps, vocabulary 10k). Inputs are random arrays of
those shapes: only the speed is measured. Each step is SGD with momentum on the loss
plus every sown L1 penalty, the update the experiments run.

`PluggableCNN` and `PluggableLSTMLM` are the same two networks with the normalizer
passed in as a module factory, so that flax.linen's modules and divnorm's run in the
same network (the device check's "divnorm against flax" train steps).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import timing

CNN_VARIANTS = ("baseline", "BN", "BN*", "LN", "LN*", "DN", "DN*")
RNN_VARIANTS = ("baseline", "bn", "ln", "ln_star", "dn", "dn_star")


def _penalty(updates) -> jax.Array:
  from divnorm import linen as dnn
  return dnn.sum_penalties(updates.get("losses", {}))


def _train_step(apply_loss, params, state):
  """A jitted SGD-momentum step of ``apply_loss(params, state, batch) -> (loss, state)``."""
  tx = optax.sgd(1e-3, momentum=0.9)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, state, opt_state, batch):
    (loss, new_state), grads = jax.value_and_grad(apply_loss, has_aux=True)(
        params, state, batch)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new_state, opt_state, loss

  return step, opt_state


def cnn_steps(variants, *, batch_size: int, image_shape=(32, 32, 3)) -> dict:
  """Variant -> a zero-argument callable running one CNN train step."""
  from experiments.cnn import model as cnn

  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.normal(size=(batch_size, *image_shape)), jnp.float32),
           "label": jnp.asarray(rng.integers(0, 10, size=batch_size), jnp.int32)}
  calls = {}
  for name in variants:
    model = cnn.CNN(num_classes=10, norm=cnn.variant_spec(name))
    variables = model.init(jax.random.key(0), batch["image"], train=True)
    params = variables["params"]
    state = {k: v for k, v in variables.items() if k not in ("params", "losses")}

    def loss(params, state, batch, model=model):
      logits, updates = model.apply({"params": params, **state}, batch["image"], train=True,
                                    mutable=["losses", *state])
      new_state = {k: v for k, v in updates.items() if k != "losses"}
      ce = jnp.mean(cnn.cross_entropy(logits, batch["label"]))
      return ce + _penalty(updates), new_state

    step, opt_state = _train_step(loss, params, state)
    calls[name] = (lambda step=step, p=params, s=state, o=opt_state: step(p, s, o, batch))
  return calls


def rnn_steps(variants, *, batch_size: int, num_steps: int, hidden: int, vocab: int,
              dn_window: int = 61) -> dict:
  """Variant -> a zero-argument callable running one LSTM LM train step."""
  from experiments.rnn import model as rnn

  rng = np.random.default_rng(0)
  tokens = jnp.asarray(rng.integers(0, vocab, size=(batch_size, num_steps + 1)), jnp.int32)
  batch = {"x": tokens[:, :-1], "y": tokens[:, 1:]}
  sigma = {"ln_s": 1.0, "ln_star": 1.0, "dn": 1.0, "dn_star": 1.0, "bn_star": 1.0}
  alpha = {"ln_star": 1e-3, "dn_star": 1e-4, "bn_star": 1e-1}
  calls = {}
  for name in variants:
    spec = rnn.NormSpec(variant=name, sigma=sigma.get(name, 0.0), l1_alpha=alpha.get(name, 0.0),
                        dn_window=dn_window)
    model = rnn.RNNLanguageModel(vocab_size=vocab, hidden_size=hidden, spec=spec)
    carry = rnn.initial_carry("lstm", batch_size, hidden, 2)
    variables = model.init(jax.random.key(0), batch["x"], carry)
    params = variables["params"]
    state = {k: v for k, v in variables.items() if k not in ("params", "losses")}

    def loss(params, state, batch, model=model, carry=carry):
      (logits, _), updates = model.apply({"params": params, **state}, batch["x"], carry,
                                         mutable=["losses", *state])
      new_state = {k: v for k, v in updates.items() if k != "losses"}
      logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
      nll = -jnp.mean(jnp.take_along_axis(logp, batch["y"][..., None], axis=-1))
      return nll + _penalty(updates), new_state

    step, opt_state = _train_step(loss, params, state)
    calls[name] = (lambda step=step, p=params, s=state, o=opt_state: step(p, s, o, batch))
  return calls


def throughput(calls: dict, reference: str, *, rounds: int, target_s: float) -> dict:
  """Steps per second of each variant and its throughput relative to `reference`."""
  t = timing.interleaved(calls, rounds=rounds, target_s=target_s)
  out = {}
  for name in calls:
    r = t.ratio(reference, name)  # time(ref) / time(name) = throughput(name) / throughput(ref)
    out[name] = {"steps_per_s": 1.0 / t.median(name), "vs_ref": r}
  return out


def pipeline_rate(*, batch_size: int, seconds: float) -> dict | None:
  """Batches per second of the experiments' input pipeline on Fashion-MNIST (real data).

  `experiments.data.batching.train_batches` with the paper's mean-image preprocessing,
  as the CNN experiment feeds its step; None where the data or the module is missing.
  """
  try:
    from experiments.data import batching, idx, images
    x, y = idx.load_idx_split("/usr/share/datasets/fashion-mnist", "train")
  except (ImportError, OSError, FileNotFoundError, ValueError):
    return None
  x = x if x.ndim == 4 else x[..., None]
  it = batching.train_batches({"image": x, "label": y}, batch_size=batch_size, seed=0,
                              transform=images.make_preprocess(images.mean_image(x)),
                              process_index=0, process_count=1)
  next(it)
  n, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds:
    jax.device_put(next(it)["image"]).block_until_ready()
    n += 1
  return {"batches_per_s": n / (time.perf_counter() - start), "shape": x.shape}


# ---- the same networks with any normalizer module: flax.linen's against divnorm's -------

class PluggableCNN(nn.Module):
  """The paper's CIFAR CNN: three 5x5 conv layers, each conv -> norm -> ReLU -> pool.

  Attributes:
    norm: layer index -> a new normalizer module, or None (the baseline).
  """

  norm: Callable
  num_classes: int = 10

  @nn.compact
  def __call__(self, x_BxHxWxC):
    x = x_BxHxWxC
    for i, (features, pool) in enumerate(((32, nn.max_pool), (32, nn.avg_pool),
                                          (64, nn.avg_pool))):
      x = nn.Conv(features, (5, 5), padding="SAME")(x)
      layer = self.norm(i)
      if layer is not None:
        x = layer(x)
      x = pool(nn.relu(x), (3, 3), strides=(2, 2), padding="SAME")
    x = nn.Dense(64)(x.reshape(x.shape[0], -1))
    return nn.Dense(self.num_classes)(x)


CNN_WINDOWS = (5, 3, 3)  # the paper's DN windows per layer


def pluggable_cnn_norms() -> dict[str, Callable]:
  """Variant -> the normalizer factory; the paper's CIFAR-10 sigma and L1 settings."""
  from divnorm import linen as dnn
  return {
      "baseline": lambda i: None,
      "flax BN": lambda i: nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-4),
      "BN": lambda i: dnn.BatchNorm(use_running_average=False, momentum=0.9, sigma=1e-2),
      "flax LN": lambda i: nn.LayerNorm(reduction_axes=(1, 2, 3), epsilon=1e-4),
      "LN": lambda i: dnn.LayerNorm(reduction_axes=(1, 2, 3), sigma=1e-2),
      "DN": lambda i: dnn.DivisiveNorm(summation_window=CNN_WINDOWS[i], sigma=0.5),
      "DN*": lambda i: dnn.DivisiveNorm(summation_window=CNN_WINDOWS[i], sigma=0.5,
                                        l1_alpha=0.005),
  }


class PluggableLSTMCell(nn.Module):
  """One LSTM step; ``W[x, h] + b`` split into gates, each normalized by its own module."""

  hidden: int
  norm: Callable | None = None  # () -> a new normalizer module

  @nn.compact
  def __call__(self, carry, x_BxD):
    c, h = carry
    z = nn.Dense(4 * self.hidden)(jnp.concatenate([x_BxD, h], axis=-1))
    gates = jnp.split(z, 4, axis=-1)
    if self.norm is not None:
      gates = [self.norm()(g) for g in gates]
    i, j, f, o = gates
    c = nn.sigmoid(f) * c + nn.sigmoid(i) * jnp.tanh(j)
    h = nn.sigmoid(o) * jnp.tanh(c if self.norm is None else self.norm()(c))
    return (c, h), h


class PluggableLSTMLM(nn.Module):
  """A 2-layer LSTM language model (the paper's PTB setup) with any gate normalizer."""

  vocab: int
  hidden: int
  norm: Callable | None = None

  @nn.compact
  def __call__(self, tokens_BxT):
    x = nn.Embed(self.vocab, self.hidden)(tokens_BxT)
    scan = nn.scan(PluggableLSTMCell, variable_broadcast="params",
                   split_rngs={"params": False}, in_axes=1, out_axes=1)
    for layer in range(2):
      zeros = jnp.zeros((x.shape[0], self.hidden), x.dtype)
      _, x = scan(self.hidden, self.norm, name=f"lstm_{layer}")((zeros, zeros), x)
    return nn.Dense(self.vocab)(x)


def pluggable_lstm_norms(dn_window: int) -> dict[str, Callable | None]:
  """LN-s on the gates (sigma 1, no affine), flax against divnorm; DN on the gates."""
  from divnorm import linen as dnn
  return {
      "baseline": None,
      "flax LN": lambda: nn.LayerNorm(epsilon=1.0, use_scale=False, use_bias=False),
      "LN": lambda: dnn.LayerNorm(sigma=1.0, use_scale=False, use_bias=False),
      "DN": lambda: dnn.DivisiveNorm(summation_window=dn_window, sigma=1.0),
  }


def pluggable_train_step(model: nn.Module, tx, loss_of_output: Callable) -> Callable:
  """A jitted step of ``loss(model(x)) + every sown penalty``; batch statistics updated."""

  def loss_fn(params, state, x, y):
    out, updates = model.apply({"params": params, **state}, x,
                               mutable=["batch_stats", "losses"])
    penalty = sum(jnp.sum(v) for v in jax.tree.leaves(updates.get("losses", {})))
    new_state = {k: v for k, v in updates.items() if k != "losses"}
    return loss_of_output(out, y) + penalty, new_state

  def step(params, state, opt_state, x, y):
    (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new_state, opt_state, loss

  return jax.jit(step)


def random_variables(model: nn.Module, x, rng: np.random.Generator) -> dict:
  """The model's variables without running `init` (which compiles, or runs op by op).

  Only the speed is measured, so weights and biases are N(0, 0.05^2) draws of the right
  shapes; scales start at 1 and running statistics at mean 0 and variance 1, as flax's and
  divnorm's do.
  """
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)

  def leaf(path, s):
    collection, name = (getattr(k, "key", None) for k in (path[0], path[-1]))
    if collection == "params" and name != "scale":
      return jnp.asarray(0.05 * rng.normal(size=s.shape), s.dtype)
    fill = 1.0 if name in ("var", "scale") else 0.0
    return jnp.full(s.shape, fill, s.dtype)

  return jax.tree_util.tree_map_with_path(leaf, shapes)
