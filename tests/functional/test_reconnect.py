"""A participant whose socket drops keeps its place for a grace period and can resume."""

from __future__ import annotations

import pytest

from gateway.config import Config
from tests.conftest import RunningGateway, loopback_config
from tests.support.media import NumberedVideoTrack
from tests.support.peers import wait_for
from tests.support.room_client import Participant
from tests.support.signaling import WsClient


@pytest.fixture
def gateway_config() -> Config:
    config = loopback_config()
    config.rooms.reconnect_grace_s = 3.0
    return config


async def test_resume_within_the_grace_period_then_expire(gateway: RunningGateway) -> None:
    ann = await Participant.join(gateway.http, gateway.base, "flaky", "ann")
    bob = await Participant.join(gateway.http, gateway.base, "flaky", "bob")
    (camera,) = await ann.add_tracks([(NumberedVideoTrack(320, 240), "camera")])
    await bob.watch(camera, "video")
    await wait_for(lambda: len(bob.received[camera].numbers) >= 10)

    # Ann's socket drops; her peer connection does not: media keeps flowing.
    token = ann.joined["resume_token"]
    await ann.client.close()
    mark = len(bob.received[camera].numbers)
    await wait_for(lambda: len(bob.received[camera].numbers) >= mark + 30)
    assert not any(e["type"] == "participant-left" for e in bob.client.events)
    # Chat sent to her meanwhile waits for her return.
    await bob.client.send({"type": "chat", "text": "are you there?"})
    await bob.client.send({"type": "chat", "text": "ping", "to": ann.id})
    assert (await bob.client.next("chat"))["text"] == "are you there?"

    # A new socket takes her back; a wrong token does not, nor does the public id
    # everyone in the room sees (only she knows her session id).
    thief = await WsClient.connect(gateway.http, gateway.base)
    await thief.send({"type": "resume", "session": ann.session, "token": "guess"})
    assert (await thief.next("error"))["code"] == "cannot-resume"
    await thief.send({"type": "resume", "session": ann.id, "token": token})
    assert (await thief.next("error"))["code"] == "cannot-resume"
    ann.client = await WsClient.connect(gateway.http, gateway.base)
    await ann.client.send({"type": "resume", "session": ann.session, "token": token})
    resumed = await ann.client.next("resumed", "chat")
    assert resumed["type"] == "resumed" and resumed["participant"] == ann.id
    held = [await ann.client.next("chat"), await ann.client.next("chat")]
    assert [m["text"] for m in held] == ["are you there?", "ping"]
    assert [p["name"] for p in resumed["room"]["participants"]] == ["ann", "bob"]
    # The resumed socket controls her tracks and gets room events.
    await ann.client.send({"type": "mute", "track": camera, "muted": True})
    assert (await bob.client.next("track-muted"))["muted"] is True
    await bob.client.send({"type": "chat", "text": "welcome back"})
    assert (await ann.client.next("chat"))["text"] == "welcome back"

    # Dropped again and never back: after the grace period she is gone for everyone.
    await ann.client.close()
    left = await bob.client.next("participant-left", timeout=15)
    assert left["participant"] == ann.id
    await wait_for(lambda: len(gateway.registry.sessions) == 1)
    await ann.pc.close()
    await bob.close()
    await thief.close()
    await wait_for(lambda: not gateway.registry.sessions and not gateway.registry.rooms)
