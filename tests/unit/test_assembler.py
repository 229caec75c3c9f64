"""FrameAssembler: complete frames at the marker bit, in order, across loss and wraparound."""

from __future__ import annotations

import random

import av
import pytest
from aiortc.codecs import depayload, get_encoder
from aiortc.rtp import RtpPacket

from gateway.media.assembler import MAX_PACKETS, MAX_WAIT_MS, FrameAssembler
from gateway.media.frames import EncodedFrame

from .helpers import (
    CODECS,
    SSRC,
    VideoSender,
    expected_data,
    feed,
    numbered_picture,
    picture_number,
    rtp,
)


def vp8() -> FrameAssembler:
    return FrameAssembler("VP8", "video")


# --- completion at the marker bit -----------------------------------------------------------


def test_single_packet_frames_complete_on_their_own_packet() -> None:
    assembler, sender = vp8(), VideoSender()
    key = sender.frame(1, keyframe=True)
    delta = sender.frame(1)
    first = feed(assembler, key, arrival_ms=10)
    assert len(first) == 1
    assert first[0] == EncodedFrame(
        data=expected_data("VP8", key),
        timestamp=90000,
        keyframe=True,
        discontinuity=False,
        arrival_ms=10,
        ssrc=SSRC,
    )
    second = feed(assembler, delta, arrival_ms=43)
    assert [(f.timestamp, f.keyframe, f.arrival_ms) for f in second] == [(93000, False, 43)]


def test_multi_packet_frame_completes_exactly_at_the_marker() -> None:
    assembler, sender = vp8(), VideoSender()
    packets = sender.frame(4, keyframe=True)
    for i, packet in enumerate(packets[:-1]):
        assert feed(assembler, [packet], arrival_ms=i) == [], f"emitted early at packet {i}"
    (frame,) = feed(assembler, packets[-1:], arrival_ms=7)
    assert frame.data == expected_data("VP8", packets)
    assert frame.data.startswith(bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A]))
    assert frame.arrival_ms == 7
    assert frame.keyframe and not frame.discontinuity


def test_each_frame_is_emitted_at_its_own_marker_not_at_the_next_frames_start() -> None:
    assembler, sender = vp8(), VideoSender()
    frames = [sender.frame(3, keyframe=True)] + [sender.frame(2) for _ in range(5)]
    for number, packets in enumerate(frames):
        assert feed(assembler, packets[:-1]) == []
        out = feed(assembler, packets[-1:])
        assert [f.timestamp for f in out] == [90000 + 3000 * number]
        assert out[0].data == expected_data("VP8", packets)


def test_frame_without_marker_ends_when_the_next_frame_begins() -> None:
    assembler, sender = vp8(), VideoSender()
    first = sender.frame(2, keyframe=True, marker=False)
    second = sender.frame(2)
    assert feed(assembler, first) == []
    out = feed(assembler, second[:1])
    assert [f.data for f in out] == [expected_data("VP8", first)]
    out = feed(assembler, second[1:])
    assert [f.data for f in out] == [expected_data("VP8", second)]


# --- reordering -----------------------------------------------------------------------------


def test_packets_reordered_within_a_frame() -> None:
    assembler, sender = vp8(), VideoSender()
    a0, a1, a2, a3 = sender.frame(4, keyframe=True)
    assert feed(assembler, [a0, a2, a3]) == []
    (frame,) = feed(assembler, [a1])
    assert frame.data == expected_data("VP8", [a0, a1, a2, a3])


def test_marker_first_then_the_rest_of_the_frame() -> None:
    assembler, sender = vp8(), VideoSender()
    a0, a1, a2 = sender.frame(3, keyframe=True)
    assert feed(assembler, [a0, a2]) == []
    (frame,) = feed(assembler, [a1])
    assert frame.data == expected_data("VP8", [a0, a1, a2])


def test_later_frame_complete_first_is_held_until_the_earlier_one_completes() -> None:
    assembler, sender = vp8(), VideoSender()
    a = sender.frame(3, keyframe=True)
    b = sender.frame(2)
    c = sender.frame(1)
    assert feed(assembler, [a[0], b[0], b[1], c[0], a[2]]) == []
    out = feed(assembler, [a[1]])
    assert [f.timestamp for f in out] == [90000, 93000, 96000]
    assert [f.data for f in out] == [expected_data("VP8", x) for x in (a, b, c)]
    assert all(not f.discontinuity for f in out)


