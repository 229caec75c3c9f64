"""Token buckets: one per sender, or one per key in a bounded table."""

from __future__ import annotations

import math
import time
from collections import OrderedDict


class RateLimit:
    """A token bucket: ``rate`` events per second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at = time.monotonic()
        self.refused = 0

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            self.refused += 1
            return False
        self._tokens -= 1
        return True

    @property
    def retry_after_s(self) -> int:
        """Whole seconds until the next event would be allowed (for Retry-After)."""
        missing = max(0.0, 1.0 - self._tokens)
        return max(1, math.ceil(missing / self.rate))


class KeyedRateLimit:
    """A RateLimit per key (a source IP, an identity), at most ``max_keys`` of them.

    When the table is full the least recently seen key is forgotten: a flood of new keys
    costs the flooder its own history, never unbounded memory.
    """

    def __init__(self, rate: float, burst: int, max_keys: int) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, RateLimit] = OrderedDict()

    def take(self, key: str) -> RateLimit | None:
        """None if allowed; else the refusing bucket (its retry_after_s)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = RateLimit(self.rate, self.burst)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return None if bucket.take() else bucket

    def __len__(self) -> int:
        return len(self._buckets)
