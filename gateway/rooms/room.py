"""A named routing scope: one publishing session and the sessions watching it."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ..errors import GatewayError, bad_request
from ..media.publisher import Publisher
from .session import Session

logger = logging.getLogger(__name__)

SFU = "sfu"  # media goes through the gateway
P2P = "p2p"  # the gateway relays signaling only; media flows between browsers

ROOM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

EventListener = Callable[[dict[str, Any]], None]

# Publisher ends after which its tracks are not kept for a return: it never went live
# (rejected), the gateway itself is going away, or the room is another node's now.
NOT_HELD = frozenset({"rejected", "shutdown", "room-moved"})


@dataclass
class HeldStream:
    """A stream publisher's tracks, kept (viewers and all) for its return."""

    publisher: str  # public id of the session that published them
    identity: str | None  # its token identity: only that identity may take them over
    tracks: list[Publisher]
    reason: str  # why its session ended
    since: float  # monotonic
    deadline: float  # monotonic: then the stream ends for good
    timer: asyncio.TimerHandle | None = None

    def left_s(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def fits(self, planned: list[tuple[str, str]]) -> bool:
        """Whether a new offer's (kind, codec) m-lines can feed every kept track."""
        wanted = [(p.kind, p.codec.lower()) for p in self.tracks if not p.closed]
        offered = [(kind, codec.lower()) for kind, codec in planned]
        return all(offered.count(track) >= wanted.count(track) for track in set(wanted))


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
        self,
        name: str,
        max_subscribers: int,
        max_participants: int = 50,
        mode: str = SFU,
        publisher_grace_s: float = 0.0,
    ) -> None:
        self.name = check_room_name(name)
        self.mode = mode
        self.max_subscribers = max_subscribers
        self.max_participants = max_participants
        self.signals_relayed = 0
        self.created_at = time.time()
        self.publisher: Session | None = None
        self._announced = False
        # A stream publisher that ended keeps its tracks (and viewers) this long for its
        # return; meanwhile they are ``held``.
        self.publisher_grace_s = publisher_grace_s
        self.held: HeldStream | None = None
        self._taking_over: HeldStream | None = None  # held tracks a new publisher adopts
        self.takeovers = 0
        # Told when the room may have become idle (a held stream ended by itself).
        self.on_idle: Callable[[Room], None] | None = None
        # This node's copy of a room homed on another node (a cluster relay): its watchers
        # get the home's events, not the copy's.
        self.copy = False
        # Every event, after the listeners (a cluster home shares them with other nodes).
        self.on_event: EventListener | None = None
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
        elif self.held is not None:
            # Paused: viewers may still subscribe; they get frames when it resumes.
            tracks.extend(p for p in self.held.tracks if not p.closed)
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

    def claim_publisher(
        self, session: Session, planned: list[tuple[str, str]] | None = None
    ) -> None:
        """Make ``session`` the stream publisher. ``planned`` is what its offer publishes
        ((kind, codec) per m-line): if the room holds a stream it can feed, it takes
        that stream over (only its publisher's identity may, while the grace lasts)."""
        if self.publisher is not None and not self.publisher.closed:
            raise GatewayError(409, "room-busy", f"room {self.name!r} already has a publisher")
        held = self.held
        if held is not None:
            if held.identity != session.identity:
                raise GatewayError(
                    409,
                    "publisher-returning",
                    f"room {self.name!r} is kept {held.left_s():.0f} s more for its "
                    "publisher to return",
                    retry_after_s=max(1, round(held.left_s())),
                )
            if planned is not None and held.fits(planned):
                self._cancel_hold()
                self._taking_over = held
                session.media.adopt(held.tracks)
            else:
                # Another codec or fewer tracks: the kept stream cannot go on; viewers
                # end and come back to the new one.
                self._end_held("publisher-changed")
        self.publisher = session
        session.hold_tracks = self._hold
        session.on_close(self._publisher_closed)

    def announce_publisher(self) -> None:
        """Tell listeners a publisher's tracks are ready to subscribe to (or, for a
        returning publisher, that its stream has resumed)."""
        if self.publisher is None:
            return
        self._announced = True
        taken, self._taking_over = self._taking_over, None
        if taken is None:
            self.emit(
                {
                    "type": "publisher-joined",
                    "room": self.name,
                    "publisher": self.publisher.describe(),
                }
            )
            return
        self.takeovers += 1
        adopted = set(map(id, self.publisher.publishers))
        for track in taken.tracks:
            if id(track) not in adopted:
                track.close()  # the new offer publishes fewer tracks: its viewers end
        self.emit(
            {
                "type": "publisher-resumed",
                "room": self.name,
                "publisher": self.publisher.describe(),
                "previous": taken.publisher,
                "paused_s": round(time.monotonic() - taken.since, 3),
            }
        )

    def _hold(self, session: Session) -> list[Publisher]:
        """A closing stream publisher (Session.close): the tracks the room keeps for its
        return (they are detached, not closed), or none."""
        if self.publisher is not session:
            return []
        loop = asyncio.get_running_loop()
        taken, self._taking_over = self._taking_over, None
        if taken is not None:
            # A returning publisher that failed before it went live: back to waiting,
            # with what is left of the first hold.
            held = replace(taken, timer=None)
            held.timer = loop.call_later(held.left_s(), self._grace_over)
            self.held = held
            return held.tracks
        reason = session.close_reason or "closed"
        tracks = session.publishers
        live = self._announced and session.connected_at is not None  # media flowed
        if self.publisher_grace_s <= 0 or reason in NOT_HELD or not live or not tracks:
            return []
        if not self._watched(tracks):
            return []  # nobody to keep it for: a returning publisher starts afresh
        now = time.monotonic()
        held = HeldStream(
            session.public_id, session.identity, tracks, reason, now, now + self.publisher_grace_s
        )
        held.timer = loop.call_later(self.publisher_grace_s, self._grace_over)
        self.held = held
        self.emit(
            {
                "type": "publisher-paused",
                "room": self.name,
                "publisher": session.public_id,
                "reason": reason,
                "resume_within_s": self.publisher_grace_s,
            }
        )
        return tracks

    def end_kept(self) -> None:
        """End a kept stream now, not after its grace (nothing will take it over)."""
        self._grace_over()

    def release(self) -> None:
        """The gateway closes: a kept stream ends without waiting out its grace."""
        held = self.held
        self._cancel_hold()
        if held is not None:
            for track in held.tracks:
                track.close()

    def _watched(self, tracks: list[Publisher]) -> bool:
        """Whether anyone receives the stream: its viewers, or participants subscribed."""
        return bool(self.subscribers) or any(p.forwarder.subscribers for p in tracks)

    def _cancel_hold(self) -> None:
        held, self.held = self.held, None
        if held is not None and held.timer is not None:
            held.timer.cancel()

    def _grace_over(self) -> None:
        if self.held is not None:
            self.held.timer = None
            self._end_held(self.held.reason)
            if self.on_idle is not None:
                self.on_idle(self)

    def _end_held(self, why: str) -> None:
        """The held stream ends for good: its tracks close, its viewers are told."""
        held = self.held
        if held is None:
            return
        self._cancel_hold()
        for track in held.tracks:
            track.close()
        self._stream_ended(held.publisher, held.reason, why)

    def add_subscriber(self, session: Session) -> None:
        if len(self.subscribers) >= self.max_subscribers:
            raise GatewayError(
                503,
                "room-full",
                f"room {self.name!r} has its maximum of {self.max_subscribers} viewers",
            )
        self.subscribers.add(session)
        session.on_close(self._subscriber_closed)

    def _subscriber_closed(self, session: Session) -> None:
        self.subscribers.discard(session)
        held = self.held
        if held is not None and not self._watched(held.tracks):
            # The last viewer of a kept stream left: nothing to keep it for.
            self._grace_over()

    def _publisher_closed(self, session: Session) -> None:
        if self.publisher is not session:
            return
        self.publisher = None
        announced, self._announced = self._announced, False
        if self.held is not None:
            return  # its stream is kept for its return (see _hold)
        if announced:
            self._stream_ended(session.public_id, session.close_reason or "closed")
        else:
            self._close_viewers(session.close_reason or "closed")

    def _stream_ended(self, publisher: str, reason: str, why: str | None = None) -> None:
        event = {"type": "publisher-left", "room": self.name, "publisher": publisher}
        event["reason"] = reason
        if why is not None and why != reason:
            event["ended"] = why  # publisher-changed: another stream replaced it
        self.emit(event)
        self._close_viewers(reason)

    def _close_viewers(self, reason: str) -> None:
        # Viewers of a stream that ended have nothing left to receive.
        why = "publisher-lost" if reason == "publisher-lost" else "publisher-left"
        for subscriber in list(self.subscribers):
            subscriber.close_soon(why)

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
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                logger.exception("sharing a room event failed")

    @property
    def idle(self) -> bool:
        # Watchers do not keep a room: they wait for the next one of its name.
        return (
            self.publisher is None
            and self.held is None
            and not self.subscribers
            and not self.participants
        )

    def describe(self) -> dict[str, Any]:
        return {
            "room": self.name,
            "publisher": self.publisher.describe() if self.publisher else None,
            "subscribers": len(self.subscribers),
            "participants": [p.describe() for p in self.participants.values()],
            "mode": self.mode,
            "paused": self._paused(),
        }

    def _paused(self) -> dict[str, Any] | None:
        """The stream kept for its publisher's return, if any."""
        held = self.held
        if held is None:
            return None
        return {
            "publisher": held.publisher,
            "reason": held.reason,
            "since_s": round(time.monotonic() - held.since, 3),
            "resume_within_s": round(held.left_s(), 3),
        }

    def stats(self) -> dict[str, Any]:
        return {
            "room": self.name,
            "live": bool(self.publishers) and self.held is None,
            "publisher": self.publisher.public_id if self.publisher else None,
            "subscribers": len(self.subscribers),
            "participants": len(self.participants),
            "mode": self.mode,
            "signals_relayed": self.signals_relayed,
            # This node's relay copy of a room homed on another node (a cluster).
            "copy": self.copy,
            "paused": self._paused(),
            "takeovers": self.takeovers,
            "tracks": [p.stats() for p in self.publishers],
        }
