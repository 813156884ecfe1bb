"""What the L1 penalty does to first-layer pre-normalization activations (paper Table 10).

Ren et al. (2017) report, for each CNN variant, the pairwise correlation and mutual
information of the first convolution's responses *before* normalization: the L1 penalty
on the centered activations makes the filters' responses less redundant. Here:

- `first_layer_preactivations`: the first convolution's output (conv + bias, the input of
  the first normalizer) of a trained flax model, read with ``capture_intermediates``.
- `samples`: those responses as samples of the channel vector, one per example and
  position (``[N*H*W, C]``).
- `pairwise_correlation`: the mean over channel pairs of |Pearson correlation|.
- `joint_histogram`, `mutual_information`: the plug-in estimate from a joint histogram.
  Binning (our choice; the paper does not state one in its tables): each unit's range is
  its 0.5th to 99.5th percentile cut into `bins` equal-width bins, values outside it
  counted in the end bins. The estimate is in nats and invariant to a positive affine
  rescaling of either unit.
- `pairwise_mutual_information`: the mean over channel pairs.
- `table10`: both numbers for one set of activations.
"""

from __future__ import annotations

import itertools

import flax.linen as nn
import numpy as np


def first_layer_preactivations(model: nn.Module, variables, images, *, conv_name=None,
                               **apply_kwargs) -> np.ndarray:
  """The output of the first `nn.Conv` that `model` calls on `images`.

  Args:
    model: a flax linen model whose first layer is an `nn.Conv` (the paper's CNN).
    variables: its variables (``params`` and, for batch norm, ``batch_stats``).
    images: the model's input batch.
    conv_name: read this convolution instead of the first one called.
    **apply_kwargs: passed to ``model.apply`` (e.g. ``train=False``).

  Returns:
    float32 ``[B, H, W, C]``: conv + bias, the input of the first normalizer.
  """
  _, state = model.apply(
      variables, images, capture_intermediates=lambda mdl, _: isinstance(mdl, nn.Conv),
      mutable=["intermediates"], **apply_kwargs)
  captured = {name: out["__call__"][0] for name, out in state["intermediates"].items()
              if isinstance(out, dict) and "__call__" in out}
  if not captured:
    raise ValueError(f"{type(model).__name__} calls no nn.Conv at its top level; pass a model "
                     f"whose first layer is a convolution.")
  if conv_name is None:
    conv_name = next(iter(captured))
  elif conv_name not in captured:
    raise ValueError(f"conv_name={conv_name!r} is not a convolution of the model; its "
                     f"convolutions are {sorted(captured)}.")
  return np.asarray(captured[conv_name], np.float32)


def samples(activations_BxHxWxC, *, max_samples: int | None = None, seed: int = 0) -> np.ndarray:
  """``[N, C]``: one sample of the channel vector per example and position (float64).

  `max_samples` draws that many without replacement (fixed `seed`), to bound the cost.
  """
  z = np.asarray(activations_BxHxWxC, np.float64)
  z = z.reshape(-1, z.shape[-1])
  if max_samples is not None and z.shape[0] > max_samples:
    rows = np.random.default_rng(seed).choice(z.shape[0], max_samples, replace=False)
    z = z[np.sort(rows)]
  return z


def pairwise_correlation(z_NxC) -> float:
  """Mean |Pearson correlation| over the pairs of distinct columns of `z_NxC`.

  Constant columns have no correlation; they are left out (with a ValueError if fewer than
  two columns vary).
  """
  z = np.asarray(z_NxC, np.float64)
  z = z[:, z.std(axis=0) > 0]
  if z.shape[1] < 2:
    raise ValueError("pairwise_correlation needs at least two non-constant columns.")
  r = np.corrcoef(z, rowvar=False)
  upper = np.triu_indices(r.shape[0], k=1)
  return float(np.abs(r[upper]).mean())


def _edges(a: np.ndarray, bins: int) -> np.ndarray:
  lo, hi = np.percentile(a, [0.5, 99.5])
  if hi <= lo:
    lo, hi = a.min(), a.max()
  if hi <= lo:
    hi = lo + 1.0
  return np.linspace(lo, hi, bins + 1)


def _digitize(a: np.ndarray, edges: np.ndarray) -> np.ndarray:
  """Bin index of each value; values outside the edges go to the end bins."""
  return np.clip(np.searchsorted(edges, a, side="right") - 1, 0, len(edges) - 2)


def joint_histogram(a, b, *, bins: int = 20):
  """Counts ``[bins, bins]`` of the pairs ``(a[i], b[i])``, with each unit's bin edges.

  Returns:
    ``(counts, edges_a, edges_b)``; ``counts[i, j]`` counts the samples with `a` in bin i and
    `b` in bin j, and sums to the number of samples.
  """
  a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
  if a.shape != b.shape:
    raise ValueError(f"a and b must hold the same number of samples; got {a.size} and {b.size}.")
  if bins < 2:
    raise ValueError(f"bins={bins} must be at least 2.")
  edges_a, edges_b = _edges(a, bins), _edges(b, bins)
  flat = _digitize(a, edges_a) * bins + _digitize(b, edges_b)
  counts = np.bincount(flat, minlength=bins * bins).reshape(bins, bins)
  return counts, edges_a, edges_b


def _mutual_information_of_counts(counts: np.ndarray) -> float:
  p = counts / counts.sum()
  pa, pb = p.sum(axis=1, keepdims=True), p.sum(axis=0, keepdims=True)
  nz = p > 0
  return float(np.sum(p[nz] * np.log(p[nz] / (pa @ pb)[nz])))


def mutual_information(a, b, *, bins: int = 20) -> float:
  """Plug-in mutual information (nats) of two units from their joint histogram."""
  return _mutual_information_of_counts(joint_histogram(a, b, bins=bins)[0])


def pairwise_mutual_information(z_NxC, *, bins: int = 20) -> float:
  """Mean mutual information (nats) over the pairs of distinct columns of `z_NxC`."""
  z = np.asarray(z_NxC, np.float64)
  if z.shape[1] < 2:
    raise ValueError("pairwise_mutual_information needs at least two columns.")
  digits = np.stack([_digitize(z[:, c], _edges(z[:, c], bins)) for c in range(z.shape[1])], 1)
  values = []
  for i, j in itertools.combinations(range(z.shape[1]), 2):
    counts = np.bincount(digits[:, i] * bins + digits[:, j], minlength=bins * bins)
    values.append(_mutual_information_of_counts(counts.reshape(bins, bins)))
  return float(np.mean(values))


def table10(activations_BxHxWxC, *, bins: int = 20, max_samples: int | None = 20_000,
            seed: int = 0) -> dict[str, float]:
  """Pairwise correlation and mutual information (nats) of first-layer activations."""
  z = samples(activations_BxHxWxC, max_samples=max_samples, seed=seed)
  return {"correlation": pairwise_correlation(z),
          "mutual_information": pairwise_mutual_information(z, bins=bins)}


# The paper's Table 10 (CIFAR-10, first layer, before normalization): correlation and
# mutual information; REFERENCE §3.
PAPER_TABLE10 = {
    "baseline": (0.1677, 0.3774),
    "BN": (0.5269, 1.4878),
    "BN*": (0.1578, 0.7287),
    "LN": (0.7199, 1.7784),
    "LN*": (0.1512, 0.6986),
    "DN": (0.1958, 0.8951),
    "DN*": (0.2031, 0.8412),
}
