"""Gateway processes as one cluster over a real redis-server, for the cluster tests."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import free_port
from tests.support.gateway_process import GatewayProcess, start_gateway_process
from tests.support.redis_server import RedisServer, start_redis

TTL_S = 2.0


@dataclass
class Cluster:
    redis: RedisServer
    nodes: dict[str, GatewayProcess]
    http: aiohttp.ClientSession

    async def get(self, node: str, path: str) -> Any:
        async with self.http.get(self.nodes[node].base + path) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def restart_redis(self, directory: Path) -> None:
        """A new, empty redis-server on the same port (the old one stopped)."""
        await self.redis.stop()
        self.redis = await start_redis(directory, port=self.redis.port)

    async def room(self, node: str, name: str) -> dict[str, Any] | None:
        stats = await self.get(node, "/api/stats")
        return next((r for r in stats["rooms"] if r["room"] == name), None)


def node_config(
    node: str,
    port: int,
    redis_url: str,
    relay: bool = True,
    max_viewers: int = 0,
    max_relays: int = 0,
    pipe_dir: str = "",
) -> str:
    return f"""
server:
  drain_timeout_s: 0
  max_viewers: {max_viewers}
ice:
  addresses: [127.0.0.1]
ingest:
  publisher_timeout_s: 3
log:
  level: info
cluster:
  redis_url: {redis_url}
  node_id: {node}
  advertise_url: http://127.0.0.1:{port}
  heartbeat_s: 0.5
  node_ttl_s: {TTL_S}
  relay: {"true" if relay else "false"}
  relay_linger_s: 1
  max_relays: {max_relays}
  pipe_dir: "{pipe_dir}"
"""


async def start_node(
    name: str,
    redis: RedisServer,
    directory: Path,
    relay: bool = True,
    max_viewers: int = 0,
    max_relays: int = 0,
    pipe_dir: str = "",
) -> GatewayProcess:
    port = free_port()
    where = directory / name
    where.mkdir()
    config = node_config(name, port, redis.url, relay, max_viewers, max_relays, pipe_dir)
    return await start_gateway_process(config, where, port=port)


@contextlib.asynccontextmanager
async def cluster_of(tmp_path: Path, variant: str = "relay") -> AsyncIterator[Cluster]:
    """Nodes a and b: "relay" (the default), "redirect" (no relays), "capped" (b serves
    one viewer at most), "pipe" (relays over the frame pipe of one machine); or a, b and c:
    "three", "tree" (a feeds one relay at most), "pipe-tree" (that, over the pipe)."""
    redis = await start_redis(tmp_path)
    cluster = Cluster(redis, {}, aiohttp.ClientSession())
    # Unix socket paths are short (108 bytes): not under pytest's long tmp_path.
    pipes = tempfile.mkdtemp(prefix="gw-pipes-") if variant.startswith("pipe") else ""
    try:
        three = variant in ("tree", "three", "pipe-tree")
        for name in ("a", "b", "c") if three else ("a", "b"):
            cap = 1 if variant == "capped" and name == "b" else 0
            relays = 1 if variant in ("tree", "pipe-tree") and name == "a" else 0
            relay = variant != "redirect"
            cluster.nodes[name] = await start_node(name, redis, tmp_path, relay, cap, relays, pipes)
        yield cluster
    finally:
        for gateway in cluster.nodes.values():
            await gateway.close()
        await cluster.http.close()
        await cluster.redis.stop()  # the one running now (a test may have restarted it)
        if pipes:
            shutil.rmtree(pipes, ignore_errors=True)
