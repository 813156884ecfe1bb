"""divnorm.haiku's unified normalizer, the survey's other normalizers and spectral
normalization: each is its functional counterpart in `divnorm` (tested there against
float64 references) with haiku's parameters and state, and spectral normalization is
hk.SpectralNorm's (haiku's own tests of it run in tests/compat/test_haiku_normalization.py).
"""

import doctest

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import divnorm
from divnorm import haiku as dhk
from divnorm import mixtures
from divnorm._src import haiku_extra


def _x(shape=(4, 6, 5, 8), offset=3.0, seed=0):
  return jax.random.normal(jax.random.key(seed), shape) * 2 + offset


def _randomized(tree, seed=1):
  """Parameters with random values, away from their initial ones."""
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return treedef.unflatten([jax.random.uniform(k, leaf.shape, leaf.dtype, 0.5, 1.5)
                            for k, leaf in zip(keys, leaves, strict=True)])


def _affine(y, p, axis=-1):
  """``y * scale + offset`` of parameters `p` ``[C]`` over `y`'s channel `axis`."""
  shape = [1] * y.ndim
  shape[axis] = -1
  return y * p["scale"].reshape(shape) + p["offset"].reshape(shape)


def test_normalize_is_the_function_with_haiku_s_affine():
  x = _x((2, 8, 8, 6))
  fields = ({3: None, 1: 3, 2: 3}, {1: 5, 2: 5})
  f = hk.transform(lambda x, **kw: dhk.Normalize(*fields, sigma=0.5, create_scale=True,
                                                 create_offset=True)(x, **kw))
  params = _randomized(f.init(jax.random.key(0), x))
  assert jax.tree.map(jnp.shape, params) == {"normalize": {"offset": (6,), "scale": (6,)}}
  mask = jax.random.bernoulli(jax.random.key(3), 0.8, x.shape)
  y, v = f.apply(params, None, x, mask=mask, return_centered=True)
  want, want_v = divnorm.normalize(x, *fields, sigma=0.5, mask=mask, return_centered=True)
  p = params["normalize"]
  np.testing.assert_allclose(y, _affine(want, p), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(v, want_v, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("layer", ["Normalize", "DivisiveNorm"])
def test_a_learned_sigma_is_a_float32_parameter_with_a_gradient(layer):
  make = {"Normalize": lambda: dhk.Normalize(0, (0, 3), sigma=0.5, learn_sigma=True),
          "DivisiveNorm": lambda: dhk.DivisiveNorm(3, sigma=0.5, learn_sigma=True)}[layer]
  x = _x((4, 8, 8, 3)).astype(jnp.bfloat16)
  f = hk.without_apply_rng(hk.transform(lambda x: make()(x)))
  params = f.init(jax.random.key(0), x)
  (name,) = params
  assert params[name]["log_sigma"].dtype == jnp.float32
  np.testing.assert_allclose(params[name]["log_sigma"], np.log(0.5), rtol=1e-6)
  assert f.apply(params, x).dtype == jnp.bfloat16
  grad = jax.grad(lambda p: jnp.sum(f.apply(p, x).astype(jnp.float32) ** 2))(params)
  assert np.isfinite(grad[name]["log_sigma"]) and grad[name]["log_sigma"] != 0
  fixed = hk.without_apply_rng(hk.transform(lambda x: dhk.DivisiveNorm(3, sigma=0.7)(x)))
  if layer == "DivisiveNorm":  # exp(log_sigma) is the sigma the layer uses
    params = {name: {"log_sigma": jnp.log(jnp.float32(0.7))}}
    np.testing.assert_array_equal(f.apply(params, x), fixed.apply({}, x))


def test_divisive_norm_mask_selects_what_enters_its_statistics():
  x = _x((2, 8, 8, 3))
  mask = jnp.ones(x.shape, bool).at[:, :3].set(False)
  f = hk.without_apply_rng(hk.transform(lambda x, m: dhk.DivisiveNorm(3, sigma=0.5)(x, mask=m)))
  y = f.apply({}, x, mask)
  garbage = jnp.where(mask, x, 1e6)
  np.testing.assert_array_equal(f.apply({}, garbage, mask), y)
  np.testing.assert_array_equal(y[:, :3], 0.0)
  np.testing.assert_allclose(y, divnorm.divisive_norm(x, summation_window=3, sigma=0.5,
                                                      mask=mask), rtol=1e-6, atol=1e-6)


def test_local_response_norm_is_the_function_in_either_data_format():
  x = _x((2, 5, 5, 8))
  want = divnorm.local_response.local_response_norm(x, size=3, alpha=0.1, beta=0.5, k=2.0)
  for data_format, xin in (("channels_last", x), ("channels_first", jnp.moveaxis(x, -1, 1))):
    f = hk.transform(lambda x, d=data_format: dhk.LocalResponseNorm(3, 0.1, 0.5, 2.0, d)(x))
    y = f.apply(f.init(None, xin), None, xin)
    np.testing.assert_allclose(y if data_format == "channels_last" else jnp.moveaxis(y, 1, -1),
                               want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("inverse", [False, True])
def test_gdn_is_the_function_with_its_parameters(inverse):
  x = _x((2, 5, 5, 3))
  f = hk.without_apply_rng(hk.transform(lambda x: dhk.GDN(inverse=inverse)(x)))
  params = f.init(jax.random.key(0), x)
  init = divnorm.gdn.gdn_init(3)
  np.testing.assert_array_equal(params["gdn"]["beta"], init.beta)
  np.testing.assert_array_equal(params["gdn"]["gamma"], init.gamma)
  params = {"gdn": {"beta": params["gdn"]["beta"] * 1.3, "gamma": params["gdn"]["gamma"] + 0.2}}
  beta, gamma = divnorm.gdn.gdn_values(divnorm.gdn.GDNParams(**params["gdn"]))
  want = divnorm.gdn.gdn(x, beta=beta, gamma=gamma, inverse=inverse)
  np.testing.assert_allclose(f.apply(params, x), want, rtol=1e-6, atol=1e-6)
  first = hk.without_apply_rng(hk.transform(lambda x: dhk.GDN(inverse=inverse,
                                                              data_format="NCHW")(x)))
  np.testing.assert_allclose(jnp.moveaxis(first.apply(params, jnp.moveaxis(x, -1, 1)), 1, -1),
                             want, rtol=1e-6, atol=1e-6)


# (haiku layer, the `divnorm.mixtures` function and its extra arguments, state names)
RUNNING = {
  "MeanOnlyBatchNorm": (lambda **kw: dhk.MeanOnlyBatchNorm(True, 0.9, create_scale=True, **kw),
                        mixtures.mean_only_batch_norm, {}, ("mean",)),
  "BatchRenorm": (lambda **kw: dhk.BatchRenorm(True, True, 0.9, sigma=0.1, rmax=1.5, dmax=0.5,
                                               **kw),
                  mixtures.batch_renorm, {"sigma": 0.1, "rmax": 1.5, "dmax": 0.5},
                  ("mean", "var")),
  "BatchInstanceNorm": (lambda **kw: dhk.BatchInstanceNorm(True, True, 0.9, sigma=0.1,
                                                           rho_init=0.3, **kw),
                        mixtures.batch_instance_norm, {"sigma": 0.1, "rho": 0.3},
                        ("mean", "var")),
  "SwitchableNorm": (lambda **kw: dhk.SwitchableNorm(True, True, 0.9, sigma=0.1, **kw),
                     mixtures.switchable_norm,
                     {"sigma": 0.1, "mean_weights": jnp.ones(3) / 3,
                      "var_weights": jnp.ones(3) / 3}, ("mean", "var")),
}


def _reference(name, x, stats, training, channel_axis=-1):
  _, function, kwargs, _ = RUNNING[name]
  axis = {"feature_axes" if name in ("MeanOnlyBatchNorm", "BatchRenorm") else "channel_axis":
          channel_axis}
  stats = (mixtures.MeanStats if name == "MeanOnlyBatchNorm" else divnorm.BatchStats)(*stats)
  return function(x, stats, training=training, momentum=0.9, **axis, **kwargs)


@pytest.mark.parametrize("name", RUNNING)
def test_running_layers_train_and_evaluate_as_their_functions(name):
  """Three training steps update haiku state as the function updates its statistics; the
  evaluation uses them; the affine step is the channels' scale and offset."""
  make, _, _, fields = RUNNING[name]
  f = hk.transform_with_state(lambda x, t: make()(x, t))
  x = _x((4, 5, 5, 6))
  params, state = f.init(jax.random.key(0), x, True)
  (module,) = state
  assert {k: (v.shape, v.dtype) for k, v in state[module].items()} == {
      n: ((6,), jnp.float32) for n in fields}
  params = {module: {k: (_randomized(v) if k in ("scale", "offset") else v)
                     for k, v in params[module].items()}}
  stats = [state[module][n] for n in fields]
  for step in range(3):
    xs = _x((4, 5, 5, 6), seed=step)
    y, state = f.apply(params, state, None, xs, True)
    want, new = _reference(name, xs, stats, True)
    p = params[module]
    np.testing.assert_allclose(y, _affine(want, p), rtol=1e-5, atol=1e-5)
    for n, got, value in zip(fields, (state[module][n] for n in fields), new, strict=True):
      np.testing.assert_allclose(got, value, rtol=1e-6, atol=1e-6, err_msg=n)
    stats = list(new)
  y, same = f.apply(params, state, None, x, False)
  for n in fields:  # evaluation leaves the state as it was
    np.testing.assert_array_equal(same[module][n], state[module][n])
  want, _ = _reference(name, x, stats, False)
  np.testing.assert_allclose(y, _affine(want, p), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", RUNNING)
def test_running_layers_channels_first_are_channels_last_transposed(name):
  make = RUNNING[name][0]
  x = _x((4, 5, 5, 6))
  last = hk.transform_with_state(lambda x: make()(x, True))
  first = hk.transform_with_state(lambda x: make(data_format="channels_first")(x, True))
  params, state = last.init(jax.random.key(0), x)
  y, new = last.apply(params, state, None, x)
  params_first, state_first = first.init(jax.random.key(0), jnp.moveaxis(x, -1, 1))
  assert jax.tree.map(jnp.shape, params_first) == {
      m: {k: (1, 6, 1, 1) if k in ("scale", "offset") else np.shape(v) for k, v in p.items()}
      for m, p in params.items()}
  params_first = jax.tree.map(lambda a, b: a.reshape(b.shape), params, params_first)
  y_first, new_first = first.apply(params_first, state_first, None, jnp.moveaxis(x, -1, 1))
  np.testing.assert_allclose(jnp.moveaxis(y_first, 1, -1), y, rtol=1e-5, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
               new_first, new)


@pytest.mark.parametrize("name", RUNNING)
def test_running_layers_pool_a_vmapped_axis_as_one_batch(name):
  make = RUNNING[name][0]
  x = _x((4, 5, 5, 6))
  whole = hk.transform_with_state(lambda x: make()(x, True))
  params, state = whole.init(jax.random.key(0), x)
  want, want_state = whole.apply(params, state, None, x)
  mapped = hk.transform_with_state(lambda x: make(cross_replica_axis="i")(x, True))
  got, got_state = jax.vmap(lambda x: mapped.apply(params, state, None, x), axis_name="i",
                            out_axes=(0, None))(x.reshape(2, 2, 5, 5, 6))
  np.testing.assert_allclose(got.reshape(x.shape), want, rtol=1e-5, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               got_state, want_state)


@pytest.mark.parametrize("name", RUNNING)
def test_running_layers_bfloat16_in_bfloat16_out(name):
  make = RUNNING[name][0]
  f = hk.transform_with_state(lambda x, t: make()(x, t))
  x = _x((4, 5, 5, 6), offset=1e3).astype(jnp.bfloat16)
  params, state = f.init(jax.random.key(0), x, True)  # haiku's: bfloat16 parameters
  y, new = f.apply(params, state, None, x, True)
  params32 = jax.tree.map(lambda a: a.astype(jnp.float32), params)
  want, want_new = f.apply(params32, state, None, x.astype(jnp.float32), True)
  assert y.dtype == jnp.bfloat16
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(new))
  np.testing.assert_allclose(y.astype(jnp.float32), want, atol=0.05)  # bf16 output rounding
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), new, want_new)


def test_mean_only_batch_norm_mask_keeps_masked_entries_out():
  f = hk.transform_with_state(lambda x, m: dhk.MeanOnlyBatchNorm(False, 0.9)(x, True, mask=m))
  x = _x((6, 4))
  mask = jnp.ones(x.shape, bool).at[:2].set(False)
  params, state = f.init(None, x, mask)
  y, new = f.apply(params, state, None, x, mask)
  y2, new2 = f.apply(params, state, None, jnp.where(mask, x, 1e6), mask)
  np.testing.assert_array_equal(y, y2)
  np.testing.assert_array_equal(new["mean_only_batch_norm"]["mean"],
                                new2["mean_only_batch_norm"]["mean"])
  np.testing.assert_allclose(y[2:], x[2:] - x[2:].mean(0, keepdims=True), rtol=1e-5,
                             atol=1e-5)


@pytest.mark.parametrize("name", ["BatchInstanceNorm", "SwitchableNorm"])
def test_mixing_parameters_learn(name):
  """``rho`` and the switch logits get gradients (float32 parameters)."""
  make = RUNNING[name][0]
  f = hk.transform_with_state(lambda x: make()(x, True))
  x = _x((4, 5, 5, 6))
  params, state = f.init(jax.random.key(0), x)
  grads = jax.grad(lambda p: jnp.sum(f.apply(p, state, None, x)[0] * x))(params)
  (module,) = grads
  for k in {"BatchInstanceNorm": ("rho",), "SwitchableNorm": ("mean_logits", "var_logits")}[name]:
    assert params[module][k].dtype == jnp.float32
    assert np.all(np.isfinite(grads[module][k])) and np.any(grads[module][k] != 0)


def test_batch_instance_norm_rho_past_the_interval_still_learns():
  """A rho an update carried past 1 gets gradients (straight-through), so it can come back."""
  f = hk.transform_with_state(lambda x: dhk.BatchInstanceNorm(False, False, 0.9)(x, True))
  x = _x((4, 5, 5, 6))
  params, state = f.init(jax.random.key(0), x)
  params = {"batch_instance_norm": {"rho": jnp.full(6, 1.2)}}
  grad = jax.grad(lambda p: jnp.sum(f.apply(p, state, None, x)[0] * x[::-1]))(params)
  assert np.all(grad["batch_instance_norm"]["rho"] != 0)


@pytest.mark.parametrize("name", RUNNING)
def test_running_layers_under_mixed_precision(name):
  """A float32-compute policy keeps float32 state through training (a scanned loop
  traces); a bfloat16-compute policy, which would round the running statistics at every
  read, is an error that says which policy to set."""
  import jmp
  make, cls = RUNNING[name][0], getattr(dhk, name)
  x = _x((4, 5, 5, 6))
  f = hk.transform_with_state(lambda x: make()(x, True))
  for policy, ok in (("params=float32,compute=float32,output=bfloat16", True),
                     ("params=float32,compute=bfloat16,output=bfloat16", False)):
    hk.mixed_precision.set_policy(cls, jmp.get_policy(policy))
    try:
      if not ok:
        with pytest.raises(TypeError, match="set_policy.*compute=float32"):
          f.init(jax.random.key(0), x)
        continue
      params, state = f.init(jax.random.key(0), x)
      step = lambda s, _, params=params: (f.apply(params, s, None, x)[1], None)  # noqa: E731
      state, _ = jax.lax.scan(step, state, None, length=2)
      assert {a.dtype for a in jax.tree.leaves(state)} == {jnp.dtype(jnp.float32)}
    finally:
      hk.mixed_precision.clear_policy(cls)


def test_gdn_and_a_learned_sigma_take_the_parameter_dtype_haiku_asks_for():
  """haiku's mixed-precision creator (as any custom_creator) asks for float32 master
  parameters of a layer computing in bfloat16."""
  import jmp
  policy = jmp.get_policy("params=float32,compute=bfloat16,output=bfloat16")
  x = jnp.ones((1, 4, 4, 3))
  for cls, make in ((dhk.GDN, lambda: dhk.GDN()),
                    (dhk.DivisiveNorm, lambda: dhk.DivisiveNorm(3, sigma=1.0, learn_sigma=True))):
    hk.mixed_precision.set_policy(cls, policy)
    try:
      params = hk.transform(lambda x, make=make: make()(x)).init(jax.random.key(0), x)
    finally:
      hk.mixed_precision.clear_policy(cls)
    assert {a.dtype for a in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize("shape,dtype", [((6, 4), jnp.float32), ((3, 3, 2, 5), jnp.float32),
                                         ((6, 4), jnp.bfloat16)])
def test_spectral_norm_is_haiku_s(shape, dtype):
  """The same state (names, shapes, dtypes) and, over three updates, the same weights, u0
  and sigma (bfloat16: divnorm's power iteration runs in float32, haiku's in bfloat16)."""
  w = jax.random.normal(jax.random.key(0), shape).astype(dtype)
  results = []
  for lib in (hk, dhk):
    f = hk.transform_with_state(lambda w, lib=lib: lib.SpectralNorm(n_steps=2)(w))
    _, state = f.init(jax.random.key(1), w)
    outs = []
    for _ in range(3):
      y, state = f.apply({}, state, None, w)
      outs.append((y, state))
    results.append(outs)
  tol = 1e-5 if dtype == jnp.float32 else 2e-2
  for (want, want_state), (got, got_state) in zip(*results, strict=True):
    assert got.dtype == want.dtype == dtype
    assert jax.tree.map(lambda a: (a.shape, a.dtype), got_state) == jax.tree.map(
        lambda a: (a.shape, a.dtype), want_state)
    np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32),
                               rtol=tol, atol=tol)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(
        np.asarray(a, np.float32), np.asarray(b, np.float32), rtol=tol, atol=tol),
        got_state, want_state)
  sigma = np.linalg.svd(np.asarray(w, np.float64).reshape(-1, shape[-1]), compute_uv=False)[0]
  final_sigma = results[1][-1][1]["spectral_norm"]["sigma"]
  np.testing.assert_allclose(np.float32(final_sigma), sigma, rtol=0.1 if dtype == jnp.float32
                             else 0.15)  # six power steps from a random u0


