# Copyright Patrick Kidger and the Equinox contributors.
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
# Ported from patrick-kidger/equinox v0.13.8 (commit dfadb048): the normalization tests of
# tests/test_nn.py (test_sequential, test_nested_sequential, test_layer_norm,
# test_group_norm, test_batch_norm, test_batch_norm_zero_training_steps,
# test_spectral_norm, test_weight_norm; equinox has no RMSNorm test),
# tests/test_stateful.py::test_delete_init_state and tests/test_serialisation.py::test_stateful,
# with the `getkey` fixture of tests/conftest.py. Changed: the import lines only (`eqx` is
# equinox with divnorm's LayerNorm, RMSNorm, GroupNorm, BatchNorm, SpectralNorm and
# WeightNorm in `eqx.nn`, see _equinox_with_divnorm.py); getkey is seeded.

import equinox.internal as eqxi
import jax
import jax.random as jrandom
import jax.tree_util as jtu
import jax.numpy as jnp
import pytest

from tests.compat._equinox_with_divnorm import eqx


@pytest.fixture
def getkey():
    return eqxi.GetKey(seed=0)


def test_sequential(getkey):
    seq = eqx.nn.Sequential(
        [
            eqx.nn.Linear(2, 4, key=getkey()),
            eqx.nn.Linear(4, 1, key=getkey()),
            eqx.nn.BatchNorm(1, axis_name="batch", mode="ema"),
            eqx.nn.Linear(1, 3, key=getkey()),
        ]
    )
    x = jrandom.normal(getkey(), (1, 2))
    batch_seq = jax.vmap(seq, axis_name="batch", in_axes=(0, None), out_axes=(0, None))
    state = eqx.nn.State(seq)

    output, state = batch_seq(x, state)
    assert output[0].shape == (3,)
    # Test indexing
    assert isinstance(seq[0], eqx.nn.Linear)
    assert isinstance(seq[1:], eqx.nn.Sequential)

    x = jrandom.normal(getkey(), (1, 4))
    batch_seq = jax.vmap(
        seq[1:],
        axis_name="batch",
        in_axes=(0, None),
        out_axes=(0, None),
    )
    output, state = batch_seq(x, state)
    assert output[0].shape == (3,)
    assert len(seq) == 4
    assert eqx.nn.Sequential(list(seq)) == seq


@pytest.mark.parametrize("inner_stateful", (False, True))
@pytest.mark.parametrize("outer_stateful", (False, True))
def test_nested_sequential(inner_stateful, outer_stateful, getkey):
    def make():
        inner_seq = eqx.nn.Sequential(
            [
                eqx.nn.Linear(2, 4, key=getkey()),
                eqx.nn.BatchNorm(4, axis_name="batch", mode="ema")
                if inner_stateful
                else eqx.nn.Identity(),
                eqx.nn.Linear(4, 3, key=getkey()),
            ]
        )
        outer_seq = eqx.nn.Sequential(
            [
                eqx.nn.Linear(5, 2, key=getkey()),
                inner_seq,
                eqx.nn.BatchNorm(3, axis_name="batch", mode="ema")
                if outer_stateful
                else eqx.nn.Identity(),
                eqx.nn.Linear(3, 6, key=getkey()),
            ]
        )
        return outer_seq

    x = jrandom.normal(getkey(), (1, 5))
    if inner_stateful or outer_stateful:
        model, state = eqx.nn.make_with_state(make)()
        out, state = jax.vmap(
            model, axis_name="batch", in_axes=(0, None), out_axes=(0, None)
        )(x, state)
        assert isinstance(state, eqx.nn.State)
    else:
        model = make()
        out = jax.vmap(model, axis_name="batch")(x)
    assert isinstance(out, jax.Array)
    assert out.shape == (1, 6)


def test_layer_norm(getkey):
    ln = eqx.nn.LayerNorm(128)
    x = jrandom.uniform(getkey(), (128,))
    assert ln(x).shape == (128,)

    ln = eqx.nn.LayerNorm(shape=(128, 128), use_weight=False, use_bias=False)
    x = jrandom.uniform(getkey(), (128, 128))
    assert ln(x).shape == (128, 128)

    ln = eqx.nn.LayerNorm(10)
    x1 = jnp.linspace(0.1, 1, 10)
    x2 = jnp.linspace(0, 1, 10)
    x3 = (x1 - x1.mean()) / jnp.sqrt(x1.var() + 1e-5)
    assert jnp.allclose(ln(x1), ln(x2), atol=1e-4)
    assert jnp.allclose(ln(x1), x3, atol=1e-4)

    ln = eqx.nn.LayerNorm(128, dtype=jnp.bfloat16)
    x = jrandom.uniform(getkey(), (128,), dtype=jnp.bfloat16)
    assert ln(x).dtype == jnp.bfloat16


