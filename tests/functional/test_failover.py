"""Publisher failover: a stream publisher that comes back within rooms.publisher_grace_s
takes over its viewers, who keep their peer connections and resume at its first keyframe
with continuous RTP; one that does not come back (or comes back as someone else, or with
another codec) ends its stream as before."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Config
from gateway.rooms.session import Session
from tests.conftest import RunningGateway, loopback_config
from tests.support.killable_publisher import PublisherProcess
from tests.support.media import NumberedVideoTrack, ToneTrack
from tests.support.peers import Viewer, new_peer, wait_for, whep_watch, whip_publish
from tests.support.room_client import Participant
from tests.support.signaling import WsClient
from tests.support.tokens import bearer, secure_config, token

from .recording_checks import play

pytestmark = pytest.mark.timeout(120)

GRACE_S = 20.0
SECOND = 3000  # the returning publisher's first frame number


@pytest.fixture
def gateway_config(tmp_path: Path, request: pytest.FixtureRequest) -> Config:
    """Tests may parametrize it (indirect): "short" (a 1.5 s grace) or "tokens" (auth on)."""
    variant = getattr(request, "param", None)
    config = secure_config() if variant == "tokens" else loopback_config()
    config.ingest.publisher_timeout_s = 3.0
    config.rooms.publisher_grace_s = 1.5 if variant == "short" else GRACE_S
    config.recording.directory = str(tmp_path / "recordings")
    config.recording.auto_record = ["fail-*"]
    return config


@pytest.fixture
async def processes() -> AsyncIterator[list[PublisherProcess]]:
    started: list[PublisherProcess] = []
    yield started
    for publisher in started:
        await publisher.kill()


def sessions(gateway: RunningGateway, role: str) -> list[Session]:
    return [s for s in gateway.registry.sessions.values() if s.role == role and not s.closed]


async def inbound_video(viewer: Viewer) -> list[Any]:
    report = await viewer.pc.getStats()
    return [s for s in report.values() if s.type == "inbound-rtp" and s.kind == "video"]


async def test_a_returning_publisher_takes_over_its_viewers(
    gateway: RunningGateway, processes: list[PublisherProcess], tmp_path: Path
) -> None:
    watcher = await WsClient.connect(gateway.http, gateway.base)
    await watcher.send({"type": "watch", "room": "fail-1"})
    first = await PublisherProcess.start(gateway.base, "fail-1")
    processes.append(first)
    viewer = await whep_watch(gateway.http, gateway.base, "fail-1")
    # A room participant subscribed to the stream's video track by its id, too.
    participant = await Participant.join(gateway.http, gateway.base, "fail-1", "pat")
    try:
        await wait_for(lambda: len(viewer.received.numbers) > 45, timeout=30)
        await watcher.next("publisher-joined")
        (watching,) = sessions(gateway, "subscriber")
        tracks = (await gateway.stats())["rooms"][0]["tracks"]
        tracks_before = {t["id"] for t in tracks}
        video_id = next(t["id"] for t in tracks if t["kind"] == "video")
        await participant.watch(video_id, "video")
        by_participant = participant.received[video_id]
        await wait_for(lambda: len(by_participant.numbers) > 15, timeout=20)

        await first.kill()
        paused = await watcher.next("publisher-paused", "publisher-left", timeout=20)
        assert paused["type"] == "publisher-paused", paused
        assert paused["reason"] == "publisher-lost"
        assert paused["resume_within_s"] == GRACE_S
        room = (await gateway.stats())["rooms"][0]
        assert room["paused"]["reason"] == "publisher-lost", room
        assert not watching.closed and viewer.pc.connectionState == "connected"
        (stream_before,) = await inbound_video(viewer)
        numbers_before = len(viewer.received.numbers)

        second = await PublisherProcess.start(gateway.base, "fail-1", first=SECOND)
        processes.append(second)
        resumed = await watcher.next("publisher-resumed", timeout=20)
        assert resumed["previous"] == paused["publisher"]
        assert resumed["paused_s"] >= 0
        # The same viewer session and peer connection shows the new publisher's frames.
        await wait_for(lambda: sum(n >= SECOND for n in viewer.received.numbers) >= 30, timeout=20)
        assert sessions(gateway, "subscriber") == [watching]
        assert viewer.pc.connectionState == "connected"
        # The participant's subscription goes on too, on its one peer connection.
        await wait_for(lambda: sum(n >= SECOND for n in by_participant.numbers) >= 15, timeout=20)
        assert participant.pc.connectionState == "connected"
        after = viewer.received.numbers[numbers_before:]
        resumed_at = next(i for i, n in enumerate(after) if n >= SECOND)
        assert all(n >= SECOND for n in after[resumed_at:]), after
        assert all(n < SECOND for n in viewer.received.numbers[:numbers_before])
        # One continuous RTP stream: the same SSRC, and no sequence number jump (a jump
        # would count as thousands of packets lost).
        (stream_after,) = await inbound_video(viewer)
        assert stream_after.ssrc == stream_before.ssrc
        assert stream_after.packetsLost - stream_before.packetsLost < 30, (
            stream_before.packetsLost,
            stream_after.packetsLost,
        )
        room = (await gateway.stats())["rooms"][0]
        assert room["paused"] is None and room["takeovers"] == 1
        assert {t["id"] for t in room["tracks"]} == tracks_before
        video = next(t for t in room["tracks"] if t["kind"] == "video")
        assert video["takeovers"] == 1 and not video["paused"]
    finally:
        await participant.close()
        await viewer.close()
        await watcher.close()
        for publisher in processes:
            await publisher.kill()

    # Each publisher's recording is its own file: the first ends before the new
    # publisher's frames, the second starts with them.
    directory = tmp_path / "recordings"
    await wait_for(
        lambda: (
            sum(
                json.loads(p.read_text()).get("state") == "complete"
                for p in directory.glob("*.json")
            )
            >= 2
        ),
        timeout=30,
    )
    sidecars = sorted(
        (json.loads(p.read_text()) for p in directory.glob("*.json")), key=lambda s: s["start"]
    )
    assert len(sidecars) == 2
    old, new = (play(directory / s["file"]).numbers for s in sidecars)
    assert old and max(old) < SECOND
    assert new and min(new) >= SECOND


@pytest.mark.parametrize("gateway_config", ["short"], indirect=True)
async def test_the_stream_ends_when_its_publisher_does_not_return(
    gateway: RunningGateway,
) -> None:
    watcher = await WsClient.connect(gateway.http, gateway.base)
    await watcher.send({"type": "watch", "room": "gone"})
    video = NumberedVideoTrack(320, 240)
    publisher = await whip_publish(gateway.http, gateway.base, "gone", [video, ToneTrack()])
    viewer = await whep_watch(gateway.http, gateway.base, "gone")
    try:
        await wait_for(lambda: len(viewer.received.numbers) > 15, timeout=20)
        (watching,) = sessions(gateway, "subscriber")
        await publisher.close(gateway.http, gateway.base)
        paused = await watcher.next("publisher-paused", timeout=10)
        assert paused["reason"] == "deleted"
        left = await watcher.next("publisher-left", timeout=10)
        assert left["reason"] == "deleted" and left["publisher"] == paused["publisher"]
        await wait_for(lambda: watching.closed, timeout=10)
        assert watching.close_reason == "publisher-left"
        await wait_for(lambda: gateway.registry.room("gone") is None, timeout=5)
    finally:
        await viewer.close()
        await watcher.close()


async def test_another_codec_ends_the_kept_stream(gateway: RunningGateway) -> None:
    """Viewers negotiated VP8 cannot take H264: they end and come back to the new stream."""
    watcher = await WsClient.connect(gateway.http, gateway.base)
    await watcher.send({"type": "watch", "room": "recodec"})
    first = await whip_publish(
        gateway.http, gateway.base, "recodec", [NumberedVideoTrack(320, 240), ToneTrack()]
    )
    viewer = await whep_watch(gateway.http, gateway.base, "recodec")
    second = None
    try:
        await wait_for(lambda: len(viewer.received.numbers) > 15, timeout=20)
        (watching,) = sessions(gateway, "subscriber")
        await first.close(gateway.http, gateway.base)
        await watcher.next("publisher-paused", timeout=10)
        video = NumberedVideoTrack(320, 240, first=SECOND)
        second = await whip_publish(
            gateway.http, gateway.base, "recodec", [video, ToneTrack()], "H264"
        )
        left = await watcher.next("publisher-left", timeout=10)
        assert left["ended"] == "publisher-changed", left
        joined = await watcher.next("publisher-joined", timeout=10)
        assert {t["codec"] for t in joined["publisher"]["tracks"]} == {"H264", "opus"}
        await wait_for(lambda: watching.closed, timeout=10)
        assert watching.close_reason == "publisher-left"
        again = await whep_watch(gateway.http, gateway.base, "recodec", codec="H264")
        try:
            await wait_for(lambda: len(again.received.numbers) > 15, timeout=20)
            assert min(again.received.numbers) >= SECOND
        finally:
            await again.close()
    finally:
        await viewer.close()
        await watcher.close()
        if second is not None:
            await second.close(gateway.http, gateway.base)


def grants(identity: str) -> str:
    return token(identity, "stage", canPublish=True, canSubscribe=True)


async def post_offer(
    gateway: RunningGateway, room: str, bearer_token: str
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """A WHIP POST of a fresh offer that is refused: status, JSON body, headers."""
    pc = new_peer()
    try:
        for track in (NumberedVideoTrack(320, 240), ToneTrack()):
            pc.addTransceiver(track, direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        async with gateway.http.post(
            f"{gateway.base}/whip/{room}",
            data=pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp", **bearer(bearer_token)},
        ) as response:
            return response.status, await response.json(), dict(response.headers)
    finally:
        await pc.close()


@pytest.mark.parametrize("gateway_config", ["tokens"], indirect=True)
async def test_only_its_identity_takes_a_stream_over(gateway: RunningGateway) -> None:
    """With tokens: another identity is refused while the grace lasts; the same identity
    takes over, even before its old connection was found dead (that one is replaced)."""
    alice = grants("alice")
    watcher = await WsClient.connect(gateway.http, gateway.base, token=alice)
    await watcher.send({"type": "watch", "room": "stage"})
    tracks: list[Any] = [NumberedVideoTrack(320, 240), ToneTrack()]
    publishers = [await whip_publish(gateway.http, gateway.base, "stage", tracks, token=alice)]
    viewer = await whep_watch(gateway.http, gateway.base, "stage", token=grants("carol"))
    try:
        await wait_for(lambda: len(viewer.received.numbers) > 15, timeout=20)
        (watching,) = sessions(gateway, "subscriber")
        # Alice again, while her first connection is alive: it is replaced.
        tracks = [NumberedVideoTrack(320, 240, first=SECOND), ToneTrack()]
        publishers.append(
            await whip_publish(gateway.http, gateway.base, "stage", tracks, token=alice)
        )
        paused = await watcher.next("publisher-paused", timeout=10)
        assert paused["reason"] == "replaced"
        await watcher.next("publisher-resumed", timeout=10)
        await wait_for(lambda: sum(n >= SECOND for n in viewer.received.numbers) >= 15, timeout=20)
        await publishers[-1].close(gateway.http, gateway.base)
        await watcher.next("publisher-paused", timeout=10)
        # Bob may publish in the room, but not take alice's stream while it is kept.
        status, body, headers = await post_offer(gateway, "stage", grants("bob"))
        assert status == 409, body
        assert body["error"] == "publisher-returning"
        assert 1 <= body["retry_after"] <= GRACE_S
        assert headers["Retry-After"] == str(body["retry_after"])
        assert not watching.closed
    finally:
        await viewer.close()
        await watcher.close()
        for publisher in publishers:
            await publisher.close(gateway.http, gateway.base)
