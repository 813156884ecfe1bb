"""The families' modules (linen, NNX, equinox, haiku): parameters, the functional preset, the
same numbers in the four APIs, a training step."""

import doctest

import equinox as eqx
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from divnorm._src import equinox_families as E
from divnorm._src import families as F
from divnorm._src import haiku_families as H
from divnorm._src import linen_families as L
from divnorm._src import nnx_families as N
from divnorm._src.nonnegative import nonnegative

X = jnp.asarray(np.random.default_rng(0).normal(size=(1, 4, 4, 16)), jnp.float32)


@pytest.mark.slow
@pytest.mark.loose_promotion
@pytest.mark.parametrize("module", [L, N, E, H], ids=["linen", "nnx", "equinox", "haiku"])
def test_docstring_examples(module):
  failures, _ = doctest.testmod(module, extraglobs={"jax": jax, "jnp": jnp, "nnx": nnx})
  assert failures == 0


@pytest.mark.slow
def test_the_three_apis_agree():
  """Same initial parameters, same numbers (equinox: one example, channels first)."""
  first = lambda y: jnp.moveaxis(y[0], -1, 0)  # noqa: E731
  for linen, nnx_module, eqx_module, x in [
      (L.MillerNorm(), N.MillerNorm(), E.MillerNorm(), jax.nn.relu(X)),
      (L.BurgNorm(kernel_size=3), N.BurgNorm(16, kernel_size=3), E.BurgNorm(16, kernel_size=3),
       X),
      (L.CenterSurroundNorm(), N.CenterSurroundNorm(16), E.CenterSurroundNorm(16), X)]:
    y = jax.jit(linen.apply)(linen.init(jax.random.key(0), x), x)
    np.testing.assert_allclose(nnx.jit(lambda m, x: m(x))(nnx_module, x), y, rtol=1e-6)
    np.testing.assert_allclose(eqx.filter_jit(lambda m, x: m(x))(eqx_module, first(x)),
                               first(y), rtol=1e-6)


@pytest.mark.parametrize("name,linen,haiku,x", [
    ("miller_norm", L.MillerNorm(lamb_init=1.5), lambda **kw: H.MillerNorm(lamb_init=1.5, **kw),
     jax.nn.relu(X)),
    ("burg_norm", L.BurgNorm(kernel_size=3), lambda **kw: H.BurgNorm(kernel_size=3, **kw), X),
    ("center_surround_norm", L.CenterSurroundNorm(surround_dist=2),
     lambda **kw: H.CenterSurroundNorm(surround_dist=2, **kw), X),
    ("gaussian_norm", L.GaussianNorm(kernel_size=3),
     lambda **kw: H.GaussianNorm(kernel_size=3, **kw), X)])
def test_haiku_modules_are_the_linen_modules(name, linen, haiku, x):
  """The same parameters (names, shapes; flax's ``bias`` is haiku's ``offset``) and, with
  linen's trained values, the same numbers, channels last or first; parameters in the
  input's dtype (haiku's convention) or `param_dtype`."""
  params = jax.tree.map(lambda a: a * 1.1 + 0.01, linen.init(jax.random.key(0), x)["params"])
  want = linen.apply({"params": params}, x)
  f = hk.transform(lambda x, **kw: haiku(**kw)(x))
  init = f.init(jax.random.key(0), x)
  renamed = {{"bias": "offset"}.get(k, k): v for k, v in params.items()}
  assert jax.tree.map(jnp.shape, init) == {name: jax.tree.map(jnp.shape, renamed)}
  np.testing.assert_allclose(f.apply({name: renamed}, None, x), want, rtol=1e-5, atol=1e-6)
  first = jax.tree.map(lambda a: a, {name: renamed})
  y = f.apply(first, None, jnp.moveaxis(x, -1, 1), data_format="channels_first")
  np.testing.assert_allclose(jnp.moveaxis(y, 1, -1), want, rtol=1e-5, atol=1e-6)
  assert {a.dtype for a in jax.tree.leaves(f.init(jax.random.key(0), x.astype(jnp.bfloat16)))
          } == {jnp.dtype(jnp.bfloat16)}
  assert {a.dtype for a in jax.tree.leaves(f.init(
      jax.random.key(0), x.astype(jnp.bfloat16), param_dtype=jnp.float32))} == {
          jnp.dtype(jnp.float32)}


