"""The recordings directory: unique safe names, ids that cannot escape, sidecars, recovery."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gateway.errors import GatewayError
from gateway.recording.recorder import Recorder
from gateway.recording.store import RecordingStore, check_id

from .recording_media import outgoing, video

STARTED = 1_764_500_000.123456


def test_names_are_safe_unique_and_reserved(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "rec")
    first = store.create("demo.room", "0123456789abcdef0123", STARTED, "webm")
    second = store.create("demo.room", "0123456789abcdef0123", STARTED, "webm")
    assert first.parent == store.directory
    assert first.name == "demo.room_20251130T105320123456Z_0123456789ab.webm"
    assert second.name == "demo.room_20251130T105320123456Z_0123456789ab-1.webm"
    assert first.exists() and second.exists()
    # Whatever the participant string holds, the name stays in the directory.
    odd = store.create("r", "../../etc/x y", STARTED, "mkv")
    assert odd.parent == store.directory and "/" not in odd.name[len(str(store.directory)) :]
    check_id(odd.stem)
    # A legal room name with ".." still gives a usable id.
    check_id(store.create("a..b", "abc", STARTED, "webm").stem)


@pytest.mark.parametrize(
    "bad", ["..", "../x", "a/../b", ".hidden", "a/b", "", "x" * 200, "a\x00b", "a..b", "/etc"]
)
def test_ids_that_could_name_another_path_are_refused(tmp_path: Path, bad: str) -> None:
    store = RecordingStore(tmp_path)
    with pytest.raises(GatewayError) as refused:
        store.path(bad)
    assert refused.value.status == 400 and refused.value.code == "invalid-recording-id"


def test_unknown_ids_and_files_outside_are_not_found(tmp_path: Path) -> None:
    (tmp_path / "outside.webm").write_bytes(b"x")
    store = RecordingStore(tmp_path / "rec")
    with pytest.raises(GatewayError) as missing:
        store.path("outside")
    assert missing.value.status == 404


def test_list_describes_and_delete_removes_file_and_sidecar(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path)
    path = store.create("room", "abc", STARTED, "webm")
    path.write_bytes(b"media")
    store.write_sidecar(path, {"room": "room", "file": path.name, "state": "complete"})
    (tmp_path / "notes.txt").write_text("not a recording")
    (listed,) = store.list()
    assert listed["id"] == path.stem and listed["room"] == "room"
    assert listed["size"] == 5 and listed["content_type"] == "video/webm"
    assert listed["state"] == "complete"
    assert not list(tmp_path.glob(".*.tmp")), "the sidecar's temporary file was left"
    store.delete(path.stem)
    assert store.list() == []
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


async def test_recover_marks_interrupted_files_with_their_duration(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path)
    path = store.create("room", "abc", STARTED, "webm")
    recorder = Recorder(
        path, store, {"room": "room"}, queue_frames=500, cluster_ms=200, fsync_interval_s=1
    )
    sink = recorder.add_track("video", "VP8", lambda: None)
    recorder.start()
    for item in video("VP8", 45):
        sink.push(outgoing(item, item.seconds))
    recorder.stop("stopped")
    await recorder.wait()
    # As a killed gateway leaves it: the sidecar still says "recording".
    sidecar = path.with_suffix(".json")
    info = json.loads(sidecar.read_text())
    info.update(state="recording", duration_s=0)
    sidecar.write_text(json.dumps(info))
    assert store.recover(active=set()) == 1
    recovered = json.loads(sidecar.read_text())
    assert recovered["state"] == "interrupted"
    assert recovered["duration_s"] == pytest.approx(44 / 30, abs=0.05)
    assert store.recover(active=set()) == 0
