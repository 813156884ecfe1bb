"""The suite's one compilation cache (tests/conftest.py) works across processes.

Most of the full tier's time is XLA compiling, and its multi-process tests (killed and resumed
runs, study workers, notebooks' kernels) compile the same programs in each process. The cache
only helps if JAX read the folder at import, wrote this process's programs into it, and a
subprocess loads them instead of compiling again.
"""

import os
import pathlib
import subprocess
import sys

import jax
import pytest

# A program no other test compiles; it prints the subprocess's cache hits and misses.
PROGRAM = """
import collections, jax, jax.numpy as jnp
events = collections.Counter()
jax.monitoring.register_event_listener(lambda name, **_: events.update([name]))
out = jax.jit(lambda x: jnp.sin(x) * 3.0 + 0.25)(jnp.arange(13.0))
print(events["/jax/compilation_cache/cache_hits"], events["/jax/compilation_cache/cache_misses"])
"""


@pytest.mark.loose_promotion
def test_a_subprocess_loads_the_programs_this_process_compiled():
  folder = pathlib.Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
  assert jax.config.jax_compilation_cache_dir == str(folder)  # set before JAX was imported
  before = set(folder.iterdir())
  exec(compile(PROGRAM, "<program>", "exec"), {"print": lambda *_: None})
  assert set(folder.iterdir()) - before, "this process wrote no compiled program"
  proc = subprocess.run([sys.executable, "-c", PROGRAM], env=dict(os.environ),
                        capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr
  hits, misses = map(int, proc.stdout.split())
  assert hits >= 1 and misses == 0, (hits, misses)
