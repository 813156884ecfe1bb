"""divnorm.haiku against haiku 0.0.17's own layers: the same parameters and state (names,
shapes, dtypes), so a haiku model's load into divnorm's; the same outputs, running averages
and gradients within float32 rounding; statistics accurate at offsets where haiku's
one-pass variances are not; the paper's DivisiveNorm as a haiku module; errors.

haiku's own normalization tests run against divnorm.haiku in
tests/compat/test_haiku_normalization.py.
"""

import doctest

import haiku as hk
import jax
import jax.numpy as jnp
import jmp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import divnorm
from divnorm import haiku as dhk
from divnorm._src import haiku as haiku_impl


def _x(shape=(4, 6, 5, 8), offset=3.0, seed=0):
  return jax.random.normal(jax.random.key(seed), shape) * 2 + offset


def _randomized(tree, seed=1):
  """Parameters or state with random values (scale and offset away from 1 and 0)."""
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return treedef.unflatten([
      leaf if not jnp.issubdtype(leaf.dtype, jnp.floating) else
      (jax.random.uniform(k, leaf.shape, leaf.dtype, 0.5, 1.5)) for k, leaf in zip(
          keys, leaves, strict=True)])


# (make(lib) -> layer, call args): every haiku layer, at defaults and at other settings.
LAYERS = {
  "LayerNorm": (lambda m: m.LayerNorm(-1, True, True), ()),
  "LayerNorm-axes-fast": (lambda m: m.LayerNorm((1, 2, 3), True, True, param_axis=-1,
                                                use_fast_variance=True), ()),
  "LayerNorm-param_axis": (lambda m: m.LayerNorm(-1, True, True, param_axis=(0, 3)), ()),
  "LayerNorm-slice-no-affine": (lambda m: m.LayerNorm(slice(1, -1), False, False,
                                                      param_axis=-1), ()),
  "InstanceNorm": (lambda m: m.InstanceNorm(True, True), ()),
  "InstanceNorm-NCHW": (lambda m: m.InstanceNorm(True, False, data_format="NCHW"), ()),
  "RMSNorm": (lambda m: m.RMSNorm(-1), ()),
  "RMSNorm-axes": (lambda m: m.RMSNorm((2, 3), eps=1e-3, param_axis=(2, 3)), ()),
  "GroupNorm": (lambda m: m.GroupNorm(4), ()),
  "GroupNorm-NCHW": (lambda m: m.GroupNorm(2, data_format="channels_first"), ()),
  "GroupNorm-spatial-and-channels": (lambda m: m.GroupNorm(2, axis=(1, 3)), ()),
  "GroupNorm-per-channel": (lambda m: m.GroupNorm(2, axis=(1, 2)), ()),
  "BatchNorm-train": (lambda m: m.BatchNorm(True, True, 0.9), (True,)),
  "BatchNorm-NCHW-axes": (lambda m: m.BatchNorm(True, False, 0.5, eps=1e-3, axis=[0, 2]),
                          (True,)),
  "BatchNorm-local-stats": (lambda m: m.BatchNorm(False, True, 0.9), (False, True)),
}


def _transformed(lib, name):
  make, args = LAYERS[name]
  return hk.transform_with_state(lambda x: make(lib)(x, *args))


@pytest.mark.parametrize("name", LAYERS)
def test_variables_and_outputs_are_haiku_s(name):
  """Initialized from haiku's layer, divnorm's creates the same variables and, applied to
  haiku's (randomized) parameters and state, gives haiku's output and new state."""
  x = _x()
  theirs, ours = _transformed(hk, name), _transformed(dhk, name)
  params, state = theirs.init(jax.random.key(0), x)
  our_params, our_state = ours.init(jax.random.key(0), x)
  spec = lambda t: jax.tree.map(lambda a: (a.shape, a.dtype), t)
  assert spec(our_params) == spec(params) and spec(our_state) == spec(state)
  params, state = _randomized(params), _randomized(state, seed=2)
  want, want_state = theirs.apply(params, state, None, x)
  got, got_state = ours.apply(params, state, None, x)
  assert got.dtype == want.dtype
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5),
               got_state, want_state)


def _summary(transformed, *args):
  """``(module, method)`` of each call `hk.experimental.eval_summary` records."""
  return [(row.module_details.module.module_name, row.module_details.method_name)
          for row in hk.experimental.eval_summary(transformed)(*args)]


