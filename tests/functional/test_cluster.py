"""Two gateway processes and a real redis-server as one cluster: rooms homed on a node,
WHIP redirected to the home, viewers on the other node served through one relay, and a
dead node's rooms taken over when their publisher comes back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from tests.support.cluster_nodes import TTL_S, Cluster, cluster_of
from tests.support.killable_publisher import PublisherProcess
from tests.support.media import NumberedVideoTrack, ToneTrack
from tests.support.peers import new_peer, wait_for, whep_watch, whip_publish
from tests.support.room_client import Participant
from tests.support.signaling import WsClient

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    """Parametrized (indirect) with a cluster_of variant: "redirect", "capped"."""
    async with cluster_of(tmp_path, getattr(request, "param", "relay")) as nodes:
        yield nodes


async def post_offer(
    http: aiohttp.ClientSession, url: str, kinds: tuple[str, ...] = ("video", "audio")
) -> tuple[int, dict[str, str], str]:
    """A WHIP/WHEP POST not followed if redirected: status, headers, body."""
    pc = new_peer()
    try:
        for kind in kinds:
            if "whip" in url:
                track = NumberedVideoTrack(320, 240) if kind == "video" else ToneTrack()
                pc.addTransceiver(track, direction="sendonly")
            else:
                pc.addTransceiver(kind, direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        async with http.post(
            url,
            data=pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp"},
            allow_redirects=False,
        ) as response:
            return response.status, dict(response.headers), await response.text()
    finally:
        await pc.close()


async def test_viewers_on_another_node_share_one_relay(cluster: Cluster) -> None:
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    http = cluster.http
    # A watcher at b, before the room exists anywhere: the home's events reach it.
    early = await WsClient.connect(http, b.base)
    await early.send({"type": "watch", "room": "wide"})
    assert (await early.next("room-state"))["publisher"] is None
    publisher = await whip_publish(
        http, a.base, "wide", [NumberedVideoTrack(320, 240), ToneTrack()]
    )
    viewers = []
    late = await WsClient.connect(http, b.base)
    try:
        joined = await early.next("publisher-joined", timeout=10)
        assert {t["kind"] for t in joined["publisher"]["tracks"]} == {"video", "audio"}
        # One watching later is told the home's state of the room.
        await late.send({"type": "watch", "room": "wide"})
        state = await late.next("room-state")
        assert state["publisher"]["id"] == joined["publisher"]["id"], state
        # Three viewers at node b: one relay from a, the frames fanned out at b.
        for _ in range(3):
            viewers.append(await whep_watch(http, b.base, "wide"))
        await wait_for(lambda: all(len(v.received.numbers) > 30 for v in viewers), timeout=30)
        for viewer in viewers:
            numbers = viewer.received.numbers
            assert numbers == sorted(numbers) and viewer.received.audio_frames > 0
        at_a, at_b = await cluster.room("a", "wide"), await cluster.room("b", "wide")
        assert at_a is not None and at_b is not None
        assert at_a["subscribers"] == 1, at_a  # the relay: one stream per track for b
        assert at_b["subscribers"] == 3, at_b
        assert (at_a["copy"], at_b["copy"]) == (False, True)
        stats_b = await cluster.get("b", "/api/stats")
        assert stats_b["cluster"]["relays"]["made"] == 1
        video_a = next(t for t in at_a["tracks"] if t["kind"] == "video")
        video_b = next(t for t in at_b["tracks"] if t["kind"] == "video")
        # b asks a for keyframes for its late viewers, over the relay.
        assert video_b["keyframes_received"] >= 1 and video_a["subscribers"] == 1

        described = await cluster.get("b", "/api/cluster")
        nodes = {n["id"]: n for n in described["nodes"]}
        assert set(nodes) == {"a", "b"} and described["node"] == "b"
        assert nodes["a"]["rooms"] == ["wide"] and nodes["a"]["url"] == a.base
        assert nodes["b"]["rooms"] == []

        # Publishing into the room at b is sent to its home (RFC 9725 redirect).
        status, headers, body = await post_offer(http, f"{b.base}/whip/wide")
        assert status == 307, body
        assert headers["Location"] == f"{a.base}/whip/wide"
        # A WebSocket join at b is carried on to the room's home; on a socket that already
        # watches something at b, it is told where the room lives instead.
        ws = await WsClient.connect(http, b.base)
        try:
            await ws.send({"type": "join", "room": "wide", "name": "ann"})
            reply = await ws.next("joined", "error")
            assert reply["type"] == "joined", reply
            assert reply["room"]["publisher"]["id"] == state["publisher"]["id"], reply
        finally:
            await ws.close()
        ws = await WsClient.connect(http, b.base)
        try:
            await ws.send({"type": "watch", "room": "elsewhere"})
            await ws.next("room-state")
            await ws.send({"type": "join", "room": "wide", "name": "ann"})
            error = await ws.next("error", "joined")
            assert error["code"] == "room-elsewhere" and error["node"] == a.base, error
        finally:
            await ws.close()
    finally:
        for viewer in viewers:
            await viewer.close(http, b.base)
        await late.close()
    # The last viewer gone, the relay lingers 1 s and ends; a sees its viewer leave.
    await wait_until_async(lambda: room_subscribers(cluster, "a", "wide"), 0, timeout=15)
    await publisher.close(http, a.base)
    # Nobody watches any more, so the stream is not kept: b's watcher is told it ended.
    left = await early.next("publisher-left", timeout=10)
    assert left["publisher"] == joined["publisher"]["id"] and left["reason"] == "deleted"
    await early.close()
    await wait_until_async(lambda: homes(cluster), {}, timeout=15)


async def room_subscribers(cluster: Cluster, node: str, name: str) -> int | None:
    room = await cluster.room(node, name)
    return None if room is None else int(room["subscribers"])


async def homes(cluster: Cluster) -> dict[str, list[str]]:
    described = await cluster.get("a", "/api/cluster")
    return {n["id"]: n["rooms"] for n in described["nodes"] if n["rooms"]}


async def wait_until_async(read: Any, expected: Any, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    value = await read()
    while value != expected:
        if loop.time() > deadline:
            raise AssertionError(f"{value!r} is not {expected!r} after {timeout}s")
        await asyncio.sleep(0.2)
        value = await read()


async def test_a_dead_nodes_room_is_rehomed_when_its_publisher_comes_back(
    cluster: Cluster, tmp_path: Path
) -> None:
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    http = cluster.http
    publisher = await PublisherProcess.start(a.base, "phoenix")
    viewer = await whep_watch(http, b.base, "phoenix")
    second = None
    try:
        await wait_for(lambda: len(viewer.received.numbers) > 30, timeout=30)
        a.kill()  # node a dies with its publisher's session and room
        await a.process.wait()
        await publisher.kill()
        # b's relay hears nothing from a: its viewers end with publisher-lost.
        await wait_until_async(lambda: room_subscribers(cluster, "b", "phoenix"), None, 20)
        # a's heartbeat expires: the room belongs to nobody, and the returning publisher
        # homes it on b.
        await asyncio.sleep(TTL_S)
        second = await PublisherProcess.start(b.base, "phoenix", first=3000)
        described = await cluster.get("b", "/api/cluster")
        assert {n["id"]: n["rooms"] for n in described["nodes"]} == {"b": ["phoenix"]}
        again = await whep_watch(http, b.base, "phoenix")
        try:
            await wait_for(lambda: len(again.received.numbers) > 15, timeout=20)
            assert min(again.received.numbers) >= 3000
        finally:
            await again.close(http, b.base)
    finally:
        await viewer.close()
        if second is not None:
            await second.kill()


@pytest.mark.parametrize("cluster", ["redirect"], indirect=True)
async def test_without_relays_viewers_are_redirected_to_the_home(cluster: Cluster) -> None:
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    publisher = await whip_publish(
        cluster.http, a.base, "home", [NumberedVideoTrack(320, 240), ToneTrack()]
    )
    try:
        status, headers, body = await post_offer(cluster.http, f"{b.base}/whep/home?x=1")
        assert status == 307, body
        assert headers["Location"] == f"{a.base}/whep/home?x=1"
        # An unknown room is not redirected anywhere.
        status, _, body = await post_offer(cluster.http, f"{b.base}/whep/nowhere")
        assert status == 404 and "no-publisher" in body
    finally:
        await publisher.close(cluster.http, a.base)


@pytest.mark.parametrize("cluster", ["capped"], indirect=True)
async def test_a_full_node_sends_new_viewers_to_one_with_room(cluster: Cluster) -> None:
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    publisher = await whip_publish(
        cluster.http, a.base, "busy", [NumberedVideoTrack(320, 240), ToneTrack()]
    )
    viewer = await whep_watch(cluster.http, b.base, "busy")
    try:
        await wait_for(lambda: len(viewer.received.numbers) > 10, timeout=20)
        await asyncio.sleep(1.0)  # b's heartbeat tells its load
        described = await cluster.get("a", "/api/cluster")
        load_b = next(n["load"] for n in described["nodes"] if n["id"] == "b")
        assert (load_b["viewers"], load_b["max_viewers"]) == (1, 1), load_b
        # b is full: the next viewer goes to a (uncapped), the same request there.
        status, headers, body = await post_offer(cluster.http, f"{b.base}/whep/busy")
        assert status == 307 and "gateway-full" in body, body
        assert headers["Location"] == f"{a.base}/whep/busy"
        stats_b = await cluster.get("b", "/api/stats")
        assert stats_b["limits"]["refused"]["viewers"] == 1, stats_b["limits"]
    finally:
        await viewer.close(cluster.http, b.base)
        await publisher.close(cluster.http, a.base)


async def test_a_node_outlives_its_redis(cluster: Cluster, tmp_path: Path) -> None:
    """Redis gone: what flows goes on, what needs the directory is refused with 503 and
    Retry-After; Redis back (same address): the node heartbeats and serves again."""
    a = cluster.nodes["a"]
    http = cluster.http
    publisher = await whip_publish(
        http, a.base, "steady", [NumberedVideoTrack(320, 240), ToneTrack()]
    )
    viewer = await whep_watch(http, a.base, "steady")
    try:
        await wait_for(lambda: len(viewer.received.numbers) > 10, timeout=20)
        await cluster.redis.stop()
        before = len(viewer.received.numbers)
        status, headers, body = await post_offer(http, f"{a.base}/whip/elsewhere")
        assert status == 503 and "cluster-unavailable" in body, body
        assert headers["Retry-After"] == "5"
        await wait_for(lambda: len(viewer.received.numbers) > before + 60, timeout=20)
        await cluster.restart_redis(tmp_path)
        # Within a heartbeat or two the directory knows a again, and that it homes its room.
        await wait_until_async(lambda: node_ids(cluster), ["a", "b"], timeout=15)
        await wait_until_async(lambda: homes(cluster), {"a": ["steady"]}, timeout=15)
        again = await whip_publish(http, a.base, "elsewhere", [NumberedVideoTrack(320, 240)])
        await again.close(http, a.base)
    finally:
        await viewer.close(http, a.base)
        await publisher.close(http, a.base)


async def node_ids(cluster: Cluster) -> list[str]:
    try:
        described = await cluster.get("a", "/api/cluster")
    except AssertionError:
        return []  # 503 while the directory is away
    return sorted(n["id"] for n in described["nodes"])


@pytest.mark.parametrize("cluster", ["tree"], indirect=True)
async def test_past_its_relay_cap_a_home_feeds_a_tree(cluster: Cluster) -> None:
    """a feeds one relay at most: b pulls from a, then c pulls from b's copy."""
    a, b, c = (cluster.nodes[n] for n in ("a", "b", "c"))
    http = cluster.http
    publisher = await whip_publish(
        http, a.base, "tree", [NumberedVideoTrack(320, 240), ToneTrack()]
    )
    viewers = []
    try:
        viewers.append(await whep_watch(http, b.base, "tree"))
        await wait_for(lambda: len(viewers[0].received.numbers) > 10, timeout=20)
        await asyncio.sleep(1.0)  # a's heartbeat tells it feeds one relay (its cap)
        viewers.append(await whep_watch(http, c.base, "tree"))
        await wait_for(lambda: len(viewers[1].received.numbers) > 30, timeout=20)
        numbers = viewers[1].received.numbers
        assert numbers == sorted(numbers) and viewers[1].received.audio_frames > 0
        subscribers = [await room_subscribers(cluster, n, "tree") for n in ("a", "b", "c")]
        # a: b's relay; b: its viewer and c's relay; c: its viewer.
        assert subscribers == [1, 2, 1], subscribers
        described = await cluster.get("c", "/api/cluster")
        load = {n["id"]: n["load"] for n in described["nodes"]}
        assert (load["a"]["relays_out"], load["a"]["max_relays"]) == (1, 1), load["a"]
    finally:
        for viewer, node in zip(viewers, (b, c), strict=False):
            await viewer.close(http, node.base)
        await publisher.close(http, a.base)


