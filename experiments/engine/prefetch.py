"""Prefetching host batches onto devices in a background thread."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

_END = object()


def prefetch(iterator: Iterator[Any], put: Callable[[Any], Any], *, size: int = 2) -> Iterator[Any]:
  """Yields `put(x)` for each x of `iterator`, computing up to `size` ahead.

  Order is preserved; an exception in the producer is re-raised here.
  """
  if size <= 0:
    for x in iterator:
      yield put(x)
    return
  q: queue.Queue = queue.Queue(maxsize=size)
  stop = threading.Event()

  def producer():
    try:
      for x in iterator:
        if stop.is_set():
          return
        q.put(put(x))
      q.put(_END)
    except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
      q.put(e)

  thread = threading.Thread(target=producer, daemon=True)
  thread.start()
  try:
    while True:
      x = q.get()
      if x is _END:
        return
      if isinstance(x, BaseException):
        raise x
      yield x
  finally:
    stop.set()
