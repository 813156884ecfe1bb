"""The weighted-fields study's CNN: every variant initializes, applies and trains two steps;
the pool-similarity analysis on known pools."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from divnorm import linen as dnn
from experiments.cnn import weighted_model as W
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
