"""The weighted-fields study's CNN: every variant initializes, applies and trains two steps;
the pool-similarity analysis on known pools."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from divnorm import linen as dnn
from experiments.cnn import weighted_model as W
from experiments.cnn import weighted_report as R
from experiments.cnn.model import cross_entropy

IMAGES = jnp.asarray(np.random.default_rng(0).normal(size=(4, 28, 28, 1)) * 50, jnp.float32)
LABELS = jnp.asarray([0, 1, 2, 3])


@pytest.mark.slow
@pytest.mark.loose_promotion
@pytest.mark.parametrize("variant", W.STUDY_VARIANTS)
def test_two_training_steps(variant):
  model, variables, logits = W.init_and_apply(variant, IMAGES)
  assert logits.shape == (4, 10)
  params, state = variables["params"], {k: v for k, v in variables.items() if k != "params"}
  opt = optax.sgd(1e-2, momentum=0.9)
  opt_state = opt.init(params)

  @jax.jit
  def step(params, state, opt_state):
    def loss(params):
      logits, penalty, updates = dnn.apply_with_penalty(
        model, {"params": params, **state}, IMAGES, train=True,
        mutable=[k for k in state if k != "losses"] or False)
      return jnp.mean(cross_entropy(logits, LABELS)) + penalty, updates
    (value, updates), grads = jax.value_and_grad(loss, has_aux=True)(params)
    new, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, new), {**state, **updates}, opt_state, value

  for _ in range(2):
    params, state, opt_state, value = step(params, state, opt_state)
    assert np.isfinite(float(value))
  pools = W.learned_pools(params)
  if variant in W.WEIGHTED_VARIANTS:
    assert set(pools) == {"norm_0", "norm_1", "norm_2"}
  if variant in ("GDN", "Burg", "CS"):
    row = W.first_layer_pool_similarity(params)
    assert -1 <= row.rho <= 1 and row.pairs > 0


def test_pool_similarity_sees_a_pool_that_prefers_similar_filters():
  rng = np.random.default_rng(1)
  kernel = rng.normal(size=(5, 5, 1, 16))
  similarity = W.filter_similarity(kernel)
  rho, p, n = W.pool_similarity(similarity**2 + 0.01 * rng.uniform(size=(16, 16)), similarity)
  assert rho > 0.9 and p < 1e-6 and n == 16 * 15
  rho, _, _ = W.pool_similarity(-similarity, similarity)
  assert rho == pytest.approx(-1.0)
  groups = W.channel_pool({"gamma_k": rng.uniform(size=(8, 16))})
  assert np.isnan(groups[0, 8]) and np.isfinite(groups[0, 7])


def _rows():
  rng = np.random.default_rng(2)
  rows = {}
  for variant in W.STUDY_VARIANTS:
    for seed in range(3):
      row = {"variant": variant, "seed": seed, "test_accuracy": 0.85 + 0.002 * rng.normal(),
             "train_accuracy": 0.9, "converged": True}
      if variant == "GDN":
        row["test_accuracy"] -= 0.05  # clearly worse than both baselines
      if variant in R.POOL_MODELS:
        row["pool_similarity"] = {"rho": 0.4, "p": 1e-4, "pairs": 992}
      rows[f"{variant}-s{seed}"] = row
  rows["Miller-s2"] = {"variant": "Miller", "seed": 2, "failed": "NonFiniteLossError: step 3"}
  return rows


def test_report_tables():
  rows = _rows()
  table = R.accuracy_table(rows)
  assert "| Miller |" in table and "(n=3)" in table
  miller = next(line for line in table.splitlines() if line.startswith("| Miller |"))
  assert miller.split("|")[4].strip() == "1"  # the failed run counts, at chance
  found = {(c["model"], c["baseline"]): c for c in R.comparisons(rows)}
  assert len(found) == 2 * len(W.WEIGHTED_VARIANTS) == 10  # the protocol's family
  assert found[("GDN", "DN*")]["verdict"] == "holds" and found[("GDN", "DN*")]["difference"] < 0
  assert "holds" in R.v1_table(rows)
  assert R.v1_verdict([(0.3, 0.01), (0.2, 0.04), (-0.1, 0.2)]) == "not established"
  assert R.v1_verdict([(-0.3, 0.01)] * 3) == "does not hold"
  assert R.v1_verdict([(0.3, 0.01)] * 2) == "not established"


def test_the_converged_reference_takes_the_same_seeds_as_this_study(tmp_path):
  """The converged study's table later added seeds 3-5 (PROTOCOL.md, 2026-12-07); the
  reference line says "the same seeds", so it keeps seeds 0-2."""
  for seed, accuracy in ((0, 0.85), (1, 0.86), (2, 0.87), (3, 0.10)):
    folder = tmp_path / "converged" / f"table-DN_star-s{seed}"
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps(
        {"plan": "table", "variant": "DN*", "seed": seed, "test_accuracy": accuracy}))
  line = R.converged_reference(str(tmp_path / "weighted"))
  assert "DN* 0.8600 ± 0.0100 (n=3)" in line and "BN* not found" in line
