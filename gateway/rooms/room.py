"""A named routing scope: one publishing session and the sessions watching it."""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..errors import GatewayError, bad_request
from ..media.publisher import Publisher
from .session import Session

logger = logging.getLogger(__name__)

SFU = "sfu"  # media goes through the gateway
P2P = "p2p"  # the gateway relays signaling only; media flows between browsers

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


def empty_room(name: str) -> dict[str, Any]:
    """The state of a room nobody is in (what a watcher of it sees)."""
    return {"room": name, "publisher": None, "subscribers": 0, "participants": [], "mode": SFU}


class Room:
    """Holds who publishes and who watches; tells listeners when that changes.

    A room has participants (WebSocket sessions that joined by name, each publishing
    and receiving any tracks over one peer connection), at most one stream publisher
    (WHIP, or a one-purpose WebSocket publish), and viewers of that stream (WHEP).
    """

    def __init__(
        self, name: str, max_subscribers: int, max_participants: int = 50, mode: str = SFU
    ) -> None:
        self.name = check_room_name(name)
        self.mode = mode
        self.max_subscribers = max_subscribers
        self.max_participants = max_participants
        self.signals_relayed = 0
        self.created_at = time.time()
        self.publisher: Session | None = None
        self._announced = False
        self.subscribers: set[Session] = set()
        self.participants: dict[str, Session] = {}
        self._announced_tracks: set[str] = set()  # participants' tracks others were told of
        self._unpublished: deque[str] = deque(maxlen=1000)  # recently gone track ids
        self._listeners: set[EventListener] = set()

    @property
    def publishers(self) -> list[Publisher]:
        """Every live track in the room, the stream publisher's first."""
        tracks: list[Publisher] = []
        if self.publisher is not None and not self.publisher.closed:
            tracks.extend(self.publisher.publishers)
        for participant in self.participants.values():
            tracks.extend(participant.publishers)
        return tracks

    def track(self, track_id: str) -> Publisher:
        for publisher in self.publishers:
            if publisher.id == track_id:
                return publisher
        raise GatewayError(404, "unknown-track", f"room {self.name!r} has no track {track_id!r}")

    def add_participant(self, session: Session) -> None:
        if len(self.participants) >= self.max_participants:
            raise GatewayError(
                503,
                "room-full",
                f"room {self.name!r} has its maximum of {self.max_participants} participants",
            )
        self.emit(
            {"type": "participant-joined", "room": self.name, "participant": session.describe()}
        )
        self.participants[session.public_id] = session
        session.on_close(self._participant_closed)

    def participant(self, participant_id: str) -> Session:
        session = self.participants.get(participant_id)
        if session is None or session.closed:
            raise GatewayError(
                404,
                "unknown-participant",
                f"room {self.name!r} has no participant {participant_id!r}",
            )
        return session

    def chat(self, message: dict[str, Any]) -> None:
        """Deliver a checked chat message to its addressee (and back to its sender), or to
        every participant; each gets it on its data channel if open, else its socket."""
        to = message.get("to")
        if to is not None:
            self.participant(to).deliver(message)
            sender = self.participants.get(message["from"])
            if sender is not None and sender.public_id != to:
                sender.deliver(message)
            return
        for session in list(self.participants.values()):
            session.deliver(message)

    def relay(self, sender: Session, to: str, data: Any) -> None:
        """Peer-to-peer rooms: pass an offer, answer or candidate to one participant."""
        if self.mode != P2P:
            raise GatewayError(
                409, "not-p2p", f"room {self.name!r} carries media through the gateway; use 'offer'"
            )
        self.participant(to).deliver({"type": "signal", "from": sender.public_id, "data": data})
        self.signals_relayed += 1

    def _participant_closed(self, session: Session) -> None:
        if self.participants.pop(session.public_id, None) is None:
            return
        for publisher in session.published.values():
            self.track_unpublished(publisher)
        self.emit(
            {
                "type": "participant-left",
                "room": self.name,
                "participant": session.public_id,
                "reason": session.close_reason,
            }
        )

    def tracks_published(self, session: Session, tracks: list[Publisher]) -> None:
        for publisher in tracks:
            self._announced_tracks.add(publisher.id)
            self.emit(
                {
                    "type": "track-published",
                    "room": self.name,
                    "participant": session.public_id,
                    "track": publisher.describe(),
                }
            )

    def was_unpublished(self, track_id: str) -> bool:
        return track_id in self._unpublished

    def track_unpublished(self, publisher: Publisher) -> None:
        if publisher.id not in self._announced_tracks:
            return
        self._unpublished.append(publisher.id)
        self._announced_tracks.discard(publisher.id)
        self.emit({"type": "track-unpublished", "room": self.name, "track": publisher.id})

    def track_muted(self, publisher: Publisher) -> None:
        self.emit(
            {
                "type": "track-muted",
                "room": self.name,
                "track": publisher.id,
                "muted": publisher.muted,
            }
        )

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
            self.emit(
                {
                    "type": "publisher-left",
                    "room": self.name,
                    "publisher": session.public_id,
                    "reason": session.close_reason,
                }
            )
        # Viewers of a stream that ended have nothing left to receive.
        reason = "publisher-lost" if session.close_reason == "publisher-lost" else "publisher-left"
        for subscriber in list(self.subscribers):
            subscriber.close_soon(reason)

    def listen(self, listener: EventListener) -> None:
        self._listeners.add(listener)

    def unlisten(self, listener: EventListener) -> None:
        self._listeners.discard(listener)

    def take_listeners(self) -> set[EventListener]:
        """Remove and return every listener (the room is being released)."""
        listeners, self._listeners = self._listeners, set()
        return listeners

    def emit(self, event: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                logger.exception("room event listener failed")

    @property
    def idle(self) -> bool:
        # Watchers do not keep a room: they wait for the next one of its name.
        return self.publisher is None and not self.subscribers and not self.participants

    def describe(self) -> dict[str, Any]:
        return {
            "room": self.name,
            "publisher": self.publisher.describe() if self.publisher else None,
            "subscribers": len(self.subscribers),
            "participants": [p.describe() for p in self.participants.values()],
            "mode": self.mode,
        }

    def stats(self) -> dict[str, Any]:
        return {
            "room": self.name,
            "live": bool(self.publishers),
            "publisher": self.publisher.public_id if self.publisher else None,
            "subscribers": len(self.subscribers),
            "participants": len(self.participants),
            "mode": self.mode,
            "signals_relayed": self.signals_relayed,
            "tracks": [p.stats() for p in self.publishers],
        }
