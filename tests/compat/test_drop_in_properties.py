"""Property-based drop-in tests: divnorm's Flax- and equinox-named layers against theirs in
float64.

Hypothesis draws a layer (BatchNorm, LayerNorm, RMSNorm, GroupNorm, InstanceNorm), a rank,
a shape, the layer's axes (reduction, feature, group, batch axes, negative ones included),
its flags, an epsilon, an offset and a mask. divnorm's layer runs in float32 under `jit`, as a
user trains it; the reference is flax's same layer with the same variables, run in float64
(``dtype=param_dtype=float64``), also jitted: flax's definition without flax's float32
rounding. (Jitted, one example compiles one program; run eagerly, every operation compiled
anew for each drawn shape, the three tests took 246 s here instead of 77. flax's own
ported tests run the layers eagerly.)

Compared: the variables' names, shapes and dtypes (a flax checkpoint loads), the output
where the mask keeps it (masked-out outputs are a deliberate difference, docs/compatibility.md:
divnorm's are the bias), BatchNorm's updated running statistics, and the gradients with
respect to the input and every parameter of ``sum(w * y)``, `w` zero where masked out.

Tolerance. The inputs are ``offset + d`` with `d` a permutation of an evenly spaced grid
(spacing ``3.5 / n`` for `n` entries, |d| <= 1.75, |offset| <= 20), so any two entries of
a field differ by at least ``3.5 / n >= 0.03`` and a field's standard deviation is 0 or at
least 0.015: the float32 statistics' relative error is at most a few ``eps32 * |x| / std``
~ 2e-4 (4e-4 with one-pass's square), and 1e-3 of the largest magnitude leaves room without
hiding a wrong axis, group or count (errors of order 1). Epsilon is never 0, where flax's
``0 * rsqrt(0)`` is NaN.

The same layers with a bfloat16 or float16 input, `dtype` or `param_dtype` (at least one
narrow): the variables' and the output's dtypes are flax's, and each output and gradient is
within one unit in the last place of its dtype of flax's float64 definition on the same
rounded input, parameters and cotangent (`_compare_narrow`): divnorm rounds once. flax.nnx
casts the input and the parameters to `dtype` first, flax.linen does not; each reference
does as its API does.

equinox's LayerNorm, RMSNorm, GroupNorm and BatchNorm (both modes) are drawn the same way
and run as equinox runs them: per example under ``vmap(axis_name="batch")``, two training
steps with the state threaded through, then `inference_mode`; equinox's layer with
``dtype=float64`` is the reference. Its LayerNorm, RMSNorm and GroupNorm are drawn again
with a narrow input or `dtype`, as above.
"""

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from divnorm import equinox as dqx
from divnorm import linen as dnn
from divnorm import nnx as dnx

# Derandomized: CI runs the same examples every time; a failure is reproducible.
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
TOL = 1e-3


@st.composite
def some_axes(draw, ndim: int, *, exclude=(), allow_empty: bool = False):
  """A sorted subset of the axes (an int when it has one), some written as negatives."""
  axes = draw(st.lists(st.sampled_from([a for a in range(ndim) if a not in exclude]),
                       min_size=0 if allow_empty else 1, unique=True))
  axes = [a - ndim if draw(st.booleans()) else a for a in axes]
  return axes[0] if len(axes) == 1 and draw(st.booleans()) else tuple(axes)


