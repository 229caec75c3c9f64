"""Nodes of one machine relay rooms over the frame pipe: real gateway processes, real peers,
frames pulled over a Unix socket instead of WebRTC; bad input on the pipe itself."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.cluster import pipe_wire as wire
from tests.support.cluster_nodes import Cluster, cluster_of
from tests.support.media import NumberedVideoTrack, ToneTrack, mean_chroma
from tests.support.peers import wait_for, whep_watch, whip_publish
from tests.support.signaling import WsClient

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    async with cluster_of(tmp_path, getattr(request, "param", "pipe")) as nodes:
        yield nodes


async def room_at(cluster: Cluster, node: str, name: str) -> dict[str, Any]:
    room = await cluster.room(node, name)
    assert room is not None, f"no room {name} at {node}"
    return room


def video(room: dict[str, Any]) -> dict[str, Any]:
    return next(t for t in room["tracks"] if t["kind"] == "video")


async def pipe_of(cluster: Cluster, node: str) -> dict[str, Any]:
    stats = await cluster.get(node, "/api/stats")
    pipe: dict[str, Any] = stats["cluster"]["pipe"]
    return pipe


async def test_viewers_on_a_node_of_the_same_machine_are_fed_over_the_pipe(
    cluster: Cluster,
) -> None:
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    http = cluster.http
    watcher = await WsClient.connect(http, b.base)
    await watcher.send({"type": "watch", "room": "piped"})
    await watcher.next("room-state")
    publisher = await whip_publish(
        http, a.base, "piped", [NumberedVideoTrack(320, 240), ToneTrack()]
    )
    viewers = []
    try:
        await watcher.next("publisher-joined", timeout=10)
        for _ in range(2):
            viewers.append(await whep_watch(http, b.base, "piped"))
        await wait_for(lambda: all(len(v.received.numbers) > 30 for v in viewers), timeout=30)
        for viewer in viewers:
            numbers = viewer.received.numbers
            assert numbers == sorted(numbers) and viewer.received.audio_frames > 0
            assert viewer.received.sizes == {(320, 240)}
        at_a, at_b = await room_at(cluster, "a", "piped"), await room_at(cluster, "b", "piped")
        # No WebRTC viewer at a: b pulls each track once over the pipe.
        assert at_a["subscribers"] == 0 and at_b["subscribers"] == 2, (at_a, at_b)
        assert (at_a["copy"], at_b["copy"]) == (False, True)
        pipe_a = await pipe_of(cluster, "a")
        assert pipe_a["links"] == 1 and pipe_a["frames_sent"] > 60, pipe_a
        stats_b = await cluster.get("b", "/api/stats")
        assert stats_b["cluster"]["relays"]["made"] == 1
        assert stats_b["cluster"]["relays"]["piped"] == 1
        described = await cluster.get("b", "/api/cluster")
        nodes = {n["id"]: n for n in described["nodes"]}
        assert nodes["a"]["load"]["relays_out"] == 1  # the pipe link counts as a relay
        assert nodes["a"]["pipe"] and nodes["a"]["pipe"] != nodes["b"]["pipe"]

        # A late viewer at b: its keyframe request crosses the pipe to a's publisher.
        before = video(at_a)["keyframe_requests_upstream"]
        late = await whep_watch(http, b.base, "piped")
        viewers.append(late)
        await wait_for(lambda: len(late.received.numbers) > 10, timeout=20)
        assert late.received.numbers[0] > viewers[0].received.numbers[0]
        after_a = await room_at(cluster, "a", "piped")
        assert video(after_a)["keyframe_requests_upstream"] > before
        assert video(await room_at(cluster, "b", "piped"))["keyframes_received"] >= 2
    finally:
        await publisher.close(http, a.base)
    # The publisher gone for good (its viewers are at b, so a kept nothing): b's relay is
    # told the tracks ended, and b's watcher hears the publisher left.
    left = await watcher.next("publisher-left", timeout=40)
    assert left["type"] == "publisher-left"
    for viewer in viewers:
        await viewer.close(http, b.base)
    await watcher.close()

    async def links() -> int:
        return int((await pipe_of(cluster, "a"))["links"])

    await wait_for_async(links, 0, timeout=15)


async def wait_for_async(read: Any, expected: Any, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    value = None
    while asyncio.get_running_loop().time() < deadline:
        value = await read()
        if value == expected:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"still {value!r}, expected {expected!r}")


@pytest.mark.parametrize("cluster", ["pipe-tree"], indirect=True)
async def test_a_piped_relay_whose_source_dies_is_replaced_under_its_viewers(
    cluster: Cluster,
) -> None:
    """a feeds one relay: c pulls from b's copy, over the pipe; b is killed: c's relay
    ends with its socket, and one from a takes its tracks over under c's viewer."""
    a, b, c = (cluster.nodes[n] for n in ("a", "b", "c"))
    http = cluster.http
    publisher = await whip_publish(
        http, a.base, "sturdy", [NumberedVideoTrack(320, 240), ToneTrack()]
    )
    at_b = await whep_watch(http, b.base, "sturdy")
    at_c = None
    try:
        await wait_for(lambda: len(at_b.received.numbers) > 10, timeout=20)
        await asyncio.sleep(1.0)  # a's heartbeat: it feeds one relay, its cap
        at_c = await whep_watch(http, c.base, "sturdy")
        await wait_for(lambda: len(at_c.received.numbers) > 15, timeout=20)
        assert (await pipe_of(cluster, "b"))["links"] == 1  # c pulls from b
        b.kill()
        await b.process.wait()
        seen = len(at_c.received.numbers)
        await wait_for(lambda: len(at_c.received.numbers) > seen + 30, timeout=30)
        assert at_c.pc.connectionState == "connected"
        numbers = at_c.received.numbers
        assert numbers == sorted(numbers), "frames out of order across the new relay"
        stats_c = await cluster.get("c", "/api/stats")
        relays = stats_c["cluster"]["relays"]
        assert (relays["replaced"], relays["piped"]) == (1, 2), relays
        room_c = next(r for r in stats_c["rooms"] if r["room"] == "sturdy")
        assert room_c["takeovers"] == 1 and room_c["subscribers"] == 1
        assert (await pipe_of(cluster, "a"))["links"] == 1  # b's link died with b
    finally:
        await at_b.close()
        if at_c is not None:
            await at_c.close(http, c.base)
        await publisher.close(http, a.base)


