"""RNN cells and LM: every placement against NumPy, scan == loop, per-step BN, carried state."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from divnorm import linen as dnn
from experiments.rnn import model as rnn
from tests.smoke import smoke_first

B, D, H = 4, 5, 6
WINDOW = 3
ALPHA = 0.05


def _spec(variant):
  sigma = 1.0 if variant in ("bn_star", "ln_s", "ln_star", "dn", "dn_star") else 0.1
  return rnn.NormSpec(variant=variant, sigma=sigma,
                      l1_alpha=ALPHA if variant.endswith("_star") else 0.0, dn_window=WINDOW)


def _randomize(tree, seed):
  """Random values everywhere (gammas != 1, betas and biases != 0) so every term is tested."""
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  new = [0.5 * jax.random.normal(k, leaf.shape, leaf.dtype) + (1.0 if leaf.ndim == 2 and
         leaf.shape[0] == 1 else 0.0) for k, leaf in zip(keys, leaves, strict=True)]
  return jax.tree.unflatten(treedef, new)


# ------------------------------------------------------------------ NumPy reference (float64)


def np_ln(z, sigma):
  v = z - z.mean(-1, keepdims=True)
  return v / np.sqrt((v * v).mean(-1, keepdims=True) + sigma**2), v


def np_box(a, width):
  r, n = width // 2, a.shape[-1]
  out = np.empty_like(a)
  for j in range(n):  # "valid" border: average over the units that exist
    out[..., j] = a[..., max(0, j - r):min(n, j + r + 1)].mean(-1)
  return out


def np_dn(z, sigma, width=WINDOW):
  v = z - np_box(z, width)
  return v / np.sqrt(np_box(v * v, width) + sigma**2), v


def np_bn(z, sigma):
  v = z - z.mean(0)
  return v / np.sqrt((v * v).mean(0) + sigma**2), v


def sigmoid(a):
  return 1 / (1 + np.exp(-a))


def ref_pre(p, x, h, spec, g):
  """Pre-activations [B, g, H], the L1 penalty and the batch means of the BN inputs."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)
  l1, bn_means = 0.0, {}
  placement = spec.placement
  if placement in ("separate_bn", "separate_ln"):
    zx, zh = x @ p["W_x"]["kernel"], h @ p["W_h"]["kernel"]
    if placement == "separate_ln" and g == 1:
      y, v = np_ln(zx + zh + p["b"], spec.sigma)
      y = y * p["norm"]["scale"].reshape(-1) + p["norm"]["bias"].reshape(-1)
      return y.reshape(-1, g, H), spec.l1_alpha * np.abs(v).mean(), bn_means
    norm = np_bn if placement == "separate_bn" else np_ln
    yx, vx = norm(zx, spec.sigma)
    yh, vh = norm(zh, spec.sigma)
    if placement == "separate_bn":
      bn_means = {"norm_x": zx.mean(0), "norm_h": zh.mean(0)}
    l1 = spec.l1_alpha * (np.abs(vx).mean() + np.abs(vh).mean())
    z = (yx * p["norm_x"]["scale"].reshape(-1) + yh * p["norm_h"]["scale"].reshape(-1) + p["b"])
    return z.reshape(-1, g, H), l1, bn_means
  z = (np.concatenate([x, h], -1) @ p["W"]["kernel"] + p["W"]["bias"]).reshape(-1, g, H)
  if placement == "none":
    return z, l1, bn_means
  norm = np_ln if spec.variant.startswith("ln") else np_dn
  ys, ls = [], 0.0
  for k in range(g):
    y, v = norm(z[:, k], spec.sigma)
    ys.append(y)
    ls += spec.l1_alpha * np.abs(v).mean()
  return np.stack(ys, 1), ls, bn_means


