"""An adversarial pass over the functional API's arguments (issue 21, Build item 4).

Every public function gets wrong types (strings, None, bools, floats for ints), NumPy and
JAX scalars where Python ones are expected, empty and rank-0/1 inputs, integer, bf16,
float16 and float64 inputs, NaN, masks of the wrong dtype or shape, windows wider than
their axis, duplicated and negative axes, and traced values under jit, grad and vmap.

Each case expects either the right number (against float64 NumPy) or an error of a given
type whose message names the argument (and says how to fix the call). A case is

- clean: the right number, or the expected error naming the argument;
- obscure: another error, or one that does not name the argument;
- silently wrong: a wrong number, or a result where the call should have been refused.

``python -m tests.test_arguments`` prints the tally (the report's before/after counts).
Cases whose defect lives outside the argument-handling files are marked ``xfail(strict)``
with the owner in the reason: they start passing when that file is fixed (then drop the
mark).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import divnorm
from divnorm import gdn as G
from divnorm import inputs as I
from divnorm import kernels as DK
from divnorm import weights
from divnorm.local_response import local_response_norm
from tests import reference as ref

# ---- the harness ------------------------------------------------------------------------


class Error(NamedTuple):
  """The call must raise `exc` with a message matching `match` (which names the argument)."""

  exc: type
  match: str


class Case(NamedTuple):
  id: str
  call: Callable[[], Any]
  expect: Error | Callable[[Any], bool]  # an Error, or a predicate on the result
  owner: str | None = None  # set when the fix belongs to a file outside this part
  slow: bool = False  # compiles a whole new dtype: run in the full suite only


def outcome(case: Case) -> tuple[str, str]:
  """``(kind, detail)``: kind is "clean", "obscure" or "silently wrong"."""
  try:
    result = case.call()
  except Exception as e:  # noqa: BLE001  (classifying every error is the point)
    detail = f"{type(e).__name__}: {str(e)[:300]}"
    expect = case.expect
    # TypeError and ValueError are both a clear refusal when the message names the argument
    # (`test_case` also asserts the exact type).
    if (isinstance(expect, Error) and isinstance(e, TypeError | ValueError)
        and re.search(expect.match, str(e))):
      return "clean", detail
    return "obscure", detail
  if isinstance(case.expect, Error):
    return "silently wrong", f"returned instead of raising {case.expect}"
  try:
    ok = bool(case.expect(result))
  except Exception as e:  # noqa: BLE001
    return "silently wrong", f"the result failed its check: {type(e).__name__}: {e}"
  return ("clean", "") if ok else ("silently wrong", "wrong value")


def _close(ref_fn, atol=2e-5, rtol=2e-5, dtype=None):
  """A predicate: the result (or its first element) equals ``ref_fn()`` in the input dtype."""
  def check(result):
    y = result[0] if isinstance(result, tuple) else result
    if dtype is not None and y.dtype != np.dtype(dtype):
      return False
    want = np.asarray(ref_fn(), np.float64)
    got = np.asarray(jnp.asarray(y).astype(jnp.float32), np.float64)
    return got.shape == want.shape and np.allclose(got, want, atol=atol, rtol=rtol,
                                                   equal_nan=True)
  return check


def _shape(shape, dtype=None):
  def check(result):
    y = result[0] if isinstance(result, tuple) else result
    return y.shape == tuple(shape) and (dtype is None or y.dtype == np.dtype(dtype))
  return check


def _same_as(want_fn, atol=1e-5):
  """A predicate: every leaf of the result equals that of ``want_fn()``."""
  def check(result):
    got, want = jax.tree.leaves(result), jax.tree.leaves(want_fn())
    return len(got) == len(want) and all(
        np.allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), atol=atol)
        for a, b in zip(got, want, strict=True))
  return check


def _finite(result):
  return all(np.isfinite(np.asarray(leaf, np.float64)).all() for leaf in jax.tree.leaves(result))


def _x64(f):
  def call():
    with jax.enable_x64(True):
      out = f()
      return jax.tree.map(np.asarray, out)
  return call


# ---- inputs and float64 references --------------------------------------------------------

RNG = np.random.default_rng(0)
X = (1.0 + RNG.normal(size=(2, 5, 5, 4)) * RNG.uniform(0.5, 2.0, size=4)).astype(np.float32)
X2 = X.reshape(20, 10)
STATS = divnorm.BatchStats(jnp.asarray(RNG.normal(size=4), jnp.float32),
                           jnp.asarray(RNG.uniform(0.5, 2.0, size=4), jnp.float32))
NEG_STATS = divnorm.BatchStats(STATS.mean, jnp.asarray([1.0, -0.5, -1e-3, 2.0], jnp.float32))
MASK = RNG.uniform(size=X.shape) > 0.3
KERNEL = RNG.normal(size=(3, 3, 4, 6)).astype(np.float32)
BETA = RNG.uniform(0.5, 2.0, size=4).astype(np.float32)
GAMMA = RNG.uniform(0.0, 0.3, size=(4, 4)).astype(np.float32)
DATA = (RNG.normal(size=(40, 3)) @ RNG.normal(size=(3, 3)) + 2.0).astype(np.float32)
ONE_HOT = np.eye(3, dtype=np.float32)


def _ln(x, axes, sigma=0.0):
  x = np.asarray(x, np.float64)
  m = x.mean(axes, keepdims=True)
  return (x - m) / np.sqrt(((x - m) ** 2).mean(axes, keepdims=True) + sigma**2)


def _rms(x, axes, sigma=0.0):
  x = np.asarray(x, np.float64)
  return x / np.sqrt((x**2).mean(axes, keepdims=True) + sigma**2)


def _dn(x, width, sigma, sup=None):
  sup = width if sup is None else sup
  field = {3: None, 1: width, 2: width} if x.ndim == 4 else {1: width}
  supf = {3: None, 1: sup, 2: sup} if x.ndim == 4 else {1: sup}
  return ref.normalize(x, field, supf, sigma=sigma)[0]


def _gn(x, groups, sigma=0.0):
  x = np.asarray(x, np.float64)
  g = x.reshape(*x.shape[:-1], groups, -1)
  axes = tuple(range(1, x.ndim - 1)) + (x.ndim,)
  return _ln(g, axes, sigma).reshape(x.shape)


def _bn_eval(x, stats, sigma=0.0):
  mean, var = np.asarray(stats.mean, np.float64), np.asarray(stats.var, np.float64)
  return (np.asarray(x, np.float64) - mean) / np.sqrt(np.maximum(var, 0.0) + sigma**2)


def _lrn(x, size, alpha=1e-4, beta=0.75, k=1.0):
  x = np.asarray(x, np.float64)
  c_dim = x.shape[-1]
  out = np.empty_like(x)
  for c in range(c_dim):
    lo, hi = max(0, c - size // 2), min(c_dim - 1, c + (size - 1) // 2)
    out[..., c] = x[..., c] / (k + alpha / size * (x[..., lo : hi + 1] ** 2).sum(-1)) ** beta
  return out


def _gdn(x, beta=BETA, gamma=GAMMA, alpha=2.0, eps=0.5):
  x = np.asarray(x, np.float64)
  return x / (beta + (np.abs(x) ** alpha) @ np.asarray(gamma, np.float64).T) ** eps


def _ema_of_the_mean(result):
  """`result`'s new running mean is ``0.9 * old + 0.1 * mean over (B, H, W)``."""
  new = result[1]
  old = 0.0 if isinstance(new, divnorm.MeanStats) else np.asarray(STATS.mean)
  return np.allclose(new.mean, 0.9 * old + 0.1 * X.astype(np.float64).mean((0, 1, 2)),
                     atol=1e-5)


# ---- the cases --------------------------------------------------------------------------

D = divnorm
CASES: list[Case] = []


def case(id_, call, expect, owner=None, slow=False):
  CASES.append(Case(id_, call, expect, owner, slow))


def dn(x=X, **kw):
  kw.setdefault("sigma", 0.5)
  kw.setdefault("summation_window", 3)
  return D.divisive_norm(x, **kw)


# Windows: an integer-like scalar means the same width on every spatial axis.
for name, w in [("np.int64", np.int64(3)), ("np.int32", np.int32(3)),
                ("jax int", jnp.asarray(3)), ("tuple of np.int64", (np.int64(3), 3)),
                ("list", [3, 3]), ("np.array", np.array([3, 3]))]:
  case(f"divisive_norm summation_window={name}", lambda w=w: dn(summation_window=w),
       _close(lambda: _dn(X, 3, 0.5)))
case("divisive_norm suppression_window=np.int64",
     lambda: dn(suppression_window=np.int64(5)), _close(lambda: _dn(X, 3, 0.5, 5)))
case("divisive_norm rank 2 summation_window=np.int64",
     lambda: dn(X2, summation_window=np.int64(3)), _close(lambda: _dn(X2, 3, 0.5)))
for name, w, exc in [("5.0", 5.0, TypeError), ("None", None, TypeError), ("'3'", "3", TypeError),
                     ("True", True, TypeError), ("(3, 3.0)", (3, 3.0), TypeError),
                     ("4", 4, ValueError), ("0", 0, ValueError), ("-1", -1, ValueError),
                     ("(3,)", (3,), ValueError), ("(3, 3, 3)", (3, 3, 3), ValueError),
                     ("np.float64", np.float64(3.0), TypeError), ("1.5", 1.5, TypeError)]:
  case(f"divisive_norm summation_window={name}", lambda w=w: dn(summation_window=w),
       Error(exc, "summation_window"))
for name, w, exc in [("5.0", 5.0, TypeError), ("'5'", "5", TypeError), ("2", 2, ValueError)]:
  case(f"divisive_norm suppression_window={name}", lambda w=w: dn(suppression_window=w),
       Error(exc, "suppression_window"))
case("divisive_norm suppression_window=(5, None): None reduces the axis whole",
     lambda: dn(suppression_window=(5, None)), _close(lambda: ref.normalize(
         X, {3: None, 1: 3, 2: 3}, {3: None, 1: 5, 2: None}, sigma=0.5)[0]))
case("divisive_norm window wider than the axis = layer norm",
     lambda: dn(summation_window=99, sigma=0.0), _close(lambda: _ln(X, (1, 2, 3))))
case("divisive_norm traced window under jit",
     lambda: jax.jit(lambda w: dn(summation_window=w))(3), Error(TypeError, "summation_window"))
