"""Codec facts read from encoded frames and RTP payloads."""

from __future__ import annotations

import struct

import av
import pytest

from gateway.media.frames import is_keyframe, starts_frame, vp8_resolution, vp8_temporal_id

from .helpers import PPS, SPS, numbered_picture

START = b"\x00\x00\x00\x01"


def vp8_key_header(width: int, height: int, scale_bits: int = 0) -> bytes:
    return (
        bytes([0x10, 0x02, 0x00])
        + b"\x9d\x01\x2a"
        + struct.pack("<HH", width | scale_bits << 14, height | scale_bits << 14)
    )


# --- is_keyframe ----------------------------------------------------------------------------


def test_vp8_keyframe_has_bit_zero_clear() -> None:
    assert is_keyframe("VP8", vp8_key_header(640, 480) + b"body") is True


def test_vp8_delta_frame_has_bit_zero_set() -> None:
    assert is_keyframe("VP8", bytes([0x11, 0x02, 0x00]) + b"body") is False
    assert is_keyframe("VP8", bytes([0x31])) is False


def test_vp8_empty_frame_is_not_a_keyframe() -> None:
    assert is_keyframe("VP8", b"") is False


def test_h264_access_unit_with_idr_is_a_keyframe() -> None:
    unit = START + SPS + START + PPS + START + bytes([0x65, 0x88, 0x84])
    assert is_keyframe("H264", unit) is True


def test_h264_idr_after_three_byte_start_code() -> None:
    assert is_keyframe("H264", b"\x00\x00\x01" + bytes([0x65, 0x88])) is True


def test_h264_non_idr_slices_are_not_a_keyframe() -> None:
    unit = START + bytes([0x41, 0x9A, 0x02]) + START + bytes([0x01, 0x9A, 0x03])
    assert is_keyframe("H264", unit) is False


def test_h264_parameter_sets_alone_are_not_a_keyframe() -> None:
    assert is_keyframe("H264", START + SPS + START + PPS) is False


def test_h264_empty_or_truncated_frame_is_not_a_keyframe() -> None:
    assert is_keyframe("H264", b"") is False
    assert is_keyframe("H264", START) is False  # start code with no NAL header after it


def test_audio_frames_are_always_keyframes() -> None:
    assert is_keyframe("opus", b"\xfc\xff\xfe") is True
    assert is_keyframe("opus", b"") is True


def test_real_encoders_first_frames_are_keyframes_and_later_ones_are_not() -> None:
    for name, codec_name in (("VP8", "libvpx"), ("H264", "libx264")):
        encoder = av.CodecContext.create(codec_name, "w")
        encoder.width, encoder.height, encoder.pix_fmt = 320, 240, "yuv420p"
        encoder.time_base = numbered_picture(0).time_base
        if name == "H264":
            encoder.options = {"tune": "zerolatency"}
            encoder.profile = "Baseline"
        packets = []
        for n in range(5):
            packets.extend(encoder.encode(numbered_picture(n)))
        packets.extend(encoder.encode(None))
        flags = [is_keyframe(name, bytes(p)) for p in packets]
        assert flags[0] is True, name
        assert flags[1:] == [False] * (len(flags) - 1), name
        assert [p.is_keyframe for p in packets] == flags, name


# --- vp8_resolution -------------------------------------------------------------------------


def test_vp8_resolution_of_a_keyframe() -> None:
    assert vp8_resolution(vp8_key_header(1280, 720) + b"x") == (1280, 720)


def test_vp8_resolution_ignores_the_scaling_bits() -> None:
    assert vp8_resolution(vp8_key_header(640, 360, scale_bits=3)) == (640, 360)


def test_vp8_resolution_of_a_delta_frame_is_none() -> None:
    data = bytearray(vp8_key_header(640, 480))
    data[0] |= 0x01
    assert vp8_resolution(bytes(data)) is None


