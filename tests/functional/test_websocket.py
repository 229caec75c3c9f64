"""The WebSocket protocol with real aiortc peers: trickle ICE, room events, errors."""

from __future__ import annotations

import asyncio

import aiohttp

from gateway.config import Config
from tests.conftest import RunningGateway
from tests.support.media import NumberedVideoTrack, ToneTrack
from tests.support.peers import wait_for, whep_watch
from tests.support.signaling import WsClient, ws_publish, ws_subscribe


async def test_publish_and_watch_with_trickled_candidates_and_room_events(
    gateway: RunningGateway, gateway_config: Config
) -> None:
    # Viewers end with their publisher here (test_failover.py keeps them for its
    # return); the grace is read when the room is created.
    gateway_config.rooms.publisher_grace_s = 0
    watcher = await WsClient.connect(gateway.http, gateway.base)
    publisher_ws = await WsClient.connect(gateway.http, gateway.base)
    await watcher.send({"type": "watch", "room": "live"})
    state = await watcher.next("room-state")
    assert state["publisher"] is None

    video = NumberedVideoTrack(320, 240)
    pub_pc, pub_session = await ws_publish(publisher_ws, "live", [video, ToneTrack()])
    joined = await watcher.next("publisher-joined")
    # Watchers see the public id, never the session id that controls the session.
    public = gateway.registry.sessions[pub_session].public_id
    assert joined["publisher"]["id"] == public != pub_session
    assert sorted(t["kind"] for t in joined["publisher"]["tracks"]) == ["audio", "video"]

    sub_pc, sub_session, received, tasks = await ws_subscribe(watcher, "live")
    # A second viewer over WHEP shares the same publisher.
    whep_viewer = await whep_watch(gateway.http, gateway.base, "live")
    await wait_for(lambda: len(received.numbers) >= 30 and len(whep_viewer.received.numbers) >= 30)
    assert received.sizes == {(320, 240)}
    assert received.numbers == sorted(received.numbers)
    await wait_for(lambda: received.audio_frames > 10)

    # The publisher leaves: watchers are told, viewer sessions end, the room goes away.
    await publisher_ws.send({"type": "leave", "session": pub_session})
    assert (await publisher_ws.next("session-ended"))["session"] == pub_session
    left = await watcher.next("publisher-left")
    assert left["publisher"] == public
    ended = await watcher.next("session-ended")
    assert ended == {"type": "session-ended", "session": sub_session, "reason": "publisher-left"}
    await wait_for(lambda: not gateway.registry.sessions)
    count = len(received.numbers)
    await asyncio.sleep(0.5)
    assert len(received.numbers) == count, "frames kept arriving after the publisher left"

    for task in tasks:
        task.cancel()
    await whep_viewer.close()
    await sub_pc.close()
    await pub_pc.close()
    await watcher.close()
    await publisher_ws.close()
    await wait_for(lambda: not gateway.registry.rooms)


async def test_protocol_errors_keep_the_socket_open(gateway: RunningGateway) -> None:
    client = await WsClient.connect(gateway.http, gateway.base)

    async def expect_error(raw: str, code: str) -> None:
        await client.ws.send_str(raw)
        error = await client.next("error")
        assert error["code"] == code, error
        assert error["message"]

    await expect_error("{not json", "invalid-json")
    await expect_error("[1, 2]", "invalid-message")
    await expect_error('{"type": 5}', "invalid-message")
    await expect_error('{"type": "dance"}', "unknown-type")
    await expect_error('{"type": "publish", "room": "x"}', "invalid-message")
    await expect_error('{"type": "subscribe", "room": "nobody-here", "sdp": "v=0"}', "no-publisher")
    await expect_error('{"type": "publish", "room": "x", "sdp": "hello"}', "invalid-sdp")
    await expect_error('{"type": "publish", "room": "../etc", "sdp": "v=0"}', "invalid-room-name")
    await expect_error(
        '{"type": "candidate", "session": "nope", "candidate": null}', "unknown-session"
    )
    await expect_error(
        '{"type": "candidate", "session": "nope", "candidate": {"x": 1}}', "invalid-candidate"
    )
    await expect_error('{"type": "leave", "session": "nope"}', "unknown-session")
    await client.ws.send_bytes(b"\x00\x01")
    assert (await client.next("error"))["code"] == "bad-request"

    await client.send({"type": "ping", "id": "still-there"})
    assert (await client.next("pong"))["id"] == "still-there"
    assert not gateway.registry.sessions
    await client.close()


async def test_oversized_message_closes_only_that_socket(gateway: RunningGateway) -> None:
    other = await WsClient.connect(gateway.http, gateway.base)
    client = await WsClient.connect(gateway.http, gateway.base)
    await client.ws.send_str(
        '{"type": "ping", "pad": "' + "x" * (gateway.config.server.max_body_bytes + 10) + '"}'
    )
    await wait_for(lambda: client.ws.closed, timeout=10)
    assert client.ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    await other.send({"type": "ping", "id": 1})
    assert (await other.next("pong"))["id"] == 1
    await other.close()
