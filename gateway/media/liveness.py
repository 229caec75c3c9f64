"""Publisher liveness: a peer that sends nothing (no RTP, no RTCP) for a while is lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class Liveness:
    """Watches a count of datagrams received from a peer; calls ``on_lost`` once when it
    has not moved for ``timeout_s``.

    Polled a few times per timeout, so the packet path pays nothing (the count is one
    aiortc keeps anyway). Any RTP or RTCP counts: a muted track, or Opus in DTX silence,
    still sends RTCP reports and comfort noise, so only a peer that is gone goes quiet.
    ICE consent checks (STUN) do not count: they are answered by the ICE agent below.
    """

    def __init__(
        self, timeout_s: float, received: Callable[[], int], on_lost: Callable[[float], None]
    ) -> None:
        self.timeout_s = timeout_s
        self._received = received
        self._on_lost = on_lost
        self._count = received()
        self.last_activity = time.monotonic()  # when the count last moved
        self._interval_s = max(0.1, min(0.5, timeout_s / 4))
        self._timer: asyncio.TimerHandle | None = None
        self.lost = False

    def start(self) -> None:
        if self._timer is None and not self.lost:
            self._timer = asyncio.get_running_loop().call_later(self._interval_s, self._check)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        self._timer = None
        now = time.monotonic()
        count = self._received()
        if count != self._count:
            self._count, self.last_activity = count, now
        elif now - self.last_activity >= self.timeout_s:
            self.lost = True
            self._on_lost(now - self.last_activity)
            return
        self.start()