async def test_a_pipeline_runs_on_the_node_its_viewers_are_on(cluster: Cluster) -> None:
    """A viewer at b through a pipeline: b decodes and processes the piped track itself
    (the home a only forwards), and the viewer gets processed frames in order."""
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    http = cluster.http
    publisher = await whip_publish(http, a.base, "tinted", [NumberedVideoTrack(320, 240)])
    viewer = await whep_watch(http, b.base, "tinted", kinds=("video",), pipeline="gray")
    plain = await whep_watch(http, b.base, "tinted", kinds=("video",))
    try:
        await wait_for(lambda: len(viewer.received.numbers) > 30, timeout=30)
        await wait_for(lambda: len(plain.received.numbers) > 30, timeout=30)
        numbers = viewer.received.numbers
        assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
        assert viewer.received.last_frame is not None and plain.received.last_frame is not None
        u, v = mean_chroma(viewer.received.last_frame)
        assert abs(u - 128) < 4 and abs(v - 128) < 4, (u, v)  # processed at b
        u, v = mean_chroma(plain.received.last_frame)
        assert abs(u - 90) < 8 and abs(v - 200) < 8, (u, v)  # as published
        processing_a = (await cluster.get("a", "/api/stats"))["processing"]
        processing_b = (await cluster.get("b", "/api/stats"))["processing"]
        assert processing_a["live"] == 0 and processing_b["live"] == 1, processing_b
        assert (await pipe_of(cluster, "a"))["links"] == 1  # one pull serves both viewers
    finally:
        await viewer.close(http, b.base)
        await plain.close(http, b.base)
        await publisher.close(http, a.base)


async def exchange(path: str, data: bytes, wait_s: float = 5.0) -> bytes:
    """Connect to a node's pipe, send ``data``, and read what comes back until it closes."""
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), wait_s)
    finally:
        writer.close()


def control(kind: int, body: Any) -> bytes:
    payload = json.dumps(body).encode()
    return struct.pack("!BBBII", kind, 0, 0, 0, len(payload)) + payload


async def test_bad_input_on_the_pipe_ends_that_link_only(cluster: Cluster) -> None:
    a = cluster.nodes["a"]
    http = cluster.http
    path = (await pipe_of(cluster, "a"))["path"]
    publisher = await whip_publish(http, a.base, "fine", [NumberedVideoTrack(320, 240)])
    try:
        # Not a pipe message at all; a frame before any hello; an oversized frame header;
        # a hello that is not JSON; a hello for a room with no publisher; a bad room name.
        assert await exchange(path, b"GET / HTTP/1.1\r\n\r\n" + b"\0" * 64) == b""
        frame = wire.encode(wire.Frame(0, 0, True, False, b"x"))
        assert await exchange(path, frame) == b""
        too_big = struct.pack("!BBBII", 4, 0, 0, 0, wire.MAX_FRAME_BYTES + 1)
        assert await exchange(path, too_big) == b""
        assert await exchange(path, struct.pack("!BBBII", 1, 0, 0, 0, 5) + b"{nope") == b""
        huge_hello = struct.pack("!BBBII", 1, 0, 0, 0, wire.MAX_CONTROL_BYTES + 1)
        assert await exchange(path, huge_hello) == b""
        for room, code in (("nobody", "no-publisher"), ("../etc", "invalid-room-name")):
            reply = await exchange(path, control(1, {"room": room}))
            refused = await wire.read(_reader_of(reply))
            assert isinstance(refused, wire.Refused) and refused.code == code, refused
        # A real pull still works afterwards, and its frames are frames of the track.
        reader, writer = await asyncio.open_unix_connection(path)
        try:
            writer.write(wire.encode(wire.Hello("fine")))
            tracks = await asyncio.wait_for(wire.read(reader), 5)
            assert isinstance(tracks, wire.Tracks) and [t.kind for t in tracks.tracks] == ["video"]
            first = await asyncio.wait_for(wire.read(reader), 10)
            assert isinstance(first, wire.Frame) and first.keyframe  # starts at a keyframe
            # A pulling node may only ask for keyframes: anything else ends its link.
            writer.write(wire.encode(wire.Hello("fine")))
            with pytest.raises(asyncio.IncompleteReadError):
                while True:
                    await asyncio.wait_for(wire.read(reader), 10)
        finally:
            writer.close()
        pipe = await pipe_of(cluster, "a")
        assert pipe["broken"] >= 5 and pipe["refused"] >= 2 and pipe["links"] == 0, pipe
        assert (await cluster.get("a", "/api/stats"))["rooms"]  # the node serves on
    finally:
        await publisher.close(http, a.base)


def _reader_of(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader
