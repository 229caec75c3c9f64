"""Synthetic media whose frames carry their frame number in the pixels."""

from __future__ import annotations

import asyncio
import fractions
import math
import time

import av
import numpy as np
from aiortc import MediaStreamTrack

BITS = 16
VIDEO_RATE = 90000
# Colour behind the barcode: clearly not grey, so chroma survives encoding.
CHROMA_U, CHROMA_V = 90, 200


def _check(number: int) -> int:
    """4 check bits over a 12-bit frame number: a misread block is caught, not trusted."""
    return (number + (number >> 4) + (number >> 8) + 5) & 0xF


def numbered_frame(number: int, width: int, height: int) -> av.VideoFrame:
    """A yuv420p frame: a row of black/white blocks spelling ``number`` (12 bits, mod 4096)
    and its check bits, colour below."""
    y = np.full((height, width), 110, dtype=np.uint8)
    block = width // BITS
    code = (number & 0xFFF) << 4 | _check(number & 0xFFF)
    for bit in range(BITS):
        if code >> (BITS - 1 - bit) & 1:
            y[0:block, bit * block : (bit + 1) * block] = 235
        else:
            y[0:block, bit * block : (bit + 1) * block] = 16
    # A moving bar so the encoder sees motion, as from a real camera.
    x = (number * 8) % max(width - 32, 1)
    y[block + 8 :, x : x + 32] = 200
    u = np.full((height // 2, width // 2), CHROMA_U, dtype=np.uint8)
    v = np.full((height // 2, width // 2), CHROMA_V, dtype=np.uint8)
    frame = av.VideoFrame.from_ndarray(
        np.concatenate([y, u.reshape(-1, width), v.reshape(-1, width)]), format="yuv420p"
    )
    return frame


def read_frame_number(frame: av.VideoFrame) -> int | None:
    """The frame number drawn by numbered_frame, or None when the blocks do not check
    (a picture too degraded by the encoder to read)."""
    plane = frame.to_ndarray(format="yuv420p")[: frame.height]
    block = frame.width // BITS
    code = 0
    for bit in range(BITS):
        centre = plane[
            block // 4 : 3 * block // 4, bit * block + block // 4 : bit * block + 3 * block // 4
        ]
        code = (code << 1) | int(centre.mean() > 128)
    number = code >> 4
    return number if code & 0xF == _check(number) else None


def mean_chroma(frame: av.VideoFrame) -> tuple[float, float]:
    planes = frame.to_ndarray(format="yuv420p")
    h, w = frame.height, frame.width
    u = planes[h : h + h // 4].reshape(h // 2, w // 2)
    v = planes[h + h // 4 :].reshape(h // 2, w // 2)
    return float(u.mean()), float(v.mean())


NOISE_BAND = 12  # the noise band's share of the picture height: 1/NOISE_BAND


class NumberedVideoTrack(MediaStreamTrack):
    """Live video at ``fps`` whose frame N shows ``first`` + N (mod 4096); encoded by
    aiortc (answers PLI). ``noise``: a band of fresh noise below the number in every
    frame, so that the encoder needs a camera's bitrate (the plain picture needs little)."""

    kind = "video"

    def __init__(
        self,
        width: int = 640,
        height: int = 360,
        fps: int = 30,
        first: int = 0,
        noise: bool = False,
    ) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self.first = first
        self._noise = np.random.default_rng(first) if noise else None
        self.count = 0
        self._start: float | None = None
        self.sent_at: dict[int, float] = {}

    async def recv(self) -> av.VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self.count / self.fps
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = numbered_frame(self.first + self.count, self.width, self.height)
        if self._noise is not None:
            planes = frame.to_ndarray()
            top = self.width // BITS + 8  # below the number's blocks
            band = slice(top, top + self.height // NOISE_BAND)
            planes[band] = self._noise.integers(100, 156, planes[band].shape, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        frame.pts = int(self.count * VIDEO_RATE / self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_RATE)
        self.sent_at[self.count] = time.monotonic()
        self.count += 1
        return frame


class ToneTrack(MediaStreamTrack):
    """A 440 Hz sine at 48 kHz in 20 ms frames."""

    kind = "audio"

    def __init__(self, frequency: float = 440.0) -> None:
        super().__init__()
        self.frequency = frequency
        self._samples = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        rate, size = 48000, 960
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self._samples / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t = (np.arange(size) + self._samples) / rate
        pcm = (np.sin(2 * math.pi * self.frequency * t) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        frame.pts = self._samples
        frame.time_base = fractions.Fraction(1, rate)
        self._samples += size
        return frame
