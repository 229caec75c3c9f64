"""Builders shared by the unit tests: RTP packets as a real sender makes them, test media."""

from __future__ import annotations

import fractions
import struct
from collections.abc import Iterable

import av
import numpy as np
from aiortc.codecs import depayload
from aiortc.codecs.vpx import VpxPayloadDescriptor
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from gateway.media.assembler import FrameAssembler
from gateway.media.frames import EncodedFrame

CODECS = {
    "VP8": RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96),
    "H264": RTCRtpCodecParameters(
        mimeType="video/H264",
        clockRate=90000,
        payloadType=97,
        parameters={"packetization-mode": "1", "profile-level-id": "42e01f"},
    ),
    "opus": RTCRtpCodecParameters(
        mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111
    ),
}
SSRC = 0x1234ABCD


def rtp(seq: int, timestamp: int, payload: bytes, marker: bool, codec: str = "VP8") -> RtpPacket:
    """An RTP packet as it comes off the wire (serialized and parsed again)."""
    packet = RtpPacket(
        payload_type=CODECS[codec].payloadType,
        marker=int(marker),
        sequence_number=seq & 0xFFFF,
        timestamp=timestamp & 0xFFFFFFFF,
        ssrc=SSRC,
        payload=payload,
    )
    return RtpPacket.parse(packet.serialize())


def feed(
    assembler: FrameAssembler, packets: Iterable[RtpPacket], arrival_ms: int = 0
) -> list[EncodedFrame]:
    """Add packets as aiortc's receiver would (payload depayloaded into data)."""
    frames: list[EncodedFrame] = []
    codec = CODECS[assembler.codec]
    for packet in packets:
        # aiortc leaves data empty for a packet without payload (padding only).
        data = depayload(codec, packet.payload) if packet.payload else b""
        frames.extend(assembler.add(packet, data, arrival_ms))
    return frames


# --- synthetic codec bitstreams -------------------------------------------------------------


def vp8_frame(number: int, keyframe: bool, size: int = 40) -> bytes:
    """Bytes shaped like a VP8 frame: a frame tag, a keyframe header, then a numbered body."""
    if keyframe:
        # Frame tag with bit 0 clear (key frame), start code, 320x240.
        header = bytes([0x10, 0x02, 0x00]) + b"\x9d\x01\x2a" + struct.pack("<HH", 320, 240)
    else:
        header = bytes([0x11, 0x02, 0x00])
    body = bytes((number + i) % 256 for i in range(size))
    return header + body


def vp8_payloads(frame: bytes, count: int, picture_id: int = 0) -> list[bytes]:
    """Split a VP8 frame into ``count`` RTP payloads with RFC 7741 descriptors."""
    bounds = [i * len(frame) // count for i in range(count + 1)]
    payloads = []
    for i in range(count):
        descriptor = VpxPayloadDescriptor(
            partition_start=int(i == 0), partition_id=0, picture_id=picture_id
        )
        payloads.append(bytes(descriptor) + frame[bounds[i] : bounds[i + 1]])
    assert all(len(p) > 4 for p in payloads)
    return payloads


SPS = bytes([0x67, 0x42, 0xC0, 0x1F, 0xDA, 0x01, 0x40, 0x16])
PPS = bytes([0x68, 0xCE, 0x3C, 0x80])


def h264_payloads(number: int, keyframe: bool, count: int) -> list[bytes]:
    """RFC 6184 payloads of one access unit: [STAP-A(SPS, PPS)] + one slice NAL in FU-As.

    With count == 1 (delta only) the slice is sent as a single NAL unit packet.
    """
    nal_header = 0x65 if keyframe else 0x41  # IDR slice / non-IDR slice
    body = bytes(0x10 + (number + i) % 200 for i in range(max(60, 8 * count)))  # no 00 00 0x
    payloads: list[bytes] = []
    assert count >= (2 if keyframe else 1)
    if keyframe:
        stap = bytes([0x78])
        for nal in (SPS, PPS):
            stap += struct.pack("!H", len(nal)) + nal
        payloads.append(stap)
        count -= 1
    if count == 1:
        payloads.append(bytes([nal_header]) + body)
        return payloads
    bounds = [i * len(body) // count for i in range(count + 1)]
    indicator = (nal_header & 0xE0) | 28
    for i in range(count):
        fu_header = nal_header & 0x1F
        if i == 0:
            fu_header |= 0x80
        if i == count - 1:
            fu_header |= 0x40
        payloads.append(bytes([indicator, fu_header]) + body[bounds[i] : bounds[i + 1]])
    return payloads


class VideoSender:
    """Numbers packets and frames as an RTP sender does (seq and timestamp wrap)."""

    def __init__(self, codec: str = "VP8", seq: int = 1000, timestamp: int = 90000) -> None:
        self.codec = codec
        self.seq = seq
        self.timestamp = timestamp
        self.number = 0

    def frame(
        self, packets: int = 1, keyframe: bool = False, marker: bool = True
    ) -> list[RtpPacket]:
        if self.codec == "VP8":
            frame = vp8_frame(self.number, keyframe, size=max(40, 8 * packets))
            payloads = vp8_payloads(frame, packets, self.number)
        else:
            payloads = h264_payloads(self.number, keyframe, packets)
        assert len(payloads) == packets
        out = [
            rtp(self.seq + i, self.timestamp, payload, marker and i == packets - 1, self.codec)
            for i, payload in enumerate(payloads)
        ]
        self.seq = (self.seq + packets) & 0xFFFF
        self.timestamp += 3000
        self.number += 1
        return out


def expected_data(codec: str, packets: list[RtpPacket]) -> bytes:
    return b"".join(depayload(CODECS[codec], p.payload) for p in packets)


# --- pictures that carry their number -------------------------------------------------------

BITS = 8


def numbered_picture(number: int, width: int = 320, height: int = 240) -> av.VideoFrame:
    """A yuv420p picture whose top row of blocks spells ``number`` in binary."""
    y = np.full((height, width), 100, dtype=np.uint8)
    block = width // BITS
    for bit in range(BITS):
        on = number >> (BITS - 1 - bit) & 1
        y[0:block, bit * block : (bit + 1) * block] = 235 if on else 16
    # Texture, so that a keyframe spans several RTP packets, and motion, so deltas carry data.
    y[block + 4 :] = _texture(height - block - 4, width)
    x = (number * 6) % (width - 24)
    y[block + 4 :, x : x + 24] = 220
    chroma = np.full((height // 2, width), 128, dtype=np.uint8)
    frame = av.VideoFrame.from_ndarray(np.concatenate([y, chroma]), format="yuv420p")
    frame.pts = number * 3000
    frame.time_base = fractions.Fraction(1, 90000)
    return frame


def _texture(height: int, width: int) -> np.ndarray:  # type: ignore[type-arg]
    return np.random.default_rng(7).integers(40, 200, (height, width), dtype=np.uint8)


def picture_number(frame: av.VideoFrame) -> int:
    luma = frame.to_ndarray(format="yuv420p")[: frame.height]
    block = frame.width // BITS
    number = 0
    for bit in range(BITS):
        centre = luma[
            block // 4 : 3 * block // 4, bit * block + block // 4 : (bit + 1) * block - block // 4
        ]
        number = (number << 1) | int(centre.mean() > 128)
    return number
