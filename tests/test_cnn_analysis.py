"""experiments.cnn.analysis: Table 10's correlation and mutual information, checked against
closed forms and float64 NumPy references."""

import numpy as np
import pytest

from experiments.cnn import analysis


def _gaussian_pair(rho, n, seed=0):
  rng = np.random.default_rng(seed)
  a = rng.standard_normal(n)
  b = rho * a + np.sqrt(1 - rho**2) * rng.standard_normal(n)
  return a, b


def test_pairwise_correlation_matches_numpy():
  rng = np.random.default_rng(0)
  mix = rng.standard_normal((5, 5))
  z = rng.standard_normal((4000, 5)) @ mix
  r = np.corrcoef(z.T)
  expected = np.mean([abs(r[i, j]) for i in range(5) for j in range(i + 1, 5)])
  assert analysis.pairwise_correlation(z) == pytest.approx(expected, rel=1e-12)


def test_pairwise_correlation_skips_constant_columns():
  a, b = _gaussian_pair(0.5, 1000)
  z = np.stack([a, np.full_like(a, 3.0), b], 1)
  assert analysis.pairwise_correlation(z) == pytest.approx(abs(np.corrcoef(a, b)[0, 1]))
  with pytest.raises(ValueError, match="two non-constant"):
    analysis.pairwise_correlation(np.stack([a, np.zeros_like(a)], 1))


def test_joint_histogram_counts_every_sample():
  a, b = _gaussian_pair(0.3, 5000)
  counts, ea, eb = analysis.joint_histogram(a, b, bins=12)
  assert counts.shape == (12, 12) and counts.sum() == 5000
  assert len(ea) == len(eb) == 13
  # The 0.5-99.5 percentile range: ~0.5% of the samples beyond each end, in the end bins.
  assert counts[0].sum() > 0.005 * 5000 and counts[-1].sum() > 0.005 * 5000
  # A histogram2d on the same edges agrees inside them.
  inside = (a >= ea[0]) & (a < ea[-1]) & (b >= eb[0]) & (b < eb[-1])
  ref, _, _ = np.histogram2d(a[inside], b[inside], bins=[ea, eb])
  assert np.array_equal(counts[1:-1, 1:-1], ref[1:-1, 1:-1])


def test_mutual_information_independent_is_near_zero():
  # Plug-in bias for independent units is about (bins - 1)^2 / (2 N) = 0.0009 nats here.
  a, _ = _gaussian_pair(0.0, 200_000, seed=1)
  b, _ = _gaussian_pair(0.0, 200_000, seed=2)
  assert 0 <= analysis.mutual_information(a, b) < 3e-3


def test_mutual_information_of_a_gaussian_pair():
  # I = -log(1 - rho^2) / 2 = 0.5108 nats for rho = 0.8; 20 bins over +-2.6 std lose a
  # few percent to discretization (always downward: binning is a processing step).
  a, b = _gaussian_pair(0.8, 200_000)
  exact = -0.5 * np.log(1 - 0.8**2)
  estimate = analysis.mutual_information(a, b, bins=20)
  assert 0.9 * exact < estimate < exact + 3e-3


def test_mutual_information_of_a_unit_with_itself_is_its_binned_entropy():
  a, _ = _gaussian_pair(0.0, 20_000)
  counts, _, _ = analysis.joint_histogram(a, a, bins=16)
  p = counts.sum(1) / counts.sum()
  entropy = -np.sum(p[p > 0] * np.log(p[p > 0]))
  assert analysis.mutual_information(a, a, bins=16) == pytest.approx(entropy, rel=1e-12)


def test_mutual_information_is_invariant_to_rescaling():
  a, b = _gaussian_pair(0.6, 20_000)
  base = analysis.mutual_information(a, b)
  assert analysis.mutual_information(4.0 * a - 7.0, 0.01 * b + 2.0) == pytest.approx(base)


def test_pairwise_mutual_information_is_the_mean_over_pairs():
  rng = np.random.default_rng(3)
  z = rng.standard_normal((5000, 4)) @ rng.standard_normal((4, 4))
  pairs = [analysis.mutual_information(z[:, i], z[:, j], bins=10)
           for i in range(4) for j in range(i + 1, 4)]
  assert analysis.pairwise_mutual_information(z, bins=10) == pytest.approx(np.mean(pairs))


def test_samples_and_table10():
  rng = np.random.default_rng(4)
  act = rng.standard_normal((3, 6, 6, 4)).astype(np.float32)
  z = analysis.samples(act)
  assert z.shape == (108, 4) and z.dtype == np.float64
  assert np.array_equal(z, act.reshape(-1, 4))
  sub = analysis.samples(act, max_samples=50, seed=1)
  assert sub.shape == (50, 4) and len(np.unique(sub[:, 0])) == 50
  stats = analysis.table10(act, bins=5, max_samples=None)
  assert stats["correlation"] == pytest.approx(analysis.pairwise_correlation(z))
  assert stats["mutual_information"] == pytest.approx(
      analysis.pairwise_mutual_information(z, bins=5))


def test_bad_arguments():
  with pytest.raises(ValueError, match="same number"):
    analysis.joint_histogram(np.zeros(3), np.zeros(4))
  with pytest.raises(ValueError, match="at least 2"):
    analysis.joint_histogram(np.zeros(3), np.zeros(3), bins=1)


@pytest.mark.slow
@pytest.mark.loose_promotion
@pytest.mark.parametrize("variant", ["BN", "DN*"])
def test_first_layer_preactivations_of_the_paper_cnn(variant):
  """conv_0's output (conv + bias, before the normalizer), recomputed with lax by hand."""
  import jax

  from experiments.cnn import model as cnn

  model = cnn.CNN(num_classes=10, norm=cnn.variant_spec(variant))
  x = jax.random.normal(jax.random.key(0), (2, 12, 12, 1))
  variables = model.init(jax.random.key(1), x, train=False)
  z = analysis.first_layer_preactivations(model, variables, x, train=False)
  conv = variables["params"]["conv_0"]
  expected = jax.lax.conv_general_dilated(
      x, conv["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
      precision=jax.lax.Precision.HIGHEST) + conv["bias"]
  assert z.shape == (2, 12, 12, 32) and z.dtype == np.float32
  np.testing.assert_allclose(z, np.asarray(expected), rtol=1e-5, atol=1e-9)
  second = analysis.first_layer_preactivations(model, variables, x, conv_name="conv_1",
                                               train=False)
  assert second.shape == (2, 6, 6, 32)  # after the 3x3/2 max pool
  with pytest.raises(ValueError, match="conv_0"):
    analysis.first_layer_preactivations(model, variables, x, conv_name="conv_9", train=False)
