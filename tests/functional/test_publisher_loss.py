"""A publisher that vanishes (kill -9) is ended as lost within ingest.publisher_timeout_s:
viewers and the room are told why, and its recording ends when its media did."""

from __future__ import annotations

import asyncio
import datetime
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Config
from gateway.rooms.session import Session
from tests.conftest import RunningGateway, loopback_config
from tests.support.killable_publisher import PublisherProcess
from tests.support.media import NumberedVideoTrack, ToneTrack
from tests.support.peers import wait_for, whep_watch, whip_publish
from tests.support.signaling import WsClient

from .recording_checks import play

pytestmark = pytest.mark.timeout(120)

TIMEOUT_S = 3.0


@pytest.fixture
def gateway_config(tmp_path: Path) -> Config:
    config = loopback_config()
    config.ingest.publisher_timeout_s = TIMEOUT_S
    # Viewers end with their publisher (test_failover.py keeps them for its return).
    config.rooms.publisher_grace_s = 0
    config.recording.directory = str(tmp_path / "recordings")
    config.recording.auto_record = ["lost-*"]
    return config


@pytest.fixture
async def publisher_process() -> AsyncIterator[list[PublisherProcess]]:
    started: list[PublisherProcess] = []
    yield started
    for publisher in started:
        await publisher.kill()


def sessions(gateway: RunningGateway, role: str) -> list[Session]:
    return [s for s in gateway.registry.sessions.values() if s.role == role]


async def test_a_killed_publisher_is_lost_within_the_timeout(
    gateway: RunningGateway, publisher_process: list[PublisherProcess], tmp_path: Path
) -> None:
    watcher = await WsClient.connect(gateway.http, gateway.base)
    await watcher.send({"type": "watch", "room": "lost-1"})
    publisher = await PublisherProcess.start(gateway.base, "lost-1")
    publisher_process.append(publisher)
    viewer = await whep_watch(gateway.http, gateway.base, "lost-1")
    try:
        await wait_for(lambda: len(viewer.received.numbers) > 45, timeout=30)
        (published,) = sessions(gateway, "publisher")
        (watching,) = sessions(gateway, "subscriber")
        await watcher.next("publisher-joined")

        await publisher.kill()
        killed_at, killed_wall = time.monotonic(), time.time()
        left = await watcher.next("publisher-left", timeout=TIMEOUT_S + 15)
        told_after = time.monotonic() - killed_at
        assert left["reason"] == "publisher-lost", left
        assert published.close_reason == "publisher-lost"
        # Not before the timeout (the peer was silent that long), and well before the
        # ~30 s of ICE consent checks that noticed it without the watchdog.
        assert TIMEOUT_S - 0.5 <= told_after <= TIMEOUT_S + 10, told_after
        await wait_for(lambda: watching.closed, timeout=10)
        assert watching.close_reason == "publisher-lost"
    finally:
        await viewer.close()
        await watcher.close()

    # The recording is finalized, and ends when the media did, not when loss was noticed.
    directory = tmp_path / "recordings"
    await wait_for(
        lambda: any(
            json.loads(p.read_text()).get("state") == "complete" for p in directory.glob("*.json")
        ),
        timeout=20,
    )
    (sidecar_path,) = directory.glob("*.json")
    sidecar: dict[str, Any] = json.loads(sidecar_path.read_text())
    ended = datetime.datetime.fromisoformat(sidecar["end"]).timestamp()
    assert killed_wall - 1.5 <= ended <= killed_wall + 0.5, (ended - killed_wall, sidecar)
    got = play(directory / sidecar["file"])
    # The file holds the frames up to the kill: the last ones the publisher sent.
    assert got.numbers and publisher.sent - got.numbers[-1] <= 45, (publisher.sent, got.numbers[-1])


async def test_a_publisher_with_a_paused_track_is_not_lost(gateway: RunningGateway) -> None:
    """A video track that stops sending (paused, muted to nothing) while audio goes on: the
    session still sends, so it stays."""
    video = NumberedVideoTrack(320, 240, fps=30)
    paused = asyncio.Event()
    send_frame = video.recv

    async def recv() -> Any:
        if video.count >= 30:
            paused.set()
            await asyncio.Event().wait()  # never again
        return await send_frame()

    video.recv = recv  # type: ignore[method-assign]
    publisher = await whip_publish(gateway.http, gateway.base, "paused", [video, ToneTrack()])
    viewer = await whep_watch(gateway.http, gateway.base, "paused")
    try:
        await asyncio.wait_for(paused.wait(), 20)
        (session,) = sessions(gateway, "publisher")
        audio_before = viewer.received.audio_frames
        await asyncio.sleep(TIMEOUT_S * 2)
        assert not session.closed, session.close_reason
        assert viewer.received.audio_frames > audio_before + 50  # the tone still flows
    finally:
        await viewer.close()
        await publisher.close(gateway.http, gateway.base)