@pytest.mark.loose_promotion  # haiku's BatchNorm, traced: its debiasing raises under strict
@pytest.mark.parametrize("name", LAYERS)
def test_summaries_list_haiku_s_modules_and_methods(name):
  """`hk.experimental.eval_summary` (and `tabulate`) list haiku's layer's modules and their
  `__call__`s, never divnorm's private helpers (`@hk.transparent`; haiku lists its own,
  e.g. GroupNorm's `_initialize`)."""
  x = _x()
  public = [(module, method) for module, method in _summary(_transformed(hk, name), x)
            if method == "__call__" or not method.startswith("_")]
  assert _summary(_transformed(dhk, name), x) == public


@pytest.mark.parametrize("make, args", [
  (lambda: dhk.DivisiveNorm((3, 3), create_scale=True, create_offset=True), ()),
  (lambda: dhk.Normalize({1: 3, 2: 3, 3: None}, create_scale=True), ()),
  (lambda: dhk.MeanOnlyBatchNorm(True, 0.9, create_scale=True), (True,)),
  (lambda: dhk.SwitchableNorm(True, True, 0.9), (True,)),
  (lambda: dhk.MillerNorm(), ()),
])
def test_summaries_of_divnorm_s_own_layers_list_only_their_calls(make, args):
  transformed = hk.transform_with_state(lambda x: make()(x, *args))
  assert {method for _, method in _summary(transformed, _x())} == {"__call__"}


@pytest.mark.loose_promotion  # haiku's BatchNorm, jitted: its debiasing raises under strict
@pytest.mark.parametrize("name", ["LayerNorm", "GroupNorm", "RMSNorm", "BatchNorm-train"])
def test_gradients_are_haiku_s(name):
  x = _x((4, 3, 3, 8))
  theirs, ours = _transformed(hk, name), _transformed(dhk, name)
  params, state = theirs.init(jax.random.key(0), x)
  params = _randomized(params)

  def grads(f):
    loss = lambda p, x: jnp.sum(jnp.sin(f.apply(p, state, None, x)[0]))
    return jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)

  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4),
               grads(ours), grads(theirs))


def test_channels_first_group_norm_has_haiku_s_gradients_at_many_channels():
  """At the shape where XLA's CPU backend miscompiled channels-first group sums by matmuls
  (gradients up to 0.06 off where they reach 5; `reductions.group_sum`)."""
  x, w = _x((8, 768, 512), offset=0.0, seed=5), _x((8, 768, 512), offset=0.0, seed=6)

  def gradient(lib):
    f = hk.without_apply_rng(hk.transform(
        lambda x: lib.GroupNorm(8, data_format="channels_first")(x)))
    params = f.init(jax.random.key(0), x)
    return jax.jit(jax.grad(lambda x: jnp.sum(f.apply(params, x) * w)))(x)

  want = gradient(hk)
  np.testing.assert_allclose(gradient(dhk), want, atol=2e-5 * float(jnp.abs(want).max()))


@pytest.mark.loose_promotion  # haiku's BatchNorm, jitted: its debiasing raises under strict
def test_batch_norm_trains_and_evaluates_as_haiku_s():
  """Five training steps (haiku's zero-debiased running averages, in its state), then
  evaluation with those averages, each step's output and state as haiku's."""
  fn = lambda lib: lambda x, training: lib.BatchNorm(True, True, 0.9)(x, training)
  theirs, ours = (hk.transform_with_state(fn(lib)) for lib in (hk, dhk))
  params, state = theirs.init(jax.random.key(0), _x(), True)
  params, our_state = _randomized(params), state
  for step in range(5):
    x = _x(seed=step)
    want, state = jax.jit(theirs.apply, static_argnums=4)(params, state, None, x, True)
    got, our_state = jax.jit(ours.apply, static_argnums=4)(params, our_state, None, x, True)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5),
               our_state, state)
  x = _x(seed=9)
  np.testing.assert_allclose(ours.apply(params, our_state, None, x, False)[0],
                             theirs.apply(params, state, None, x, False)[0],
                             rtol=2e-5, atol=2e-5)


