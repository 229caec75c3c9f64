"""The cluster's shared state in Redis: live nodes, and the node each room is homed on."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

# KEYS[1] the room's key; ARGV: this node, the node-key prefix, the TTL in ms.
# The room is ours if nobody has it, if we have it, or if its node's key has expired
# (the node died: its rooms go to whoever asks first). Returns the home's node id.
_CLAIM = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return current
end
if current and redis.call('EXISTS', ARGV[2] .. current) == 1 then
  return current
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return ARGV[1]
"""

# KEYS: room keys; ARGV[1] this node, ARGV[2] the TTL in ms. Keeps the ones still ours
# alive, takes back the ones nobody has (a Redis restarted empty, or a key that expired
# while Redis was slow), and returns the keys another node has (taken over while this
# node looked dead).
_REFRESH = """
local lost = {}
for _, key in ipairs(KEYS) do
  local current = redis.call('GET', key)
  if current == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
  elseif not current then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
  else
    table.insert(lost, key)
  end
end
return lost
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class NodeInfo:
    """What a node says of itself in its heartbeat."""

    id: str
    url: str  # its advertised base URL
    started_at: float
    seen_at: float  # wall clock of its last heartbeat
    load: dict[str, Any]
    pipe: str = ""  # its frame pipe's Unix socket, when it has one (cluster.pipe_dir)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "pipe": self.pipe or None,
            "started_at": self.started_at,
            "seen_s_ago": round(max(0.0, time.time() - self.seen_at), 3),
            "load": self.load,
        }


class Directory:
    """Nodes (a hash per node that expires unless its heartbeat renews it, and a sorted set
    of ids by last heartbeat) and room homes (a key per room holding its node's id, with the
    same expiry, taken with a compare-and-set script: LiveKit's SET NX shape)."""

    def __init__(self, redis: Redis, prefix: str, ttl_s: float) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl_ms = int(ttl_s * 1000)
        self._claim = redis.register_script(_CLAIM)
        self._refresh = redis.register_script(_REFRESH)
        self._release = redis.register_script(_RELEASE)

    def _node_key(self, node_id: str) -> str:
        return f"{self._prefix}node:{node_id}"

    def _room_key(self, room: str) -> str:
        return f"{self._prefix}room:{room}"

    @property
    def _nodes_key(self) -> str:
        return f"{self._prefix}nodes"

    async def heartbeat(self, node: NodeInfo) -> None:
        key = self._node_key(node.id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    "url": node.url,
                    "pipe": node.pipe,
                    "started_at": str(node.started_at),
                    "seen_at": str(node.seen_at),
                    "load": json.dumps(node.load),
                },
            )
            pipe.pexpire(key, self._ttl_ms)
            pipe.zadd(self._nodes_key, {node.id: node.seen_at})
            # Ids of nodes silent for ten TTLs are dropped from the index.
            pipe.zremrangebyscore(self._nodes_key, "-inf", node.seen_at - 10 * self._ttl_ms / 1000)
            await pipe.execute()

    async def leave(self, node_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._node_key(node_id))
            pipe.zrem(self._nodes_key, node_id)
            await pipe.execute()

    async def nodes(self) -> list[NodeInfo]:
        """Every node whose heartbeat has not expired."""
        ids = [_text(i) for i in await self._redis.zrange(self._nodes_key, 0, -1)]
        if not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for node_id in ids:
                pipe.hgetall(self._node_key(node_id))
            found = await pipe.execute()
        return [
            _node(node_id, fields) for node_id, fields in zip(ids, found, strict=True) if fields
        ]

    async def node(self, node_id: str) -> NodeInfo | None:
        fields = await self._redis.hgetall(self._node_key(node_id))
        return _node(node_id, fields) if fields else None

    async def claim(self, room: str, node_id: str) -> str:
        """Home ``room`` on ``node_id`` unless a live node has it; returns its home."""
        home = await self._claim(
            keys=[self._room_key(room)], args=[node_id, self._node_key(""), self._ttl_ms]
        )
        return _text(home)

    async def home(self, room: str) -> str | None:
        """The live node ``room`` is homed on, if any."""
        node_id = await self._redis.get(self._room_key(room))
        if node_id is None:
            return None
        home = _text(node_id)
        return home if await self._redis.exists(self._node_key(home)) else None

    async def refresh(self, rooms: list[str], node_id: str) -> list[str]:
        """Renews this node's rooms (and takes back the ones nobody holds); returns the
        ones another node holds now."""
        if not rooms:
            return []
        lost = await self._refresh(
            keys=[self._room_key(room) for room in rooms], args=[node_id, self._ttl_ms]
        )
        prefix = self._room_key("")
        return [_text(key)[len(prefix) :] for key in lost]

    def _copies_key(self, room: str) -> str:
        return f"{self._prefix}copies:{room}"

    async def add_copy(self, room: str, node_id: str) -> None:
        """``node_id`` holds a relay copy of ``room`` (others may pull from it)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.sadd(self._copies_key(room), node_id)
            pipe.expire(self._copies_key(room), 86400)
            await pipe.execute()

    async def remove_copy(self, room: str, node_id: str) -> None:
        await self._redis.srem(self._copies_key(room), node_id)

    async def copies(self, room: str) -> list[str]:
        members = await self._redis.smembers(self._copies_key(room))
        return sorted(_text(m) for m in members)

    async def release(self, room: str, node_id: str) -> None:
        await self._release(keys=[self._room_key(room)], args=[node_id])

    async def homes(self) -> dict[str, str]:
        """Room -> node id, for every homed room (a SCAN: for /api/cluster, not hot paths)."""
        prefix = self._room_key("")
        keys = [key async for key in self._redis.scan_iter(match=f"{prefix}*", count=500)]
        if not keys:
            return {}
        values = await self._redis.mget(keys)
        return {
            _text(key)[len(prefix) :]: _text(value)
            for key, value in zip(keys, values, strict=True)
            if value is not None
        }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _node(node_id: str, fields: dict[Any, Any]) -> NodeInfo:
    values = {_text(k): _text(v) for k, v in fields.items()}
    return NodeInfo(
        id=node_id,
        url=values.get("url", ""),
        started_at=float(values.get("started_at", 0)),
        seen_at=float(values.get("seen_at", 0)),
        load=json.loads(values.get("load", "{}")),
        pipe=values.get("pipe", ""),
    )
