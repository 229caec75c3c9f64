"""Floods and malformed ICE input meet the default limits: a clear refusal, counted, and
everyone else carries on."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from gateway.config import Config, LimitSettings
from tests.conftest import RunningGateway, loopback_config
from tests.support.media import NumberedVideoTrack, ToneTrack
from tests.support.peers import Viewer, wait_for, whep_watch, whip_publish
from tests.support.requests import SDP, call, offer_sdp
from tests.support.signaling import WsClient

FRAG = {"Content-Type": "application/trickle-ice-sdpfrag"}


@pytest.fixture
def gateway_config() -> Config:
    config = loopback_config()
    config.limits = LimitSettings()  # the shipped defaults, not the test suite's
    return config


def frag(lines: list[str]) -> str:
    return "m=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n" + "".join(f"{line}\r\n" for line in lines)


async def refused_counts(gateway: RunningGateway) -> dict[str, int]:
    stats = await gateway.stats()
    refused: dict[str, int] = stats["limits"]["refused"]
    return refused


async def test_half_open_sessions_are_rate_limited_per_address(gateway: RunningGateway) -> None:
    offer = await offer_sdp()
    created: list[str] = []
    statuses: list[int] = []
    for n in range(30):
        status, body, headers = await call(
            gateway, "POST", f"/whip/flood-{n}", data=offer, headers=SDP
        )
        statuses.append(status)
        if status == 201:
            created.append(headers["Location"])
        else:
            assert (status, body["error"]) == (429, "rate-limited")
            assert int(headers["Retry-After"]) >= 1 and body["retry_after"] >= 1
    # The burst (20) passes; the rest of a 30-request volley in well under 2 s does not.
    assert statuses[:20] == [201] * 20
    assert statuses.count(429) >= 5
    assert (await refused_counts(gateway))["sessions_per_ip"] == statuses.count(429)
    for location in created:
        await call(gateway, "DELETE", location)
    await wait_for(lambda: not gateway.registry.sessions and not gateway.registry.rooms)
    # The bucket refills: a second later the same address publishes again.
    await asyncio.sleep(1.0)
    publisher = await whip_publish(
        gateway.http, gateway.base, "after", [NumberedVideoTrack(320, 240)]
    )
    await publisher.close(gateway.http, gateway.base)


async def test_candidates_are_checked_and_bounded(gateway: RunningGateway) -> None:
    publisher = await whip_publish(
        gateway.http, gateway.base, "ice", [NumberedVideoTrack(320, 240)]
    )
    viewer = await whep_watch(gateway.http, gateway.base, "ice", kinds=("video",))
    await wait_for(lambda: len(viewer.received.numbers) >= 5)
    where = viewer.location
    # A port outside 1-65535 once killed the session's socket: now a 400, and media flows.
    for bad in (
        "a=candidate:1 1 udp 2122260223 127.0.0.1 99999 typ host",
        "a=candidate:1 1 udp 2122260223 127.0.0.1 0 typ host",
        "a=candidate:1 1 udp 2122260223 224.0.0.251 5000 typ host",
        "a=candidate:1 1 udp 2122260223 255.255.255.255 5000 typ host",
        "a=candidate:1 1 udp 2122260223 0.0.0.0 5000 typ host",
        "a=candidate:1 1 udp 2122260223 evil.example 5000 typ host",
    ):
        status, body, _ = await call(gateway, "PATCH", where, data=frag([bad]), headers=FRAG)
        assert (status, body["error"]) == (400, "invalid-candidate"), bad
    mark = len(viewer.received.numbers)
    await wait_for(lambda: len(viewer.received.numbers) >= mark + 15)

    # 1000 candidates in one PATCH are refused before the ICE agent sees any.
    many = [f"a=candidate:{i} 1 udp 100 127.0.0.1 {10000 + i} typ host" for i in range(1000)]
    started = time.monotonic()
    status, body, _ = await call(gateway, "PATCH", where, data=frag(many), headers=FRAG)
    assert (status, body["error"]) == (400, "too-many-candidates")
    # Within the per-request bound, the per-session one (64) still holds.
    statuses = []
    for batch in range(4):
        lines = many[batch * 20 : (batch + 1) * 20]
        status, body, _ = await call(gateway, "PATCH", where, data=frag(lines), headers=FRAG)
        statuses.append((status, body.get("error")))
    assert statuses[:3] == [(204, None)] * 3
    assert statuses[3] == (400, "too-many-candidates")
    assert time.monotonic() - started < 20  # not a benchmark: a stall would be minutes
    refused = await refused_counts(gateway)
    assert refused["candidates_per_request"] == 1
    mark = len(viewer.received.numbers)
    await wait_for(lambda: len(viewer.received.numbers) >= mark + 15)
    await viewer.close(gateway.http, gateway.base)
    await publisher.close(gateway.http, gateway.base)
    await wait_for(lambda: not gateway.registry.sessions)


async def test_an_offer_with_hundreds_of_m_lines_is_refused_before_parsing(
    gateway: RunningGateway,
) -> None:
    offer = await offer_sdp()
    head = offer.partition("m=video")[0]
    # 500 small m-sections: 40 kB, inside the body bound, so the m-line bound must hold.
    huge = head + "".join(
        f"m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:{n}\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\n"
        for n in range(500)
    )
    assert len(huge) < gateway.config.server.max_body_bytes
    status, body, _ = await call(gateway, "POST", "/whip/mlines", data=huge, headers=SDP)
    assert (status, body["error"]) == (400, "too-many-m-lines")
    assert not gateway.registry.sessions and not gateway.registry.rooms
    lines = "".join(
        f"a=candidate:{i} 1 udp 100 127.0.0.1 {9000 + i} typ host\r\n" for i in range(200)
    )
    status, body, _ = await call(
        gateway, "POST", "/whip/mlines", data=offer.replace("a=mid:0\r\n", "a=mid:0\r\n" + lines),
        headers=SDP,
    )  # fmt: skip
    assert (status, body["error"]) == (400, "too-many-candidates")
    assert not gateway.registry.sessions


async def test_watch_never_creates_rooms_and_is_bounded_per_socket(
    gateway: RunningGateway,
) -> None:
    flooder = await WsClient.connect(gateway.http, gateway.base)
    for n in range(40):
        await flooder.send({"type": "watch", "room": f"w{n}"})
    states = [await flooder.next("room-state", "error") for _ in range(40)]
    assert [s["type"] for s in states[:16]] == ["room-state"] * 16
    assert {(s["type"], s.get("code")) for s in states[16:]} == {("error", "too-many-watches")}
    # Watching created nothing: rooms.max_rooms is as free as before.
    assert not gateway.registry.rooms
    # A room the flooder watches comes to life when someone publishes there, and it sees it.
    publisher = await whip_publish(gateway.http, gateway.base, "w3", [NumberedVideoTrack(320, 240)])
    assert (await flooder.next("publisher-joined"))["room"] == "w3"
    await publisher.close(gateway.http, gateway.base)
    await flooder.next("publisher-left")
    await wait_for(lambda: not gateway.registry.rooms)
    await flooder.close()


async def test_a_message_flood_is_throttled_on_that_socket_only(gateway: RunningGateway) -> None:
    flooder = await WsClient.connect(gateway.http, gateway.base)
    bystander = await WsClient.connect(gateway.http, gateway.base)
    for _ in range(300):
        await flooder.send({"type": "ping"})
    replies = [await flooder.next("pong", "error") for _ in range(300)]
    limited = [r for r in replies if r["type"] == "error"]
    assert limited and {r["code"] for r in limited} == {"rate-limited"}
    assert sum(r["type"] == "pong" for r in replies) >= 200  # the burst
    await bystander.send({"type": "ping"})
    assert (await bystander.next("pong", "error"))["type"] == "pong"
    await flooder.close()
    await bystander.close()


async def test_signaling_sockets_per_address_are_bounded(gateway: RunningGateway) -> None:
    url = gateway.base.replace("http", "ws", 1) + "/ws"
    sockets = [await gateway.http.ws_connect(url) for _ in range(32)]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await gateway.http.ws_connect(url)
    assert refused.value.status == 429
    await sockets.pop().close()
    await wait_for(lambda: (gateway.registry.admission.stats()["open_sockets"]) == 31)
    sockets.append(await gateway.http.ws_connect(url))
    for ws in sockets:
        await ws.close()
    assert (await refused_counts(gateway))["sockets_per_ip"] == 1


async def test_a_gateway_at_its_viewer_cap_turns_new_viewers_away(
    gateway: RunningGateway, gateway_config: Config
) -> None:
    gateway_config.server.max_viewers = 1  # read per request
    publisher = await whip_publish(
        gateway.http, gateway.base, "capped", [NumberedVideoTrack(320, 240)]
    )
    viewer = await whep_watch(gateway.http, gateway.base, "capped", kinds=("video",))
    try:
        await wait_for(lambda: len(viewer.received.numbers) > 5)
        offer = await offer_sdp("recvonly")
        status, body, headers = await call(gateway, "POST", "/whep/capped", data=offer, headers=SDP)
        assert (status, body["error"]) == (503, "gateway-full"), body
        assert headers["Retry-After"] == "5"
        assert (await refused_counts(gateway))["viewers"] == 1
        assert len(gateway.registry.rooms["capped"].subscribers) == 1
    finally:
        await viewer.close(gateway.http, gateway.base)
        await publisher.close(gateway.http, gateway.base)


async def test_a_gateway_past_its_cpu_cap_turns_new_viewers_away(
    gateway: RunningGateway, gateway_config: Config
) -> None:
    publisher = await whip_publish(
        gateway.http, gateway.base, "busy", [NumberedVideoTrack(320, 240)]
    )
    viewer = await whep_watch(gateway.http, gateway.base, "busy", kinds=("video",))
    try:
        await wait_for(lambda: len(viewer.received.numbers) > 30)  # a second of work
        gateway_config.server.max_cpu = 0.001  # read per request: any forwarding exceeds it
        offer = await offer_sdp("recvonly")
        status, body, headers = await call(gateway, "POST", "/whep/busy", data=offer, headers=SDP)
        assert (status, body["error"]) == (503, "gateway-full"), body
        assert "of a core" in body["message"] and headers["Retry-After"] == "5"
        assert gateway.registry.load()["cpu"] > 0.001
        gateway_config.server.max_cpu = 0  # no cap: the next viewer is served
        again = await whep_watch(gateway.http, gateway.base, "busy", kinds=("video",))
        await again.close(gateway.http, gateway.base)
    finally:
        await viewer.close(gateway.http, gateway.base)
        await publisher.close(gateway.http, gateway.base)


async def received_bytes(viewer: Viewer) -> int:
    """Bytes the viewer's DTLS transport received: the media, and some DTLS and RTCP."""
    report = await viewer.pc.getStats()
    return sum(s.bytesReceived for s in report.values() if s.type == "transport")