def ref_lstm(params, c, h, x, spec):
  z, l1, bn_means = ref_pre(params["pre"], x, h, spec, 4)
  i, j, f, o = (z[:, k] for k in range(4))
  new_c = sigmoid(f) * c + sigmoid(i) * np.tanh(j)
  pc = jax.tree.map(lambda a: np.asarray(a, np.float64), params.get("norm_c", {}))
  placement = spec.placement
  if placement == "none":
    c_out = new_c
  elif placement in ("separate_bn", "separate_ln"):
    c_out, v = (np_bn if placement == "separate_bn" else np_ln)(new_c, spec.sigma)
    c_out = c_out * pc["scale"].reshape(-1) + pc["bias"].reshape(-1)
    l1 += spec.l1_alpha * np.abs(v).mean()
    if placement == "separate_bn":
      bn_means["norm_c"] = new_c.mean(0)
  else:
    c_out, v = (np_ln if spec.variant.startswith("ln") else np_dn)(new_c, spec.sigma)
    l1 += spec.l1_alpha * np.abs(v).mean()
  return (new_c, sigmoid(o) * np.tanh(c_out)), l1, bn_means


def ref_vanilla(params, h, x, spec, act):
  z, l1, bn_means = ref_pre(params["pre"], x, h, spec, 1)
  return act(z[:, 0]), l1, bn_means


def _inputs(seed=0):
  k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
  x = jax.random.normal(k1, (B, D), jnp.float32)
  c = jax.random.normal(k2, (B, H), jnp.float32)
  h = jnp.tanh(jax.random.normal(k3, (B, H), jnp.float32))
  return x, c, h


@pytest.mark.parametrize("cell,variant", smoke_first(
    [(c, v) for c in rnn.CELLS for v in rnn.VARIANTS],
    {("lstm", "dn_star")}))
def test_cell_step_matches_numpy(cell, variant):
  spec = _spec(variant)
  module = rnn.make_cell(cell, H, spec, train=True)
  x, c, h = _inputs()
  carry = (c, h) if cell == "lstm" else h
  variables = module.init(jax.random.key(1), carry, x)
  params = _randomize(variables["params"], 2)
  state = {k: v for k, v in variables.items() if k not in ("params", "losses")}
  (new_carry, out), penalty, updates = dnn.apply_with_penalty(
      module, {"params": params, **state}, carry, x, mutable=["batch_stats"])
  xn, cn, hn = (np.asarray(a, np.float64) for a in (x, c, h))
  if cell == "lstm":
    (ref_c, ref_h), ref_l1, bn_means = ref_lstm(params, cn, hn, xn, spec)
    np.testing.assert_allclose(new_carry[0], ref_c, rtol=2e-5, atol=2e-5)
  else:
    act = np.tanh if cell == "tanh" else (lambda a: np.maximum(a, 0.0))
    ref_h, ref_l1, bn_means = ref_vanilla(params, hn, xn, spec, act)
  np.testing.assert_allclose(out, ref_h, rtol=2e-5, atol=2e-5)
  np.testing.assert_allclose(penalty, ref_l1, rtol=1e-5, atol=1e-7)
  assert (penalty > 0) == variant.endswith("_star")
  if spec.placement == "separate_bn":  # running mean: 0.9 * 0 + 0.1 * batch mean
    stats = updates["batch_stats"]
    for name, mean in bn_means.items():
      got = stats["norm_c"]["mean"] if name == "norm_c" else stats["pre"][name]["mean"]
      np.testing.assert_allclose(got, 0.1 * mean, rtol=1e-5, atol=1e-6)
  else:
    assert "batch_stats" not in updates or not updates["batch_stats"]


def _lm(cell, variant, *, train, layers=2, vocab=7):
  return rnn.RNNLanguageModel(vocab_size=vocab, hidden_size=H, num_layers=layers, cell=cell,
                              spec=_spec(variant), train=train)


def _tokens(t, seed=3, vocab=7):
  return jax.random.randint(jax.random.key(seed), (B, t), 0, vocab, jnp.int32)


