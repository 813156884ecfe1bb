"""Recurrent cells with every normalizer placement of Ren et al. (2017), and a 2-layer LM.

Cells (Flax linen, usable on their own, `(carry, x_BxD) -> (carry, h_BxH)`):

  * `LSTMCell`: TensorFlow gate order i, j, f, o; forget bias 0.
  * `VanillaRNNCell(activation="tanh" | "relu")`.

Normalizer placements (`variant`, paper section 5.3 / `shared/REFERENCE.md` section 4):

  =========  ==============================================================
  baseline   z = W[x,h] + b, no normalization.
  bn, bn_*   z = BN(W_x x) + BN(W_h h) + b (separate batch norms, statistics
             per time step, running averages per time step for evaluation,
             gamma shared over time); LSTM also h = s(o) tanh(BN(c)) as in
             Cooijmans et al. (2017). `bn_star` adds sigma = 1 and L1.
  ln         The original LN-LSTM (Ba et al., 2016): z = LN(W_x x) +
             LN(W_h h) + b with gamma/beta, h = s(o) tanh(LN(c)). Vanilla
             RNN: one LN (with gamma/beta) of W[x,h] + b.
  ln_s, ln_* z = W[x,h] + b, each gate's pre-activation normalized by its own
             LN with sigma = 1 and no gamma/beta; LSTM h = s(N(o)) tanh(N(c)),
             c carried raw. `ln_star` adds L1.
  dn, dn_*   As ln_s but with divisive normalization over a 1-D window of
             hidden units (`NormSpec.dn_window`, a width).
  =========  ==============================================================

The L1 penalty alpha * mean|v| of every normalizer (every gate, every time
step, every layer) is sown into the "losses" collection with Flax's default
append; `divnorm.linen.sum_penalties` adds them up. Batch statistics live in "batch_stats";
under `nn.scan` (the LM) both collections get a leading time axis, so batch
norm keeps separate statistics for each of the unrolled time steps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

import divnorm

CELLS = ("lstm", "tanh", "relu")
VARIANTS = ("baseline", "bn", "bn_star", "ln", "ln_s", "ln_star", "dn", "dn_star")
VARIANT_LABELS = {
    "baseline": "Baseline", "bn": "BN", "bn_star": "BN*", "ln": "LN", "ln_s": "LN-s",
    "ln_star": "LN*", "dn": "DN", "dn_star": "DN*",
}
CELL_LABELS = {"lstm": "LSTM", "tanh": "tanh RNN", "relu": "ReLU RNN"}
# DN border modes: "valid" (the default), and the paper code's reproduction modes.
BORDERS = ("valid", "zeros", "zeros_with_divisor_bug")
_LSTM_GATES = 4  # i, j, f, o


def canonical_variant(name: str) -> str:
  """The variant of `VARIANTS` that `name` spells, as there or as the paper labels it
  (`VARIANT_LABELS`: ``"BN*"``, ``"LN-s"``), in any case."""
  key = str(name).strip().lower()
  for v in VARIANTS:
    if key in (v, VARIANT_LABELS[v].lower()):
      return v
  raise ValueError(f"unknown RNN variant {name!r}; valid choices: {', '.join(VARIANTS)} (or "
                   f"the paper's {', '.join(VARIANT_LABELS.values())}).")


@dataclasses.dataclass(frozen=True)
class NormSpec:
  """How a cell normalizes its pre-activations.

  Attributes:
    variant: one of `VARIANTS`.
    sigma: smoothing term of the normalizer (epsilon == sigma**2).
    l1_alpha: weight of the L1 penalty alpha * mean|v| on the centered
      pre-activations; 0 disables it.
    dn_window: width (odd) of the 1-D summation and suppression window over
      hidden units for `dn` / `dn_star`. The paper's radius R is width 2R+1.
    dn_border: border handling of the window, see `divnorm.divisive_norm`.
    bn_momentum: decay of the per-time-step running averages.
  """

  variant: str = "baseline"
  sigma: float = 0.0
  l1_alpha: float = 0.0
  dn_window: int = 61
  dn_border: str = "valid"
  bn_momentum: float = 0.9

  def __post_init__(self):
    if self.variant not in VARIANTS:
      raise ValueError(f"Unknown RNN variant {self.variant!r}; expected one of {VARIANTS}.")
    if self.variant.startswith("dn") and (self.dn_window < 1 or self.dn_window % 2 == 0):
      raise ValueError(
          f"dn_window={self.dn_window} must be a positive odd width (radius R -> width 2R+1).")

  @property
  def placement(self) -> str:
    """"none", "separate_bn", "separate_ln" or "per_gate"."""
    if self.variant == "baseline":
      return "none"
    if self.variant in ("bn", "bn_star"):
      return "separate_bn"
    if self.variant == "ln":
      return "separate_ln"
    return "per_gate"


def uniform_init(scale: float = 0.1):
  """U(-scale, scale), the PTB models' initializer."""

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -scale, scale)

  return init


