"""Weighted fields: kernels, weighted sums and means, exact borders and masks, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import divnorm
from divnorm._src import kernels as K
from divnorm._src.core import normalize
from divnorm._src.nonnegative import nonnegative, nonnegative_init
from divnorm._src.reductions import plain_field_mean
from divnorm._src.weighted import kernel_sum
from divnorm._src.weighted_fields import (
  WeightedField,
  resolve_weighted_field,
  weighted_mean,
  weighted_sum,
)
from tests import reference_weighted as R

RNG = np.random.default_rng(0)
SHAPE = (1, 5, 6, 4)


def _x(shape=SHAPE, offset=0.0):
  return np.random.default_rng(1).normal(size=shape) + offset


def _spec_ref(spec, shape):
  """The reference's kernel dict for a library spec (mixings first)."""
  ref = {}
  ndim = len(shape)
  items = sorted(spec.items(), key=lambda kv: not isinstance(kv[1], K.Mixing))
  for key, value in items:
    axes = tuple(a % ndim for a in (key if isinstance(key, tuple) else (key,)))
    if value is None:
      ref[axes] = ("whole",)
    elif isinstance(value, int):
      ref[axes] = ("kernel", np.ones(value), 1, None)
    elif isinstance(value, K.Mixing):
      ref[axes] = ("mixing", np.asarray(value.matrix))
    else:
      along = None if value.along is None else value.along % ndim
      ref[axes] = ("kernel", np.asarray(value.weights), value.dilation, along)
  return ref


SPECS = {
  "gauss_hw": {1: K.gaussian(5, sigma=1.0), 2: K.gaussian(3, sigma=0.7), 3: None},
  "exp_channels": {3: K.exponential(3, scale=1.5)},
  "dilated_surround_2d": {(1, 2): K.center_surround(3, ndim=2, dilation=2)},
  "box_and_kernel": {1: 3, 2: K.kernel(np.array([0.5, 2.0, 1.0])), 3: None},
  "per_channel": {(1, 2): K.kernel(RNG.uniform(0, 1, (3, 3, 4)), along=-1)},
  "mixing": {3: K.mixing(RNG.uniform(0, 1, (4, 4)))},
  "mixing_and_kernel": {3: K.mixing(RNG.uniform(0, 1, (4, 4))),
                        1: K.kernel(RNG.uniform(0, 1, (3, 4)), along=3)},
}


@pytest.mark.parametrize("name", SPECS)
@pytest.mark.parametrize("border", ["valid", "zeros"])
def test_weighted_mean_against_enumeration(x64, name, border):
  spec = SPECS[name]
  x = _x()
  field = resolve_weighted_field(spec, x.shape)
  ref = R.weighted_pool(x, _spec_ref(spec, x.shape), border=border)
  np.testing.assert_allclose(weighted_mean(jnp.asarray(x), field, border=border), ref,
                             rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", SPECS)
def test_weighted_sum_against_enumeration(x64, name):
  spec = SPECS[name]
  x = _x()
  field = resolve_weighted_field(spec, x.shape)
  ref = R.weighted_pool(x, _spec_ref(spec, x.shape), mean=False)
  np.testing.assert_allclose(weighted_sum(jnp.asarray(x), field), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("border", ["valid", "zeros"])
def test_mask_is_exact_and_selects(x64, border):
  """Masked-out entries (NaN here) count neither in the sum nor in the weight."""
  spec = {1: K.gaussian(5, sigma=1.2), (2,): K.kernel(np.array([1.0, 0.5, 0.25])), 3: None}
  x = _x()
  mask = np.random.default_rng(2).uniform(size=x.shape) > 0.3
  poisoned = np.where(mask, x, np.nan)
  field = resolve_weighted_field(spec, x.shape)
  got = weighted_mean(jnp.asarray(poisoned), field, border=border, mask=jnp.asarray(mask))
  ref = R.weighted_pool(x, _spec_ref(spec, x.shape), border=border, mask=mask)
  assert np.all(np.isfinite(got))
  np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("border", ["valid", "zeros"])
def test_public_field_mean_takes_every_field_normalize_takes(x64, border):
  """`divnorm.field_mean` of a weighted spec is the enumerated weighted mean; masked-out
  entries (NaN) enter neither its sum nor its weight; jit agrees; bfloat16 stays bfloat16."""
  x = _x()
  mask = np.random.default_rng(3).uniform(size=x.shape) > 0.3
  for name, spec in SPECS.items():
    ref = R.weighted_pool(x, _spec_ref(spec, x.shape), border=border)
    got = divnorm.field_mean(jnp.asarray(x), spec, border=border)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12, err_msg=name)
    ref = R.weighted_pool(x, _spec_ref(spec, x.shape), border=border, mask=mask)
    got = jax.jit(lambda t, m, spec=spec: divnorm.field_mean(t, spec, border=border, mask=m))(
        jnp.asarray(np.where(mask, x, np.nan)), jnp.asarray(mask))
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12, err_msg=name)
  spec = SPECS["gauss_hw"]
  half = divnorm.field_mean(jnp.asarray(x, jnp.bfloat16), spec, border=border)
  assert half.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(half, np.float64), R.weighted_pool(
    np.asarray(jnp.asarray(x, jnp.bfloat16), np.float64), _spec_ref(spec, x.shape),
    border=border), atol=2e-2)