def test_sn_params_tree_is_haiku_s_on_a_model_s_parameters():
  model = hk.transform(lambda x: hk.nets.MLP([8, 4])(x))
  params = model.init(jax.random.key(0), jnp.ones((2, 5)))
  results = []
  for lib in (hk, dhk):
    f = hk.transform_with_state(lambda t, lib=lib: lib.SNParamsTree(ignore_regex=".*b$")(t))
    _, state = f.init(jax.random.key(1), params)
    results.append(f.apply({}, state, None, params))
  (want, want_state), (got, got_state) = results
  assert sorted(got_state) == sorted(want_state) == [
      "sn_params_tree/mlp___tilde__linear_0__w", "sn_params_tree/mlp___tilde__linear_1__w"]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               (got, got_state), (want, want_state))


@pytest.mark.slow
def test_haiku_models_with_the_new_layers_train_under_jit():
  """A small CNN with GDN, DivisiveNorm (learned sigma), BatchRenorm and a spectrally
  normalized head: the loss falls over SGD steps on a fixed batch."""
  x = _x((16, 8, 8, 3))
  labels = jnp.argmax(x.mean((1, 2)), -1)

  def loss_fn(x, labels, is_training):
    h = hk.Conv2D(8, 3)(x)
    h = dhk.GDN()(h)
    h = dhk.DivisiveNorm((3, 3), sigma=1.0, learn_sigma=True)(h)
    h = dhk.BatchRenorm(True, True, 0.9)(jax.nn.relu(h), is_training)
    h = jnp.mean(h, (1, 2))
    w = hk.get_parameter("w", (8, 3), init=hk.initializers.TruncatedNormal(0.3))
    logits = h @ dhk.SpectralNorm()(w, update_stats=is_training)
    return -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * jax.nn.one_hot(labels, 3), -1))

  f = hk.without_apply_rng(hk.transform_with_state(loss_fn))
  params, state = f.init(jax.random.key(0), x, labels, True)

  @jax.jit
  def step(params, state):
    (loss, state), grads = jax.value_and_grad(f.apply, has_aux=True)(params, state, x, labels,
                                                                     True)
    return jax.tree.map(lambda a, g: a - 0.5 * g, params, grads), state, loss

  losses = []
  for _ in range(30):
    params, state, loss = step(params, state)
    losses.append(float(loss))
  assert np.all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0]


