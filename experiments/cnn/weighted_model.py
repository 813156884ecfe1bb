"""The paper's CNN with learned divisive normalizations (results/PROTOCOL_WEIGHTED.md).

`WeightedCNN` is `experiments.cnn.model.CNN` with four more normalizer kinds, each a module
of divnorm with its paper's parameters and initialization:

| variant | kind | the layer N of conv-N-ReLU | source |
|---|---|---|---|
| GDN | ``gdn`` | `divnorm.linen.GDN` (alpha 2, epsilon 1/2) | Balle et al. 2016 |
| Miller | ``miller`` | ReLU, then `MillerNorm` (the ReLU after it is a no-op) | Miller et al. 2022 |
| Miller+BN | ``miller_bn`` | ReLU, `MillerNorm`, then batch norm (sigma 1e-2, affine) | their best order |
| Burg | ``burg`` | `BurgNorm` (it rectifies), L1 on v | Burg et al. 2021 |
| CS | ``center_surround`` | `CenterSurroundNorm` (with its affine) | Pan et al. 2021 |

BN* and DN* are the converged study's variants (`experiments.cnn.model.VARIANT_HPARAMS`).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from divnorm import linen as dnn
from divnorm._src import linen_families as families
from divnorm._src.nonnegative import nonnegative
from experiments.cnn import model as cnn_model
from experiments.cnn.model import DN_WINDOWS, NormSpec

# Burg's L1 weight on v per layer (ours: results/PROTOCOL_WEIGHTED.md).
BURG_V_L1 = 1e-3

WEIGHTED_VARIANTS = {
    "GDN": NormSpec("gdn", 0.0, 0.0, False, "normalized"),
    "Miller": NormSpec("miller", 0.0, 0.0, False, "normalized"),
    "Miller+BN": NormSpec("miller_bn", 1e-2, 0.0, True, "normalized"),
    "Burg": NormSpec("burg", 0.0, BURG_V_L1, False, "normalized"),
    "CS": NormSpec("center_surround", 0.0, 0.0, True, "normalized"),
}
STUDY_VARIANTS = ("BN*", "DN*", *WEIGHTED_VARIANTS)


def variant_spec(name: str) -> NormSpec:
  """The normalizer of a study variant: a learned pool, or the converged study's BN*/DN*."""
  if name in WEIGHTED_VARIANTS:
    return WEIGHTED_VARIANTS[name]
  return cnn_model.variant_spec(name)


class WeightedCNN(cnn_model.CNN):
  """`CNN` whose normalizer may also be a learned divisive normalization (the table above)."""

  def _normalize(self, z_BxHxWxC, *, layer: int, train: bool):
    kind, name = self.norm.kind, f"norm_{layer}"
    if kind == "gdn":
      return dnn.GDN(name=name)(z_BxHxWxC)
    if kind == "miller":
      return families.MillerNorm(name=name)(nn.relu(z_BxHxWxC))
    if kind == "miller_bn":
      a = families.MillerNorm(name=name)(nn.relu(z_BxHxWxC))
      return dnn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                           sigma=self.norm.sigma, name=f"bn_{layer}")(a)
    if kind == "burg":
      return families.BurgNorm(kernel_size=DN_WINDOWS[layer], v_l1=self.norm.l1_alpha,
                               name=name)(z_BxHxWxC)
    if kind == "center_surround":
      return families.CenterSurroundNorm(name=name)(z_BxHxWxC)
    return super()._normalize(z_BxHxWxC, layer=layer, train=train)


def learned_pools(params) -> dict[str, dict[str, np.ndarray]]:
  """The learned pools of every normalizer, as the values they stand for (NumPy).

  GDN: ``gamma`` (``[i, j]``: j in the pool of i) and ``beta``; Burg: ``u``, ``|v|`` (as
  ``[i, j]``), ``n``, ``eta``; CS: ``gamma_k``, ``gamma_s``, ``beta``; Miller: its scalars.
  """
  out = {}
  for layer, p in params.items():
    if not layer.startswith("norm_") or not isinstance(p, dict):
      continue
    if "gamma" in p and "beta" in p and "gamma_k" not in p:  # GDN (raw, reparameterized)
      pool = {"gamma": nonnegative(p["gamma"]), "beta": nonnegative(p["beta"], minimum=1e-6)}
    elif "v" in p:  # Burg
      pool = {"u": nonnegative(p["u"]), "v": jnp.abs(p["v"]).T, "n": p["n"], "eta": p["eta"]}
    elif "gamma_k" in p:  # centre-surround
      pool = {k: nonnegative(p[k]) for k in ("gamma_k", "gamma_s", "beta")}
    elif "lamb" in p:  # Miller
      pool = {k: p[k] for k in ("lamb", "alpha", "beta", "k")}
    else:
      continue
    out[layer] = {k: np.asarray(v, np.float64) for k, v in pool.items()}
  return out


def channel_pool(pools: dict[str, np.ndarray]) -> np.ndarray | None:
  """``[C, C]``: the weight of filter j in the pool of filter i, or None (no channel pool).

  Centre-surround's centre pool is within groups of 8: outside a group it is 0 (not a
  learned weight), so `pool_similarity` looks at pairs within groups only for it.
  """
  if "gamma" in pools:
    return pools["gamma"]
  if "v" in pools:
    return pools["v"]
  if "gamma_k" in pools:
    g = pools["gamma_k"]  # [j in group, i]
    size, c = g.shape
    out = np.full((c, c), np.nan)
    for i in range(c):
      start = (i // size) * size
      out[i, start:start + size] = g[:, i]
    return out
  return None


def filter_similarity(kernel_HxWxIxO) -> np.ndarray:
  """``[O, O]``: the absolute cosine similarity of the first layer's filters."""
  w = np.asarray(kernel_HxWxIxO, np.float64).reshape(-1, kernel_HxWxIxO.shape[-1])
  w = w / np.maximum(np.linalg.norm(w, axis=0, keepdims=True), 1e-30)
  return np.abs(w.T @ w)


def pool_similarity(pool_CxC: np.ndarray, similarity_CxC: np.ndarray) -> tuple[float, float, int]:
  """Spearman's rho (and its two-sided p, and n) between the pool weights and the filter
  similarity, over ordered pairs of distinct filters whose weight is learned (not NaN)."""
  from scipy import stats

  keep = ~np.eye(len(pool_CxC), dtype=bool) & np.isfinite(pool_CxC)
  rho, p = stats.spearmanr(pool_CxC[keep], similarity_CxC[keep])
  return float(rho), float(p), int(keep.sum())


@dataclasses.dataclass(frozen=True)
class PoolRow:
  """The V1 question for one run: does the first layer pool similar filters more?"""

  rho: float
  p: float
  pairs: int


def first_layer_pool_similarity(params) -> PoolRow | None:
  """`pool_similarity` of the first normalizer's channel pool and the first conv's filters."""
  pools = learned_pools(params).get("norm_0")
  pool = None if pools is None else channel_pool(pools)
  if pool is None:
    return None
  rho, p, n = pool_similarity(pool, filter_similarity(params["conv_0"]["kernel"]))
  return PoolRow(rho, p, n)


def init_and_apply(variant: str, images_BxHxWxC, key=None):
  """Initializes the study's CNN of `variant` and applies it (a smoke test's helper)."""
  model = WeightedCNN(num_classes=10, norm=variant_spec(variant))
  key = jax.random.key(0) if key is None else key
  variables = model.init(key, images_BxHxWxC, train=False)
  logits, _ = model.apply(variables, images_BxHxWxC, train=True,
                          mutable=["batch_stats", "losses"])
  return model, variables, logits

