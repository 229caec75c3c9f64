"""The Recorder on its own: encoded frames in, a Matroska/WebM file out, read back with PyAV."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import av
import pytest

from gateway.media.frames import video_size
from gateway.recording.codecs import opus_duration_samples
from gateway.recording.recorder import Recorder
from gateway.recording.store import RecordingStore
from tests.support.media import read_frame_number

from .recording_media import Encoded, outgoing, tone, video


class Requests:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def make_recorder(tmp_path: Path, codec: str, **settings: int | float) -> tuple[Recorder, Path]:
    store = RecordingStore(tmp_path)
    extension = "webm" if codec == "VP8" else "mkv"
    path = store.create("room", "abc123", 1_700_000_000.0, extension)
    options = {"queue_frames": 1000, "cluster_ms": 500, "fsync_interval_s": 0.5, **settings}
    recorder = Recorder(
        path,
        store,
        {"room": "room", "participant": "abc123"},
        **options,  # type: ignore[arg-type]
    )
    return recorder, path


def interleave(*tracks: list[Encoded]) -> list[Encoded]:
    return sorted((item for track in tracks for item in track), key=lambda e: e.seconds)


async def record(recorder: Recorder, media: list[Encoded], delay_s: float = 0.005) -> Requests:
    requests = Requests()
    sinks = {
        "video": recorder.add_track(
            "video", "VP8" if recorder.path.suffix == ".webm" else "H264", requests
        ),
        "audio": recorder.add_track("audio", "opus", requests),
    }
    recorder.start()
    for item in media:
        # Arrival = capture + a few ms of network delay, different per kind.
        arrival = item.seconds + (delay_s if item.kind == "video" else 0.002)
        sinks[item.kind].push(outgoing(item, arrival))
    recorder.stop("stopped")
    await recorder.wait()
    return requests


def read_back(path: Path) -> dict[str, list[float] | list[int] | set[tuple[int, int]]]:
    numbers, video_times, audio_times, sizes = [], [], [], set()
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.pts is None:
                continue
            if packet.stream.type == "audio":
                audio_times.append(float(packet.pts * packet.time_base))
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    number = read_frame_number(frame)
                    assert number is not None, "a recorded frame's number does not check"
                    numbers.append(number)
                    video_times.append(float(frame.time or 0))
                    sizes.add((frame.width, frame.height))
    return {"numbers": numbers, "video": video_times, "audio": audio_times, "sizes": sizes}


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_frames_remuxed_decode_in_order_with_audio(tmp_path: Path, codec: str) -> None:
    frames = video(codec, 60)
    recorder, path = make_recorder(tmp_path, codec)
    await record(recorder, interleave(frames, tone(2.0)))

    assert recorder.state == "complete" and recorder.error is None
    got = read_back(path)
    assert got["numbers"] == list(range(60))
    assert got["sizes"] == {(320, 240)}
    assert got["video"] == sorted(got["video"]) and got["audio"] == sorted(got["audio"])
    assert len(got["audio"]) >= 95
    # Frame N at N/30 s: the RTP spacing survives (within a millisecond of rounding).
    assert got["video"][30] == pytest.approx(1.0, abs=0.002)
    with av.open(str(path)) as container:
        assert container.format.name.startswith("matroska")
        assert {s.codec_context.name for s in container.streams} == {codec.lower(), "opus"}
        assert container.duration is not None
        assert container.duration / 1e6 == pytest.approx(2.0, abs=0.1)
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["state"] == "complete"
    assert sidecar["room"] == "room" and sidecar["participant"] == "abc123"
    assert sidecar["tracks"][0] == {"kind": "video", "codec": codec, "width": 320, "height": 240}
    assert sidecar["tracks"][1] == {"kind": "audio", "codec": "opus"}
    assert sidecar["duration_s"] == pytest.approx(2.0, abs=0.1)
    assert sidecar["size"] == path.stat().st_size
    assert sidecar["start"] and sidecar["end"]


async def test_audio_and_video_land_on_one_clock(tmp_path: Path) -> None:
    """Tracks with unrelated RTP origins and different network delays end up in sync."""
    frames, audio = video("VP8", 60), tone(2.0)
    recorder, path = make_recorder(tmp_path, "VP8")
    requests = Requests()
    v = recorder.add_track("video", "VP8", requests)
    a = recorder.add_track("audio", "opus", requests)
    recorder.start()
    for item in interleave(frames, audio):
        if item.kind == "video":
            # Video: random RTP origin, 40 ms late, plus jitter on every other frame.
            arrival = item.seconds + 0.040 + (0.015 if item.timestamp % 6000 else 0)
            v.push(outgoing(item, arrival, rtp_origin=123_456_789))
        else:
            a.push(outgoing(item, item.seconds + 0.040, rtp_origin=987_654))
    recorder.stop("stopped")
    await recorder.wait()
    got = read_back(path)
    # Capture time 1.0 s: video frame 30 and the audio packet of 1.0 s share a timestamp.
    index = got["numbers"].index(30)  # type: ignore[union-attr]
    audio_at_1s = min(got["audio"], key=lambda t: abs(t - got["video"][index]))  # type: ignore[arg-type, operator]
    assert abs(got["video"][index] - audio_at_1s) <= 0.012  # type: ignore[operator]


async def test_starts_at_a_keyframe_and_asks_for_one(tmp_path: Path) -> None:
    frames = video("VP8", 40)
    recorder, path = make_recorder(tmp_path, "VP8")
    requests = Requests()
    sink = recorder.add_track("video", "VP8", requests)
    recorder.start()
    assert requests.count == 1, "no keyframe requested at start"
    # Joined mid-stream: deltas first, then the publisher answers with a keyframe.
    for item in frames[1:10]:
        sink.push(outgoing(item, item.seconds))
    keyframe = video("VP8", 1)[0]
    sink.push(outgoing(Encoded("video", keyframe.data, frames[10].timestamp, True, 0), 0.34))
    recorder.stop("stopped")
    await recorder.wait()
    assert sink.skipped == 9
    assert read_back(path)["numbers"] == [0]


async def test_a_full_queue_drops_recorded_frames_and_resumes_at_a_keyframe(
    tmp_path: Path,
) -> None:
    frames = video("VP8", 30)
    recorder, path = make_recorder(tmp_path, "VP8", queue_frames=10)
    requests = Requests()
    sink = recorder.add_track("video", "VP8", requests)
    recorder.start()
    # A burst faster than any worker: the queue holds 10, the rest is dropped at once.
    for item in frames:
        sink.push(outgoing(item, item.seconds))
    dropped = sink.dropped
    assert dropped > 0
    assert requests.count >= 2, "a drop must ask for a keyframe"
    recorder.stop("stopped")
    await recorder.wait()
    numbers = read_back(path)["numbers"]
    # What was written decodes cleanly: the first frames, none after the drop.
    assert numbers == list(range(len(numbers)))
    assert recorder.stats()["frames_dropped"] == dropped


async def test_a_write_error_stops_the_recording_with_a_reason(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path)
    ended: list[Recorder] = []
    # /dev/full fails every write with ENOSPC: a full disk.
    path = tmp_path / "full.webm"
    path.symlink_to("/dev/full")
    recorder = Recorder(
        path,
        store,
        {"room": "room"},
        queue_frames=100,
        cluster_ms=100,
        fsync_interval_s=0.1,
        on_end=ended.append,
    )
    sink = recorder.add_track("video", "VP8", Requests())
    recorder.start()
    for item in video("VP8", 20):
        sink.push(outgoing(item, item.seconds))
        await asyncio.sleep(0.01)
    await asyncio.wait_for(recorder.wait(), timeout=10)
    assert recorder.state == "failed"
    assert recorder.error is not None and "space" in recorder.error.lower()
    assert ended == [recorder]
    # After the failure, frames are ignored at once (the forwarder's loop is not slowed).
    assert not recorder.accepting
    sidecar = json.loads((tmp_path / "full.json").read_text())
    assert sidecar["state"] == "failed" and "space" in sidecar["error"].lower()


async def test_nothing_recorded_leaves_no_file(tmp_path: Path) -> None:
    recorder, path = make_recorder(tmp_path, "VP8")
    recorder.add_track("video", "VP8", Requests())
    recorder.start()
    recorder.stop("stopped")
    await recorder.wait()
    assert recorder.state == "empty"
    assert not path.exists() and not path.with_suffix(".json").exists()


def test_video_size_from_keyframes() -> None:
    assert video_size("VP8", video("VP8", 1, 352, 288)[0].data) == (352, 288)
    # 1280x720 is coded as 1280x736 with cropping: the SPS parser must apply it.
    assert video_size("H264", video("H264", 1, 1280, 720)[0].data) == (1280, 720)
    assert video_size("H264", video("H264", 1, 320, 180)[0].data) == (320, 180)
    assert video_size("H264", b"\x00\x00\x00\x01\x41\x9a") is None
    assert video_size("VP8", b"\x01\x02\x03") is None


def test_opus_duration_from_toc() -> None:
    packet = tone(0.1)[0].data
    assert opus_duration_samples(packet) == 960
    assert opus_duration_samples(bytes([0x03 | (18 << 3), 0x03])) == 3 * 480  # 3 CELT 10 ms
    assert opus_duration_samples(bytes([1 << 3])) == 960  # one SILK 20 ms frame