def test_interleaved_frames_come_out_in_order() -> None:
    assembler, sender = vp8(), VideoSender()
    a = sender.frame(3, keyframe=True)
    b = sender.frame(3)
    out = feed(assembler, [a[0], b[0], a[1], b[2], b[1]])
    assert out == []
    out = feed(assembler, [a[2]])
    assert [f.timestamp for f in out] == [90000, 93000]


# --- loss and retransmission ----------------------------------------------------------------


def test_retransmitted_packet_completes_the_frame_and_releases_those_behind() -> None:
    assembler, sender = vp8(), VideoSender()
    a = sender.frame(3, keyframe=True)
    b = sender.frame(2)
    assert feed(assembler, [a[0], a[2], b[0], b[1]], arrival_ms=1000) == []
    out = feed(assembler, [a[1]], arrival_ms=1000 + MAX_WAIT_MS // 2)  # NACK answered
    assert [f.data for f in out] == [expected_data("VP8", a), expected_data("VP8", b)]
    assert [f.discontinuity for f in out] == [False, False]
    assert assembler.frames_skipped == 0
    assert assembler.packets_late == 0


def test_packet_lost_for_good_holds_frames_then_skips_with_a_discontinuity() -> None:
    assembler, sender = vp8(), VideoSender()
    a = sender.frame(3, keyframe=True)
    b = sender.frame(2)
    c = sender.frame(2)
    d = sender.frame(1)
    # a[1] never arrives: b is complete but must wait behind it.
    assert feed(assembler, [a[0], a[2], b[0], b[1]], arrival_ms=1000) == []
    assert feed(assembler, [c[0]], arrival_ms=1000 + MAX_WAIT_MS // 2) == []
    assert feed(assembler, [c[1]], arrival_ms=1000 + MAX_WAIT_MS - 1) == []
    out = feed(assembler, d, arrival_ms=1000 + MAX_WAIT_MS + 1)
    assert [f.timestamp for f in out] == [93000, 96000, 99000]
    assert [f.discontinuity for f in out] == [True, False, False]
    assert [f.data for f in out] == [expected_data("VP8", x) for x in (b, c, d)]
    assert assembler.frames_skipped == 1
    # The lost packet turning up after all is late and ignored.
    assert feed(assembler, [a[1]], arrival_ms=2000) == []
    assert assembler.packets_late == 1
    out = feed(assembler, sender.frame(1), arrival_ms=2001)
    assert [(f.timestamp, f.discontinuity) for f in out] == [(102000, False)]


def test_lost_first_packet_of_a_frame_skips_that_frame() -> None:
    assembler, sender = vp8(), VideoSender()
    a = sender.frame(1, keyframe=True)
    b = sender.frame(3)
    c = sender.frame(2)
    assert [f.timestamp for f in feed(assembler, a, arrival_ms=0)] == [90000]
    assert feed(assembler, [b[1], b[2], c[0], c[1]], arrival_ms=10) == []
    out = feed(assembler, sender.frame(1), arrival_ms=10 + MAX_WAIT_MS + 1)
    assert [(f.timestamp, f.discontinuity) for f in out] == [(96000, True), (99000, False)]
    assert assembler.frames_skipped == 1


def test_lost_marker_packet_resumes_at_the_next_frame_start() -> None:
    # The last packet of a is lost: b's start is recognised by its VP8 descriptor (S=1).
    assembler, sender = vp8(), VideoSender()
    a = sender.frame(3, keyframe=True)
    b = sender.frame(2)
    assert feed(assembler, [a[0], a[1], b[0], b[1]], arrival_ms=0) == []
    out = feed(assembler, sender.frame(1), arrival_ms=MAX_WAIT_MS + 1)
    assert [(f.timestamp, f.discontinuity) for f in out] == [(93000, True), (96000, False)]


def test_h264_skip_resumes_after_a_marker() -> None:
    # H264 delta frames carry no recognisable start: the marker before them marks it.
    assembler, sender = FrameAssembler("H264", "video"), VideoSender("H264")
    a = sender.frame(3, keyframe=True)
    b = sender.frame(3)
    c = sender.frame(2)
    d = sender.frame(1)
    assert feed(assembler, [a[0], a[1], a[2]], arrival_ms=0)[0].keyframe
    # b[1] lost
    assert feed(assembler, [b[0], b[2], c[0], c[1]], arrival_ms=5) == []
    out = feed(assembler, d, arrival_ms=5 + MAX_WAIT_MS + 1)
    assert [(f.timestamp, f.discontinuity, f.keyframe) for f in out] == [
        (96000, True, False),
        (99000, False, False),
    ]
    assert [f.data for f in out] == [expected_data("H264", c), expected_data("H264", d)]


def test_nothing_is_given_up_before_max_wait() -> None:
    assembler, sender = vp8(), VideoSender()
    a = sender.frame(3, keyframe=True)
    feed(assembler, [a[0], a[2]], arrival_ms=0)
    for t in range(0, MAX_WAIT_MS, 50):
        assert feed(assembler, sender.frame(1), arrival_ms=t) == []
    assert assembler.frames_skipped == 0
    out = feed(assembler, [a[1]], arrival_ms=MAX_WAIT_MS)
    assert len(out) == 1 + len(range(0, MAX_WAIT_MS, 50))
    assert not any(f.discontinuity for f in out)


def test_a_slow_lossless_frame_is_not_given_up() -> None:
    # A large keyframe paced out over more than MAX_WAIT_MS, with no packet missing.
    assembler, sender = vp8(), VideoSender()
    packets = sender.frame(6, keyframe=True)
    step = MAX_WAIT_MS // 2
    for i, packet in enumerate(packets[:-1]):
        assert feed(assembler, [packet], arrival_ms=i * step) == []
    (frame,) = feed(assembler, packets[-1:], arrival_ms=5 * step)
    assert frame.data == expected_data("VP8", packets)
    assert not frame.discontinuity
    assert assembler.frames_skipped == 0


def test_wait_for_a_missing_packet_counts_from_when_packets_queue_behind_it() -> None:
    # A slow frame loses one packet near its end; the NACK answer comes soon after the gap
    # shows (the marker packet arrived), though long after the frame's first packet.
    assembler, sender = vp8(), VideoSender()
    packets = sender.frame(6, keyframe=True)
    step = MAX_WAIT_MS // 2
    for i in range(4):
        assert feed(assembler, [packets[i]], arrival_ms=i * step) == []
    assert feed(assembler, [packets[5]], arrival_ms=5 * step) == []
    (frame,) = feed(assembler, [packets[4]], arrival_ms=5 * step + 20)
    assert frame.data == expected_data("VP8", packets)
    assert not frame.discontinuity


# --- sequence number wraparound -------------------------------------------------------------


def test_wraparound_inside_a_frame() -> None:
    assembler, sender = vp8(), VideoSender(seq=65534)
    packets = sender.frame(4, keyframe=True)
    assert [p.sequence_number for p in packets] == [65534, 65535, 0, 1]
    out = feed(assembler, packets)
    assert [f.data for f in out] == [expected_data("VP8", packets)]
    assert feed(assembler, sender.frame(2))[0].timestamp == 93000


def test_wraparound_between_frames() -> None:
    assembler, sender = vp8(), VideoSender(seq=65533)
    a = sender.frame(3, keyframe=True)
    b = sender.frame(2)
    assert [p.sequence_number for p in a + b] == [65533, 65534, 65535, 0, 1]
    assert [f.timestamp for f in feed(assembler, a)] == [90000]
    assert [f.timestamp for f in feed(assembler, b)] == [93000]
    assert assembler.packets_late == 0


def test_wraparound_with_reordering_across_it() -> None:
    assembler, sender = vp8(), VideoSender(seq=65534)
    a = sender.frame(2, keyframe=True)  # 65534, 65535
    b = sender.frame(2)  # 0, 1
    assert feed(assembler, [a[0], b[0], b[1]]) == []
    out = feed(assembler, [a[1]])
    assert [f.timestamp for f in out] == [90000, 93000]


def test_loss_across_wraparound_skips_to_the_frame_after_it() -> None:
    assembler, sender = vp8(), VideoSender(seq=65533)
    a = sender.frame(1, keyframe=True)  # 65533
    b = sender.frame(2)  # 65534, 65535
    c = sender.frame(2)  # 0, 1
    feed(assembler, a, arrival_ms=0)
    assert feed(assembler, [b[1], c[0], c[1]], arrival_ms=0) == []
    out = feed(assembler, sender.frame(1), arrival_ms=MAX_WAIT_MS + 1)
    assert [(f.timestamp, f.discontinuity) for f in out] == [(96000, True), (99000, False)]


def test_many_wraps_stay_in_order() -> None:
    assembler, sender = vp8(), VideoSender(seq=60000)
    out = feed(assembler, sender.frame(3, keyframe=True))
    for _ in range(25000):  # 75003 packets: the sequence wraps twice
        out.extend(feed(assembler, sender.frame(3)))
    assert len(out) == 25001
    assert [f.timestamp for f in out[-3:]] == [90000 + 3000 * n for n in (24998, 24999, 25000)]
    assert assembler.packets_late == 0 and assembler.frames_skipped == 0


def test_padding_only_packets_make_no_frame() -> None:
    # Bandwidth probes: RTP packets with no payload, numbered in the media's sequence.
    assembler, sender = vp8(), VideoSender()
    a = sender.frame(2, keyframe=True)
    padding = [rtp(sender.seq + i, sender.timestamp - 3000, b"", False) for i in range(3)]
    sender.seq += 3
    b = sender.frame(2)
    assert [f.timestamp for f in feed(assembler, a)] == [90000]
    assert feed(assembler, padding) == []
    out = feed(assembler, b)
    assert [(f.timestamp, f.data, f.discontinuity) for f in out] == [
        (93000, expected_data("VP8", b), False)
    ]
    assert assembler.frames_skipped == 0 and assembler.packets_late == 0


def test_padding_does_not_swallow_a_pending_discontinuity() -> None:
    assembler, sender = vp8(), VideoSender()
    feed(assembler, sender.frame(1, keyframe=True), arrival_ms=0)
    lost = sender.frame(2)
    padding = [rtp(sender.seq + i, sender.timestamp - 3000, b"", False) for i in range(2)]
    sender.seq += 2
    feed(assembler, lost[1:] + padding, arrival_ms=0)
    out = feed(assembler, sender.frame(1), arrival_ms=MAX_WAIT_MS + 1)
    assert [(f.timestamp, f.discontinuity) for f in out] == [(96000, True)]


# --- duplicates -----------------------------------------------------------------------------


def test_late_duplicates_are_counted_and_ignored() -> None:
    assembler, sender = vp8(), VideoSender()
    a = sender.frame(3, keyframe=True)
    b = sender.frame(1)
    assert len(feed(assembler, a + b)) == 2
    assert feed(assembler, [a[1], a[2], b[0]]) == []
    assert assembler.packets_late == 3
    c = sender.frame(2)
    out = feed(assembler, c)
    assert [(f.timestamp, f.discontinuity) for f in out] == [(96000, False)]


def test_duplicate_of_a_buffered_packet_does_not_double_the_frame() -> None:
    assembler, sender = vp8(), VideoSender()
    a = sender.frame(3, keyframe=True)
    (frame,) = feed(assembler, [a[0], a[0], a[1], a[1], a[2]])
    assert frame.data == expected_data("VP8", a)


# --- starting mid-stream --------------------------------------------------------------------


def test_startup_mid_frame_waits_for_a_frame_start() -> None:
    assembler, sender = vp8(), VideoSender()
    a = sender.frame(4, keyframe=True)
    b = sender.frame(2)
    assert feed(assembler, a[2:]) == []  # the tail of a frame we never saw begin
    out = feed(assembler, b)
    assert [f.data for f in out] == [expected_data("VP8", b)]
    assert feed(assembler, a[:2]) == []
    assert assembler.packets_late == 2


def test_startup_on_a_frame_start_emits_at_once() -> None:
    assembler, sender = vp8(), VideoSender(seq=5000)
    sender.frame(3)
    b = sender.frame(3)
    assert [f.timestamp for f in feed(assembler, b)] == [93000]


def test_startup_mid_frame_h264_syncs_on_the_marker() -> None:
    # H264 deltas have no recognisable first packet: the first marker gives the boundary.
    assembler, sender = FrameAssembler("H264", "video"), VideoSender("H264")
    a = sender.frame(3)
    b = sender.frame(3)
    c = sender.frame(1)
    assert feed(assembler, a[1:]) == []
    out = feed(assembler, b + c)
    assert [f.data for f in out] == [expected_data("H264", b), expected_data("H264", c)]
    assert [f.keyframe for f in out] == [False, False]


def test_startup_with_reordered_frame_start_and_tail() -> None:
    assembler, sender = vp8(), VideoSender()
    a = sender.frame(2)
    b = sender.frame(2)
    # The next frame's start arrives before the end of the one we joined in.
    out = feed(assembler, [b[0], a[1], b[1]])
    assert [f.data for f in out] == [expected_data("VP8", b)]


# --- keyframe flags -------------------------------------------------------------------------


def test_vp8_keyframe_flag() -> None:
    assembler, sender = vp8(), VideoSender()
    out = feed(assembler, sender.frame(2, keyframe=True) + sender.frame(2) + sender.frame(1, True))
    assert [f.keyframe for f in out] == [True, False, True]


def test_h264_keyframe_flag_from_the_idr_nal() -> None:
    assembler, sender = FrameAssembler("H264", "video"), VideoSender("H264")
    key = sender.frame(3, keyframe=True)
    delta = sender.frame(2)
    single = sender.frame(1)
    out = feed(assembler, key + delta + single)
    assert [f.keyframe for f in out] == [True, False, False]
    # STAP-A became SPS + PPS, the FU-As one IDR NAL, each behind a start code.
    assert out[0].data.count(b"\x00\x00\x00\x01") == 3
    assert out[0].data[4] & 0x1F == 7
    assert out[1].data[:5] == b"\x00\x00\x00\x01\x41"


# --- audio ----------------------------------------------------------------------------------


def opus(seq: int, timestamp: int) -> RtpPacket:
    return rtp(seq, timestamp, bytes([0xFC, seq & 0xFF, 0x01]), marker=False, codec="opus")


def test_audio_packets_pass_immediately() -> None:
    assembler = FrameAssembler("opus", "audio")
    for i in range(5):
        packet = opus(100 + i, 960 * i)
        (frame,) = feed(assembler, [packet], arrival_ms=i)
        assert frame == EncodedFrame(packet.payload, 960 * i, True, False, i, SSRC)


def test_audio_gap_is_a_discontinuity() -> None:
    assembler = FrameAssembler("opus", "audio")
    feed(assembler, [opus(100, 0), opus(101, 960)])
    out = feed(assembler, [opus(104, 3840), opus(105, 4800)])
    assert [f.discontinuity for f in out] == [True, False]


def test_audio_late_and_duplicate_packets_are_dropped() -> None:
    assembler = FrameAssembler("opus", "audio")
    feed(assembler, [opus(100, 0), opus(102, 1920)])
    assert feed(assembler, [opus(101, 960)]) == []
    assert feed(assembler, [opus(102, 1920)]) == []
    assert assembler.packets_late == 2
    assert [f.timestamp for f in feed(assembler, [opus(103, 2880)])] == [2880]


def test_audio_wraparound_is_not_a_gap() -> None:
    assembler = FrameAssembler("opus", "audio")
    out = feed(assembler, [opus(65534, 0), opus(65535, 960), opus(0, 1920), opus(1, 2880)])
    assert [f.discontinuity for f in out] == [False] * 4
    assert [f.timestamp for f in out] == [0, 960, 1920, 2880]


# --- bounds ---------------------------------------------------------------------------------


def test_buffer_is_bounded_by_max_packets() -> None:
    assembler, sender = vp8(), VideoSender()
    # A frame whose marker never comes, all arriving at once (no time-out applies).
    huge = sender.frame(MAX_PACKETS + 10, keyframe=True)
    for packet in huge[:-1]:
        assert feed(assembler, [packet]) == []
        assert len(assembler._slots) <= MAX_PACKETS
    assert assembler.frames_skipped == 1
    out = feed(assembler, sender.frame(2, keyframe=True))
    assert [(f.timestamp, f.keyframe, f.discontinuity) for f in out] == [(93000, True, True)]
    assert len(assembler._slots) == 0


# --- against real encoders ------------------------------------------------------------------


def encode_stream(codec: str, frames: int, first_seq: int) -> list[RtpPacket]:
    """RTP packets of ``frames`` pictures encoded by aiortc's own encoder for ``codec``."""
    encoder = get_encoder(CODECS[codec])
    packets: list[RtpPacket] = []
    seq = first_seq
    for number in range(frames):
        payloads, timestamp = encoder.encode(numbered_picture(number))
        assert payloads, f"the encoder produced nothing for picture {number}"
        for i, payload in enumerate(payloads):
            packets.append(rtp(seq, timestamp, payload, i == len(payloads) - 1, codec))
            seq += 1
    return packets


def decode(codec: str, frames: list[EncodedFrame]) -> list[av.VideoFrame]:
    decoder = av.CodecContext.create(codec.lower(), "r")
    pictures: list[av.VideoFrame] = []
    for frame in frames:
        pictures.extend(decoder.decode(av.Packet(frame.data)))  # type: ignore[arg-type]
    pictures.extend(decoder.decode(None))  # type: ignore[arg-type]
    return pictures


def shuffled_in_windows(packets: list[RtpPacket], window: int, seed: int) -> list[RtpPacket]:
    rng = random.Random(seed)
    out: list[RtpPacket] = []
    for start in range(0, len(packets), window):
        chunk = packets[start : start + window]
        rng.shuffle(chunk)
        out.extend(chunk)
    return out


@pytest.fixture(scope="module", params=["VP8", "H264"])
def encoded(request: pytest.FixtureRequest) -> tuple[str, list[RtpPacket]]:
    packets = encode_stream(request.param, 30, first_seq=0)
    # Renumber so that the stream crosses 65535 -> 0 in its middle.
    first = 0x10000 - len(packets) // 2
    for i, packet in enumerate(packets):
        packet.sequence_number = (first + i) & 0xFFFF
    return request.param, packets


def check_decodes(codec: str, frames: list[EncodedFrame], packets: list[RtpPacket]) -> None:
    assert len(frames) == 30
    assert frames[0].keyframe
    assert not any(f.discontinuity for f in frames)
    timestamps = [f.timestamp for f in frames]
    assert timestamps == sorted(set(timestamps))
    assert timestamps == sorted({p.timestamp for p in packets})
    pictures = decode(codec, frames)
    assert len(pictures) == 30
    assert {(p.width, p.height) for p in pictures} == {(320, 240)}
    assert [picture_number(p) for p in pictures] == list(range(30))


def test_real_encoder_stream_in_order(encoded: tuple[str, list[RtpPacket]]) -> None:
    codec, packets = encoded
    assert any(p.sequence_number == 0 for p in packets)
    assembler = FrameAssembler(codec, "video")
    frames = []
    for i, packet in enumerate(packets):
        out = assembler.add(packet, depayload(CODECS[codec], packet.payload), i)
        # Complete on the marker bit: a frame leaves with its own last packet.
        assert len(out) == packet.marker
        frames.extend(out)
    check_decodes(codec, frames, packets)
    assert assembler.packets_late == 0 and assembler.frames_skipped == 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_real_encoder_stream_reordered_within_a_window(
    encoded: tuple[str, list[RtpPacket]], seed: int
) -> None:
    codec, packets = encoded
    in_order = feed(FrameAssembler(codec, "video"), packets)
    assembler = FrameAssembler(codec, "video")
    reordered = shuffled_in_windows(packets, window=4, seed=seed)
    assert reordered != packets
    frames = feed(assembler, reordered)
    check_decodes(codec, frames, packets)
    assert [f.data for f in frames] == [f.data for f in in_order]
    assert assembler.packets_late == 0 and assembler.frames_skipped == 0


def test_real_encoder_stream_with_a_packet_lost_for_good() -> None:
    codec = "VP8"
    packets = encode_stream(codec, 12, first_seq=65530)
    ends = [i for i, p in enumerate(packets) if p.marker]
    frame_timestamps = [packets[i].timestamp for i in ends]
    lost = ends[4] + 1  # the first packet of frame 5
    assembler = FrameAssembler(codec, "video")
    early = feed(assembler, packets[:lost], arrival_ms=0)
    assert [f.timestamp for f in early] == frame_timestamps[:5]
    assert feed(assembler, packets[lost + 1 : ends[10] + 1], arrival_ms=10) == []
    resumed = feed(assembler, packets[ends[10] + 1 :], arrival_ms=10 + MAX_WAIT_MS + 1)
    assert [f.timestamp for f in resumed] == frame_timestamps[6:]
    assert [f.discontinuity for f in resumed] == [True] + [False] * 5
    assert assembler.frames_skipped == 1
    # What was emitted before the loss decodes.
    pictures = decode(codec, early)
    assert [picture_number(p) for p in pictures] == [0, 1, 2, 3, 4]


def test_a_new_ssrc_restarts_assembly_with_a_discontinuity() -> None:
    assembler, sender = vp8(), VideoSender()
    assert len(feed(assembler, sender.frame(2, keyframe=True) + sender.frame(2))) == 2
    # The sender restarts: new SSRC, sequence numbers far from the old ones.
    restarted = VideoSender()
    packets = restarted.frame(3, keyframe=True)
    for packet in packets:
        packet.ssrc = SSRC + 1
        packet.sequence_number = (packet.sequence_number + 40000) & 0xFFFF
    (frame,) = feed(assembler, packets)
    assert frame.ssrc == SSRC + 1
    assert frame.keyframe and frame.discontinuity
    assert assembler.packets_late == 0
