"""Recording limits with real publishers: concurrency, free disk, file size and duration,
retention; every refusal clear and counted, every stopped file finalized and playable."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Config
from gateway.recording.api import RECORDINGS
from gateway.recording.retention import DAY_S
from gateway.recording.store import utc_iso
from tests.conftest import RunningGateway, loopback_config
from tests.support.media import NumberedVideoTrack, ToneTrack
from tests.support.peers import Publisher, wait_for, whep_watch, whip_publish
from tests.support.room_client import Participant
from tests.support.signaling import WsClient

from .recording_checks import assert_plays_in_order, play
from .test_recording import api, recording_stats, wait_written

MiB = 1024**2


@pytest.fixture
def gateway_config(tmp_path: Path, request: pytest.FixtureRequest) -> Config:
    """Recording settings per test (``indirect`` parameters); a callable value is given
    the test's directory (to measure its free space)."""
    config = loopback_config()
    config.recording.directory = str(tmp_path / "recordings")
    config.recording.auto_record = ["auto-*"]
    settings: dict[str, Any] = getattr(request, "param", {})
    for name, value in settings.items():
        setattr(config.recording, name, value(tmp_path) if callable(value) else value)
    return config


def limits(**settings: Any) -> Any:
    return pytest.mark.parametrize("gateway_config", [settings], indirect=True)


def directory(gateway: RunningGateway) -> Path:
    return Path(gateway.config.recording.directory)


async def publish(gateway: RunningGateway, room: str, video: bool = True) -> Publisher:
    tracks = [NumberedVideoTrack(320, 240, fps=30), ToneTrack()] if video else [ToneTrack()]
    return await whip_publish(gateway.http, gateway.base, room, tracks)


async def watch(gateway: RunningGateway, room: str) -> WsClient:
    watcher = await WsClient.connect(gateway.http, gateway.base)
    await watcher.send({"type": "watch", "room": room})
    await watcher.next("room-state")
    return watcher


async def gateway_recording_stats(gateway: RunningGateway) -> dict[str, Any]:
    stats: dict[str, Any] = (await gateway.stats())["recording"]
    return stats


def sidecar(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.with_suffix(".json").read_text())
    return loaded


@limits(max_file_bytes=150_000)
async def test_a_file_reaching_max_file_bytes_stops_finalized_and_the_stream_goes_on(
    gateway: RunningGateway,
) -> None:
    watcher = await watch(gateway, "big")
    publisher = await publish(gateway, "big")
    viewer = await whep_watch(gateway.http, gateway.base, "big")
    try:
        await wait_for(lambda: len(viewer.received.numbers) >= 10, timeout=30)
        status, body = await api(gateway, "POST", "/api/rooms/big/recording")
        assert status == 201, body
        (started,) = body["started"]
        stopped = await watcher.next("recording-stopped", timeout=40)
        assert stopped["recording"] == started["id"]
        assert (stopped["reason"], stopped["state"]) == ("size-limit", "complete")
        assert "error" not in stopped
        assert (await recording_stats(gateway, "big"))["state"] == "off"
        # Only the file stopped: the viewer still gets every frame.
        before = len(viewer.received.numbers)
        await wait_for(lambda: len(viewer.received.numbers) >= before + 30, timeout=10)
        got = viewer.received.numbers[before:]
        assert got == list(range(got[0], got[0] + len(got)))
    finally:
        await watcher.close()
        await viewer.close()
        await publisher.close(gateway.http, gateway.base)

    path = directory(gateway) / started["file"]
    size = path.stat().st_size
    assert 100_000 <= size <= 150_000
    recorded = play(path)
    assert_plays_in_order(recorded, 320, 240)
    assert recorded.duration_s is not None and recorded.duration_s > 0.5  # trailer written
    assert recorded.tone_hz == pytest.approx(440, abs=5)
    info = sidecar(path)
    assert (info["state"], info["reason"], info["size"]) == ("complete", "size-limit", size)
    stats = await gateway_recording_stats(gateway)
    assert stats["stopped_at_limit"] == {"size-limit": 1} and stats["active"] == 0


