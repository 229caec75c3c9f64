"""A session's resource URL is a capability: only its owner (or a room admin) can touch it,
and nothing the gateway shows others reveals it."""

from __future__ import annotations

import json

import pytest

from gateway.config import Config
from tests.conftest import RunningGateway
from tests.support.media import NumberedVideoTrack
from tests.support.peers import wait_for, whep_watch, whip_publish
from tests.support.requests import SDP, call, offer_sdp
from tests.support.room_client import Participant
from tests.support.signaling import WsClient
from tests.support.tokens import bearer, secure_config, token


@pytest.fixture
def gateway_config() -> Config:
    return secure_config()


async def test_nobody_but_the_owner_ends_or_replaces_a_publisher(gateway: RunningGateway) -> None:
    alice = token("alice", "demo")
    mallory = token("mallory", "demo")  # publish and subscribe in the same room
    publisher = await whip_publish(
        gateway.http, gateway.base, "demo", [NumberedVideoTrack(320, 240)], token=alice
    )
    viewer = await whep_watch(gateway.http, gateway.base, "demo", kinds=("video",), token=mallory)
    await wait_for(lambda: len(viewer.received.numbers) >= 5)
    resource = publisher.location.rsplit("/", 1)[1]

    # What mallory can see names the publisher by its public id only.
    status, room, _ = await call(gateway, "GET", "/api/rooms/demo", headers=bearer(mallory))
    assert status == 200
    assert resource not in json.dumps(room)
    client = await WsClient.connect(gateway.http, gateway.base, mallory)
    await client.send({"type": "watch", "room": "demo"})
    state = await client.next("room-state")
    assert resource not in json.dumps(state)
    public = room["publisher"]
    assert public == state["publisher"]["id"]

    # The public id is no handle; the real URL without alice's token is refused.
    status, body, _ = await call(gateway, "DELETE", f"/whip/demo/{public}", headers=bearer(mallory))
    assert (status, body["error"]) == (404, "unknown-session")
    status, body, _ = await call(gateway, "DELETE", publisher.location, headers=bearer(mallory))
    assert (status, body["error"]) == (403, "forbidden")
    status, body, _ = await call(
        gateway, "PATCH", publisher.location, data="a=end-of-candidates\r\n",
        headers={"Content-Type": "application/trickle-ice-sdpfrag", **bearer(mallory)},
    )  # fmt: skip
    assert status == 403
    # The room stays hers: mallory cannot publish over her.
    status, body, _ = await call(
        gateway,
        "POST",
        "/whip/demo",
        data=await offer_sdp(),
        headers={**SDP, **bearer(mallory)},
    )
    assert (status, body["error"]) == (409, "room-busy")
    mark = len(viewer.received.numbers)
    await wait_for(lambda: len(viewer.received.numbers) >= mark + 10)

    # A room admin may end it (moderation); so may alice herself.
    admin = token("moderator", "demo", roomAdmin=True)
    status, _, _ = await call(gateway, "DELETE", publisher.location, headers=bearer(admin))
    assert status == 200
    await client.close()
    await viewer.close(gateway.http, gateway.base)
    await publisher.pc.close()
    await wait_for(lambda: not gateway.registry.sessions)


async def test_a_whep_session_is_not_reached_through_a_whip_url(gateway: RunningGateway) -> None:
    alice = token("alice", "demo")
    publisher = await whip_publish(
        gateway.http, gateway.base, "demo", [NumberedVideoTrack(320, 240)], token=alice
    )
    viewer = await whep_watch(gateway.http, gateway.base, "demo", kinds=("video",), token=alice)
    whep_id = viewer.location.rsplit("/", 1)[1]
    whip_id = publisher.location.rsplit("/", 1)[1]
    for path in (f"/whip/demo/{whep_id}", f"/whep/demo/{whip_id}", f"/whep/other/{whep_id}"):
        status, body, _ = await call(gateway, "DELETE", path, headers=bearer(alice))
        assert (status, body["error"]) == (404, "unknown-session"), path
    assert len(gateway.registry.sessions) == 2
    await viewer.close(gateway.http, gateway.base)
    await publisher.close(gateway.http, gateway.base)
    await wait_for(lambda: not gateway.registry.sessions)


async def test_session_api_and_pipeline_switch_belong_to_the_owner(
    gateway: RunningGateway,
) -> None:
    alice = token("alice", "demo")
    publisher = await whip_publish(
        gateway.http, gateway.base, "demo", [NumberedVideoTrack(320, 240)], token=alice
    )
    viewer = await whep_watch(gateway.http, gateway.base, "demo", kinds=("video",), token=alice)
    session = viewer.location.rsplit("/", 1)[1]
    other = token("bob", "demo")
    status, _, _ = await call(gateway, "GET", f"/api/sessions/{session}", headers=bearer(alice))
    assert status == 200
    status, body, _ = await call(gateway, "GET", f"/api/sessions/{session}", headers=bearer(other))
    assert (status, body["error"]) == (403, "forbidden")
    status, body, _ = await call(
        gateway, "PUT", f"/api/sessions/{session}/pipeline", json={"pipeline": None},
        headers=bearer(other),
    )  # fmt: skip
    assert status == 403
    await viewer.close(gateway.http, gateway.base)
    await publisher.close(gateway.http, gateway.base)
    await wait_for(lambda: not gateway.registry.sessions)


async def test_a_meeting_participant_cannot_be_kicked_by_another(gateway: RunningGateway) -> None:
    ann = await Participant.join(gateway.http, gateway.base, "meet", "ann", token("ann", "meet"))
    bob = await Participant.join(gateway.http, gateway.base, "meet", "bob", token("bob", "meet"))
    # Bob knows ann's public id from the room; over HTTP or his socket it ends nothing.
    for transport in ("whip", "whep"):
        status, _, _ = await call(
            gateway, "DELETE", f"/{transport}/meet/{ann.id}", headers=bearer(token("bob", "meet"))
        )
        assert status == 404
    await bob.client.send({"type": "leave", "session": ann.id})
    assert (await bob.client.next("error"))["code"] == "unknown-session"
    await bob.client.send({"type": "leave", "session": ann.session})
    assert (await bob.client.next("error"))["code"] == "unknown-session"
    assert len(gateway.registry.rooms["meet"].participants) == 2
    await ann.close()
    await bob.close()
    await wait_for(lambda: not gateway.registry.sessions)
