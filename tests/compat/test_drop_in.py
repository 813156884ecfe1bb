"""divnorm's Flax-named modules as drop-ins for Flax 0.12.8: signatures, outputs, checkpoints.

Beyond flax's own tests (ported beside this file): the constructor signatures against
flax's, outputs against flax's on random parameters, checkpoints of small models trained
with flax's normalizers loading into the same models built with divnorm's, nnx.vmap and
nnx.scan, and the two cases where divnorm is more accurate than flax.
"""

import inspect

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from divnorm import linen as dnn
from divnorm import nnx as dnx

NAMES = ("BatchNorm", "LayerNorm", "RMSNorm", "GroupNorm", "InstanceNorm", "WeightNorm",
         "SpectralNorm")


def _same_default(ours, theirs) -> bool:
  if ours is theirs or ours == theirs:
    return True
  if callable(ours) and callable(theirs):  # initializers made by a factory: same values
    key, shape = jax.random.key(0), (3,)
    return bool(jnp.array_equal(ours(key, shape, jnp.float32), theirs(key, shape, jnp.float32)))
  return False


@pytest.mark.parametrize("api", ["linen", "nnx"])
@pytest.mark.parametrize("name", NAMES)
def test_signature_is_flax_then_keyword_only_additions(name, api):
  theirs_cls, ours_cls = (getattr(nn, name), getattr(dnn, name)) if api == "linen" else (
    getattr(nnx, name), getattr(dnx, name))
  skip = {"self", "parent", "name"}
  theirs = [p for p in inspect.signature(theirs_cls).parameters.values() if p.name not in skip]
  ours = [p for p in inspect.signature(ours_cls).parameters.values() if p.name not in skip]
  assert [p.name for p in ours[:len(theirs)]] == [p.name for p in theirs]
  for o, t in zip(ours, theirs, strict=False):
    assert o.kind == t.kind, (name, o.name)
    if o.name == "rngs":  # divnorm also accepts no rngs (nnx.Rngs(0))
      continue
    assert _same_default(o.default, t.default), (name, o.name, o.default, t.default)
  assert all(p.kind == inspect.Parameter.KEYWORD_ONLY for p in ours[len(theirs):])


def test_positional_arguments_mean_what_they_mean_in_flax():
  assert dnn.GroupNorm(7).num_groups == 7
  assert dnn.LayerNorm(1e-3).epsilon == 1e-3
  assert dnn.BatchNorm(True).use_running_average is True
  assert dnx.GroupNorm(8, 4).num_groups == 4
  with pytest.raises(ValueError, match="two spellings"):
    dnn.LayerNorm(1e-3, sigma=0.1).init(jax.random.key(0), jnp.ones((2, 3)))


def _x(shape, seed=0, offset=0.0):
  return offset + jax.random.normal(jax.random.key(seed), shape)


def _randomize(tree, seed=1):
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  leaves = [a + 0.3 * jax.random.normal(k, a.shape, a.dtype) for a, k in zip(leaves, keys, strict=True)]
  return jax.tree.unflatten(treedef, leaves)


LINEN_CASES = [
  ("LayerNorm", dict(reduction_axes=(1, 2), feature_axes=-1), (4, 3, 5, 6), None),
  ("RMSNorm", dict(), (4, 5, 6), None),
  ("GroupNorm", dict(num_groups=3), (4, 5, 6), None),
  ("GroupNorm", dict(num_groups=2, reduction_axes=(0, 2)), (4, 5, 6), None),
  ("InstanceNorm", dict(feature_axes=(1, -1)), (4, 3, 5, 6), None),
  ("InstanceNorm", dict(), (4, 6), None),  # rank 2: Flax's zeros, then the bias
  ("LayerNorm", dict(dtype=jnp.bfloat16, param_dtype=jnp.bfloat16), (4, 6), None),
  ("LayerNorm", dict(use_fast_variance=False), (4, 6), (4, 1)),
]


