"""glibc's heap kept for XLA's CPU buffers, so that a training step does not fault them in.

glibc's malloc hands a freed block above its mmap threshold back to the kernel, and trims the
top of the heap above its trim threshold. XLA's CPU buffers are freed and allocated again at
every step, so each step faults their pages in again. On the project's 2-core VM, 400 steps of
the super-resolution study's SRCNN at x4 took 1.42-1.49x the CPU time without it, half of it in
the kernel (engine README, "The heap on the CPU"). `keep_freed_memory` raises both thresholds
above any buffer, as glibc's ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` do (the
values the benchmarks run with): the heap keeps what it held at the peak, and each step
reuses it. The CNN's steps kept their faults all the same (a block larger than a thread
arena's 64 MiB heap is mapped afresh, we read), unless the process started with one arena:
`started_with_kept_memory` gives the environment for that (1.31-1.42x less wall time for the
CNN's steps).
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Mapping

THRESHOLD = 2_000_000_000  # bytes: above any buffer of the experiments
TUNABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h>


def _stand_aside(environ: Mapping[str, str], names) -> bool:
  """Whether the C library is not glibc, or `environ` sets one of `names` (the user's choice)."""
  return platform.libc_ver()[0] != "glibc" or any(k in environ for k in names)


def keep_freed_memory(environ: Mapping[str, str] = os.environ) -> bool:
  """Sets glibc's mmap and trim thresholds of this process to `THRESHOLD` (``mallopt``).

  Leaves them alone where the C library is not glibc, or where `environ` sets either of
  `TUNABLES` or ``GLIBC_TUNABLES`` (the user's choice stands). Affects the blocks allocated
  afterwards. Returns whether it set them.
  """
  if _stand_aside(environ, (*TUNABLES, "GLIBC_TUNABLES")):
    return False
  mallopt = ctypes.CDLL(None).mallopt
  return all(mallopt(option, THRESHOLD) == 1 for option in (_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD))


def started_with_kept_memory(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
  """`environ` for a process to start with: glibc's `TUNABLES` at `THRESHOLD`, and
  ``MALLOC_ARENA_MAX=1``, which a process reads only as it starts.

  With one arena every thread allocates from the main heap. Without it, XLA's threads
  allocate from arenas whose heaps hold at most 64 MiB, and glibc maps a larger block afresh
  at every step, whatever the thresholds. `environ` is returned unchanged where it sets any
  of these variables or ``GLIBC_TUNABLES``, or the C library is not glibc.
  """
  if _stand_aside(environ, (*TUNABLES, "MALLOC_ARENA_MAX", "GLIBC_TUNABLES")):
    return dict(environ)
  return {**environ, **{k: str(THRESHOLD) for k in TUNABLES}, "MALLOC_ARENA_MAX": "1"}
