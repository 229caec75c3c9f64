"""Decodes one track's encoded frames (VP8, H.264, Opus) with PyAV, in a rendition's worker."""

from __future__ import annotations

from fractions import Fraction

import av

# FFmpeg decoder names per negotiated codec (the same ones aiortc uses).
DECODERS = {"VP8": "libvpx", "H264": "h264", "opus": "libopus"}
CLOCK_RATES = {"VP8": 90000, "H264": 90000, "opus": 48000}


class DecodeError(Exception):
    """A frame could not be decoded: the decoder needs a keyframe to start again."""


class Decoder:
    """A codec context for one track; ``reset`` after lost frames forgets its references."""

    def __init__(self, codec: str) -> None:
        if codec not in DECODERS:
            raise ValueError(f"no decoder for {codec!r}")
        self.codec = codec
        self.time_base = Fraction(1, CLOCK_RATES[codec])
        self._context = self._open()
        self.opens = 1

    def _open(self) -> av.VideoCodecContext | av.AudioCodecContext:
        context = av.CodecContext.create(DECODERS[self.codec], "r")
        assert isinstance(context, av.VideoCodecContext | av.AudioCodecContext)
        # One thread: FFmpeg's default adds a thread per decoder (and frame threading a
        # frame of delay) for a 720p decode of ~2 ms that the worker does in line.
        context.thread_count = 1
        if isinstance(context, av.AudioCodecContext):
            # What WebRTC's Opus always is on the wire (RFC 7587: 48 kHz, stereo signalled).
            context.sample_rate = 48000
            context.layout = "stereo"
            context.format = "s16"
        return context

    def decode(self, data: bytes, timestamp: int) -> list[av.VideoFrame | av.AudioFrame]:
        packet = av.Packet(data)
        packet.pts = timestamp
        packet.time_base = self.time_base
        try:
            # PyAV releases the GIL inside the codec call: other threads and the loop run.
            return list(self._context.decode(packet))
        except (av.FFmpegError, ValueError) as error:
            raise DecodeError(f"{type(error).__name__}: {error}") from error

    def reset(self) -> None:
        self._context = self._open()
        self.opens += 1
