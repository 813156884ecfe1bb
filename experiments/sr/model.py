"""SRCNN 9-5-5 (Dong et al. 2014) with the normalizers of Ren et al. (2017), §5.3.

conv 9x9, 64 -> N -> ReLU -> conv 5x5, 32 -> N -> ReLU -> conv 5x5, 1

All convolutions are VALID, so an H x W input gives (H - 16) x (W - 16): the
output pixel (i, j) is the estimate of input pixel (i + 8, j + 8) (`BORDER`).
Weights are N(0, 1e-3^2), biases 0. N is the variant's normalizer, after the
convolution and before the ReLU:

* "srcnn": none.
* "bn": batch norm with gamma/beta, running averages for evaluation.
* "dn": DN*, divisive norm over all channels with a 5x5 summation and a 7x7
  suppression window, sigma 1.0, L1 penalty alpha = 0.1 on the centered
  activation (sown into "losses"); no gamma/beta.

"bicubic" (no network) is handled by the experiment, not here.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from divnorm import linen as dnn

VARIANTS = ("bicubic", "srcnn", "bn", "dn")
NETWORK_VARIANTS = ("srcnn", "bn", "dn")
LABELS = {"bicubic": "Bicubic", "srcnn": "SRCNN", "bn": "BN", "dn": "DN*"}
KERNEL_SIZES = (9, 5, 5)
FEATURES = (64, 32, 1)
BORDER = sum(k // 2 for k in KERNEL_SIZES)  # 8
INIT_STD = 1e-3
BORDERS = ("valid", "zeros", "zeros_with_divisor_bug")


def canonical_variant(name: str) -> str:
  """Maps paper spellings ("DN*", "SRCNN", "BN", "Bicubic") to a name in VARIANTS."""
  key = str(name).strip().lower().replace("*", "").replace("-star", "")
  key = {"baseline": "srcnn", "none": "srcnn", "bicubic": "bicubic"}.get(key, key)
  if key not in VARIANTS:
    raise ValueError(f"unknown SR variant {name!r}; valid choices: "
                     f"{', '.join(LABELS[v] for v in VARIANTS)} (or {', '.join(VARIANTS)}).")
  return key


@dataclasses.dataclass(frozen=True)
class NormConfig:
  """Normalizer hyperparameters (the paper's SR values by default).

  Attributes:
    dn_summation: DN's summation window (A), one odd width per spatial axis.
    dn_suppression: DN's suppression window (B).
    dn_sigma: DN's smoothing term.
    dn_l1_alpha: weight of alpha * mean|v| per DN layer.
    dn_border: "valid" (statistics over in-bounds entries), "zeros" or
      "zeros_with_divisor_bug" (the reference TF code, see REFERENCE §2).
    bn_sigma: BN's smoothing term (epsilon = sigma**2).
    bn_momentum: decay of BN's running averages (0.9 in the reference code).
  """
  dn_summation: tuple[int, int] = (5, 5)
  dn_suppression: tuple[int, int] = (7, 7)
  dn_sigma: float = 1.0
  dn_l1_alpha: float = 0.1
  dn_border: str = "valid"
  bn_sigma: float = 1e-2
  bn_momentum: float = 0.9


class SRCNN(nn.Module):
  """SRCNN 9-5-5 on a batch of bicubic-upsampled Y images.

  Attributes:
    variant: "srcnn", "bn" or "dn".
    norm: normalizer hyperparameters.
    init_std: standard deviation of the Gaussian weight init.
  """
  variant: str = "srcnn"
  norm: NormConfig = NormConfig()
  init_std: float = INIT_STD

  def _normalize(self, h_BxHxWxC: jax.Array, *, train: bool, name: str) -> jax.Array:
    if self.variant == "srcnn":
      return h_BxHxWxC
    if self.variant == "bn":
      return dnn.BatchNorm(use_running_average=not train, momentum=self.norm.bn_momentum,
                           sigma=self.norm.bn_sigma, name=name)(h_BxHxWxC)
    if self.variant == "dn":
      return dnn.DivisiveNorm(
          summation_window=tuple(self.norm.dn_summation),
          suppression_window=tuple(self.norm.dn_suppression), sigma=self.norm.dn_sigma,
          l1_alpha=self.norm.dn_l1_alpha, border=self.norm.dn_border, name=name)(h_BxHxWxC)
    raise ValueError(f"SRCNN variant must be one of {', '.join(NETWORK_VARIANTS)}; "
                     f"got {self.variant!r} ('bicubic' has no network).")

  @nn.compact
  def __call__(self, x_BxHxWx1: jax.Array, *, train: bool) -> jax.Array:
    """Maps a (B, H, W, 1) input to the (B, H - 16, W - 16, 1) estimate of its center."""
    if x_BxHxWx1.ndim != 4 or x_BxHxWx1.shape[-1] != 1:
      raise ValueError(f"SRCNN takes Y images of shape (B, H, W, 1); got {x_BxHxWx1.shape}.")
    if min(x_BxHxWx1.shape[1:3]) <= 2 * BORDER:
      raise ValueError(f"input {x_BxHxWx1.shape[1]}x{x_BxHxWx1.shape[2]} is too small: "
                       f"SRCNN 9-5-5 (VALID) needs more than {2 * BORDER} pixels per side.")
    init = nn.initializers.normal(stddev=self.init_std)
    h = x_BxHxWx1
    for i, (k, f) in enumerate(zip(KERNEL_SIZES, FEATURES, strict=True)):
      h = nn.Conv(f, (k, k), padding="VALID", kernel_init=init,
                  bias_init=nn.initializers.zeros, name=f"conv{i + 1}")(h)
      if i < len(KERNEL_SIZES) - 1:
        h = nn.relu(self._normalize(h, train=train, name=f"norm{i + 1}"))
    return h


def crop_target(y_BxHxWx1: jax.Array) -> jax.Array:
  """The part of a target that SRCNN's VALID output covers (BORDER pixels off each side)."""
  return y_BxHxWx1[:, BORDER:-BORDER, BORDER:-BORDER, :]


def loss_fn(prediction_BxHxWx1: jax.Array, target_BxHxWx1: jax.Array) -> jax.Array:
  """SRCNN's objective: mean squared error / 2 over the cropped target."""
  diff = prediction_BxHxWx1.astype(jnp.float32) - crop_target(target_BxHxWx1).astype(jnp.float32)
  return 0.5 * jnp.mean(jnp.square(diff))
