"""Correct user code that a type checker must accept (tests/test_typing.py runs mypy on it).

Each call runs as written; the annotations of divnorm's public names must admit it: NumPy
inputs and masks, numbers given as arrays (learned or scheduled), resolved and grouped
fields, window widths of None, lists where a sequence is documented.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import divnorm
from divnorm import equinox as dqx
from divnorm import linen as dnn
from divnorm import nnx as dnx

img = np.random.default_rng(0).normal(size=(2, 8, 8, 4)).astype(np.float32)
valid = np.ones((2, 8, 8, 1), dtype=bool)
x = jnp.asarray(img)

# NumPy inputs and masks ("a jax.Array, a NumPy array or nested lists of floats").
divnorm.normalize(img, {3: None, 1: 5, 2: 5}, sigma=0.5)
divnorm.normalize(img, (1, 2), mask=valid)
divnorm.layer_norm(img, reduction_axes=(1, 2, 3))
divnorm.divisive_norm(img, summation_window=5, sigma=0.5, mask=valid)
divnorm.l1_penalty(img, 0.01, mask=valid)
divnorm.window_sum(img, [(1, 3), (2, 3)])
divnorm.field_mean(img, {1: 3, 2: 3}, mask=valid)
divnorm.local_response_norm(img, size=3)

# Numbers as arrays: a learned sigma, learned exponents, a momentum schedule.
divnorm.normalize(x, (1, 2), sigma=jnp.exp(jnp.zeros((1, 1, 1, 4))))
divnorm.normalize(x, (1, 2), alpha=jnp.asarray(1.5), epsilon=jnp.asarray(0.5))
divnorm.divisive_norm(x, summation_window=3, sigma=jnp.asarray(0.5))
divnorm.local_response_norm(x, size=3, alpha=jnp.asarray(1e-4), beta=np.float32(0.75))
stats = divnorm.batch_stats_init(x)
divnorm.batch_norm(x, stats, training=True, momentum=np.float32(0.9))
divnorm.batch_renorm(x, stats, training=True, rmax=jnp.asarray(2.0), dmax=jnp.asarray(1.0),
                     momentum=jnp.asarray(0.9))
divnorm.mean_only_batch_norm(x, divnorm.mean_stats_init(x), training=True,
                             momentum=jnp.asarray(0.9))
beta, gamma = divnorm.gdn.gdn_values(divnorm.gdn.gdn_init(4))
divnorm.gdn.gdn(x, beta=beta, gamma=gamma, alpha=jnp.asarray(2.0), epsilon=jnp.asarray(0.5))

# Resolved and grouped fields are fields.
grouped = divnorm.grouped_field({1: 3, 2: 3}, -1, 2, x.shape)
divnorm.normalize(x, grouped, sigma=0.5)
divnorm.normalize(x, divnorm.resolve_field((1, 2), x.ndim))
divnorm.resolve_field(grouped, x.ndim)

# A window of None reduces its axis whole.
divnorm.divisive_norm(x, summation_window=(5, None), sigma=0.5)
divnorm.divisive_norm(x, summation_window=3, suppression_window=(None, 5), sigma=0.5)
layer = dnn.DivisiveNorm(summation_window=(5, None), sigma=0.5)
layer.apply(layer.init(jax.random.key(1), x), x)

# The lazy submodules are modules; `apply_with_penalty` takes flax's `mutable`.
bn = divnorm.linen.BatchNorm(use_running_average=False)
out, penalty, updates = dnn.apply_with_penalty(bn, bn.init(jax.random.key(2), x), x,
                                               mutable=["batch_stats"])

# divnorm.nnx's layers have flax.nnx's attributes (set from their arguments by name).
norm = dnx.BatchNorm(3, momentum=0.9)
norm(jnp.ones((8, 3)))
print(norm.mean.shape, norm.var[...].sum(), norm.momentum)
norm.use_running_average = True
ln = dnx.LayerNorm(3)
print(ln.scale, ln.epsilon, ln.num_features)
print(dnx.SwitchableNorm(4, learn_sigma=True, sigma=0.5).log_sigma)

# Results are arrays (or, by return_centered, pairs): `.shape` and jnp take them.
print(divnorm.layer_norm(x).shape, divnorm.normalize(x, (1, 2)).shape)
y, new_stats = divnorm.batch_norm(x, stats, training=True)
print(y.shape, new_stats.mean.shape, jnp.abs(divnorm.divisive_norm(x, summation_window=3,
                                                                   sigma=0.5)))
y, v = divnorm.group_norm(x, num_groups=2, return_centered=True)

# divnorm.equinox's layers return an array, or (array, state) given a state, as equinox's.
eqx_ln = dqx.LayerNorm(4)
print(eqx_ln(jnp.ones(4)).round(3), dqx.RMSNorm(4)(jnp.ones(4)).sum())
out, state = eqx_ln(jnp.ones(4), eqx.nn.State(eqx_ln))
print(out.shape)

# README "The rules": ints may be NumPy or concrete JAX integers, bools NumPy or JAX bools.
print(divnorm.batch_norm(x, stats, training=np.bool_(True))[0].shape,
      divnorm.batch_norm(x, stats, training=jnp.asarray(True))[0].shape,
      divnorm.group_norm(x, num_groups=np.int64(2)).shape,
      divnorm.divisive_norm(x, summation_window=(np.int64(3), 3), sigma=0.5).shape,
      divnorm.layer_norm(x, reduction_axes=np.int64(-1)).shape,
      divnorm.local_response_norm(x, size=np.int64(3)).shape,
      divnorm.normalize(x, (1, 2), return_centered=np.bool_(True))[0].shape)
