"""A named routing scope: one publishing session and the sessions watching it."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

from ..errors import GatewayError, bad_request
from ..media.publisher import Publisher
from .session import Session

logger = logging.getLogger(__name__)

ROOM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

EventListener = Callable[[dict[str, Any]], None]


def check_room_name(name: str) -> str:
    if not ROOM_NAME.match(name):
        raise bad_request(
            "room names are 1-64 characters of letters, digits, '.', '_' and '-', "
            "starting with a letter or digit",
            "invalid-room-name",
        )
    return name


class Room:
    """Holds who publishes and who watches; tells listeners when that changes."""

    def __init__(self, name: str, max_subscribers: int) -> None:
        self.name = check_room_name(name)
        self.max_subscribers = max_subscribers
        self.created_at = time.time()
        self.publisher: Session | None = None
        self._announced = False
        self.subscribers: set[Session] = set()
        self._listeners: set[EventListener] = set()

    @property
    def publishers(self) -> list[Publisher]:
        if self.publisher is None or self.publisher.closed:
            return []
        return list(self.publisher.publishers)

    def claim_publisher(self, session: Session) -> None:
        if self.publisher is not None and not self.publisher.closed:
            raise GatewayError(409, "room-busy", f"room {self.name!r} already has a publisher")
        self.publisher = session
        session.on_close(self._publisher_closed)

    def announce_publisher(self) -> None:
        """Tell listeners a publisher's tracks are ready to subscribe to."""
        if self.publisher is not None:
            self._announced = True
            self.emit(
                {
                    "type": "publisher-joined",
                    "room": self.name,
                    "publisher": self.publisher.describe(),
                }
            )

    def add_subscriber(self, session: Session) -> None:
        if len(self.subscribers) >= self.max_subscribers:
            raise GatewayError(
                503,
                "room-full",
                f"room {self.name!r} has its maximum of {self.max_subscribers} viewers",
            )
        self.subscribers.add(session)
        session.on_close(self.subscribers.discard)

    def _publisher_closed(self, session: Session) -> None:
        if self.publisher is not session:
            return
        self.publisher = None
        if self._announced:
            self._announced = False
            self.emit({"type": "publisher-left", "room": self.name, "session": session.id})
        # Viewers of a stream that ended have nothing left to receive.
        for subscriber in list(self.subscribers):
            subscriber.close_soon("publisher-left")

    def listen(self, listener: EventListener) -> None:
        self._listeners.add(listener)

    def unlisten(self, listener: EventListener) -> None:
        self._listeners.discard(listener)

    def emit(self, event: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                logger.exception("room event listener failed")

    @property
    def idle(self) -> bool:
        return self.publisher is None and not self.subscribers and not self._listeners

    def describe(self) -> dict[str, Any]:
        return {
            "room": self.name,
            "publisher": self.publisher.describe() if self.publisher else None,
            "subscribers": len(self.subscribers),
        }

    def stats(self) -> dict[str, Any]:
        return {
            "room": self.name,
            "live": self.publisher is not None and not self.publisher.closed,
            "publisher_session": self.publisher.id if self.publisher else None,
            "subscribers": len(self.subscribers),
            "tracks": [p.stats() for p in self.publishers],
        }
