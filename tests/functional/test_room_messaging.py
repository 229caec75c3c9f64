"""Chat (WebSocket and data channel), peer-to-peer rooms, and refusals in room signaling."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiortc import RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from gateway.config import Config
from gateway.signaling import sdp as sdp_tools
from tests.conftest import RunningGateway, loopback_config
from tests.support.media import NumberedVideoTrack
from tests.support.peers import Received, _consume, new_peer, wait_for
from tests.support.room_client import Participant
from tests.support.signaling import WsClient


@pytest.fixture
def gateway_config() -> Config:
    config = loopback_config()
    config.rooms.max_participants = 3
    config.rooms.p2p_max_participants = 2
    config.rooms.chat_max_bytes = 100
    config.rooms.chat_burst = 5
    config.rooms.chat_rate_per_s = 1.0
    return config


def chats(participant: Participant) -> list[dict[str, Any]]:
    return [e for e in participant.client.events if e["type"] == "chat"]


async def test_chat_to_the_room_and_to_one_participant(gateway: RunningGateway) -> None:
    ann, bob, cid = [
        await Participant.join(gateway.http, gateway.base, "talk", name)
        for name in ("ann", "bob", "cid")
    ]
    await ann.client.send({"type": "chat", "text": "hello all"})
    await wait_for(lambda: all(len(chats(p)) == 1 for p in (ann, bob, cid)))
    message = chats(bob)[0]
    assert (message["from"], message["name"], message["text"]) == (ann.id, "ann", "hello all")

    await ann.client.send({"type": "chat", "text": "just you", "to": bob.id})
    await wait_for(lambda: len(chats(bob)) == 2 and len(chats(ann)) == 2)
    assert chats(bob)[1]["to"] == bob.id
    await asyncio.sleep(0.3)
    assert len(chats(cid)) == 1, "a private message reached someone else"

    # Limits: size, then a flood; the socket stays usable.
    await ann.client.send({"type": "chat", "text": "x" * 101})
    assert (await ann.client.next("error"))["code"] == "message-too-large"
    for i in range(10):
        await cid.client.send({"type": "chat", "text": f"spam {i}"})
    error = await cid.client.next("error")
    assert error["code"] == "rate-limited"
    await wait_for(lambda: len([c for c in chats(bob) if c["from"] == cid.id]) == 5)
    await cid.client.send({"type": "chat", "text": "x", "to": "nobody"})
    assert (await cid.client.next("error"))["code"] in ("unknown-participant", "rate-limited")
    await cid.client.send({"type": "ping", "id": 9})
    assert (await cid.client.next("pong"))["id"] == 9
    for p in (ann, bob, cid):
        await p.close()


async def test_chat_over_a_data_channel(gateway: RunningGateway) -> None:
    ann = await Participant.join(gateway.http, gateway.base, "dc", "ann")
    bob = await Participant.join(gateway.http, gateway.base, "dc", "bob")
    channel = ann.pc.createDataChannel("chat")
    on_channel: list[dict[str, Any]] = []
    channel.on("message", lambda data: on_channel.append(json.loads(data)))
    await ann.renegotiate()
    await wait_for(lambda: channel.readyState == "open", timeout=20)

    channel.send(json.dumps({"text": "via datachannel"}))
    await wait_for(lambda: len(chats(bob)) == 1)
    assert chats(bob)[0]["text"] == "via datachannel" and chats(bob)[0]["from"] == ann.id
    # Ann's copy, and bob's reply, come over her data channel, not her socket.
    await bob.client.send({"type": "chat", "text": "reply", "to": ann.id})
    await wait_for(lambda: [m["text"] for m in on_channel] == ["via datachannel", "reply"])
    assert chats(ann) == []
    channel.send("not json")
    await wait_for(lambda: on_channel[-1].get("code") == "invalid-json")
    # JSON that json still refuses, under a size bound raised to let it through: a
    # number of more than 4300 digits, nesting deeper than the recursion limit.
    gateway.config.rooms.chat_max_bytes = 4096
    for text in ('{"text": ' + "9" * 5000 + "}", "[" * 4000 + "]" * 4000):
        count = len(on_channel)
        channel.send(text)
        await wait_for(lambda: len(on_channel) > count)  # noqa: B023
        assert on_channel[-1]["code"] == "invalid-json"
    await ann.close()
    await bob.close()


async def test_p2p_room_relays_signaling_and_media_never_touches_the_gateway(
    gateway: RunningGateway,
) -> None:
    clients = [await WsClient.connect(gateway.http, gateway.base) for _ in range(3)]
    ids = []
    for client, name in zip(clients[:2], ("ann", "bob"), strict=True):
        await client.send({"type": "join", "room": "call", "name": name, "mode": "p2p"})
        joined = await client.next("joined")
        assert joined["room"]["mode"] == "p2p"
        ids.append(joined["participant"])
    await clients[2].send({"type": "join", "room": "call", "name": "cid"})
    assert (await clients[2].next("error"))["code"] == "room-full"

    caller, callee = new_peer(), new_peer()
    received = Received()
    tasks: list[asyncio.Task[None]] = []
    callee.on(
        "track", lambda track: tasks.append(asyncio.ensure_future(_consume(track, received, True)))
    )
    caller.addTransceiver(NumberedVideoTrack(320, 240), direction="sendonly")

    async def relay(client: WsClient, to: str, pc: Any) -> None:
        """Forward our description's candidates one by one, as a trickling browser would."""
        for index, mid, line in sdp_tools.candidate_lines(pc.localDescription.sdp):
            await client.send(
                {
                    "type": "signal",
                    "to": to,
                    "data": {"candidate": line, "sdpMid": mid, "sdpMLineIndex": index},
                }
            )

    async def apply_candidates(client: WsClient, pc: Any, count: int) -> None:
        for _ in range(count):
            data = (await client.next("signal"))["data"]
            candidate = candidate_from_sdp(data["candidate"].split(":", 1)[1])
            candidate.sdpMid, candidate.sdpMLineIndex = data["sdpMid"], data["sdpMLineIndex"]
            await pc.addIceCandidate(candidate)

    await caller.setLocalDescription(await caller.createOffer())
    offer = caller.localDescription.sdp
    await clients[0].send(
        {
            "type": "signal",
            "to": ids[1],
            "data": {"type": "offer", "sdp": sdp_tools.strip_candidates(offer)},
        }
    )
    got = await clients[1].next("signal")
    assert got["from"] == ids[0]
    await callee.setRemoteDescription(RTCSessionDescription(**got["data"]))
    await callee.setLocalDescription(await callee.createAnswer())
    await clients[1].send(
        {
            "type": "signal",
            "to": ids[0],
            "data": {
                "type": "answer",
                "sdp": sdp_tools.strip_candidates(callee.localDescription.sdp),
            },
        }
    )
    answer = (await clients[0].next("signal"))["data"]
    await caller.setRemoteDescription(RTCSessionDescription(**answer))
    await relay(clients[0], ids[1], caller)
    await relay(clients[1], ids[0], callee)
    await apply_candidates(clients[1], callee, len(sdp_tools.candidate_lines(offer)))
    await apply_candidates(
        clients[0], caller, len(sdp_tools.candidate_lines(callee.localDescription.sdp))
    )
    await wait_for(lambda: len(received.numbers) >= 20, timeout=30)
    assert received.sizes == {(320, 240)}

    stats = await gateway.stats()
    (room,) = stats["rooms"]
    assert room["mode"] == "p2p" and room["tracks"] == [] and room["signals_relayed"] >= 4
    assert all(s.pc.connectionState == "new" for s in gateway.registry.sessions.values())
    # Media offers to the gateway make no sense in a p2p room.
    await clients[0].send({"type": "offer", "sdp": offer})
    assert (await clients[0].next("error"))["code"] == "p2p-room"
    for task in tasks:
        task.cancel()
    await caller.close()
    await callee.close()
    for client in clients:
        await client.close()