def test_a_position_whose_summation_field_is_empty_is_not_centered(x64):
  """A centre-surround summation field with its one neighbour masked out is empty there:
  ``E_A[x] = 0`` (an empty field's statistics are 0), so ``v = x``, whatever lies outside
  the field (once it was the row's mean). A surround past the border at every position is
  known before any data: an error (`tests/test_arguments.py`), as a kernel of zeros."""
  cs = K.center_surround(3)
  mask = np.array([[True, False, True, True, True]])
  x = np.array([[1.0, 2.0, 4.0, 8.0, 16.0]])
  vs = [normalize(jnp.asarray(x.copy()), {1: cs}, {1: None}, sigma=1.0, mask=mask,
                  return_centered=True)[1] for x in (x, np.where(np.arange(5) == 4, 1e3, x))]
  np.testing.assert_allclose(vs[0][0, 0], 1.0)
  np.testing.assert_allclose(vs[1][0, 0], 1.0)
  np.testing.assert_allclose(vs[0][0, 2:], vs[0][0, 2:])  # the others keep their fields
  with pytest.raises(ValueError, match="^summation: with border='valid'"):
    normalize(jnp.asarray([[1.0, 2.0, 6.0]]), {1: K.center_surround(3, dilation=5)},
              {1: None}, sigma=1.0)


def test_valid_border_is_a_mean_of_what_exists(x64):
  """A constant input has a weighted mean equal to that constant everywhere under "valid"
  (the border divides by the weight that exists), and shrinks toward 0 under "zeros"."""
  x = np.full((1, 7, 3), 4.0)
  field = resolve_weighted_field({1: K.exponential(5, scale=1.0)}, x.shape)
  np.testing.assert_allclose(weighted_mean(jnp.asarray(x), field), 4.0, rtol=1e-14)
  zeros = np.asarray(weighted_mean(jnp.asarray(x), field, border="zeros"))
  assert zeros[0, 0, 0] < 4.0 and np.isclose(zeros[0, 3, 0], 4.0)


def test_box_kernel_is_the_box_fast_path(x64):
  x = _x()
  field = resolve_weighted_field({1: K.box(5), 2: 3, 3: None}, x.shape)
  assert field.ops == () and field.base.windows == ((1, 5), (2, 3))
  np.testing.assert_allclose(
    weighted_mean(jnp.asarray(x), field), plain_field_mean(jnp.asarray(x), field.base),
    rtol=1e-14)
  # A very wide Gaussian is a box.
  wide = resolve_weighted_field({1: K.gaussian(5, sigma=1e6), 2: 3, 3: None}, x.shape)
  np.testing.assert_allclose(weighted_mean(jnp.asarray(x), wide), weighted_mean(
    jnp.asarray(x), field), rtol=1e-9)


@pytest.mark.parametrize("axis", [1, 3])
@pytest.mark.parametrize("dilation", [1, 2])
def test_kernel_sum_forms_agree(x64, axis, dilation):
  """The banded matmul (minor axis) and the shifted slices are the same sum."""
  x = _x((3, 4, 5, 9))
  k = K.kernel(np.array([0.1, 0.7, 1.0, 0.3, 0.2]), dilation=dilation)
  ref = R.weighted_pool(x, {(axis,): ("kernel", k.weights, dilation, None)}, mean=False)
  np.testing.assert_allclose(kernel_sum(jnp.asarray(x), (axis,), k), ref, rtol=1e-12,
                             atol=1e-12)
  learned = K.Kernel(jnp.asarray(k.weights), dilation)
  np.testing.assert_allclose(kernel_sum(jnp.asarray(x), (axis,), learned), ref, rtol=1e-12,
                             atol=1e-12)


def test_kernel_values():
  np.testing.assert_allclose(K.gaussian(5, sigma=2.0).weights, np.exp(-np.array(
    [4, 1, 0, 1, 4]) / 8.0))
  np.testing.assert_allclose(K.exponential(3, scale=2.0).weights, np.exp(-np.array(
    [1, 0, 1]) / 2.0))
  assert K.miller_width(2.0) == 17 and K.miller_width(1.3) == 11 and K.miller_width(5) == 41
  assert K.exponential(scale=2.0).window == (17,)
  ring = K.center_surround(3, ndim=2, dilation=4)
  np.testing.assert_array_equal(ring.weights, [[1, 1, 1], [1, 0, 1], [1, 1, 1]])
  assert ring.dilation == 4 and len(K.taps(ring)) == 8


