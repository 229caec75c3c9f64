"""Reading a recording back: frame numbers, sizes, timestamps and the audio tone."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np

from tests.support.media import read_frame_number


@dataclass
class Playback:
    numbers: list[int] = field(default_factory=list)
    video_times: list[float] = field(default_factory=list)
    audio_times: list[float] = field(default_factory=list)
    sizes: set[tuple[int, int]] = field(default_factory=set)
    audio: list[np.ndarray] = field(default_factory=list)  # type: ignore[type-arg]
    codecs: set[str] = field(default_factory=set)
    duration_s: float | None = None

    @property
    def tone_hz(self) -> float:
        """The strongest frequency of the decoded audio."""
        samples = np.concatenate(self.audio).astype(np.float64)
        spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
        return float(np.argmax(spectrum) * 48000 / len(samples))


def play(path: Path) -> Playback:
    """Decodes every packet of a recording, in file order."""
    got = Playback()
    with av.open(str(path)) as container:
        got.codecs = {s.codec_context.name for s in container.streams}
        if container.duration is not None:
            got.duration_s = container.duration / 1e6
        for packet in container.demux():
            if packet.pts is None:
                continue
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    number = read_frame_number(frame)
                    assert number is not None, "a recorded frame's number does not check"
                    got.numbers.append(number)
                    got.video_times.append(float(frame.time or 0))
                    got.sizes.add((frame.width, frame.height))
                elif isinstance(frame, av.AudioFrame):
                    got.audio_times.append(float(frame.time or 0))
                    # Opus decodes to planar float: the first channel.
                    got.audio.append(frame.to_ndarray()[0])
    return got


def assert_plays_in_order(got: Playback, width: int, height: int, fps: int = 30) -> None:
    assert got.sizes == {(width, height)}
    assert len(got.numbers) > 0
    assert got.numbers == sorted(got.numbers), "frames out of order"
    assert len(set(got.numbers)) == len(got.numbers), "a frame twice"
    # Loopback loses nothing: at most a couple of frames may be missing.
    span = got.numbers[-1] - got.numbers[0] + 1
    assert len(got.numbers) >= span - 3, f"frames missing: {span - len(got.numbers)}"
    assert got.video_times == sorted(got.video_times)
    assert got.audio_times == sorted(got.audio_times)
    # Timestamps follow the publisher's frame clock: frame N is N/fps after frame 0.
    for number, when in zip(got.numbers, got.video_times, strict=True):
        expected = got.video_times[0] + (number - got.numbers[0]) / fps
        assert abs(when - expected) < 0.1, f"frame {number} at {when:.3f}, expected {expected:.3f}"


async def live_recording(http: aiohttp.ClientSession, base: str, room: str) -> dict[str, Any]:
    """The one recording running in ``room``, as /api/stats shows it."""
    async with http.get(f"{base}/api/stats") as response:
        stats = await response.json()
    (found,) = [r for r in stats["rooms"] if r["room"] == room]
    (recording,) = found["recording"]["recordings"]
    result: dict[str, Any] = recording
    return result
