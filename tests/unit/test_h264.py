"""The picture size read from real H.264 keyframes' SPS (aiortc's encoder, libx264)."""

from __future__ import annotations

import fractions

import av
import numpy as np
import pytest
from aiortc.codecs import depayload, get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from gateway.media.h264 import _Bits, _unescape, h264_resolution

H264 = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=102)


def keyframe(width: int, height: int) -> bytes:
    encoder = get_encoder(H264)
    frame = av.VideoFrame.from_ndarray(np.zeros((height, width, 3), np.uint8), format="rgb24")
    frame.pts, frame.time_base = 0, fractions.Fraction(1, 90000)
    packets, _ = encoder.encode(frame, force_keyframe=True)
    # Annex B again, as the assembler depayloads it.
    return b"".join(depayload(H264, p) for p in packets)


@pytest.mark.parametrize("size", [(320, 240), (640, 360), (1280, 720), (160, 90)])
def test_the_size_of_real_keyframes(size: tuple[int, int]) -> None:
    assert h264_resolution(keyframe(*size)) == size


def test_no_sps_no_size() -> None:
    assert h264_resolution(b"\x00\x00\x00\x01\x41\x9a\x00") is None  # a delta slice only
    assert h264_resolution(b"") is None
    assert h264_resolution(b"\x00\x00\x01\x67") is None  # an SPS cut short


def test_emulation_prevention_and_exp_golomb() -> None:
    assert _unescape(b"\x00\x00\x03\x01\x00\x00\x03") == b"\x00\x00\x01\x00\x00"
    bits = _Bits(bytes([0b10100110, 0b01000000]))  # ue: 0, 1, 2; se: 1 (ue 1), -1 (ue 2)
    assert [bits.ue(), bits.ue(), bits.ue()] == [0, 1, 2]
    bits = _Bits(bytes([0b01001100]))
    assert [bits.se(), bits.se()] == [1, -1]