def test_group_norm(getkey):
    gn = eqx.nn.GroupNorm(groups=4, channels=128)
    x = jrandom.uniform(getkey(), (128,))
    assert gn(x).shape == (128,)

    gn = eqx.nn.GroupNorm(groups=4, channels=128, dtype=jnp.bfloat16)
    x = jrandom.uniform(getkey(), (128,), dtype=jnp.bfloat16)
    assert gn(x).dtype == jnp.bfloat16

    gn = eqx.nn.GroupNorm(groups=4, channels=128)
    x = jrandom.uniform(getkey(), (128, 4, 5))
    assert gn(x).shape == (128, 4, 5)

    gn = eqx.nn.GroupNorm(groups=4, channels=128, channelwise_affine=False)
    x = jrandom.uniform(getkey(), (128, 4, 5))
    assert gn(x).shape == (128, 4, 5)

    gn = eqx.nn.GroupNorm(1, 10)
    x1 = jnp.linspace(0.1, 1, 10)
    x2 = jnp.linspace(0, 1, 10)
    x3 = (x1 - x1.mean()) / jnp.sqrt(x1.var() + 1e-5)
    assert jnp.allclose(gn(x1), gn(x2), atol=1e-4)
    assert jnp.allclose(gn(x1), x3, atol=1e-4)

    gn = eqx.nn.GroupNorm(2, 10)
    x1 = jnp.linspace(0.1, 1, 10)
    x2 = jnp.linspace(0, 1, 10)
    x1_ = x1.reshape(2, 5)
    x3_ = (x1_ - x1_.mean(axis=1, keepdims=True)) / jnp.sqrt(
        x1_.var(axis=1, keepdims=True) + 1e-5
    )
    x3 = x3_.reshape(10)
    assert jnp.allclose(gn(x1), gn(x2), atol=1e-4)
    assert jnp.allclose(gn(x1), x3, atol=1e-4)

    # channels not divisible by groups
    with pytest.raises(ValueError):
        gn = eqx.nn.GroupNorm(groups=3, channels=4)

    # test w/ channels=None
    gn = eqx.nn.GroupNorm(groups=4, channelwise_affine=False)
    x = jrandom.uniform(getkey(), (128,))
    assert gn(x).shape == (128,)

    # Unknown channels w/ channelwise_affine=True
    with pytest.raises(ValueError):
        gn = eqx.nn.GroupNorm(groups=4, channels=None, channelwise_affine=True)


