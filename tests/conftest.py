"""Suite-wide settings: 8 fake CPU devices and strict promotion; float64 on request."""

import os

# Must happen before JAX initialises its backends.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
# The 8 fake devices are 8 threads of one process on 2 cores. XLA's CPU collectives wait at a
# rendezvous for all 8, and by default terminate the process (LOG(FATAL): "Termination timeout
# for `all reduce RendezvousKey{...}` of 40 seconds exceeded ... only 7 of them arrived on time",
# then SIGABRT) when one thread arrives more than 40 s after the first. On a loaded 2-core
# machine an all-reduce inside the RNN's scan hit this in 3 of 3 runs of the engine tests
# (results/SUITE.md); it was the suite's intermittent "Fatal Python error: Aborted". A late
# thread is not an error on shared CI cores: wait up to 20 minutes (XLA still logs a
# "may be stuck" warning after 60 s), then abort as XLA does.
for _flag, _value in (("--xla_cpu_collective_call_warn_stuck_timeout_seconds", "60"),
                      ("--xla_cpu_collective_call_terminate_timeout_seconds", "1200")):
  if _flag not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += f" {_flag}={_value}"
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
