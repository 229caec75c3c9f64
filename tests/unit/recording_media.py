"""Encoded test media for the recording tests: numbered VP8/H264 frames and an Opus tone."""

from __future__ import annotations

import fractions
import math
from dataclasses import dataclass

import av
import numpy as np

from gateway.media.frames import OutgoingFrame
from gateway.recording.clock import NTP_UNIT
from tests.support.media import numbered_frame

NTP_BASE_S = 3_970_000_000.0  # an NTP time in 2025


@dataclass
class Encoded:
    kind: str
    data: bytes
    timestamp: int  # RTP units since the first frame
    keyframe: bool
    seconds: float  # capture time since the start


def video(
    codec: str, count: int, width: int = 320, height: int = 240, fps: int = 30
) -> list[Encoded]:
    """``count`` frames whose frame N shows N, one keyframe at the start."""
    name = "libvpx" if codec == "VP8" else "libx264"
    context = av.CodecContext.create(name, "w")
    assert isinstance(context, av.VideoCodecContext)
    context.width, context.height = width, height
    context.pix_fmt = "yuv420p"
    context.time_base = fractions.Fraction(1, 90000)
    context.framerate = fractions.Fraction(fps, 1)
    context.gop_size = 10_000
    if codec == "VP8":
        context.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    else:
        context.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline"}
    out = []
    packets = []
    for number in range(count):
        frame = numbered_frame(number, width, height)
        frame.pts = number * 90000 // fps
        frame.time_base = context.time_base
        packets.extend(context.encode(frame))
    packets.extend(context.encode(None))
    for packet in packets:
        assert packet.pts is not None
        out.append(
            Encoded("video", bytes(packet), int(packet.pts), packet.is_keyframe, packet.pts / 90000)
        )
    return out


def tone(seconds: float, frequency: float = 440.0) -> list[Encoded]:
    """Opus in 20 ms packets, as WebRTC sends it."""
    context = av.CodecContext.create("libopus", "w")
    assert isinstance(context, av.AudioCodecContext)
    context.sample_rate = 48000
    context.layout = "mono"
    context.format = "s16"
    out = []
    for index in range(int(seconds * 50)):
        t = (np.arange(960) + index * 960) / 48000
        pcm = (np.sin(2 * math.pi * frequency * t) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = index * 960
        frame.time_base = fractions.Fraction(1, 48000)
        for packet in context.encode(frame):
            assert packet.pts is not None
            out.append(Encoded("audio", bytes(packet), int(packet.pts), True, packet.pts / 48000))
    return out


def outgoing(item: Encoded, arrival_s: float, rtp_origin: int = 0) -> OutgoingFrame:
    return OutgoingFrame(
        data=item.data,
        payloads=[],
        timestamp=item.timestamp + rtp_origin,
        keyframe=item.keyframe,
        size=len(item.data),
        ntp_time=int((NTP_BASE_S + arrival_s) * NTP_UNIT),
    )