@pytest.mark.parametrize("name,kwargs,shape,mask_shape", LINEN_CASES)
def test_linen_outputs_equal_flax(name, kwargs, shape, mask_shape):
  x = _x(shape)
  mask = None if mask_shape is None else jax.random.bernoulli(
    jax.random.key(3), 0.7, mask_shape).at[0].set(True)
  theirs, ours = getattr(nn, name)(**kwargs), getattr(dnn, name)(**kwargs)
  variables = _randomize(theirs.init(jax.random.key(0), x))
  ours_init = ours.init(jax.random.key(0), x)
  assert jax.tree.map(lambda a: (a.shape, a.dtype), ours_init) == jax.tree.map(
    lambda a: (a.shape, a.dtype), variables)
  want, got = theirs.apply(variables, x, mask=mask), ours.apply(variables, x, mask=mask)
  assert got.dtype == want.dtype
  tol = 1e-2 if got.dtype == jnp.bfloat16 else 2e-5
  where = np.ones(want.shape, bool) if mask is None else np.broadcast_to(mask, want.shape)
  np.testing.assert_allclose(np.asarray(got, np.float32)[where],
                             np.asarray(want, np.float32)[where], atol=tol, rtol=tol)


@pytest.mark.parametrize("complex_input", [False, True])
def test_linen_batch_norm_equals_flax_in_train_and_eval(complex_input):
  dtype = jnp.complex64 if complex_input else None
  theirs = nn.BatchNorm(momentum=0.9, dtype=dtype)
  ours = dnn.BatchNorm(momentum=0.9, dtype=dtype)
  x = _x((8, 3, 4)) if not complex_input else jax.random.normal(
    jax.random.key(0), (8, 3, 4), jnp.complex64)
  v_theirs = theirs.init(jax.random.key(0), x, use_running_average=False)
  v_theirs = {**v_theirs, "params": _randomize(v_theirs["params"])}
  v_ours = v_theirs
  for seed in range(2):
    xs = x * (1 + seed)
    y1, u1 = ours.apply(v_ours, xs, use_running_average=False, mutable=["batch_stats"])
    y2, u2 = theirs.apply(v_theirs, xs, use_running_average=False, mutable=["batch_stats"])
    np.testing.assert_allclose(y1, y2, atol=2e-5, rtol=2e-5)
    v_ours, v_theirs = {**v_ours, **u1}, {**v_theirs, **u2}
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
               v_ours["batch_stats"], v_theirs["batch_stats"])
  np.testing.assert_allclose(ours.apply(v_ours, x, use_running_average=True),
                             theirs.apply(v_theirs, x, use_running_average=True), atol=2e-5)


NNX_CASES = [
  ("LayerNorm", (6,), dict(), (4, 6)),
  ("RMSNorm", (6,), dict(), (4, 6)),
  ("GroupNorm", (6,), dict(num_groups=3), (4, 5, 6)),
  ("InstanceNorm", (6,), dict(), (4, 5, 6)),
  ("BatchNorm", (6,), dict(use_running_average=False), (4, 5, 6)),
  ("LayerNorm", (6,), dict(dtype=jnp.float16, param_dtype=jnp.float16), (4, 6)),
]


@pytest.mark.parametrize("name,args,kwargs,shape", NNX_CASES)
def test_nnx_outputs_equal_flax(name, args, kwargs, shape):
  x = _x(shape)
  theirs = getattr(nnx, name)(*args, **kwargs, rngs=nnx.Rngs(0))
  ours = getattr(dnx, name)(*args, **kwargs, rngs=nnx.Rngs(0))
  nnx.update(theirs, _randomize(nnx.state(theirs, nnx.Param)))
  _load(ours, theirs)
  want, got = theirs(x), ours(x)
  assert got.dtype == want.dtype
  tol = 2e-3 if got.dtype == jnp.float16 else 2e-5
  np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32),
                             atol=tol, rtol=tol)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
               nnx.to_pure_dict(nnx.state(ours, nnx.BatchStat)),
               nnx.to_pure_dict(nnx.state(theirs, nnx.BatchStat)))