@st.composite
def layers(draw, api: str):
  """``(name, constructor kwargs, call kwargs, shape, offset, mask seed or None)``."""
  name = draw(st.sampled_from(["BatchNorm", "LayerNorm", "RMSNorm", "GroupNorm",
                               "InstanceNorm"]))
  ndim = draw(st.integers(2, 4))
  shape = draw(st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim))
  kwargs, call = {}, {}
  if name in ("LayerNorm", "RMSNorm"):
    kwargs["reduction_axes"] = draw(some_axes(ndim))
    if api == "linen":  # nnx's num_features is the size of one feature axis
      kwargs["feature_axes"] = draw(some_axes(ndim, allow_empty=True))
  elif name == "GroupNorm":
    shape[-1] = draw(st.sampled_from([2, 4, 6]))
    size = draw(st.sampled_from([g for g in (1, 2, shape[-1]) if shape[-1] % g == 0]))
    if draw(st.booleans()):
      kwargs.update(num_groups=None, group_size=size)
    else:
      kwargs["num_groups"] = shape[-1] // size
    if api == "linen" and draw(st.booleans()):  # flax.nnx's: test_drop_in.py
      kwargs["reduction_axes"] = tuple(sorted(
          {a % ndim for a in np.atleast_1d(draw(some_axes(ndim)))} | {ndim - 1}))
  elif name == "InstanceNorm" and api == "linen":
    kwargs["feature_axes"] = draw(some_axes(ndim, exclude=(0,)))
  elif name == "BatchNorm":
    kwargs.update(axis=draw(st.integers(-ndim, ndim - 1)),
                  momentum=draw(st.sampled_from([0.0, 0.9, 0.99])))
    call["use_running_average"] = draw(st.booleans())
  if name != "BatchNorm":
    kwargs["use_fast_variance"] = draw(st.booleans())
  kwargs["epsilon"] = draw(st.sampled_from([1e-6, 1e-3, 0.5]))
  if name != "RMSNorm":
    kwargs["use_bias"] = draw(st.booleans())
  kwargs["use_scale"] = draw(st.booleans())
  offset = draw(st.sampled_from([0.0, 3.0, -20.0]))
  masked = draw(st.booleans()) and not call.get("use_running_average", False)
  return name, kwargs, call, tuple(shape), offset, draw(st.integers(0, 2**16)) if masked else None


def _data(shape, offset, mask_seed):
  """Entries ``offset + d``, `d` a permuted grid of spacing 3.5/n; a mask keeping ~70%."""
  n = int(np.prod(shape))
  grid = (np.arange(n) - (n - 1) / 2) * (3.5 / n)
  x = (offset + np.random.default_rng(n).permutation(grid)).reshape(shape)
  mask = None if mask_seed is None else np.random.default_rng(mask_seed).uniform(size=shape) < 0.7
  weights = np.random.default_rng(n + 1).normal(size=shape)
  return x, mask, np.where(mask, weights, 0.0) if mask is not None else weights


def _perturbed(tree):
  """Parameters and statistics away from their initial ones and 1s (so each one matters)."""
  def one(a):
    a = np.asarray(a)
    return a + (0.1 + 0.05 * np.arange(a.size).reshape(a.shape)).astype(a.dtype)
  return jax.tree.map(one, tree)


def _assert_close(ours, reference, what):
  ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
  assert ours.shape == reference.shape, what
  scale = max(1.0, float(np.abs(reference).max(initial=0.0)))
  np.testing.assert_allclose(ours, reference, rtol=0, atol=TOL * scale, err_msg=what)


def _compare(ours, reference, mask):
  """`ours` and `reference`: ``(variables' shapes and dtypes, y, stats, grads)`` (numpy)."""
  assert ours[0] == reference[0]
  y, want = ours[1], reference[1]
  where = np.ones(want.shape, bool) if mask is None else np.broadcast_to(mask, want.shape)
  _assert_close(y[where], want[where], "output")
  assert np.isfinite(y).all()
  for (path, got), (_, expected) in zip(*(jax.tree_util.tree_leaves_with_path(t)
                                          for t in (ours[2], reference[2])), strict=True):
    _assert_close(got, expected, f"running statistic {jax.tree_util.keystr(path)}")
  for (path, got), (_, expected) in zip(*(jax.tree_util.tree_leaves_with_path(t)
                                          for t in (ours[3], reference[3])), strict=True):
    assert np.isfinite(got).all(), jax.tree_util.keystr(path)
    if np.isfinite(expected).all():  # flax's is NaN where a field is wholly masked out
      _assert_close(got, expected, f"gradient {jax.tree_util.keystr(path)}")


def _linen(module, variables, x, mask, w, call):
  """``(shapes and dtypes, y, updated batch_stats, grads of sum(w * y))`` as numpy."""
  extra = dict(call, **({} if mask is None else {"mask": jnp.asarray(mask)}))

  def loss(variables, x):
    y, updates = module.apply(variables, x, mutable=["batch_stats"], **extra)
    return jnp.sum(y * w.astype(y.dtype)), (y, updates)

  grads, (y, updates) = jax.jit(jax.grad(loss, (0, 1), has_aux=True))(variables, x)
  return (jax.tree.map(lambda a: (a.shape, a.dtype), variables), np.asarray(y),
          jax.tree.map(np.asarray, dict(updates)), jax.tree.map(np.asarray, grads))


