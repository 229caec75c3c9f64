"""A rendition's decoder and encoders on real frames: sizes, keyframes on demand, Opus."""

from __future__ import annotations

import fractions

import av
import numpy as np
import pytest

from gateway.processing.decoder import DecodeError, Decoder
from gateway.processing.encoder import AudioEncoder, VideoEncoder, scaled_bitrate
from gateway.processing.renditions import Renditions
from tests.support.media import mean_chroma, numbered_frame, read_frame_number


@pytest.mark.parametrize("codec", ["VP8", "H264"])
def test_encode_then_decode_keeps_the_picture(codec: str) -> None:
    encoder = VideoEncoder(codec, 1_000_000, 1, 300)
    decoder = Decoder(codec)
    numbers: list[int | None] = []
    keyframes: list[bool] = []
    for n in range(10):
        # A keyframe when asked (frame 6), besides the first.
        packets = encoder.encode(numbered_frame(n, 320, 180), n * 3000, keyframe=(n == 6))
        assert len(packets) == 1
        keyframes.append(packets[0].keyframe)
        for frame in decoder.decode(packets[0].data, n * 3000):
            assert (frame.width, frame.height) == (320, 180)
            numbers.append(read_frame_number(frame))
            u, v = mean_chroma(frame)
            assert abs(u - 90) < 10 and abs(v - 200) < 10  # a small picture gets few bits
    assert keyframes[0] and keyframes[6] and not any(keyframes[1:6])
    assert numbers == list(range(10))
    assert encoder.opens == 1


def test_a_size_change_reopens_the_encoder_with_a_keyframe() -> None:
    encoder = VideoEncoder("VP8", 500_000, 1, 300)
    encoder.encode(numbered_frame(0, 320, 180), 0, keyframe=False)
    assert not encoder.encode(numbered_frame(1, 320, 180), 3000, keyframe=False)[0].keyframe
    (packet,) = encoder.encode(numbered_frame(2, 160, 96), 6000, keyframe=False)
    assert packet.keyframe and encoder.opens == 2 and encoder.size == (160, 96)


def test_repeated_timestamps_still_encode() -> None:
    encoder = VideoEncoder("VP8", 500_000, 1, 300)
    for n in range(3):
        assert encoder.encode(numbered_frame(n, 160, 96), 0, keyframe=False)


def test_garbage_raises_decode_error_and_reset_recovers() -> None:
    decoder = Decoder("H264")
    with pytest.raises(DecodeError):
        for _ in range(3):
            decoder.decode(b"\x00\x00\x01\x65" + bytes(50), 0)
    decoder.reset()
    encoder = VideoEncoder("H264", 500_000, 1, 300)
    (packet,) = encoder.encode(numbered_frame(7, 160, 96), 0, keyframe=True)
    (frame,) = decoder.decode(packet.data, 0)
    assert read_frame_number(frame) == 7 and decoder.opens == 2


def test_opus_round_trip_keeps_the_level() -> None:
    encoder = AudioEncoder(64000)
    decoder = Decoder("opus")
    peaks: list[int] = []
    for n in range(20):
        t = (np.arange(960) + n * 960) / 48000
        pcm = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.repeat(pcm, 2).reshape(1, -1), "s16", "stereo")
        frame.sample_rate = 48000
        frame.time_base = fractions.Fraction(1, 48000)
        for packet in encoder.encode(frame, n * 960, keyframe=False):
            for decoded in decoder.decode(packet.data, n * 960):
                peaks.append(int(np.abs(decoded.to_ndarray()).max()))
    assert len(peaks) >= 15
    assert 6000 < max(peaks[5:]) < 10000


@pytest.mark.parametrize(
    ("kind", "source", "offered", "expected"),
    [
        ("video", "VP8", ["VP8", "H264"], "VP8"),
        ("video", "H264", ["VP8", "H264"], "H264"),
        ("video", "H264", ["VP8"], "VP8"),
        ("video", "VP8", ["AV1"], None),
        ("audio", "opus", ["opus"], "opus"),
    ],
)
def test_codec_for_prefers_the_tracks_own(
    kind: str, source: str, offered: list[str], expected: str | None
) -> None:
    assert Renditions.codec_for(kind, source, offered) == expected


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1280, 720), 1_500_000),
        ((1920, 1080), 1_500_000),
        ((640, 360), 375_000),
        ((160, 96), 150_000),
    ],
)
def test_bitrate_scales_down_with_the_picture(size: tuple[int, int], expected: int) -> None:
    assert scaled_bitrate(1_500_000, *size) == expected
