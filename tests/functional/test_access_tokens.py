"""With auth on, every entry point wants a token, and each token does what its grant says."""

from __future__ import annotations

import aiohttp
import pytest

from gateway.config import Config
from tests.conftest import RunningGateway
from tests.support.media import NumberedVideoTrack, ToneTrack
from tests.support.peers import wait_for, whep_watch, whip_publish
from tests.support.requests import SDP, call, offer_sdp
from tests.support.room_client import Participant
from tests.support.signaling import WsClient, ws_publish
from tests.support.tokens import bearer, secure_config, token

# Routes anyone may reach: liveness, readiness, the web app's files, CORS preflights.
OPEN_ROUTES = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/"), ("GET", "/{name}")}


@pytest.fixture
def gateway_config() -> Config:
    config = secure_config()
    config.auth.ws_auth_timeout_s = 1.0
    return config


async def test_every_route_but_liveness_and_pages_needs_a_token(gateway: RunningGateway) -> None:
    checked = 0
    for route in gateway.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        template = info.get("formatter") or info.get("path") or ""
        if route.method in ("OPTIONS", "HEAD") or (route.method, template) in OPEN_ROUTES:
            continue
        if template == "/ws":
            continue  # the socket's own test below
        path = template.format(room="demo", session="0" * 32, rendition="r1", id="x" * 8)
        status, body, headers = await call(gateway, route.method, path, data="v=0")
        assert status == 401, (route.method, path, status, body)
        assert body["error"] == "token-required"
        assert headers["WWW-Authenticate"].startswith("Bearer ")
        # A token that is not ours is refused the same way, with another reason.
        status, body, headers = await call(
            gateway, route.method, path, data="v=0", headers=bearer("not.a.token")
        )
        assert (status, body["error"]) == (401, "invalid-token"), (route.method, path)
        assert 'error="invalid_token"' in headers["WWW-Authenticate"]
        checked += 1
    assert checked >= 20  # every API, WHIP and WHEP route, not a few
    status, body, _ = await call(gateway, "GET", "/healthz")
    assert status == 200 and set(body) == {"status", "version"}
    status, body, _ = await call(gateway, "GET", "/readyz")
    assert (status, body) == (200, {"status": "ready"})


async def test_the_socket_does_nothing_before_auth_and_closes_without_it(
    gateway: RunningGateway,
) -> None:
    ws = await gateway.http.ws_connect(gateway.base.replace("http", "ws") + "/ws")
    hello = await ws.receive_json()
    assert hello["auth_required"] is True and hello["identity"] is None
    await ws.send_json({"type": "watch", "room": "demo", "id": 1})
    error = await ws.receive_json()
    assert (error["type"], error["code"]) == ("error", "token-required")
    await ws.send_json({"type": "auth", "token": "garbage"})
    assert (await ws.receive_json())["code"] == "invalid-token"
    # No good token within auth.ws_auth_timeout_s: told why, then closed with 4401.
    assert (await ws.receive_json(timeout=5))["code"] == "token-required"
    closing = await ws.receive(timeout=5)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert ws.close_code == 4401
    assert not gateway.registry.rooms

    # ?access_token= authenticates at the upgrade (clients that cannot send a header).
    alice = token("alice", "demo")
    ws = await gateway.http.ws_connect(
        gateway.base.replace("http", "ws") + f"/ws?access_token={alice}"
    )
    hello = await ws.receive_json()
    assert hello["identity"] == "alice"
    await ws.send_json({"type": "watch", "room": "demo", "id": 1})
    assert (await ws.receive_json())["type"] == "room-state"
    await ws.send_json({"type": "watch", "room": "other", "id": 2})
    assert (await ws.receive_json())["code"] == "forbidden"
    await ws.close()


async def test_a_pattern_grant_publishes_where_it_matches_and_nowhere_else(
    gateway: RunningGateway,
) -> None:
    alice = token("alice", "a*", canSubscribe=False)
    # WHIP with Bearer: 'abc' matches 'a*'; 'b' does not.
    publisher = await whip_publish(
        gateway.http, gateway.base, "abc", [NumberedVideoTrack(320, 240)], token=alice
    )
    status, body, _ = await call(
        gateway,
        "POST",
        "/whip/b",
        data=await offer_sdp("sendonly"),
        headers={**SDP, **bearer(alice)},
    )
    assert (status, body["error"]) == (403, "forbidden")
    assert "b" not in gateway.registry.rooms
    # Her token may not subscribe, not even to her own room.
    status, body, _ = await call(
        gateway,
        "POST",
        "/whep/abc",
        data=await offer_sdp("recvonly"),
        headers={**SDP, **bearer(alice)},
    )
    assert (status, body["error"]) == (403, "forbidden")
    # A subscribe-only token watches, and cannot publish.
    bob = token("bob", "abc", canPublish=False)
    viewer = await whep_watch(gateway.http, gateway.base, "abc", kinds=("video",), token=bob)
    await wait_for(lambda: len(viewer.received.numbers) >= 10)
    status, body, _ = await call(
        gateway,
        "POST",
        "/whip/abd",
        data=await offer_sdp("sendonly"),
        headers={**SDP, **bearer(bob)},
    )
    assert status == 403
    # An expired token is refused, however good its grant.
    old = token("carol", "*", ttl_s=-120, roomAdmin=True)
    status, body, _ = await call(
        gateway,
        "POST",
        "/whep/abc",
        data=await offer_sdp("recvonly"),
        headers={**SDP, **bearer(old)},
    )
    assert (status, body["error"]) == (401, "token-expired")
    await viewer.close(gateway.http, gateway.base)
    await publisher.close(gateway.http, gateway.base)
    await wait_for(lambda: not gateway.registry.sessions)