@pytest.mark.loose_promotion  # haiku's BatchNorm, jitted: its debiasing raises under strict
def test_a_haiku_model_s_checkpoint_loads_into_divnorm_s_layers():
  """A small CNN built with haiku's normalizers, trained three steps; its parameters and
  state, through a NumPy round trip, run in the same CNN built with divnorm's, in training
  and in evaluation."""

  def cnn(lib):
    def forward(x, training):
      h = hk.Conv2D(8, 3)(x)
      h = jax.nn.relu(lib.BatchNorm(True, True, 0.9)(h, training))
      h = jax.nn.relu(lib.GroupNorm(4)(hk.Conv2D(8, 3)(h)))
      h = lib.LayerNorm((1, 2, 3), True, True, param_axis=-1)(h)
      return hk.Linear(3)(lib.RMSNorm(-1)(jnp.mean(h, (1, 2))))
    return hk.transform_with_state(forward)

  theirs, ours = cnn(hk), cnn(dhk)
  x = _x((8, 6, 6, 3))
  params, state = theirs.init(jax.random.key(0), x, True)
  loss = lambda p, s: (lambda out: (jnp.sum(out[0] ** 2), out[1]))(
      theirs.apply(p, s, None, x, True))
  for _ in range(3):
    grads, state = jax.jit(jax.grad(loss, has_aux=True))(params, state)
    params = jax.tree.map(lambda a, g: a - 0.05 * g, params, grads)
  params, state = jax.tree.map(np.asarray, (params, state))  # the saved checkpoint
  assert jax.tree.structure(ours.init(jax.random.key(0), x, True)) == jax.tree.structure(
      (params, state))
  for training in (True, False):
    want, want_state = theirs.apply(params, state, None, x, training)
    got, got_state = ours.apply(params, state, None, x, training)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
                 got_state, want_state)


def test_batch_norm_pools_a_vmapped_axis_as_one_batch():
  """`cross_replica_axis` under `vmap`: the statistics of the whole batch."""
  fn = hk.transform_with_state(lambda x: dhk.BatchNorm(False, False, 0.9,
                                                        cross_replica_axis="i")(x, True))
  x = _x((8, 5))
  params, state = jax.vmap(fn.init, (None, 0), axis_name="i")(jax.random.key(0), x)
  y, _ = jax.vmap(fn.apply, (None, None, None, 0), axis_name="i")(
      params, jax.tree.map(lambda s: s[0], state), None, x)
  x64 = np.asarray(x, np.float64)
  want = (x64 - x64.mean(0)) / np.sqrt(x64.var(0) + 1e-5)
  np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("offset", [1e4, 1e6])
@pytest.mark.parametrize("name,make,args", [
    ("LayerNorm(use_fast_variance=True)",
     lambda m: m.LayerNorm(-1, False, False, use_fast_variance=True), ()),
    ("LayerNorm", lambda m: m.LayerNorm(-1, False, False), ()),
    ("BatchNorm", lambda m: m.BatchNorm(False, False, 0.9), (True,)),
    ("GroupNorm", lambda m: m.GroupNorm(2, create_scale=False, create_offset=False), ()),
])
def test_statistics_are_accurate_at_large_offsets(name, make, args, offset):
  """At offsets of 1e4 and 1e6, divnorm's float32 layers stay within 2e-6 of the same
  float32 input normalized in float64 (measured: at most 7.7e-7). haiku's one-pass variances
  (LayerNorm's use_fast_variance, BatchNorm's) are negative there, and its outputs NaN;
  its two-pass LayerNorm and GroupNorm are off by 7.6e-4 and 9.4e-4 at 1e4, 0.063 and 0.089
  at 1e6 (docs/compatibility.md)."""
  x = jnp.asarray(_x((16, 64), offset=offset))
  f = hk.transform_with_state(lambda x: make(dhk)(x, *args))
  params, state = f.init(jax.random.key(0), x)
  got = f.apply(params, state, None, x)[0]
  with jax.enable_x64(True):
    want = np.asarray(f.apply(params, state, None, jnp.asarray(np.asarray(x), jnp.float64))[0])
  assert got.dtype == jnp.float32 and want.dtype == np.float64
  np.testing.assert_allclose(got, want, atol=2e-6)


@pytest.mark.parametrize("name", ["LayerNorm", "RMSNorm", "GroupNorm", "BatchNorm-train",
                                  "InstanceNorm"])
def test_bfloat16_in_bfloat16_out_with_float32_statistics(name):
  x = _x((4, 6, 5, 8))
  ours = _transformed(dhk, name)
  params, state = ours.init(jax.random.key(0), x.astype(jnp.bfloat16))
  assert all(a.dtype == jnp.bfloat16 for a in jax.tree.leaves(params))
  got = ours.apply(params, state, None, x.astype(jnp.bfloat16))[0]
  want = ours.apply(jax.tree.map(lambda a: a.astype(jnp.float32), params),
                    jax.tree.map(lambda a: a.astype(jnp.float32) if a.dtype == jnp.bfloat16
                                 else a, state), None,
                    x.astype(jnp.bfloat16).astype(jnp.float32))[0]
  assert got.dtype == jnp.bfloat16
  np.testing.assert_allclose(got.astype(jnp.float32), want, rtol=1e-2, atol=1e-2)


