"""Retention's choice (age, then oldest first over a total) and the store entries it reads."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

from gateway.config import RecordingSettings
from gateway.recording.retention import DAY_S, Retention, choose
from gateway.recording.store import RecordingStore, StoredFile, utc_iso

NOW = 1_800_000_000.0


def file(name: str, days_ago: float, size: int = 100) -> StoredFile:
    return StoredFile(name, size, NOW - days_ago * DAY_S)


def ids(files: list[StoredFile]) -> list[str]:
    return [f.id for f in files]


def test_age_deletes_finished_files_older_than_the_limit() -> None:
    files = [file("a", 40), file("b", 8), file("c", 6.9), file("d", 0)]
    assert ids(choose(files, set(), NOW, 7 * DAY_S, 0)) == ["a", "b"]
    assert choose(files, set(), NOW, 0, 0) == []  # 0: keep


def test_total_deletes_oldest_first_until_under_the_bound() -> None:
    files = [file("new", 1), file("old", 3), file("older", 5), file("mid", 2)]
    # 400 bytes in all: down to 250 takes the two oldest.
    assert ids(choose(files, set(), NOW, 0, 250)) == ["older", "old"]
    assert ids(choose(files, set(), NOW, 0, 300)) == ["older"]
    assert choose(files, set(), NOW, 0, 400) == []


def test_age_first_then_total_counts_what_age_freed() -> None:
    files = [file("a", 30, 500), file("b", 3), file("c", 2), file("d", 1)]
    # Age takes a (500); 300 remain, over 250: b, the oldest left, goes too.
    assert ids(choose(files, set(), NOW, 7 * DAY_S, 250)) == ["a", "b"]


def test_a_file_being_written_is_never_chosen_but_counts_in_the_total() -> None:
    files = [file("live", 50, 300), file("a", 40), file("b", 1)]
    chosen = choose(files, {"live"}, NOW, 7 * DAY_S, 250)
    # Age takes a; live (300 bytes) alone exceeds the bound, so b goes too; live stays.
    assert ids(chosen) == ["a", "b"]


def test_store_entries_use_the_sidecar_end_or_the_file_time(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path)
    ended = store.create("room", "p1", NOW, "webm")
    ended.write_bytes(b"x" * 1234)
    store.write_sidecar(ended, {"state": "complete", "end": utc_iso(NOW - 3 * DAY_S)})
    bare = store.create("room", "p2", NOW, "mkv")
    bare.write_bytes(b"y" * 10)
    os.utime(bare, (NOW - DAY_S, NOW - DAY_S))
    broken = store.create("room", "p3", NOW, "webm")
    broken.with_suffix(".json").write_text("{not json")
    os.utime(broken, (NOW - 2 * DAY_S, NOW - 2 * DAY_S))
    (tmp_path / "notes.txt").write_text("not a recording")
    (tmp_path / "dir.webm").mkdir()

    entries = {e.id: e for e in store.entries()}
    assert set(entries) == {ended.stem, bare.stem, broken.stem}
    assert entries[ended.stem] == StoredFile(ended.stem, 1234, NOW - 3 * DAY_S)
    assert entries[bare.stem] == StoredFile(bare.stem, 10, NOW - DAY_S)
    assert entries[broken.stem].ended == NOW - 2 * DAY_S
    assert RecordingStore(tmp_path / "missing").entries() == []


async def test_a_sweep_deletes_media_and_sidecars_and_counts(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path)
    now = time.time()  # what the sweep compares with
    old = store.create("room", "p1", now, "webm")
    old.write_bytes(b"o" * 500)
    store.write_sidecar(old, {"state": "complete", "end": utc_iso(now - 30 * DAY_S)})
    live = store.create("room", "p2", now, "webm")
    live.write_bytes(b"l" * 200)
    store.write_sidecar(live, {"state": "recording", "end": utc_iso(now - 30 * DAY_S)})
    kept = store.create("room", "p3", now, "webm")
    kept.write_bytes(b"k" * 300)
    settings = RecordingSettings(directory=str(tmp_path), retention_days=7)
    retention = Retention(store, settings, lambda: {live.stem}, asyncio.Lock())

    assert await retention.sweep() == [old.stem]
    assert not old.exists() and not old.with_suffix(".json").exists()
    assert live.exists() and kept.exists()
    stats = retention.stats()
    assert (stats["deleted"], stats["deleted_bytes"], stats["delete_failures"]) == (1, 500, 0)
    assert (stats["files"], stats["bytes"]) == (2, 500)
    assert stats["disk_free_bytes"] > 0 and stats["checked_at"]
    # Nothing more to do: a second sweep deletes nothing.
    assert await retention.sweep() == []
    assert retention.stats()["deleted"] == 1


def test_free_space_is_measured_without_creating_the_directory(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "not" / "yet")
    free = store.free_bytes()
    assert not (tmp_path / "not").exists()
    # The file system it will be on: the same as its existing ancestor's, within what
    # other processes wrote meanwhile.
    assert abs(free - shutil.disk_usage(tmp_path).free) < 256 * 1024**2