@pytest.mark.slow
@SETTINGS
@given(layers("linen"))
def test_linen_layers_equal_flax_in_float64(case):
  name, kwargs, call, shape, offset, mask_seed = case
  x, mask, w = _data(shape, offset, mask_seed)
  ours_module = getattr(dnn, name)(**kwargs)
  extra = dict(call, **({} if mask is None else {"mask": jnp.asarray(mask)}))
  variables = _perturbed(ours_module.init(jax.random.key(0), jnp.asarray(x, jnp.float32),
                                          **extra))
  ours = _linen(ours_module, jax.tree.map(jnp.asarray, variables), jnp.asarray(x, jnp.float32),
                mask, jnp.asarray(w, jnp.float32), call)
  with jax.enable_x64(True):
    flax_module = getattr(nn, name)(**kwargs, dtype=jnp.float64, param_dtype=jnp.float64)
    reference = _linen(flax_module, jax.tree.map(lambda a: jnp.asarray(a, jnp.float64),
                                                 variables),
                       jnp.asarray(x, jnp.float64), mask, jnp.asarray(w, jnp.float64), call)
  flax_init = getattr(nn, name)(**kwargs).init(jax.random.key(0), x.astype(np.float32), **extra)
  assert ours[0] == jax.tree.map(lambda a: (a.shape, a.dtype), flax_init)  # flax's checkpoint
  _compare(ours, (ours[0], *reference[1:]), mask)


def _nnx(module, x, mask, w, call):
  """As `_linen`, for an nnx layer (its parameters and statistics already set)."""
  extra = dict(call, **({} if mask is None else {"mask": jnp.asarray(mask)}))
  params = nnx.state(module, nnx.Param)
  shapes = jax.tree.map(lambda a: (a.shape, a.dtype), params)

  def loss(module, x):
    y = module(x, **extra)
    return jnp.sum(y * w.astype(y.dtype)), y

  grads, y = nnx.jit(nnx.grad(loss, argnums=(0, 1), has_aux=True))(module, x)
  stats = nnx.state(module, nnx.BatchStat)
  return (shapes, np.asarray(y), jax.tree.map(np.asarray, stats),
          jax.tree.map(np.asarray, (nnx.state(grads[0], nnx.Param), grads[1])))


def _nnx_layer(lib, name, kwargs, shape, values, **dtypes):
  """`lib`'s layer for `shape`, its parameters and statistics set to `values` (numpy)."""
  features = shape[kwargs["axis"]] if name == "BatchNorm" else shape[-1]
  layer = getattr(lib, name)(features, **kwargs, **dtypes, rngs=nnx.Rngs(0))
  if values is not None:
    dtype = dtypes.get("param_dtype", jnp.float32)
    nnx.update(layer, jax.tree.map(lambda a: jnp.asarray(a, dtype), values))
  return layer


@pytest.mark.slow
@SETTINGS
@given(layers("nnx"))
def test_nnx_layers_equal_flax_in_float64(case):
  name, kwargs, call, shape, offset, mask_seed = case
  x, mask, w = _data(shape, offset, mask_seed)
  theirs = _nnx_layer(nnx, name, kwargs, shape, None)
  values = _perturbed(nnx.state(theirs, nnx.Any(nnx.Param, nnx.BatchStat)))
  ours = _nnx(_nnx_layer(dnx, name, kwargs, shape, values), jnp.asarray(x, jnp.float32), mask,
              jnp.asarray(w, jnp.float32), call)
  assert ours[0] == jax.tree.map(lambda a: (a.shape, a.dtype), nnx.state(theirs, nnx.Param))
  with jax.enable_x64(True):
    reference = _nnx(_nnx_layer(nnx, name, kwargs, shape, values, dtype=jnp.float64,
                                param_dtype=jnp.float64),
                     jnp.asarray(x, jnp.float64), mask, jnp.asarray(w, jnp.float64), call)
  _compare(ours, (ours[0], *reference[1:]), mask)


@st.composite
def equinox_layers(draw, names=("LayerNorm", "RMSNorm", "GroupNorm", "BatchNorm")):
  """``(name, args, kwargs, per-example shape, offset)`` for `eqx.nn`'s normalizers."""
  name = draw(st.sampled_from(names))
  kwargs = {"eps": draw(st.sampled_from([1e-5, 1e-3, 0.5]))}
  if name in ("LayerNorm", "RMSNorm"):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    args = (shape if len(shape) > 1 or draw(st.booleans()) else shape[0],)
    kwargs.update(use_weight=draw(st.booleans()), use_bias=draw(st.booleans()))
  else:
    channels = draw(st.sampled_from([2, 4, 6]))
    shape = (channels, *draw(st.lists(st.integers(1, 3), max_size=2)))
    kwargs["channelwise_affine"] = draw(st.booleans())
    if name == "GroupNorm":
      args = (draw(st.sampled_from([g for g in (1, 2, channels) if channels % g == 0])),
              channels)
    else:
      args = (channels, "batch")
      kwargs.update(mode=draw(st.sampled_from(["ema", "batch"])),
                    momentum=draw(st.sampled_from([0.0, 0.9, 0.99])))
  return name, args, kwargs, shape, draw(st.sampled_from([0.0, 3.0, -20.0]))


