"""The CIFAR CNN of Ren et al. (2017), §5.1 / REFERENCE §3, with its twelve normalizer variants.

conv5x5(32) -> N -> ReLU -> max pool 3x3/2
conv5x5(32) -> N -> ReLU -> avg pool 3x3/2
conv5x5(64) -> N -> ReLU -> avg pool 3x3/2
flatten -> dense 64 (linear) -> dense num_classes

N is the variant's normalizer between conv+bias and ReLU. Hyperparameters per
variant and dataset come from the paper and its code (cifar_exp_config.py of
renmengye/div-norm): see `VARIANT_HPARAMS`.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

import divnorm
from divnorm import linen as dnn

# Paper names, in the order of Tables 3 and 7.
VARIANTS = ("baseline", "baseline+L1", "BN", "BN+L1", "BN-s", "BN*", "LN", "LN+L1", "LN-s",
            "LN*", "DN", "DN*")
# The reference code's model names (run_cifar_exp.py --model) and other spellings.
ALIASES = {"base": "baseline", "base-l1": "baseline+L1", "baseline-l1": "baseline+L1",
           "bn-l1": "BN+L1", "bn-star": "BN*", "ln-l1": "LN+L1", "ln-star": "LN*",
           "dn-star": "DN*"}
HPARAM_SETS = ("cifar10", "cifar100")
BORDERS = ("valid", "zeros", "zeros_with_divisor_bug")
# DN windows per conv layer (summation == suppression), REFERENCE §3.
DN_WINDOWS = (5, 3, 3)
CONV_FEATURES = (32, 32, 64)
CONV_INIT_STD = (1e-4, 1e-2, 1e-2)
DENSE_INIT_STD = 1e-1
HIDDEN = 64


@dataclasses.dataclass(frozen=True)
class NormSpec:
  """The normalizer of one variant.

  Attributes:
    kind: "none", "batch", "layer" or "divisive".
    sigma: smoothing term (epsilon = sigma**2).
    l1_alpha: weight of alpha * mean|v| per normalized layer (for "none": of
      the raw pre-activation, as the reference code's baseline+L1).
    affine: learned gamma/beta after normalizing.
    paper_schedule: "baseline" (50k steps, x0.1 at 5k, 30k) or "normalized"
      (80k steps, x0.1 at 30k, 50k).
  """
  kind: str
  sigma: float
  l1_alpha: float
  affine: bool
  paper_schedule: str


def _spec(kind, sigma, alpha, affine, schedule="normalized"):
  return {"kind": kind, "sigma": sigma, "l1_alpha": alpha, "affine": affine,
          "paper_schedule": schedule}


# (CIFAR-10, CIFAR-100) settings, from REFERENCE §3 and the reference code.
VARIANT_HPARAMS = {
    "baseline": (_spec("none", 0.0, 0.0, False, "baseline"),) * 2,
    "baseline+L1": (_spec("none", 0.0, 0.01, False, "baseline"),) * 2,
    "BN": (_spec("batch", 1e-2, 0.0, True),) * 2,
    "BN+L1": (_spec("batch", 1e-2, 0.005, True), _spec("batch", 1e-2, 0.01, True)),
    "BN-s": (_spec("batch", 1.0, 0.0, True), _spec("batch", 0.25, 0.0, True)),
    "BN*": (_spec("batch", 1.0, 0.005, True), _spec("batch", 0.25, 0.01, True)),
    "LN": (_spec("layer", 1e-2, 0.0, True),) * 2,
    "LN+L1": (_spec("layer", 1e-2, 0.005, True),) * 2,
    "LN-s": (_spec("layer", 0.5, 0.0, False),) * 2,
    "LN*": (_spec("layer", 0.5, 0.005, False),) * 2,
    "DN": (_spec("divisive", 0.5, 0.0, False),) * 2,
    "DN*": (_spec("divisive", 0.5, 0.005, False), _spec("divisive", 0.5, 0.001, False)),
}


def canonical_variant(name: str) -> str:
  """Maps a paper name (any case) or reference-code alias to the paper name."""
  for v in VARIANTS:
    if name.lower() == v.lower():
      return v
  if name.lower() in ALIASES:
    return ALIASES[name.lower()]
  raise ValueError(f"unknown variant {name!r}; valid choices: {', '.join(VARIANTS)} "
                   f"(or the reference code's names {', '.join(ALIASES)}).")


def variant_spec(name: str, hparams: str = "cifar10") -> NormSpec:
  """The paper's normalizer settings of variant `name` for CIFAR-10 or CIFAR-100."""
  if hparams not in HPARAM_SETS:
    raise ValueError(f"unknown hyperparameter set {hparams!r}; valid choices: "
                     f"{', '.join(HPARAM_SETS)}.")
  return NormSpec(**VARIANT_HPARAMS[canonical_variant(name)][HPARAM_SETS.index(hparams)])


class L1Activity(nn.Module):
  """Identity that sows alpha * mean|x| into "losses" (the baseline+L1 variant)."""
  l1_alpha: float

  @nn.compact
  def __call__(self, x):
    self.sow("losses", "l1", divnorm.l1_penalty(x, self.l1_alpha))
    return x


class CNN(nn.Module):
  """The paper's 3-conv CIFAR network with one normalizer kind.

  Attributes:
    num_classes: 10 or 100 (any).
    norm: the variant's `NormSpec`.
    border: DN border mode ("valid": average over in-bounds entries;
      "zeros": the reference code's zero padding; see divnorm.normalize).
    bn_momentum: decay of BN running averages (0.9 in the reference code).
    learn_sigma: learn each normalizer's sigma (as ``exp(log_sigma)``, starting
      at the variant's sigma), as the paper's ResNet config does.
  """
  num_classes: int
  norm: NormSpec
  border: str = "valid"
  bn_momentum: float = 0.9
  learn_sigma: bool = False

  def _normalize(self, z_BxHxWxC, *, layer: int, train: bool):
    n = self.norm
    if n.kind == "none":
      return L1Activity(n.l1_alpha, name=f"l1_{layer}")(z_BxHxWxC) if n.l1_alpha > 0 else z_BxHxWxC
    common = dict(sigma=n.sigma, l1_alpha=n.l1_alpha, use_scale=n.affine, use_bias=n.affine,
                  learn_sigma=self.learn_sigma, name=f"norm_{layer}")
    if n.kind == "batch":
      return dnn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                           **common)(z_BxHxWxC)
    if n.kind == "layer":
      return dnn.LayerNorm(reduction_axes=(1, 2, 3), feature_axes=-1, **common)(z_BxHxWxC)
    if n.kind == "divisive":
      w = DN_WINDOWS[layer]
      return dnn.DivisiveNorm(summation_window=(w, w), suppression_window=(w, w),
                              border=self.border, **common)(z_BxHxWxC)
    raise ValueError(f"unknown normalizer kind {n.kind!r}.")

  @nn.compact
  def __call__(self, x_BxHxWxC, *, train: bool):
    x = x_BxHxWxC
    for layer, (features, std) in enumerate(zip(CONV_FEATURES, CONV_INIT_STD, strict=True)):
      z = nn.Conv(features, (5, 5), padding="SAME", kernel_init=nn.initializers.normal(std),
                  name=f"conv_{layer}")(x)
      x = nn.relu(self._normalize(z, layer=layer, train=train))
      if layer == 0:
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
      else:
        x = nn.avg_pool(x, (3, 3), strides=(2, 2), padding="SAME", count_include_pad=False)
    x_BxD = x.reshape((x.shape[0], -1))
    h_BxH = nn.Dense(HIDDEN, kernel_init=nn.initializers.normal(DENSE_INIT_STD), name="fc_0")(x_BxD)
    return nn.Dense(self.num_classes, kernel_init=nn.initializers.normal(DENSE_INIT_STD),
                    name="fc_1")(h_BxH)


def learned_sigmas(params) -> dict[str, jax.Array]:
  """``{"sigma_norm_0": sigma, ...}``: each normalizer's learned sigma (empty without any)."""
  return {f"sigma_{name}": jnp.exp(p["log_sigma"]).reshape(())
          for name, p in params.items() if isinstance(p, dict) and "log_sigma" in p}


def cross_entropy(logits_BxK: jax.Array, labels_B: jax.Array) -> jax.Array:
  """Per-example softmax cross entropy, float32."""
  logp_BxK = jax.nn.log_softmax(logits_BxK.astype(jnp.float32), axis=-1)
  return -jnp.take_along_axis(logp_BxK, labels_B[:, None], axis=-1)[:, 0]