# ---- checkpoints: trained with flax's normalizers, loaded into divnorm's ----------------


class _LinenCNN(nn.Module):
  norms: object  # flax.linen or divnorm.linen

  @nn.compact
  def __call__(self, x, train: bool):
    n = self.norms
    x = nn.Conv(8, (3, 3))(x)
    x = n.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    x = nn.relu(n.GroupNorm(4)(nn.Conv(8, (3, 3))(x)))
    x = n.WeightNorm(nn.Conv(8, (3, 3)))(x)
    x = n.InstanceNorm()(x)
    x = n.SpectralNorm(nn.Dense(10))(x.mean((1, 2)), update_stats=train)
    return x


class _LinenBlock(nn.Module):
  norms: object

  @nn.compact
  def __call__(self, x, train: bool):
    n = self.norms
    h = n.LayerNorm()(x)
    x = x + n.WeightNorm(nn.MultiHeadDotProductAttention(2))(h, h)
    h = n.RMSNorm()(x)
    return x + nn.Dense(x.shape[-1])(nn.gelu(nn.Dense(16)(h)))


def _train_linen(model, x, y, steps=2):
  variables = model.init(jax.random.key(0), x, train=False)
  params, state = variables["params"], {k: v for k, v in variables.items() if k != "params"}
  tx = optax.adam(1e-2)
  opt = tx.init(params)

  @jax.jit
  def step(params, state, opt):
    def loss(p):
      out, new_state = model.apply({"params": p, **state}, x, train=True,
                                   mutable=list(state))
      return jnp.mean((out - y) ** 2), new_state

    (value, new_state), grads = jax.value_and_grad(loss, has_aux=True)(params)
    updates, opt = tx.update(grads, opt)
    return optax.apply_updates(params, updates), new_state, opt, value

  losses = []
  for _ in range(steps):
    params, state, opt, value = step(params, state, opt)
    losses.append(float(value))
  assert losses[-1] < losses[0]
  return {"params": params, **state}


@pytest.mark.slow
@pytest.mark.parametrize("model_cls,shape,out_dim", [
  (_LinenCNN, (4, 8, 8, 3), 10), (_LinenBlock, (2, 5, 8), 8)])
def test_linen_checkpoint_of_flax_model_loads(model_cls, shape, out_dim):
  from flax import serialization

  x, y = _x(shape), _x(shape[:1] + (out_dim,) if model_cls is _LinenCNN else shape, seed=1)
  variables = _train_linen(model_cls(nn), x, y)
  checkpoint = serialization.to_bytes(variables)  # Flax's msgpack checkpoint format
  ours = model_cls(dnn)
  target = jax.eval_shape(lambda: ours.init(jax.random.key(0), x, train=False))
  assert jax.tree.structure(target) == jax.tree.structure(variables)
  restored = serialization.from_bytes(target, checkpoint)
  for train in (False, True):
    kwargs = dict(mutable=["batch_stats"]) if train else {}
    want = model_cls(nn).apply(variables, x, train=train, **kwargs)
    got = ours.apply(restored, x, train=train, **kwargs)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-5, rtol=2e-5), got, want)


