"""Suite-wide settings: 8 fake CPU devices and strict promotion; float64 on request."""

import os

# Must happen before JAX initialises its backends.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
# Known, not fixed (results/SUITE.md): with these 8 fake devices XLA's CPU all-reduce inside the
# RNN's scan can deadlock (one device thread never reaches the rendezvous; the process idles at
# 0% CPU) and XLA then aborts the process after 40 s ("Termination timeout for `all reduce`").
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def strict_promotion(request):
  """Rank promotion raises and dtype promotion is strict, unless a test opts out.

  The library must work for callers who set these; tests that drive third-party code
  which does not (optax, orbax, tfds, flax internals) take `loose_promotion`.
  """
  if request.node.get_closest_marker("loose_promotion"):
    yield
    return
  with jax.numpy_rank_promotion("raise"), jax.numpy_dtype_promotion("strict"):
    yield


@pytest.fixture
def x64():
  """Float64 inside the test (references and gradient checks), float32 elsewhere."""
  with jax.enable_x64(True):
    yield
