"""Encoded frames and the codec facts the packet path needs (keyframe, frame start)."""

from __future__ import annotations

from dataclasses import dataclass

from .h264 import h264_resolution

# H.264 NAL unit types (RFC 6184 / ITU-T H.264 table 7-1).
_NAL_IDR = 5
_NAL_SPS = 7
_NAL_AUD = 9
_NAL_STAP_A = 24
_NAL_FU_A = 28
VIDEO_CLOCK_RATE = 90000
MAX_CAPTURE_GAP_S = 1.0


@dataclass(slots=True)
class EncodedFrame:
    """One complete encoded frame as the publisher sent it, reassembled from RTP."""

    data: bytes
    timestamp: int  # RTP timestamp (32-bit, as received)
    keyframe: bool
    # True when frames were lost before this one: a video decoder needs a keyframe now.
    discontinuity: bool
    arrival_ms: int
    ssrc: int
    # When it was captured, in seconds on a clock every layer of its track shares (the
    # sender's, from its RTCP sender reports); None before a report came.
    captured: float | None = None
    # Its VP8 temporal layer (TID), where the sender sends temporal layers (Chromium's
    # simulcast, L1T3): a frame of a higher one may be left out for a lower frame rate.
    temporal_id: int | None = None


@dataclass(slots=True)
class OutgoingFrame:
    """A frame ready to send: RTP payloads built once, shared by every viewer."""

    data: bytes  # the encoded frame itself (for sinks that remux or decode)
    payloads: list[bytes]
    timestamp: int  # in clock-rate units since the track's first frame (unwrapped)
    keyframe: bool
    size: int  # encoded bytes
    ntp_time: int  # wall clock at forwarding, for RTCP sender reports
    # When it was captured, in seconds on a clock every layer of its track shares (made
    # layers and pipelines: the track's own timeline); None where unknown. A viewer
    # switched between layers continues its timestamps by it.
    captured: float | None = None
    temporal_id: int | None = None  # VP8 temporal layer, as EncodedFrame's


def capture_ticks(before: float | None, after: float | None) -> int | None:
    """Video clock ticks (90 kHz) from a frame captured at ``before`` to one captured at
    ``after`` (seconds, one clock), at least one; None when either is unknown or they are
    a second or more apart (not one clock, or a stall: not to be trusted)."""
    if before is None or after is None or abs(after - before) >= MAX_CAPTURE_GAP_S:
        return None
    return max(1, round((after - before) * VIDEO_CLOCK_RATE))


def is_keyframe(codec: str, data: bytes) -> bool:
    """Whether a depayloaded frame can be decoded on its own."""
    if codec == "VP8":
        # VP8 frame tag (RFC 6386 9.1): bit 0 of the first byte is 0 for key frames.
        return len(data) > 0 and (data[0] & 0x01) == 0
    if codec == "H264":
        return _NAL_IDR in _annexb_nal_types(data)
    # Audio codecs have no inter-frame dependency we care about.
    return True


def vp8_picture_id(payload: bytes) -> int | None:
    """The 15-bit picture ID of a VP8 RTP payload descriptor (RFC 7741 4.2), if it has one
    in that form (aiortc's packetizer writes it so); else None."""
    if len(payload) < 4 or not payload[0] & 0x80 or not payload[1] & 0x80 or not payload[2] & 0x80:
        return None
    return ((payload[2] & 0x7F) << 8) | payload[3]


def vp8_temporal_id(payload: bytes) -> int | None:
    """The temporal layer index (TID) of a VP8 RTP payload descriptor (RFC 7741 4.2), if
    it carries one (the T bit); else None."""
    if len(payload) < 2 or not payload[0] & 0x80:
        return None
    flags = payload[1]
    if not flags & 0x20:  # T: no TID
        return None
    offset = 2
    if flags & 0x80:  # I: a picture ID of one or two bytes
        if len(payload) <= offset:
            return None
        offset += 2 if payload[offset] & 0x80 else 1
    if flags & 0x40:  # L: TL0PICIDX
        offset += 1
    if len(payload) <= offset:
        return None
    return payload[offset] >> 6


def with_vp8_picture_id(payload: bytes, picture_id: int) -> bytes:
    """``payload`` (one vp8_picture_id reads) with its picture ID replaced."""
    return payload[:2] + bytes((0x80 | (picture_id >> 8) & 0x7F, picture_id & 0xFF)) + payload[4:]


def video_size(codec: str, data: bytes) -> tuple[int, int] | None:
    """Width and height from a keyframe's own header (VP8) or SPS (H264, Annex B)."""
    if codec == "VP8":
        return vp8_resolution(data)
    if codec == "H264":
        return h264_resolution(data)
    return None


def vp8_resolution(data: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 keyframe header (RFC 6386 9.1), else None."""
    if len(data) < 10 or data[0] & 0x01 or data[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(data[6:8], "little") & 0x3FFF
    height = int.from_bytes(data[8:10], "little") & 0x3FFF
    return width, height


def starts_frame(codec: str, payload: bytes) -> bool:
    """Whether an RTP payload (still carrying its payload header) begins a frame.

    Only used to find a first frame boundary when no earlier marker bit is known
    (start of stream, or after giving up on lost packets).
    """
    if not payload:
        return False
    if codec == "VP8":
        # VP8 payload descriptor (RFC 7741 4.2), X|R|N|S|R|PID(3 bits): S bit set and
        # partition index 0. The reserved bit 0x08 must be ignored.
        return bool(payload[0] & 0x10) and (payload[0] & 0x07) == 0
    if codec == "H264":
        nal_type = payload[0] & 0x1F
        if nal_type in (_NAL_SPS, _NAL_AUD):
            return True
        if nal_type == _NAL_STAP_A and len(payload) > 3:
            return (payload[3] & 0x1F) in (_NAL_SPS, _NAL_AUD)
        return False
    return True


def _annexb_nal_types(data: bytes) -> set[int]:
    types: set[int] = set()
    pos = data.find(b"\x00\x00\x01")
    while pos != -1 and pos + 3 < len(data):
        types.add(data[pos + 3] & 0x1F)
        pos = data.find(b"\x00\x00\x01", pos + 3)
    return types