@pytest.mark.parametrize("name,kwargs,shape", [
  ("BatchNorm", dict(use_running_average=False, axis=1, momentum=0.9), (6, 4, 5)),
  ("BatchNorm", dict(use_running_average=False, use_bias=False, param_dtype=jnp.bfloat16),
   (6, 5)),
  ("LayerNorm", dict(use_bias=False, reduction_axes=(1, 2), feature_axes=(1, 2)), (3, 4, 5)),
  ("RMSNorm", dict(use_scale=False), (3, 5)),
  ("GroupNorm", dict(num_groups=None, group_size=2), (3, 4, 6)),
  ("InstanceNorm", dict(feature_axes=(1, 2)), (3, 4, 5, 2)),
  ("WeightNorm", dict(feature_axes=None, variable_filter=None), (3, 5)),
  ("SpectralNorm", dict(n_steps=3), (3, 5)),
])
def test_linen_checkpoint_of_each_layer_loads(name, kwargs, shape):
  """One layer at a time, non-default settings: flax's variables (msgpack bytes) restore into
  divnorm's layer and give flax's outputs and updated statistics."""
  from flax import serialization

  wrapped = name in ("WeightNorm", "SpectralNorm")
  make = lambda m: getattr(m, name)(nn.Dense(4), **kwargs) if wrapped else getattr(m, name)(
    **kwargs)
  call = dict(update_stats=True) if name == "SpectralNorm" else {}
  x = _x(shape)
  theirs = make(nn).init(jax.random.key(0), x, **call)
  theirs = {k: _randomize(v, seed=i) for i, (k, v) in enumerate(theirs.items())}
  target = jax.eval_shape(lambda: make(dnn).init(jax.random.key(1), x, **call))
  restored = serialization.from_bytes(target, serialization.to_bytes(theirs))
  want = make(nn).apply(theirs, x, mutable=True, **call)
  got = make(dnn).apply(restored, x, mutable=True, **call)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(
    np.asarray(a, np.float32), np.asarray(b, np.float32), rtol=2e-2 if a.dtype == jnp.bfloat16
    else 2e-5, atol=2e-5), got, want)


class _NnxCNN(nnx.Module):
  def __init__(self, norms, rngs):
    n = norms
    self.conv1 = nnx.Conv(3, 8, (3, 3), rngs=rngs)
    self.bn = n.BatchNorm(8, momentum=0.9, rngs=rngs)
    self.conv2 = nnx.Conv(8, 8, (3, 3), rngs=rngs)
    self.gn = n.GroupNorm(8, num_groups=4, rngs=rngs)
    self.wn = n.WeightNorm(nnx.Conv(8, 8, (3, 3), rngs=rngs), rngs=rngs)
    self.inorm = n.InstanceNorm(8, rngs=rngs)
    self.sn = n.SpectralNorm(nnx.Linear(8, 10, rngs=rngs), rngs=rngs)

  def __call__(self, x):
    x = self.bn(self.conv1(x))
    x = nnx.relu(self.gn(self.conv2(x)))
    x = self.inorm(self.wn(x))
    return self.sn(x.mean((1, 2)))


class _NnxBlock(nnx.Module):
  def __init__(self, norms, rngs):
    n = norms
    self.ln = n.LayerNorm(8, rngs=rngs)
    self.attn = n.WeightNorm(
      nnx.MultiHeadAttention(2, 8, decode=False, rngs=rngs), rngs=rngs)
    self.rms = n.RMSNorm(8, rngs=rngs)
    self.mlp = nnx.Sequential(nnx.Linear(8, 16, rngs=rngs), nnx.gelu,
                              nnx.Linear(16, 8, rngs=rngs))

  def __call__(self, x):
    x = x + self.attn(self.ln(x))
    return x + self.mlp(self.rms(x))


def _load(ours, theirs):
  """Flax's nnx state into divnorm's model, as a checkpoint restore does (pure dicts)."""
  pure = nnx.to_pure_dict(nnx.state(theirs))
  target = nnx.state(ours)
  nnx.replace_by_pure_dict(target, pure)
  nnx.update(ours, target)


@pytest.mark.slow
@pytest.mark.parametrize("model_cls,shape,out_dim", [
  (_NnxCNN, (4, 8, 8, 3), 10), (_NnxBlock, (2, 5, 8), 8)])
