"""Suite-wide settings: 8 fake CPU devices and strict promotion; float64 on request."""

import os

# Must happen before JAX initialises its backends.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
# XLA's CPU client runs a device program's parallel branches on one shared thread pool (by
# default as many threads as devices). A scan whose body all-reduces (the RNN's batch norm over
# a batch-sharded axis) can then deadlock: the loops of some devices block their pool threads
# at the rendezvous while another device's loop waits in the pool's queue (results/SUITE.md).
# Twice as many pool threads as devices (`PJRT_NPROC`, read by the CPU client) leaves room.
os.environ.setdefault("PJRT_NPROC", "16")
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