case("divisive_norm across_channels=None", lambda: dn(across_channels=None),
     Error(TypeError, "across_channels"))
case("divisive_norm channel_axis=3.0", lambda: dn(channel_axis=3.0),
     Error(TypeError, "channel_axis"))
case("divisive_norm channel_axis=np.int64(-1)", lambda: dn(channel_axis=np.int64(-1)),
     _close(lambda: _dn(X, 3, 0.5)))
for name, axis, exc in [("7", 7, ValueError), ("0 (the batch)", 0, ValueError),
                        ("'c'", "c", TypeError), ("1.5", 1.5, TypeError)]:
  case(f"divisive_norm rank 2 channel_axis={name}", lambda axis=axis: dn(X2, channel_axis=axis),
       Error(exc, "channel_axis"))
case("divisive_norm rank 2 channel_axis=1", lambda: dn(X2, channel_axis=1),
     _close(lambda: _dn(X2, 3, 0.5)))
case("divisive_norm border='same'", lambda: dn(border="same"), Error(ValueError, "border"))
case("divisive_norm rank 1", lambda: dn(X[0, 0, 0]), Error(ValueError, "rank"))
case("divisive_norm empty spatial axis", lambda: dn(np.zeros((2, 0, 5, 4), np.float32)),
     _shape((2, 0, 5, 4)))

# Fields: {axis: width} with NumPy and JAX integers; duplicated and negative axes.
case("normalize {np.int64: np.int64}", lambda: D.normalize(X, {np.int64(1): np.int64(3)}),
     _close(lambda: ref.normalize(X, {1: 3})[0]))
case("normalize axes of jax ints", lambda: D.normalize(X, (jnp.asarray(1), jnp.asarray(2))),
     _close(lambda: _ln(X, (1, 2))))
case("normalize negative axes", lambda: D.normalize(X, (-3, -2, -1)),
     _close(lambda: _ln(X, (1, 2, 3))))
case("normalize {1: 3.0}", lambda: D.normalize(X, {1: 3.0}), Error(TypeError, "window"))
case("normalize axis twice", lambda: D.normalize(X, (1, -3)), Error(ValueError, "twice"))
case("normalize axis 4 of rank 4", lambda: D.normalize(X, 4), Error(ValueError, "out of range"))
case("normalize axis 1.0", lambda: D.normalize(X, (1.0,)), Error(TypeError, "ints"))
case("normalize field None", lambda: D.normalize(X, None), Error(TypeError, "summation"))
case("normalize field '1'", lambda: D.normalize(X, "1"), Error(TypeError, "summation"))
case("normalize suppression even width", lambda: D.normalize(X, {1: 3}, {1: 4}),
     Error(ValueError, "suppression"))
case("normalize empty field gives 0", lambda: D.normalize(X, ()), _close(lambda: 0 * X))
case("grouped_field size=2.0", lambda: D.grouped_field((1, 2), -1, 2.0, X.shape),
     Error(TypeError, "size"))
case("grouped_field size=True", lambda: D.grouped_field((1, 2), -1, True, X.shape),
     Error(TypeError, "size"))
case("grouped_field size=np.int64(2)", lambda: D.grouped_field((1, 2), -1, np.int64(2), X.shape),
     lambda f: f.groups == ((3, 2),))
case("grouped_field size=3 of 4", lambda: D.grouped_field((1, 2), -1, 3, X.shape),
     Error(ValueError, "divisor"))

# sigma: a real number (Python, NumPy or JAX scalar, or an array), finite and >= 0.
SIGMA_CALLS = {
  "normalize": lambda s: D.normalize(X, (1, 2, 3), sigma=s),
  "layer_norm": lambda s: D.layer_norm(X, sigma=s),
  "instance_norm": lambda s: D.instance_norm(X, sigma=s),
  "group_norm": lambda s: D.group_norm(X, num_groups=2, sigma=s),
  "rms_norm": lambda s: D.rms_norm(X, sigma=s),
  "divisive_norm": lambda s: dn(sigma=s),
  "batch_norm": lambda s: D.batch_norm(X, STATS, training=True, sigma=s),
  "batch_norm eval": lambda s: D.batch_norm(X, STATS, training=False, sigma=s),
  "batch_renorm": lambda s: D.batch_renorm(X, STATS, training=True, sigma=s),
  "batch_instance_norm": lambda s: D.batch_instance_norm(X, STATS, rho=0.5, training=True,
                                                        sigma=s),
  "switchable_norm": lambda s: D.switchable_norm(X, STATS, mean_weights=ONE_HOT[0],
                                                 var_weights=ONE_HOT[0], training=True, sigma=s),
  "weight_standardization": lambda s: D.weight_standardization(KERNEL, sigma=s),
}
for fn, call in SIGMA_CALLS.items():
  for name, s in [("'0.5'", "0.5"), ("None", None), ("True", True), ("0.5j", 0.5j)]:
    case(f"{fn} sigma={name}", lambda call=call, s=s: call(s), Error(TypeError, "sigma"))
  for name, s in [("nan", np.nan), ("-0.5", -0.5)]:
    case(f"{fn} sigma={name}", lambda call=call, s=s: call(s), Error(ValueError, "sigma"))
for name, s in [("np.float32", np.float32(0.5)), ("np.float16", np.float16(0.5)),
                ("jax scalar", jnp.asarray(0.5)), ("jax bf16", jnp.asarray(0.5, jnp.bfloat16)),
                ("np.int64", np.int64(1)), ("list", [0.5]), ("0-d np array", np.array(0.5))]:
  s_val = float(np.asarray(s, np.float64).reshape(-1)[0])
  case(f"layer_norm sigma={name}", lambda s=s: D.layer_norm(X, sigma=s),
       _close(lambda v=s_val: _ln(X, -1, v), atol=1e-3 if "bf16" in name else 2e-5))
  case(f"divisive_norm sigma={name}", lambda s=s: dn(sigma=s),
       _close(lambda v=s_val: _dn(X, 3, v), atol=1e-3 if "bf16" in name else 2e-5))
case("batch_norm eval sigma=np.float32", lambda: D.batch_norm(
    X, STATS, training=False, sigma=np.float32(0.1)), _close(lambda: _bn_eval(X, STATS, 0.1)))
case("layer_norm traced sigma (jit)", lambda: jax.jit(lambda s: D.layer_norm(X, sigma=s))(0.3),
     _close(lambda: _ln(X, -1, 0.3)))
case("layer_norm grad wrt sigma finite",
     lambda: jax.grad(lambda s: jnp.sum(D.layer_norm(X, sigma=s) ** 2))(0.0), _finite, slow=True)
case("layer_norm sigma of the statistics' shape", lambda: D.layer_norm(
    X, sigma=np.full((2, 5, 5, 1), 0.2, np.float32)), _close(lambda: _ln(X, -1, 0.2)))
case("layer_norm sigma that changes the shape", lambda: D.layer_norm(
    X, sigma=np.full((3, 1), 0.2, np.float32)), Error(ValueError, "sigma"))

# The other real hyperparameters.
MOMENTUM_CALLS = {
  "batch_norm": lambda m: D.batch_norm(X, STATS, training=True, momentum=m),
  "mean_only_batch_norm": lambda m: D.mean_only_batch_norm(
      X, D.mean_stats_init(X), training=True, momentum=m),
  "batch_renorm": lambda m: D.batch_renorm(X, STATS, training=True, momentum=m),
  "batch_instance_norm": lambda m: D.batch_instance_norm(X, STATS, rho=0.5, training=True,
                                                        momentum=m),
  "switchable_norm": lambda m: D.switchable_norm(X, STATS, mean_weights=ONE_HOT[2],
                                                 var_weights=ONE_HOT[2], training=True,
                                                 momentum=m),
}
for fn, call in MOMENTUM_CALLS.items():
  for name, m, exc in [("'0.9'", "0.9", TypeError), ("None", None, TypeError),
                       ("True", True, TypeError), ("1.5", 1.5, ValueError),
                       ("nan", np.nan, ValueError)]:
    case(f"{fn} momentum={name}", lambda call=call, m=m: call(m), Error(exc, "momentum"))
  for name, m in [("np.float32", np.float32(0.9)), ("jax scalar", jnp.asarray(0.9))]:
    case(f"{fn} momentum={name}", lambda call=call, m=m: call(m), _ema_of_the_mean)
case("batch_norm traced momentum (jit)", lambda: jax.jit(
    lambda m: D.batch_norm(X, STATS, training=True, momentum=m))(0.9)[1].var,
     _close(lambda: 0.9 * np.asarray(STATS.var) + 0.1 * np.asarray(X, np.float64).var((0, 1, 2))))

for name, a, exc in [("'0.1'", "0.1", TypeError), ("None", None, TypeError),
                     ("-1", -1.0, ValueError), ("nan", np.nan, ValueError)]:
  case(f"l1_penalty alpha={name}", lambda a=a: D.l1_penalty(X, a), Error(exc, "alpha"))
case("l1_penalty alpha=np.float32", lambda: D.l1_penalty(X, np.float32(0.5)),
     _close(lambda: 0.5 * np.abs(X.astype(np.float64)).mean()))
case("l1_penalty alpha of shape (3,)", lambda: D.l1_penalty(X, np.ones(3, np.float32)),
     Error(ValueError, "alpha"))
case("l1_penalty of an empty array", lambda: D.l1_penalty(np.zeros((0, 3), np.float32), 1.0),
     _close(lambda: 0.0))
case("l1_penalty rank 0", lambda: D.l1_penalty(np.float32(-2.0), 0.5), _close(lambda: 1.0))

for arg, values in [("rmax", [("'3'", "3", TypeError), ("None", None, TypeError),
                              ("0.5", 0.5, ValueError), ("nan", np.nan, ValueError)]),
                    ("dmax", [("'5'", "5", TypeError), ("None", None, TypeError),
                              ("-1", -1.0, ValueError), ("nan", np.nan, ValueError)])]:
  for name, v, exc in values:
    case(f"batch_renorm {arg}={name}", lambda arg=arg, v=v: D.batch_renorm(
        X, STATS, training=True, **{arg: v}), Error(exc, arg))