@pytest.mark.parametrize("mode", ("ema", "batch"))
def test_batch_norm(getkey, mode):
    x0 = jrandom.uniform(getkey(), (5,))
    x1 = jrandom.uniform(getkey(), (10, 5))
    x2 = jrandom.uniform(getkey(), (10, 5, 6))
    x3 = jrandom.uniform(getkey(), (10, 5, 7, 8))

    # Test that it works with a single vmap'd axis_name

    bn = eqx.nn.BatchNorm(5, "batch", mode=mode)
    state = eqx.nn.State(bn)
    vbn = jax.vmap(bn, axis_name="batch", in_axes=(0, None), out_axes=(0, None))

    for x in (x1, x2, x3):
        out, state = vbn(x, state)
        assert out.shape == x.shape
        if mode == "ema":
            assert bn.ema_state_index is not None
            running_mean, running_var = state.get(bn.ema_state_index)
        else:
            assert bn.batch_state_index is not None
            running_mean, running_var = state.get(bn.batch_state_index)
        assert running_mean.shape == (5,)
        assert running_var.shape == (5,)

    # Test that it fails without any vmap'd axis_name

    with pytest.raises(NameError):
        jax.vmap(bn, in_axes=(0, None), out_axes=(0, None))(x1, state)
    state = eqx.nn.State(bn)

    with pytest.raises(NameError):
        bn(x0, state)
    state = eqx.nn.State(bn)

    # Test that it vmaps with other vmaps without axis_name

    out, state = jax.vmap(
        jax.vmap(bn, axis_name="batch", in_axes=(1, None), out_axes=(1, None)),
        in_axes=(0, None),
    )(x2, state)
    assert out.shape == x2.shape
    if mode == "ema":
        assert bn.ema_state_index is not None
        running_mean, running_var = state.get(bn.ema_state_index)
    else:
        assert bn.batch_state_index is not None
        running_mean, running_var = state.get(bn.batch_state_index)
    assert running_mean.shape == (10, 5)
    assert running_var.shape == (10, 5)

    # Test that it handles multiple axis_names

    vvbn = eqx.nn.BatchNorm(6, ("batch1", "batch2"), mode=mode)
    vvstate = eqx.nn.State(vvbn)
    for axis_name in ("batch1", "batch2"):
        vvbn = jax.vmap(
            vvbn, axis_name=axis_name, in_axes=(0, None), out_axes=(0, None)
        )
    out, out_vvstate = vvbn(x2, vvstate)
    assert out.shape == x2.shape
    if mode == "ema":
        assert vvbn.ema_state_index is not None
        running_mean, running_var = out_vvstate.get(vvbn.ema_state_index)
    else:
        assert vvbn.batch_state_index is not None
        running_mean, running_var = out_vvstate.get(vvbn.batch_state_index)
    assert running_mean.shape == (6,)
    assert running_var.shape == (6,)

    # Test that it normalises

    x1alt = jrandom.normal(jrandom.PRNGKey(5678), (10, 5))  # avoid flakey test
    bn = eqx.nn.BatchNorm(5, "batch", channelwise_affine=False, mode=mode)
    state = eqx.nn.State(bn)
    vbn = jax.vmap(bn, axis_name="batch", in_axes=(0, None), out_axes=(0, None))
    out, state = vbn(x1alt, state)
    true_out = (x1alt - jnp.mean(x1alt, axis=0, keepdims=True)) / jnp.sqrt(
        jnp.var(x1alt, axis=0, keepdims=True) + 1e-5
    )
    assert jnp.allclose(out, true_out)

    # Test that the statistics update during training
    out, state = vbn(x1, state)
    if mode == "ema":
        assert bn.ema_state_index is not None
        running_mean, running_var = state.get(bn.ema_state_index)
    else:
        assert bn.batch_state_index is not None
        running_mean, running_var = state.get(bn.batch_state_index)
    out, state = vbn(3 * x1 + 10, state)
    if mode == "ema":
        assert bn.ema_state_index is not None
        running_mean2, running_var2 = state.get(bn.ema_state_index)
    else:
        assert bn.batch_state_index is not None
        running_mean2, running_var2 = state.get(bn.batch_state_index)
    assert not jnp.allclose(running_mean, running_mean2)
    assert not jnp.allclose(running_var, running_var2)

    # Test that the statistics don't update at inference

    ibn = eqx.nn.inference_mode(bn, value=True)
    vibn = jax.vmap(ibn, axis_name="batch", in_axes=(0, None), out_axes=(0, None))
    out, state = vibn(4 * x1 + 20, state)
    if mode == "ema":
        assert bn.ema_state_index is not None
        running_mean3, running_var3 = state.get(bn.ema_state_index)
    else:
        assert bn.batch_state_index is not None
        running_mean3, running_var3 = state.get(bn.batch_state_index)
    assert jnp.array_equal(running_mean2, running_mean3)
    assert jnp.array_equal(running_var2, running_var3)

    # Test that we can differentiate through it

    @jax.grad
    def f(x):
        out, _ = vbn(x, state)
        return jnp.sum(out)

    f(jrandom.normal(getkey(), (1, 5)))


# https://github.com/patrick-kidger/equinox/issues/1010
def test_batch_norm_zero_training_steps(getkey):
    bn, state = eqx.nn.make_with_state(eqx.nn.BatchNorm)(
        input_size=3, axis_name="foo", mode="batch", inference=True
    )
    x = jrandom.normal(getkey(), (5, 3))
    out, _ = jax.vmap(bn, in_axes=(0, None), axis_name="foo")(x, state)
    assert jnp.allclose(x, out)