@limits(max_duration_s=2.0)
async def test_a_recording_reaching_max_duration_s_stops_with_its_reason(
    gateway: RunningGateway,
) -> None:
    control = await WsClient.connect(gateway.http, gateway.base)
    watcher = await watch(gateway, "long")
    publisher = await publish(gateway, "long")
    try:
        await control.request({"type": "record-start", "room": "long"})
        reply = await control.next("recording", "error")
        assert reply["type"] == "recording", reply
        stopped = await watcher.next("recording-stopped", timeout=40)
        assert stopped["reason"] == "duration-limit" and stopped["state"] == "complete"
        # The room is still recorded on request: a stop answers with nothing to stop.
        await control.request({"type": "record-stop", "room": "long"})
        assert (await control.next("error"))["code"] == "not-recording"
    finally:
        await watcher.close()
        await control.close()
        await publisher.close(gateway.http, gateway.base)

    path = directory(gateway) / reply["recordings"][0]["file"]
    recorded = play(path)
    assert_plays_in_order(recorded, 320, 240)
    # Media timestamps stop at 2 s; the container adds Opus's 6.5 ms codec delay.
    assert recorded.duration_s is not None and 1.5 <= recorded.duration_s <= 2.01
    assert recorded.numbers[-1] - recorded.numbers[0] >= 40  # about 2 s at 30 fps
    info = sidecar(path)
    assert info["reason"] == "duration-limit" and info["duration_s"] <= 2.0
    assert (await gateway_recording_stats(gateway))["stopped_at_limit"] == {"duration-limit": 1}


@limits(max_concurrent=1)
async def test_starts_past_max_concurrent_are_refused_and_counted(
    gateway: RunningGateway,
) -> None:
    one, two = await publish(gateway, "one"), await publish(gateway, "two")
    control = await WsClient.connect(gateway.http, gateway.base)
    watcher = await watch(gateway, "auto-1")
    auto: Publisher | None = None
    try:
        status, body = await api(gateway, "POST", "/api/rooms/one/recording")
        assert status == 201, body
        async with gateway.http.post(f"{gateway.base}/api/rooms/two/recording") as response:
            assert response.status == 429
            body = await response.json()
            assert body["error"] == "too-many-recordings" and body["retry_after"] > 0
            assert int(response.headers["Retry-After"]) == body["retry_after"]
            assert "recording.max_concurrent" in body["message"]
        await control.request({"type": "record-start", "room": "two"})
        refused = await control.next("error")
        assert refused["code"] == "too-many-recordings"
        # Auto-recording is refused too: logged, counted and told to the room.
        auto = await publish(gateway, "auto-1")
        event = await watcher.next("recording-stopped")
        assert event["recording"] is None and event["reason"] == "too-many-recordings"
        stats = await gateway_recording_stats(gateway)
        assert stats["refused"] == {"too-many-recordings": 3}
        assert (stats["active"], stats["max_concurrent"]) == (1, 1)
        assert [p.name.split("_")[0] for p in directory(gateway).glob("*.webm")] == ["one"]
        # A slot freed, a start succeeds.
        status, _ = await api(gateway, "DELETE", "/api/rooms/one/recording")
        assert status == 200
        status, body = await api(gateway, "POST", "/api/rooms/two/recording")
        assert status == 201, body
        await wait_written(gateway, "two", 30)
    finally:
        await watcher.close()
        await control.close()
        for publisher in (one, two, auto):
            if publisher is not None:
                await publisher.close(gateway.http, gateway.base)
    assert play(directory(gateway) / body["started"][0]["file"]).numbers


@limits(min_free_bytes=2**60)  # more than any disk has free
async def test_no_start_with_less_than_min_free_bytes_free(gateway: RunningGateway) -> None:
    publisher = await publish(gateway, "room")
    control = await WsClient.connect(gateway.http, gateway.base)
    auto: Publisher | None = None
    try:
        status, body = await api(gateway, "POST", "/api/rooms/room/recording")
        assert (status, body["error"]) == (507, "disk-full")
        assert "recording.min_free_bytes" in body["message"]
        await control.request({"type": "record-start", "room": "room"})
        assert (await control.next("error"))["code"] == "disk-full"
        auto = await publish(gateway, "auto-full")
        await wait_for(lambda: gateway.app[RECORDINGS].refused["disk-full"] == 3, timeout=10)
        status, body = await api(gateway, "GET", "/api/rooms/room/recording")
        assert body["recorded"] is False and body["state"] == "off"
        assert (await gateway_recording_stats(gateway))["refused"] == {"disk-full": 3}
    finally:
        await control.close()
        await publisher.close(gateway.http, gateway.base)
        if auto is not None:
            await auto.close(gateway.http, gateway.base)
    assert list(directory(gateway).glob("*")) == []  # no file, not even an empty one