def test_vp8_resolution_needs_the_start_code() -> None:
    data = bytearray(vp8_key_header(640, 480))
    data[4] = 0x02
    assert vp8_resolution(bytes(data)) is None


def test_vp8_resolution_of_a_short_frame_is_none() -> None:
    assert vp8_resolution(vp8_key_header(640, 480)[:9]) is None
    assert vp8_resolution(b"") is None


def test_vp8_resolution_of_a_real_keyframe() -> None:
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 320, 240, "yuv420p"
    encoder.time_base = numbered_picture(0).time_base
    (packet,) = encoder.encode(numbered_picture(0))
    assert vp8_resolution(bytes(packet)) == (320, 240)


# --- starts_frame ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first_byte", "expected"),
    [
        (0x10, True),  # S=1, PID=0
        (0x90, True),  # X=1 (extensions follow), S=1, PID=0
        (0xB0, True),  # X=1, N=1 (non-reference), S=1, PID=0
        (0x18, True),  # reserved bit set: receivers must ignore it (RFC 7741 4.2)
        (0x00, False),  # continuation packet
        (0x80, False),  # continuation with extensions
        (0x11, False),  # start of partition 1, not of the frame
        (0x17, False),  # start of partition 7
    ],
)
def test_vp8_payload_descriptor_frame_start(first_byte: int, expected: bool) -> None:
    assert starts_frame("VP8", bytes([first_byte, 0x80, 0x01, 0x02])) is expected


def test_vp8_empty_payload_does_not_start_a_frame() -> None:
    assert starts_frame("VP8", b"") is False


def test_h264_single_sps_starts_a_frame() -> None:
    assert starts_frame("H264", SPS) is True


def test_h264_access_unit_delimiter_starts_a_frame() -> None:
    assert starts_frame("H264", bytes([0x09, 0xF0])) is True


def test_h264_stap_a_led_by_sps_starts_a_frame() -> None:
    stap = bytes([0x78]) + struct.pack("!H", len(SPS)) + SPS + struct.pack("!H", len(PPS)) + PPS
    assert starts_frame("H264", stap) is True


def test_h264_stap_a_led_by_pps_does_not_start_a_frame() -> None:
    stap = bytes([0x78]) + struct.pack("!H", len(PPS)) + PPS
    assert starts_frame("H264", stap) is False


@pytest.mark.parametrize(
    "payload",
    [
        bytes([0x41, 0x9A]),  # single non-IDR slice
        bytes([0x65, 0x88]),  # single IDR slice (start unknowable without parsing the slice)
        bytes([0x68, 0xCE]),  # PPS
        bytes([0x7C, 0x85, 0x00]),  # FU-A, first fragment of an IDR
        bytes([0x5C, 0x41, 0x00]),  # FU-A, last fragment
        bytes([0x78, 0x00]),  # truncated STAP-A
        b"",
    ],
)
def test_h264_payloads_that_do_not_start_a_frame(payload: bytes) -> None:
    assert starts_frame("H264", payload) is False


def test_audio_payloads_always_start_a_frame() -> None:
    assert starts_frame("opus", b"\xfc") is True
    assert starts_frame("opus", b"") is False


@pytest.mark.parametrize(
    ("descriptor", "tid"),
    [
        (b"\x10", None),  # no extension
        (b"\x90\x80\x85\x01", None),  # a picture ID, no T
        (b"\x90\xa0\x85\x01\x80", 2),  # 15-bit picture ID, TID 2
        (b"\x90\xa0\x05\x40", 1),  # 7-bit picture ID, TID 1
        (b"\x90\xe0\x85\x01\x07\x00", 0),  # with TL0PICIDX, TID 0
        (b"\x90\x20\xc0", 3),  # T alone
        (b"\x90\xa0\x85", None),  # cut short
    ],
)
def test_vp8_temporal_id(descriptor: bytes, tid: int | None) -> None:
    assert vp8_temporal_id(descriptor + b"\x00" * 0) == tid