def test_miller_norm_learned_past_its_ranges_runs_eagerly_as_under_jit():
  """Its learned scalars are unconstrained (the authors' code): with ``alpha`` < 0 an eager
  call gives the jitted numbers in every API, where it raised while jit ran."""
  x, alpha = jax.nn.relu(X), jnp.asarray(-0.01)
  params = {"lamb": 2.0, "alpha": -0.01, "beta": 1.0, "k": 1.0}
  want = F.learned_miller_norm(x, **params, width=17)
  np.testing.assert_allclose(want, jax.jit(F.learned_miller_norm, static_argnames="width")(
      x, **params, width=17), rtol=1e-6)
  assert np.all(np.isfinite(want))
  linen = L.MillerNorm()
  variables = {"params": {**linen.init(jax.random.key(0), x)["params"], "alpha": alpha}}
  np.testing.assert_allclose(linen.apply(variables, x), want, rtol=1e-6)
  nnx_module = N.MillerNorm()
  nnx_module.alpha[...] = alpha
  np.testing.assert_allclose(nnx_module(x), want, rtol=1e-6)
  eqx_module = eqx.tree_at(lambda m: m.alpha, E.MillerNorm(), alpha)
  np.testing.assert_allclose(eqx_module(jnp.moveaxis(x[0], -1, 0)),
                             jnp.moveaxis(want[0], -1, 0), rtol=1e-6)
  f = hk.transform(lambda x: H.MillerNorm()(x))
  hk_params = f.init(jax.random.key(0), x)
  hk_params = {"miller_norm": {**hk_params["miller_norm"], "alpha": alpha}}
  np.testing.assert_allclose(f.apply(hk_params, None, x), want, rtol=1e-6)
  with pytest.raises(ValueError, match="alpha=-0.01 is negative"):
    F.miller_norm(x, **params)


@pytest.mark.parametrize("layer,name,past", [
    ("BurgNorm", "eta", lambda p: p.at[0].set(-0.5)),
    ("BurgNorm", "n", lambda p: p.at[1].set(-0.25)),
    ("GaussianNorm", "weights", lambda p: p.at[1, 1, 0].set(-0.05)),
])
def test_learned_parameters_past_the_functions_ranges_run_eagerly_as_under_jit(layer, name,
                                                                               past):
  """Burg's ``n``, ``eta`` and Veerabadran et al.'s pool ``weights`` are learned
  unconstrained: a training step can carry them past what `burg_norm` accepts (> 0) or what
  a field's kernel takes (>= 0). An eager call of every API gives the jitted numbers, where it
  raised while jit ran."""
  x = X[..., :8]
  linen = getattr(L, layer)(kernel_size=3)
  params = linen.init(jax.random.key(0), x)["params"]
  params = {**params, name: past(params[name])}
  want = jax.jit(linen.apply)({"params": params}, x)
  assert np.isfinite(want).any()
  np.testing.assert_allclose(linen.apply({"params": params}, x), want, rtol=1e-6)
  nnx_module = getattr(N, layer)(8, kernel_size=3)
  for key, value in params.items():
    getattr(nnx_module, key)[...] = value
  np.testing.assert_allclose(nnx_module(x), want, rtol=1e-6)
  eqx_module = getattr(E, layer)(8, kernel_size=3, **(
      {"key": jax.random.key(0)} if layer == "GaussianNorm" else {}))
  eqx_module = eqx.tree_at(lambda m: [getattr(m, k) for k in params], eqx_module,
                           list(params.values()))
  np.testing.assert_allclose(eqx_module(jnp.moveaxis(x[0], -1, 0)),
                             jnp.moveaxis(want[0], -1, 0), rtol=1e-6)
  f = hk.transform(lambda x: getattr(H, layer)(kernel_size=3)(x))
  (scope,) = f.init(jax.random.key(0), x)
  np.testing.assert_allclose(f.apply({scope: params}, None, x), want, rtol=1e-6)


def test_center_surround_norm_takes_bfloat16_under_strict_promotion():
  """A bfloat16 input and float32 parameters: flax's promoted float32 output (linen, NNX),
  equinox's the input's dtype; the suite runs under strict dtype promotion, where the
  affine step once raised."""
  x = X.astype(jnp.bfloat16)
  linen = L.CenterSurroundNorm()
  want = linen.apply(linen.init(jax.random.key(0), X), X)
  y = linen.apply(linen.init(jax.random.key(0), x), x)
  for got, dtype in [(y, jnp.float32), (N.CenterSurroundNorm(16)(x), jnp.float32),
                     (jnp.moveaxis(E.CenterSurroundNorm(16)(jnp.moveaxis(x[0], -1, 0)), 0, -1
                                   )[None], jnp.bfloat16)]:
    assert got.dtype == dtype
    np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=2e-2, atol=2e-2)