def check_spec(spec: NormSpec, hidden_size: int) -> None:
  """Raises ValueError if `spec` cannot run on `hidden_size` units."""
  if spec.variant.startswith("dn") and spec.dn_window > hidden_size:
    odd = hidden_size if hidden_size % 2 else hidden_size - 1
    raise ValueError(
        f"dn_window={spec.dn_window} is wider than the hidden size {hidden_size}; "
        f"use a width <= {hidden_size} (the paper's radius 30 / 60 is width 61 / 121): e.g. "
        f"--set norm.dn_window={odd}, or a wider model with --set "
        f"model.hidden_size={spec.dn_window}.")


class Normalizer(nn.Module):
  """One normalizer applied to `x_BxGxH`: each of the G groups (gates) separately, in one call.

  Layer and divisive norm see the gates as G * B rows of H units (the window runs along
  H within each gate), so the LSTM's four gate normalizations are one library call with
  the numbers of four (tested).

  Attributes:
    kind: "batch" (per feature over the batch), "layer" (over H) or
      "divisive" (1-D window over H).
    spec: sigma, L1 weight, window and momentum.
    use_scale, use_bias: learned gamma / beta per feature (G * H of them).
    train: batch statistics (and running-average updates) vs running averages.
  """

  kind: str
  spec: NormSpec
  use_scale: bool = False
  use_bias: bool = False
  train: bool = True

  @nn.compact
  def __call__(self, x_BxGxH: jax.Array) -> jax.Array:
    b, g, h = x_BxGxH.shape
    sigma = self.spec.sigma
    if self.kind == "batch":
      x_BxD = x_BxGxH.reshape(b, g * h)
      mean = self.variable("batch_stats", "mean", jnp.zeros, (g * h,), jnp.float32)
      var = self.variable("batch_stats", "var", jnp.ones, (g * h,), jnp.float32)
      stats = divnorm.BatchStats(mean=mean.value, var=var.value)
      (y_BxD, v_BxD), new_stats = divnorm.batch_norm(
          x_BxD, stats, training=self.train, feature_axes=-1, momentum=self.spec.bn_momentum,
          sigma=sigma, return_centered=True)
      if self.train and not self.is_initializing():
        mean.value, var.value = new_stats.mean, new_stats.var
      y_BxGxH, v_BxGxH = y_BxD.reshape(b, g, h), v_BxD.reshape(b, g, h)
    else:
      x_NxH = x_BxGxH.reshape(b * g, h)
      if self.kind == "layer":
        y_NxH, v_NxH = divnorm.layer_norm(x_NxH, reduction_axes=-1, sigma=sigma,
                                          return_centered=True)
      elif self.kind == "divisive":
        y_NxH, v_NxH = divnorm.divisive_norm(
            x_NxH, summation_window=(self.spec.dn_window,), sigma=sigma,
            border=self.spec.dn_border, return_centered=True)
      else:
        raise ValueError(f"Unknown normalizer kind {self.kind!r}.")
      y_BxGxH, v_BxGxH = y_NxH.reshape(b, g, h), v_NxH.reshape(b, g, h)
    if self.spec.l1_alpha > 0:
      # One penalty per gate (each gate is its own normalized layer in the paper's code):
      # the gates are the same size, so the sum of their G means is G times the mean of all.
      self.sow("losses", "l1", g * divnorm.l1_penalty(v_BxGxH, self.spec.l1_alpha))
    if self.use_scale:
      gamma = self.param("scale", nn.initializers.ones, (g, h), jnp.float32)
      y_BxGxH = y_BxGxH * gamma[None].astype(y_BxGxH.dtype)
    if self.use_bias:
      beta = self.param("bias", nn.initializers.zeros, (g, h), jnp.float32)
      y_BxGxH = y_BxGxH + beta[None].astype(y_BxGxH.dtype)
    return y_BxGxH


