"""Padding sent to one viewer for a moment, at a rate, to learn whether its link carries a
higher layer before the viewer is put on it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from .subscriber import MAX_PADDING, PADDING_OVERHEAD, Subscriber

TICK_S = 0.02  # padding goes out in bursts this far apart: smooth enough for a queue
PROBE_S = 1.0  # two of the estimate's transport-cc windows


class Probe:
    """Pads ``subscriber``'s stream with ``rate_bps`` more on the wire for ``duration_s``
    (from the next tick of the loop); ``close`` stops it early. Owned by the layer
    selection that starts it."""

    def __init__(
        self,
        subscriber: Subscriber,
        rate_bps: float,
        duration_s: float = PROBE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._subscriber = subscriber
        self.rate_bps = rate_bps
        self._clock = clock
        self.started_at = clock()
        self.ends_at = self.started_at + duration_s
        self._at = self.started_at
        self._owed = 0.0  # wire bytes due and not yet sent
        self.bytes_sent = 0
        self._timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            TICK_S, self._tick
        )

    @property
    def running(self) -> bool:
        return self._timer is not None

    def _tick(self) -> None:
        self._timer = None
        now = self._clock()
        if now >= self.ends_at or self._subscriber.stopped:
            return
        self._owed += self.rate_bps / 8 * (now - self._at)
        self._at = now
        # What is owed on the wire, in full padding packets (headers counted); the rest
        # waits for the next tick.
        packets = int(self._owed // (MAX_PADDING + PADDING_OVERHEAD))
        if packets:
            sent = self._subscriber.pad(packets * MAX_PADDING)
            self.bytes_sent += sent
            # Not sent (the transport is down): owed no more.
            self._owed = self._owed - packets * (MAX_PADDING + PADDING_OVERHEAD) if sent else 0.0
        self._timer = asyncio.get_running_loop().call_later(TICK_S, self._tick)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