def _with_arrays(module, arrays):
  """`module` with its float arrays replaced by `arrays`, in order (a checkpoint restore)."""
  leaves, tree = jax.tree.flatten(module)
  arrays = iter(arrays)
  return jax.tree.unflatten(tree, [next(arrays) if eqx.is_inexact_array(a) else a
                                   for a in leaves])


def _equinox(layer, state, x, w):
  """Two training steps under ``vmap(axis_name="batch")`` (outputs, gradients with respect
  to the input and the arrays of `layer` at the second), then inference: numpy."""
  params, static = eqx.partition(layer, eqx.is_inexact_array)

  def loss(params, x, state, inference=False):
    layer = eqx.combine(params, static)
    if inference:
      layer = eqx.nn.inference_mode(layer)
    y, state = jax.vmap(layer, (0, None), (0, None), axis_name="batch")(x, state)
    return jnp.sum(y * w.astype(y.dtype)), (y, state)

  step = jax.jit(jax.grad(loss, (0, 1), has_aux=True))
  first, (_, state) = step(params, x, state)
  grads, (y, state) = step(params, x, state)
  _, (inferred, _) = jax.jit(loss, static_argnums=3)(params, x, state, True)
  return [np.asarray(a) for a in (y, inferred, *jax.tree.leaves((first, grads, state)))]


@pytest.mark.slow
@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(equinox_layers())
def test_equinox_layers_equal_equinox_in_float64(case):
  name, args, kwargs, shape, offset = case
  x, _, w = _data((4, *shape), offset, None)
  ours, state = eqx.nn.make_with_state(getattr(dqx, name))(*args, **kwargs)
  theirs32, _ = eqx.nn.make_with_state(getattr(eqx.nn, name))(*args, **kwargs)
  arrays = [jnp.asarray(a) for a in _perturbed(jax.tree.leaves(eqx.filter(
    ours, eqx.is_inexact_array)))]
  assert [(a.shape, a.dtype) for a in arrays] == [  # equinox's checkpoint loads
    (a.shape, a.dtype) for a in jax.tree.leaves(eqx.filter(theirs32, eqx.is_inexact_array))]
  ours = _with_arrays(ours, arrays)
  got = _equinox(ours, state, jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32))
  with jax.enable_x64(True):
    theirs, state = eqx.nn.make_with_state(getattr(eqx.nn, name))(*args, **kwargs,
                                                                   dtype=jnp.float64)
    theirs = _with_arrays(theirs, [jnp.asarray(a, jnp.float64) for a in arrays])
    want = _equinox(theirs, state, jnp.asarray(x, jnp.float64), jnp.asarray(w, jnp.float64))
  assert len(got) == len(want)
  for i, (a, b) in enumerate(zip(got, want, strict=True)):
    _assert_close(a, b, f"output, inference output, gradients and state: entry {i}")


@st.composite
def narrow_dtypes(draw):
  """``(input dtype, dtype, param_dtype)``, at least one of them bfloat16 or float16."""
  names = [None, "float32", "bfloat16", "float16"]
  x, dtype, param = (draw(st.sampled_from(names[1:])), draw(st.sampled_from(names)),
                     draw(st.sampled_from(names[1:3])))
  if {x, dtype, param} <= {None, "float32"}:
    x = draw(st.sampled_from(names[2:]))
  return tuple(None if d is None else jnp.dtype(d) for d in (x, dtype, param))