async def test_a_node_that_lost_a_room_ends_its_copy_of_it(cluster: Cluster) -> None:
    """Two homes must not last: a node finding its room homed elsewhere (it was taken for
    dead meanwhile) ends its publisher there, and its watchers are told why."""
    a = cluster.nodes["a"]
    watcher = await WsClient.connect(cluster.http, a.base)
    await watcher.send({"type": "watch", "room": "moved"})
    publisher = await whip_publish(
        cluster.http, a.base, "moved", [NumberedVideoTrack(320, 240), ToneTrack()]
    )
    try:
        await watcher.next("publisher-joined", timeout=10)
        redis = Redis.from_url(cluster.redis.url)
        try:
            await redis.set("gw:room:moved", "b")  # b took it while a looked dead
        finally:
            await redis.aclose()
        left = await watcher.next("publisher-left", timeout=10)
        assert left["reason"] == "room-moved", left
        described = await cluster.get("a", "/api/cluster")
        assert described["rooms_lost"] == 1
    finally:
        await watcher.close()
        await publisher.close(cluster.http, a.base)


@pytest.mark.parametrize("cluster", ["tree"], indirect=True)
async def test_a_relay_whose_source_dies_is_replaced_under_its_viewers(
    cluster: Cluster,
) -> None:
    """c pulls from b's copy (a is at its relay cap); b dies: c's relay goes quiet, the room
    at c keeps its tracks, and a new relay from a takes them over: c's viewer keeps its
    peer connection and its frames go on."""
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
        assert await room_subscribers(cluster, "b", "sturdy") == 2  # c pulls from b
        b.kill()
        await b.process.wait()
        seen = len(at_c.received.numbers)
        # Liveness (3 s) notices, a new relay from a takes the tracks over.
        await wait_for(lambda: len(at_c.received.numbers) > seen + 30, timeout=30)
        assert at_c.pc.connectionState == "connected"
        numbers = at_c.received.numbers
        assert numbers == sorted(numbers), "frames out of order across the new relay"
        stats_c = await cluster.get("c", "/api/stats")
        assert stats_c["cluster"]["relays"]["replaced"] == 1, stats_c["cluster"]
        room_c = next(r for r in stats_c["rooms"] if r["room"] == "sturdy")
        assert room_c["takeovers"] == 1 and room_c["subscribers"] == 1
        # b's viewer lost its node with it; it comes back through c, which has the room.
        rejoined = await whep_watch(http, c.base, "sturdy")
        try:
            await wait_for(lambda: len(rejoined.received.numbers) > 15, timeout=20)
        finally:
            await rejoined.close(http, c.base)
    finally:
        await at_b.close()
        if at_c is not None:
            await at_c.close(http, c.base)
        await publisher.close(http, a.base)


