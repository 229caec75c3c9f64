"""A cumulative counter's rate over the last second or so (CPU time, bytes sent), sampled when
asked: no task of its own."""

from __future__ import annotations

import time
from collections.abc import Callable

SAMPLE_S = 1.0  # a rate is computed over at least this long


class RateMeter:
    """``rate()`` is what ``counter`` grew by over the last sample interval (``window_s``),
    per second of ``clock``. With ``time.process_time`` as the counter it is this process's share of one
    core (1.0: one core busy; decoder and recorder threads can take it past 1); with a
    byte count, bytes per second. A counter that went back (a source of it retired) counts
    as no growth."""

    def __init__(
        self,
        counter: Callable[[], float] = time.process_time,
        clock: Callable[[], float] = time.monotonic,
        window_s: float = SAMPLE_S,
    ) -> None:
        self._window_s = window_s
        self._counter = counter
        self._clock = clock
        self._at = clock()
        self._seen = counter()
        self._rate = 0.0

    def rate(self) -> float:
        now = self._clock()
        if now - self._at >= self._window_s:
            seen = self._counter()
            self._rate = max(0.0, (seen - self._seen) / (now - self._at))
            self._at, self._seen = now, seen
        return self._rate