case("batch_renorm rmax=np.float32(1), dmax=jnp 0 = batch_norm", lambda: D.batch_renorm(
    X, STATS, training=True, rmax=np.float32(1.0), dmax=jnp.asarray(0.0)),
     _close(lambda: _ln(X, (0, 1, 2))))
case("batch_renorm rmax=dmax=inf: no clipping, the running statistics", lambda: D.batch_renorm(
    X, STATS, training=True, rmax=np.inf, dmax=np.inf, sigma=0.1),
     _close(lambda: _bn_eval(X, STATS, 0.1), rtol=1e-4))
case("batch_renorm traced rmax/dmax (jit)", lambda: jax.jit(lambda r, d: D.batch_renorm(
    X, STATS, training=True, rmax=r, dmax=d)[0])(1.0, 0.0), _close(lambda: _ln(X, (0, 1, 2))))

for name, r, exc in [("None", None, TypeError), ("'0.5'", "0.5", TypeError),
                     ("1.5", 1.5, ValueError), ("nan", np.nan, ValueError),
                     ("shape (3,)", np.full(3, 0.5, np.float32), ValueError)]:
  case(f"batch_instance_norm rho={name}", lambda r=r: D.batch_instance_norm(
      X, STATS, rho=r, training=True), Error(exc, "rho"))
case("batch_instance_norm rho=np.float32(0) = instance_norm", lambda: D.batch_instance_norm(
    X, STATS, rho=np.float32(0.0), training=True), _close(lambda: _ln(X, (1, 2))))
case("batch_instance_norm traced rho (grad finite)", lambda: jax.grad(
    lambda r: jnp.sum(D.batch_instance_norm(X, STATS, rho=r, training=True)[0] ** 2))(0.5),
     _finite)

for arg in ("mean_weights", "var_weights"):
  for name, w, exc in [("None", None, TypeError), ("'abc'", "abc", TypeError),
                       ("shape (2,)", np.ones(2, np.float32) / 2, ValueError)]:
    case(f"switchable_norm {arg}={name}", lambda arg=arg, w=w: D.switchable_norm(
        X, STATS, **{"mean_weights": ONE_HOT[0], "var_weights": ONE_HOT[0], arg: w},
        training=True), Error(exc, arg))
case("switchable_norm var_weights with a negative weight", lambda: D.switchable_norm(
    X, STATS, mean_weights=ONE_HOT[0], var_weights=[1.5, -0.5, 0.0], training=True),
     Error(ValueError, "var_weights"))
case("switchable_norm mean_weights with a NaN", lambda: D.switchable_norm(
    X, STATS, mean_weights=[np.nan, 1.0, 0.0], var_weights=ONE_HOT[0], training=True),
     Error(ValueError, "mean_weights"))
case("switchable_norm one-hot layer weights = layer_norm", lambda: D.switchable_norm(
    X, STATS, mean_weights=ONE_HOT[1], var_weights=[0.0, 1.0, 0.0], training=True),
     _close(lambda: _ln(X, (1, 2, 3))))

# Integer arguments: ints (Python, NumPy, or concrete JAX), never floats or bools.
for name, g, exc in [("2.0", 2.0, TypeError), ("True", True, TypeError), ("'2'", "2", TypeError),
                     ("0", 0, ValueError), ("-2", -2, ValueError), ("3", 3, ValueError),
                     ("np.float32(2)", np.float32(2), TypeError)]:
  case(f"group_norm num_groups={name}", lambda g=g: D.group_norm(X, num_groups=g),
       Error(exc, "num_groups"))
for name, g in [("np.int64", np.int64(2)), ("jax int", jnp.asarray(2))]:
  case(f"group_norm num_groups={name}", lambda g=g: D.group_norm(X, num_groups=g),
       _close(lambda: _gn(X, 2)))
for name, g, exc in [("2.0", 2.0, TypeError), ("True", True, TypeError),
                     ("3", 3, ValueError)]:
  case(f"group_norm group_size={name}", lambda g=g: D.group_norm(
      X, num_groups=None, group_size=g), Error(exc, "group_size"))
case("group_norm group_size=np.int64(2)", lambda: D.group_norm(
    X, num_groups=None, group_size=np.int64(2)), _close(lambda: _gn(X, 2)))
case("group_norm both None", lambda: D.group_norm(X, num_groups=None),
     Error(ValueError, "num_groups"))
case("group_norm rank 2", lambda: D.group_norm(X2, num_groups=np.int64(5)),
     _close(lambda: _gn(X2, 5)))
case("group_norm rank 2 num_groups=2.0", lambda: D.group_norm(X2, num_groups=2.0),
     Error(TypeError, "num_groups"))
case("group_norm traced num_groups (jit)", lambda: jax.jit(
    lambda g: D.group_norm(X, num_groups=g))(2), Error(TypeError, "num_groups"))
case("group_norm no channels", lambda: D.group_norm(np.zeros((2, 3, 0), np.float32),
                                                    num_groups=2), _shape((2, 3, 0)))
case("group_norm rank 1", lambda: D.group_norm(X[0, 0, 0], num_groups=2),
     Error(ValueError, "group_norm"))
case("group_norm channel_axis=1 (NCHW)", lambda: D.group_norm(
    np.moveaxis(X, -1, 1), num_groups=2, channel_axis=1),
     _close(lambda: np.moveaxis(_gn(X, 2), -1, 1)))

for fn, call in {
    "instance_norm": lambda a: D.instance_norm(X, channel_axis=a),
    "group_norm": lambda a: D.group_norm(X, num_groups=2, channel_axis=a),
    "batch_instance_norm": lambda a: D.batch_instance_norm(X, STATS, rho=0.5, training=True,
                                                          channel_axis=a),
    "switchable_norm": lambda a: D.switchable_norm(X, STATS, mean_weights=ONE_HOT[0],
                                                   var_weights=ONE_HOT[0], training=True,
                                                   channel_axis=a),
    "gdn": lambda a: G.gdn(X, beta=BETA, gamma=GAMMA, channel_axis=a),
    "local_response_norm": lambda a: local_response_norm(X, size=3, channel_axis=a),
}.items():
  for name, a, exc in [("3.0", 3.0, TypeError), ("None", None, TypeError),
                       ("'-1'", "-1", TypeError), ("4", 4, ValueError), ("-5", -5, ValueError)]:
    case(f"{fn} channel_axis={name}", lambda call=call, a=a: call(a), Error(exc, "channel_axis"))
case("instance_norm channel_axis=0 (batch)", lambda: D.instance_norm(X, channel_axis=0),
     Error(ValueError, "channel_axis"))
case("instance_norm channel_axis=np.int64(-1)", lambda: D.instance_norm(
    X, channel_axis=np.int64(-1)), _close(lambda: _ln(X, (1, 2))))
case("gdn channel_axis=np.int64(1) (NCHW)", lambda: G.gdn(
    np.moveaxis(X, -1, 1), beta=BETA, gamma=GAMMA, channel_axis=np.int64(1)),
     _close(lambda: np.moveaxis(_gdn(X), -1, 1)))

for name, n, exc in [("2.0", 2.0, TypeError), ("True", True, TypeError), ("-1", -1, ValueError),
                     ("'2'", "2", TypeError)]:
  case(f"spectral_norm n_steps={name}", lambda n=n: weights.spectral_norm(
      KERNEL, D.spectral_norm_init(KERNEL, jax.random.key(0)), n_steps=n),
       Error(exc, "n_steps"))
case("spectral_norm n_steps=np.int64(30)", lambda: weights.spectral_norm(
    KERNEL, D.spectral_norm_init(KERNEL, jax.random.key(0)), n_steps=np.int64(30))[2],
     _close(lambda: np.linalg.svd(KERNEL.reshape(-1, 6).astype(np.float64))[1][0], rtol=1e-3))

for name, s, exc in [("5.0", 5.0, TypeError), ("True", True, TypeError), ("0", 0, ValueError),
                     ("'5'", "5", TypeError), ("None", None, TypeError)]:
  case(f"local_response_norm size={name}", lambda s=s: local_response_norm(X, size=s),
       Error(exc, "size"))
case("local_response_norm size=np.int64(3)", lambda: local_response_norm(X, size=np.int64(3)),
     _close(lambda: _lrn(X, 3)))
case("local_response_norm size wider than the channels", lambda: local_response_norm(
    X, size=9, alpha=1.0), _close(lambda: _lrn(X, 9, alpha=1.0)))
for arg in ("alpha", "beta", "k"):
  for name, v, exc in [("'1'", "1", TypeError), ("None", None, TypeError),
                       ("nan", np.nan, ValueError), ("-1", -1.0, ValueError)]:
    case(f"local_response_norm {arg}={name}", lambda arg=arg, v=v: local_response_norm(
        X, size=3, **{arg: v}), Error(exc, arg))
case("local_response_norm NumPy/JAX scalars", lambda: local_response_norm(
    X, size=3, alpha=np.float32(0.5), beta=jnp.asarray(0.75), k=np.float16(2.0)),
     _close(lambda: _lrn(X, 3, 0.5, 0.75, 2.0)))
case("local_response_norm traced alpha (jit)", lambda: jax.jit(
    lambda a: local_response_norm(X, size=3, alpha=a))(0.5), _close(lambda: _lrn(X, 3, 0.5)))
case("local_response_norm rank 1", lambda: local_response_norm(X[0, 0, 0], size=3),
     Error(ValueError, "rank|batch"))

# GDN: beta > 0, gamma >= 0, real exponents; parameters of the right shape.
for name, arg, v, exc in [
    ("None", "beta", None, TypeError), ("'1'", "beta", "1", TypeError),
    ("zeros", "beta", np.zeros(4, np.float32), ValueError),
    ("negative", "beta", -BETA, ValueError), ("of shape (3,)", "beta", BETA[:3], ValueError),
    ("None", "gamma", None, TypeError), ("negative", "gamma", -GAMMA, ValueError),
    ("of shape (3, 4)", "gamma", GAMMA[:3], ValueError),
    ("'2'", "alpha", "2", TypeError), ("None", "alpha", None, TypeError),
    ("-1", "alpha", -1.0, ValueError), ("nan", "alpha", np.nan, ValueError),
    ("'0.5'", "epsilon", "0.5", TypeError), ("None", "epsilon", None, TypeError),
    ("inf", "epsilon", np.inf, ValueError), ("'yes'", "inverse", "yes", TypeError)]:
  case(f"gdn {arg}={name}", lambda arg=arg, v=v: G.gdn(
      X, **{"beta": BETA, "gamma": GAMMA, arg: v}), Error(exc, arg))
