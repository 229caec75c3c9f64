"""The simulcast benchmark's pure helpers (bench/simulcast_media.py, bench/simulcast.py,
bench/simulcast_bw.py): the offer it makes is one the gateway reads as simulcast, its RTP
carries the rid where aiortc reads it, keyframe requests are found in compound RTCP, and
freezes and switch times are read off samples as documented."""

from __future__ import annotations

import struct

from aiortc.codecs.vpx import VpxPayloadDescriptor
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from bench.simulcast import initial_layer, next_layer
from bench.simulcast_bw import first_time, gaps
from bench.simulcast_media import (
    MID_URI,
    RID_EXTENSION_ID,
    RID_URI,
    extension_ids,
    keyframe_requests,
    rtp_packet,
    simulcast_offer,
    vp8_payloads,
)
from gateway.signaling.simulcast import offered_layers

OFFER = (
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 97 98\r\nc=IN IP4 0.0.0.0\r\na=sendonly\r\n"
    "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
    "a=extmap:3 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n"
    "a=mid:0\r\na=rtcp-mux\r\na=ssrc-group:FID 11 12\r\na=ssrc:11 cname:x\r\n"
    "a=ssrc:12 cname:x\r\na=rtpmap:97 VP8/90000\r\na=rtpmap:98 rtx/90000\r\n"
    "a=fmtp:98 apt=97\r\n"
)


def test_the_offer_is_read_by_the_gateway_as_three_layers_without_ssrcs() -> None:
    offer = simulcast_offer(OFFER, ["q", "h", "f"])
    (layers,) = offered_layers(offer, 3).values()
    assert layers.rids == ("q", "h", "f") and layers.rid_extension == RID_EXTENSION_ID
    assert "a=ssrc" not in offer
    assert extension_ids(offer) == {
        MID_URI: 1,
        "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time": 3,
        RID_URI: RID_EXTENSION_ID,
    }
    plain = simulcast_offer(OFFER, None)
    assert offered_layers(plain, 3) == {} and "a=ssrc" not in plain and RID_URI not in plain


def test_rtp_carries_mid_and_rid_as_aiortc_reads_them() -> None:
    extensions = HeaderExtensionsMap()
    extensions.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=1, uri=MID_URI),
                RTCRtpHeaderExtensionParameters(id=RID_EXTENSION_ID, uri=RID_URI),
            ]
        )
    )
    data = rtp_packet(
        97, True, 65535, 2**32 - 1, 1234, [(1, b"0"), (RID_EXTENSION_ID, b"h")], b"abc"
    )
    packet = RtpPacket.parse(data, extensions)
    assert (packet.payload_type, packet.marker, packet.sequence_number) == (97, 1, 65535)
    assert (packet.timestamp, packet.ssrc, packet.payload) == (2**32 - 1, 1234, b"abc")
    assert (packet.extensions.mid, packet.extensions.rtp_stream_id) == ("0", "h")


def test_vp8_payloads_split_a_frame_with_its_picture_id() -> None:
    frame = bytes(range(256)) * 10
    payloads = vp8_payloads(frame, 0x7ABC)
    assert len(payloads) == 3
    data = b""
    for index, payload in enumerate(payloads):
        descriptor, rest = VpxPayloadDescriptor.parse(payload)
        assert descriptor.picture_id == 0x7ABC
        assert descriptor.partition_start == (index == 0)
        data += rest
    assert data == frame


def test_keyframe_requests_are_found_in_compound_rtcp() -> None:
    receiver_report = struct.pack("!BBHI", 0x80, 201, 1, 99)
    pli = struct.pack("!BBHII", 0x81, 206, 2, 99, 555)
    fir = struct.pack("!BBHIIIBBH", 0x84, 206, 4, 99, 0, 777, 1, 0, 0)
    nack = struct.pack("!BBHIIHH", 0x81, 205, 3, 99, 555, 10, 0)
    assert keyframe_requests(receiver_report + pli + nack + fir) == [("pli", 555), ("fir", 777)]
    assert keyframe_requests(pli[:10]) == []  # truncated: nothing


def test_switching_viewers_cycle_through_the_layers() -> None:
    assert [initial_layer(i, True) for i in range(4)] == ["q", "h", "f", "q"]
    assert initial_layer(1, False) is None
    assert [next_layer(x) for x in ("q", "h", "f", None)] == ["h", "f", "q", "q"]


def test_gaps_count_freezes_and_cut_them_at_the_window() -> None:
    times = [1000.0 * t for t in (10.0, 10.1, 10.2, 11.0, 11.05, 13.0)]
    found = gaps(times, 10.05, 12.0)
    # 10.05 -> 10.1, 10.2 -> 11.0 (a freeze), 11.05 -> 12.0 (a freeze, cut at the end)
    assert found["longest_gap_s"] == 0.95 and found["freezes"] == 2
    assert found["freeze_total_s"] == round(0.8 + 0.95, 3) and found["frames"] == 4


def test_first_time_is_measured_from_the_event() -> None:
    samples = [{"t": 1.0, "target": "h"}, {"t": 2.0, "target": None}, {"t": 3.5, "target": "h"}]
    assert first_time(samples, 1.5, lambda s: s["target"] is not None) == 2.0
    assert first_time(samples, 4.0, lambda s: True) is None