@pytest.mark.loose_promotion  # haiku's layers: a float32 variance times a complex scale
@pytest.mark.parametrize("name", ["LayerNorm", "RMSNorm", "GroupNorm", "InstanceNorm"])
def test_complex_input_as_haiku_s(name):
  """A complex mean and the variance ``E[|x - E[x]|^2]`` (LayerNorm, GroupNorm,
  InstanceNorm: `jnp.var`'s), and RMSNorm's ``rsqrt(mean(x**2))`` of complex ``x**2``;
  divnorm's under strict promotion too."""
  x = jax.lax.complex(_x((2, 3, 3, 4)), _x((2, 3, 3, 4), seed=1))
  theirs, ours = _transformed(hk, name), _transformed(dhk, name)
  params, state = theirs.init(jax.random.key(0), x)
  want = theirs.apply(params, state, None, x)[0]
  with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
    got = ours.apply(params, state, None, x)[0]
  assert got.dtype == want.dtype == jnp.complex64
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


def test_divisive_norm_is_the_function_with_haiku_s_affine():
  x = _x((2, 8, 8, 6))
  f = hk.transform(lambda x, **kw: dhk.DivisiveNorm((3, 5), sigma=0.5, create_scale=True,
                                                    create_offset=True)(x, **kw))
  params = _randomized(f.init(jax.random.key(0), x))
  assert jax.tree.map(jnp.shape, params) == {"divisive_norm": {"offset": (6,), "scale": (6,)}}
  y, v = f.apply(params, None, x, return_centered=True)
  want, want_v = divnorm.divisive_norm(x, summation_window=(3, 5), sigma=0.5,
                                       return_centered=True)
  scale, offset = (params["divisive_norm"][k][None, None, None] for k in ("scale", "offset"))
  np.testing.assert_allclose(y, want * scale + offset, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(v, want_v, rtol=1e-6, atol=1e-6)


def test_divisive_norm_channels_first_is_channels_last_transposed():
  x = _x((2, 8, 8, 6))
  last = hk.transform(lambda x: dhk.DivisiveNorm(3, 5, sigma=1.0, create_scale=True)(x))
  first = hk.transform(lambda x: dhk.DivisiveNorm(3, 5, sigma=1.0, create_scale=True,
                                                  data_format="NCHW")(x))
  params = _randomized(last.init(jax.random.key(0), x))
  nchw = {"divisive_norm": {"scale": params["divisive_norm"]["scale"].reshape(1, 6, 1, 1)}}
  y = first.apply(nchw, None, jnp.moveaxis(x, -1, 1))
  np.testing.assert_allclose(jnp.moveaxis(y, 1, -1), last.apply(params, None, x),
                             rtol=1e-6, atol=1e-6)


def test_divisive_norm_trains_a_small_haiku_model():
  """The paper's DN* in a haiku MLP: its L1 penalty on ``v`` in the loss, a few SGD steps
  on a fixed batch lower the loss."""
  x = _x((64, 16))
  labels = jnp.argmax(x[:, :4] - x[:, 4:8], axis=-1)  # a rule the model can learn

  def loss_fn(x, labels):
    h = hk.Linear(32)(x)
    h, v = dhk.DivisiveNorm(5, sigma=1.0, create_offset=True)(h, return_centered=True)
    logits = hk.Linear(4)(jax.nn.relu(h))
    one_hot = jax.nn.one_hot(labels, 4)
    return -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * one_hot, -1)) + divnorm.l1_penalty(
        v, 1e-3)

  f = hk.without_apply_rng(hk.transform(loss_fn))
  params = f.init(jax.random.key(0), x, labels)
  step = jax.jit(lambda p: jax.tree.map(lambda a, g: a - 0.2 * g, p,
                                        jax.grad(f.apply)(p, x, labels)))
  first = f.apply(params, x, labels)
  for _ in range(50):
    params = step(params)
  assert f.apply(params, x, labels) < 0.4 * first