def test_nnx_checkpoint_of_flax_model_loads(model_cls, shape, out_dim):
  x = _x(shape)
  y = _x(shape[:1] + (out_dim,) if model_cls is _NnxCNN else shape, seed=1)
  theirs = model_cls(nnx, nnx.Rngs(0))
  optimizer = nnx.Optimizer(theirs, optax.adam(1e-2), wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer):
    loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
    optimizer.update(model, grads)
    return loss

  losses = [float(step(theirs, optimizer)) for _ in range(3)]
  assert losses[-1] < losses[0]
  theirs.eval()
  ours = model_cls(dnx, nnx.Rngs(1))
  ours.eval()
  _load(ours, theirs)  # before calling flax's: its nnx wrappers overwrite the layer's weights
  np.testing.assert_allclose(ours(x), theirs(x), atol=2e-5, rtol=2e-5)


# ---- NNX transforms over a divnorm BatchNorm -------------------------------------------


@pytest.mark.slow
def test_nnx_vmap_over_batch_norm_ensembles():
  @nnx.vmap(in_axes=0, out_axes=0)
  def make(key):
    return dnx.BatchNorm(4, use_running_average=False, rngs=nnx.Rngs(params=key))

  models = make(jax.random.split(jax.random.key(0), 3))
  x = _x((3, 8, 4))  # one batch per ensemble member

  @nnx.vmap(in_axes=(0, 0), out_axes=0)
  def apply(model, x):
    return model(x)

  y = apply(models, x)
  np.testing.assert_allclose(y.mean(1), 0, atol=1e-5)
  np.testing.assert_allclose(models.mean[...], 0.01 * x.mean(1), rtol=1e-5, atol=1e-7)
  for i in range(3):  # each member on its own batch equals a lone BatchNorm
    lone = dnx.BatchNorm(4, use_running_average=False, rngs=nnx.Rngs(0))
    np.testing.assert_allclose(y[i], lone(x[i]), atol=1e-5)


def test_nnx_vmap_with_axis_name_equals_the_whole_batch():
  bn = dnx.BatchNorm(4, use_running_average=False, axis_name="batch", rngs=nnx.Rngs(0))
  x = _x((2, 6, 4))

  @nnx.vmap(in_axes=(None, 0), out_axes=0, axis_name="batch")
  def apply(model, x):
    return model(x)

  y = apply(bn, x)
  whole = dnx.BatchNorm(4, use_running_average=False, rngs=nnx.Rngs(0))
  np.testing.assert_allclose(y.reshape(12, 4), whole(x.reshape(12, 4)), atol=1e-5)


@pytest.mark.parametrize("name", ["LayerNorm", "RMSNorm", "GroupNorm", "InstanceNorm"])
def test_axis_name_under_vmap_equals_flax(name):
  """flax averages each position's statistics over the mapped axis (pmean); so does divnorm
  (sums and counts over it), in linen and nnx."""
  x = _x((2, 4, 5, 6), offset=1.0)
  kwargs = dict(axis_name="batch", **({"num_groups": 3} if name == "GroupNorm" else {}))
  theirs, ours = getattr(nn, name)(**kwargs), getattr(dnn, name)(**kwargs)
  variables = _randomize(getattr(nn, name)(**({"num_groups": 3} if name == "GroupNorm" else {}))
                         .init(jax.random.key(0), x[0]))
  want = jax.vmap(lambda xi: theirs.apply(variables, xi), axis_name="batch")(x)
  got = jax.vmap(lambda xi: ours.apply(variables, xi), axis_name="batch")(x)
  np.testing.assert_allclose(got, want, atol=1e-5)
  nnx_kwargs = {"num_features": 6, "rngs": nnx.Rngs(0), **kwargs}
  model = getattr(dnx, name)(**nnx_kwargs)
  nnx.update(model, nnx.State(variables["params"]))

  @nnx.vmap(in_axes=(None, 0), out_axes=0, axis_name="batch")
  def apply(model, xi):
    return model(xi)

  np.testing.assert_allclose(apply(model, x), want, atol=1e-5)


