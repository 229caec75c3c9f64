"""Transport-cc feedback to a publisher: negotiated, sent, well formed and true to what arrived.

The publisher is an aiortc peer made to behave like a browser: its offer carries the
transport-wide-cc header extension and ``transport-cc`` feedback, and every RTP packet it
sends gets a transport-wide sequence number (starting near the 16-bit wrap), some packets
being lost or reordered on the way. What the gateway sends back is captured raw, after
SRTCP, and checked packet by packet.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from gateway.config import Config, RoomBitrate
from gateway.media.congestion import (
    LARGE_DELTA,
    NOT_RECEIVED,
    TRANSPORT_CC_URI,
    Feedback,
    parse_feedback,
)
from tests.conftest import RunningGateway, loopback_config
from tests.support.media import NumberedVideoTrack, ToneTrack
from tests.support.peers import new_peer, prefer, wait_for

EXTENSION_ID = 5  # aiortc itself uses 1-3
FIRST_SEQ = 65_450  # wraps to 0 after 86 packets
DROP_EVERY, DROP_AT, HOLD_AT = 25, 10, 20  # per 25 packets: one lost, one late
SDP = {"Content-Type": "application/sdp"}


@pytest.fixture
def gateway_config(request: pytest.FixtureRequest) -> Config:
    config = loopback_config()
    config.ingest.rooms = [
        RoomBitrate(room="lecture-*", max_bitrate_kbps=6000, min_bitrate_kbps=500)
    ]
    for key, value in getattr(request, "param", {}).items():
        setattr(config.ingest, key, value)
    return config


def offer_transport_cc(sdp: str) -> str:
    """What a browser's offer has and aiortc's lacks: the extension and the feedback."""
    out: list[str] = []
    section = ""
    for line in sdp.splitlines():
        if line.startswith("m="):
            section = line.split()[0][2:]
        if line.startswith("a=mid:") and section:
            out.append(f"a=extmap:{EXTENSION_ID} {TRANSPORT_CC_URI}")
        out.append(line)
        if line.startswith("a=rtpmap:") and "rtx/" not in line:
            out.append(f"a=rtcp-fb:{line[9:].split()[0]} transport-cc")
    return "\r\n".join(out) + "\r\n"


def add_transport_seq(rtp: bytes, seq: int) -> bytes:
    """The RTP packet with a transport-wide sequence number among its one-byte extensions."""
    start = 12 + 4 * (rtp[0] & 0x0F)
    elements, end = b"", start
    if rtp[0] & 0x10:
        profile, words = struct.unpack_from("!HH", rtp, start)
        assert profile == 0xBEDE
        end = start + 4 + 4 * words
        pos = start + 4
        while pos < end:
            if rtp[pos] == 0:
                pos += 1
                continue
            size = 2 + (rtp[pos] & 0x0F)
            elements += rtp[pos : pos + size]
            pos += size
    elements += bytes([EXTENSION_ID << 4 | 1]) + struct.pack("!H", seq)
    elements += bytes(-len(elements) % 4)
    return (
        bytes([rtp[0] | 0x10])
        + rtp[1:start]
        + struct.pack("!HH", 0xBEDE, len(elements) // 4)
        + elements
        + rtp[end:]
    )


def split_compound(data: bytes) -> list[bytes]:
    packets = []
    while len(data) >= 4:
        size = 4 + 4 * struct.unpack_from("!H", data, 2)[0]
        packets.append(data[:size])
        data = data[size:]
    return packets


@dataclass
class Wire:
    """The publisher's side of the wire: what it sent and what came back."""

    sent: dict[int, float] = field(default_factory=dict)  # 16-bit seq -> send time
    dropped: set[int] = field(default_factory=set)
    held: set[int] = field(default_factory=set)
    feedback: list[bytes] = field(default_factory=list)
    remb: list[int] = field(default_factory=list)
    receiver_report_ssrcs: set[int] = field(default_factory=set)