def _unrolled_lm(cell, variant, variables, tokens, carry, *, train):
  """The 2-layer LM as an explicit Python loop over time with the standalone cells."""
  params = variables["params"]
  x = params["embed"]["embedding"][tokens]
  t_len = tokens.shape[1]
  penalty, new_carry, new_stats = jnp.zeros((), jnp.float32), [], {}
  for layer in range(2):
    name = f"rnn{layer}"
    cell_mod = rnn.make_cell(cell, H, _spec(variant), train=train)
    c, outs = carry[layer], []
    stats_t = []
    for t in range(t_len):
      v = {"params": params[name]}
      if "batch_stats" in variables:
        v["batch_stats"] = jax.tree.map(lambda a, t=t: a[t], variables["batch_stats"][name])
      (c, y), p, upd = dnn.apply_with_penalty(cell_mod, v, c, x[:, t],
                                              mutable=["batch_stats"] if train else False)
      penalty = penalty + p
      outs.append(y)
      stats_t.append(upd.get("batch_stats"))
    if stats_t[0]:
      new_stats[name] = jax.tree.map(lambda *a: jnp.stack(a), *stats_t)
    new_carry.append(c)
    x = jnp.stack(outs, 1)
  logits = x @ params["softmax"]["kernel"] + params["softmax"]["bias"][None, None]
  return logits, tuple(new_carry), penalty, new_stats


@pytest.mark.parametrize("cell,variant", smoke_first(
    [(c, v) for c in ("lstm", "relu") for v in ("baseline", "bn_star", "ln", "ln_star", "dn_star")],
    set()))