def test_errors():
  with pytest.raises(ValueError, match="odd"):
    K.gaussian(4, sigma=1.0)
  with pytest.raises(ValueError, match="odd"):
    K.kernel(np.ones((3, 4)))
  with pytest.raises(ValueError, match=">= 0"):
    K.kernel(np.array([1.0, -0.1, 1.0]))
  with pytest.raises(ValueError, match="finite"):
    K.kernel(np.array([1.0, np.nan, 1.0]))
  with pytest.raises(ValueError, match="sigma"):
    K.gaussian(3, sigma=0.0)
  with pytest.raises(ValueError, match="no surround"):
    K.center_surround(1)
  with pytest.raises(ValueError, match="square"):
    K.mixing(np.ones((2, 3)))
  with pytest.raises(ValueError, match=">= 0"):
    K.mixing(-np.eye(3))
  with pytest.raises(ValueError, match="dilation"):
    K.box(3, dilation=0)
  with pytest.raises(ValueError, match="2-D window"):
    resolve_weighted_field({1: K.center_surround(3, ndim=2)}, SHAPE)
  with pytest.raises(ValueError, match=r"\(4, 4\) matrix"):
    resolve_weighted_field({3: K.mixing(np.eye(3))}, SHAPE)
  with pytest.raises(ValueError, match="weights of shape"):
    resolve_weighted_field({1: K.kernel(np.ones((3, 5)), along=3)}, SHAPE)
  with pytest.raises(ValueError, match="reduces whole"):
    resolve_weighted_field({1: K.kernel(np.ones((3, 4)), along=3), 3: None}, SHAPE)
  with pytest.raises(ValueError, match="twice"):
    resolve_weighted_field({1: 3, (1, 2): K.center_surround(3, ndim=2)}, SHAPE)
  with pytest.raises(TypeError, match="tuple key"):
    resolve_weighted_field({(1, 2): 3}, SHAPE)
  with pytest.raises(ValueError, match="out of range"):
    resolve_weighted_field({7: K.gaussian(3, sigma=1.0)}, SHAPE)


def test_reparameterization_matches_tensorflow_compression(x64):
  values = np.array([-1.0, 0.0, 1e-7, 0.1, 2.0])
  for minimum in (0.0, 1e-6):
    variable, value = R.tfc_gdn_parameter(values, minimum=minimum)
    np.testing.assert_allclose(nonnegative_init(values, dtype=jnp.float64), variable,
                               rtol=1e-15)
    np.testing.assert_allclose(nonnegative(jnp.asarray(variable), minimum=minimum), value,
                               rtol=1e-12, atol=1e-20)
  raw = jnp.linspace(-3.0, 3.0, 61)
  assert bool(jnp.all(nonnegative(raw) >= 0.0))
  assert bool(jnp.all(nonnegative(raw, minimum=1e-6) >= 1e-6 * (1 - 1e-9)))


def test_lower_bound_gradient_passes_towards_the_bound():
  """tensorflow_compression's "identity_if_towards": below the bound, a gradient that a
  descent step would use to raise the raw value passes; one that would lower it does not."""
  raw = jnp.asarray([-1.0, -1.0, 0.5], jnp.float32)
  up = jax.grad(lambda r: -jnp.sum(nonnegative(r) * jnp.asarray([1.0, 0.0, 1.0])))(raw)
  down = jax.grad(lambda r: jnp.sum(nonnegative(r)))(raw)
  bound = 2.0**-18
  np.testing.assert_allclose(up, [-2 * bound, 0.0, -1.0], rtol=1e-6)
  np.testing.assert_allclose(down, [0.0, 0.0, 1.0], rtol=1e-6)


