# Copyright 2019 DeepMind Technologies Limited. All Rights Reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
# ==============================================================================
# Ported from google-deepmind/dm-haiku v0.0.17 (the wheel's haiku/_src): the tests of
# layer_norm_test.py, rms_norm_test.py, group_norm_test.py, batch_norm_test.py and
# spectral_norm_test.py, one after the other. Changed: the import lines only (`layer_norm`,
# `rms_norm`, `group_norm`, `batch_norm` and `spectral_norm` are haiku's modules with
# divnorm's layers, see _haiku_with_divnorm.py), and
# each file's `if __name__ == "__main__"` block is left out (pytest runs them).
"""haiku's normalization tests, run against divnorm.haiku."""

import functools
import itertools

from absl.testing import absltest
from absl.testing import parameterized
from haiku._src import base
from haiku._src import basic
from haiku._src import initializers
from haiku._src import test_utils
from haiku._src import transform
import jax
import jax.numpy as jnp
import jax.random as random
import numpy as np

from tests.compat._haiku_with_divnorm import batch_norm
from tests.compat._haiku_with_divnorm import group_norm
from tests.compat._haiku_with_divnorm import layer_norm
from tests.compat._haiku_with_divnorm import rms_norm
from tests.compat._haiku_with_divnorm import spectral_norm

# ---- layer_norm_test.py ------------------------------------------------------


def with_param_axis_error(f):
  @functools.wraps(f)
  def wrapper(*a, **k):
    old = layer_norm.ERROR_IF_PARAM_AXIS_NOT_EXPLICIT
    layer_norm.ERROR_IF_PARAM_AXIS_NOT_EXPLICIT = True  # pyrefly: ignore[bad-assignment]
    try:
      return f(*a, **k)
    finally:
      layer_norm.ERROR_IF_PARAM_AXIS_NOT_EXPLICIT = old
  return wrapper