def test_scan_equals_unrolled_loop(cell, variant):
  model = _lm(cell, variant, train=True)
  tokens = _tokens(3)
  carry = rnn.initial_carry(cell, B, H, 2)
  variables = model.init(jax.random.key(0), tokens, carry)
  variables = {k: v for k, v in variables.items() if k != "losses"}
  variables["params"] = _randomize(variables["params"], 4)
  (logits, new_carry), penalty, updates = dnn.apply_with_penalty(
      model, variables, tokens, carry, mutable=["batch_stats"])
  ref_logits, ref_carry, ref_penalty, ref_stats = _unrolled_lm(
      cell, variant, variables, tokens, carry, train=True)
  np.testing.assert_allclose(logits, ref_logits, rtol=1e-4, atol=1e-5)
  for a, b in zip(jax.tree.leaves(new_carry), jax.tree.leaves(ref_carry), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(penalty, ref_penalty, rtol=1e-5)
  if ref_stats:
    for a, b in zip(jax.tree.leaves(updates["batch_stats"]), jax.tree.leaves(ref_stats),
                    strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", smoke_first(["lstm", "tanh"], set()))
def test_batch_norm_statistics_per_time_step_used_in_eval(cell):
  t_len = 3
  train_model = _lm(cell, "bn", train=True)
  tokens = _tokens(t_len, seed=5)
  carry = rnn.initial_carry(cell, B, H, 2)
  variables = train_model.init(jax.random.key(0), tokens, carry)
  params = _randomize(variables["params"], 6)  # biases != 0: no symmetric zero means
  _, updates = train_model.apply({"params": params, "batch_stats": variables["batch_stats"]},
                                 tokens, carry, mutable=["batch_stats"])
  stats = updates["batch_stats"]
  mean_h = stats["rnn0"]["pre"]["norm_h"]["mean"]
  assert mean_h.shape == (t_len, 4 * H if cell == "lstm" else H)
  assert float(jnp.abs(mean_h[0]).max()) == 0.0  # h_0 = 0: W_h h has zero mean at step 0
  assert float(jnp.abs(mean_h[1] - mean_h[2]).max()) > 1e-4  # steps keep their own stats
  x_mean = stats["rnn0"]["pre"]["norm_x"]["mean"]
  assert float(jnp.abs(x_mean[0] - x_mean[1]).max()) > 1e-4
  # Eval uses the running averages of step t at step t: equal to the unrolled eval loop,
  # and different from using step 0's statistics everywhere.
  eval_vars = {"params": params, "batch_stats": stats}
  logits, _ = _lm(cell, "bn", train=False).apply(eval_vars, tokens, carry)
  ref, *_ = _unrolled_lm(cell, "bn", eval_vars, tokens, carry, train=False)
  np.testing.assert_allclose(logits, ref, rtol=1e-4, atol=1e-5)
  step0 = jax.tree.map(lambda a: jnp.broadcast_to(a[:1], a.shape), stats)
  logits0, _ = _lm(cell, "bn", train=False).apply({"params": params, "batch_stats": step0},
                                                   tokens, carry)
  assert float(jnp.abs(logits0[:, 1:] - logits[:, 1:]).max()) > 1e-4
  np.testing.assert_allclose(logits0[:, 0], logits[:, 0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell,variant", smoke_first(
    [(c, v) for c in rnn.CELLS for v in ("baseline", "ln_s", "dn_star")], set()))
def test_state_carried_across_batches(cell, variant):
  model = _lm(cell, variant, train=True)
  tokens = _tokens(6, seed=7)
  carry = rnn.initial_carry(cell, B, H, 2)
  variables = model.init(jax.random.key(0), tokens[:, :3], carry)
  variables = {"params": variables["params"]}
  whole, whole_carry = model.apply(variables, tokens, carry)
  first, carry1 = model.apply(variables, tokens[:, :3], carry)
  second, carry2 = model.apply(variables, tokens[:, 3:], carry1)
  np.testing.assert_allclose(jnp.concatenate([first, second], 1), whole, rtol=1e-5, atol=1e-6)
  for a, b in zip(jax.tree.leaves(carry2), jax.tree.leaves(whole_carry), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  fresh, _ = model.apply(variables, tokens[:, 3:], carry)
  assert float(jnp.abs(fresh - second).max()) > 1e-5  # the carried state matters


def test_bad_specs_fail_clearly():
  with pytest.raises(ValueError, match="Unknown RNN variant 'gn'"):
    rnn.NormSpec(variant="gn")
  with pytest.raises(ValueError, match="odd width"):
    rnn.NormSpec(variant="dn", dn_window=4)
  with pytest.raises(ValueError, match="wider than the hidden size 6"):
    rnn.make_cell("lstm", H, rnn.NormSpec(variant="dn_star", dn_window=61))
  with pytest.raises(ValueError, match="Unknown RNN cell 'gru'"):
    rnn.make_cell("gru", H, rnn.NormSpec())
  with pytest.raises(ValueError, match="wider than the hidden size"):
    rnn.RNNLanguageModel(vocab_size=5, hidden_size=H, cell="tanh",
                         spec=rnn.NormSpec(variant="dn", dn_window=121)).init(
        jax.random.key(0), jnp.zeros((2, 2), jnp.int32), rnn.initial_carry("tanh", 2, H, 2))


@pytest.mark.parametrize("kind", smoke_first(["layer", "divisive"], {"divisive"}))
def test_one_call_over_the_gates_equals_a_call_per_gate(kind):
  import divnorm
  spec = rnn.NormSpec(variant="dn_star" if kind == "divisive" else "ln_star", sigma=1.0,
                      l1_alpha=ALPHA, dn_window=5)
  z = jax.random.normal(jax.random.key(4), (3, 4, 16), jnp.float32) * 3.0 + 1.0
  norm = rnn.Normalizer(kind, spec)
  y, state = norm.apply({}, z, mutable=["losses"])
  outs, penalty = [], 0.0
  for k in range(4):  # the four gates, each normalized by its own call
    if kind == "divisive":
      yk, vk = divnorm.divisive_norm(z[:, k], summation_window=(5,), sigma=1.0,
                                     return_centered=True)
    else:
      yk, vk = divnorm.layer_norm(z[:, k], reduction_axes=-1, sigma=1.0, return_centered=True)
    outs.append(yk)
    penalty += divnorm.l1_penalty(vk, ALPHA)
  np.testing.assert_allclose(y, jnp.stack(outs, 1), rtol=1e-6, atol=1e-6)
  (sown,) = state["losses"]["l1"]
  np.testing.assert_allclose(sown, penalty, rtol=1e-6)