@pytest.mark.parametrize("name", ["BatchNorm", "LayerNorm", "RMSNorm", "GroupNorm",
                                  "InstanceNorm"])
def test_axis_index_groups_under_pmap_equals_flax(name):
  """flax's axis_index_groups (pmap only): each group of devices shares its statistics (and
  BatchNorm's running averages), in linen and nnx."""
  groups, x = [[0, 2], [1, 3]], _x((4, 2, 5, 6), offset=1.0)
  extra = ({"num_groups": 3} if name == "GroupNorm" else
           {"use_running_average": False} if name == "BatchNorm" else {})
  variables = _randomize(getattr(nn, name)(**extra).init(jax.random.key(0), x[0]))

  def run(module):
    return jax.pmap(lambda xi: module.apply(variables, xi, mutable=["batch_stats"]),
                    axis_name="batch")(x)

  (want, want_stats), (got, got_stats) = (
      run(getattr(api, name)(axis_name="batch", axis_index_groups=groups, **extra))
      for api in (nn, dnn))
  np.testing.assert_allclose(got, want, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               got_stats, want_stats)
  ungrouped, _ = run(getattr(dnn, name)(axis_name="batch", **extra))
  assert not np.allclose(got, ungrouped, atol=1e-3)  # the groups change the statistics
  model = getattr(dnx, name)(6, axis_name="batch", axis_index_groups=groups, rngs=nnx.Rngs(0),
                             **extra)
  nnx.update(model, nnx.State(variables["params"]))
  graphdef, state = nnx.split(model)
  y = jax.pmap(lambda xi, state: nnx.merge(graphdef, state)(xi), axis_name="batch",
               in_axes=(0, None))(x, state)
  np.testing.assert_allclose(y, want, atol=1e-5)


def test_axis_index_groups_that_miss_devices_are_an_error_naming_them():
  """XLA's own error for groups that do not cover the mapped axis is an INTERNAL check."""
  x = _x((4, 2, 6))
  variables = nn.LayerNorm().init(jax.random.key(0), x[0])
  with pytest.raises(ValueError, match=r"axis_index_groups=\(\(0, 1\),\) .* cover the "
                                       r"mapped axis \(size 4\)"):
    jax.pmap(lambda xi: dnn.LayerNorm(axis_name="batch", axis_index_groups=[[0, 1]]).apply(
        variables, xi), axis_name="batch")(x)


@pytest.mark.parametrize("reduction_axes", [(2, 3), (1, 3), (3,), (0, 3), (0, 1, 2, 3)])
def test_nnx_group_norm_reduction_axes_are_linens(reduction_axes):
  # flax.nnx 0.12.8 repeats the group statistics along axis 1 whatever `reduction_axes` says
  # (right only for the default); divnorm.nnx computes linen's, the documented meaning.
  x = _x((3, 2, 3, 4))
  linen = nn.GroupNorm(num_groups=2, reduction_axes=reduction_axes)
  variables = _randomize(linen.init(jax.random.key(0), x))
  want = linen.apply(variables, x)
  ours = dnx.GroupNorm(4, num_groups=2, reduction_axes=reduction_axes)
  ours.scale[...], ours.bias[...] = variables["params"]["scale"], variables["params"]["bias"]
  np.testing.assert_allclose(ours(x), want, atol=2e-5, rtol=2e-5)
  assert jnp.allclose(dnn.GroupNorm(num_groups=2, reduction_axes=reduction_axes).apply(
    variables, x), want, atol=2e-5)
  try:  # docs/compatibility.md says flax.nnx differs here; when it no longer does, say so
    theirs = nnx.GroupNorm(4, num_groups=2, reduction_axes=reduction_axes, rngs=nnx.Rngs(0))
    theirs.scale[...], theirs.bias[...] = ours.scale[...], ours.bias[...]
    assert float(jnp.abs(theirs(x) - want).max()) > 0.1, "flax.nnx now agrees: update the docs"
  except ValueError as error:
    assert "out of bounds" in str(error)


