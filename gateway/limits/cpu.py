"""This process's CPU use, as a share of one core, sampled when asked (no task of its own)."""

from __future__ import annotations

import time
from collections.abc import Callable

SAMPLE_S = 1.0  # a share is computed over at least this long


class CpuMeter:
    """``share()`` is the CPU time every thread of the process used over the last sample
    interval, divided by the wall time: 1.0 is one core busy (Python's forwarding runs on
    one; decoder and recorder threads can take it past 1)."""

    def __init__(
        self,
        cpu: Callable[[], float] = time.process_time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cpu = cpu
        self._clock = clock
        self._at = clock()
        self._used = cpu()
        self._share = 0.0

    def share(self) -> float:
        now = self._clock()
        if now - self._at >= SAMPLE_S:
            used = self._cpu()
            self._share = max(0.0, (used - self._used) / (now - self._at))
            self._at, self._used = now, used
        return self._share