case("gdn alpha=np.float32(2), epsilon=jnp 0.5", lambda: G.gdn(
    X, beta=BETA, gamma=GAMMA, alpha=np.float32(2.0), epsilon=jnp.asarray(0.5)),
     _close(lambda: _gdn(X)))
case("gdn traced alpha and epsilon (jit)", lambda: jax.jit(lambda a, e: G.gdn(
    X, beta=BETA, gamma=GAMMA, alpha=a, epsilon=e))(1.5, 0.7),
     _close(lambda: _gdn(X, alpha=1.5, eps=0.7)))
case("gdn traced beta/gamma (grad finite)", lambda: jax.grad(lambda b, g: jnp.sum(
    G.gdn(X, beta=b, gamma=g)), argnums=(0, 1))(BETA, GAMMA), _finite)
case("gdn rank 1 (one position)", lambda: G.gdn(X[0, 0, 0], beta=BETA, gamma=GAMMA),
     _close(lambda: _gdn(X[0, 0, 0])))
case("gdn rank 0", lambda: G.gdn(np.float32(1.0), beta=BETA, gamma=GAMMA),
     Error(ValueError, "channel_axis|rank"))
case("gdn NaN stays at its position", lambda: G.gdn(
    np.where(np.arange(4) == 0, np.nan, X[:1, :1, :1]).astype(np.float32) * np.ones(
        (2, 1, 1, 1), np.float32), beta=BETA, gamma=GAMMA),
     lambda y: np.isnan(np.asarray(y)).all(-1).all())
for name, c, exc in [("3.0", 3.0, TypeError), ("True", True, TypeError), ("0", 0, ValueError)]:
  case(f"gdn_init channels={name}", lambda c=c: G.gdn_init(c), Error(exc, "channels"))
case("gdn_init channels=np.int64(3)", lambda: G.gdn_values(G.gdn_init(np.int64(3))),
     lambda bg: np.allclose(bg[0], 1.0) and np.allclose(bg[1], 0.1 * np.eye(3)))
for arg, v, exc in [("beta", "1", TypeError), ("beta", 0.0, ValueError), ("gamma", None, TypeError),
                    ("gamma", -0.1, ValueError)]:
  case(f"gdn_init {arg}={v!r}", lambda arg=arg, v=v: G.gdn_init(3, **{arg: v}), Error(exc, arg))
case("gdn_values of a (beta, gamma) tuple", lambda: G.gdn_values(tuple(G.gdn_init(3))),
     lambda bg: np.allclose(bg[0], 1.0) and np.allclose(bg[1], 0.1 * np.eye(3)))
case("gdn_values(None)", lambda: G.gdn_values(None), Error(TypeError, "params"))
case("nonnegative of a Python float", lambda: G.nonnegative(0.5), _close(lambda: 0.25))
case("nonnegative minimum='a'", lambda: G.nonnegative(jnp.ones(3), minimum="a"),
     Error(TypeError, "minimum"))
case("nonnegative_init minimum=None", lambda: G.nonnegative_init(1.0, minimum=None),
     Error(TypeError, "minimum"))

# Running statistics: a BatchStats (or MeanStats), never None or a bare tuple.
BN_STATS_CALLS = {
  "batch_norm": lambda s: D.batch_norm(X, s, training=True),
  "batch_norm eval": lambda s: D.batch_norm(X, s, training=False),
  "batch_renorm": lambda s: D.batch_renorm(X, s, training=True),
  "batch_instance_norm": lambda s: D.batch_instance_norm(X, s, rho=0.5, training=True),
  "switchable_norm": lambda s: D.switchable_norm(X, s, mean_weights=ONE_HOT[0],
                                                 var_weights=ONE_HOT[0], training=True),
}
for fn, call in BN_STATS_CALLS.items():
  for name, s in [("None", None), ("tuple", tuple(STATS)), ("dict", STATS._asdict()),
                  ("MeanStats", D.MeanStats(STATS.mean))]:
    case(f"{fn} stats={name}", lambda call=call, s=s: call(s),
         Error(TypeError, r"stats.*batch_stats_init"))
  case(f"{fn} stats of the wrong shape", lambda call=call: call(D.batch_stats_init(X2)),
       Error(ValueError, "stats"))
for name, s in [("None", None), ("array", STATS.mean)]:
  case(f"mean_only_batch_norm stats={name}", lambda s=s: D.mean_only_batch_norm(
      X, s, training=True), Error(TypeError, r"stats.*mean_stats_init"))
for fn, init in [("batch_stats_init", D.batch_stats_init), ("mean_stats_init", D.mean_stats_init)]:
  case(f"{fn}(None)", lambda init=init: init(None), Error(TypeError, "x_or_shape"))
  case(f"{fn}('abc')", lambda init=init: init("abc"), Error(TypeError, "x_or_shape"))
  case(f"{fn}(shape with np ints)", lambda init=init: init((np.int64(2), np.int64(4))),
       lambda s: s.mean.shape == (4,))
  case(f"{fn} feature_axes=1.0", lambda init=init: init(X, feature_axes=1.0),
       Error(TypeError, "feature_axes"))

case("batch_stats_init dtype=int32", lambda: D.batch_stats_init(X, dtype=jnp.int32),
     Error(TypeError, "dtype"))
case("batch_norm stats of int dtype", lambda: D.batch_norm(X, D.BatchStats(
    jnp.zeros(4, jnp.int32), jnp.ones(4, jnp.int32)), training=True), Error(TypeError, "stats"))

# Stored variances below zero (a damaged checkpoint; flax issue 1491) are clamped at 0.
case("batch_norm eval with a negative running variance", lambda: D.batch_norm(
    X, NEG_STATS, training=False, sigma=0.1), _close(lambda: _bn_eval(X, NEG_STATS, 0.1),
                                                      rtol=1e-4))
case("batch_renorm training with a negative running variance", lambda: D.batch_renorm(
    X, NEG_STATS, training=True, sigma=0.1), _finite)
case("batch_renorm eval with a negative running variance", lambda: D.batch_renorm(
    X, NEG_STATS, training=False, sigma=0.1), _close(lambda: _bn_eval(X, NEG_STATS, 0.1),
                                                      rtol=1e-4))
case("batch_instance_norm eval with a negative running variance", lambda: D.batch_instance_norm(
    X, NEG_STATS, rho=1.0, training=False, sigma=0.1),
     _close(lambda: _bn_eval(X, NEG_STATS, 0.1), rtol=1e-4))
case("switchable_norm eval with a negative running variance", lambda: D.switchable_norm(
    X, NEG_STATS, mean_weights=ONE_HOT[2], var_weights=ONE_HOT[2], training=False, sigma=0.1),
     _close(lambda: _bn_eval(X, NEG_STATS, 0.1), rtol=1e-4))
case("standardize apply with a negative variance", lambda: I.standardize.apply(
    DATA, I.MeanVar(jnp.zeros((1, 3)), jnp.asarray([[1.0, -1.0, 4.0]]), 0.01)),
     _close(lambda: DATA / np.sqrt(np.maximum([1.0, -1.0, 4.0], 0) + 0.01), rtol=1e-4))

# Bools: a Python or NumPy bool (or a concrete JAX one); a string or None is refused.
TRAINING_CALLS = {
  "batch_norm": lambda t: D.batch_norm(X, STATS, training=t),
  "mean_only_batch_norm": lambda t: D.mean_only_batch_norm(X, D.mean_stats_init(X), training=t),
  "batch_renorm": lambda t: D.batch_renorm(X, STATS, training=t),
  "batch_instance_norm": lambda t: D.batch_instance_norm(X, STATS, rho=0.5, training=t),
  "switchable_norm": lambda t: D.switchable_norm(X, STATS, mean_weights=ONE_HOT[0],
                                                 var_weights=ONE_HOT[0], training=t),
}
for fn, call in TRAINING_CALLS.items():
  for name, t in [("None", None), ("'no'", "no"), ("1", 1)]:
    case(f"{fn} training={name}", lambda call=call, t=t: call(t), Error(TypeError, "training"))
  case(f"{fn} traced training (jit)", lambda call=call: jax.jit(call)(False),
       Error(TypeError, "training"))
case("batch_norm training=np.bool_(False)", lambda: D.batch_norm(
    X, STATS, training=np.bool_(False)), _close(lambda: _bn_eval(X, STATS)))
case("batch_norm training=jnp False", lambda: D.batch_norm(
    X, STATS, training=jnp.asarray(False)), _close(lambda: _bn_eval(X, STATS)))
for fn, call in {
    "batch_norm": lambda r: D.batch_norm(X, STATS, training=True, return_centered=r),
    "batch_renorm": lambda r: D.batch_renorm(X, STATS, training=True, return_centered=r),
    "group_norm rank 2": lambda r: D.group_norm(X2, num_groups=2, return_centered=r),
}.items():
  case(f"{fn} return_centered='yes'", lambda call=call: call("yes"),
       Error(TypeError, "return_centered"))
for fn, call in {
    "layer_norm": lambda **kw: D.layer_norm(X, **kw),
    "normalize": lambda **kw: D.normalize(X, (1,), **kw),
}.items():
  for arg in ("return_centered", "fast_variance"):
    case(f"{fn} {arg}='yes'", lambda call=call, arg=arg: call(**{arg: "yes"}),
         Error(TypeError, arg))

# Inputs: floating arrays only; every dtype keeps its dtype; empty and small ranks.
STATISTICS_OUT = {"l1_penalty", "kernel_norm", "standardize.fit", "min_max.fit"}
# The quick tier keeps float16 and float64 for these, bfloat16 for the normalizers.
QUICK_DTYPES = {"layer_norm", "gdn"}
SLOW_BF16 = {"standardize.fit", "min_max.fit", "zca", "spectral_norm", "kernel_norm",
             "weight_norm", "weight_standardization"}