def test_nnx_gaussian_norm_rngs_may_be_omitted_as_in_every_nnx_module():
  omitted, given = N.GaussianNorm(16, kernel_size=3), N.GaussianNorm(16, kernel_size=3,
                                                                     rngs=nnx.Rngs(0))
  np.testing.assert_array_equal(omitted.weights[...], given.weights[...])


def test_haiku_burg_penalty_and_gaussian_filterbank():
  """BurgNorm's ``penalty()`` is linen's sown ``l1_v`` and has a gradient; GaussianNorm's
  weights are the filterbank drawn from haiku's parameter key."""
  def f(x):
    layer = H.BurgNorm(kernel_size=3, v_l1=1e-3)
    return jnp.mean(layer(x) ** 2) + layer.penalty()
  f = hk.without_apply_rng(hk.transform(f))
  params = f.init(jax.random.key(0), X)
  _, state = L.BurgNorm(kernel_size=3, v_l1=1e-3).apply(
      {"params": params["burg_norm"]}, X, mutable=["losses"])
  penalty = hk.without_apply_rng(hk.transform(lambda x: (lambda b: (b(x), b.penalty())[1])(
      H.BurgNorm(kernel_size=3, v_l1=1e-3))))
  np.testing.assert_allclose(penalty.apply(params, X), state["losses"]["l1_v"], rtol=1e-6)
  assert np.all(np.isfinite(jax.grad(f.apply)(params, X)["burg_norm"]["v"]))
  with pytest.raises(ValueError, match="call the layer on its input first"):
    hk.transform(lambda: H.BurgNorm(v_l1=1.0).penalty()).init(None)
  g = hk.transform(lambda x: H.GaussianNorm(kernel_size=5)(x))
  weights = [g.init(jax.random.key(s), X)["gaussian_norm"]["weights"] for s in (0, 0, 1)]
  np.testing.assert_array_equal(weights[0], weights[1])
  assert not np.array_equal(weights[0], weights[2])
  bank = np.asarray(F.gaussian_filterbank(16, 5, jax.random.key(0)))
  np.testing.assert_allclose(np.sort(np.asarray(weights[0]).ravel()), np.sort(bank.ravel()),
                             rtol=1e-6)  # the same filters, in an order from the key


@pytest.mark.slow
def test_modules_are_their_presets():
  m = L.MillerNorm()
  p = m.init(jax.random.key(0), X)["params"]
  np.testing.assert_allclose(m.apply({"params": p}, jax.nn.relu(X)), F.miller_norm(
    jax.nn.relu(X), lamb=2.0, alpha=0.1, beta=1.0, k=1.0), rtol=1e-6)
  b = L.BurgNorm(kernel_size=3)
  p = b.init(jax.random.key(0), X)["params"]
  np.testing.assert_allclose(b.apply({"params": p}, X), F.burg_norm(
    X, n=1.0, eta=1.0, u=jnp.full((3, 3), 1 / 9), v=jnp.full((16, 16), 1 / 16)), rtol=1e-5)
  cs = L.CenterSurroundNorm(surround_dist=2)
  p = cs.init(jax.random.key(0), X)["params"]
  np.testing.assert_allclose(cs.apply({"params": p}, X), F.center_surround_norm(
    X, beta=jnp.full(16, 1e-6), gamma_k=jnp.full((8, 16), 1 / 16),
    gamma_s=jnp.full((3, 3, 16), 1 / 16), surround_dist=2), rtol=1e-5)
  g = L.GaussianNorm()
  p = g.init(jax.random.key(3), X)["params"]
  np.testing.assert_allclose(g.apply({"params": p}, X), F.gaussian_norm(
    X, weights=p["weights"], sigma=1.0), rtol=1e-6)
  # Their filterbank, in an order drawn from the parameter's key.
  bank = np.asarray(F.gaussian_filterbank(16, 5, jax.random.key(0)))
  order = lambda w: np.lexsort(np.asarray(w).reshape(25, 16))  # noqa: E731
  np.testing.assert_allclose(np.asarray(p["weights"]).reshape(25, 16)[:, order(p["weights"])],
                             bank.reshape(25, 16)[:, order(bank)], rtol=1e-6)


