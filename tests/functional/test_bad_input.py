"""Bad requests get a clear JSON error and change nothing else; the server keeps serving."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiortc import RTCSessionDescription

from tests.conftest import RunningGateway
from tests.support.media import NumberedVideoTrack, ToneTrack
from tests.support.peers import new_peer, prefer, wait_for, whep_watch, whip_publish

SDP = {"Content-Type": "application/sdp"}


async def offer_sdp(kinds: dict[str, str], direction: str) -> str:
    """A real aiortc offer: {kind: codec} with the given direction."""
    pc = new_peer()
    for kind, codec in kinds.items():
        transceiver = pc.addTransceiver(kind, direction=direction)
        prefer(transceiver, kind, codec)
    await pc.setLocalDescription(await pc.createOffer())
    sdp: str = pc.localDescription.sdp
    await pc.close()
    return sdp


async def call(gateway: RunningGateway, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    async with gateway.http.request(method, gateway.base + path, **kwargs) as response:
        body = (
            await response.json()
            if response.content_type == "application/json"
            else await response.text()
        )
        return response.status, body


async def assert_error(
    gateway: RunningGateway, status: int, code: str, method: str, path: str, **kwargs: Any
) -> None:
    got_status, body = await call(gateway, method, path, **kwargs)
    assert got_status == status, body
    assert isinstance(body, dict), f"expected a JSON error body, got {body!r}"
    assert body["error"] == code and body["message"], body


async def test_bad_http_requests(gateway: RunningGateway) -> None:
    sendonly = await offer_sdp({"video": "VP8", "audio": "opus"}, "sendonly")
    recvonly = await offer_sdp({"video": "VP8", "audio": "opus"}, "recvonly")
    no_fingerprint = (
        "\r\n".join(line for line in sendonly.splitlines() if not line.startswith("a=fingerprint"))
        + "\r\n"
    )

    await assert_error(
        gateway,
        415,
        "unsupported-media-type",
        "POST",
        "/whip/r1",
        data=sendonly,
        headers={"Content-Type": "text/plain"},
    )
    await assert_error(gateway, 400, "invalid-sdp", "POST", "/whip/r1", data="", headers=SDP)
    await assert_error(
        gateway,
        400,
        "invalid-sdp",
        "POST",
        "/whip/r1",
        data="v=0\r\nthis is not sdp\r\n",
        headers=SDP,
    )
    await assert_error(
        gateway, 400, "invalid-sdp", "POST", "/whip/r1", data="hello world", headers=SDP
    )
    await assert_error(
        gateway, 400, "invalid-sdp", "POST", "/whip/r1", data=no_fingerprint, headers=SDP
    )
    await assert_error(
        gateway, 400, "invalid-sdp", "POST", "/whip/r1", data=b"v=0\xff\xfe", headers=SDP
    )
    await assert_error(
        gateway, 422, "wrong-direction", "POST", "/whip/r1", data=recvonly, headers=SDP
    )
    await assert_error(
        gateway,
        413,
        "body-too-large",
        "POST",
        "/whip/r1",
        data="v=0\r\n" + "a=x\r\n" * 20000,
        headers=SDP,
    )
    await assert_error(
        gateway, 400, "invalid-room-name", "POST", "/whip/..%2Fetc", data=sendonly, headers=SDP
    )
    await assert_error(
        gateway, 404, "no-publisher", "POST", "/whep/empty-room", data=recvonly, headers=SDP
    )
    await assert_error(gateway, 404, "unknown-session", "DELETE", "/whip/r1/0123456789abcdef")
    await assert_error(
        gateway,
        404,
        "unknown-session",
        "PATCH",
        "/whep/r1/0123456789abcdef",
        data="a=end-of-candidates",
        headers={"Content-Type": "application/trickle-ice-sdpfrag"},
    )
    await assert_error(gateway, 404, "not-found", "GET", "/no/such/path")
    await assert_error(gateway, 405, "method-not-allowed", "GET", "/whip/r1")
    await assert_error(gateway, 404, "unknown-room", "GET", "/api/rooms/nothing-here")
    assert not gateway.registry.sessions
    assert not gateway.registry.rooms


async def test_session_errors_around_a_live_stream(gateway: RunningGateway) -> None:
    publisher = await whip_publish(
        gateway.http, gateway.base, "busy", [NumberedVideoTrack(320, 240), ToneTrack()]
    )
    viewer = await whep_watch(gateway.http, gateway.base, "busy")
    try:
        # A second publisher for the same room is refused; the first is untouched.
        sendonly = await offer_sdp({"video": "VP8"}, "sendonly")
        await assert_error(
            gateway, 409, "room-busy", "POST", "/whip/busy", data=sendonly, headers=SDP
        )
        # A viewer that cannot decode the room's codec.
        h264_only = await offer_sdp({"video": "H264"}, "recvonly")
        await assert_error(
            gateway, 422, "unsupported-codec", "POST", "/whep/busy", data=h264_only, headers=SDP
        )

        # Trickle PATCH: wrong type, wrong ETag, ICE restart, then a valid candidate.
        location = viewer.location
        frag = {"Content-Type": "application/trickle-ice-sdpfrag"}
        await assert_error(
            gateway, 415, "unsupported-media-type", "PATCH", location, data="x", headers=SDP
        )
        await assert_error(
            gateway,
            412,
            "precondition-failed",
            "PATCH",
            location,
            data="a=end-of-candidates\r\n",
            headers={**frag, "If-Match": '"nope"'},
        )
        restart = "a=ice-ufrag:newufrag\r\na=ice-pwd:newpasswordnewpassword12\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n"
        await assert_error(
            gateway, 422, "ice-restart-unsupported", "PATCH", location, data=restart, headers=frag
        )
        await assert_error(
            gateway,
            400,
            "invalid-candidate",
            "PATCH",
            location,
            data="a=candidate:garbage\r\n",
            headers=frag,
        )
        good = "a=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\na=end-of-candidates\r\n"
        status, _ = await call(gateway, "PATCH", location, data=good, headers=frag)
        assert status == 204

        # The stream still flows to the viewer after all that.
        count = len(viewer.received.numbers)
        await wait_for(lambda: len(viewer.received.numbers) >= count + 20)

        # DELETE ends the session; a second DELETE is a clear 404.
        status, _ = await call(gateway, "DELETE", location)
        assert status == 200
        await assert_error(gateway, 404, "unknown-session", "DELETE", location)
        assert len(gateway.registry.sessions) == 1
    finally:
        await viewer.close()
        await publisher.close(gateway.http, gateway.base)
    await wait_for(lambda: not gateway.registry.sessions and not gateway.registry.rooms)


async def test_cors_preflight_and_exposed_headers(gateway: RunningGateway) -> None:
    # No origin but the gateway's own is allowed by default; this one is configured.
    gateway.config.server.cors_origins = ["http://example.test"]
    origin = {"Origin": "http://example.test"}
    elsewhere = {"Origin": "http://attacker.test", "Access-Control-Request-Method": "POST"}
    async with gateway.http.options(gateway.base + "/whip/corsroom", headers=elsewhere) as response:
        assert "Access-Control-Allow-Origin" not in response.headers
    async with gateway.http.post(
        gateway.base + "/whip/corsroom", data="v=0", headers={**SDP, **elsewhere}
    ) as response:
        assert response.status == 403
        assert (await response.json())["error"] == "origin-not-allowed"
    async with gateway.http.options(
        gateway.base + "/whip/corsroom", headers={**origin, "Access-Control-Request-Method": "POST"}
    ) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == "http://example.test"
        assert response.headers["Vary"] == "Origin"
        assert "POST" in response.headers["Access-Control-Allow-Methods"]
        assert "Content-Type" in response.headers["Access-Control-Allow-Headers"]
        assert response.headers["Accept-Post"] == "application/sdp"
    publisher = await whip_publish(
        gateway.http, gateway.base, "corsroom", [NumberedVideoTrack(320, 240)]
    )
    recvonly = await offer_sdp({"video": "VP8"}, "recvonly")
    async with gateway.http.post(
        gateway.base + "/whep/corsroom", data=recvonly, headers={**SDP, **origin}
    ) as response:
        assert response.status == 201
        exposed = response.headers["Access-Control-Expose-Headers"]
        assert {"Location", "ETag", "Link"} <= {h.strip() for h in exposed.split(",")}
        location = response.headers["Location"]
        assert response.headers["ETag"]
    await call(gateway, "DELETE", location)
    await publisher.close(gateway.http, gateway.base)
    await wait_for(lambda: not gateway.registry.sessions)


async def test_client_vanishing_mid_handshake(gateway: RunningGateway) -> None:
    # 1. An HTTP client that sends half a request and disconnects.
    _reader, writer = await asyncio.open_connection("127.0.0.1", gateway.config.server.port)
    writer.write(
        b"POST /whip/vanish HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\nContent-Length: 5000\r\n\r\nv=0\r\n"
    )
    await writer.drain()
    writer.close()
    # 2. A WHEP viewer that gets its answer but never connects: reaped at connect_timeout_s.
    publisher = await whip_publish(
        gateway.http, gateway.base, "vanish", [NumberedVideoTrack(320, 240)]
    )
    recvonly = await offer_sdp({"video": "VP8"}, "recvonly")
    status, _ = await call(gateway, "POST", "/whep/vanish", data=recvonly, headers=SDP)
    assert status == 201
    assert len(gateway.registry.sessions) == 2
    await wait_for(
        lambda: len(gateway.registry.sessions) == 1,
        timeout=gateway.config.ice.connect_timeout_s + 10,
    )
    # The server still serves a real viewer.
    viewer = await whep_watch(gateway.http, gateway.base, "vanish")
    await wait_for(lambda: len(viewer.received.numbers) >= 10)
    await viewer.close(gateway.http, gateway.base)
    await publisher.close(gateway.http, gateway.base)
    await wait_for(lambda: not gateway.registry.sessions)


@pytest.fixture
def gateway_config():  # type: ignore[no-untyped-def]
    from tests.conftest import loopback_config

    config = loopback_config()
    config.ice.connect_timeout_s = 2.0
    config.server.max_body_bytes = 65536
    return config


async def test_recvonly_offer_is_a_real_viewer(gateway: RunningGateway) -> None:
    """Guards the fixture above: a short connect timeout does not hurt connecting peers."""
    publisher = await whip_publish(
        gateway.http, gateway.base, "fast", [NumberedVideoTrack(320, 240)]
    )
    pc = new_peer()
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    async with gateway.http.post(
        gateway.base + "/whep/fast", data=pc.localDescription.sdp, headers=SDP
    ) as response:
        answer = await response.text()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    await wait_for(lambda: pc.connectionState == "connected")
    await asyncio.sleep(3)  # past connect_timeout_s
    assert len(gateway.registry.sessions) == 2
    await pc.close()
    await publisher.close(gateway.http, gateway.base)
