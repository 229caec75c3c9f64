"""All rooms and sessions of one gateway process; creates them and removes idle ones."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..config import Config
from ..errors import GatewayError, not_found
from .room import Room, check_room_name
from .session import PUBLISHER, SUBSCRIBER, Session

logger = logging.getLogger(__name__)


class Registry:
    """Owns every Room and Session; closing it closes them all."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.rooms: dict[str, Room] = {}
        self.sessions: dict[str, Session] = {}

    def room(self, name: str) -> Room | None:
        return self.rooms.get(check_room_name(name))

    def get_or_create_room(self, name: str) -> Room:
        room = self.room(name)
        if room is None:
            if len(self.rooms) >= self.config.rooms.max_rooms:
                raise GatewayError(
                    503, "too-many-rooms", "the gateway has its maximum number of rooms"
                )
            room = Room(name, self.config.rooms.max_subscribers)
            self.rooms[name] = room
        return room

    def session(self, session_id: str, room: str | None = None) -> Session:
        session = self.sessions.get(session_id)
        if session is None or (room is not None and session.room.name != room):
            raise not_found(f"no session {session_id!r}", "unknown-session")
        return session

    async def publish(self, room_name: str, offer: str, transport: str) -> tuple[Session, str]:
        room = self.get_or_create_room(room_name)
        session = Session(room, PUBLISHER, self.config, transport)
        self._track(session)
        try:
            room.claim_publisher(session)
            answer = await session.accept_publish(offer)
        except BaseException:
            await session.close("rejected")
            raise
        room.announce_publisher()
        return session, answer

    async def subscribe(self, room_name: str, offer: str, transport: str) -> tuple[Session, str]:
        room = self.room(room_name)
        if room is None or not room.publishers:
            raise not_found(f"room {room_name!r} has no publisher", "no-publisher")
        session = Session(room, SUBSCRIBER, self.config, transport)
        self._track(session)
        try:
            room.add_subscriber(session)
            answer = await session.accept_subscribe(offer, room.publishers)
        except BaseException:
            await session.close("rejected")
            raise
        return session, answer

    def _track(self, session: Session) -> None:
        self.sessions[session.id] = session
        session.on_close(self._forget)

    def _forget(self, session: Session) -> None:
        self.sessions.pop(session.id, None)
        self.release_if_idle(session.room)

    def release_if_idle(self, room: Room) -> None:
        # Deferred: the closing session is still attached to the room right now.
        asyncio.get_running_loop().call_soon(self._drop_if_idle, room)

    def _drop_if_idle(self, room: Room) -> None:
        if room.idle and self.rooms.get(room.name) is room:
            del self.rooms[room.name]
            logger.info("room %s is idle and released", room.name)

    async def close(self) -> None:
        sessions = list(self.sessions.values())
        await asyncio.gather(*(s.close("shutdown") for s in sessions), return_exceptions=True)
        self.rooms.clear()

    def stats(self) -> dict[str, Any]:
        return {
            "rooms": [room.stats() for room in self.rooms.values()],
            "sessions": len(self.sessions),
        }