def _compare_narrow(ours, reference, mask, gradients_in=None):
  """`_compare` for outputs and gradients in their own (narrow) dtypes: within one unit in
  the last place of each one's dtype (or of `gradients_in`, where the gradients come back
  through a cast to it) of its largest magnitude, or `TOL` where that is larger (float32).
  Rounding the float32 result once costs half a unit; the float32 computation's own error,
  at most 4e-4 (the file's bound above), is 0.05 units of bfloat16 and 0.4 of float16.
  flax's own roundings in `dtype` (its affine step) are not in the reference: its float64
  definition is."""
  where = np.ones(ours[1].shape, bool) if mask is None else np.broadcast_to(mask, ours[1].shape)
  pairs = {"output": (ours[1][where], reference[1][where])}
  for label, t in (("running statistic", 2), ("gradient", 3)):
    for (path, got), (_, want) in zip(*(jax.tree_util.tree_leaves_with_path(r[t])
                                        for r in (ours, reference)), strict=True):
      pairs[f"{label} {jax.tree_util.keystr(path)}"] = (got, want)
  for what, (got, want) in pairs.items():
    got = np.asarray(got.astype(np.float64))
    assert np.isfinite(got).all(), what
    if np.isfinite(want).all():  # flax's is NaN where a field is wholly masked out
      scale = max(1.0, float(np.abs(want).max(initial=0.0)))
      error = float(np.abs(got - want).max(initial=0.0)) / scale
      dtype = pairs[what][0].dtype
      if what.startswith("gradient") and gradients_in is not None:
        dtype = max(dtype, np.dtype(gradients_in), key=lambda d: jnp.finfo(d).eps)
      tolerance = max(TOL, float(jnp.finfo(dtype).eps))
      assert error <= tolerance, (what, dtype, error)


@pytest.mark.slow
@SETTINGS
@given(layers("linen"), narrow_dtypes())
def test_linen_layers_in_narrow_dtypes_equal_flax_in_float64(case, dtypes):
  """As `test_linen_layers_equal_flax_in_float64`, with bfloat16 or float16 inputs, `dtype`
  or `param_dtype`: the variables' and the output's dtypes are flax's, and the outputs and
  gradients flax's float64 definition of the same rounded input, parameters and cotangent,
  rounded once (`_compare_narrow`)."""
  name, kwargs, call, shape, offset, mask_seed = case
  x, mask, w = _data(shape, offset, mask_seed)
  x = jnp.asarray(x, dtypes[0])
  extra = dict(call, **({} if mask is None else {"mask": jnp.asarray(mask)}))
  narrow = dict(kwargs, dtype=dtypes[1], param_dtype=dtypes[2])
  with jax.numpy_dtype_promotion("standard"):  # flax's internals promote implicitly
    flax_y, flax_variables = jax.eval_shape(
        lambda x: getattr(nn, name)(**narrow).init_with_output(jax.random.key(0), x, **extra), x)
  ours_module = getattr(dnn, name)(**narrow)
  variables = _perturbed(ours_module.init(jax.random.key(0), x, **extra))
  assert jax.tree.map(lambda a: (a.shape, a.dtype), variables) == jax.tree.map(
      lambda a: (a.shape, a.dtype), flax_variables)  # flax's checkpoint loads
  w = jnp.asarray(w, flax_y.dtype)  # the cotangent as the output's dtype holds it
  ours = _linen(ours_module, jax.tree.map(jnp.asarray, variables), x, mask, w, call)
  assert ours[1].dtype == flax_y.dtype
  with jax.enable_x64(True):
    flax_module = getattr(nn, name)(**kwargs, dtype=jnp.float64, param_dtype=jnp.float64)
    reference = _linen(flax_module, jax.tree.map(lambda a: jnp.asarray(a, jnp.float64),
                                                 variables),
                       jnp.asarray(x, jnp.float64), mask, jnp.asarray(w, jnp.float64), call)
  _compare_narrow(ours, reference, mask)