async def test_a_gateway_past_its_egress_cap_turns_new_viewers_away(
    gateway: RunningGateway, gateway_config: Config
) -> None:
    publisher = await whip_publish(
        gateway.http, gateway.base, "wide", [NumberedVideoTrack(320, 240), ToneTrack()]
    )
    viewer = await whep_watch(gateway.http, gateway.base, "wide")
    try:
        await wait_for(lambda: len(viewer.received.numbers) > 60)  # two seconds of media
        # What the gateway counts as sent (SRTP media) is what arrived, but for the DTLS
        # handshake and RTCP (a few kB), and what was in flight between the two readings.
        arrived = await received_bytes(viewer)
        sent = gateway.registry._egress_bytes()
        assert sent > 10_000 and sent - 6_000 <= arrived <= sent + 10_000, (arrived, sent)
        mbps = gateway.registry.egress_mbps()
        assert mbps > 0.02 and gateway.registry.load()["egress_mbps"] > 0.02, mbps
        gateway_config.server.max_egress_mbps = 0.01  # read per request: below what it sends
        offer = await offer_sdp("recvonly")
        status, body, headers = await call(gateway, "POST", "/whep/wide", data=offer, headers=SDP)
        assert (status, body["error"]) == (503, "gateway-full"), body
        assert "Mbps" in body["message"] and headers["Retry-After"] == "5"
        # Its viewer gone, the node sends nothing: after a second the next viewer is served.
        await viewer.close(gateway.http, gateway.base)
        await asyncio.sleep(2.2)
        assert gateway.registry.egress_mbps() < 0.01
        again = await whep_watch(gateway.http, gateway.base, "wide")
        await wait_for(lambda: len(again.received.numbers) > 5)
        await again.close(gateway.http, gateway.base)
    finally:
        gateway_config.server.max_egress_mbps = 0
        await viewer.close(gateway.http, gateway.base)
        await publisher.close(gateway.http, gateway.base)
