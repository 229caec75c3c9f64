"""Benchmark media: a synthetic 720p30 VP8 + Opus file, and the tracks that send it.

- ``ensure_input_file`` makes the pre-encoded input once (cached under bench/out/).
- ``FilePacketSource`` / ``PacketFileTrack`` replay that file as ``av.Packet``s, paced in
  real time, timestamps rebased on every loop (aiortc's MediaPlayer(decode=False) is not).
- ``LiveEncoder`` / ``LiveVideoTrack`` encode a synthetic 720p source live, once, for any
  number of peer connections, and answer keyframe requests (PLI/FIR).
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

OUT_DIR = Path(__file__).parent / "out"
WIDTH, HEIGHT, FPS = 1280, 720, 30
VIDEO_BITRATE = 1_500_000
KEYFRAME_INTERVAL_FRAMES = 75  # 2.5 s
INPUT_SECONDS = 10
VIDEO_CLOCK = 90000
AUDIO_RATE = 48000
BITS = 16


def frame_key(data: bytes) -> int:
    """Identifies one encoded frame by content, whatever RTP timestamps it travels with."""
    return (len(data) << 32) | zlib.crc32(data)


class SyntheticSource:
    """720p yuv420p frames with motion everywhere (scrolling texture, moving shapes)."""

    def __init__(self, width: int = WIDTH, height: int = HEIGHT, seed: int = 1) -> None:
        self.width, self.height = width, height
        rng = np.random.default_rng(seed)
        # A blocky random texture, twice as wide so it can scroll.
        coarse = rng.integers(40, 216, size=(height // 8 + 1, width // 4 + 1), dtype=np.uint8)
        self._texture = np.repeat(np.repeat(coarse, 8, axis=0), 8, axis=1)[:height, : 2 * width]
        self._cx = np.arange(width // 2) / 40
        self._cy = (np.arange(height // 2) / 30)[:, None]

    def frame(self, number: int) -> av.VideoFrame:
        w, h = self.width, self.height
        buffer = np.empty((h * 3 // 2, w), dtype=np.uint8)
        y = buffer[:h]
        shift = (number * 6) % w
        y[:] = self._texture[:, shift : shift + w]
        # A bright box bouncing around, and the frame number as a barcode on top.
        bx = int((math.sin(number / 23) * 0.5 + 0.5) * (w - 160))
        by = int((math.cos(number / 17) * 0.5 + 0.5) * (h - 160))
        y[by : by + 160, bx : bx + 160] = 235
        block = w // BITS
        for bit in range(BITS):
            y[0:block, bit * block : (bit + 1) * block] = (
                235 if number >> (BITS - 1 - bit) & 1 else 16
            )
        # Chroma: moving colour bands (horizontal in U, vertical in V).
        phase = number / 15
        u = buffer[h : h + h // 4].reshape(h // 2, w // 2)
        v = buffer[h + h // 4 :].reshape(h // 2, w // 2)
        u[:] = (128 + 60 * np.sin(self._cx + phase)).astype(np.uint8)
        v[:] = (128 + 60 * np.cos(self._cy - phase)).astype(np.uint8)
        return av.VideoFrame.from_ndarray(buffer, format="yuv420p")


def _vp8_encoder(bitrate: int, gop: int) -> av.VideoCodecContext:
    codec = av.CodecContext.create("libvpx", "w")
    assert isinstance(codec, av.VideoCodecContext)
    codec.width, codec.height = WIDTH, HEIGHT
    codec.pix_fmt = "yuv420p"
    codec.time_base = fractions.Fraction(1, FPS)
    codec.framerate = fractions.Fraction(FPS, 1)
    codec.bit_rate = bitrate
    codec.gop_size = gop
    codec.qmin, codec.qmax = 2, 56
    codec.thread_count = 2
    codec.options = {
        "deadline": "realtime",
        "cpu-used": "8",
        "lag-in-frames": "0",
        "bufsize": str(bitrate),
        "minrate": str(bitrate),
        "maxrate": str(bitrate),
        "undershoot-pct": "100",
        "overshoot-pct": "15",
        "static-thresh": "1",
    }
    return codec


def ensure_input_file(path: Path | None = None) -> Path:
    """The pre-encoded 720p30 VP8 ~1.5 Mbps + Opus WebM, made once."""
    path = path or OUT_DIR / f"input_{HEIGHT}p{FPS}_vp8_opus_{INPUT_SECONDS}s.webm"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.webm")
    source = SyntheticSource()
    with av.open(str(tmp), "w", format="webm") as container:
        video = container.add_stream("libvpx", rate=FPS)
        assert isinstance(video, av.VideoStream)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.bit_rate = VIDEO_BITRATE
        video.codec_context.gop_size = KEYFRAME_INTERVAL_FRAMES
        video.codec_context.qmin, video.codec_context.qmax = 2, 56
        video.codec_context.options = {
            "deadline": "realtime",
            "cpu-used": "4",
            "lag-in-frames": "0",
            "bufsize": str(VIDEO_BITRATE),
            "minrate": str(VIDEO_BITRATE),
            "maxrate": str(VIDEO_BITRATE),
            "keyint_min": str(KEYFRAME_INTERVAL_FRAMES),
        }
        audio = container.add_stream("libopus", rate=AUDIO_RATE)
        assert isinstance(audio, av.AudioStream)
        audio.bit_rate = 64000
        audio.layout = "stereo"
        for number in range(INPUT_SECONDS * FPS):
            frame = source.frame(number)
            frame.pts = number
            frame.time_base = fractions.Fraction(1, FPS)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        samples = 960
        for index in range(INPUT_SECONDS * AUDIO_RATE // samples):
            t = (np.arange(samples) + index * samples) / AUDIO_RATE
            tone = (np.sin(2 * math.pi * 440 * t) * 6000).astype(np.int16)
            pcm = np.stack([tone, tone]).reshape(1, -1, order="F")
            aframe = av.AudioFrame.from_ndarray(pcm, format="s16", layout="stereo")
            aframe.sample_rate = AUDIO_RATE
            aframe.pts = index * samples
            aframe.time_base = fractions.Fraction(1, AUDIO_RATE)
            container.mux(audio.encode(aframe))
        container.mux(audio.encode(None))
    tmp.rename(path)
    return path


@dataclass
class StoredPacket:
    data: bytes
    pts: int  # in the stream's time base
    keyframe: bool
    key: int  # frame_key(data)


@dataclass
class StoredStream:
    kind: str
    time_base: fractions.Fraction
    packets: list[StoredPacket]
    loop_duration: int  # in time_base units: one pass of the file

    @property
    def seconds(self) -> float:
        return float(self.loop_duration * self.time_base)


def read_file(path: Path) -> dict[str, StoredStream]:
    """Demuxes (no decode) every packet of the file into memory."""
    streams: dict[str, StoredStream] = {}
    with av.open(str(path)) as container:
        for stream in container.streams:
            if stream.type not in ("video", "audio"):
                continue
            assert stream.time_base is not None
            packets: list[StoredPacket] = []
            for packet in container.demux(stream):
                if packet.size == 0 or packet.pts is None:
                    continue
                data = bytes(packet)
                packets.append(StoredPacket(data, packet.pts, packet.is_keyframe, frame_key(data)))
            container.seek(0)
            packets.sort(key=lambda p: p.pts)
            base = packets[0].pts
            for p in packets:
                p.pts -= base
            step = packets[-1].pts - packets[-2].pts if len(packets) > 1 else 1
            streams[stream.type] = StoredStream(
                stream.type, stream.time_base, packets, packets[-1].pts + step
            )
    return streams


@dataclass
class SendLog:
    """What a track handed to aiortc: counts, and when each video frame left (by content)."""

    frames: int = 0
    keyframes: int = 0
    bytes: int = 0
    recording: bool = False
    sent: list[tuple[int, float]] = field(default_factory=list)  # (frame key, monotonic)

    def note(self, size: int, keyframe: bool, key: int | None) -> None:
        self.frames += 1
        self.bytes += size
        if keyframe:
            self.keyframes += 1
        if self.recording and key is not None:
            self.sent.append((key, time.monotonic()))


class PacketFileTrack(MediaStreamTrack):
    """Replays one stream of a pre-encoded file as av.Packets, in real time, forever.

    Timestamps grow across loops (pts + loop * duration), which aiortc's
    MediaPlayer(decode=False) does not do. All tracks of one file share ``clock_start``
    so audio and video stay together.
    """

    def __init__(self, stream: StoredStream, clock: list[float | None]) -> None:
        super().__init__()
        self.kind = stream.kind
        self._stream = stream
        self._clock = clock
        self._index = 0
        self._pass = 0
        self.log = SendLog()

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        start = self._clock[0]
        if start is None:
            start = self._clock[0] = time.monotonic()
        stream = self._stream
        stored = stream.packets[self._index]
        pts = stored.pts + self._pass * stream.loop_duration
        delay = start + float(pts * stream.time_base) - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        self._index += 1
        if self._index == len(stream.packets):
            self._index = 0
            self._pass += 1
        packet = av.Packet(stored.data)
        packet.pts = pts
        packet.time_base = stream.time_base
        self.log.note(
            len(stored.data), stored.keyframe, stored.key if self.kind == "video" else None
        )
        return packet


class LiveEncoder:
    """Encodes a synthetic 720p30 source once, live, and serves every track made from it.

    Keyframes only when asked (``request_keyframe``, wired to the senders' PLI/FIR) or
    every ``gop`` frames, like a WebRTC encoder. Encoding runs in a worker thread.
    """

    def __init__(self, bitrate: int = VIDEO_BITRATE, gop: int = 3000) -> None:
        self._codec = _vp8_encoder(bitrate, gop)
        self._source = SyntheticSource(seed=2)
        self._tracks: list[LiveVideoTrack] = []
        self._task: asyncio.Task[None] | None = None
        self._force_keyframe = True
        self.frames = 0
        self.keyframes = 0
        self.keyframe_requests = 0
        self.frames_skipped = 0
        self.encode_ms: list[float] = []
        self.request_times: list[float] = []  # keyframe requests (PLI/FIR) received
        self.keyframe_times: list[float] = []  # keyframes out of the encoder

    def track(self) -> LiveVideoTrack:
        track = LiveVideoTrack(self)
        self._tracks.append(track)
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        return track

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self.request_times.append(time.monotonic())
        self._force_keyframe = True

    def _encode(self, number: int, keyframe: bool) -> list[Any]:
        frame = self._source.frame(number)
        frame.pts = number
        frame.time_base = fractions.Fraction(1, FPS)
        if keyframe:
            frame.pict_type = av.video.frame.PictureType.I
        started = time.perf_counter()
        packets = list(self._codec.encode(frame))
        self.encode_ms.append((time.perf_counter() - started) * 1000)
        return packets

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start = time.monotonic()
        number = 0
        while True:
            delay = start + number / FPS - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1 / FPS:
                # Like a camera: frames not captured in time are skipped, not queued.
                skipped = int(-delay * FPS)
                self.frames_skipped += skipped
                number += skipped
            keyframe, self._force_keyframe = self._force_keyframe, False
            packets = await loop.run_in_executor(None, self._encode, number, keyframe)
            for packet in packets:
                data = bytes(packet)
                is_key = bool(packet.is_keyframe)
                self.frames += 1
                self.keyframes += is_key
                if is_key:
                    self.keyframe_times.append(time.monotonic())
                for track in self._tracks:
                    track.offer(data, number * (VIDEO_CLOCK // FPS), is_key)
            number += 1

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        for track in self._tracks:
            track.stop()


class LiveVideoTrack(MediaStreamTrack):
    """One peer connection's view of a LiveEncoder: the latest encoded frames, in order."""

    kind = "video"

    def __init__(self, encoder: LiveEncoder) -> None:
        super().__init__()
        self._encoder = encoder
        self._queue: asyncio.Queue[tuple[bytes, int, bool]] = asyncio.Queue(maxsize=30)
        self.log = SendLog()
        self._started = False

    def offer(self, data: bytes, pts: int, keyframe: bool) -> None:
        if not self._started:
            return  # aiortc reads once the connection is up; older frames are stale
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait((data, pts, keyframe))

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        if not self._started:
            # A WebRTC encoder starts a new stream with a keyframe.
            self._started = True
            self._encoder.request_keyframe()
        data, pts, keyframe = await self._queue.get()
        packet = av.Packet(data)
        packet.pts = pts
        packet.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.log.note(len(data), keyframe, frame_key(data))
        return packet
