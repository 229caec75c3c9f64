"""The gateway's way out: refuse new sessions, tell clients, let live sessions end."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from .errors import GatewayError

logger = logging.getLogger(__name__)

# What clients are told to wait before they try again. Load balancers take a few seconds
# to stop routing to a gateway whose readiness fails; a retry after that reaches another.
RETRY_AFTER_S = 5

Notify = Callable[[dict[str, Any]], None]


class Drain:
    """Whether the gateway still takes new sessions, and the wait for the live ones.

    ``begin`` (the first SIGTERM/SIGINT) switches it on for good: from then on ``admit``
    refuses, and every listener (one per WebSocket) has been told ``going-away``.
    ``wait`` returns once ``sessions()`` reaches 0, the timeout passes or ``cut`` (the
    second signal) is called.
    """

    def __init__(self, timeout_s: float = 10.0) -> None:
        self.timeout_s = timeout_s
        self.draining = False
        self.started_at: float | None = None
        self._listeners: set[Notify] = set()
        self._cut = asyncio.Event()

    @property
    def forced(self) -> bool:
        return self._cut.is_set()

    def admit(self) -> None:
        """Raise 503 draining while the gateway drains; return while it takes sessions."""
        if self.draining:
            raise GatewayError(
                503,
                "draining",
                "the gateway is shutting down and takes no new sessions",
                retry_after_s=RETRY_AFTER_S,
            )

    def listen(self, notify: Notify) -> None:
        """``notify`` gets ``going-away``: at once if the drain has begun."""
        self._listeners.add(notify)
        if self.draining:
            notify(going_away())

    def unlisten(self, notify: Notify) -> None:
        self._listeners.discard(notify)

    def begin(self) -> None:
        if self.draining:
            return
        self.draining = True
        self.started_at = time.monotonic()
        message = going_away()
        for notify in list(self._listeners):
            notify(message)

    def cut(self) -> None:
        """Stop waiting for sessions (the second signal)."""
        self._cut.set()

    async def wait(self, sessions: Callable[[], int], interval_s: float = 0.1) -> int:
        """Until no session is left, ``timeout_s`` has passed since ``begin``, or ``cut``;
        returns how many sessions are still open."""
        deadline = (self.started_at or time.monotonic()) + self.timeout_s
        while (left := sessions()) and not self.forced:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # Polled: sessions end in many ways; a tick is cheap against a drain's seconds.
            try:
                await asyncio.wait_for(self._cut.wait(), min(interval_s, remaining))
            except TimeoutError:
                pass
        return left


def going_away() -> dict[str, Any]:
    return {"type": "going-away", "reason": "shutdown", "retry_after": RETRY_AFTER_S}