def intercept(pc: RTCPeerConnection, wire: Wire) -> None:
    """Numbers, loses and reorders the publisher's RTP; captures the RTCP it receives."""
    dtls = pc.getTransceivers()[0].sender.transport
    send_rtp: Callable[[bytes], Awaitable[None]] = dtls._send_rtp
    handle_rtcp: Callable[[bytes], Awaitable[None]] = dtls._handle_rtcp_data
    counter = FIRST_SEQ
    late: bytes | None = None

    async def numbered(data: bytes) -> None:
        nonlocal counter, late
        if 192 <= data[1] <= 223:  # RTCP
            await send_rtp(data)
            return
        seq = counter & 0xFFFF
        step = (counter - FIRST_SEQ) % DROP_EVERY
        counter += 1
        data = add_transport_seq(data, seq)
        if step == DROP_AT:
            wire.dropped.add(seq)
            return
        if step == HOLD_AT:
            wire.held.add(seq)
            late = data
            wire.sent[seq] = time.monotonic()
            return
        wire.sent[seq] = time.monotonic()
        await send_rtp(data)
        if late is not None:
            held, late = late, None
            await send_rtp(held)

    async def captured(data: bytes) -> None:
        for packet in split_compound(data):
            kind, fmt = packet[1], packet[0] & 0x1F
            if kind == 205 and fmt == 15:
                wire.feedback.append(packet)
            elif kind == 206 and fmt == 15 and packet[12:16] == b"REMB":
                exponent, mantissa = packet[17] >> 2, (packet[17] & 3) << 16 | packet[18] << 8
                wire.remb.append((mantissa | packet[19]) << exponent)
            elif kind == 201:
                wire.receiver_report_ssrcs.add(struct.unpack_from("!I", packet, 4)[0])
        await handle_rtcp(data)

    dtls._send_rtp = numbered
    dtls._handle_rtcp_data = captured


async def publish(
    gateway: RunningGateway, room: str, munge: bool = True
) -> tuple[RTCPeerConnection, str, Wire]:
    pc = new_peer()
    for track in (NumberedVideoTrack(320, 240), ToneTrack()):
        prefer(pc.addTransceiver(track, direction="sendonly"), track.kind, "VP8")
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    async with gateway.http.post(
        f"{gateway.base}/whip/{room}",
        data=offer_transport_cc(offer) if munge else offer,
        headers=SDP,
    ) as response:
        answer = await response.text()
        assert response.status == 201, answer
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    wire = Wire()
    intercept(pc, wire)
    return pc, answer, wire


def section(sdp: str, kind: str) -> list[str]:
    lines = sdp.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"m={kind}"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("m=")), None)
    return lines[start:end]


async def video_ingest(gateway: RunningGateway) -> dict[str, Any]:
    stats = await gateway.stats()
    (video,) = [t for r in stats["rooms"] for t in r["tracks"] if t["kind"] == "video"]
    return dict(video["ingest"])


def latest_reports(feedback: list[Feedback]) -> dict[int, int | None]:
    out: dict[int, int | None] = {}
    for f in feedback:
        arrivals = f.arrivals()
        for i in range(len(f.statuses)):
            seq = (f.base_seq + i) & 0xFFFF
            out[seq] = arrivals.get(seq)
    return out


async def test_feedback_is_negotiated_sent_and_true_to_arrivals(gateway: RunningGateway) -> None:
    pc, answer, wire = await publish(gateway, "cc")
    video = section(answer, "video")
    assert f"a=extmap:{EXTENSION_ID} {TRANSPORT_CC_URI}" in video
    vp8 = next(line.split()[0][9:] for line in video if "VP8/90000" in line)
    assert f"a=rtcp-fb:{vp8} transport-cc" in video
    assert f"a=rtcp-fb:{vp8} goog-remb" in video
    assert "b=AS:3000" in video and "b=TIAS:3000000" in video
    assert not any(line.startswith("b=") for line in section(answer, "audio"))

    # Long enough to wrap the 16-bit sequence number and to get a REMB (sent each second).
    await wait_for(lambda: len(wire.sent) >= 300 and len(wire.feedback) >= 15 and wire.remb)
    sent_until = max(wire.sent.values())
    await wait_for(lambda: len(wire.feedback) >= 20)  # the feedback for all that was sent
    parsed = [parse_feedback(p) for p in wire.feedback]  # strict: raises if malformed
    for packet in wire.feedback:
        assert packet[0] >> 6 == 2 and packet[1] == 205 and packet[0] & 0x1F == 15
        assert len(packet) % 4 == 0 and len(packet) == 4 + 4 * struct.unpack("!H", packet[2:4])[0]

    video_ssrc = pc.getTransceivers()[0].sender._ssrc
    assert {f.media_ssrc for f in parsed} == {video_ssrc}
    # Sent with the SSRC of the gateway's own RTCP (its receiver reports).
    assert {f.sender_ssrc for f in parsed} <= wire.receiver_report_ssrcs
    counts = [f.fb_count for f in parsed]
    assert counts == [(counts[0] + i) % 256 for i in range(len(counts))]

    reports = latest_reports(parsed)
    covered = [s for s, t in wire.sent.items() if t <= sent_until - 0.5]
    assert len(covered) >= 200 and 0 in reports and 65_535 in reports  # wrapped
    assert all(reports[s] is not None for s in covered), "a delivered packet reported lost"
    lost = [s for s in wire.dropped if s in reports]
    assert lost and all(reports[s] is None for s in lost)
    late = [s for s in wire.held if s in reports]
    assert late and all(reports[s] is not None for s in late)
    assert any(
        f.statuses[i] == LARGE_DELTA and d < 0
        for f in parsed
        for i, d in zip(
            (i for i, s in enumerate(f.statuses) if s != NOT_RECEIVED), f.deltas, strict=True
        )
    ), "no negative receive delta although packets arrived out of order"
    # Arrival times move with send times (same machine): a constant offset, give or take
    # scheduling. Wrong units or a drifting reference would be seconds off over the run.
    offsets = [reports[s] / 1e6 - wire.sent[s] for s in covered if reports[s] is not None]  # type: ignore[operator]
    assert max(offsets) - min(offsets) < 1.0

    # aiortc's own REMB estimate is replaced by the configured maximum.
    assert set(wire.remb) == {3_000_000}
    ingest = await video_ingest(gateway)
    assert ingest["transport_cc"] is True
    assert ingest["estimate_bps"] == 3_000_000
    assert ingest["feedback_sent"] >= len(wire.feedback)
    assert ingest["received_bps"] > 0 and ingest["fps"] > 0
    assert ingest["packets_lost"] > 0  # the dropped packets, before their retransmission
    await pc.close()