async def test_room_signaling_refusals_change_nothing(gateway: RunningGateway) -> None:
    client = await WsClient.connect(gateway.http, gateway.base)

    async def refused(message: dict[str, Any], code: str) -> None:
        await client.send(message)
        error = await client.next("error")
        assert error["code"] == code, error

    await refused({"type": "offer", "sdp": "v=0"}, "not-joined")
    await refused({"type": "chat", "text": "hi"}, "not-joined")
    await refused({"type": "join", "room": "r", "name": ""}, "invalid-name")
    await refused({"type": "join", "room": "r", "name": "x", "mode": "mesh"}, "invalid-mode")
    await refused({"type": "mute", "track": "t", "muted": "yes"}, "invalid-message")
    await client.send({"type": "join", "room": "r", "name": "ann"})
    joined = await client.next("joined")
    await refused({"type": "join", "room": "r", "name": "ann"}, "already-joined")
    await refused({"type": "signal", "to": joined["participant"], "data": {}}, "not-p2p")

    ann = Participant(client, "ann")
    ann.id, ann.session, ann.joined = joined["participant"], joined["session"], joined
    ann.pc.addTransceiver("video", direction="recvonly")
    await ann.pc.setLocalDescription(await ann.pc.createOffer())
    mid = ann.pc.getTransceivers()[0].mid
    await refused(
        {"type": "offer", "sdp": ann.pc.localDescription.sdp, "subscribe": {mid: "no-such-track"}},
        "unknown-track",
    )
    await refused({"type": "offer", "sdp": "garbage"}, "invalid-sdp")
    await refused({"type": "offer", "sdp": "v=0", "publish": {"0": 5}}, "invalid-message")
    await refused({"type": "unpublish", "track": "nope"}, "unknown-track")
    await refused(
        {"type": "candidate", "session": ann.session, "candidate": {"candidate": "candidate:bad"}},
        "invalid-candidate",
    )
    # The public participant id names her to others; it is no handle on her session.
    await refused(
        {"type": "candidate", "session": ann.id, "candidate": None},
        "unknown-session",
    )
    # A joiner into a p2p room that exists as an SFU room, and a full room.
    other = await WsClient.connect(gateway.http, gateway.base)
    await other.send({"type": "join", "room": "r", "name": "bob", "mode": "p2p"})
    assert (await other.next("error"))["code"] == "mode-mismatch"
    fillers = [await Participant.join(gateway.http, gateway.base, "r", n) for n in ("bob", "cid")]
    await other.send({"type": "join", "room": "r", "name": "dee"})
    assert (await other.next("error"))["code"] == "room-full"
    # Still working: bob subscribes nothing but chats fine.
    await fillers[0].client.send({"type": "chat", "text": "still here"})
    await wait_for(lambda: len(chats(fillers[1])) == 1)
    assert len(gateway.registry.rooms["r"].participants) == 3
    await ann.close()
    for p in fillers:
        await p.close()
    await other.close()
    await wait_for(lambda: not gateway.registry.sessions and not gateway.registry.rooms)