class _PreActivation(nn.Module):
  """The G pre-activations [B, G, H] of a cell from x and h, normalized per `spec`."""

  hidden_size: int
  num_gates: int
  spec: NormSpec
  train: bool = True
  init_scale: float = 0.1

  @nn.compact
  def __call__(self, x_BxD: jax.Array, h_BxH: jax.Array) -> jax.Array:
    b = x_BxD.shape[0]
    g, hs = self.num_gates, self.hidden_size
    kernel_init = uniform_init(self.init_scale)
    placement = self.spec.placement
    if placement in ("separate_bn", "separate_ln"):
      wx = nn.Dense(g * hs, use_bias=False, kernel_init=kernel_init, name="W_x")(x_BxD)
      wh = nn.Dense(g * hs, use_bias=False, kernel_init=kernel_init, name="W_h")(h_BxH)
      bias = self.param("b", nn.initializers.zeros, (g * hs,), jnp.float32)
      kind = "batch" if placement == "separate_bn" else "layer"
      # Vanilla-RNN LN: one LN of W[x,h]+b (handled below); LSTM LN: separate W_x x, W_h h.
      if kind == "layer" and g == 1:
        z = wx + wh + bias[None]
        return Normalizer("layer", self.spec, use_scale=True, use_bias=True, train=self.train,
                          name="norm")(z.reshape(b, 1, hs))
      # Joint over all G*H features (one LN / BN per matrix product), gamma shared over time.
      nx = Normalizer(kind, self.spec, use_scale=True, train=self.train, name="norm_x")(
          wx.reshape(b, 1, g * hs))
      nh = Normalizer(kind, self.spec, use_scale=True, train=self.train, name="norm_h")(
          wh.reshape(b, 1, g * hs))
      return (nx + nh).reshape(b, g, hs) + bias.reshape(1, g, hs)
    z = nn.Dense(g * hs, kernel_init=kernel_init, name="W")(
        jnp.concatenate([x_BxD, h_BxH], axis=-1)).reshape(b, g, hs)
    if placement == "none":
      return z
    kind = "layer" if self.spec.variant.startswith("ln") else "divisive"
    return Normalizer(kind, self.spec, train=self.train, name="norm")(z)


def _cell_output_norm(spec: NormSpec, train: bool) -> Normalizer | None:
  """The normalizer of the LSTM cell state before tanh, or None."""
  placement = spec.placement
  if placement == "none":
    return None
  if placement == "separate_bn":
    return Normalizer("batch", spec, use_scale=True, use_bias=True, train=train, name="norm_c")
  if placement == "separate_ln":
    return Normalizer("layer", spec, use_scale=True, use_bias=True, train=train, name="norm_c")
  kind = "layer" if spec.variant.startswith("ln") else "divisive"
  return Normalizer(kind, spec, train=train, name="norm_c")


class LSTMCell(nn.Module):
  """LSTM cell with a normalizer placement. Carry `(c_BxH, h_BxH)`."""

  hidden_size: int
  spec: NormSpec = NormSpec()
  train: bool = True
  init_scale: float = 0.1

  @nn.compact
  def __call__(self, carry: tuple[jax.Array, jax.Array], x_BxD: jax.Array):
    c_BxH, h_BxH = carry
    z_Bx4xH = _PreActivation(self.hidden_size, _LSTM_GATES, self.spec, self.train,
                             self.init_scale, name="pre")(x_BxD, h_BxH)
    i, j, f, o = (z_Bx4xH[:, k] for k in range(_LSTM_GATES))
    new_c = nn.sigmoid(f) * c_BxH + nn.sigmoid(i) * jnp.tanh(j)
    norm_c = _cell_output_norm(self.spec, self.train)
    c_out = new_c if norm_c is None else norm_c(new_c[:, None])[:, 0]
    new_h = nn.sigmoid(o) * jnp.tanh(c_out)
    return (new_c, new_h), new_h

  @staticmethod
  def initial_carry(batch_size: int, hidden_size: int) -> tuple[jax.Array, jax.Array]:
    zeros = jnp.zeros((batch_size, hidden_size), jnp.float32)
    return (zeros, zeros)