@pytest.mark.parametrize("make,error,match", [
    (lambda: dhk.LayerNorm(-1, True, True, eps=-1.0), ValueError, "eps"),
    (lambda: dhk.BatchNorm(True, True, 0.9, eps=float("nan")), ValueError, "eps"),
    (lambda: dhk.RMSNorm("foo"), ValueError, "`axis` should be"),
    (lambda: dhk.LayerNorm(-1, True, True, param_axis="x"), ValueError, "`param_axis`"),
    (lambda: dhk.DivisiveNorm(3, sigma=-1.0), ValueError, "sigma"),
    (lambda: dhk.BatchNorm(True, True, 0.9, cross_replica_axis_index_groups=[[0]]),
     ValueError, "cross_replica_axis"),
    (lambda: dhk.BatchNorm(True, True, 0.9)(jax.lax.complex(jnp.ones((2, 3)), jnp.ones((2, 3))),
                                            True), TypeError, "takes real inputs"),
    (lambda: dhk.LayerNorm(-1, True, True, param_axis=5)(jnp.ones((2, 3))), ValueError,
     "param_axis"),  # haiku wraps it to axis 1: docs/compatibility.md
    (lambda: dhk.RMSNorm(5)(jnp.ones((2, 3))), ValueError, "axis"),
    (lambda: dhk.GroupNorm(0), ValueError, "groups=0 must be an int >= 1"),
    (lambda: dhk.GroupNorm("2"), TypeError, "groups='2' is not an int"),
])
def test_bad_arguments_name_the_argument(make, error, match):
  with pytest.raises(error, match=match):
    hk.transform(lambda: make()).init(None)


def test_group_norm_errors_as_haiku_s():
  def call(*shapes):
    def f():
      layer = dhk.GroupNorm(2)
      for shape in shapes:
        layer(jnp.ones(shape))
    hk.transform(f).init(jax.random.key(0))

  with pytest.raises(ValueError, match="divisible by the number of groups"):
    call((2, 3, 5))
  with pytest.raises(ValueError, match="rank of the inputs cannot change"):
    call((2, 3, 4), (2, 4))


def test_docstring_examples_run():
  results = doctest.testmod(haiku_impl, globs={}, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert results.attempted >= 6 and results.failed == 0


def test_mixed_precision_policies_apply_as_to_haiku_s():
  """`hk.mixed_precision.set_policy` on divnorm's class, as on haiku's: float32 parameters
  and state, float32 compute and a bfloat16 output, beside a bfloat16 Linear."""
  compute16 = jmp.get_policy("params=float32,compute=bfloat16,output=bfloat16")
  norm32 = jmp.get_policy("params=float32,compute=float32,output=bfloat16")
  x = _x((4, 3))
  results = []
  for lib in (hk, dhk):
    hk.mixed_precision.set_policy(hk.Linear, compute16)
    hk.mixed_precision.set_policy(lib.BatchNorm, norm32)
    try:
      f = hk.transform_with_state(lambda x, lib=lib: lib.BatchNorm(True, True, 0.9)(
          hk.Linear(8)(x), True))
      params, state = f.init(jax.random.key(0), x)
      y, state = f.apply(params, state, None, x)
    finally:
      hk.mixed_precision.clear_policy(hk.Linear)
      hk.mixed_precision.clear_policy(lib.BatchNorm)
    results.append((y, jax.tree.map(lambda a: a.dtype, (params, state))))
  (want, want_dtypes), (got, got_dtypes) = results
  assert got.dtype == want.dtype == jnp.bfloat16 and got_dtypes == want_dtypes
  np.testing.assert_allclose(got.astype(jnp.float32), want.astype(jnp.float32), atol=2e-2)


# ---- properties: any layer, axes, flags, eps and offset, against haiku's in float64 --------

PROPERTY_SETTINGS = settings(max_examples=12, deadline=None, derandomize=True,
                             suppress_health_check=[HealthCheck.too_slow])
TOL = 1e-3  # tests/compat/test_drop_in_properties.py derives it for the same inputs


@st.composite
def _axes(draw, ndim: int, *, exclude=(), negative: bool = True):
  """A non-empty subset of the axes as haiku takes them: an int, a tuple (some negative) or
  a slice."""
  if draw(st.booleans()) and not exclude:
    start = draw(st.integers(0, ndim - 1))
    return slice(start, None)
  axes = draw(st.lists(st.sampled_from([a for a in range(ndim) if a not in exclude]),
                       min_size=1, unique=True))
  axes = [a - ndim if negative and draw(st.booleans()) else a for a in axes]
  return axes[0] if len(axes) == 1 and draw(st.booleans()) else tuple(axes)


@st.composite
def _haiku_layers(draw, name: str):
  """``(constructor args, call args, shape, offset)`` of layer `name`."""
  ndim = draw(st.integers(2, 4))
  shape = draw(st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim))
  eps = draw(st.sampled_from([1e-5, 1e-3, 0.1]))
  flags = dict(create_scale=draw(st.booleans()), create_offset=draw(st.booleans()))
  data_format = draw(st.sampled_from(["channels_last", "channels_first"]))
  call = ()
  if name == "LayerNorm":
    kwargs = dict(axis=draw(_axes(ndim)), eps=eps, param_axis=draw(_axes(ndim)),
                  use_fast_variance=draw(st.booleans()), **flags)
  elif name == "RMSNorm":
    kwargs = dict(axis=draw(_axes(ndim)), eps=eps, param_axis=draw(_axes(ndim)),
                  create_scale=flags["create_scale"])
  elif name == "GroupNorm":
    c = -1 if data_format == "channels_last" else 1
    shape[c] = draw(st.sampled_from([2, 4, 6]))
    groups = draw(st.sampled_from([g for g in (1, 2, shape[c]) if shape[c] % g == 0]))
    kwargs = dict(groups=groups, eps=eps, data_format=data_format, **flags)
    if draw(st.booleans()):  # haiku's GroupNorm indexes negative axes in its reshape
      kwargs["axis"] = draw(_axes(ndim, exclude=(0,), negative=False))
  elif name == "InstanceNorm":
    kwargs = dict(eps=eps, data_format=data_format, **flags)
  else:
    kwargs = dict(decay_rate=draw(st.sampled_from([0.0, 0.5, 0.9])), eps=eps,
                  data_format=data_format, **flags)
    if draw(st.booleans()):
      axes = draw(_axes(ndim, exclude=(ndim - 1, 1)))  # the channels kept, either format
      # as given, some negative: haiku's parameters keep the full size on those
      kwargs["axis"] = list((axes,) if isinstance(axes, int) else axes)
    call = draw(st.sampled_from([(True,), (False, True)]))  # training, or local statistics
  offset = draw(st.sampled_from([0.0, 3.0, -20.0]))
  return kwargs, call, tuple(shape), offset


