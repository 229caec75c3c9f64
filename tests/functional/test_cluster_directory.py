"""The cluster's directory against a real redis-server: nodes, and atomic room homes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from gateway.cluster.directory import Directory, NodeInfo
from tests.support.redis_server import redis_server

TTL_S = 0.5


@pytest.fixture
async def redis(tmp_path: Path) -> AsyncIterator[Redis]:
    async with redis_server(tmp_path) as server:
        client = Redis.from_url(server.url)
        yield client
        await client.aclose()


def node(node_id: str) -> NodeInfo:
    return NodeInfo(node_id, f"http://{node_id}:8080", time.time(), time.time(), {"rooms": 0})


async def test_one_of_many_concurrent_claims_wins(redis: Redis) -> None:
    directories = [Directory(redis, "t:", TTL_S * 20) for _ in range(8)]
    for i, directory in enumerate(directories):
        await directory.heartbeat(node(f"n{i}"))
    homes = await asyncio.gather(*(d.claim("stage", f"n{i}") for i, d in enumerate(directories)))
    assert len(set(homes)) == 1, homes  # every claimant is told the same winner
    assert await directories[0].home("stage") == homes[0]
    assert await directories[0].homes() == {"stage": homes[0]}


async def test_a_dead_nodes_rooms_go_to_the_next_claimant(redis: Redis) -> None:
    a, b = Directory(redis, "t:", TTL_S), Directory(redis, "t:", TTL_S)
    await a.heartbeat(node("a"))
    await b.heartbeat(node("b"))
    assert await a.claim("stage", "a") == "a"
    assert await b.claim("stage", "b") == "a"  # a lives: it keeps the room
    assert [n.id for n in await b.nodes()] == ["a", "b"]
    # b goes on beating, a stops (killed): its node key expires, then its room is b's.
    for _ in range(4):
        await asyncio.sleep(TTL_S / 2)
        await b.heartbeat(node("b"))
    assert [n.id for n in await b.nodes()] == ["b"]
    assert await b.home("stage") is None  # homed on a dead node: nowhere
    assert await b.claim("stage", "b") == "b"
    # a comes back: its refresh learns it lost the room and does not take it back (a room
    # nobody holds, it takes back).
    await a.heartbeat(node("a"))
    assert await a.refresh(["stage", "quiet"], "a") == ["stage"]
    assert await a.claim("stage", "a") == "b"
    assert await a.home("quiet") == "a"


async def test_a_homes_refresh_keeps_it_and_release_frees_it(redis: Redis) -> None:
    a = Directory(redis, "t:", TTL_S)
    for _ in range(4):
        await a.heartbeat(node("a"))
        assert await a.claim("stage", "a") == "a"
        assert await a.refresh(["stage"], "a") == []
        await asyncio.sleep(TTL_S / 2)
    assert await a.home("stage") == "a"
    b = Directory(redis, "t:", TTL_S)
    await b.release("stage", "b")  # not b's to release
    assert await a.home("stage") == "a"
    await a.release("stage", "a")
    assert await a.home("stage") is None
    await a.leave("a")
    assert await a.nodes() == []