class LayerNormTest(parameterized.TestCase):

  @test_utils.transform_and_run
  def test_connection(self):
    data = jnp.zeros([2, 3, 4, 5])
    normalize = (
        lambda a: layer_norm.LayerNorm(a, True, True, param_axis=-1)(data))

    normalize(0)
    normalize(1)
    normalize(2)
    normalize(3)
    normalize(slice(1, None))
    normalize(slice(2, None))
    normalize(slice(1, -1))

  @parameterized.parameters(itertools.product([True, False], repeat=3))
  def test_bf16(self, create_scale, create_offset, use_fast_variance):
    """For all configurations, ensure bf16 outputs from bf16 inputs."""

    def f(x):
      ln = layer_norm.LayerNorm(
          axis=-1,
          create_scale=create_scale,
          create_offset=create_offset,
          use_fast_variance=use_fast_variance,
          param_axis=-1)
      return ln(x)

    fwd = transform.transform(f)
    data = jnp.zeros([2, 3, 4, 5], dtype=jnp.bfloat16)
    params = fwd.init(jax.random.PRNGKey(428), data)
    bf16_params = jax.tree.map(lambda t: t.astype(jnp.bfloat16), params)
    self.assertEqual(fwd.apply(bf16_params, None, data).dtype, jnp.bfloat16)

  @parameterized.parameters(True, False)
  @test_utils.transform_and_run
  def test_simple_case(self, use_fast_variance):
    layer = layer_norm.LayerNorm([1, 2],
                                 create_scale=False,
                                 create_offset=False,
                                 use_fast_variance=use_fast_variance,
                                 param_axis=-1)
    inputs = np.ones([2, 3, 3, 5])

    outputs = layer(inputs)
    for x in np.nditer(outputs):
      self.assertEqual(x, 0.0)

  @parameterized.parameters(True, False)
  @test_utils.transform_and_run
  def test_simple_case_var(self, use_fast_variance):
    layer = layer_norm.LayerNorm([1, 2],
                                 create_scale=True,
                                 create_offset=True,
                                 scale_init=initializers.Constant(0.5),
                                 offset_init=initializers.Constant(2.0),
                                 use_fast_variance=use_fast_variance,
                                 param_axis=-1)

    inputs = np.ones([2, 3, 3, 5])

    outputs = layer(inputs)
    for x in np.nditer(outputs):
      self.assertEqual(x, 2.0)

  @test_utils.transform_and_run
  def test_simple_case_tensor(self):
    layer = layer_norm.LayerNorm([1, 2],
                                 create_scale=False,
                                 create_offset=False,
                                 param_axis=-1)

    inputs = np.ones([2, 3, 3, 5])
    scale = np.full((5,), 0.5)
    offset = np.full((5,), 2.0)

    outputs = layer(inputs, scale, offset)
    for x in np.nditer(outputs):
      self.assertEqual(x, 2.0)

  @parameterized.named_parameters(("String", "foo"), ("ListString", ["foo"]))
  @test_utils.transform_and_run
  def test_invalid_axis(self, axis):
    with self.assertRaisesRegex(
        ValueError, "`axis` should be an int, slice or iterable of ints."):
      layer_norm.LayerNorm(axis, create_scale=False, create_offset=False)

  @test_utils.transform_and_run
  def test_no_scale_and_init_provided(self):
    with self.assertRaisesRegex(
        ValueError, "Cannot set `scale_init` if `create_scale=False`."):
      layer_norm.LayerNorm(
          3, create_scale=False, create_offset=True, scale_init=np.ones)

  @test_utils.transform_and_run
  def test_no_offset_beta_init_provided(self):
    with self.assertRaisesRegex(
        ValueError, "Cannot set `offset_init` if `create_offset=False`."):
      layer_norm.LayerNorm(
          3, create_scale=True, create_offset=False, offset_init=np.zeros)

  @test_utils.transform_and_run
  def test_create_scale_and_scale_provided(self):
    layer = layer_norm.LayerNorm([2], create_scale=True, create_offset=False)

    with self.assertRaisesRegex(
        ValueError, "Cannot pass `scale` at call time if `create_scale=True`."):
      layer(np.ones([2, 3, 4]), scale=np.ones([4]))

  @test_utils.transform_and_run
  def test_create_offset_and_offset_provided(self):
    layer = layer_norm.LayerNorm([2], create_offset=True, create_scale=False)

    with self.assertRaisesRegex(
        ValueError,
        "Cannot pass `offset` at call time if `create_offset=True`."):
      layer(np.ones([2, 3, 4]), offset=np.ones([4]))

  @parameterized.parameters(True, False)
  @test_utils.transform_and_run
  def test_slice_axis(self, use_fast_variance):
    slice_layer = layer_norm.LayerNorm(
        slice(1, -1),
        create_scale=False,
        create_offset=False,
        use_fast_variance=use_fast_variance,
        param_axis=-1)
    axis_layer = layer_norm.LayerNorm((1, 2),
                                      create_scale=False,
                                      create_offset=False,
                                      use_fast_variance=use_fast_variance,
                                      param_axis=-1)

    inputs = np.random.uniform(size=[3, 4, 4, 5], low=0, high=10)
    scale = np.random.normal(size=(5,), loc=1.0)
    offset = np.random.normal(size=(5,))

    slice_outputs = slice_layer(inputs, scale, offset)
    axis_outputs = axis_layer(inputs, scale, offset)

    np.testing.assert_array_equal(slice_outputs, axis_outputs)

  @test_utils.transform_and_run
  def test_connection_instance_norm(self):
    layer = layer_norm.InstanceNorm(create_scale=True, create_offset=True)

    inputs = np.ones([3, 4, 5, 6])
    result = layer(inputs)

    self.assertEqual(result.shape, (3, 4, 5, 6))

  @test_utils.transform_and_run
  def test_param_axis_not_required_for_final_axis(self):
    ln = layer_norm.LayerNorm(-1, True, True)
    x = jnp.ones([3, 4, 5, 6])
    ln(x)
    self.assertEqual(ln.params_dict()["layer_norm/scale"].shape, (6,))
    self.assertEqual(ln.params_dict()["layer_norm/offset"].shape, (6,))

  @test_utils.transform_and_run
  def test_error_prone_param_axis(self):
    # NOTE: This test defends current, potentially error prone behaviour
    # (passing axis!=-1 and not passing param_axis). It will be removed in a
    # future version of Haiku.
    ln = layer_norm.LayerNorm(1, True, True)
    x = jnp.ones([3, 4, 5, 6])
    ln(x)
    self.assertEqual(ln.params_dict()["layer_norm/scale"].shape, (6,))
    self.assertEqual(ln.params_dict()["layer_norm/offset"].shape, (6,))

  @parameterized.parameters(0, 1, 2, ((0, 1),), ((0, 1, 2),), -2, -3, -4,
                            slice(0, 2))
  @test_utils.transform_and_run
  @with_param_axis_error
  def test_param_axis_required_for_non_final_axis(self, axis):
    ln = layer_norm.LayerNorm(axis, True, True)
    x = jnp.ones([3, 4, 5, 6])
    with self.assertRaisesRegex(ValueError, "pass.*param_axis.*in the ctor"):
      ln(x)

  @parameterized.parameters(
      (-1, (6,)),
      (-2, (1, 1, 5, 1)),
      (-3, (1, 4, 1, 1)),
      (-4, (3, 1, 1, 1)),
      (0, (3, 1, 1, 1)),
      (1, (1, 4, 1, 1)),
      (2, (1, 1, 5, 1)),
      (3, (6,)),
  )
  @test_utils.transform_and_run
  def test_param_axis_sets_param_shape(self, param_axis, param_shape):
    ln = layer_norm.LayerNorm(-1, True, True, param_axis=param_axis)
    x = jnp.ones([3, 4, 5, 6])
    ln(x)
    self.assertEqual(ln.params_dict()["layer_norm/scale"].shape, param_shape)
    self.assertEqual(ln.params_dict()["layer_norm/offset"].shape, param_shape)

  @parameterized.parameters(
      ((0, 1, 2), (3, 4, 5, 1)),
      ((-4, -2, -3), (3, 4, 5, 1)),
      ((0, 1), (3, 4, 1, 1)),
      ((0, 3), (3, 1, 1, 6)),
      ((-4, -1), (3, 1, 1, 6)),
      ((-1, -4), (3, 1, 1, 6)),
  )
  @test_utils.transform_and_run
  def test_multiple_param_axis(self, param_axis, param_shape):
    ln = layer_norm.LayerNorm(-1, True, True, param_axis=param_axis)
    x = jnp.ones([3, 4, 5, 6])
    ln(x)
    self.assertEqual(ln.params_dict()["layer_norm/scale"].shape, param_shape)
    self.assertEqual(ln.params_dict()["layer_norm/offset"].shape, param_shape)

  @staticmethod
  def _ln_f(axis, param_axis, create_scale=True, create_offset=True):
    def f(x):
      ln = layer_norm.LayerNorm(
          axis=axis,
          create_scale=create_scale,
          create_offset=create_offset,
          param_axis=param_axis)
      return ln(x)
    return transform.transform(f)

  def test_layernorm_dtype_propagation_float64(self):
    """Input dtype -> output dtype; params dtype match input."""
    fwd = LayerNormTest._ln_f(axis=-1, param_axis=-1)
    x = jnp.arange(12, dtype=float).reshape(3, 4)
    params = fwd.init(jax.random.PRNGKey(0), x)
    y = fwd.apply(params, None, x)
    self.assertEqual(y.dtype, x.dtype)
    w = params["layer_norm"]["scale"]; b = params["layer_norm"]["offset"]
    self.assertEqual(w.dtype, x.dtype)
    self.assertEqual(b.dtype, x.dtype)
    m = jnp.mean(y, axis=-1); v = jnp.var(y, axis=-1)
    np.testing.assert_allclose(m, jnp.zeros_like(m), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(v, jnp.ones_like(v),  rtol=1e-5, atol=1e-5)

  def test_layernorm_jit_consistency_and_axis_tuple(self):
    """axis as tuple + param_axis, eager == jit apply."""
    fwd = self._ln_f(axis=(-1,), param_axis=-1)
    x = jnp.arange(2*3*4, dtype=jnp.float32).reshape(2, 3, 4)
    params = fwd.init(jax.random.PRNGKey(0), x)
    eager = fwd.apply(params, None, x)
    jit_apply = jax.jit(lambda p, z: fwd.apply(p, None, z))
    jitted = jit_apply(params, x)
    np.testing.assert_allclose(eager, jitted, rtol=1e-6, atol=1e-6)

# ---- rms_norm_test.py --------------------------------------------------------


class RMSNormTest(parameterized.TestCase):

  @test_utils.transform_and_run
  def test_connection(self):
    data = jnp.zeros([2, 3, 4, 5])
    norms = []
    for axis in range(4):
      norms.append(rms_norm.RMSNorm(axis=axis)(data))

    norms.append(rms_norm.RMSNorm(axis=slice(1, None))(data))
    norms.append(rms_norm.RMSNorm(axis=slice(2, None))(data))
    norms.append(rms_norm.RMSNorm(axis=slice(1, -1))(data))

    norms.append(rms_norm.RMSNorm(axis=-1, param_axis=(-1,))(data))
    norms.append(rms_norm.RMSNorm(axis=-1, param_axis=(-2, -1))(data))
    norms.append(rms_norm.RMSNorm(axis=-1, param_axis=(0, 1))(data))
    norms.append(rms_norm.RMSNorm(axis=-1, param_axis=(0, 1, 2, 3))(data))
    return norms

  def test_bf16(self):
    """For all configurations, ensure bf16 outputs from bf16 inputs."""
    def f(x):
      ln = rms_norm.RMSNorm(axis=-1)
      return ln(x)

    fwd = transform.transform(f)
    data = jnp.zeros([2, 3, 4, 5], dtype=jnp.bfloat16)
    params = fwd.init(jax.random.PRNGKey(428), data)
    bf16_params = jax.tree.map(lambda t: t.astype(jnp.bfloat16), params)
    self.assertEqual(fwd.apply(bf16_params, None, data).dtype, jnp.bfloat16)

  @test_utils.transform_and_run
  def test_simple_case(self):
    layer = rms_norm.RMSNorm([1, 2], eps=0.0)
    inputs = np.full(shape=[2, 3, 3, 5], fill_value=2.0)
    outputs = layer(inputs)
    for x in np.nditer(outputs):
      self.assertEqual(x, 1.0)

  @test_utils.transform_and_run
  def test_simple_case_with_scale(self):
    layer = rms_norm.RMSNorm(
        axis=[1, 2], eps=0.0, scale_init=initializers.Constant(0.5))
    inputs = np.full(shape=[2, 3, 3, 5], fill_value=2.0)
    outputs = layer(inputs)
    for x in np.nditer(outputs):
      self.assertEqual(x, 0.5)

  @test_utils.transform_and_run
  def test_zero_inputs(self):
    layer = rms_norm.RMSNorm([1, 2])
    inputs = np.zeros([2, 3, 3, 5])
    outputs = layer(inputs)
    for x in np.nditer(outputs):
      self.assertEqual(x, 0.0)

  @parameterized.named_parameters(("String", "foo"), ("ListString", ["foo"]))
  @test_utils.transform_and_run
  def test_invalid_axis(self, axis):
    with self.assertRaisesRegex(
        ValueError, "`axis` should be an int, slice or iterable of ints."):
      rms_norm.RMSNorm(axis)

  @test_utils.transform_and_run
  def test_slice_axis(self):
    slice_layer = rms_norm.RMSNorm(slice(1, -1))
    axis_layer = rms_norm.RMSNorm((1, 2))
    inputs = np.random.uniform(size=[3, 4, 4, 5], low=0, high=10)

    slice_outputs = slice_layer(inputs)
    axis_outputs = axis_layer(inputs)

    np.testing.assert_array_equal(slice_outputs, axis_outputs)

  @test_utils.transform_and_run
  def test_simple_case_without_scale(self):
    layer = rms_norm.RMSNorm(
        axis=[1, 2], eps=0.0, create_scale=False)
    inputs = np.full(shape=[2, 3, 3, 5], fill_value=2.0)
    _ = layer(inputs)
    assert "scale" not in layer.params_dict()

  @parameterized.parameters(
      (None, (6,)),
      (-1, (6,)),
      (-2, (1, 1, 5, 1)),
      (-3, (1, 4, 1, 1)),
      (-4, (3, 1, 1, 1)),
      (0, (3, 1, 1, 1)),
      (1, (1, 4, 1, 1)),
      (2, (1, 1, 5, 1)),
      (3, (6,)),
      (slice(1, 3), (1, 4, 5, 1)),
      (slice(0, 3, 2), (3, 1, 5, 1)),
      (slice(-1, 0, -1), (1, 4, 5, 6)),
  )
  @test_utils.transform_and_run
  def test_param_axis_sets_param_shape(self, param_axis, param_shape):
    ln = rms_norm.RMSNorm(axis=-1, param_axis=param_axis)
    ln(jnp.ones([3, 4, 5, 6]))
    self.assertEqual(ln.params_dict()["rms_norm/scale"].shape, param_shape)

  @parameterized.parameters(
      ((0, 1, 2), (3, 4, 5, 1)),
      ((-4, -2, -3), (3, 4, 5, 1)),
      ((0, 1), (3, 4, 1, 1)),
      ((0, 3), (3, 1, 1, 6)),
      ((-4, -1), (3, 1, 1, 6)),
      ((-1, -4), (3, 1, 1, 6)),
  )
  @test_utils.transform_and_run
  def test_multiple_param_axis(self, param_axis, param_shape):
    ln = rms_norm.RMSNorm(axis=-1, param_axis=param_axis)
    ln(jnp.ones([3, 4, 5, 6]))
    self.assertEqual(ln.params_dict()["rms_norm/scale"].shape, param_shape)

# ---- group_norm_test.py ------------------------------------------------------


def constant(fill_value, *, shape):
  return np.full(shape, fill_value, np.float32)


class GroupNormTest(parameterized.TestCase):

  @test_utils.transform_and_run
  def test_simple_case(self):
    layer = group_norm.GroupNorm(
        groups=5, create_scale=False, create_offset=False)
    inputs = jnp.ones([2, 3, 3, 10])

    outputs = layer(inputs)
    for x in np.nditer(outputs):
      self.assertEqual(x, 0.0)

  @test_utils.transform_and_run
  def test_simple_case_var(self):
    layer = group_norm.GroupNorm(
        groups=5,
        create_scale=True,
        create_offset=True,
        scale_init=initializers.Constant(0.5),
        offset_init=initializers.Constant(2.0))

    inputs = jnp.ones([2, 3, 3, 10])

    outputs = layer(inputs)
    for x in np.nditer(outputs):
      self.assertEqual(x, 2.0)

  @test_utils.transform_and_run
  def test_simple_case_nchwvar(self):
    layer = group_norm.GroupNorm(
        groups=5,
        create_scale=True,
        create_offset=True,
        scale_init=initializers.Constant(0.5),
        offset_init=initializers.Constant(2.0),
        data_format="NCHW")

    inputs = jnp.ones([2, 10, 3, 3])

    outputs = layer(inputs)
    for x in np.nditer(outputs):
      self.assertEqual(x, 2.0)

  @test_utils.transform_and_run
  def test_data_format_agnostic_var(self):
    c_last_layer = group_norm.GroupNorm(
        groups=5, create_scale=True, create_offset=True)
    c_first_layer = group_norm.GroupNorm(
        groups=5, create_scale=True, create_offset=True, data_format="NCHW")

    inputs = np.random.uniform(0, 10, [3, 4, 4, 10]).astype(np.float32)

    c_last_output = c_last_layer(inputs)
    inputs = jnp.transpose(inputs, [0, 3, 1, 2])
    c_first_output = c_first_layer(inputs)
    c_first_output = jnp.transpose(c_first_output, [0, 2, 3, 1])

    self.assertAllClose(c_last_output, c_first_output)

  @test_utils.transform_and_run
  def test_simple_case_tensor(self):
    layer = group_norm.GroupNorm(
        groups=5, create_scale=False, create_offset=False)

    inputs = jnp.ones([2, 3, 3, 10])
    scale = constant(0.5, shape=(10,))
    offset = constant(2.0, shape=(10,))

    outputs = layer(inputs, scale, offset)
    for x in np.nditer(outputs):
      self.assertEqual(x, 2.0)

  @test_utils.transform_and_run
  def test_simple_case_nchwtensor(self):
    layer = group_norm.GroupNorm(
        groups=5, data_format="NCHW", create_scale=False, create_offset=False)

    inputs = jnp.ones([2, 10, 3, 3])
    scale = constant(0.5, shape=(10, 1, 1))
    offset = constant(2.0, shape=(10, 1, 1))

    outputs = layer(inputs, scale, offset)
    for x in np.nditer(outputs):
      self.assertEqual(x, 2.0)

  @test_utils.transform_and_run
  def test_data_format_agnostic_tensor(self):
    c_last = group_norm.GroupNorm(
        groups=5, create_scale=False, create_offset=False)
    c_first = group_norm.GroupNorm(
        groups=5, data_format="NCHW", create_scale=False, create_offset=False)

    inputs = np.random.uniform(0, 10, [3, 4, 4, 10]).astype(np.float32)
    scale = np.random.normal(size=(10,), loc=1.0)
    offset = np.random.normal(size=(10,))

    c_last_output = c_last(inputs, scale, offset)
    inputs = jnp.transpose(inputs, [0, 3, 1, 2])
    scale = jnp.reshape(scale, (10, 1, 1))
    offset = jnp.reshape(offset, (10, 1, 1))
    c_first_output = c_first(inputs, scale, offset)
    c_first_output = jnp.transpose(c_first_output, [0, 2, 3, 1])

    self.assertAllClose(c_last_output, c_first_output, rtol=1e-5)

  @parameterized.parameters("NHW", "HWC", "channel_last")
  @test_utils.transform_and_run
  def test_invalid_data_format(self, data_format):
    with self.assertRaisesRegex(
        ValueError,
        f"Unable to extract channel information from '{data_format}'.",
    ):
      group_norm.GroupNorm(
          groups=5,
          data_format=data_format,
          create_scale=False,
          create_offset=False)

  @parameterized.parameters("NCHW", "NCW", "channels_first")
  @test_utils.transform_and_run
  def test_valid_data_format_channels_first(self, data_format):
    test = group_norm.GroupNorm(
        groups=5,
        data_format=data_format,
        create_scale=False,
        create_offset=False)

    self.assertEqual(test.channel_index, 1)

  @parameterized.parameters("NHWC", "NWC", "channels_last")
  @test_utils.transform_and_run
  def test_valid_data_format_channels_last(self, data_format):
    test = group_norm.GroupNorm(
        groups=5,
        data_format=data_format,
        create_scale=False,
        create_offset=False)

    self.assertEqual(test.channel_index, -1)

  @parameterized.named_parameters(("String", "foo"), ("ListString", ["foo"]))
  @test_utils.transform_and_run
  def test_invalid_axis(self, axis):
    with self.assertRaisesRegex(
        ValueError, "`axis` should be an int, slice or iterable of ints."):
      group_norm.GroupNorm(
          groups=5, axis=axis, create_scale=False, create_offset=False)

  @test_utils.transform_and_run
  def test_no_scale_and_init_provided(self):
    with self.assertRaisesRegex(
        ValueError, "Cannot set `scale_init` if `create_scale=False`."):
      group_norm.GroupNorm(
          groups=5,
          create_scale=False,
          create_offset=True,
          scale_init=jnp.ones)

  @test_utils.transform_and_run
  def test_no_offset_beta_init_provided(self):
    with self.assertRaisesRegex(
        ValueError, "Cannot set `offset_init` if `create_offset=False`."):
      group_norm.GroupNorm(
          groups=5,
          create_scale=True,
          create_offset=False,
          offset_init=jnp.zeros)

  @test_utils.transform_and_run
  def test_create_scale_and_scale_provided(self):
    layer = group_norm.GroupNorm(
        groups=5, create_scale=True, create_offset=False)

    with self.assertRaisesRegex(
        ValueError, "Cannot pass `scale` at call time if `create_scale=True`."):
      layer(jnp.ones([2, 3, 5]), scale=jnp.ones([4]))

  @test_utils.transform_and_run
  def test_create_offset_and_offset_provided(self):
    layer = group_norm.GroupNorm(
        groups=5, create_offset=True, create_scale=False)

    with self.assertRaisesRegex(
        ValueError,
        "Cannot pass `offset` at call time if `create_offset=True`."):
      layer(jnp.ones([2, 3, 5]), offset=jnp.ones([4]))

  @test_utils.transform_and_run
  def test_slice_axis(self):
    slice_layer = group_norm.GroupNorm(
        groups=5, create_scale=False, create_offset=False)
    axis_layer = group_norm.GroupNorm(
        groups=5, create_scale=False, create_offset=False)

    inputs = np.random.uniform(0, 10, [3, 4, 4, 5]).astype(np.float32)
    scale = np.random.normal(size=(5,), loc=1.0)
    offset = np.random.normal(size=(5,))

    slice_outputs = slice_layer(inputs, scale, offset)
    axis_outputs = axis_layer(inputs, scale, offset)

    self.assertAllClose(slice_outputs, axis_outputs)

  @test_utils.transform_and_run
  def test_rank_changes(self):
    layer = group_norm.GroupNorm(
        groups=5, create_scale=False, create_offset=False)

    inputs = jnp.ones([2, 3, 3, 5])
    scale = constant(0.5, shape=(5,))
    offset = constant(2.0, shape=(5,))

    layer(inputs, scale, offset)

    with self.assertRaisesRegex(
        ValueError,
        "The rank of the inputs cannot change between calls, the original"):
      layer(jnp.ones([2, 3, 3, 4, 5]), scale, offset)

  @parameterized.named_parameters(("Small", (2, 4, 4)), ("Bigger", (2, 3, 8)))
  @test_utils.transform_and_run
  def test_incompatible_groups_and_tensor(self, shape):
    layer = group_norm.GroupNorm(
        groups=5, create_scale=False, create_offset=False)

    inputs = jnp.ones(shape)

    with self.assertRaisesRegex(
        ValueError,
        "The number of channels must be divisible by the number of groups"):
      layer(inputs)

  @test_utils.transform_and_run
  def test5ddata_format_agnostic(self):
    c_last_layer = group_norm.GroupNorm(
        groups=5, create_scale=False, create_offset=False)
    c_first_layer = group_norm.GroupNorm(
        groups=5, create_scale=False, create_offset=False, data_format="NCDHW")

    inputs = np.random.uniform(0, 10, [3, 4, 4, 4, 10]).astype(np.float32)
    scale = np.random.normal(size=(10,), loc=1.0)
    offset = np.random.normal(size=(10,))

    c_last_output = c_last_layer(inputs, scale, offset)
    inputs = jnp.transpose(inputs, [0, 4, 1, 2, 3])
    scale = jnp.reshape(scale, [-1, 1, 1, 1])
    offset = jnp.reshape(offset, [-1, 1, 1, 1])
    c_first_output = c_first_layer(inputs, scale, offset)
    c_first_output = jnp.transpose(c_first_output, [0, 2, 3, 4, 1])

    self.assertAllClose(
        c_last_output, c_first_output, atol=1e-5, rtol=1e-5)

  @test_utils.transform_and_run
  def test3ddata_format_agnostic(self):
    c_last_layer = group_norm.GroupNorm(
        groups=5, create_scale=False, create_offset=False)
    c_first_layer = group_norm.GroupNorm(
        groups=5, create_scale=False, create_offset=False, data_format="NCW")

    inputs = np.random.uniform(0, 10, [3, 4, 10]).astype(np.float32)
    scale = np.random.normal(size=(10,), loc=1.0)
    offset = np.random.normal(size=(10,))

    c_last_output = c_last_layer(inputs, scale, offset)
    inputs = jnp.transpose(inputs, [0, 2, 1])
    scale = jnp.reshape(scale, [-1, 1])
    offset = jnp.reshape(offset, [-1, 1])
    c_first_output = c_first_layer(inputs, scale, offset)
    c_first_output = jnp.transpose(c_first_output, [0, 2, 1])

    self.assertAllClose(
        c_last_output, c_first_output, atol=1e-5, rtol=1e-5)

  def assertAllClose(self, actual, desired, atol=1e-5, rtol=1e-5):
    np.testing.assert_allclose(actual, desired, atol=atol, rtol=rtol)

# ---- batch_norm_test.py ------------------------------------------------------


class BatchNormTest(absltest.TestCase):

  @test_utils.transform_and_run
  def test_basic(self):
    data = jnp.arange(2 * 3 * 4, dtype=jnp.float32).reshape([2, 3, 4])

    norm = batch_norm.BatchNorm(True, True, 0.9)
    result = norm(data, is_training=True)
    result_0_replicated = jnp.broadcast_to(result[:, :, :1], result.shape)
    # Input data is symmetrical variance per-channel.
    np.testing.assert_allclose(result, result_0_replicated)
    # Running through again in test mode produces same output.
    np.testing.assert_allclose(norm(data, is_training=False), result, rtol=2e-2)

  @test_utils.transform_and_run
  def test_simple_training(self):
    layer = batch_norm.BatchNorm(
        create_scale=False, create_offset=False, decay_rate=0.9)

    inputs = np.ones([2, 3, 3, 5])
    scale = np.full((5,), 0.5)
    offset = np.full((5,), 2.0)

    result = layer(inputs, True, scale=scale, offset=offset)
    np.testing.assert_equal(result, np.full(inputs.shape, 2.0))

  @test_utils.transform_and_run
  def test_simple_training_nchw(self):
    layer = batch_norm.BatchNorm(
        create_scale=False,
        create_offset=False,
        decay_rate=0.9,
        data_format="NCHW")

    inputs = np.ones([2, 5, 3, 3])
    scale = np.full((5, 1, 1), 0.5)
    offset = np.full((5, 1, 1), 2.0)

    result = layer(inputs, True, scale=scale, offset=offset)
    np.testing.assert_equal(result, np.full(inputs.shape, 2.0))

  @test_utils.transform_and_run
  def test_simple_training_normalized_axes(self):
    layer = batch_norm.BatchNorm(
        create_scale=False,
        create_offset=False,
        decay_rate=0.9,
        axis=[0, 2, 3])  # Not the second axis.

    # This differs only in the second axis.
    inputs = np.stack([2.0 * np.ones([5, 3, 3]), np.ones([5, 3, 3])], 1)

    result = layer(inputs, True)

    # Despite not all values being identical, treating slices from the first
    # axis separately leads to a fully normalized = equal array.
    np.testing.assert_equal(result, np.zeros(inputs.shape))

  def test_simple_training_cross_replica_axis(self):
    ldc = jax.local_device_count()

    def f(x, is_training=True):
      return batch_norm.BatchNorm(
          create_scale=False,
          create_offset=False,
          decay_rate=0.9,
          cross_replica_axis="i",
      )(x, is_training=is_training)

    f = transform.transform_with_state(f)

    inputs = np.arange(ldc * 4).reshape(ldc, 4)
    key = jax.random.PRNGKey(42)
    key = jnp.broadcast_to(key, (ldc, *key.shape))
    params, state = jax.pmap(f.init, axis_name="i")(key, inputs)
    result, _ = jax.pmap(f.apply, axis_name="i")(params, state, key, inputs)

    mean = np.mean(inputs, axis=0)
    std = np.std(inputs, axis=0) + 1e-10
    expected = (inputs - mean) / std

    np.testing.assert_array_almost_equal(result, expected)

  def test_simple_training_cross_replica_axis_index_groups(self):
    ldc = jax.local_device_count()
    if ldc < 2:
      self.skipTest("Cross-replica test requires at least 2 devices.")
    num_groups = ldc // 2
    num_group_devices = ldc // num_groups
    # for 8 devices this produces [[0, 1], [2, 3], [4, 5], [6, 7]] groups.
    groups = np.arange(ldc).reshape(num_groups, num_group_devices).tolist()

    def f(x, is_training=True):
      return batch_norm.BatchNorm(
          create_scale=False,
          create_offset=False,
          decay_rate=0.9,
          cross_replica_axis="i",
          cross_replica_axis_index_groups=groups,
      )(x, is_training=is_training)

    f = transform.transform_with_state(f)

    inputs = np.arange(ldc * 4).reshape(ldc, 4).astype(np.float32)
    key = jax.random.PRNGKey(42)
    key = jnp.broadcast_to(key, (ldc, *key.shape))
    params, state = jax.pmap(f.init, axis_name="i")(key, inputs)
    result, _ = jax.pmap(f.apply, axis_name="i")(params, state, key, inputs)

    expected = np.empty_like(inputs)
    for g in range(num_groups):
      group_inputs = inputs[num_group_devices*g:num_group_devices*(g + 1)]
      group_mean = np.mean(group_inputs, axis=0)
      group_std = np.std(group_inputs, axis=0) + 1e-10
      group_inputs = (group_inputs - group_mean) / group_std
      expected[num_group_devices*g:num_group_devices*(g + 1)] = group_inputs

    np.testing.assert_array_almost_equal(result, expected)

  @test_utils.transform_and_run
  def test_no_scale_and_offset(self):
    layer = batch_norm.BatchNorm(
        create_scale=False, create_offset=False, decay_rate=0.9)

    inputs = jnp.ones([2, 5, 3, 3, 3])
    result = layer(inputs, True)
    np.testing.assert_equal(result, np.zeros_like(inputs))

  @test_utils.transform_and_run
  def test_no_scale_and_init_provided(self):
    with self.assertRaisesRegex(
        ValueError, "Cannot set `scale_init` if `create_scale=False`"):
      batch_norm.BatchNorm(
          create_scale=False,
          create_offset=True,
          decay_rate=0.9,
          scale_init=jnp.ones)

  @test_utils.transform_and_run
  def test_no_offset_beta_init_provided(self):
    with self.assertRaisesRegex(
        ValueError, "Cannot set `offset_init` if `create_offset=False`"):
      batch_norm.BatchNorm(
          create_scale=True,
          create_offset=False,
          decay_rate=0.9,
          offset_init=jnp.zeros)

  def test_eps_cast_to_var_dtype(self):
    # See https://github.com/jax-ml/jax/issues/4718 for more info. In the
    # context of this test we need to assert NumPy bf16 params/state and a
    # Python float for eps preserve bf16 output.

    def f(x, is_training):
      return batch_norm.BatchNorm(True, True, 0.9, eps=0.1)(x, is_training)

    f = transform.transform_with_state(f)

    x = np.ones([], jnp.bfloat16)
    key = jax.random.PRNGKey(42)
    params, state = jax.device_get(f.init(key, x, True))
    y, _ = f.apply(params, state, None, x, False)
    self.assertEqual(y.dtype, jnp.bfloat16)

  def test_no_type_promotion(self):

    def get_batch_norm():
      return batch_norm.BatchNorm(
          create_scale=True, create_offset=True, decay_rate=0.99)

    # Initialize the model and "train" it with float32, and check that
    # everything is float32.
    @transform.transform_with_state
    def forward_training(x):
      return get_batch_norm()(x, is_training=True)
    input_float32 = np.random.normal(size=[100, 5]).astype(np.float32)
    rng = jax.random.PRNGKey(0)
    params, state = forward_training.init(rng, input_float32)
    output, state = forward_training.apply(params, state, rng, input_float32)
    self.assertEqual(output.dtype, jnp.float32)

    # Now for eval we want to run with "bfloat16". We use custom getter that
    # will ensure that everytime we ask for a variable with type bfloat16 (as
    # types requested should usually be defined by the type of the inputs),
    # we cast what used to be a float32 into a bfloat16)
    def _bfloat16_getter(next_getter, value, context):
      if context.original_dtype == jnp.bfloat16:
        assert value.dtype == jnp.float32
        value = value.astype(jnp.bfloat16)
      return next_getter(value)

    @transform.transform_with_state
    def forward_eval_bfloat16(x):
      with base.custom_getter(_bfloat16_getter, state=True):
        return get_batch_norm()(x, is_training=False)

    # Run it with bfloat16, inputs, and check that output is still bfloat16.
    input_bfloat16 = input_float32.astype(jnp.bfloat16)
    output, _ = forward_eval_bfloat16.apply(params, state, rng, input_bfloat16)
    self.assertEqual(output.dtype, jnp.bfloat16)


# ---- spectral_norm_test.py ---------------------------------------------------


class SpectralNormTest(absltest.TestCase):

  @test_utils.transform_and_run
  def test_scalar(self):
    sn = spectral_norm.SpectralNorm()
    with self.assertRaisesRegex(ValueError, "not well defined"):
      sn(1.0)

  @test_utils.transform_and_run
  def test_vector(self):
    sn = spectral_norm.SpectralNorm()
    with self.assertRaisesRegex(ValueError, "not well defined"):
      sn(jnp.ones(shape=[5]))

  @test_utils.transform_and_run
  def test_3d_tensor(self):
    sn = spectral_norm.SpectralNorm()
    input_3d = (4.0 * jnp.eye(8, 8))[None, :, :]
    sn(input_3d)
    with self.assertRaisesRegex(ValueError, "Input is 3D but"):
      sn(input_3d, error_on_non_matrix=True)

  @test_utils.transform_and_run
  def test_matrix(self):
    sn = spectral_norm.SpectralNorm()
    # We can easily calculate the first singular value for this matrix.
    input_ = 4.0 * jnp.eye(8, 8)
    sn(input_)
    np.testing.assert_allclose(sn.sigma, 4.0, atol=1e-3)

  @test_utils.transform_and_run
  def test_matrix_multiple_steps(self):
    sn = spectral_norm.SpectralNorm(n_steps=3)
    # We can easily calculate the first singular value for this matrix.
    input_ = 4.0 * jnp.eye(8, 8)
    sn(input_)
    np.testing.assert_allclose(sn.sigma, 4.0, atol=1e-3)

  @test_utils.transform_and_run
  def test_matrix_no_stats(self):
    sn = spectral_norm.SpectralNorm()
    # We can easily calculate the first singular value for this matrix.
    input_ = 4.0 * jnp.eye(8, 8)
    sn(input_, update_stats=False)
    np.testing.assert_allclose(sn.sigma, 1.0)


class SNParamsTreeTest(absltest.TestCase):

  def test_sn_naming_scheme(self):
    sn_name = "this_is_a_wacky_but_valid_name"
    linear_name = "so_is_this"

    def f():
      return basic.Linear(output_size=2, name=linear_name)(jnp.zeros([6, 6]))

    init_fn, _ = transform.transform(f)
    params = init_fn(random.PRNGKey(428))

    def g(x):
      return spectral_norm.SNParamsTree(ignore_regex=".*b", name=sn_name)(x)
    init_fn, _ = transform.transform_with_state(g)
    _, params_state = init_fn(random.PRNGKey(428), params)

    expected_sn_states = [f"{sn_name}/{linear_name}__{s}" for s in ["w"]]
    self.assertSameElements(expected_sn_states, params_state.keys())
