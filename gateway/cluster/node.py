"""This gateway as a cluster node: its heartbeat, and the rooms it is home to."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import socket
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..config import ClusterSettings
from ..errors import GatewayError
from .directory import Directory, NodeInfo
from .events import ClusterEvents

logger = logging.getLogger(__name__)


class ToNode(GatewayError):
    """Another node serves this request: a WHIP/WHEP client is redirected there (307, RFC
    9725 4.5), a WebSocket client told where it is (``node`` in the error)."""

    def __init__(self, code: str, message: str, node: NodeInfo) -> None:
        super().__init__(307, code, message)
        self.node = node
        self.redirect_base = node.url.rstrip("/")


class RoomElsewhere(ToNode):
    """The room is homed on another node."""

    def __init__(self, room: str, node: NodeInfo) -> None:
        super().__init__("room-elsewhere", f"room {room!r} is on node {node.id}", node)


class GatewayFull(ToNode):
    """This node takes no more viewers: the viewer is sent to one with room."""

    def __init__(self, node: NodeInfo) -> None:
        super().__init__("gateway-full", f"this gateway is full; node {node.id} has room", node)


def spare(node: NodeInfo) -> float:
    """Viewers a node can still take, by its last heartbeat (inf: no cap; 0: none)."""
    if node.load.get("draining"):
        return 0.0
    max_cpu = float(node.load.get("max_cpu") or 0)
    if max_cpu and float(node.load.get("cpu") or 0) >= max_cpu:
        return 0.0
    max_egress = float(node.load.get("max_egress_mbps") or 0)
    if max_egress and float(node.load.get("egress_mbps") or 0) >= max_egress:
        return 0.0
    cap = int(node.load.get("max_viewers") or 0)
    if not cap:
        return float("inf")
    return max(0.0, cap - float(node.load.get("viewers") or 0))


def _relay_room(node: NodeInfo) -> float:
    """Relays a node may still feed, by its last heartbeat (inf: no cap)."""
    cap = int(node.load.get("max_relays") or 0)
    if not cap:
        return float("inf")
    return cap - float(node.load.get("relays_out") or 0)


def pipe_path(directory: str, node_id: str) -> str:
    """A node's frame pipe socket: named by a digest of its id, so that any id fits in a
    Unix socket path (108 bytes at most)."""
    return str(Path(directory) / f"{hashlib.sha256(node_id.encode()).hexdigest()[:16]}.sock")


class ClusterNode:
    """Registers this node in the Directory every ``heartbeat_s`` with its load, keeps the
    rooms it homes alive there, and releases them (and itself) when it closes. A node that
    dies stops renewing: after ``node_ttl_s`` its rooms go to the next node asked."""

    def __init__(self, settings: ClusterSettings, load: Callable[[], dict[str, Any]]) -> None:
        self.settings = settings
        self.id = settings.node_id or f"{socket.gethostname()}-{secrets.token_hex(3)}"
        self.url = settings.advertise_url.rstrip("/")
        # Other nodes of this machine pull rooms homed here over this Unix socket.
        self.pipe = pipe_path(settings.pipe_dir, self.id) if settings.pipe_dir else ""
        self._load = load
        self._redis: Redis = Redis.from_url(
            settings.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0
        )
        self.directory = Directory(self._redis, settings.key_prefix, settings.node_ttl_s)
        self.events = ClusterEvents(self._redis, settings.key_prefix, self.id)
        self.started_at = time.time()
        self.homed: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._releases: set[asyncio.Task[None]] = set()
        self.heartbeats = 0
        self.heartbeat_errors = 0
        self.rooms_lost = 0
        self.signal_relays = 0  # client sockets carried on to the node homing their room
        # Told of each room another node took over (the registry ends it here).
        self.on_lost: Callable[[str], None] | None = None

    def info(self) -> NodeInfo:
        return NodeInfo(self.id, self.url, self.started_at, time.time(), self._load(), self.pipe)

    def can_pipe(self, node: NodeInfo) -> bool:
        """Whether ``node`` can be pulled over the frame pipe: both have one, in the same
        directory (nodes of one machine sharing cluster.pipe_dir, a front's workers)."""
        if not self.pipe or not node.pipe or node.id == self.id:
            return False
        return Path(node.pipe).parent == Path(self.pipe).parent

    async def start(self) -> None:
        """The first heartbeat: a Redis that cannot be reached stops the start."""
        try:
            await self.directory.heartbeat(self.info())
        except (RedisError, OSError) as exc:
            await self._redis.aclose()
            raise RuntimeError(
                f"cluster: cannot reach Redis at {self.settings.redis_url}: {exc}"
            ) from exc
        self.heartbeats += 1
        self._task = asyncio.ensure_future(self._beat())
        self.events.start()
        logger.info("cluster node %s (%s) joined", self.id, self.url)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            try:
                await self.directory.heartbeat(self.info())
                lost = await self.directory.refresh(sorted(self.homed), self.id)
                self.heartbeats += 1
            except (RedisError, OSError) as exc:
                # Redis away: keep serving what is here; other nodes see this one expire.
                self.heartbeat_errors += 1
                if self.heartbeat_errors == 1 or self.heartbeat_errors % 30 == 0:
                    logger.warning("cluster heartbeat failed (%d): %s", self.heartbeat_errors, exc)
                continue
            for room in lost:
                # Taken over while this node looked dead: one home only, so this node's
                # copy of it ends (its clients reconnect, and are sent to the new home).
                self.rooms_lost += 1
                self.homed.discard(room)
                logger.warning("room %s was re-homed while this node looked dead", room)
                if self.on_lost is not None:
                    self.on_lost(room)

    async def claim(self, room: str) -> None:
        """Make this node ``room``'s home, or raise RoomElsewhere with the node that is."""
        home = await self._call(self.directory.claim(room, self.id))
        if home == self.id:
            self.homed.add(room)
            return
        node = await self._call(self.directory.node(home))
        if node is None:  # expired between the two calls: try once more
            home = await self._call(self.directory.claim(room, self.id))
            node = None if home == self.id else await self._call(self.directory.node(home))
            if node is None:
                self.homed.add(room)
                return
        raise RoomElsewhere(room, node)

    async def home(self, room: str) -> NodeInfo | None:
        """The other live node ``room`` is homed on (None: here, or nowhere)."""
        home = await self._call(self.directory.home(room))
        if home is None or home == self.id:
            return None
        node: NodeInfo | None = await self._call(self.directory.node(home))
        return node

    async def roomiest(self) -> NodeInfo | None:
        """The other live node with the most room for viewers (fewest viewers among the
        uncapped ones), if any has room."""
        every: list[NodeInfo] = await self._call(self.directory.nodes())
        nodes = [n for n in every if n.id != self.id]
        open_nodes = [n for n in nodes if spare(n) > 0]
        if not open_nodes:
            return None
        return max(open_nodes, key=lambda n: (spare(n), -float(n.load.get("viewers") or 0)))

    async def source(self, room: str, home: NodeInfo, exclude: Collection[str] = ()) -> NodeInfo:
        """Where a new relay of ``room`` pulls from: its home while the home feeds fewer
        relays than its cluster.max_relays, else the live node holding a copy of it with the
        most room under its own cap (a relay tree), else the home anyway. ``exclude``:
        base URLs not to use (a source that was just lost)."""
        if _relay_room(home) > 0:
            return home
        candidates: list[NodeInfo] = []
        for node_id in await self._call(self.directory.copies(room)):
            if node_id == self.id:
                continue
            node = await self._call(self.directory.node(node_id))
            if node is not None and _relay_room(node) > 0 and node.url not in exclude:
                candidates.append(node)
        if not candidates:
            return home
        best: NodeInfo = max(candidates, key=_relay_room)
        return best

    async def add_copy(self, room: str) -> None:
        await self._call(self.directory.add_copy(room, self.id))

    def remove_copy_soon(self, room: str) -> None:
        task = asyncio.ensure_future(self._remove_copy(room))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _remove_copy(self, room: str) -> None:
        try:
            await self.directory.remove_copy(room, self.id)
        except (RedisError, OSError) as exc:
            logger.warning("forgetting this node's copy of room %s: %s", room, exc)

    async def release(self, room: str) -> None:
        if room in self.homed:
            self.homed.discard(room)
            await self._call(self.directory.release(room, self.id))

    def release_soon(self, room: str) -> None:
        """``release`` from synchronous code (a room released by the registry)."""
        if room not in self.homed:
            return
        task = asyncio.ensure_future(self._release_quietly(room))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _release_quietly(self, room: str) -> None:
        try:
            await self.events.forget(room)
            await self.release(room)
        except GatewayError as exc:
            logger.warning("releasing room %s: %s (it expires by itself)", room, exc.message)

    async def _call(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except (RedisError, OSError) as exc:
            raise GatewayError(
                503, "cluster-unavailable", f"the cluster's state cannot be reached: {exc}", 5
            ) from exc

    async def describe(self) -> dict[str, Any]:
        nodes = await self._call(self.directory.nodes())
        homes = await self._call(self.directory.homes())
        return {
            "node": self.id,
            "nodes": [
                {**n.describe(), "rooms": sorted(r for r, h in homes.items() if h == n.id)}
                for n in nodes
            ],
            "events": self.events.stats(),
            "heartbeats": self.heartbeats,
            "heartbeat_errors": self.heartbeat_errors,
            "rooms_lost": self.rooms_lost,
            "signal_relays": self.signal_relays,
        }

    async def close(self) -> None:
        """Leave the cluster: rooms released at once, not after the TTL."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._releases:
            await asyncio.gather(*self._releases, return_exceptions=True)
        await self.events.close()
        try:
            for room in sorted(self.homed):
                await self.directory.release(room, self.id)
            await self.directory.leave(self.id)
        except (RedisError, OSError) as exc:
            logger.warning("leaving the cluster: %s", exc)
        self.homed.clear()
        await self._redis.aclose()