class VanillaRNNCell(nn.Module):
  """h = act(N(W[x,h] + b)) (or separate BN of W_x x and W_h h). Carry `h_BxH`."""

  hidden_size: int
  activation: str = "tanh"
  spec: NormSpec = NormSpec()
  train: bool = True
  init_scale: float = 0.1

  @nn.compact
  def __call__(self, carry: jax.Array, x_BxD: jax.Array):
    z_Bx1xH = _PreActivation(self.hidden_size, 1, self.spec, self.train, self.init_scale,
                             name="pre")(x_BxD, carry)
    act = {"tanh": jnp.tanh, "relu": nn.relu}.get(self.activation)
    if act is None:
      raise ValueError(f"Unknown activation {self.activation!r}; expected 'tanh' or 'relu'.")
    new_h = act(z_Bx1xH[:, 0])
    return new_h, new_h

  @staticmethod
  def initial_carry(batch_size: int, hidden_size: int) -> jax.Array:
    return jnp.zeros((batch_size, hidden_size), jnp.float32)


def make_cell(cell: str, hidden_size: int, spec: NormSpec, *, train: bool = True,
              init_scale: float = 0.1, name: str | None = None) -> nn.Module:
  """The cell module named `cell` ("lstm", "tanh" or "relu")."""
  check_spec(spec, hidden_size)
  if cell == "lstm":
    return LSTMCell(hidden_size, spec, train, init_scale, name=name)
  if cell in ("tanh", "relu"):
    return VanillaRNNCell(hidden_size, cell, spec, train, init_scale, name=name)
  raise ValueError(f"Unknown RNN cell {cell!r}; expected one of {CELLS}.")


def initial_carry(cell: str, batch_size: int, hidden_size: int, num_layers: int) -> tuple:
  """Zero state of a `num_layers`-layer LM: one carry per layer."""
  if cell not in CELLS:
    raise ValueError(f"Unknown RNN cell {cell!r}; expected one of {CELLS}.")
  one = (LSTMCell if cell == "lstm" else VanillaRNNCell).initial_carry
  return tuple(one(batch_size, hidden_size) for _ in range(num_layers))


class RNNLanguageModel(nn.Module):
  """Word-level LM: embedding, `num_layers` recurrent layers scanned over time, softmax.

  `__call__(tokens_BxT, carry) -> (logits_BxTxV, new_carry)`; the carry is
  `initial_carry(...)` at the start and the returned state afterwards
  (truncated backprop: the caller stops gradients at batch boundaries).
  Embedding size == hidden size, every weight U(-init_scale, init_scale),
  biases 0, no dropout (the paper's small PTB setup).
  """

  vocab_size: int
  hidden_size: int = 200
  num_layers: int = 2
  cell: str = "lstm"
  spec: NormSpec = NormSpec()
  train: bool = True
  init_scale: float = 0.1
  unroll: int = 1

  @nn.compact
  def __call__(self, tokens_BxT: jax.Array, carry: Sequence[Any]):
    if len(carry) != self.num_layers:
      raise ValueError(f"carry has {len(carry)} layers, the model {self.num_layers}.")
    init = uniform_init(self.init_scale)
    x_BxTxH = nn.Embed(self.vocab_size, self.hidden_size, embedding_init=init,
                       name="embed")(tokens_BxT)
    make_cell(self.cell, self.hidden_size, self.spec)  # validates cell / spec early
    cell_cls = LSTMCell if self.cell == "lstm" else VanillaRNNCell
    scanned = nn.scan(
        cell_cls,
        variable_broadcast="params",
        variable_axes={"batch_stats": 0, "losses": 0},
        split_rngs={"params": False},
        in_axes=1,
        out_axes=1,
        unroll=self.unroll,
    )
    new_carry = []
    for layer in range(self.num_layers):
      kwargs = {} if self.cell == "lstm" else {"activation": self.cell}
      layer_carry, x_BxTxH = scanned(
          hidden_size=self.hidden_size, spec=self.spec, train=self.train,
          init_scale=self.init_scale, name=f"rnn{layer}", **kwargs)(carry[layer], x_BxTxH)
      new_carry.append(layer_carry)
    logits_BxTxV = nn.Dense(self.vocab_size, kernel_init=init, name="softmax")(x_BxTxH)
    return logits_BxTxV, tuple(new_carry)

