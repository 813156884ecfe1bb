"""Suite-wide settings: 8 fake CPU devices and strict promotion; float64 on request."""

import os
import shutil
import tempfile

# Must happen before JAX initialises its backends.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# One persistent compilation cache for the whole run, in a new temporary folder: the pytest
# process that makes it (the controller, before pytest-xdist starts its workers) removes it at
# the end. Its workers and every subprocess (the experiments' commands, the killed and resumed
# runs, the notebooks' kernels) inherit the variable, so a program compiled once is loaded, not
# compiled again, by the next process or test that builds it. Each entry is the executable XLA
# compiled for the same program and flags. The full suite took 21:56 instead of 24:57, all
# tests passing (results/SUITE.md). A caller's own JAX_COMPILATION_CACHE_DIR is kept.
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="divnorm-tests-jax-cache-")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import jax  # noqa: E402
import pytest  # noqa: E402

from experiments.engine import heap, reserve_cpu_threads  # noqa: E402

# glibc keeps freed memory in its heap, as the engine's `train` does (experiments/engine/heap.py):
# in this process by `mallopt`; in the pytest-xdist workers and every subprocess by glibc's
# variables, which a process reads as it starts. A caller's own variables stand.
if heap.keep_freed_memory():
  os.environ.update({name: str(heap.THRESHOLD) for name in heap.TUNABLES})

# Twice as many CPU pool threads as devices (`PJRT_NPROC`), as the experiments' commands set:
# with fewer, an all-reduce inside the RNN's scan can deadlock the 8 fake devices and XLA
# aborts the process (results/SUITE.md). Importing the engine does not start JAX's backend.
reserve_cpu_threads()

# The quick tier (`make test-quick`: `pytest -m "not slow"`, at most 3 minutes on 2 cores)
# keeps every `step`-th case of these parametrized tests, the first included; the others are
# marked slow and run in the full tier. Measured by `pytest -n 2 -m "not slow" --durations=0`:
# these cases cost 1-5 s each, mostly compilation, and repeat what the kept cases check on
# other layers, shapes or fields.
QUICK_STEP = {
  "tests/compat/test_drop_in.py::test_linen_checkpoint_of_each_layer_loads": 4,
  "tests/compat/test_drop_in.py::test_linen_outputs_equal_flax": 3,
  "tests/test_arguments.py::test_case": 4,
  "tests/test_edges.py::test_default_keeps_two_pass_accuracy_at_offsets": 3,
  "tests/test_edges.py::test_masked_out_values_change_no_masked_in_output": 3,
  "tests/test_engine_resume.py::test_resume_past_a_damaged_latest_checkpoint": 2,
  "tests/test_equinox.py::test_batch_norm_equals_equinox_in_training_and_inference": 4,
  "tests/test_equinox.py::test_eps_accepts_what_equinox_accepts": 3,
  "tests/test_equinox.py::test_running_layers_equal_the_functions_on_the_whole_batch": 4,
  "tests/test_equinox.py::test_stateless_layers_equal_equinox": 3,
  "tests/test_experiments_sr.py::test_valid_output_shape": 3,
  "tests/test_grouped_fields.py::test_grouped_fields_equal_the_reshaped_brute_force": 2,
  "tests/test_linen.py::test_epsilon_accepts_what_flax_accepts": 3,
  "tests/test_linen.py::test_modules_equal_flax_with_affine": 2,
  "tests/test_linen.py::test_use_fast_variance_picks_the_core_statistics": 2,
  "tests/test_nnx.py::test_epsilon_accepts_what_flax_accepts": 3,
  "tests/test_nnx.py::test_nnx_equals_linen_under_jit": 3,
  "tests/test_normalize.py::test_every_function_jits_with_python_scalars": 2,
  "tests/test_normalize.py::test_mask_with_whole_and_windowed_fields": 2,
  "tests/test_normalize.py::test_window_only_fields_gradients": 3,
  "tests/test_normalize.py::test_windows_equal_brute_force": 2,
  "tests/test_weighted_fields.py::test_weighted_mean_against_enumeration": 2,
}


def pytest_configure(config):
  """Every tier compiles without LLVM's optimizations (``--xla_backend_optimization_level=0``).

  The suite's time is mostly XLA compiling small programs. The quick tier took 2:45 instead
  of 3:20-3:30 on 2 cores; the full tier 16:46 instead of 20:33, the same 2,794 tests passing
  (results/SUITE.md). XLA optimizes the same HLO either way; only LLVM's machine code differs.
  `tests/test_default_compile.py` runs the accuracy tests again at XLA's default level (3),
  as users compile. An optimization level already in ``XLA_FLAGS`` is kept. Runs before JAX
  creates its backend, and before pytest-xdist starts its workers, which inherit the variable.
  """
  flags = os.environ.get("XLA_FLAGS", "")
  if "optimization_level" not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} --xla_backend_optimization_level=0".strip()


def pytest_unconfigure(config):
  """Removes the run's compilation cache (`_OWN_CACHE`) once the run is over."""
  if _OWN_CACHE:
    shutil.rmtree(os.environ.pop("JAX_COMPILATION_CACHE_DIR"), ignore_errors=True)


def pytest_collection_modifyitems(items):
  seen, modules = {}, {}
  for item in items:
    name = item.nodeid.split("[", 1)[0]
    modules[name.split("::", 1)[0]] = getattr(item, "module", None)
    step = QUICK_STEP.get(name)
    if step is None or "[" not in item.nodeid:
      continue
    index = seen[name] = seen.get(name, -1) + 1
    if index % step:
      item.add_marker(pytest.mark.slow)
  for name in QUICK_STEP:  # a renamed test would silently leave its entry doing nothing
    path, function = name.split("::", 1)
    if path in modules and not hasattr(modules[path], function):
      raise pytest.UsageError(f"QUICK_STEP in tests/conftest.py names no test: {name}")


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
