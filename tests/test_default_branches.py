"""The programs other platforms run (`lax.platform_dependent`'s `default`, and the CUDA entry
where there is one), run here on the CPU and compared with the CPU's: the masked shift's
search (`shift.py`), the one-pass statistics' shifted sums (`statistics.py`), layer norm
over the last axis (`core.py`) and RMS norm of a narrower input (`rms.py`). This CPU-only
suite would otherwise never execute them.

Each call is traced afresh with `lax.platform_dependent` replaced by one that takes the named
branch (a test's monkeypatch; jit's caches cleared around it).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import divnorm

_PLATFORM_DEPENDENT = lax.platform_dependent


def _taking(branch: str):
  """`lax.platform_dependent` that calls `branch`'s function (else the default)."""
  def choose(*args, default=None, **per_platform):
    return per_platform.get(branch, default)(*args)
  return choose


def _run(monkeypatch, branch: str, f, *args):
  """``f(*args)`` and its gradient, traced with `branch`'s programs."""
  jax.clear_caches()
  if branch != "cpu":
    monkeypatch.setattr(lax, "platform_dependent", _taking(branch))
  try:
    out = f(*args)
    grad = jax.grad(lambda *a: jnp.sum(jnp.sin(f(*a).astype(jnp.float32))))(*args)
    return jax.device_get((out, grad))
  finally:
    monkeypatch.setattr(lax, "platform_dependent", _PLATFORM_DEPENDENT)
    jax.clear_caches()


def _x(shape, dtype=np.float32, offset=0.0, seed=0):
  x = offset + np.random.default_rng(seed).normal(size=shape) * 2.0
  return jnp.asarray(x.astype(np.float32)).astype(dtype)


MASK = np.random.default_rng(1).uniform(size=(6, 80)) > 0.5
MASK[0, :70] = False  # a row whose first kept entry lies past the CPU's 64-entry prefix

CASES = {
    # the masked shift's search over a row (first masked-in entry; CPU: a prefix first); NaN
    # where the mask is False, so a shift taken from outside the mask shows
    "masked layer norm": (lambda x: divnorm.layer_norm(x, mask=MASK, sigma=0.1),
                          jnp.where(MASK, _x((6, 80), offset=1e4), jnp.nan)),
    # one-pass statistics of at least 65536 entries (CPU: plain sums where they are exact)
    "one-pass batch norm": (lambda x: divnorm.batch_norm(
        x, divnorm.batch_stats_init(x), training=True, fast_variance=True)[0],
                            _x((1024, 4, 4, 4), offset=1e4)),
    "one-pass layer norm": (lambda x: divnorm.layer_norm(x, reduction_axes=(0, 1),
                                                         fast_variance=True),
                            _x((256, 300), offset=3.0)),
    # layer norm over the last axis (CUDA: the fused row; CPU: short rows)
    "layer norm, last axis, bfloat16": (lambda x: divnorm.layer_norm(x, sigma=1e-3),
                                        _x((8, 24), jnp.bfloat16, offset=300.0)),
    "layer norm, last axis": (lambda x: divnorm.layer_norm(x), _x((8, 768), offset=1e4)),
    # RMS norm of a narrower input (CPU: its derivative written out)
    "rms norm, bfloat16": (lambda x: divnorm.rms_norm(x), _x((16, 96), jnp.bfloat16)),
    "rms norm, float16, masked": (lambda x: divnorm.rms_norm(x, mask=MASK[:, :64]),
                                  _x((6, 64), jnp.float16)),
}


@pytest.mark.parametrize("branch", ["default", "cuda"])
@pytest.mark.parametrize("case", list(CASES))
def test_other_platforms_programs_compute_the_cpu_s_numbers(monkeypatch, case, branch):
  f, x = CASES[case]
  (want, want_grad), (got, got_grad) = (_run(monkeypatch, b, f, x) for b in ("cpu", branch))
  assert got.dtype == want.dtype == x.dtype and got_grad.dtype == x.dtype
  # float32: a few roundings of outputs of order 1; narrower: one unit in the last place
  tol = 2e-5 if x.dtype == jnp.float32 else float(jnp.finfo(x.dtype).eps)
  np.testing.assert_allclose(np.float32(got), np.float32(want), atol=tol * 4, rtol=tol)
  np.testing.assert_allclose(np.float32(got_grad), np.float32(want_grad), atol=tol * 8,
                             rtol=tol * 2)


def test_the_branches_differ_where_it_matters(monkeypatch):
  """The replacement reaches the library: the CPU's programs and the default's differ."""
  f, x = CASES["rms norm, bfloat16"]
  hlo = []
  for branch in ("cpu", "default"):
    jax.clear_caches()
    if branch != "cpu":
      monkeypatch.setattr(lax, "platform_dependent", _taking(branch))
    hlo.append(jax.jit(jax.grad(lambda x: jnp.sum(f(x).astype(jnp.float32)))).lower(x).as_text())
    monkeypatch.setattr(lax, "platform_dependent", _PLATFORM_DEPENDENT)
  jax.clear_caches()
  assert hlo[0] != hlo[1]
