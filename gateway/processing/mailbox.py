"""The hand-off from the event loop to a rendition's worker thread: bounded, never blocking."""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Mailbox(Generic[T]):
    """A bounded queue the loop puts into without waiting and one worker drains whole.

    The worker takes everything waiting at once (``take``) so it can decide what to
    skip: a video rendition decodes every frame but processes only the newest. When
    ``capacity`` items wait (the worker cannot even keep up with decoding) the whole
    backlog is discarded, counted in ``overflows``/``discarded``: for video the next
    useful frame is a keyframe anyway, and for audio stale samples are worse than a gap.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._items: deque[T] = deque()
        self._ready = threading.Condition(threading.Lock())
        self._closed = False
        self.put_count = 0
        self.overflows = 0
        self.discarded = 0

    def put(self, item: T, overflow_marker: T | None = None) -> bool:
        """Add ``item``; False if the backlog overflowed and was discarded first (then
        ``overflow_marker``, if given, goes in ahead of ``item`` to tell the worker)."""
        with self._ready:
            if self._closed:
                return True
            overflowed = len(self._items) >= self.capacity
            if overflowed:
                self.overflows += 1
                self.discarded += len(self._items)
                self._items.clear()
                if overflow_marker is not None:
                    self._items.append(overflow_marker)
            self._items.append(item)
            self.put_count += 1
            self._ready.notify()
        return not overflowed

    def take(self, timeout: float | None = None) -> list[T] | None:
        """Everything waiting (blocking until something is); None once closed."""
        with self._ready:
            while not self._items and not self._closed:
                if not self._ready.wait(timeout):
                    return []
            if self._closed:
                return None
            items = list(self._items)
            self._items.clear()
            return items

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._items.clear()
            self._ready.notify_all()

    def __len__(self) -> int:
        return len(self._items)