def _grid(shape, offset):
  """``offset + d``, `d` a permuted grid of spacing 3.5/n (any two entries 0.03 apart)."""
  n = int(np.prod(shape))
  grid = (np.arange(n) - (n - 1) / 2) * (3.5 / n)
  return (offset + np.random.default_rng(n).permutation(grid)).reshape(shape)


def _run(lib, name, kwargs, call, x, params, state, w):
  """``(y, new state, gradients of <y, w> for x and the parameters)``, jitted."""
  f = hk.transform_with_state(lambda x: getattr(lib, name)(**kwargs)(x, *call))

  def loss(params, x):
    y, new_state = f.apply(params, state, None, x)
    return jnp.sum(y * w), (y, new_state)

  (_, (y, new_state)), grads = jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True))(
      params, x)
  return y, new_state, grads


def _equals_haiku_s_in_float64(name, layer, dtype):
  """divnorm's layer `name` (`layer`: `_haiku_layers`' draw) on an input of `dtype`, against
  haiku's same layer run in float64 with the same (perturbed) parameters and state, the
  same input, cotangent and BatchNorm `decay_rate`, each as `dtype` holds it (haiku's
  moving averages compute in the state's dtype): haiku's parameter, state and
  output dtypes, and the output, the new state and the gradients for the input and the
  parameters (BatchNorm: after a training step, again in evaluation with its running
  averages) within one unit in the last place of each one's dtype, or `TOL`, where larger
  (float32: tests/compat/test_drop_in_properties.py derives it for these inputs; a narrow
  result rounded once costs half a unit, and the float32 error is at most 4e-4, that file's
  `_compare_narrow`)."""
  kwargs, call, shape, offset = layer
  x = jnp.asarray(_grid(shape, offset), dtype)
  f = hk.transform_with_state(lambda x: getattr(dhk, name)(**kwargs)(x, *call))
  params, state = f.init(jax.random.key(0), x)
  theirs = hk.transform_with_state(lambda x: getattr(hk, name)(**kwargs)(x, *call))
  dtypes = lambda t: jax.tree.map(lambda a: (a.shape, a.dtype), t)
  assert dtypes((params, state)) == dtypes(theirs.init(jax.random.key(0), x))
  out = jax.eval_shape(lambda p, s, x: theirs.apply(p, s, None, x)[0], params, state, x)
  params = jax.tree.map(lambda a: a + (0.1 + 0.05 * jnp.arange(a.size).reshape(a.shape))
                        .astype(a.dtype), params)
  w = jnp.asarray(np.random.default_rng(1).normal(size=x.shape), out.dtype)
  ours = _run(dhk, name, kwargs, call, x, params, state, w)
  assert ours[0].dtype == out.dtype
  if call == (True,):  # then evaluation with the running averages the step left
    ours += _run(dhk, name, kwargs, (False,), x, params, ours[1], w)
  if "decay_rate" in kwargs:  # haiku's moving averages take it in the state's dtype
    kwargs = dict(kwargs, decay_rate=float(jnp.asarray(kwargs["decay_rate"], dtype)))
  with jax.enable_x64(True):
    as64 = lambda t: jax.tree.map(
        lambda a: jnp.asarray(a, jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating)
        else a, t)
    x64, params64, w64 = as64(x), as64(params), as64(w)
    reference = _run(hk, name, kwargs, call, x64, params64, as64(state), w64)
    if call == (True,):  # float32: its own running averages; narrower: divnorm's, stored
      stored = reference[1] if dtype == jnp.float32 else as64(ours[1])
      reference += _run(hk, name, kwargs, (False,), x64, params64, stored, w64)
    reference = jax.tree.map(np.asarray, reference)
  for (path, got), (_, want) in zip(*(jax.tree_util.tree_leaves_with_path(t)
                                      for t in (ours, reference)), strict=True):
    if not jnp.issubdtype(got.dtype, jnp.floating):  # the moving averages' counters
      np.testing.assert_array_equal(got, want, err_msg=jax.tree_util.keystr(path))
      continue
    tolerance = max(TOL, float(jnp.finfo(got.dtype).eps))
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape and np.isfinite(got).all(), jax.tree_util.keystr(path)
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=0, atol=tolerance * scale,
                               err_msg=jax.tree_util.keystr(path))