@pytest.mark.slow
@SETTINGS
@given(layers("nnx"), narrow_dtypes())
def test_nnx_layers_in_narrow_dtypes_equal_flax_in_float64(case, dtypes):
  """`test_linen_layers_in_narrow_dtypes_equal_flax_in_float64` for the nnx layers. flax.nnx's
  layers first cast the input and the parameters (and BatchNorm's running statistics where
  they normalize) to `dtype` (`promote_dtype`), flax.linen's do not: the reference reads
  them so rounded, and the gradients come back through that cast, in `dtype`."""
  name, kwargs, call, shape, offset, mask_seed = case
  x, mask, w = _data(shape, offset, mask_seed)
  x = jnp.asarray(x, dtypes[0])
  extra = dict(call, **({} if mask is None else {"mask": jnp.asarray(mask)}))
  narrow = dict(dtype=dtypes[1], param_dtype=dtypes[2])
  theirs = _nnx_layer(nnx, name, kwargs, shape, None, **narrow)
  with jax.numpy_dtype_promotion("standard"):  # flax's internals promote implicitly
    flax_dtype = theirs(x, **extra).dtype
  params = _perturbed(nnx.state(theirs, nnx.Param))
  stats = _perturbed(nnx.state(theirs, nnx.BatchStat))
  ours_layer = _nnx_layer(dnx, name, kwargs, shape, None, **narrow)
  assert jax.tree.map(lambda a: (a.shape, a.dtype), nnx.state(ours_layer)) == jax.tree.map(
      lambda a: (a.shape, a.dtype), nnx.state(_nnx_layer(nnx, name, kwargs, shape, None,
                                                         **narrow)))
  nnx.update(ours_layer, params, stats)
  w = jnp.asarray(w, flax_dtype)
  ours = _nnx(ours_layer, x, mask, w, call)
  assert ours[1].dtype == flax_dtype

  def cast(a, used=True):  # flax.nnx's `promote_dtype`, then float64
    return jnp.asarray(jnp.asarray(a, dtypes[1]) if used and dtypes[1] else a, jnp.float64)

  with jax.enable_x64(True):
    reference = _nnx_layer(nnx, name, kwargs, shape, None, dtype=jnp.float64,
                           param_dtype=jnp.float64)
    nnx.update(reference, jax.tree.map(cast, params), jax.tree.map(
        lambda a: cast(a, call.get("use_running_average", False)), stats))
    reference = _nnx(reference, cast(x), mask, jnp.asarray(w, jnp.float64), call)
  _compare_narrow(ours, reference, mask, gradients_in=dtypes[1])


@pytest.mark.slow
@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(equinox_layers(names=("LayerNorm", "RMSNorm", "GroupNorm")), narrow_dtypes())
def test_equinox_layers_in_narrow_dtypes_equal_equinox_in_float64(case, dtypes):
  """`test_equinox_layers_equal_equinox_in_float64` with a bfloat16 or float16 input or
  `dtype` (the parameters'): the parameters' and the output's dtypes are equinox's, and the
  outputs and gradients its float64 definition of the same rounded input, parameters and
  cotangent within one unit in the last place of their dtypes (`_compare_narrow`'s bound).
  (equinox's BatchNorm fails on a narrower input or `dtype`: ``lax.select`` of float32 and
  the input's dtype, or a state of another dtype; divnorm's runs.)"""
  name, args, kwargs, shape, offset = case
  x_dtype, dtype = dtypes[0], dtypes[1] or dtypes[2]
  x, _, w = _data((4, *shape), offset, None)
  x = jnp.asarray(x, x_dtype)
  ours, state = eqx.nn.make_with_state(getattr(dqx, name))(*args, **kwargs, dtype=dtype)
  theirs, _ = eqx.nn.make_with_state(getattr(eqx.nn, name))(*args, **kwargs, dtype=dtype)
  arrays = [jnp.asarray(a) for a in _perturbed(jax.tree.leaves(eqx.filter(
    ours, eqx.is_inexact_array)))]
  assert [(a.shape, a.dtype) for a in arrays] == [  # equinox's checkpoint loads
    (a.shape, a.dtype) for a in jax.tree.leaves(eqx.filter(theirs, eqx.is_inexact_array))]
  want_dtype = jax.eval_shape(jax.vmap(theirs), x).dtype
  w = jnp.asarray(w, want_dtype)
  got = _equinox(_with_arrays(ours, arrays), state, x, w)
  assert got[0].dtype == want_dtype
  assert [a.dtype for a in got[2:]] == [*(a.dtype for a in arrays), x.dtype] * 2  # gradients
  with jax.enable_x64(True):
    theirs, state = eqx.nn.make_with_state(getattr(eqx.nn, name))(*args, **kwargs,
                                                                   dtype=jnp.float64)
    theirs = _with_arrays(theirs, [jnp.asarray(a, jnp.float64) for a in arrays])
    want = _equinox(theirs, state, jnp.asarray(x, jnp.float64), jnp.asarray(w, jnp.float64))
  for i, (a, b) in enumerate(zip(got, want, strict=True)):
    scale = max(1.0, float(np.abs(b).max(initial=0.0)))
    error = float(np.abs(a.astype(np.float64) - b).max(initial=0.0)) / scale
    assert error <= max(TOL, float(jnp.finfo(a.dtype).eps)), (i, a.dtype, error)