async def test_a_viewer_of_a_room_on_a_dead_node_gets_a_clear_error(cluster: Cluster) -> None:
    """Before the dead node's heartbeat has expired its room still looks homed there: the
    relay cannot be made (502 relay-failed); after, the room is nowhere (404). Never a hang."""
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    publisher = await PublisherProcess.start(a.base, "ghost")
    try:
        a.kill()
        await a.process.wait()
        loop = asyncio.get_running_loop()
        started = loop.time()
        status, _, body = await post_offer(cluster.http, f"{b.base}/whep/ghost")
        assert loop.time() - started < 15
        assert (status, json.loads(body)["error"]) in ((502, "relay-failed"), (404, "no-publisher"))
        await asyncio.sleep(TTL_S + 0.5)
        status, _, body = await post_offer(cluster.http, f"{b.base}/whep/ghost")
        assert (status, json.loads(body)["error"]) == (404, "no-publisher"), body
    finally:
        await publisher.kill()


@pytest.mark.parametrize("cluster", ["three"], indirect=True)
async def test_participants_join_a_room_through_any_node(cluster: Cluster) -> None:
    """A room of participants homed on a: bob joins through b and carol through c (their
    sockets carried on to a); they see each other, chat, and bob receives alice's camera."""
    a, b, c = (cluster.nodes[n] for n in ("a", "b", "c"))
    http = cluster.http
    alice = await Participant.join(http, a.base, "meet", "alice")
    bob = carol = None
    try:
        bob = await Participant.join(http, b.base, "meet", "bob")
        carol = await Participant.join(http, c.base, "meet", "carol")
        names = {p["name"] for p in carol.joined["room"]["participants"]}
        assert names == {"alice", "bob", "carol"}, carol.joined
        await bob.client.send({"type": "chat", "text": "hello from b"})
        said = await carol.client.next("chat", timeout=10)
        assert (said["text"], said["from"]) == ("hello from b", bob.id), said
        (camera,) = await alice.add_tracks([(NumberedVideoTrack(320, 240), "camera")])
        await bob.watch(camera, "video")
        await wait_for(lambda: len(bob.received[camera].numbers) > 15, timeout=20)
        assert bob.received[camera].numbers == sorted(bob.received[camera].numbers)
        described = await cluster.get("b", "/api/cluster")
        assert described["signal_relays"] == 1
        nodes = {n["id"]: n["rooms"] for n in described["nodes"]}
        assert nodes["a"] == ["meet"] and nodes["b"] == nodes["c"] == []
    finally:
        for participant in (alice, bob, carol):
            if participant is not None:
                await participant.close()


async def test_viewers_arriving_together_share_one_relay(cluster: Cluster) -> None:
    """Several viewers at b at the same moment, before b has the room: one relay is made,
    and every viewer is served by it."""
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    http = cluster.http
    publisher = await whip_publish(
        http, a.base, "burst", [NumberedVideoTrack(320, 240), ToneTrack()]
    )
    viewers = await asyncio.gather(*(whep_watch(http, b.base, "burst") for _ in range(4)))
    try:
        await wait_for(lambda: all(len(v.received.numbers) > 15 for v in viewers), timeout=30)
        stats_b = await cluster.get("b", "/api/stats")
        assert stats_b["cluster"]["relays"]["made"] == 1, stats_b["cluster"]
        assert await room_subscribers(cluster, "a", "burst") == 1
        assert await room_subscribers(cluster, "b", "burst") == 4
    finally:
        for viewer in viewers:
            await viewer.close(http, b.base)
        await publisher.close(http, a.base)