def test_spectral_norm(getkey):
    def λ1():
        u, v = state.get(spectral.uv_index)
        σ = jnp.einsum("i,ij,j->", u, spectral.layer.weight, v)
        _, s, _ = jnp.linalg.svd(spectral.layer.weight / σ)  # pyright: ignore
        return s[0]

    x = jrandom.normal(getkey(), (5,))
    spectral = eqx.nn.SpectralNorm(
        eqx.nn.Linear(5, 6, key=getkey()), "weight", key=getkey()
    )
    state = eqx.nn.State(spectral)
    for _ in range(100):
        _, state = spectral(x, state)
    assert jnp.allclose(λ1(), 1)

    # "gradient descent"
    spectral = eqx.tree_at(
        lambda s: s.layer.weight, spectral, spectral.layer.weight + 1
    )
    assert not jnp.allclose(λ1(), 1)
    for _ in range(100):
        _, state = spectral(x, state)
    assert jnp.allclose(λ1(), 1)

    # Test not updated at inference time
    spectral = eqx.tree_at(
        lambda s: s.layer.weight, spectral, spectral.layer.weight + 1
    )
    spectral = eqx.nn.inference_mode(spectral, value=True)
    assert not jnp.allclose(λ1(), 1)
    for _ in range(100):
        _, state = spectral(x, state)
    assert not jnp.allclose(λ1(), 1)

    # Test >2 dimensional input

    x = jrandom.normal(getkey(), (5, 8, 8, 8))
    conv = eqx.nn.Conv3d(5, 4, 3, key=getkey())
    spectral = eqx.nn.SpectralNorm(conv, "weight", key=getkey())
    state = eqx.nn.State(spectral)
    out, _ = spectral(x, state)
    assert out.shape == (4, 6, 6, 6)


def test_weight_norm(getkey):
    # Linear
    linear = eqx.nn.Linear(4, 4, key=getkey())
    weight_norm_linear = eqx.nn.WeightNorm(layer=linear, weight_name="weight")

    x = jrandom.normal(getkey(), (4,))
    out_weight_norm = weight_norm_linear(x)
    out_linear = linear(x)

    assert jnp.allclose(out_weight_norm, out_linear, atol=1e-4, rtol=1e-4)

    # Axis == None
    linear = eqx.nn.Linear(4, 4, key=getkey())
    weight_norm_linear = eqx.nn.WeightNorm(
        layer=linear, weight_name="weight", axis=None
    )

    x = jrandom.normal(getkey(), (4,))
    out_weight_norm = weight_norm_linear(x)
    out_linear = linear(x)

    assert jnp.allclose(out_weight_norm, out_linear, atol=1e-4, rtol=1e-4)

    # Conv3d (ndim weight matrices > 2)
    conv = eqx.nn.Conv3d(2, 3, 3, key=getkey())
    weight_norm_conv = eqx.nn.WeightNorm(layer=conv, weight_name="weight")
    x = jrandom.normal(getkey(), (2, 3, 3, 3))
    out_weight_norm = weight_norm_conv(x)
    out_conv = conv(x)

    assert jnp.allclose(out_weight_norm, out_conv, atol=1e-4, rtol=1e-4)

    # Grads get generated for reparametrized weights, not original
    grads = eqx.filter_grad(lambda model, x: jnp.mean(model(x)))(
        weight_norm_linear, jrandom.normal(getkey(), (4,))
    )

    assert jnp.any(grads.layer.weight)
    assert jnp.any(grads.g)


def test_delete_init_state():
    model = eqx.nn.BatchNorm(3, "batch", mode="ema")
    eqx.nn.State(model)
    model2 = eqx.nn.delete_init_state(model)

    eqx.nn.State(model)
    with pytest.raises(ValueError):
        eqx.nn.State(model2)

    leaves = [x for x in jtu.tree_leaves(model) if eqx.is_array(x)]
    leaves2 = [x for x in jtu.tree_leaves(model2) if eqx.is_array(x)]
    assert len(leaves) == len(leaves2) + 3


# Deserialisation and seralisation work despite both `model` and `model2` having
# different objects as the markers in their `StateIndex`s.
# This is because we iterate over `model` and `model2` in the same order when
# creating `State(model)` and `State(model2)`. Thus the entries in `state` and `state2`
# are stored in the same order (as Python dictionaries are ordered). So standard
# de/serialisation just matches things up automatically.
def test_stateful(tmp_path):
    class Model(eqx.Module):
        norm1: eqx.nn.BatchNorm
        norm2: eqx.nn.BatchNorm

    model = Model(
        eqx.nn.BatchNorm(3, "hi", mode="ema"), eqx.nn.BatchNorm(4, "bye", mode="ema")
    )
    state = eqx.nn.State(model)

    eqx.tree_serialise_leaves(tmp_path, (model, state))

    model2 = Model(
        eqx.nn.BatchNorm(3, "hi", mode="ema"), eqx.nn.BatchNorm(4, "bye", mode="ema")
    )
    state2 = eqx.nn.State(model2)

    eqx.tree_deserialise_leaves(tmp_path, (model2, state2))