def _same_as_float32(call, dtype, keeps_dtype):
  """A predicate: the result equals the float32 call on the same (rounded) input, and its
  first output has the input's dtype when the function keeps dtypes."""
  atol = {np.dtype(jnp.bfloat16): 0.05, np.dtype(np.float16): 5e-3}.get(np.dtype(dtype), 1e-4)
  # The same values in float32: X rounded to `dtype` (float64 holds X exactly).
  rounded = X if np.dtype(dtype) == np.float64 else np.asarray(
      jnp.asarray(X, dtype).astype(jnp.float32))

  def check(result):
    want = call(rounded)
    got, want = jax.tree.leaves(result), jax.tree.leaves(want)
    if keeps_dtype and got[0].dtype != np.dtype(dtype):
      return False
    return len(got) == len(want) and all(
        np.allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), atol=atol, rtol=atol)
        for a, b in zip(got, want, strict=True))
  return check

INPUT_CALLS = {
  "normalize": lambda x: D.normalize(x, (1,)),
  "layer_norm": lambda x: D.layer_norm(x),
  "instance_norm": lambda x: D.instance_norm(x),
  "group_norm": lambda x: D.group_norm(x, num_groups=2),
  "rms_norm": lambda x: D.rms_norm(x),
  "divisive_norm": lambda x: dn(x),
  "batch_norm": lambda x: D.batch_norm(x, STATS, training=True),
  "mean_only_batch_norm": lambda x: D.mean_only_batch_norm(x, D.mean_stats_init(X),
                                                           training=True),
  "batch_renorm": lambda x: D.batch_renorm(x, STATS, training=True),
  "batch_instance_norm": lambda x: D.batch_instance_norm(x, STATS, rho=0.5, training=True),
  "switchable_norm": lambda x: D.switchable_norm(x, STATS, mean_weights=ONE_HOT[0],
                                                 var_weights=ONE_HOT[0], training=True),
  "l1_penalty": lambda x: D.l1_penalty(x, 1.0),
  "local_response_norm": lambda x: local_response_norm(x, size=3),
  "gdn": lambda x: G.gdn(x, beta=BETA, gamma=GAMMA),
  "weight_standardization": lambda x: D.weight_standardization(x),
  "weight_norm": lambda x: D.weight_norm(x, jnp.ones(4)),
  "kernel_norm": lambda x: weights.kernel_norm(x),
  "spectral_norm": lambda x: D.spectral_norm(x, jnp.ones(4) / 2),
  "standardize.fit": lambda x: I.standardize.fit(x),
  "min_max.fit": lambda x: I.min_max.fit(x),
  "zca": lambda x: I.zca.apply(x, I.zca.fit(x, epsilon=0.1)),
}
for fn, call in INPUT_CALLS.items():
  for name, x in [("int32", X.astype(np.int32)), ("bool", X > 0),
                  ("complex", X.astype(np.complex64))]:
    case(f"{fn} x of dtype {name}", lambda call=call, x=x: call(x), Error(TypeError, "float"))
  for name, x in [("None", None), ("'abc'", "abc")]:
    case(f"{fn} x={name}", lambda call=call, x=x: call(x),
         Error(TypeError, rf"\b(x|v|w|kernel|data)={re.escape(name)} is not an array"))
  for dtype in (jnp.bfloat16, jnp.float16):
    case(f"{fn} x of dtype {np.dtype(dtype).name}", lambda call=call, dtype=dtype: call(
        jnp.asarray(X, dtype)), _same_as_float32(call, dtype, fn not in STATISTICS_OUT),
         slow=fn in SLOW_BF16 if dtype == jnp.bfloat16 else fn not in QUICK_DTYPES)
  case(f"{fn} x of dtype float64 (x64)", _x64(lambda call=call: call(X.astype(np.float64))),
       _same_as_float32(call, np.float64, fn not in STATISTICS_OUT),
       slow=fn not in QUICK_DTYPES)
  case(f"{fn} x as a nested list", lambda call=call: call(X.tolist()),
       lambda r, call=call: all(np.allclose(a, b, atol=1e-5) for a, b in zip(
           jax.tree.leaves(r), jax.tree.leaves(call(X)), strict=True)),
       slow=fn not in QUICK_DTYPES)

# Empty inputs and batches.
case("layer_norm rank 0", lambda: D.layer_norm(np.float32(1.0)),
     Error(ValueError, "reduction_axes"))
case("layer_norm rank 1", lambda: D.layer_norm(X[0, 0, 0]), _close(lambda: _ln(X[0, 0, 0], -1)))
case("rms_norm rank 1", lambda: D.rms_norm(X[0, 0, 0]), _close(lambda: _rms(X[0, 0, 0], -1)))
case("instance_norm rank 2", lambda: D.instance_norm(X2), Error(ValueError, "rank"))
case("batch_norm rank 0", lambda: D.batch_norm(np.float32(1.0), STATS, training=True),
     Error(ValueError, "feature_axes"))
case("batch_norm empty batch in training", lambda: D.batch_norm(
    np.zeros((0, 4), np.float32), STATS, training=True), Error(ValueError, "no entries"))
case("batch_norm empty batch in evaluation", lambda: D.batch_norm(
    np.zeros((0, 4), np.float32), STATS, training=False), _shape((0, 4)))
case("mean_only_batch_norm empty batch", lambda: D.mean_only_batch_norm(
    np.zeros((0, 4), np.float32), D.mean_stats_init((1, 4)), training=True),
     Error(ValueError, "no entries"))
case("switchable_norm empty batch", lambda: D.switchable_norm(
    np.zeros((0, 2, 2, 4), np.float32), STATS, mean_weights=ONE_HOT[0], var_weights=ONE_HOT[0],
    training=True), Error(ValueError, "no entries"))
case("batch_renorm empty batch", lambda: D.batch_renorm(
    np.zeros((0, 4), np.float32), STATS, training=True), Error(ValueError, "no entries"))
case("batch_norm feature_axes=(3, -1)", lambda: D.batch_norm(
    X, STATS, training=True, feature_axes=(3, -1)), Error(ValueError, "feature_axes"))
case("batch_norm feature_axes=np.int64(-1)", lambda: D.batch_norm(
    X, STATS, training=True, feature_axes=np.int64(-1)), _close(lambda: _ln(X, (0, 1, 2))))
case("batch_norm NaN stays in its feature", lambda: D.batch_norm(
    np.where(np.arange(4) == 1, np.nan, X).astype(np.float32), STATS, training=True),
     lambda r: np.isnan(np.asarray(r[0])[..., 1]).all() and np.isfinite(
         np.asarray(r[0])[..., [0, 2, 3]]).all() and np.isfinite(np.asarray(r[1].mean)[[0, 2, 3]])
     .all())
case("rms_norm empty axis", lambda: D.rms_norm(np.zeros((3, 0), np.float32)), _shape((3, 0)))
case("local_response_norm no channels", lambda: local_response_norm(
    np.zeros((2, 3, 0), np.float32), size=3), _shape((2, 3, 0)))
case("gdn no channels", lambda: G.gdn(np.zeros((2, 0), np.float32), beta=np.zeros(0),
                                      gamma=np.zeros((0, 0))), _shape((2, 0)))

# Masks: boolean, broadcastable to x.
MASK_CALLS = {
  "normalize": lambda m: D.normalize(X, (1, 2), mask=m),
  "layer_norm": lambda m: D.layer_norm(X, mask=m),
  "instance_norm": lambda m: D.instance_norm(X, mask=m),
  "group_norm": lambda m: D.group_norm(X, num_groups=2, mask=m),
  "group_norm rank 2": lambda m: D.group_norm(X2, num_groups=2, mask=m),
  "rms_norm": lambda m: D.rms_norm(X, mask=m),
  "divisive_norm": lambda m: dn(mask=m),
  "batch_norm": lambda m: D.batch_norm(X, STATS, training=True, mask=m),
  "mean_only_batch_norm": lambda m: D.mean_only_batch_norm(X, D.mean_stats_init(X),
                                                           training=True, mask=m),
  "batch_renorm": lambda m: D.batch_renorm(X, STATS, training=True, mask=m),
  "batch_instance_norm": lambda m: D.batch_instance_norm(X, STATS, rho=0.5, training=True,
                                                        mask=m),
  "switchable_norm": lambda m: D.switchable_norm(X, STATS, mean_weights=ONE_HOT[0],
                                                 var_weights=ONE_HOT[0], training=True, mask=m),
  "l1_penalty": lambda m: D.l1_penalty(X, 1.0, mask=m),
}
QUICK_MASKS = {"normalize", "batch_norm", "l1_penalty"}  # the others in the full suite
for fn, call in MASK_CALLS.items():
  shape = X2.shape if "rank 2" in fn else X.shape
  for name, m, exc in [("float", np.ones(shape, np.float32), TypeError),
                       ("int", np.ones(shape, np.int32), TypeError),
                       ("wrong shape", np.ones((3,) + shape[1:], bool), ValueError),
                       ("higher rank", np.ones((1,) + shape, bool), ValueError),
                       ("'yes'", "yes", TypeError)]:
    case(f"{fn} mask of {name}", lambda call=call, m=m: call(m), Error(exc, "mask"))
  same_as_unmasked = _same_as(lambda call=call: call(None))
  case(f"{fn} mask all True = no mask", lambda call=call, shape=shape: call(np.ones(shape, bool)),
       same_as_unmasked, slow=fn not in QUICK_MASKS)
  case(f"{fn} mask as a bool list", lambda call=call, shape=shape: call(
      np.ones(shape, bool).tolist()), same_as_unmasked, slow=fn not in QUICK_MASKS)

# Weights.
for fn, call in {
    "weight_norm": lambda fa: D.weight_norm(KERNEL, jnp.ones(6), feature_axes=fa),
    "kernel_norm": lambda fa: weights.kernel_norm(KERNEL, feature_axes=fa),
    "weight_standardization": lambda fa: D.weight_standardization(KERNEL, feature_axes=fa),
    "spectral_norm_init": lambda fa: D.spectral_norm_init(KERNEL, jax.random.key(0),
                                                          feature_axes=fa),
}.items():
  for name, fa, exc, match in [("3.0", 3.0, TypeError, "feature_axes"),
                               ("(3, 3)", (3, 3), ValueError, "feature_axes"),
                               ("all axes", (0, 1, 2, 3), ValueError, "feature_axes"),
                               ("4", 4, ValueError, "feature_axes")]:
    case(f"{fn} feature_axes={name}", lambda call=call, fa=fa: call(fa), Error(exc, match))
