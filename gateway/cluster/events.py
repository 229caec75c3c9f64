"""Room events across nodes: the home node publishes each room's events (and its state) to
Redis; every node delivers them to its own watchers of that room."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

Listener = Callable[[dict[str, Any]], None]
OUTBOX = 1000  # events waiting to be published; past it the oldest are dropped (counted)
STATE_TTL_S = 86400  # a dead home's last state is ignored at once, deleted after a day


class ClusterEvents:
    """One pub/sub connection per node, subscribed to the channels of the rooms its
    watchers watch (``{prefix}events:{room}``), and a bounded outbox that publishes this
    node's events off the caller's path (room events are emitted synchronously)."""

    def __init__(self, redis: Redis, prefix: str, node_id: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._node_id = node_id
        self._pubsub: PubSub = redis.pubsub(ignore_subscribe_messages=True)
        self._listeners: dict[str, set[Listener]] = {}
        self._outbox: deque[tuple[str, dict[str, Any], dict[str, Any]]] = deque(maxlen=OUTBOX)
        self._wake = asyncio.Event()
        self._subscribed = asyncio.Event()  # the pub/sub connection exists
        self._tasks: list[asyncio.Task[None]] = []
        self.published = 0
        self.delivered = 0
        self.dropped = 0
        self.errors = 0

    def _channel(self, room: str) -> str:
        return f"{self._prefix}events:{room}"

    def _state_key(self, room: str) -> str:
        return f"{self._prefix}state:{room}"

    def start(self) -> None:
        self._tasks = [asyncio.ensure_future(self._send()), asyncio.ensure_future(self._receive())]

    # -- this node's events, for the others ----------------------------------------------

    def publish(self, room: str, event: dict[str, Any], state: dict[str, Any]) -> None:
        """Queue ``event`` of a room homed here, with the room's state after it."""
        if len(self._outbox) == self._outbox.maxlen:
            self.dropped += 1
        self._outbox.append((room, event, state))
        self._wake.set()

    async def _send(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox:
                room, event, state = self._outbox.popleft()
                message = json.dumps({"node": self._node_id, "event": event})
                try:
                    async with self._redis.pipeline(transaction=False) as pipe:
                        pipe.set(self._state_key(room), json.dumps(state), ex=STATE_TTL_S)
                        pipe.publish(self._channel(room), message)
                        await pipe.execute()
                    self.published += 1
                except (RedisError, OSError) as exc:
                    self.errors += 1
                    if self.errors == 1 or self.errors % 100 == 0:
                        logger.warning("publishing room events failed (%d): %s", self.errors, exc)

    async def forget(self, room: str) -> None:
        """A room released by its home: its state is no longer true."""
        with contextlib.suppress(RedisError, OSError):
            await self._redis.delete(self._state_key(room))

    async def state(self, room: str) -> dict[str, Any] | None:
        """The last state the room's home published (check the home is alive first)."""
        try:
            raw = await self._redis.get(self._state_key(room))
        except (RedisError, OSError):
            return None
        return None if raw is None else dict(json.loads(raw))

    # -- the others' events, for this node's watchers -------------------------------------

    async def watch(self, room: str, listener: Listener) -> None:
        listeners = self._listeners.setdefault(room, set())
        first = not listeners
        listeners.add(listener)
        if first:
            try:
                await self._pubsub.subscribe(self._channel(room))
            except (RedisError, OSError) as exc:
                self.errors += 1
                logger.warning("subscribing to room %s's events failed: %s", room, exc)
            else:
                self._subscribed.set()

    async def unwatch(self, room: str, listener: Listener) -> None:
        listeners = self._listeners.get(room)
        if listeners is None:
            return
        listeners.discard(listener)
        if not listeners:
            del self._listeners[room]
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.unsubscribe(self._channel(room))

    async def _receive(self) -> None:
        prefix = self._channel("")
        while True:
            await self._subscribed.wait()  # before a first subscribe there is no connection
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except (RedisError, OSError) as exc:
                self.errors += 1
                logger.warning("room events from the cluster: %s", exc)
                await asyncio.sleep(1.0)
                continue
            if message is None or message.get("type") != "message":
                continue
            channel = message["channel"]
            room = (channel.decode() if isinstance(channel, bytes) else channel)[len(prefix) :]
            try:
                body = json.loads(message["data"])
            except ValueError:
                continue
            if body.get("node") == self._node_id:
                continue  # ours: our watchers had it already
            for listener in list(self._listeners.get(room, ())):
                try:
                    listener(body["event"])
                    self.delivered += 1
                except Exception:
                    logger.exception("room event listener failed")

    def stats(self) -> dict[str, int]:
        return {
            "published": self.published,
            "delivered": self.delivered,
            "dropped": self.dropped,
            "errors": self.errors,
            "rooms_watched": len(self._listeners),
        }

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.aclose()