@pytest.mark.parametrize("order", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_gradients_of_learned_kernels(x64, order):
  x = jnp.asarray(_x((1, 4, 3, 3)))
  mask = jnp.asarray(np.random.default_rng(3).uniform(size=x.shape) > 0.2)

  def f(raw_h, raw_c, raw_m):
    spec = {1: K.learned_kernel(raw_h), (2,): K.learned_kernel(raw_c[:, None] * jnp.ones(
      (1, 3)), along=3), 3: K.learned_mixing(raw_m)}
    field = resolve_weighted_field(spec, x.shape)
    return weighted_mean(x * x, field, mask=mask)

  args = (jnp.asarray([0.5, 0.9, 1.1]), jnp.asarray([0.3, 1.0, 0.6]),
          jnp.asarray(np.random.default_rng(4).uniform(0.3, 1.0, (3, 3))))
  check_grads(jax.jit(f), args, order=order, modes=["rev"])


@pytest.mark.slow
@pytest.mark.xfail(raises=ValueError, strict=jax.__version__ == "0.10.2",
                   reason="JAX 0.10.2's scan transpose hands the custom VJP misordered "
                          "residuals on the second reverse pass (kernels' docstring)")
def test_a_learned_kernel_s_second_reverse_pass_inside_scan():
  """The limit `divnorm.kernels` states, strict on the JAX it was found with (another error
  fails the test on any JAX; a later one that passes reports it, and the docstring's limit
  is then checked again). Without the scan, the same product is taken."""
  x = jax.random.normal(jax.random.key(1), (2, 6, 7, 4))
  raw = jax.random.normal(jax.random.key(5), (3, 3))

  def layer(c, r):
    return normalize(c, {(1, 2): K.learned_kernel(r), 3: None}, sigma=0.3)

  def hvp(loss):
    return jax.grad(lambda r: jnp.vdot(jax.grad(loss)(r), jnp.ones_like(r)))(raw)

  assert np.isfinite(hvp(lambda r: jnp.sum(jnp.tanh(layer(x, r))))).all()
  hvp(lambda r: jnp.sum(jnp.tanh(jax.lax.scan(lambda c, r: (layer(c, r), None), x,
                                              r[None])[0])))


def test_jit_and_vmap_agree():
  x = jnp.asarray(_x(), jnp.float32)
  spec = {1: K.gaussian(5, sigma=1.0), 2: K.exponential(3, scale=1.0)}
  eager = weighted_mean(x, resolve_weighted_field(spec, x.shape))
  jitted = jax.jit(lambda x: weighted_mean(x, resolve_weighted_field(spec, x.shape)))(x)
  np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-6)
  per = jax.vmap(lambda e: weighted_mean(e, resolve_weighted_field(
    {0: K.gaussian(5, sigma=1.0), 1: K.exponential(3, scale=1.0)}, e.shape)))(x)
  np.testing.assert_allclose(per, eager, rtol=1e-6, atol=1e-6)


def test_resolved_field_is_reused():
  field = resolve_weighted_field({1: K.gaussian(3, sigma=1.0)}, SHAPE)
  assert isinstance(field, WeightedField)
  assert resolve_weighted_field(field, SHAPE) is field


@pytest.mark.parametrize("op", ["banded kernel", "mixing last", "mixing inner"])
def test_weighted_sums_ask_for_full_float32_products(op):
  """Kernel and mixing sums are matmuls: without HIGHEST precision, GPUs and TPUs may run
  float32 products in TF32 or bf16 passes (10 and 8 bits of mantissa)."""
  import divnorm

  x = jnp.ones((2, 8, 8, 6))
  fields = {"banded kernel": {1: None, 3: K.gaussian(3, sigma=1.0)},
            "mixing last": {3: K.mixing(np.eye(6) * 0.5 + 0.1), 1: None},
            "mixing inner": {1: K.mixing(np.eye(8) * 0.5 + 0.1), 3: None}}[op]
  text = jax.jit(lambda x: divnorm.normalize(x, fields)).lower(x).as_text()
  dots = [line for line in text.splitlines() if "dot_general" in line]
  assert dots and all("precision = [HIGHEST, HIGHEST]" in line for line in dots)


@pytest.mark.slow
def test_a_traced_kernel_takes_second_order_reverse_mode_and_names_forward_mode(x64):
  """A traced kernel's weight gradient is a custom VJP (one pass for all taps): its Hessian
  is ``jacrev(jacrev(f))``, equal to the forward-over-reverse Hessian of the same kernel as
  NumPy weights, and so is a Hessian-vector product by reverse over reverse. Forward mode
  stops at JAX's custom_vjp error, as `divnorm.kernels`' docstring says."""
  x = jnp.asarray(_x((1, 5, 5, 2)))
  w = np.random.default_rng(2).uniform(0.2, 1.0, (3, 3))

  def loss(weights):
    return lambda x: jnp.sum(jnp.sin(normalize(x, {(1, 2): K.kernel(weights)}, sigma=0.5)))

  fixed, traced = loss(w), loss(jnp.asarray(w))
  np.testing.assert_allclose(jax.jacrev(jax.jacrev(traced))(x), jax.hessian(fixed)(x),
                             rtol=1e-12, atol=1e-12)
  v = jnp.asarray(_x((1, 5, 5, 2), offset=1.0))
  np.testing.assert_allclose(jax.grad(lambda x: jnp.vdot(jax.grad(traced)(x), v))(x),
                             jax.jvp(jax.grad(fixed), (x,), (v,))[1], rtol=1e-12, atol=1e-12)
  with pytest.raises(TypeError, match="forward-mode autodiff"):
    jax.jvp(traced, (x,), (v,))
