"""A Recorder stops itself at its size, duration and free-space limits, its file playable."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import av
import pytest

from gateway.recording.recorder import Recorder
from gateway.recording.store import RecordingStore

from .recording_media import Encoded, outgoing, tone, video
from .test_recording_recorder import Requests, interleave, read_back


class Ends:
    """The Recorder's end callbacks."""

    def __init__(self) -> None:
        self.recorders: list[Recorder] = []

    def __call__(self, recorder: Recorder) -> None:
        self.recorders.append(recorder)


def make_recorder(tmp_path: Path, codec: str, **limits: int | float) -> tuple[Recorder, Path, Ends]:
    ends = Ends()
    store = RecordingStore(tmp_path)
    path = store.create("room", "abc123", 1_700_000_000.0, "webm" if codec == "VP8" else "mkv")
    recorder = Recorder(
        path,
        store,
        {"room": "room"},
        queue_frames=1000,
        cluster_ms=500,
        fsync_interval_s=0.5,
        on_end=ends,
        **limits,  # type: ignore[arg-type]
    )
    return recorder, path, ends


async def push_until_stopped(recorder: Recorder, ends: Ends, media: list[Encoded]) -> None:
    """Feeds media as a publisher would, without ever calling stop: the limit must."""
    requests = Requests()
    sinks = {
        "video": recorder.add_track(
            "video", "VP8" if recorder.path.suffix == ".webm" else "H264", requests
        ),
        "audio": recorder.add_track("audio", "opus", requests),
    }
    recorder.start()
    for item in media:
        sinks[item.kind].push(outgoing(item, item.seconds))
    await asyncio.wait_for(recorder.wait(), timeout=20)
    assert ends.recorders == [recorder]
    # Stopped: further frames are refused at once, on the event loop.
    assert not recorder.accepting


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_a_file_stops_within_max_file_bytes_and_plays(tmp_path: Path, codec: str) -> None:
    limit = 60_000
    frames = video(codec, 300)  # about 150 kB with the audio: the limit cuts it
    recorder, path, ends = make_recorder(tmp_path, codec, max_file_bytes=limit)
    await push_until_stopped(recorder, ends, interleave(frames, tone(10.0)))

    assert recorder.reason == "size-limit"
    assert recorder.state == "complete" and recorder.error is None
    size = path.stat().st_size
    assert 0.9 * limit <= size <= limit
    got = read_back(path)
    numbers = got["numbers"]
    assert isinstance(numbers, list)
    # The first frames, in order, none missing: the cut is at the end only.
    assert 100 <= len(numbers) < 300 and numbers == list(range(len(numbers)))
    with av.open(str(path)) as container:
        assert container.duration is not None  # finalized: the trailer is there
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["state"] == "complete" and sidecar["reason"] == "size-limit"
    assert sidecar["size"] == size


async def test_a_file_stops_at_max_duration_s_and_plays(tmp_path: Path) -> None:
    recorder, path, ends = make_recorder(tmp_path, "VP8", max_duration_s=1.0)
    await push_until_stopped(recorder, ends, interleave(video("VP8", 90), tone(3.0)))

    assert recorder.reason == "duration-limit" and recorder.state == "complete"
    got = read_back(path)
    numbers = got["numbers"]
    assert isinstance(numbers, list)
    # Frame N is at N/30 s: frames 0-30 (at 1.0 s) fit in a second, frame 31 does not.
    assert numbers == list(range(len(numbers))) and len(numbers) in (30, 31)
    audio = got["audio"]
    assert isinstance(audio, list) and audio and max(audio) < 1.0
    with av.open(str(path)) as container:
        assert container.duration is not None
        # Media timestamps stop at 1 s; the container may add Opus's 6.5 ms codec delay.
        assert 0.9 <= container.duration / 1e6 <= 1.01
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["reason"] == "duration-limit" and sidecar["duration_s"] <= 1.0


async def test_a_disk_below_min_free_bytes_stops_the_recording(tmp_path: Path) -> None:
    # More than any disk has free: the worker's first look at the disk stops it.
    recorder, path, ends = make_recorder(tmp_path, "VP8", min_free_bytes=2**60)
    await push_until_stopped(recorder, ends, interleave(video("VP8", 60), tone(2.0)))

    assert recorder.reason == "disk-full" and recorder.state == "complete"
    numbers = read_back(path)["numbers"]
    assert isinstance(numbers, list) and numbers == list(range(len(numbers))) and numbers
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["state"] == "complete" and sidecar["reason"] == "disk-full"


async def test_no_limit_means_the_whole_stream(tmp_path: Path) -> None:
    """0 is no cap, and a user's stop keeps its own reason."""
    recorder, path, ends = make_recorder(tmp_path, "VP8", max_file_bytes=0, max_duration_s=0)
    assert ends.recorders == []
    requests = Requests()
    sink = recorder.add_track("video", "VP8", requests)
    recorder.start()
    for item in video("VP8", 90):
        sink.push(outgoing(item, item.seconds))
    recorder.stop("stopped")
    await recorder.wait()
    assert recorder.reason == "stopped" and ends.recorders == [recorder]
    assert read_back(path)["numbers"] == list(range(90))