@pytest.mark.parametrize("api", ["linen", "nnx"])
@pytest.mark.parametrize("name,kwargs,x", [
  ("LayerNorm", {}, jnp.full((2, 3), 7.0)),
  ("RMSNorm", {}, jnp.zeros((2, 3))),
  ("GroupNorm", {"num_groups": 1}, jnp.full((2, 2, 3), -5.0)),
  ("InstanceNorm", {}, jnp.arange(6.0).reshape(2, 3)),  # rank 2: nothing to reduce
  ("BatchNorm", {"use_running_average": False}, jnp.full((4, 3), 2.0)),
])
def test_epsilon_zero_on_a_constant_field_is_the_bias_with_finite_gradients(api, name, kwargs,
                                                                            x):
  # flax: 0 * rsqrt(0) = NaN (docs/compatibility.md); divnorm: 0, then the affine.
  if api == "linen":
    layer = getattr(dnn, name)(epsilon=0.0, **kwargs)
    variables = _randomize(layer.init(jax.random.key(0), x))
    def f(variables, x):
      return layer.apply(variables, x, mutable=["batch_stats"])[0]
    bias = variables["params"].get("bias", 0.0)
  else:
    layer = getattr(dnx, name)(x.shape[-1], epsilon=0.0, **kwargs)
    nnx.update(layer, _randomize(nnx.state(layer, nnx.Param)))
    graph, state = nnx.split(layer)
    def f(state, x):
      return nnx.merge(graph, state)(x)
    variables, bias = state, 0.0 if name == "RMSNorm" else layer.bias[...]
  y = f(variables, x)
  np.testing.assert_array_equal(y, jnp.broadcast_to(bias, x.shape))
  grads = jax.grad(lambda v, x: jnp.sum(f(v, x) * jnp.arange(x.size).reshape(x.shape)),
                   (0, 1))(variables, x)
  assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))


def test_nnx_scan_over_batch_norm_layers():
  @nnx.vmap(in_axes=0, out_axes=0)
  def make(key):
    return dnx.BatchNorm(4, use_running_average=False, rngs=nnx.Rngs(params=key))

  layers = make(jax.random.split(jax.random.key(0), 3))
  x = _x((8, 4), offset=3.0)

  @nnx.scan(in_axes=(0, nnx.Carry), out_axes=nnx.Carry)
  def forward(layer, h):
    return layer(2.0 * h + 1.0)

  y = forward(layers, x)
  h = x
  for i in range(3):  # layer by layer, each a lone BatchNorm
    lone = dnx.BatchNorm(4, use_running_average=False, rngs=nnx.Rngs(0))
    h = lone(2.0 * h + 1.0)
    np.testing.assert_allclose(layers.mean[...][i], lone.mean[...], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layers.var[...][i], lone.var[...], rtol=1e-5)
  np.testing.assert_allclose(y, h, atol=1e-5)


# ---- Flax's behaviours divnorm had refused ----------------------------------------------


@pytest.mark.slow
def test_axis_name_initialises_outside_a_mapped_context():
  x = _x((4, 3))
  for module in (dnn.LayerNorm(axis_name="batch"), dnn.GroupNorm(3, axis_name="batch"),
                 dnn.InstanceNorm(axis_name="batch")):
    module.init(jax.random.key(0), x[:, None])  # flax's fail here ("unbound axis name")
  bn = dnn.BatchNorm(use_running_average=False, axis_name="batch")
  variables = bn.init(jax.random.key(0), x)
  y = jax.vmap(lambda xi: bn.apply(variables, xi, mutable=["batch_stats"])[0],
               axis_name="batch")(x.reshape(2, 2, 3))
  whole = dnn.BatchNorm(use_running_average=False).apply(variables, x, mutable=["batch_stats"])
  np.testing.assert_allclose(y.reshape(4, 3), whole[0], atol=1e-5)