def _each_haiku_layer(test):
  """A slow property test of every haiku layer, drawn by hypothesis: `test(name, data)`.
  Loose promotion: haiku's BatchNorm, jitted, raises in its debiasing under strict."""
  test = given(data=st.data())(test)
  test = PROPERTY_SETTINGS(test)
  test = pytest.mark.parametrize("name", ["LayerNorm", "RMSNorm", "GroupNorm", "InstanceNorm",
                                          "BatchNorm"])(test)
  return pytest.mark.slow(pytest.mark.loose_promotion(test))


@_each_haiku_layer
def test_any_haiku_layer_equals_haiku_s_in_float64(name, data):
  """divnorm's float32 layer against haiku's in float64 (`_equals_haiku_s_in_float64`)."""
  _equals_haiku_s_in_float64(name, data.draw(_haiku_layers(name), label="layer"), jnp.float32)


@_each_haiku_layer
def test_any_haiku_layer_in_a_narrow_dtype_equals_haiku_s_in_float64(name, data):
  """`test_any_haiku_layer_equals_haiku_s_in_float64` with a bfloat16 or float16 input."""
  layer = data.draw(_haiku_layers(name), label="layer")
  dtype = jnp.dtype(data.draw(st.sampled_from(["bfloat16", "float16"]), label="dtype"))
  _equals_haiku_s_in_float64(name, layer, dtype)


@pytest.mark.loose_promotion  # haiku's own layers promote a float32 scale with bfloat16
@pytest.mark.parametrize("call", [
    lambda L, x, s: L.LayerNorm(-1, False, False)(x, scale=s, offset=0.5),
    lambda L, x, s: L.GroupNorm(2, create_scale=False, create_offset=False)(x, scale=s,
                                                                          offset=0.5),
    lambda L, x, s: L.BatchNorm(False, False, 0.9)(x, True, scale=s, offset=0.5),
    lambda L, x, s: L.InstanceNorm(False, False)(x, scale=s),
], ids=["LayerNorm", "GroupNorm", "BatchNorm", "InstanceNorm"])
def test_a_python_number_scale_keeps_haiku_s_output_dtype(call):
  """A Python scale or offset at call time is weakly typed: bfloat16 stays bfloat16, as in
  haiku (an hk.scan carry keeps its type); a float32 array widens it, in both."""
  x = jnp.linspace(-1, 1, 24, dtype=jnp.bfloat16).reshape(2, 3, 4)
  for scale, want in ((2.0, jnp.bfloat16), (jnp.float32(2.0), jnp.float32)):
    dtypes = []
    for lib in (hk, dhk):
      f = hk.transform_with_state(lambda x, lib=lib, scale=scale: call(lib, x, scale))
      params, state = f.init(None, x)
      dtypes.append(f.apply(params, state, None, x)[0].dtype)
    assert dtypes == [want, want], dtypes


def test_an_empty_cross_replica_axis_is_none_as_in_haiku():
  """haiku tests `if self.cross_replica_axis:`: "" (a config file's "none") pools nothing."""
  x = _x((4, 3))
  outs = []
  for axis in ("", None):
    f = hk.transform_with_state(lambda x, axis=axis: dhk.BatchNorm(
        True, True, 0.9, cross_replica_axis=axis)(x, True))
    params, state = f.init(None, x)
    outs.append(f.apply(params, state, None, x)[0])
  np.testing.assert_array_equal(*outs)


# ---- Edges found in an audit against haiku 0.0.17 (2026-12-07) -----------------------------

