"""The ingest policy's pieces without a network: SDP bounds, room bounds, settings, and the
aiortc internals media/tap.py needs for it."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiortc import RTCDtlsTransport, RTCPeerConnection

from gateway.config import ConfigError, IngestSettings, RoomBitrate, load
from gateway.media import tap
from gateway.media.ingest import bitrate_bounds, with_bandwidth

ANSWER = "\r\n".join(
    [
        "v=0",
        "o=- 1 1 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1 2",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "c=IN IP4 127.0.0.1",
        "a=mid:0",
        "m=video 9 UDP/TLS/RTP/SAVPF 96",
        "c=IN IP4 127.0.0.1",
        "b=AS:100",
        "a=mid:1",
        "a=rtpmap:96 VP8/90000",
        "m=video 9 UDP/TLS/RTP/SAVPF 96",
        "c=IN IP4 127.0.0.1",
        "a=mid:2",
        "",
    ]
)


def test_bandwidth_lines_go_after_c_in_the_published_sections_only() -> None:
    shaped = with_bandwidth(ANSWER, {"1"}, 2500).split("\r\n")
    video = shaped.index("a=mid:1")
    assert shaped[video - 3 : video] == ["c=IN IP4 127.0.0.1", "b=AS:2500", "b=TIAS:2500000"]
    assert "b=AS:100" not in shaped  # replaced, not added to
    assert shaped.count("b=AS:2500") == 1  # not in audio, not in mid 2 (a viewer's)
    assert shaped[-1] == "" and shaped[:5] == ANSWER.split("\r\n")[:5]


def test_a_room_takes_its_first_matching_bounds() -> None:
    settings = IngestSettings(
        max_bitrate_kbps=3000,
        min_bitrate_kbps=0,
        rooms=[
            RoomBitrate(room="lecture-*", max_bitrate_kbps=6000, min_bitrate_kbps=800),
            RoomBitrate(room="lecture-small", max_bitrate_kbps=1000),
            RoomBitrate(room="low", max_bitrate_kbps=500),
        ],
    )
    assert bitrate_bounds(settings, "lecture-small") == (6000, 800)
    assert bitrate_bounds(settings, "low") == (500, 0)
    assert bitrate_bounds(settings, "Low") == (3000, 0)  # patterns are case-sensitive
    assert bitrate_bounds(settings, "other") == (3000, 0)


@pytest.mark.parametrize(
    ("yaml", "key"),
    [
        ("ingest: {feedback_interval_ms: 5}", "ingest.feedback_interval_ms"),
        ("ingest: {max_bitrate_kbps: -1}", "ingest.max_bitrate_kbps"),
        ("ingest: {max_bitrate_kbps: 1000, min_bitrate_kbps: 2000}", "ingest.min_bitrate_kbps"),
        ("ingest: {transport_cc: maybe}", "ingest.transport_cc"),
        ("ingest: {rooms: [{room: a}]}", "ingest.rooms[0]"),
        (
            "ingest: {rooms: [{room: a, max_bitrate_kbps: 100, min_bitrate_kbps: 200}]}",
            "ingest.rooms[0].min_bitrate_kbps",
        ),
    ],
)
def test_bad_ingest_settings_name_the_key(tmp_path: Path, yaml: str, key: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml)
    with pytest.raises(ConfigError) as error:
        load(path, environ={})
    assert str(error.value).startswith(key)


def test_ingest_settings_from_the_environment() -> None:
    config = load(
        environ={"GATEWAY_INGEST_TRANSPORT_CC": "false", "GATEWAY_INGEST_MAX_BITRATE_KBPS": "0"}
    )
    assert (config.ingest.transport_cc, config.ingest.max_bitrate_kbps) == (False, 0)
    assert config.ingest.min_bitrate_kbps == 0  # the default, untouched


async def test_aiortc_still_has_the_internals_the_ingest_tap_uses() -> None:
    pc = RTCPeerConnection()
    transceiver = pc.addTransceiver("video", direction="recvonly")
    receiver = transceiver.receiver
    for attr in ("_codecs", "_headerExtensions"):
        assert isinstance(getattr(transceiver, attr), list)
    for attr in (
        tap._REMB_ESTIMATOR_ATTR,
        tap._REMOTE_STREAMS_ATTR,
        tap._RTX_SSRC_ATTR,
        tap._RTCP_SSRC_ATTR,
    ):
        assert hasattr(receiver, attr), attr
    assert tap.rtcp_ssrc(receiver) == transceiver.sender._ssrc
    assert tap.receive_statistics(receiver) == (0, 0, 0.0)
    for method in ("_handle_rtp_data", "_send_rtp", "_handle_rtcp_data"):
        assert callable(getattr(RTCDtlsTransport, method, None)), method
    assert callable(getattr(receiver, "_send_rtcp", None))
    await pc.close()
