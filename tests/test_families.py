"""Each divisive normalization family against a float64 transcription of its anchor's formula,
with identical parameters; gradients of the learned parameters; the weighted unified formula."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from divnorm import gdn as G
from divnorm import normalize
from divnorm._src import families as F
from divnorm._src import kernels as K
from tests import reference_weighted as R

X = np.random.default_rng(0).normal(size=(2, 4, 5, 8))


def _u(shape, low=0.1, high=1.0, seed=1):
  return np.random.default_rng(seed).uniform(low, high, shape)


@pytest.mark.parametrize("alpha,epsilon", [(1.0, 1.0), (2.0, 0.5), (1.5, 0.7)])
@pytest.mark.parametrize("inverse", [False, True])
def test_gdn_is_tensorflow_compressions_formula(x64, alpha, epsilon, inverse):
  beta, gamma = _u(8, 0.5, 2.0), _u((8, 8), 0.0, 0.3)
  y = G.gdn(X, beta=beta, gamma=gamma, alpha=alpha, epsilon=epsilon, inverse=inverse)
  # tensorflow_compression's gamma[j, i] (row: the pooled channel) is divnorm's transpose.
  ref = R.gdn_tfc(X, beta, gamma.T, alpha=alpha, epsilon=epsilon, inverse=inverse)
  np.testing.assert_allclose(y, ref, rtol=1e-12)


def test_gdn_tensorflow_compression_layer_cases(x64):
  """The expected values of tensorflow_compression's gdn_test.py (default parameters:
  beta = 1, gamma = 0.1 I; alpha = epsilon = 1, the 2016 form alpha = 2, epsilon = 1/2)."""
  x = np.random.default_rng(2).uniform(-0.5, 0.5, (1, 2, 3, 4))
  beta, gamma = G.gdn_values(G.gdn_init(4, dtype=jnp.float64))
  gdn = lambda **kw: np.asarray(G.gdn(x, beta=beta, gamma=gamma, **kw))
  np.testing.assert_allclose(gdn(alpha=1, epsilon=1), x / (1 + 0.1 * abs(x)), atol=1e-6)
  np.testing.assert_allclose(gdn(alpha=1, epsilon=1, inverse=True), x * (1 + 0.1 * abs(x)),
                             atol=1e-6)
  np.testing.assert_allclose(gdn(), x / np.sqrt(1 + 0.1 * x**2), atol=1e-6)
  # Their fixed GDN with beta = 0, gamma = 1 (which divnorm.gdn refuses: beta > 0) is the
  # unified formula with sigma = 0: x / sum_j |x_j|.
  y = normalize(x, None, {3: K.mixing(np.ones((4, 4)))}, alpha=1, epsilon=1,
                         pool="sum")
  np.testing.assert_allclose(y, x / np.sum(abs(x), -1, keepdims=True), atol=1e-6)


def test_gdn_learned_exponents_and_parameters(x64):
  x = X[:1, :2, :2]
  raw = G.gdn_init(8, dtype=jnp.float64)

  def f(beta_raw, gamma_raw, alpha, epsilon):
    beta, gamma = G.gdn_values(G.GDNParams(beta_raw, gamma_raw))
    return G.gdn(x, beta=beta, gamma=gamma, alpha=alpha, epsilon=epsilon)

  args = (raw.beta + 0.1, raw.gamma + 0.2, jnp.asarray(1.3), jnp.asarray(0.6))
  check_grads(jax.jit(f), args, order=1, modes=["rev"])


def test_miller_against_their_code(x64):
  a = np.maximum(X, 0.0)
  for lamb, alpha, beta, k in [(2.0, 0.1, 1.0, 1.0), (0.6, 1.3, 0.75, 1.7)]:
    y = jax.jit(F.miller_norm, static_argnames="lamb")(a, lamb=lamb, alpha=alpha, beta=beta,
                                                         k=k)
    np.testing.assert_allclose(y, R.miller(a, lamb=lamb, alpha=alpha, beta=beta, k=k),
                               rtol=1e-12)


@pytest.mark.slow
def test_miller_gradients(x64):
  a = jnp.asarray(np.maximum(X[:1, :2, :2], 0.0))
  f = jax.jit(lambda lamb, alpha, beta, k: F.miller_norm(
    a, lamb=lamb, alpha=alpha, beta=beta, k=k, width=K.miller_width(0.6)))
  check_grads(f, tuple(jnp.asarray(v) for v in (0.6, 1.3, 0.75, 1.7)), order=1,
              modes=["rev"])


@pytest.mark.parametrize("channel_axis,channels", [(-1, 12), (1, 12), (-1, 300)])
def test_miller_of_a_concrete_lamb_differentiates_in_forward_mode(x64, channel_axis, channels):
  """A concrete lambda makes the kernel constants: ``jvp`` and ``jacfwd`` run in any layout
  (they stopped at the learned sums' custom VJP with the channels first or over 256 of them)
  and equal reverse mode's; the values are the authors' code's."""
  a = np.maximum(np.random.default_rng(3).normal(size=(2, 3, channels)), 0.0)
  a = np.moveaxis(a, -1, channel_axis)
  f = functools.partial(F.miller_norm, lamb=0.6, alpha=1.3, beta=0.75, k=1.7,
                        channel_axis=channel_axis)
  want = np.moveaxis(R.miller(np.moveaxis(a, channel_axis, -1), lamb=0.6, alpha=1.3,
                              beta=0.75, k=1.7), -1, channel_axis)
  np.testing.assert_allclose(f(a), want, rtol=1e-12)
  check_grads(f, (jnp.asarray(a),), order=1, modes=["fwd", "rev"])


def test_center_surround_against_pan_et_al(x64):
  beta, gamma_k, gamma_s = _u(8, 0.0, 1e-3), _u((8, 8)), _u((3, 3, 8))
  for dist in (1, 2):
    y = F.center_surround_norm(X, beta=beta, gamma_k=gamma_k, gamma_s=gamma_s,
                               surround_dist=dist)
    ref = R.pan_wn_s(X, beta=beta, gamma_k=gamma_k, gamma_s=gamma_s, gamma_out=1.0,
                     beta_out=0.0, surround_dist=dist)
    np.testing.assert_allclose(y, ref, rtol=1e-12)


def test_center_surround_groups(x64):
  x = np.random.default_rng(3).normal(size=(1, 3, 3, 16))
  gamma_k, gamma_s = _u((8, 16)), _u((3, 3, 16))
  y = F.center_surround_norm(x, beta=np.ones(16), gamma_k=gamma_k, gamma_s=gamma_s)
  ref = R.pan_wn_s(x, beta=np.ones(16), gamma_k=gamma_k, gamma_s=gamma_s, gamma_out=1.0,
                   beta_out=0.0, surround_dist=1)
  np.testing.assert_allclose(y, ref, rtol=1e-12)
  with pytest.raises(ValueError, match="group_size"):
    F.center_surround_norm(x, beta=np.ones(16), gamma_k=_u((4, 16)), gamma_s=gamma_s)


@pytest.mark.slow
def test_center_surround_gradients(x64):
  x = jnp.asarray(X[:1, :3, :3])
  f = jax.jit(lambda b, k, s: F.center_surround_norm(x, beta=b, gamma_k=k, gamma_s=s,
                                                     surround_dist=2))
  check_grads(f, (_u(8), _u((8, 8)), _u((3, 3, 8))), order=1, modes=["rev"])


def test_gaussian_norm_against_veerabadran_et_al(x64):
  key = jax.random.key(0)
  order = np.asarray(jax.random.permutation(key, 8))
  bank = F.gaussian_filterbank(8, 5, key)
  np.testing.assert_allclose(bank, R.veerabadran_gaussian_filterbank(8, 5, order), rtol=1e-12)
  sigma = _u(8)
  y = F.gaussian_norm(X, weights=bank, sigma=sigma)
  np.testing.assert_allclose(y, R.veerabadran(X, weights=bank, sigma=sigma), rtol=1e-12)


def test_gaussian_norm_takes_negative_weights_as_their_code(x64):
  """The pools are learned unconstrained (``DivNormExcInh.div``, a plain convolution): a
  negative weight is the formula's number, eager or jitted, not a field's error."""
  weights = _u((3, 3, 8)) - 0.3
  y = F.gaussian_norm(X, weights=weights, sigma=1.0)
  want = R.veerabadran(X, weights=weights, sigma=1.0)
  np.testing.assert_allclose(y, want, rtol=1e-12)
  np.testing.assert_allclose(jax.jit(lambda w: F.gaussian_norm(X, weights=w, sigma=1.0))(
    weights), want, rtol=1e-12)


@pytest.mark.slow
def test_gaussian_norm_gradients(x64):
  x = jnp.asarray(X[:1, :3, :3])
  f = jax.jit(lambda w, s: F.gaussian_norm(x, weights=w, sigma=s))
  check_grads(f, (_u((3, 3, 8)), _u(8)), order=1, modes=["rev"])


def test_gradients_where_the_divisors_constant_is_0(x64):
  """sigma = offset = 0, and beta = beta_min = 0 with an empty centre pool: the divisor's
  constant is 0, and the gradients are finite and right (sqrt(0) as sigma made them NaN)."""
  x, ring = jnp.asarray(X[:1, :3, :3]), jnp.asarray(_u((3, 3, 8)))
  dsigma = jax.jit(jax.grad(lambda s: F.gaussian_norm(x, weights=ring, sigma=s,
                                                      offset=0.0).sum()))(jnp.zeros(8))
  np.testing.assert_array_equal(dsigma, 0.0)  # y is even in sigma
  f = jax.jit(lambda x, b, k: F.center_surround_norm(x, beta=b, gamma_k=k, gamma_s=ring,
                                                     beta_min=0.0).sum())
  grad = jax.jit(jax.grad(f, (0, 1, 2)))
  args = (x, jnp.zeros(8), jnp.zeros((8, 8)))
  step = [jnp.asarray(_u(np.shape(a), -1.0, 1.0, seed=5)) for a in args]
  h = 1e-6
  plus, minus = ([a + sign * h * s for a, s in zip(args, step, strict=True)] for sign in (1, -1))
  difference = (f(*plus) - f(*minus)) / (2 * h)
  directional = sum(jnp.vdot(g, s) for g, s in zip(grad(*args), step, strict=True))
  np.testing.assert_allclose(directional, difference, rtol=1e-6)
  zero = jnp.zeros((1, 3, 3, 8), jnp.float32)  # the whole divisor 0 but for the floor
  assert all(np.isfinite(g).all() for g in grad(zero, zero[0, 0, 0], jnp.full((8, 8), 0.1)))


def test_burg_against_eq_1(x64):
  n, eta, u, v = _u(8, 0.8, 2.0), _u(8, 0.5, 1.5), _u((3, 3)), _u((8, 8), -1.0, 1.0)
  y = F.burg_norm(X, n=n, eta=eta, u=u, v=v)
  np.testing.assert_allclose(y, R.burg(X, n=n, eta=eta, u=u, v=v), rtol=1e-12)


@pytest.mark.slow
def test_burg_gradients(x64):
  x = jnp.asarray(np.abs(X[:1, :3, :3]) + 0.1)  # away from the kink of the rectifier
  f = jax.jit(lambda n, eta, u, v: F.burg_norm(x, n=n, eta=eta, u=u, v=v))
  check_grads(f, (_u(8, 0.8, 2.0), _u(8, 0.5, 1.5), _u((3, 3)), _u((8, 8), 0.1, 1.0)),
              order=1, modes=["rev"])


def _paper_formula(x, a, b, sigma, border="valid", mask=None):
  v = np.asarray(x) - R.weighted_pool(x, a, border=border, mask=mask)
  var = R.weighted_pool(v * v, b, border=border, mask=mask)
  y = v / np.sqrt(sigma**2 + var)
  return y if mask is None else np.where(mask, y, 0.0)


@pytest.mark.parametrize("border", ["valid", "zeros"])
def test_weighted_divisive_norm_is_the_paper_formula(x64, border):
  """The paper's DN with a Gaussian summation field and an exponential suppression field."""
  a = {1: K.gaussian(5, sigma=1.0), 2: K.gaussian(3, sigma=2.0), 3: None}
  b = {1: K.exponential(3, scale=1.0), 2: 3, 3: None}
  mask = np.random.default_rng(4).uniform(size=X.shape) > 0.2
  ra = {(1,): ("kernel", a[1].weights, 1, None), (2,): ("kernel", a[2].weights, 1, None),
        (3,): ("whole",)}
  rb = {(1,): ("kernel", b[1].weights, 1, None), (2,): ("kernel", np.ones(3), 1, None),
        (3,): ("whole",)}
  y = normalize(X, a, b, sigma=0.5, border=border, mask=mask)
  np.testing.assert_allclose(y, _paper_formula(X, ra, rb, 0.5, border, mask), rtol=1e-10,
                             atol=1e-12)


def test_weighted_fields_at_a_large_offset():
  """float32 at an offset of 1e4: the shift keeps the digits (float64 reference)."""
  x = X[:, :, :, :4] + 1e4
  a = {1: K.gaussian(5, sigma=1.0), 2: K.gaussian(5, sigma=1.0), 3: None}
  y = normalize(jnp.asarray(x, jnp.float32), a, sigma=0.1)
  ra = {(1,): ("kernel", a[1].weights, 1, None), (2,): ("kernel", a[2].weights, 1, None),
        (3,): ("whole",)}
  np.testing.assert_allclose(y, _paper_formula(x, ra, ra, 0.1), atol=2e-3)


@pytest.mark.slow
def test_axis_name_agrees_with_the_batch_axis_whole():
  x = jnp.asarray(X, jnp.float32)
  spec = {0: None, 1: K.gaussian(3, sigma=1.0), 3: None}
  full = normalize(x, spec, {0: None, 2: K.exponential(3, scale=1.0), 3: None})
  mapped = jax.jit(jax.vmap(lambda e: normalize(
    e, {0: K.gaussian(3, sigma=1.0), 2: None}, {1: K.exponential(3, scale=1.0), 2: None},
    axis_name="batch"), axis_name="batch"))(x)
  np.testing.assert_allclose(mapped, full, rtol=2e-5, atol=2e-5)


def test_errors():
  with pytest.raises(ValueError, match="alpha"):
    normalize(X, None, {3: K.mixing(np.eye(8))}, alpha=0.0)
  with pytest.raises(ValueError, match="pool"):
    normalize(X, (3,), pool="max")
  with pytest.raises(TypeError, match="suppression field"):
    normalize(X, None)
  with pytest.raises(ValueError, match="zeros_with_divisor_bug"):
    normalize(X, {1: K.gaussian(3, sigma=1.0)}, border="zeros_with_divisor_bug")
  with pytest.raises(ValueError, match="static width"):
    K.exponential(scale=jnp.asarray(2.0))


_ONES = np.ones((1, 3, 3, 8), np.float32)
_ARGS = {
    F.miller_norm: dict(lamb=2.0, alpha=0.1, beta=1.0, k=1.0),
    F.burg_norm: dict(n=1.0, eta=1.0, u=np.ones((3, 3)) / 9, v=np.eye(8)),
    F.center_surround_norm: dict(beta=np.zeros(8), gamma_k=np.ones((8, 8)) / 16,
                                 gamma_s=np.ones((3, 3, 8)) / 16),
    F.gaussian_norm: dict(weights=np.ones((3, 3, 8)) / 9, sigma=1.0),
}


def _case(fn, error, match, **kw):
  return pytest.param(fn, kw, error, match, id=f"{fn.__name__}-{'-'.join(kw)}-{error.__name__}")


@pytest.mark.parametrize("fn,kw,error,match", [
    _case(F.miller_norm, ValueError, "width=4 must be odd", width=4),
    _case(F.miller_norm, ValueError, "width=0", width=0),
    _case(F.miller_norm, ValueError, "lamb=0.0", lamb=0.0),
    _case(F.miller_norm, ValueError, "k=-1.0", k=-1.0),
    _case(F.miller_norm, ValueError, "alpha=-5.0", alpha=-5.0),
    _case(F.miller_norm, ValueError, "beta=nan", beta=float("nan")),
    _case(F.miller_norm, ValueError, r"alpha of shape \(3,\)", alpha=np.ones(3)),
    _case(F.miller_norm, ValueError, r"k of shape \(8,\)", k=np.ones(8)),
    _case(F.burg_norm, ValueError, r"u of shape \(2, 2\) has even", u=np.ones((2, 2))),
    _case(F.burg_norm, ValueError, "u=.* negative", u=-np.ones((3, 3))),
    _case(F.burg_norm, ValueError, "n=-1.0", n=-1.0),
    _case(F.burg_norm, ValueError, "eta=0.0", eta=0.0),
    _case(F.burg_norm, ValueError, r"n of shape \(3,\)", n=np.ones(3)),
    _case(F.burg_norm, ValueError, r"v of shape \(3, 3\)", v=np.eye(3)),
    _case(F.center_surround_norm, ValueError, "gamma_s=.* negative",
          gamma_s=-np.ones((3, 3, 8))),
    _case(F.center_surround_norm, ValueError, "gamma_k=.* negative", gamma_k=-np.ones((8, 8))),
    _case(F.center_surround_norm, ValueError, "beta=.* negative", beta=-np.ones(8)),
    _case(F.center_surround_norm, ValueError, "beta_min=-1.0", beta_min=-1.0),
    _case(F.center_surround_norm, ValueError, "group_size=0", group_size=0,
          gamma_k=np.ones((0, 8))),
    _case(F.center_surround_norm, ValueError, r"gamma_k of shape \(8,\)", gamma_k=np.ones(8)),
    _case(F.center_surround_norm, ValueError, r"x has 8 channels on axis 3, not a multiple of "
          r"group_size=3 .*e\.g\. group_size=1", group_size=3, gamma_k=np.ones((3, 9))),
    _case(F.center_surround_norm, ValueError, r"gamma_k of shape \(8, 16\)",
          gamma_k=np.ones((8, 16))),
    _case(F.center_surround_norm, ValueError, r"gamma_s of shape \(2, 2, 8\) has even",
          gamma_s=np.ones((2, 2, 8))),
    _case(F.center_surround_norm, ValueError, r"beta of shape \(3,\)", beta=np.ones(3)),
    _case(F.center_surround_norm, ValueError, "surround_dist=0", surround_dist=0),
    _case(F.gaussian_norm, ValueError, r"weights of shape \(4, 4, 8\) has even",
          weights=np.ones((4, 4, 8))),
    _case(F.gaussian_norm, ValueError, r"weights of shape \(3, 3, 4\)",
          weights=np.ones((3, 3, 4))),
    _case(F.gaussian_norm, ValueError, "offset=-1.0", offset=-1.0),
    _case(F.gaussian_norm, ValueError, r"sigma of shape \(2, 8\)", sigma=np.ones((2, 8))),
])
def test_family_argument_errors(fn, kw, error, match):
  """Each bad argument is named (not an internal sigma, epsilon or scale), before any NaN."""
  with pytest.raises(error, match=match):
    fn(_ONES, **{**_ARGS[fn], **kw})


@pytest.mark.parametrize("call,error,match", [
    pytest.param(lambda: F.group_mixing(np.ones(4), 4), ValueError, r"gamma_k of shape \(4,\)",
                 id="group_mixing-1d"),
    pytest.param(lambda: F.gaussian_filterbank(8, 4, jax.random.key(0)), ValueError,
                 "size=4 must be odd", id="gaussian_filterbank-size"),
    pytest.param(lambda: F.gaussian_filterbank(0, 3, jax.random.key(0)), ValueError,
                 "channels=0", id="gaussian_filterbank-channels"),
    pytest.param(lambda: F.burg_penalty("abc"), TypeError, "v='abc'", id="burg_penalty-str"),
    pytest.param(lambda: K.miller_width(0), ValueError, "^miller_width: scale=0",
                 id="miller_width-0"),
    pytest.param(lambda: jax.jit(lambda lamb: F.miller_norm(
        _ONES, **{**_ARGS[F.miller_norm], "lamb": lamb}))(2.0), TypeError, "static width",
                 id="miller_norm-traced-lamb"),
])
def test_family_helper_argument_errors(call, error, match):
  with pytest.raises(error, match=match):
    call()