@pytest.mark.parametrize("make,error,match", [
    (lambda: dhk.Normalize(0, sigma=-1.0), ValueError, "sigma"),
    (lambda: dhk.Normalize(0, sigma=0.0, learn_sigma=True), ValueError, "sigma"),
    (lambda: dhk.DivisiveNorm(3, sigma=0.0, learn_sigma=True), ValueError, "sigma"),
    (lambda: dhk.DivisiveNorm(3, sigma=1.0, learn_sigma=1), TypeError, "learn_sigma"),
    (lambda: dhk.Normalize(0, param_axis=5)(jnp.ones((2, 3))), ValueError, "param_axis"),
    (lambda: dhk.LocalResponseNorm(0), ValueError, "size"),
    (lambda: dhk.LocalResponseNorm(3, data_format="foo"), ValueError, "foo"),
    (lambda: dhk.GDN(beta_init=0.0)(jnp.ones((2, 3))), ValueError, "beta_init"),
    (lambda: dhk.BatchRenorm(True, True, 0.9, rmax=0.5), ValueError, "rmax"),
    (lambda: dhk.BatchRenorm(True, True, 1.5), ValueError, r"decay_rate=1\.5 must be in"),
    (lambda: dhk.SwitchableNorm(True, True, float("nan")), ValueError, "decay_rate=nan"),
    (lambda: dhk.BatchRenorm(True, True, 0.9, sigma=-1.0), ValueError, "sigma"),
    (lambda: dhk.BatchInstanceNorm(True, True, 0.9, rho_init=2.0), ValueError, "rho_init"),
    (lambda: dhk.SwitchableNorm(True, True, 0.9)(jnp.ones((2, 3)), True), ValueError,
     "rank >= 3"),
    (lambda: dhk.MeanOnlyBatchNorm(True, 0.9)(jnp.ones((2, 3)), 1), TypeError, "is_training"),
    (lambda: dhk.MeanOnlyBatchNorm(True, 1.5), ValueError, "decay_rate=1.5"),
    (lambda: dhk.SpectralNorm(n_steps=0), ValueError, "n_steps"),
    (lambda: dhk.SpectralNorm(eps=-1.0), ValueError, "eps"),
    (lambda: dhk.SpectralNorm()(jnp.ones(3)), ValueError, "not well defined"),
    (lambda: dhk.BatchNorm(True, True, 1.5), ValueError, r"decay_rate=1\.5 must be in"),
    (lambda: dhk.Normalize(0)(jnp.ones((2, 3)), return_centered="yes"), TypeError,
     "return_centered='yes' is not a bool"),
    (lambda: dhk.DivisiveNorm(3, sigma=1.0)(jnp.ones((1, 4, 4, 2)), return_centered=0),
     TypeError, "return_centered=0 is not a bool"),
])
def test_bad_arguments_name_the_argument(make, error, match):
  with pytest.raises(error, match=match):
    hk.transform_with_state(lambda: make()).init(jax.random.key(0))


def test_docstring_examples_run():
  results = doctest.testmod(haiku_extra, globs={}, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert results.attempted >= 9 and results.failed == 0