async def test_websocket_publish_checks_the_room_and_the_source(gateway: RunningGateway) -> None:
    alice = token("alice", "a*", canPublishSources=["microphone"])
    client = await WsClient.connect(gateway.http, gateway.base, alice)
    # aiortc over the WebSocket: a video track is a camera, which her grant leaves out.
    await client.request({"type": "publish", "room": "abc", "sdp": await offer_sdp("sendonly")})
    error = await client.next("error")
    assert error["code"] == "forbidden" and "camera" in error["message"]
    assert not gateway.registry.sessions
    pc, session = await ws_publish(client, "abc", [ToneTrack()])
    assert gateway.registry.sessions[session].owner.identity == "alice"
    await client.request({"type": "publish", "room": "b", "sdp": await offer_sdp("sendonly")})
    assert (await client.next("error"))["code"] == "forbidden"
    await pc.close()
    await client.close()
    await wait_for(lambda: not gateway.registry.sessions)


async def test_the_token_identity_is_the_participant_and_replaces_its_older_self(
    gateway: RunningGateway,
) -> None:
    ann = await Participant.join(
        gateway.http, gateway.base, "meet", "ann", token("ann-1", "meet", name="Ann")
    )
    bob = await Participant.join(
        gateway.http, gateway.base, "meet", "whoever", token("bob-7", "meet")
    )
    joined = await ann.client.next("participant-joined")
    assert joined["participant"]["identity"] == "bob-7"
    assert joined["participant"]["id"] == bob.id != bob.session
    # The token's name wins over the one asked for; without one, the asked name stays.
    assert ann.joined["name"] == "Ann"
    assert [(p["identity"], p["name"]) for p in bob.joined["room"]["participants"]] == [
        ("ann-1", "Ann"),
        ("bob-7", "whoever"),
    ]
    # Ann joins again (a second tab): the newest wins, the first is told why it ended.
    again = await Participant.join(
        gateway.http, gateway.base, "meet", "ann", token("ann-1", "meet", name="Ann")
    )
    ended = await ann.client.next("session-ended")
    assert ended["reason"] == "duplicate-identity"
    left = await bob.client.next("participant-left")
    assert (left["participant"], left["reason"]) == (ann.id, "duplicate-identity")
    assert sorted(p.identity for p in gateway.registry.rooms["meet"].participants.values()) == [
        "ann-1",
        "bob-7",
    ]
    for p in (ann, bob, again):
        await p.close()
    await wait_for(lambda: not gateway.registry.sessions)


async def test_lists_and_stats_need_their_grants(gateway: RunningGateway) -> None:
    plain = token("viewer", "abc")
    status, body, _ = await call(gateway, "GET", "/api/rooms", headers=bearer(plain))
    assert (status, body["error"]) == (403, "forbidden")
    status, body, _ = await call(gateway, "GET", "/api/stats", headers=bearer(plain))
    assert status == 403
    status, body, _ = await call(
        gateway, "GET", "/api/rooms", headers=bearer(token("l", roomList=True))
    )
    assert (status, body) == (200, {"rooms": []})
    status, body, _ = await call(
        gateway, "GET", "/api/stats", headers=bearer(token("op", admin=True))
    )
    assert status == 200
    assert body["auth"]["enabled"] is True
    assert body["auth"]["requests_refused"] == 2  # the list and the stats above
    assert body["auth"]["tokens_verified"] == 4


async def test_metrics_need_the_stats_grant(gateway: RunningGateway) -> None:
    status, body, _ = await call(gateway, "GET", "/metrics")
    assert (status, body["error"]) == (401, "token-required")
    status, body, _ = await call(gateway, "GET", "/metrics", headers=bearer(token("viewer", "abc")))
    assert (status, body["error"]) == (403, "forbidden")
    async with gateway.http.get(
        f"{gateway.base}/metrics", headers=bearer(token("op", admin=True))
    ) as response:
        assert response.status == 200
        assert "gateway_frames_forwarded_total 0.0" in await response.text()
