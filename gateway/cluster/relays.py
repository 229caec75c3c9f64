"""The relays of one node: at most one per room homed elsewhere, made on a viewer's demand
and closed when its last viewer has been gone ``relay_linger_s``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp

from ..auth.grants import ALL
from ..auth.minting import mint
from ..auth.principal import Principal
from ..config import Config
from ..errors import GatewayError
from .directory import NodeInfo
from .node import ClusterNode, RoomElsewhere
from .pipe_relay import PipeRelaySession
from .relay import RELAY, RelaySession

if TYPE_CHECKING:
    from ..rooms.room import Room
    from ..rooms.session import Session

logger = logging.getLogger(__name__)

TOKEN_TTL_S = 300.0


class Relays:
    """Makes this node's copy of a room homed on another node (a RelaySession published in
    a local room of the same name), shares it among every local viewer, and ends it."""

    def __init__(
        self,
        config: Config,
        node: ClusterNode,
        room_for: Callable[[str], Room],
        track: Callable[[Session], None],
    ) -> None:
        self._config = config
        self._node = node
        self._room_for = room_for  # the registry's get_or_create_room
        self._track = track  # the registry's session bookkeeping
        self._http: aiohttp.ClientSession | None = None
        self._pulling: dict[str, asyncio.Future[Room | None]] = {}
        self._lingering: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.made = 0
        self.piped = 0  # of those, pulled over the frame pipe
        self.failed = 0
        self.replaced = 0  # relays that took over a lost one's tracks and viewers

    async def copy(self, name: str) -> Room | None:
        """A local room carrying ``name``'s stream from its home node, or None when no other
        node is its home. Raises RoomElsewhere when relaying is off (a 307 there)."""
        pending = self._pulling.get(name)
        if pending is not None:
            return await asyncio.shield(pending)  # a relay for it is being made: share it
        # Registered before the first await: viewers arriving together share one relay.
        future: asyncio.Future[Room | None] = asyncio.get_running_loop().create_future()
        self._pulling[name] = future
        try:
            room = await self._copy(name)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: a lone caller must not leave it unobserved
            raise
        else:
            future.set_result(room)
            return room
        finally:
            del self._pulling[name]

    async def _copy(self, name: str) -> Room | None:
        home = await self._node.home(name)
        if home is None:
            return None
        if not self._config.cluster.relay:
            raise RoomElsewhere(name, home)
        source = await self._node.source(name, home)
        return await self._pull(name, source)

    async def _pull(self, name: str, source: NodeInfo) -> Room:
        room = self._room_for(name)
        # A source on this machine (its frame pipe in our pipe directory) is pulled over
        # the pipe; any other over WebRTC, as a WHEP viewer of it.
        piped = self._node.can_pipe(source)
        kind = PipeRelaySession if piped else RelaySession
        session = kind(room, RELAY, self._config, RELAY, owner=self._principal())
        self._track(session)
        held = room.held
        try:
            # A relay that replaces a lost one takes its tracks over (the room kept them,
            # with their viewers): the same kinds and codecs are expected from the source.
            planned = [(p.kind, p.codec) for p in held.tracks] if held is not None else None
            room.claim_publisher(session, planned)
            if isinstance(session, PipeRelaySession):
                await session.pull_pipe(source.pipe, source.url, self._token(name))
            else:
                await session.pull(self._client(), source.url, self._token(name), self._node.id)
        except BaseException:
            self.failed += 1
            await session.close("relay-failed")
            raise
        room.announce_publisher()
        self.made += 1
        self.piped += piped
        if held is not None:
            self.replaced += 1
        await self._node.add_copy(name)  # others may pull from this copy (a relay tree)
        session.on_close(lambda closed: self._relay_closed(name, closed))
        logger.info(
            "relaying room %s from %s over %s (%d track(s))",
            name,
            source.url,
            "the frame pipe" if piped else "WebRTC",
            len(session.publishers),
        )
        return room

    def _relay_closed(self, name: str, session: Session) -> None:
        self._node.remove_copy_soon(name)
        room = session.room
        if room.held is None or self._closed:
            return  # nobody watched it here (or this node is closing): it just ends
        # Its source is gone (a node died, a link broke) while viewers here watch: the
        # room keeps its tracks (rooms.publisher_grace_s) and a new relay takes them over.
        lost = session.origin if isinstance(session, RelaySession) else ""
        task = asyncio.ensure_future(self._repull(name, room, lost))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _repull(self, name: str, room: Room, lost: str) -> None:
        delay = 0.5
        while room.held is not None and not self._closed:
            try:
                home = await self._node.home(name)
                if home is None:
                    # Its home died too: nothing to pull from. Viewers here are told now
                    # (publisher-lost); a publisher back anywhere re-homes the room.
                    room.end_kept()
                    return
                source = await self._node.source(name, home, exclude={lost})
                await self._pull(name, source)
                logger.info(
                    "room %s: relay from %s replaced by one from %s", name, lost, source.url
                )
                return
            except GatewayError as exc:
                logger.warning("room %s: replacing its relay failed: %s", name, exc.message)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def viewer_left(self, room: Room) -> None:
        """A viewer of ``room`` closed: once none is left for relay_linger_s, the relay ends."""
        if not isinstance(room.publisher, RelaySession) or _watched(room):
            return
        if room.name not in self._lingering:
            self._lingering[room.name] = asyncio.get_running_loop().call_later(
                self._config.cluster.relay_linger_s, self._unused, room
            )

    def viewer_joined(self, room: Room) -> None:
        timer = self._lingering.pop(room.name, None)
        if timer is not None:
            timer.cancel()

    def _unused(self, room: Room) -> None:
        self._lingering.pop(room.name, None)
        relay = room.publisher
        if isinstance(relay, RelaySession) and not _watched(room):
            relay.close_soon("unused")

    def _principal(self) -> Principal:
        # Owns the relay session here: the node itself, allowed everything on it.
        return Principal(f"node:{self._node.id}", ALL, name=self._node.id)

    def _token(self, room: str) -> str | None:
        """What the home node's access policy needs: a token of this node, signed with the
        cluster's shared key (auth on with keys), to watch only this room."""
        auth = self._config.auth
        if not auth.enabled:
            return None
        if not auth.keys:
            raise GatewayError(
                502, "relay-failed", "relaying with auth on needs auth.keys shared by the nodes"
            )
        key = auth.keys[0]
        grants: dict[str, Any] = {"room": room, "roomJoin": True, "canSubscribe": True}
        grants["canPublish"] = False
        grants["canPublishData"] = False
        return mint(key.key, key.secret, f"node:{self._node.id}", grants, ttl_s=TOKEN_TTL_S)

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        return self._http

    def stats(self) -> dict[str, Any]:
        return {
            "made": self.made,
            "piped": self.piped,
            "failed": self.failed,
            "replaced": self.replaced,
            "lingering": len(self._lingering),
        }

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for timer in self._lingering.values():
            timer.cancel()
        self._lingering.clear()
        if self._http is not None:
            await self._http.close()
            self._http = None


def _watched(room: Room) -> bool:
    # A viewer closing is still in the room while its close callbacks run.
    return any(not viewer.closed for viewer in room.subscribers)