@pytest.mark.slow
def test_burg_l1_and_a_training_step():
  model = L.BurgNorm(kernel_size=3, v_l1=1e-3)
  variables = model.init(jax.random.key(0), X)
  params = variables["params"]
  _, state = model.apply({"params": params}, X, mutable=["losses"])
  np.testing.assert_allclose(state["losses"]["l1_v"], 1e-3 * 16 * 16 / 16, rtol=1e-6)

  def loss(params):
    y, state = model.apply({"params": params}, X, mutable=["losses"])
    return jnp.mean((y - 0.1) ** 2) + state["losses"]["l1_v"]

  opt = optax.sgd(0.1)
  grads = jax.grad(loss)(params)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
  new = optax.apply_updates(params, opt.update(grads, opt.init(params))[0])
  assert loss(new) < loss(params)
  assert bool(jnp.all(nonnegative(new["u"]) >= 0))


def _linen(module):
  return lambda: module.init(jax.random.key(0), X)


@pytest.mark.parametrize("make,match", [
    pytest.param(_linen(L.BurgNorm(kernel_size=0)), "kernel_size=0", id="linen-burg-size-0"),
    pytest.param(_linen(L.BurgNorm(kernel_size=4)), "kernel_size=4 must be odd",
                 id="linen-burg-size-4"),
    pytest.param(_linen(L.GaussianNorm(kernel_size=4)), "kernel_size=4 must be odd",
                 id="linen-gaussian-size-4"),
    pytest.param(_linen(L.BurgNorm(channel_axis=9)), "channel_axis=9", id="linen-burg-axis"),
    pytest.param(_linen(L.CenterSurroundNorm(channel_axis=9)), "channel_axis=9",
                 id="linen-center-surround-axis"),
    pytest.param(_linen(L.GaussianNorm(channel_axis=9)), "channel_axis=9",
                 id="linen-gaussian-axis"),
    pytest.param(_linen(L.MillerNorm(lamb_init=0.0)), "lamb_init=0.0", id="linen-miller-lamb"),
    pytest.param(_linen(L.MillerNorm(k_init=-1.0)), "k_init=-1.0", id="linen-miller-k"),
    pytest.param(_linen(L.MillerNorm(width=4)), "width=4 must be odd", id="linen-miller-width"),
    pytest.param(_linen(L.BurgNorm(kernel_size=3, eta_init=0.0)), "eta_init=0.0",
                 id="linen-burg-eta"),
    pytest.param(_linen(L.CenterSurroundNorm(gamma_init=-1.0)), "gamma_init=-1.0",
                 id="linen-center-surround-gamma"),
    pytest.param(_linen(L.GaussianNorm(kernel_size=3, offset=-1.0)), "offset=-1.0",
                 id="linen-gaussian-offset"),
    pytest.param(lambda: N.MillerNorm(width=4), "width=4 must be odd", id="nnx-miller-width"),
    pytest.param(lambda: N.BurgNorm(16, kernel_size=0), "kernel_size=0", id="nnx-burg-size"),
    pytest.param(lambda: N.BurgNorm(16, n_init=-1.0), "n_init=-1.0", id="nnx-burg-n"),
    pytest.param(lambda: N.CenterSurroundNorm(16, group_size=0), "group_size=0",
                 id="nnx-center-surround-group"),
    pytest.param(lambda: N.GaussianNorm(16, kernel_size=4, rngs=nnx.Rngs(0)),
                 "kernel_size=4 must be odd", id="nnx-gaussian-size"),
    pytest.param(lambda: E.MillerNorm(alpha_init=-1.0), "alpha_init=-1.0",
                 id="equinox-miller-alpha"),
    pytest.param(lambda: E.BurgNorm(16, kernel_size=0), "kernel_size=0", id="equinox-burg-size"),
    pytest.param(lambda: E.CenterSurroundNorm(16, beta_init=-1.0), "beta_init=-1.0",
                 id="equinox-center-surround-beta"),
    pytest.param(lambda: E.GaussianNorm(16, kernel_size=4, key=jax.random.key(0)),
                 "kernel_size=4 must be odd", id="equinox-gaussian-size"),
    pytest.param(lambda: H.MillerNorm(lamb_init=0.0), "lamb_init=0.0", id="haiku-miller-lamb"),
    pytest.param(lambda: H.BurgNorm(kernel_size=4), "kernel_size=4 must be odd",
                 id="haiku-burg-size"),
    pytest.param(lambda: H.CenterSurroundNorm(group_size=0), "group_size=0",
                 id="haiku-center-surround-group"),
    pytest.param(lambda: H.GaussianNorm(offset=-1.0), "offset=-1.0", id="haiku-gaussian-offset"),
    pytest.param(lambda: H.GaussianNorm(data_format="foo"), "foo", id="haiku-data-format"),
    pytest.param(lambda: hk.transform(lambda x: H.GaussianNorm(kernel_size=3)(x)).init(
        jax.random.key(0), X[:, 0]), r"GaussianNorm learns 2-D pools: .* shape \(1, 4, 16\)",
        id="haiku-gaussian-rank"),
    pytest.param(lambda: L.CenterSurroundNorm().init(jax.random.key(0), X[None]),
                 r"CenterSurroundNorm learns 2-D pools", id="linen-center-surround-rank"),
    pytest.param(lambda: N.GaussianNorm(16, kernel_size=3, rngs=nnx.Rngs(0))(X[:, 0]),
                 r"GaussianNorm learns 2-D pools", id="nnx-gaussian-rank"),
    pytest.param(lambda: E.CenterSurroundNorm(16)(X), r"one example \[channels, height, width\]",
                 id="equinox-center-surround-rank"),
    pytest.param(lambda: N.BurgNorm(16, kernel_size=3)(X[:, 0]),
                 r"spatial_dims=2, but x of shape \(1, 4, 16\) has 1 .*spatial_dims=1",
                 id="nnx-burg-spatial-dims"),
    pytest.param(lambda: E.BurgNorm(16, kernel_size=3)(X[0, 0].T),
                 r"spatial_dims=2, but x of shape \(16, 4\) has 1 .*spatial_dims=1",
                 id="equinox-burg-spatial-dims"),
    pytest.param(lambda: N.BurgNorm(7, kernel_size=3)(X), r"num_features=7 but x of shape",
                 id="nnx-burg-channels"),
    pytest.param(lambda: N.CenterSurroundNorm(8)(X), r"num_features=8 but x of shape",
                 id="nnx-center-surround-channels"),
    # The channels a group_size does not divide (the message named the internal gamma_k).
    pytest.param(lambda: N.CenterSurroundNorm(12), r"12 channels, not a multiple of "
                 r"group_size=8 .*group_size=4", id="nnx-center-surround-groups"),
    pytest.param(lambda: E.CenterSurroundNorm(12), r"12 channels, not a multiple of "
                 r"group_size=8 .*group_size=4", id="equinox-center-surround-groups"),
    pytest.param(lambda: L.CenterSurroundNorm().init(jax.random.key(0), X[..., :12]),
                 r"x has 12 channels on axis 3, not a multiple of group_size=8",
                 id="linen-center-surround-groups"),
    pytest.param(lambda: hk.transform(lambda x: H.CenterSurroundNorm()(x)).init(
        jax.random.key(0), X[..., :12]), r"x has 12 channels on axis 3, not a multiple of "
        r"group_size=8", id="haiku-center-surround-groups"),
    pytest.param(lambda: N.GaussianNorm(12, kernel_size=3)(X), r"num_features=12 but x of shape",
                 id="nnx-gaussian-channels"),
    pytest.param(lambda: N.GaussianNorm(7), r"num_features=7 must be a multiple of 4",
                 id="nnx-gaussian-multiple"),
    pytest.param(lambda: E.BurgNorm(7, kernel_size=3)(X[0].T), r"channels=7 but x of shape",
                 id="equinox-burg-channels"),
    pytest.param(lambda: E.CenterSurroundNorm(8)(X[0].T), r"channels=8 but x of shape",
                 id="equinox-center-surround-channels"),
    pytest.param(lambda: E.GaussianNorm(12, kernel_size=3, key=jax.random.key(0))(X[0].T),
                 r"channels=12 but x of",
                 id="equinox-gaussian-channels"),
    pytest.param(lambda: E.BurgNorm(0), r"^channels=0 must be an int >= 1",
                 id="equinox-burg-no-channels"),
    pytest.param(lambda: E.CenterSurroundNorm(-8), r"^channels=-8 must be an int >= 1",
                 id="equinox-center-surround-negative-channels"),
])
def test_module_argument_errors(make, match):
  """Bad module arguments are named as the user passed them (kernel_size, *_init)."""
  with pytest.raises(ValueError, match=match):
    hk.transform(make).init(None)  # haiku's modules are built inside a transform