for arg, fn in [("epsilon", lambda e: D.weight_norm(KERNEL, jnp.ones(6), epsilon=e)),
                ("epsilon ", lambda e: D.spectral_norm(KERNEL, jnp.ones(6) / 6**0.5, epsilon=e))]:
  for name, e, exc in [("'1e-12'", "1e-12", TypeError), ("None", None, TypeError),
                       ("-1", -1.0, ValueError), ("nan", np.nan, ValueError)]:
    case(f"{'weight_norm' if arg == 'epsilon' else 'spectral_norm'} epsilon={name}",
         lambda fn=fn, e=e: fn(e), Error(exc, "epsilon"))
case("weight_norm epsilon=np.float32, g of jax", lambda: D.weight_norm(
    KERNEL, jnp.full(6, 2.0), epsilon=np.float32(0.0)),
     _close(lambda: 2.0 * KERNEL / np.sqrt((KERNEL.astype(np.float64) ** 2).sum(
         (0, 1, 2), keepdims=True))))
case("weight_norm g of the wrong shape", lambda: D.weight_norm(KERNEL, jnp.ones(4)),
     Error(ValueError, "g"))
case("weight_norm g=None", lambda: D.weight_norm(KERNEL, None), Error(TypeError, "g"))
case("weight_norm zero kernel stays finite", lambda: D.weight_norm(
    np.zeros_like(KERNEL), jnp.ones(6)), _close(lambda: np.zeros_like(KERNEL)))
case("spectral_norm u of the wrong shape", lambda: D.spectral_norm(KERNEL, jnp.ones(4)),
     Error(ValueError, "u"))
case("spectral_norm u=None", lambda: D.spectral_norm(KERNEL, None), Error(TypeError, "u"))
case("spectral_norm_init key=0", lambda: D.spectral_norm_init(KERNEL, 0), Error(TypeError, "key"))
case("weight_norm_init rank 1 kernel", lambda: D.weight_norm_init(KERNEL[0, 0, 0]),
     Error(ValueError, "feature_axes"))

# Input transforms.
for fit, name in [(I.standardize.fit, "standardize"), (I.zca.fit, "zca")]:
  for ename, e, exc in [("'0.1'", "0.1", TypeError), ("None", None, TypeError),
                        ("-1", -1.0, ValueError), ("nan", np.nan, ValueError)]:
    case(f"{name}.fit epsilon={ename}", lambda fit=fit, e=e: fit(DATA, epsilon=e),
         Error(exc, "epsilon"))
  case(f"{name}.fit epsilon=np.float32", lambda fit=fit: fit(DATA, epsilon=np.float32(0.1)),
       lambda s: float(s.epsilon) == pytest.approx(0.1))
  case(f"{name}.fit no samples", lambda fit=fit: fit(np.zeros((0, 3), np.float32)),
       Error(ValueError, "no samples|empty"))
  case(f"{name}.fit axes=1.0", lambda fit=fit: fit(DATA, axes=1.0), Error(TypeError, "axes"))
case("standardize.fit epsilon traced (jit)", lambda: jax.jit(
    lambda e: I.standardize.apply(DATA, I.standardize.fit(DATA, epsilon=e)))(0.5),
     _close(lambda: (DATA - DATA.mean(0)) / np.sqrt(DATA.astype(np.float64).var(0) + 0.5),
            rtol=1e-4))
for name, fr, exc in [("None", None, TypeError), ("('a', 'b')", ("a", "b"), TypeError),
                      ("(1, 0)", (1.0, 0.0), ValueError), ("(0, 1, 2)", (0, 1, 2), ValueError),
                      ("(0, nan)", (0.0, np.nan), ValueError)]:
  case(f"min_max.fit feature_range={name}", lambda fr=fr: I.min_max.fit(
      DATA, feature_range=fr), Error(exc, "feature_range"))
case("min_max.fit feature_range of NumPy scalars", lambda: I.min_max.apply(
    DATA, I.min_max.fit(DATA, feature_range=(np.float32(-1), np.float32(1)))),
     _close(lambda: -1 + 2 * (DATA - DATA.min(0)) / (DATA.max(0) - DATA.min(0)), rtol=1e-4))
case("min_max.fit no samples", lambda: I.min_max.fit(np.zeros((0, 3), np.float32)),
     Error(ValueError, "no samples|empty"))
case("center.fit no samples", lambda: I.center.fit(np.zeros((0, 3), np.float32)),
     Error(ValueError, "no samples|empty"))
case("pca.fit no samples", lambda: I.pca.fit(np.zeros((0, 3), np.float32)),
     Error(ValueError, "no samples|empty"))
for name, o, exc in [("True", True, TypeError), ("'2'", "2", TypeError), ("3", 3, ValueError),
                     ("None", None, TypeError)]:
  case(f"unit_length.fit ord={name}", lambda o=o: I.unit_length.fit(DATA, ord=o),
       Error(exc, "ord"))
case("unit_length.fit ord=np.int64(1)", lambda: I.unit_length.apply(
    DATA, I.unit_length.fit(DATA, ord=np.int64(1))),
     _close(lambda: DATA / np.abs(DATA.astype(np.float64)).sum(-1, keepdims=True)))
case("pca.fit axes=-1 (no feature axis left)", lambda: I.pca.fit(DATA, axes=(0, 1)),
     Error(ValueError, "axes"))
for tr in ("standardize", "min_max", "center"):
  t = getattr(I, tr)
  case(f"{tr}.apply x of another feature shape", lambda t=t: t.apply(
      DATA[:, :2], t.fit(DATA)), Error(ValueError, "fitted statistics"))
  case(f"{tr}.invert x of another rank", lambda t=t: t.invert(
      DATA[0], t.fit(DATA)), Error(ValueError, "fitted statistics"))
  case(f"{tr}.apply stats=None", lambda t=t: t.apply(DATA, None), Error(TypeError, "stats"))
case("pca.apply stats of standardize", lambda: I.pca.apply(DATA, I.standardize.fit(DATA)),
     Error(TypeError, "stats"))
case("zca.apply x of another feature shape", lambda: I.zca.apply(
    DATA[:, :2], I.zca.fit(DATA, epsilon=0.1)), Error(ValueError, "feature shape"))

# Transformations: vmap and grad agree with the unmapped computation.
case("layer_norm under vmap = per example", lambda: jax.vmap(D.layer_norm)(X),
     _close(lambda: _ln(X, -1)))
case("divisive_norm under vmap (rank 3 per example)", lambda: jax.vmap(
    lambda x: dn(x[None])[0])(X), _close(lambda: _dn(X, 3, 0.5)), slow=True)
case("gdn under vmap", lambda: jax.vmap(lambda x: G.gdn(x, beta=BETA, gamma=GAMMA))(X),
     _close(lambda: _gdn(X)))
case("batch_norm under vmap with axis_name", lambda: jax.vmap(
    lambda x: D.batch_norm(x, STATS, training=True, axis_name="b")[0], axis_name="b")(X),
     _close(lambda: _ln(X, (0, 1, 2))))
case("group_norm grad finite on a constant input", lambda: jax.grad(
    lambda x: jnp.sum(D.group_norm(x, num_groups=2) * X))(jnp.ones_like(X)), _finite, slow=True)

# Public helpers of the core's reductions.
case("field_mean of a tuple of axes", lambda: D.field_mean(X, (1, 2)),
     _close(lambda: np.broadcast_to(X.astype(np.float64).mean((1, 2), keepdims=True), (
         2, 1, 1, 4))))
case("window_sum of an even width", lambda: D.window_sum(X, ((1, 4),)),
     Error(ValueError, "width"))
X2I = np.arange(6).reshape(2, 3)
case("field_mean of integers", lambda: D.field_mean(X2I, (1,)), Error(TypeError, r"\bt\b"))
case("field_mean of nested lists", lambda: D.field_mean([[1.0, 2.0]], (1,)),
     _close(lambda: [[1.5]]))
case("field_mean border='same'", lambda: D.field_mean(X, {1: 3}, border="same"),
     Error(ValueError, "border"))
case("field_mean mask of another shape", lambda: D.field_mean(X, (1,), mask=np.ones(3, bool)),
     Error(ValueError, "mask"))
case("field_mean mask of 0/1 integers (nonzero counts)", lambda: D.field_mean(
    X, (1, 2), mask=MASK.astype(np.int32)), _same_as(lambda: D.field_mean(X, (1, 2), mask=MASK)))
case("field_mean of bfloat16 averages in float32", lambda: D.field_mean(
    jnp.asarray(X, jnp.bfloat16) + 256, (1, 2)), _close(lambda: np.broadcast_to(
        np.asarray(jnp.asarray(X, jnp.bfloat16) + 256, np.float64).mean((1, 2), keepdims=True),
        (2, 1, 1, 4)), atol=1.0, rtol=0, dtype=jnp.bfloat16))
case("field_mean of a kernel that does not fit", lambda: D.field_mean(
    X, {1: D.kernels.center_surround(3, ndim=2)}), Error(ValueError, "field.*2-D window"))
case("field_mean of integers over a kernel", lambda: D.field_mean(
    X2I, {1: D.kernels.gaussian(3, sigma=1.0)}), Error(TypeError, r"\bt\b"))
case("field_mean over a kernel, mask of another shape", lambda: D.field_mean(
    X, {1: D.kernels.gaussian(3, sigma=1.0)}, mask=np.ones(3, bool)), Error(ValueError, "mask"))
case("field_mean over a kernel, border='same'", lambda: D.field_mean(
    X, {1: D.kernels.gaussian(3, sigma=1.0)}, border="same"), Error(ValueError, "border"))
case("window_sum width None", lambda: D.window_sum(X, ((1, None),)),
     Error(ValueError, "width of None"))
case("window_sum windows as a dict", lambda: D.window_sum(X, {1: 3}),
     Error(TypeError, "windows"))
case("window_sum windows as one flat pair", lambda: D.window_sum(X, (1, 3)),
     Error(TypeError, "windows"))
case("window_sum of nested lists", lambda: D.window_sum([[1.0, 2.0, 3.0]], ((1, 3),)),
     _close(lambda: [[3.0, 6.0, 5.0]]))
case("window_sum of a string", lambda: D.window_sum("abc", ((0, 3),)), Error(TypeError, "x="))
case("group_norm rank 2, sigma per example", lambda: D.group_norm(
    X2, num_groups=2, sigma=np.array([[0.0]] * 10 + [[100.0]] * 10, np.float32)),
     _close(lambda: np.concatenate([_gn(X2[:10], 2), _gn(X2[10:], 2, 100.0)])))