@pytest.mark.parametrize("wrapper", ["WeightNorm", "SpectralNorm", "WeightStandardization"])
def test_partitioned_kernels_keep_their_sharding_metadata(wrapper):
  dense = nn.Dense(4, kernel_init=nn.with_partitioning(nn.initializers.lecun_normal(),
                                                       (None, "model")))
  module = getattr(dnn, wrapper)(dense)
  kwargs = dict(update_stats=True) if wrapper == "SpectralNorm" else {}
  x = _x((2, 3))
  variables = module.init(jax.random.key(0), x, **kwargs)
  kernel = variables["params"]["layer_instance"]["kernel"]
  assert isinstance(kernel, nn.Partitioned) and kernel.names == (None, "model")
  plain = getattr(dnn, wrapper)(nn.Dense(4))
  unboxed = nn.unbox(variables)
  y = module.apply(variables, x, **kwargs, mutable=True)[0] if kwargs else module.apply(
    variables, x)
  y_plain = plain.apply(_rename_value(unboxed), x, **kwargs, mutable=True)[0] if kwargs else (
    plain.apply(_rename_value(unboxed), x))
  np.testing.assert_allclose(y, y_plain, atol=1e-6)


def _rename_value(tree):
  """Flax names a partitioned kernel's variables `.../kernel/value/...`; plain is `.../kernel/...`."""
  if isinstance(tree, dict):
    return {k.replace("/value/", "/"): _rename_value(v) for k, v in tree.items()}
  return tree


# ---- where divnorm is more accurate than flax (the two named exceptions) ----------------


@pytest.mark.parametrize("name,offset,shape,kwargs", [
  ("LayerNorm", 1e6, (2, 3, 4), dict(use_bias=False, use_scale=False, epsilon=1e-5,
                                     use_fast_variance=False)),
  ("InstanceNorm", 1e4, (2, 3, 4, 5), dict(use_bias=False, use_scale=False, epsilon=1e-5,
                                           use_fast_variance=False)),
])
def test_more_accurate_than_flax_at_large_offsets(name, offset, shape, kwargs):
  x = _x(shape, offset=offset)
  axes = (2,) if name == "LayerNorm" else (1, 2)
  x64 = np.asarray(x, np.float64)
  exact = (x64 - x64.mean(axes, keepdims=True)) / np.sqrt(x64.var(axes, keepdims=True) + 1e-5)
  ours = getattr(dnn, name)(**kwargs).apply({}, x)
  theirs = getattr(nn, name)(**kwargs).apply({}, x)
  err_ours, err_theirs = np.abs(ours - exact).max(), np.abs(theirs - exact).max()
  assert err_ours < 1e-6 < 1e-4 < err_theirs, (err_ours, err_theirs)


def test_compatibility_table_lists_every_flax_argument():
  import pathlib

  text = (pathlib.Path(__file__).parents[2] / "docs" / "compatibility.md").read_text()
  sections = {s.split("\n", 1)[0].strip(): s for s in text.split("\n### ")[1:]}
  for name in NAMES:
    for init in (getattr(nn, name).__init__, getattr(nnx, name).__init__):
      for arg in inspect.signature(init).parameters:
        if arg not in ("self", "parent", "name"):
          assert f"| `{arg}` |" in sections[name], (name, arg)
  for test in ("test_layer_norm4", "test_instance_norm3"):
    assert test in text
  import equinox as eqx

  for name in ("LayerNorm", "RMSNorm", "GroupNorm", "BatchNorm", "WeightNorm", "SpectralNorm"):
    for arg in list(inspect.signature(getattr(eqx.nn, name).__init__).parameters)[1:]:
      assert f"| `{arg}` |" in sections[f"equinox {name}"], (name, arg)
