"""Encodes a rendition's processed frames once (VP8, H.264 or Opus) for all of its viewers."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av
from av.audio.resampler import AudioResampler

# FFmpeg encoder names per codec, as negotiated with the rendition's viewers.
ENCODERS = {"VP8": "libvpx", "H264": "libx264", "opus": "libopus"}
VIDEO_TIME_BASE = Fraction(1, 90000)
OPUS_RATE = 48000
OPUS_FRAME = 960  # 20 ms, what WebRTC clients send and expect
REFERENCE_AREA = 1280 * 720
MIN_VIDEO_BITRATE = 150_000


def scaled_bitrate(bitrate: int, width: int, height: int) -> int:
    """``bitrate`` is for 1280x720 and larger; a smaller picture (a ``resize`` stage, a small
    camera) gets a share in proportion to its area, so it is not sent with bits it cannot use."""
    share = min(1.0, width * height / REFERENCE_AREA)
    return max(MIN_VIDEO_BITRATE, min(bitrate, int(bitrate * share)))


@dataclass(frozen=True, slots=True)
class EncodedPacket:
    data: bytes
    keyframe: bool
    offset: int  # clock-rate units after the input frame's timestamp (audio buffering)


class VideoEncoder:
    """One libvpx or libx264 context tuned for real time; reopened when the size changes.

    Rate control is constant bitrate (``bitrate`` bps at 720p and above, scaled down with the
    picture's area below that: ``scaled_bitrate``) with no lookahead, so a frame is
    out as soon as it is in (the latency budget is a frame, not a GOP). Keyframes come
    when asked (a viewer joined or lost packets) and at least every ``gop`` frames.
    """

    def __init__(
        self, codec: str, bitrate: int, threads: int, gop: int, exact: bool = False
    ) -> None:
        if codec not in ("VP8", "H264"):
            raise ValueError(f"no video encoder for {codec!r}")
        self.codec = codec
        self.bitrate = bitrate
        self.exact = exact  # a made layer's rung: its own bitrate, not scaled by area
        self.threads = threads
        self.gop = gop
        self._context: av.VideoCodecContext | None = None
        self._last_pts = -1
        self.opens = 0
        self.size: tuple[int, int] | None = None

    def _open(self, width: int, height: int) -> av.VideoCodecContext:
        context = av.CodecContext.create(ENCODERS[self.codec], "w")
        assert isinstance(context, av.VideoCodecContext)
        context.width = width
        context.height = height
        context.pix_fmt = "yuv420p"
        context.time_base = VIDEO_TIME_BASE
        context.framerate = Fraction(30, 1)
        bitrate = self.bitrate if self.exact else scaled_bitrate(self.bitrate, width, height)
        context.bit_rate = bitrate
        context.gop_size = self.gop
        context.thread_count = self.threads
        rate = str(bitrate)
        if self.codec == "VP8":
            context.qmin = 2
            context.qmax = 56
            context.options = {
                "deadline": "realtime",
                "cpu-used": "8",  # libvpx's fastest real-time speed (it scales -16..16)
                "lag-in-frames": "0",
                "bufsize": rate,  # a one-second rate-control buffer
                "minrate": rate,  # minrate = maxrate = bit_rate: CBR
                "maxrate": rate,
                "undershoot-pct": "100",
                "overshoot-pct": "15",
                "static-thresh": "1",
                "partitions": "0",
            }
        else:
            context.profile = "Baseline"  # what every WebRTC H.264 decoder takes
            context.options = {
                "preset": "veryfast",
                "tune": "zerolatency",
                "level": "31",
                "forced-idr": "1",  # a requested keyframe must be an IDR a new viewer can start at
                "bufsize": rate,
                "maxrate": rate,
            }
        self.opens += 1
        self.size = (width, height)
        self._last_pts = -1
        return context

    def encode(self, frame: av.VideoFrame, timestamp: int, keyframe: bool) -> list[EncodedPacket]:
        if frame.format.name != "yuv420p":
            frame = frame.reformat(format="yuv420p")
        if self._context is None or self.size != (frame.width, frame.height):
            # A processor changed the size (resize, rotate): a new stream starts at a keyframe.
            self._context = self._open(frame.width, frame.height)
            keyframe = True
        # Encoders need strictly increasing timestamps; the publisher's can repeat.
        pts = max(timestamp, self._last_pts + 1)
        self._last_pts = pts
        frame.pts = pts
        frame.time_base = VIDEO_TIME_BASE
        frame.pict_type = (
            av.video.frame.PictureType.I if keyframe else av.video.frame.PictureType.NONE
        )
        return [
            EncodedPacket(bytes(packet), bool(packet.is_keyframe), 0)
            for packet in self._context.encode(frame)
        ]


class AudioEncoder:
    """libopus at 48 kHz stereo in 20 ms frames; a resampler re-chunks whatever comes in."""

    def __init__(self, bitrate: int) -> None:
        context = av.CodecContext.create(ENCODERS["opus"], "w")
        assert isinstance(context, av.AudioCodecContext)
        context.sample_rate = OPUS_RATE
        context.layout = "stereo"
        context.format = "s16"
        context.bit_rate = bitrate
        context.time_base = Fraction(1, OPUS_RATE)
        context.options = {"application": "voip"}
        self._context = context
        self._resampler = AudioResampler(
            format="s16", layout="stereo", rate=OPUS_RATE, frame_size=OPUS_FRAME
        )
        self.opens = 1
        self.size = None

    def encode(self, frame: av.AudioFrame, timestamp: int, keyframe: bool) -> list[EncodedPacket]:
        frame.pts = None
        packets: list[EncodedPacket] = []
        for chunk in self._resampler.resample(frame):
            for packet in self._context.encode(chunk):
                packets.append(EncodedPacket(bytes(packet), True, len(packets) * OPUS_FRAME))
        return packets


def make_encoder(
    kind: str, codec: str, bitrate: int, threads: int, gop: int, exact: bool = False
) -> VideoEncoder | AudioEncoder:
    if kind == "audio":
        return AudioEncoder(bitrate)
    return VideoEncoder(codec, bitrate, threads, gop, exact)
