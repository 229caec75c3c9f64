"""Coalesces keyframe requests for one track into at most one upstream PLI per interval."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

ANSWER_S = 1.0


class KeyframeRequester:
    """Throttles keyframe requests (PLI) sent to one publisher.

    Many viewers joining or losing packets at once must not become a PLI storm:
    every keyframe costs the publisher a burst of bitrate. A request inside the
    interval is remembered and sent when the interval ends, unless a keyframe
    arrived meanwhile and answered it.

    A PLI that no keyframe answers within ANSWER_S is sent again: the PLI may be lost,
    and libwebrtc ignores one that comes right after a keyframe it has just sent (seen
    with simulcast layers starting), which would leave a viewer waiting for good.
    """

    def __init__(self, interval_s: float, send: Callable[[], bool]) -> None:
        self._interval = interval_s
        # Sends one PLI; returns False when it cannot yet (no SSRC known).
        self._send = send
        self._last_sent = -float("inf")
        self._timer: asyncio.TimerHandle | None = None
        self._unanswered: asyncio.TimerHandle | None = None
        self.pending = False
        self.sent = 0
        self.coalesced = 0
        self.unanswered = 0  # PLIs sent again: no keyframe came within ANSWER_S

    def request(self) -> None:
        now = time.monotonic()
        if self.pending:
            self.coalesced += 1
            return
        if now - self._last_sent >= self._interval:
            self._fire(now)
        else:
            self.pending = True
            self._arm(self._last_sent + self._interval - now)

    def keyframe_arrived(self) -> None:
        # A keyframe answers any request made before it.
        self.pending = False
        self._cancel()
        self._cancel_unanswered()

    def retry(self) -> None:
        """Called when sending becomes possible (first packet seen)."""
        if self.pending and self._timer is None:
            self.pending = False
            self.request()

    def close(self) -> None:
        self.pending = False
        self._cancel()
        self._cancel_unanswered()

    def _fire(self, now: float) -> None:
        if self._send():
            self._last_sent = now
            self.sent += 1
            self.pending = False
            self._cancel_unanswered()
            self._unanswered = asyncio.get_running_loop().call_later(
                max(ANSWER_S, self._interval), self._not_answered
            )
        else:
            self.pending = True

    def _on_timer(self) -> None:
        self._timer = None
        if self.pending:
            self.pending = False
            self._fire(time.monotonic())

    def _not_answered(self) -> None:
        self._unanswered = None
        self.unanswered += 1
        self.request()

    def _cancel_unanswered(self) -> None:
        if self._unanswered is not None:
            self._unanswered.cancel()
            self._unanswered = None

    def _arm(self, delay: float) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
