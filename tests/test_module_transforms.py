"""divnorm's own additions to the module layers (the L1 penalty, the survey's running layers)
under flax's and JAX's transformations: stacked layers, per-example vmap, nnx.view."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

from divnorm import linen as dnn
from divnorm import nnx as dnx

pytestmark = pytest.mark.loose_promotion  # flax internals


def _x(shape=(8, 6), seed=1):
  return jax.random.normal(jax.random.key(seed), shape) * 2 + 1


def test_pop_penalties_of_stacked_layers_is_one_scalar():
  """Layers made by nnx.vmap and applied by nnx.scan keep a stacked Penalty, one per layer:
  `pop_penalties` sums them to the float32 scalar a loss takes (it returned a vector, and
  nnx.grad refused the loss), equal to the sum of three separate layers' penalties."""
  x = _x((4, 8))

  @nnx.split_rngs(splits=3)
  @nnx.vmap(in_axes=(0,), out_axes=0)
  def create(rngs):
    return dnx.LayerNorm(8, l1_alpha=0.1, rngs=rngs)

  @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)
  def forward(y, layer):
    return layer(y)

  stack = create(nnx.Rngs(0))
  y = forward(x, stack)
  penalty = dnx.pop_penalties(stack)
  assert penalty.shape == () and penalty.dtype == jnp.float32
  want, z = 0.0, x
  for _ in range(3):
    layer = dnx.LayerNorm(8, l1_alpha=0.1)
    z = layer(z)
    want += float(dnx.pop_penalties(layer))
  np.testing.assert_allclose(y, z, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(penalty, want, rtol=1e-6)
  assert float(dnx.pop_penalties(stack)) == 0.0  # reset

  def loss(stack):
    return forward(x, stack).sum() + dnx.pop_penalties(stack)

  grads = nnx.grad(loss)(stack)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(nnx.state(grads, nnx.Param)))


def test_the_penalty_under_a_per_example_vmap_is_the_batch_s():
  """With `axis_name`, the statistics pool the mapped axis, and the penalty's mean does too:
  nnx's broadcast module took a per-example value and crashed; linen's broadcast "losses"
  now holds the full batch's penalty, as its broadcast "batch_stats" hold its statistics."""
  x = _x()
  full = dnn.BatchNorm(False, l1_alpha=0.1)
  variables = full.init(jax.random.key(0), x)
  _, want, _ = dnn.apply_with_penalty(full, variables, x, mutable=["batch_stats"])

  mapped = nn.vmap(dnn.BatchNorm, in_axes=0, out_axes=0, axis_name="b",
                   variable_axes={"params": None, "batch_stats": None, "losses": None},
                   split_rngs={"params": False})(False, l1_alpha=0.1, axis_name="b")
  y, got, _ = dnn.apply_with_penalty(mapped, variables, x, mutable=["batch_stats"])
  np.testing.assert_allclose(got, want, rtol=1e-6)
  np.testing.assert_allclose(y, full.apply(variables, x, mutable=["batch_stats"])[0],
                             rtol=1e-5, atol=1e-6)

  layer = dnx.BatchNorm(6, l1_alpha=0.1, axis_name="b")

  @nnx.vmap(in_axes=(None, 0), out_axes=0, axis_name="b")
  def per_example(module, x):
    return module(x)

  per_example(layer, x)
  np.testing.assert_allclose(dnx.pop_penalties(layer), want, rtol=1e-6)
  plain = dnx.BatchNorm(6, l1_alpha=0.1)
  plain(x)
  np.testing.assert_allclose(dnx.pop_penalties(plain), want, rtol=1e-6)


@pytest.mark.parametrize("name", ["MeanOnlyBatchNorm", "BatchRenorm", "BatchInstanceNorm",
                                  "SwitchableNorm"])
def test_nnx_view_reaches_the_survey_s_running_layers(name):
  """``nnx.view(model, use_running_average=True)`` puts them in evaluation, as flax's
  BatchNorm: beside it they stayed in training (and overwrote their running statistics);
  alone, the view refused the key."""
  x = _x((8, 3, 3, 4))

  class Model(nnx.Module):
    def __init__(self):
      self.bn = nnx.BatchNorm(4, rngs=nnx.Rngs(0))
      self.own = getattr(dnx, name)(4)

    def __call__(self, x):
      return self.own(self.bn(x))

  view = nnx.view(Model(), use_running_average=True)
  assert view.bn.use_running_average and view.own.use_running_average
  before = [np.asarray(v) for v in jax.tree.leaves(nnx.state(view.own, nnx.BatchStat))]
  view(x)
  after = jax.tree.leaves(nnx.state(view.own, nnx.BatchStat))
  assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
  alone = nnx.view(getattr(dnx, name)(4), use_running_average=True)
  assert alone.use_running_average


def test_nnx_view_of_layers_without_running_statistics_is_flax_s():
  """LayerNorm has no running statistics and no `set_view`, as flax's: a view of it alone
  with ``use_running_average`` is refused by flax in the same way."""
  for layer in (nnx.LayerNorm(4, rngs=nnx.Rngs(0)), dnx.LayerNorm(4)):
    with warnings.catch_warnings(), pytest.raises(ValueError, match="[Uu]nused"):
      warnings.simplefilter("ignore")
      nnx.view(layer, use_running_average=True)