case("group_norm rank 2, sigma per channel", lambda: D.group_norm(
    X2, num_groups=2, sigma=np.full(10, 0.5, np.float32)), _close(lambda: _gn(X2, 2, 0.5)))
X4 = jnp.asarray(X)
case("local_response_norm k of another rank", lambda: local_response_norm(
    X4, size=3, k=jnp.ones((5, 1, 1, 1, 1))), Error(ValueError, "k of shape"))
case("local_response_norm alpha of a wrong shape", lambda: local_response_norm(
    X4, size=3, alpha=jnp.ones(3)), Error(ValueError, "alpha of shape"))
case("local_response_norm k per channel", lambda: local_response_norm(
    X4, size=3, k=np.full(4, 2.0, np.float32)), _close(lambda: _lrn(X, 3, k=2.0)))
case("weight_norm epsilon of another rank", lambda: weights.weight_norm(
    KERNEL, weights.kernel_norm(KERNEL), epsilon=jnp.ones((2, 1, 1, 1, 1))),
     Error(ValueError, "epsilon of shape"))
case("batch_norm momentum of a wrong shape", lambda: D.batch_norm(
    X, STATS, training=True, momentum=jnp.full(2, 0.9)), Error(ValueError, "momentum of shape"))
case("batch_norm momentum of the input's shape", lambda: D.batch_norm(
    X, STATS, training=True, momentum=jnp.full(X.shape, 0.9)),
     Error(ValueError, "momentum of shape"))
case("batch_norm momentum per feature", lambda: D.batch_norm(
    X, STATS, training=True, momentum=np.full(4, 0.9, np.float32)), _ema_of_the_mean)
case("batch_norm feature_axes with a window", lambda: D.batch_norm(
    X, STATS, training=True, feature_axes={3: 3}), Error(ValueError, "feature_axes"))
case("min_max.fit axes with a window", lambda: I.min_max.fit(DATA, axes={0: 3}),
     Error(ValueError, "axes"))
case("unit_length.fit axes with a window", lambda: I.unit_length.fit(DATA, axes={1: 3}),
     Error(ValueError, "axes"))
case("normalize of a hand-built Field out of range", lambda: D.normalize(
    X, D.Field((7,), ())), Error(ValueError, "axis 7"))
case("normalize of a hand-built Field naming an axis twice", lambda: D.normalize(
    X, D.Field((1,), ((1, 3),))), Error(ValueError, "twice"))
case("normalize of a hand-built Field with negative axes", lambda: D.normalize(
    X, D.Field((-1,), ())), _close(lambda: _ln(X, -1)))
case("resolve_field ndim=2.0", lambda: D.resolve_field((1,), 2.0), Error(TypeError, "ndim"))
case("spectral_norm of a zero kernel keeps it and u", lambda: weights.spectral_norm(
    np.zeros((3, 4), np.float32), np.full(4, 0.5, np.float32)),
     lambda r: not np.any(r[0]) and np.allclose(r[1], 0.5) and float(r[2]) == 0.0)
case("spectral_norm u all zeros", lambda: weights.spectral_norm(
    KERNEL, np.zeros(6, np.float32)), Error(ValueError, "u is all zeros"))
case("normalize Kernel built with dilation 0", lambda: D.normalize(
    X, {1: DK.Kernel(np.ones(3), 0), 3: None}), Error(ValueError, "dilation"))
case("normalize Mixing built with negative weights", lambda: D.normalize(
    X, {3: DK.Mixing(-np.eye(4)), 1: None}), Error(ValueError, "weights"))
case("gaussian sigma a JAX zero", lambda: DK.gaussian(3, sigma=jnp.float32(0.0)),
     Error(ValueError, "sigma"))
case("gaussian sigma a JAX vector", lambda: DK.gaussian(3, sigma=jnp.ones(2)),
     Error(ValueError, "sigma of shape"))
case("exponential scale a JAX zero", lambda: DK.exponential(3, scale=jnp.float32(0.0)),
     Error(ValueError, "scale"))
case("batch_instance_norm stats of other features", lambda: D.batch_instance_norm(
    X, D.batch_stats_init(np.ones((2, 3))), rho=0.5, training=True),
     Error(ValueError, "^batch_instance_norm"))
case("pca.invert z of other components", lambda: I.pca.invert(
    np.ones((5, 2), np.float32), I.pca.fit(DATA)), Error(ValueError, "z of shape"))
case("zca.invert names y", lambda: I.zca.invert(
    np.ones((5, 2), np.float32), I.zca.fit(DATA, epsilon=0.1)), Error(ValueError, "y of shape"))
case("min_max.invert names y", lambda: I.min_max.invert(
    np.ones((5, 2), np.float32), I.min_max.fit(DATA)), Error(ValueError, "y of shape"))
case("batch_stats_init dtype misspelled", lambda: D.batch_stats_init(X, dtype="flaot32"),
     Error(TypeError, "dtype='flaot32'"))
case("normalize dtype misspelled", lambda: D.normalize(X, (1, 2), dtype="flaot32"),
     Error(TypeError, "dtype='flaot32'"))
case("normalize dtype an integer one", lambda: D.normalize(X, (1, 2), dtype=np.int32),
     Error(TypeError, "is not a floating dtype"))
case("divisive_norm dtype an integer one", lambda: D.divisive_norm(
    X, summation_window=3, sigma=0.5, dtype="int8"), Error(TypeError, "dtype='int8'"))
case("mean_only_batch_norm dtype misspelled", lambda: D.mean_only_batch_norm(
    X, D.mean_stats_init(X), training=True, dtype="flaot32"), Error(TypeError, "dtype='flaot32'"))
case("batch_renorm dtype an integer one, evaluating", lambda: D.batch_renorm(
    X, STATS, training=False, dtype=np.int16), Error(TypeError, "is not a floating dtype"))
case("batch_instance_norm dtype None-like string", lambda: D.batch_instance_norm(
    X, STATS, rho=0.5, training=True, dtype="none"), Error(TypeError, "dtype='none'"))
case("switchable_norm dtype a bool", lambda: D.switchable_norm(
    X, STATS, mean_weights=ONE_HOT[0], var_weights=ONE_HOT[0], training=True, dtype=bool),
     Error(TypeError, "is not a floating dtype"))
case("batch_renorm of bfloat16 to float32, evaluating", lambda: D.batch_renorm(
    jnp.asarray(X, jnp.bfloat16), STATS, training=False, dtype=jnp.float32)[0],
     _shape(X.shape, np.float32))
case("normalize of bfloat16 to float32", lambda: D.normalize(
    jnp.asarray(X, jnp.bfloat16), (1, 2, 3), dtype=jnp.float32),
     _close(lambda: _ln(np.float32(jnp.asarray(X, jnp.bfloat16)), (1, 2, 3)),
            dtype=np.float32))
case("layer_norm reduction_axes as a NumPy vector", lambda: D.layer_norm(
    X, reduction_axes=np.array([1, 2, 3])), _close(lambda: _ln(X, (1, 2, 3))))
case("normalize axes as a JAX vector", lambda: D.normalize(X, jnp.array([3])),
     _close(lambda: _ln(X, 3)))
case("group_norm rank 2, sigma of a wrong shape", lambda: D.group_norm(
    X2, num_groups=2, sigma=np.ones(3, np.float32)), Error(ValueError, "sigma of shape"))


# An int axis_name is an array axis to JAX's collectives: refused, not summed over silently.
for name, call in [
    ("normalize", lambda: D.normalize(X2, (1,), axis_name=0)),
    ("layer_norm", lambda: D.layer_norm(X2, axis_name=0)),
    ("field_mean", lambda: D.field_mean(X, (1,), axis_name=0)),
    ("l1_penalty", lambda: D.l1_penalty(X, 0.1, axis_name=0)),
    ("batch_norm", lambda: D.batch_norm(X, STATS, training=True, axis_name=3)),
    ("normalize, a tuple with an int", lambda: D.normalize(X2, (1,), axis_name=("b", 1))),
    ("normalize under vmap, a bool", lambda: jax.vmap(
        lambda t: D.normalize(t, (0,), axis_name=True), axis_name="b")(X2))]:
  case(f"{name} axis_name an int", call, Error(TypeError, "axis_name=.* is an int"))
case("normalize under vmap, a named axis", lambda: jax.vmap(
    lambda t: D.normalize(t, (0,), axis_name="b"), axis_name="b")(X2),
     _close(lambda: _ln(X2, (0, 1))))

# batch_renorm's clipping limits per feature broadcast to the statistics, or are refused.
for name, kw in [("rmax of 7 entries for 4 features", dict(rmax=np.full(7, 3.0))),
                 ("dmax with a leading axis", dict(dmax=np.full((5, 1, 1, 1, 1), 3.0)))]:
  case(f"batch_renorm {name}", lambda kw=kw: D.batch_renorm(X, STATS, training=True, **kw),
       Error(ValueError, "^(rmax|dmax) of shape"))
case("batch_renorm rmax per feature", lambda: D.batch_renorm(
    X, STATS, training=True, rmax=np.full(4, 3.0))[0], _shape(X.shape))

# GDN's initializers: floating dtypes, scalar starting values, values at or above the bound.
case("gdn_init dtype an integer one", lambda: G.gdn_init(4, dtype=jnp.int32),
     Error(TypeError, "^gdn_init: dtype=.* is not a floating dtype"))
case("gdn_init beta per channel", lambda: G.gdn_init(4, beta=np.ones(5)),
     Error(ValueError, "^gdn_init: beta has shape"))
case("gdn_init beta below BETA_MIN", lambda: G.gdn_init(4, beta=1e-7),
     Error(ValueError, "^gdn_init: beta=1e-07 must be >= BETA_MIN"))
case("gdn.nonnegative_init below the minimum", lambda: G.nonnegative_init(-1.0),
     Error(ValueError, "^nonnegative_init: value=-1.0 must be >= minimum"))
case("gdn.nonnegative_init dtype an integer one", lambda: G.nonnegative_init(
    2.5, dtype=jnp.int32), Error(TypeError, "^nonnegative_init: dtype"))