@pytest.mark.loose_promotion  # haiku's layers: a float32 statistic times a complex scale
@pytest.mark.parametrize("name,call", [("LayerNorm", ()), ("GroupNorm", ()),
                                       ("BatchNorm", (True,))])
@pytest.mark.parametrize("which", ["scale", "offset"])
def test_a_complex_scale_or_offset_at_call_time_keeps_its_imaginary_part(name, call, which):
  make = {"LayerNorm": lambda m: m.LayerNorm(-1, False, False),
          "GroupNorm": lambda m: m.GroupNorm(2, create_scale=False, create_offset=False),
          "BatchNorm": lambda m: m.BatchNorm(False, False, 0.9)}[name]
  x, value = _x((4, 3, 6)), jax.lax.complex(_x((6,), seed=2), _x((6,), seed=3))
  outs = []
  for lib in (hk, dhk):
    f = hk.transform_with_state(lambda x, lib=lib: make(lib)(x, *call, **{which: value}))
    params, state = f.init(jax.random.key(0), x)
    with jax.numpy_dtype_promotion("strict" if lib is dhk else "standard"):  # ours: both
      outs.append(f.apply(params, state, None, x)[0])
  assert outs[1].dtype == outs[0].dtype == jnp.complex64
  assert float(jnp.max(jnp.abs(outs[0].imag))) > 1  # the imaginary part is not 0
  np.testing.assert_allclose(outs[1], outs[0], rtol=0, atol=8 * 1.2e-7 * float(
      jnp.max(jnp.abs(outs[0]))))


def test_complex_layer_norm_with_fast_variance_is_a_type_error():
  # haiku's fast variance of complex x is E[x^2] - E[x]^2, complex: not a variance (as
  # divnorm.haiku.BatchNorm's TypeError); its default, E[|x - E[x]|^2], is served.
  x = jax.lax.complex(_x((2, 6)), _x((2, 6), seed=1))
  f = hk.transform(lambda x: dhk.LayerNorm(-1, True, True, use_fast_variance=True)(x))
  with pytest.raises(TypeError, match="use_fast_variance=False"):
    f.init(jax.random.key(0), x)


def test_batch_norm_refuses_to_train_on_an_empty_batch():
  # haiku's running averages become NaN; divnorm's rule for running statistics (README):
  # an empty batch cannot update them.
  f = hk.transform_with_state(lambda x, t: dhk.BatchNorm(True, True, 0.9)(x, t))
  params, state = f.init(jax.random.key(0), _x((4, 3, 6)), True)
  with pytest.raises(ValueError, match="no entries on the reduced axes"):
    f.apply(params, state, None, jnp.zeros((0, 3, 6)), True)
  y, same = f.apply(params, state, None, jnp.zeros((0, 3, 6)), False)  # evaluation: fine
  assert y.shape == (0, 3, 6)
  jax.tree.map(np.testing.assert_array_equal, same, state)


@pytest.mark.parametrize("axis", [[0, -3, -2], [-4, 1, 2], [0, 1, 2]])
def test_batch_norm_s_parameters_follow_the_axes_as_given_as_haiku_s(axis):
  # haiku sizes its parameters by `i in axis` on the axes as given: a negative axis keeps
  # its full size there, so a haiku checkpoint has per-position parameters.
  x = _x((4, 3, 5, 2))
  make = lambda m: m.BatchNorm(True, True, 0.9, axis=axis)
  theirs, ours = (hk.transform_with_state(lambda x, m=m: make(m)(x, True)) for m in (hk, dhk))
  params, state = theirs.init(jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, ours.init(jax.random.key(0), x)) == jax.tree.map(
      jnp.shape, (params, state))
  params = _randomized(params)
  (want, want_state), (got, got_state) = (t.apply(params, state, None, x) for t in (theirs, ours))
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * float(jnp.max(jnp.abs(want))))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-5), got_state,
               want_state)


def test_rank_1_batch_norm_channels_first_reduces_the_one_axis_as_haiku_s():
  # haiku's channel index 1 is past the rank: every axis is reduced
  x = _x((5,))
  make = lambda m: m.BatchNorm(True, True, 0.9, data_format="channels_first")
  theirs, ours = (hk.transform_with_state(lambda x, m=m: make(m)(x, True)) for m in (hk, dhk))
  params, state = theirs.init(jax.random.key(0), x)
  (want, _), (got, _) = (t.apply(params, state, None, x) for t in (theirs, ours))
  assert jax.tree.map(jnp.shape, params) == {"batch_norm": {"offset": (1,), "scale": (1,)}}
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
  assert float(jnp.std(got)) > 0.9
