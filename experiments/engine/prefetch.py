"""Prefetching host batches onto devices in a background thread."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

_END = object()


def prefetch(iterator: Iterator[Any], put: Callable[[Any], Any], *, size: int = 2) -> Iterator[Any]:
  """Yields `put(x)` for each x of `iterator`, computing up to `size` ahead.

  Order is preserved; an exception in the producer is re-raised here. When the
  consumer stops early (an exception in the training loop, an early stop), the
  producer thread ends too: it never blocks on a full queue that nobody drains.
  """
  if size <= 0:
    for x in iterator:
      yield put(x)
    return
  q: queue.Queue = queue.Queue(maxsize=size)
  stop = threading.Event()

  def offer(item) -> bool:
    """Puts `item` unless the consumer has stopped; returns whether it went in."""
    while not stop.is_set():
      try:
        q.put(item, timeout=0.05)
        return True
      except queue.Full:
        continue
    return False

  def producer():
    try:
      for x in iterator:
        if not offer(put(x)):
          return
      offer(_END)
    except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
      offer(e)

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
    thread.join(timeout=5.0)