case("gdn.nonnegative_init round trip", lambda: G.nonnegative_init(0.5, minimum=0.25),
     lambda raw: np.isclose(float(divnorm.gdn.nonnegative(raw, minimum=0.25)), 0.5))
case("gdn beta not finite", lambda: G.gdn(X, beta=np.full(4, np.inf), gamma=GAMMA),
     Error(ValueError, "^beta=.* is not finite"))
case("gdn gamma not finite", lambda: G.gdn(X, beta=BETA, gamma=np.where(
    np.eye(4) > 0, np.inf, GAMMA)), Error(ValueError, "^gamma=.* is not finite"))

# Pools of zero weight under a mean, and the kernels' scalar and `along` arguments.
case("normalize summation kernel of zero weights", lambda: D.normalize(
    X, {1: DK.kernel([0.0, 0.0, 0.0])}), Error(ValueError, "^summation: the kernel"))
case("normalize suppression mixing with a zero row", lambda: D.normalize(
    X, (1, 2), {3: DK.mixing(np.eye(4) * (np.arange(4) > 0))}),
     Error(ValueError, "^suppression: the mixing.*pool='sum'"))
case("normalize suppression mixing with a zero row, pool='sum'", lambda: D.normalize(
    X, (1, 2), {3: DK.mixing(np.eye(4) * (np.arange(4) > 0))}, pool="sum", sigma=1.0),
     _finite)
case("normalize per-channel kernel with one channel of zero weights", lambda: D.normalize(
    X, {1: DK.kernel(np.ones((3, 4)) * (np.arange(4) > 0), along=3)}),
     Error(ValueError, "^summation: the kernel.* an entry"))
# A kernel whose taps all fall past the border at some positions (border="valid"): no weight.
SURROUND = {1: DK.center_surround(3, dilation=5)}  # taps at +-5 on an axis of 5 entries
case("normalize suppression surround past both ends", lambda: D.normalize(X, None, SURROUND),
     Error(ValueError, "^suppression: with border='valid', the kernel on axes \\(1,\\)"))
case("normalize suppression surround past both ends under jit", lambda: jax.jit(
    lambda x: D.normalize(x, None, SURROUND))(X), Error(ValueError, "^suppression: with border"))
case("normalize suppression surround on an axis of 1 entry", lambda: D.normalize(
    X[:, :1], None, {1: DK.center_surround(3)}), Error(ValueError, "^suppression: with border"))
case("normalize summation kernel with no tap inside the first rows", lambda: D.normalize(
    X, {1: DK.kernel([1.0, 0.0, 0.0, 0.0, 0.0])}), Error(ValueError, "^summation: with border"))
case("normalize suppression surround past both ends, border='zeros'", lambda: D.normalize(
    X, None, SURROUND, border="zeros", sigma=1.0), _finite)
case("normalize suppression surround past both ends, pool='sum'", lambda: D.normalize(
    X, None, SURROUND, pool="sum", sigma=1.0), _finite)
for name, call in [("gaussian sigma", lambda: DK.gaussian(3, sigma=np.ones(2))),
                   ("gaussian sigma a list", lambda: DK.gaussian(3, sigma=[1.0, 2.0])),
                   ("exponential scale", lambda: DK.exponential(3, scale=np.ones(2)))]:
  case(f"kernels {name} of shape (2,)", call, Error(ValueError, "(sigma|scale) of shape"))
for name, along, exc in [("2.0", 2.0, TypeError), ("'a'", "a", TypeError),
                         ("True", True, TypeError)]:
  case(f"kernels.kernel along={name}", lambda along=along: DK.kernel(
      np.ones((3, 4)), along=along), Error(exc, "^kernel: along="))

# Grouped fields built by hand are checked against the input's shape.
case("normalize grouped Field that does not tile", lambda: D.normalize(
    X, D.Field((1, 2), (), ((3, 3),))), Error(ValueError, "^summation: groups of 3"))
case("field_mean grouped Field that does not tile", lambda: D.field_mean(
    X, D.Field((1, 2), (), ((3, 3),))), Error(ValueError, "groups of 3 entries do not tile"))
case("layer_norm grouped Field that does not tile", lambda: D.layer_norm(
    X, reduction_axes=D.Field((1, 2), (), ((3, 3),))), Error(ValueError, "^reduction_axes"))
case("grouped_field shape None", lambda: D.grouped_field((), 1, 2, None),
     Error(TypeError, "shape=None is not a shape"))
case("grouped_field negative size in shape", lambda: D.grouped_field((), 1, 2, (2, -4)),
     Error(ValueError, "shape=-4"))

# Other arguments that reached JAX's or NumPy's own errors.
case("window_sum of booleans", lambda: D.window_sum(np.ones((3, 4), bool), ((0, 3),)),
     Error(TypeError, "^window_sum: x is boolean"))
case("spectral_norm epsilon per entry", lambda: weights.spectral_norm(
    np.ones((3, 4), np.float32), np.ones(4, np.float32), epsilon=np.ones(3)),
     Error(ValueError, "^epsilon has shape"))
case("spectral_norm_init key an int", lambda: weights.spectral_norm_init(
    np.ones((3, 4), np.float32), 0), Error(TypeError, "^key=0 is not a PRNG key"))
case("spectral_norm_init dtype an integer one", lambda: weights.spectral_norm_init(
    np.ones((3, 4), np.float32), jax.random.key(0), dtype=jnp.int32),
     Error(TypeError, "^spectral_norm_init: dtype"))
case("spectral_norm_init legacy key", lambda: weights.spectral_norm_init(
    np.ones((3, 4), np.float32), jax.random.PRNGKey(0)), _shape((4,)))
case("min_max.fit feature_range of arrays", lambda: I.min_max.fit(
    DATA, feature_range=(np.zeros(3), np.ones(3))), Error(ValueError, "^feature_range has"))
case("batch_norm evaluating, fast_variance a string", lambda: D.batch_norm(
    X, STATS, training=False, fast_variance="x"), Error(TypeError, "^fast_variance='x'"))


# ---- the tests --------------------------------------------------------------------------

def _params():
  seen = set()
  for c in CASES:
    assert c.id not in seen, f"duplicate case id {c.id}"
    seen.add(c.id)
    marks = [pytest.mark.xfail(strict=True, reason=c.owner)] if c.owner else []
    marks += [pytest.mark.slow] if c.slow else []
    yield pytest.param(c, id=c.id, marks=marks)


@pytest.mark.parametrize("c", list(_params()))
def test_case(c):
  kind, detail = outcome(c)
  assert kind == "clean", f"{kind}: {detail}"
  if isinstance(c.expect, Error):  # the exact type, too
    assert detail.startswith(f"{c.expect.exc.__name__}:"), detail


# ---- the checks' own contract (the Flax modules call them with their own names) ----------

@pytest.mark.parametrize("value,error,message", [
    (jnp.asarray(-1.0), ValueError, r"^epsilon=-1.0 is negative; it must be >= 0"),
    (np.float32(np.nan), ValueError, r"^epsilon=nan is not finite"),
    ("1e-5", TypeError, r"^epsilon='1e-5' is not a real number.*epsilon=1e-05, not a string"),
    (None, TypeError, r"^epsilon=None is not a real number"),
])
def test_checks_name_the_argument_the_caller_passes(value, error, message):
  from divnorm._src.checks import check_nonnegative, check_sigma
  with pytest.raises(error, match=message):
    check_nonnegative(value, "epsilon")
  with pytest.raises(error, match=message):
    check_sigma(value, (2, 1), name="epsilon")


@pytest.mark.parametrize("value", [1e-5, np.float32(1e-5), np.float64(1e-5), jnp.asarray(1e-5),
                                   jnp.asarray(1e-5, jnp.bfloat16), np.array(1e-5), 0, np.int64(0)])
def test_checks_take_python_numpy_and_jax_scalars(value):
  from divnorm._src.checks import check_nonnegative, check_sigma
  check_nonnegative(value, "epsilon")
  sigma = check_sigma(value, (2, 1))
  assert np.shape(sigma) in ((), (1, 1))


def test_sigma_hint_only_for_sigma():
  from divnorm._src.checks import check_sigma
  with pytest.raises(ValueError, match="Flax's epsilon is sigma"):
    check_sigma(-1.0)
  with pytest.raises(ValueError, match=r"^epsilon=-1.0 is negative; it must be >= 0\.$"):
    check_sigma(-1.0, name="epsilon")


def test_a_traced_value_passes_the_value_checks_but_not_the_type_checks():
  from divnorm._src.checks import check_bool, check_int, check_nonnegative
  jax.jit(lambda e: check_nonnegative(e, "epsilon"))(-1.0)  # its value is unknown: passes
  with pytest.raises(TypeError, match="static_argnames=\\('num_groups',\\)"):
    jax.jit(lambda g: check_int(g, "num_groups"))(2)
  with pytest.raises(TypeError, match="training.*static bool"):
    jax.jit(lambda t: check_bool(t, "training"))(True)


@pytest.mark.slow
def test_linen_batch_norm_evaluates_a_negative_running_variance_as_zero():
  # flax issue 1491: a damaged checkpoint's negative variance gave NaN outputs.
  layer = divnorm.linen.BatchNorm(use_running_average=True, epsilon=1e-2, use_bias=False,
                                  use_scale=False)
  variables = {"batch_stats": {"mean": NEG_STATS.mean, "var": NEG_STATS.var}}
  with jax.numpy_dtype_promotion("standard"):
    y = layer.apply(variables, X)
  np.testing.assert_allclose(y, _bn_eval(X, NEG_STATS, 0.1), rtol=1e-4, atol=1e-4)


def tally() -> dict[str, list[str]]:
  """Runs every case under the suite's strict promotion: ``{kind: [case ids]}``."""
  out: dict[str, list[str]] = {"clean": [], "obscure": [], "silently wrong": []}
  for c in CASES:
    with jax.numpy_rank_promotion("raise"), jax.numpy_dtype_promotion("strict"):
      kind, detail = outcome(c)
    out[kind].append(f"{c.id}  [{detail[:160]}]" if detail and kind != "clean" else c.id)
  return out


if __name__ == "__main__":
  import sys
  counts = tally()
  for kind in ("obscure", "silently wrong"):
    for line in counts[kind]:
      print(f"{kind:>15}: {line}")
  print({k: len(v) for k, v in counts.items()}, "of", len(CASES), "cases", file=sys.stderr)
