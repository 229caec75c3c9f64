"""A clock for unit tests of code that takes one (``clock=time.monotonic``): time moves only
when the test says."""

from __future__ import annotations


class Clock:
    """Reads the last of ``times``; ``advance`` appends a later one."""

    def __init__(self, start: float = 100.0) -> None:
        self.times = [start]

    def __call__(self) -> float:
        return self.times[-1]

    def advance(self, seconds: float) -> None:
        self.times.append(self.times[-1] + seconds)