def free_minus(margin: int) -> Callable[[Path], int]:
    return lambda where: shutil.disk_usage(where).free - margin


def fill(path: Path, size: int) -> None:
    """Takes ``size`` bytes of the real disk (allocated, not a sparse file)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.posix_fallocate(fd, 0, size)
    finally:
        os.close(fd)


# Other processes share the disk: the threshold is 256 MiB below its free space at the
# start, and the test then takes 1 GiB of it (so it needs about 1.3 GiB free).
@limits(min_free_bytes=free_minus(256 * MiB))
async def test_a_disk_filling_up_stops_the_running_recording_cleanly(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    watcher = await watch(gateway, "fill")
    publisher = await publish(gateway, "fill")
    filler = tmp_path / "filler.bin"
    try:
        status, body = await api(gateway, "POST", "/api/rooms/fill/recording")
        assert status == 201, body
        await wait_written(gateway, "fill", 60)
        await asyncio.to_thread(fill, filler, 1024 * MiB)
        stopped = await watcher.next("recording-stopped", timeout=20)
        assert (stopped["reason"], stopped["state"]) == ("disk-full", "complete")
        status, refused = await api(gateway, "POST", "/api/rooms/fill/recording")
        assert (status, refused["error"]) == (507, "disk-full")
        # Space given back, recording starts again.
        await asyncio.to_thread(filler.unlink)
        status, again = await api(gateway, "POST", "/api/rooms/fill/recording")
        assert status == 201, again
        await wait_written(gateway, "fill", 30)
        await api(gateway, "DELETE", "/api/rooms/fill/recording")
    finally:
        await watcher.close()
        await publisher.close(gateway.http, gateway.base)
        await asyncio.to_thread(filler.unlink, True)

    path = directory(gateway) / body["started"][0]["file"]
    assert_plays_in_order(play(path), 320, 240)
    assert sidecar(path)["reason"] == "disk-full" and sidecar(path)["state"] == "complete"
    stats = await gateway_recording_stats(gateway)
    assert stats["stopped_at_limit"] == {"disk-full": 1}
    assert stats["refused"] == {"disk-full": 1}


async def record_seed(gateway: RunningGateway, room: str) -> Path:
    """A real, finished recording of about two seconds."""
    publisher = await publish(gateway, room)
    try:
        status, body = await api(gateway, "POST", f"/api/rooms/{room}/recording")
        assert status == 201, body
        await wait_written(gateway, room, 60 + 100)
        status, _ = await api(gateway, "DELETE", f"/api/rooms/{room}/recording")
        assert status == 200
    finally:
        await publisher.close(gateway.http, gateway.base)
    return directory(gateway) / body["started"][0]["file"]


def copy_recording(seed: Path, name: str, ended: float | None) -> Path:
    """A finished recording, as old as ``ended`` says (its sidecar's end, or, with no
    sidecar, its file's time)."""
    media = seed.with_name(f"{name}{seed.suffix}")
    shutil.copyfile(seed, media)
    if ended is None:
        os.utime(media, (time.time() - 10 * DAY_S,) * 2)
    else:
        info = sidecar(seed) | {"end": utc_iso(ended)}
        media.with_suffix(".json").write_text(json.dumps(info))
    return media


@limits(retention_days=7)
async def test_retention_deletes_old_then_oldest_and_never_a_recording_in_progress(
    gateway: RunningGateway,
) -> None:
    controller = gateway.app[RECORDINGS]
    seed = await record_seed(gateway, "seed")
    now = time.time()
    ages = {"ancient": 30, "week": 8, "c": 5, "d": 3, "e": 1}
    for name, days in ages.items():
        await asyncio.to_thread(copy_recording, seed, name, now - days * DAY_S)
    await asyncio.to_thread(copy_recording, seed, "bare", None)  # 10 days, by its mtime

    # In progress (audio only: it grows slowly), made to look finished 60 days ago.
    live = await publish(gateway, "live", video=False)
    try:
        status, body = await api(gateway, "POST", "/api/rooms/live/recording")
        assert status == 201, body
        live_path = directory(gateway) / body["started"][0]["file"]
        await wait_for(lambda: live_path.with_suffix(".json").exists(), timeout=20)
        fake = sidecar(live_path) | {"state": "complete", "end": utc_iso(now - 60 * DAY_S)}
        live_path.with_suffix(".json").write_text(json.dumps(fake))

        # Age takes ancient, week and bare; then the oldest while over the bound: with
        # room for the live file, e, the seed and half a copy, that is c and d. (The
        # bound needs the seed's size; retention reads its settings at every sweep.)
        size = seed.stat().st_size
        controller.settings.retention_total_bytes = live_path.stat().st_size + 2 * size + size // 2
        deleted = await controller.retention.sweep()
        assert sorted(deleted) == ["ancient", "bare", "c", "d", "week"]
        assert live_path.exists() and controller.is_active_file(live_path.stem)
        for name in deleted:
            assert not (directory(gateway) / f"{name}.webm").exists()
            assert not (directory(gateway) / f"{name}.json").exists()
        status, body = await api(gateway, "GET", "/api/recordings")
        assert sorted(r["id"] for r in body["recordings"]) == sorted(
            ["e", seed.stem, live_path.stem]
        )
        retention = (await gateway_recording_stats(gateway))["retention"]
        assert (retention["deleted"], retention["deleted_bytes"]) == (5, 5 * size)
        assert retention["files"] == 3 and retention["bytes"] >= 2 * size
        await wait_written(gateway, "live", 50)  # still recording after the sweep
    finally:
        await live.close(gateway.http, gateway.base)

    await wait_for(lambda: not controller.is_active_file(live_path.stem), timeout=10)
    # Finalized by its recorder: the real sidecar replaced the test's.
    info = sidecar(live_path)
    assert info["reason"] == "publisher-left" and info["end"] > utc_iso(now)
    recorded = play(live_path)
    assert recorded.audio and recorded.tone_hz == pytest.approx(440, abs=5)


@limits(retention_days=1, retention_check_s=1)
async def test_retention_runs_every_retention_check_s(gateway: RunningGateway) -> None:
    seed = await record_seed(gateway, "seed")
    old = await asyncio.to_thread(copy_recording, seed, "old", time.time() - 3 * DAY_S)
    controller = gateway.app[RECORDINGS]
    await wait_for(lambda: controller.retention.deleted == 1, timeout=10)
    assert not old.exists() and not old.with_suffix(".json").exists()
    assert seed.exists()
    retention = (await gateway_recording_stats(gateway))["retention"]
    assert retention["deleted"] == 1 and retention["files"] == 1
    assert retention["bytes"] == seed.stat().st_size


@limits(max_duration_s=1.0)
async def test_a_participant_stopped_at_a_limit_is_not_recorded_again_until_a_start(
    gateway: RunningGateway,
) -> None:
    watcher = await watch(gateway, "auto-meet")
    ann = await Participant.join(gateway.http, gateway.base, "auto-meet", "ann")
    try:
        await ann.add_tracks([(NumberedVideoTrack(320, 240), "camera"), (ToneTrack(), "mic")])
        started = await watcher.next("recording-started", timeout=20)
        stopped = await watcher.next("recording-stopped", timeout=20)
        assert stopped["recording"] == started["recording"]
        assert stopped["reason"] == "duration-limit"
        # A track published later is not a new start: still one file, nothing recording.
        seen = len(watcher.events)
        await ann.add_tracks([(NumberedVideoTrack(320, 240), "screen")])
        await asyncio.sleep(1.0)
        assert gateway.app[RECORDINGS].recordings == {}
        assert "recording-started" not in [e["type"] for e in watcher.events[seen:]]
        assert len(list(directory(gateway).glob("*.webm"))) == 1
        # An explicit start records the participant again, into a new file.
        status, body = await api(gateway, "POST", "/api/rooms/auto-meet/recording")
        assert status == 201, body
        again = await watcher.next("recording-started", timeout=20)
        assert again["recording"] == body["started"][0]["id"] != started["recording"]
        assert (await watcher.next("recording-stopped", timeout=20))["reason"] == "duration-limit"
    finally:
        await watcher.close()
        await ann.close()
    for path in directory(gateway).glob("*.webm"):
        assert_plays_in_order(play(path), 320, 240)
