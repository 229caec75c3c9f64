"""Recording through the gateway: aiortc publishers, the HTTP API, files read back with PyAV."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import av
import pytest

from gateway.config import Config
from gateway.recording.store import RecordingStore
from tests.conftest import RunningGateway, loopback_config
from tests.support.media import NumberedVideoTrack, ToneTrack, mean_chroma
from tests.support.peers import wait_for, whep_watch, whip_publish
from tests.support.signaling import WsClient

from .recording_checks import assert_plays_in_order, play


@pytest.fixture
def gateway_config(tmp_path: Path) -> Config:
    config = loopback_config()
    config.recording.directory = str(tmp_path / "recordings")
    config.recording.auto_record = ["auto-*"]
    return config


async def api(gateway: RunningGateway, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    async with gateway.http.request(method, gateway.base + path, **kwargs) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.read()


async def recording_stats(gateway: RunningGateway, room: str) -> dict[str, Any]:
    stats = await gateway.stats()
    found = [r for r in stats["rooms"] if r["room"] == room]
    return found[0]["recording"] if found else {"state": "off", "recordings": []}


async def frames_written(gateway: RunningGateway, room: str) -> int:
    recording = await recording_stats(gateway, room)
    return sum(r["frames_written"] for r in recording["recordings"])


async def wait_written(gateway: RunningGateway, room: str, frames: int) -> None:
    deadline = asyncio.get_running_loop().time() + 40
    while await frames_written(gateway, room) < frames:
        assert asyncio.get_running_loop().time() < deadline, "recording does not progress"
        await asyncio.sleep(0.2)


def names(directory: Path, pattern: str = "*") -> list[str]:
    return sorted(p.name for p in directory.glob(pattern))


def ffprobe(path: Path) -> dict[str, Any]:
    assert shutil.which("ffprobe"), (
        "ffprobe is missing: apt-get install ffmpeg (./dev.sh test does)"
    )
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_recorded_file_plays_numbered_frames_and_the_tone_in_sync(
    gateway: RunningGateway, codec: str
) -> None:
    video = NumberedVideoTrack(640, 360, fps=30)
    publisher = await whip_publish(gateway.http, gateway.base, "rec", [video, ToneTrack()], codec)
    viewer = await whep_watch(gateway.http, gateway.base, "rec")
    try:
        await wait_for(lambda: len(viewer.received.numbers) >= 10, timeout=30)
        status, body = await api(gateway, "POST", "/api/rooms/rec/recording")
        assert status == 201, body
        (started,) = body["started"]
        assert started["room"] == "rec"
        # A second start is refused: the room is already being recorded.
        status, body = await api(gateway, "POST", "/api/rooms/rec/recording")
        assert status == 409 and body["error"] == "already-recording"
        await wait_written(gateway, "rec", 4 * 30 + 4 * 50)  # ~4 s of video and audio
        stats = await recording_stats(gateway, "rec")
        assert stats["state"] == "recording"
        (live,) = stats["recordings"]
        assert live["frames_dropped"] == 0 and live["bytes_written"] > 0
        status, body = await api(gateway, "DELETE", "/api/rooms/rec/recording")
        assert status == 200, body
        assert body["stopped"][0]["state"] == "complete"
        status, body = await api(gateway, "DELETE", "/api/rooms/rec/recording")
        assert status == 404 and body["error"] == "not-recording"
    finally:
        await viewer.close()
        await publisher.close()

    path = Path(gateway.config.recording.directory) / started["file"]
    got = play(path)
    assert got.codecs == {codec.lower(), "opus"}
    assert_plays_in_order(got, 640, 360)
    assert len(got.numbers) >= 4 * 30 - 5
    assert got.audio_times, "no audio in the file"
    assert got.tone_hz == pytest.approx(440, abs=5)
    # Duration: the file spans what was recorded, audio and video together.
    video_span = (got.numbers[-1] - got.numbers[0]) / 30
    assert got.duration_s is not None
    assert got.duration_s == pytest.approx(video_span, abs=0.3)
    assert abs(got.audio_times[-1] - got.video_times[-1]) < 0.3
    assert abs(got.audio_times[0] - got.video_times[0]) < 0.3
    probe = ffprobe(path)
    assert float(probe["format"]["duration"]) == pytest.approx(got.duration_s, abs=0.1)
    assert {s["codec_name"] for s in probe["streams"]} == {codec.lower(), "opus"}

    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["state"] == "complete" and sidecar["reason"] == "stopped"
    assert sidecar["room"] == "rec"
    assert sidecar["tracks"][0] == {"kind": "video", "codec": codec, "width": 640, "height": 360}
    assert sidecar["duration_s"] == pytest.approx(got.duration_s, abs=0.1)
    assert sidecar["size"] == path.stat().st_size


async def test_recording_does_not_change_what_viewers_receive(gateway: RunningGateway) -> None:
    video = NumberedVideoTrack(640, 360, fps=30)
    publisher = await whip_publish(gateway.http, gateway.base, "live", [video, ToneTrack()])
    viewer = await whep_watch(gateway.http, gateway.base, "live")
    try:
        await wait_for(lambda: len(viewer.received.numbers) >= 10, timeout=30)
        status, _ = await api(gateway, "POST", "/api/rooms/live/recording")
        assert status == 201
        await wait_written(gateway, "live", 10)
        before = len(viewer.received.numbers)
        sent_before = video.count
        await asyncio.sleep(3)
        got = viewer.received.numbers[before:]
        sent = video.count - sent_before
        # Every frame the publisher sent in the window arrived, in order, without a gap.
        assert got == list(range(got[0], got[0] + len(got))), "viewer frames have gaps"
        assert len(got) >= sent - 3
        stats = await gateway.stats()
        (room,) = stats["rooms"]
        video_stats = next(t for t in room["tracks"] if t["kind"] == "video")
        assert video_stats["drops"] == 0 and video_stats["frames_decoded"] == 0
        assert room["recording"]["recordings"][0]["frames_written"] > 0
    finally:
        await viewer.close()
        await publisher.close()


async def test_auto_recording_by_pattern_and_publisher_leaving_closes_the_file(
    gateway: RunningGateway,
) -> None:
    auto = await whip_publish(
        gateway.http, gateway.base, "auto-1", [NumberedVideoTrack(320, 240), ToneTrack()]
    )
    other = await whip_publish(
        gateway.http, gateway.base, "other", [NumberedVideoTrack(320, 240), ToneTrack()]
    )
    try:
        await wait_written(gateway, "auto-1", 30)
        assert (await recording_stats(gateway, "other"))["state"] == "off"
        (live,) = (await recording_stats(gateway, "auto-1"))["recordings"]
    finally:
        await auto.close(gateway.http, gateway.base)
        await other.close(gateway.http, gateway.base)
    directory = Path(gateway.config.recording.directory)
    sidecar = directory / live["file"].replace(".webm", ".json")
    await wait_for(
        lambda: sidecar.exists() and json.loads(sidecar.read_text())["state"] == "complete",
        timeout=10,
    )
    assert json.loads(sidecar.read_text())["reason"] == "publisher-left"
    assert names(directory, "other*") == []
    got = play(directory / live["file"])
    assert_plays_in_order(got, 320, 240)


async def test_recordings_api_lists_serves_ranges_and_deletes(gateway: RunningGateway) -> None:
    publisher = await whip_publish(
        gateway.http, gateway.base, "api", [NumberedVideoTrack(320, 240), ToneTrack()]
    )
    try:
        status, body = await api(gateway, "POST", "/api/rooms/api/recording")
        assert status == 201
        recording_id = body["started"][0]["id"]
        await wait_written(gateway, "api", 40)
        status, body = await api(gateway, "GET", "/api/rooms/api/recording")
        assert status == 200 and body["recorded"] is True and body["state"] == "recording"
        assert body["recordings"][0]["id"] == recording_id
        # Still being written: listed as recording, and not deletable.
        status, body = await api(gateway, "GET", "/api/recordings")
        assert [r["state"] for r in body["recordings"] if r["id"] == recording_id] == ["recording"]
        status, body = await api(gateway, "DELETE", f"/api/recordings/{recording_id}")
        assert status == 409 and body["error"] == "recording-active"
        await api(gateway, "DELETE", "/api/rooms/api/recording")
    finally:
        await publisher.close(gateway.http, gateway.base)

    status, body = await api(gateway, "GET", "/api/rooms/api/recording")
    assert body["recorded"] is False and body["state"] == "off"
    status, body = await api(gateway, "GET", "/api/recordings")
    assert status == 200
    (listed,) = [r for r in body["recordings"] if r["id"] == recording_id]
    assert listed["room"] == "api" and listed["state"] == "complete"
    assert listed["content_type"] == "video/webm"
    assert listed["duration_s"] > 0.5 and listed["size"] > 1000
    assert [t["kind"] for t in listed["tracks"]] == ["video", "audio"]
    assert listed["url"].startswith(f"/api/recordings/{recording_id}/file?expires=")
    status, one = await api(gateway, "GET", f"/api/recordings/{recording_id}")
    assert status == 200 and one["size"] == listed["size"]

    url = gateway.base + listed["url"]
    async with gateway.http.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "video/webm"
        assert response.headers["Accept-Ranges"] == "bytes"
        whole = await response.read()
    assert len(whole) == listed["size"]
    async with gateway.http.get(url, headers={"Range": "bytes=100-199"}) as response:
        assert response.status == 206
        assert response.headers["Content-Range"] == f"bytes 100-199/{len(whole)}"
        assert await response.read() == whole[100:200]
    async with gateway.http.get(url, headers={"Range": "bytes=-50"}) as response:
        assert response.status == 206 and await response.read() == whole[-50:]
    async with gateway.http.get(url, headers={"Range": f"bytes={len(whole) + 10}-"}) as response:
        assert response.status == 416

    status, _ = await api(gateway, "DELETE", f"/api/recordings/{recording_id}")
    assert status == 204
    status, body = await api(gateway, "GET", "/api/recordings")
    assert recording_id not in [r["id"] for r in body["recordings"]]
    assert names(Path(gateway.config.recording.directory)) == []
    status, body = await api(gateway, "GET", f"/api/recordings/{recording_id}/file")
    assert status == 404 and body["error"] == "unknown-recording"


async def test_path_traversal_is_refused(gateway: RunningGateway, tmp_path: Path) -> None:
    secret = tmp_path / "secret.webm"
    secret.write_bytes(b"not for you")
    (tmp_path / "recordings").mkdir(exist_ok=True)
    attempts = [
        "/api/recordings/..%2Fsecret/file",
        "/api/recordings/%2E%2E%2Fsecret/file",
        "/api/recordings/..%252Fsecret/file",
        "/api/recordings/.secret/file",
        "/api/recordings/../secret/file",
        "/api/recordings/..",
        "/api/recordings/%2Fetc%2Fpasswd",
        "/api/recordings/secret%00/file",
    ]
    for path in attempts:
        for method in ("GET", "DELETE"):
            async with gateway.http.request(method, gateway.base + path) as response:
                body = await response.read()
                assert response.status in (400, 404, 405), (path, response.status)
                assert b"not for you" not in body
    assert secret.exists()
    for room in ("..%2Fx", ".hidden", "a%2Fb", "x" * 65):
        status, body = await api(gateway, "POST", f"/api/rooms/{room}/recording")
        assert status in (400, 404), (room, status)
    status, body = await api(gateway, "POST", "/api/rooms/.hidden/recording")
    assert status == 400 and body["error"] == "invalid-room-name"
    status, body = await api(gateway, "GET", "/api/recordings/.hidden")
    assert status == 400 and body["error"] == "invalid-recording-id"
    status, body = await api(gateway, "POST", "/api/rooms/nobody/recording")
    assert status == 404 and body["error"] == "unknown-room"


async def test_a_full_disk_stops_the_recording_and_not_the_stream(
    gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = Path(gateway.config.recording.directory)
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)

    def full_disk(self: RecordingStore, room: str, *args: Any) -> Path:
        # Every write to /dev/full fails with ENOSPC, as on a full disk.
        path = directory / f"{room}_full.webm"
        path.symlink_to("/dev/full")
        return path

    monkeypatch.setattr(RecordingStore, "create", full_disk)
    events: list[dict[str, Any]] = []
    video = NumberedVideoTrack(320, 240, fps=30)
    publisher = await whip_publish(gateway.http, gateway.base, "full", [video, ToneTrack()])
    viewer = await whep_watch(gateway.http, gateway.base, "full")
    try:
        await wait_for(lambda: len(viewer.received.numbers) >= 10, timeout=30)
        room = gateway.registry.room("full")
        assert room is not None
        room.listen(events.append)
        status, _ = await api(gateway, "POST", "/api/rooms/full/recording")
        assert status == 201
        await wait_for(lambda: any(e["type"] == "recording-stopped" for e in events), timeout=20)
        (stopped,) = [e for e in events if e["type"] == "recording-stopped"]
        assert stopped["reason"] == "error" and "space" in stopped["error"].lower()
        assert (await recording_stats(gateway, "full"))["state"] == "off"
        # The viewer goes on receiving every frame.
        before = len(viewer.received.numbers)
        await asyncio.sleep(2)
        got = viewer.received.numbers[before:]
        assert len(got) >= 45
        assert got == list(range(got[0], got[0] + len(got)))
        room.unlisten(events.append)
    finally:
        await viewer.close()
        await publisher.close()


async def test_websocket_record_start_and_stop_with_room_events(gateway: RunningGateway) -> None:
    watcher = await WsClient.connect(gateway.http, gateway.base)
    control = await WsClient.connect(gateway.http, gateway.base)
    publisher = await whip_publish(
        gateway.http, gateway.base, "wsrec", [NumberedVideoTrack(320, 240), ToneTrack()]
    )
    try:
        await watcher.send({"type": "watch", "room": "wsrec"})
        await watcher.next("room-state")
        request_id = await control.request({"type": "record-start", "room": "wsrec"})
        reply = await control.next("recording", "error")
        assert reply == {
            "type": "recording",
            "id": request_id,
            "room": "wsrec",
            "recording": True,
            "recordings": [reply["recordings"][0]],
        }
        recording_id = reply["recordings"][0]["id"]
        started = await watcher.next("recording-started")
        assert started["room"] == "wsrec" and started["recording"] == recording_id
        await wait_written(gateway, "wsrec", 30)

        request_id = await control.request({"type": "record-stop", "room": "wsrec"})
        reply = await control.next("recording", "error")
        assert reply["id"] == request_id and reply["recording"] is False
        assert reply["recordings"][0]["state"] == "complete"
        stopped = await watcher.next("recording-stopped")
        assert stopped["recording"] == recording_id and stopped["reason"] == "stopped"

        # Refusals are errors on the socket, which stays open.
        await control.request({"type": "record-stop", "room": "wsrec"})
        assert (await control.next("error"))["code"] == "not-recording"
        await control.request({"type": "record-start", "room": "empty-room"})
        assert (await control.next("error"))["code"] == "unknown-room"
        await control.request({"type": "record-start", "room": "../x"})
        assert (await control.next("error"))["code"] == "invalid-room-name"
        await control.request({"type": "record-start"})
        assert (await control.next("error"))["code"] == "invalid-message"
        await control.request({"type": "ping"})
        await control.next("pong")
    finally:
        await watcher.close()
        await control.close()
        await publisher.close(gateway.http, gateway.base)


async def test_a_room_recorded_through_a_pipeline_is_processed_without_viewers(
    gateway: RunningGateway,
) -> None:
    video = NumberedVideoTrack(640, 360, fps=30)
    publisher = await whip_publish(gateway.http, gateway.base, "proc", [video, ToneTrack()])
    try:
        status, body = await api(gateway, "POST", "/api/rooms/proc/recording?pipeline=nope")
        assert status == 400 and body["error"] == "unknown-pipeline"
        status, body = await api(gateway, "POST", "/api/rooms/proc/recording?pipeline=gray")
        assert status == 201, body
        (started,) = body["started"]
        assert started["pipeline"] == "gray"
        # The recording alone keeps the rendition going: nobody watches it.
        (rendition,) = gateway.registry.renditions.live
        assert rendition.pipeline_name == "gray"
        await wait_written(gateway, "proc", 3 * 30 + 3 * 50)
        status, body = await api(gateway, "DELETE", "/api/rooms/proc/recording")
        assert status == 200 and body["stopped"][0]["state"] == "complete"
        # Its last sink gone, the rendition stops.
        await wait_for(lambda: not gateway.registry.renditions.live, timeout=5)
    finally:
        await publisher.close()

    path = Path(gateway.config.recording.directory) / started["file"]
    got = play(path)
    assert got.codecs == {"vp8", "opus"}
    assert_plays_in_order(got, 640, 360)
    assert len(got.numbers) >= 3 * 30 - 5
    assert got.tone_hz == pytest.approx(440, abs=5)  # audio recorded as published
    with av.open(str(path)) as container:
        frames = [f for f in container.decode(video=0)]
    chroma = [mean_chroma(f) for f in frames[len(frames) // 2 :]]
    assert all(abs(u - 128) < 4 and abs(v - 128) < 4 for u, v in chroma), chroma[:3]
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["pipeline"] == "gray" and sidecar["state"] == "complete"