@pytest.mark.parametrize("gateway_config", [{"transport_cc": False}], indirect=True)
async def test_without_transport_cc_aiortc_reports_its_own_estimate(
    gateway: RunningGateway,
) -> None:
    pc, answer, wire = await publish(gateway, "plain")
    assert TRANSPORT_CC_URI not in answer and "transport-cc" not in answer
    await wait_for(lambda: len(wire.sent) >= 100 and len(wire.remb) >= 2)
    assert wire.feedback == []
    ingest = await video_ingest(gateway)
    assert ingest["transport_cc"] is False and ingest["feedback_sent"] == 0
    # The estimate in the stats is aiortc's REMB, as the publisher received it.
    assert ingest["estimate_bps"] in wire.remb
    assert set(wire.remb) != {3_000_000}
    await pc.close()


async def test_a_publisher_that_offers_no_transport_cc_keeps_aiortcs_remb(
    gateway: RunningGateway,
) -> None:
    pc, answer, wire = await publish(gateway, "legacy", munge=False)
    assert TRANSPORT_CC_URI not in answer and "transport-cc" not in answer
    await wait_for(lambda: len(wire.remb) >= 2)
    assert wire.feedback == [] and set(wire.remb) != {3_000_000}
    await pc.close()


async def test_room_bounds_and_the_minimum_reach_the_answer(gateway: RunningGateway) -> None:
    pc, answer, _wire = await publish(gateway, "lecture-1")
    video = section(answer, "video")
    assert "b=AS:6000" in video and "b=TIAS:6000000" in video
    vp8 = next(line.split()[0][9:] for line in video if "VP8/90000" in line)
    assert any(
        line.startswith(f"a=fmtp:{vp8} ") and "x-google-min-bitrate=500" in line for line in video
    )
    await pc.close()


async def test_viewers_get_transport_cc_but_no_bitrate_bound(gateway: RunningGateway) -> None:
    """A viewer's transport-cc is answered (media.viewer_transport_cc: its feedback feeds
    the viewer's bandwidth estimate); the ingest bitrate bound is for publishers only."""
    publisher, _answer, _wire = await publish(gateway, "watched")
    viewer = new_peer()
    viewer.addTransceiver("video", direction="recvonly")
    await viewer.setLocalDescription(await viewer.createOffer())
    async with gateway.http.post(
        f"{gateway.base}/whep/watched",
        data=offer_transport_cc(viewer.localDescription.sdp),
        headers=SDP,
    ) as response:
        answer = await response.text()
        assert response.status == 201, answer
    assert TRANSPORT_CC_URI in answer and "a=rtcp-fb:" in answer and "transport-cc" in answer
    assert "b=AS" not in answer
    await viewer.close()
    await publisher.close()
