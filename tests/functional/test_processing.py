"""Renditions end to end: an aiortc publisher, viewers through named pipelines and not."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from gateway.config import Config
from tests.conftest import RunningGateway, loopback_config
from tests.support.media import NumberedVideoTrack, ToneTrack, mean_chroma
from tests.support.peers import (
    Received,
    Viewer,
    new_peer,
    wait_for,
    whep_watch,
    whip_publish,
)
from tests.support.room_client import Participant
from tests.support.signaling import WsClient, ws_subscribe


@pytest.fixture
def gateway_config() -> Config:
    config = loopback_config()
    # Third-party-style processors, by import path (what a config.yaml can name).
    config.processing.pipelines["boom"] = ["tests.support.processors:Exploding"]
    config.processing.pipelines["slow"] = [{"tests.support.processors:Sluggish": {"delay_ms": 150}}]
    return config


def grey(received: Received) -> bool:
    frame = received.last_frame
    if frame is None:
        return False
    u, v = mean_chroma(frame)
    return abs(u - 128) < 4 and abs(v - 128) < 4


def colourful(received: Received) -> bool:
    frame = received.last_frame
    if frame is None:
        return False
    u, v = mean_chroma(frame)
    # The publisher paints U=90, V=200 behind its barcode.
    return abs(u - 90) < 8 and abs(v - 200) < 8


def in_order(numbers: list[int]) -> None:
    assert numbers == sorted(numbers), "frames out of order"
    assert len(set(numbers)) == len(numbers), "a frame arrived twice"


async def renditions(gateway: RunningGateway) -> list[dict[str, Any]]:
    async with gateway.http.get(f"{gateway.base}/api/renditions") as response:
        assert response.status == 200
        body = await response.json()
    return list(body["renditions"])


async def close_all(gateway: RunningGateway, *peers: Any) -> None:
    for peer in peers:
        await peer.close(gateway.http, gateway.base)
    await asyncio.sleep(0)


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_grey_viewers_and_a_colour_viewer_of_one_track(
    gateway: RunningGateway, codec: str
) -> None:
    video = NumberedVideoTrack(640, 360, fps=30)
    publisher = await whip_publish(gateway.http, gateway.base, "cam", [video, ToneTrack()], codec)
    plain = await whep_watch(gateway.http, gateway.base, "cam")
    greys = [await whep_watch(gateway.http, gateway.base, "cam", pipeline="gray") for _ in range(2)]
    try:
        await wait_for(lambda: len(plain.received.numbers) >= 45, timeout=30)
        await wait_for(lambda: all(len(v.received.numbers) >= 45 for v in greys), timeout=30)
        assert colourful(plain.received), mean_chroma(plain.received.last_frame)
        for viewer in greys:
            got = viewer.received
            assert grey(got), mean_chroma(got.last_frame)
            assert got.sizes == {(640, 360)}
            in_order(got.numbers)
            # Processing is not skipping: nearly every published frame is shown.
            assert got.numbers[-1] - got.numbers[0] <= len(got.numbers) + 10
            assert got.audio_frames > 0  # audio passes through unprocessed
        stats = await gateway.stats()
        (room,) = stats["rooms"]
        track = next(t for t in room["tracks"] if t["kind"] == "video")
        assert track["frames_decoded"] == 0, "the passthrough path decoded"
        (rendition,) = stats["processing"]["renditions"]
        assert rendition["pipeline"] == "gray" and rendition["codec"] == codec
        assert rendition["subscribers"] == 2
        assert rendition["timing"]["latency"]["p95_ms"] < 100
    finally:
        await close_all(gateway, plain, *greys, publisher)


async def test_five_viewers_of_one_rendition_share_one_decode_and_encode(
    gateway: RunningGateway,
) -> None:
    publisher = await whip_publish(gateway.http, gateway.base, "cam", [NumberedVideoTrack()])
    viewers = [
        await whep_watch(gateway.http, gateway.base, "cam", ("video",), pipeline="gray")
        for _ in range(5)
    ]
    try:
        await wait_for(lambda: all(len(v.received.numbers) >= 60 for v in viewers), timeout=40)
        (rendition,) = await renditions(gateway)
        assert rendition["subscribers"] == 5
        assert rendition["decoders"] == 1 and rendition["encoders"] == 1
        assert rendition["encoder_opens"] == 1 and rendition["decoder_opens"] == 1
        # One decode per frame in, one encode per frame processed: not one per viewer.
        assert rendition["frames_decoded"] <= rendition["frames_in"]
        assert rendition["frames_encoded"] <= rendition["frames_processed"]
        assert rendition["frames_processed"] <= rendition["frames_decoded"]
        assert rendition["frames_sent"] >= 5 * 60
        assert rendition["frames_sent"] <= 5 * rendition["frames_encoded"]
        for viewer in viewers:
            assert grey(viewer.received)
            in_order(viewer.received.numbers)
    finally:
        await close_all(gateway, *viewers, publisher)
    # The last viewer gone, decoding and encoding stop (worker thread included).
    await wait_for(lambda: not gateway.registry.renditions.live, timeout=5)
    await wait_for(
        lambda: not any(t.name.startswith("rendition-") for t in threading.enumerate()),
        timeout=5,
    )


async def test_a_processor_that_raises_is_disabled_and_reported(gateway: RunningGateway) -> None:
    watcher = await WsClient.connect(gateway.http, gateway.base)
    await watcher.send({"type": "watch", "room": "cam"})
    publisher = await whip_publish(gateway.http, gateway.base, "cam", [NumberedVideoTrack()])
    plain = await whep_watch(gateway.http, gateway.base, "cam", ("video",))
    broken = await whep_watch(gateway.http, gateway.base, "cam", ("video",), pipeline="boom")
    try:
        event = await watcher.next("processor-disabled", timeout=20)
        assert event["pipeline"] == "boom" and event["stage"] == "exploding"
        assert "RuntimeError: boom" in event["message"]
        # Frames pass unprocessed by the failing stage: the picture keeps flowing.
        await wait_for(lambda: len(broken.received.numbers) >= 30, timeout=20)
        await wait_for(lambda: len(plain.received.numbers) >= 30, timeout=20)
        assert colourful(broken.received) and colourful(plain.received)
        in_order(broken.received.numbers)
        (rendition,) = await renditions(gateway)
        (stage,) = rendition["pipeline_stats"]["stages"]
        assert stage["disabled"] and stage["failures"] == 5
        assert rendition["events"][0]["kind"] == "processor_disabled"
    finally:
        await close_all(gateway, plain, broken, publisher)
        await watcher.close()


async def test_a_slow_processor_drops_frames_and_latency_stays_bounded(
    gateway: RunningGateway,
) -> None:
    video = NumberedVideoTrack(fps=30)
    publisher = await whip_publish(gateway.http, gateway.base, "cam", [video])
    plain = await whep_watch(gateway.http, gateway.base, "cam", ("video",))
    slow = await whep_watch(gateway.http, gateway.base, "cam", ("video",), pipeline="slow")
    try:
        await wait_for(lambda: len(slow.received.numbers) >= 20, timeout=30)
        (rendition,) = await renditions(gateway)
        # 150 ms per frame: about 6 of 30 frames a second are processed, the rest dropped.
        assert rendition["drops"]["latest_wins"] >= 2 * rendition["frames_processed"]
        assert rendition["drops"]["queue_overflow"] == 0
        # Frame in to packets out: one processing time plus at most one frame's wait.
        assert rendition["timing"]["latency"]["p95_ms"] < 150 + 150 + 150
        got = slow.received
        in_order(got.numbers)
        # What the viewer shows is recent, not a growing backlog: compare with what the
        # publisher has sent by now (2 frames a 30 fps ~ 67 ms; allow the network path).
        lag = video.count - got.numbers[-1]
        assert lag <= 20, f"the processed picture is {lag} frames behind"
        assert len(plain.received.numbers) > 2 * len(got.numbers)
    finally:
        await close_all(gateway, plain, slow, publisher)


async def test_live_parameter_change_shows_in_the_pixels(gateway: RunningGateway) -> None:
    publisher = await whip_publish(gateway.http, gateway.base, "cam", [NumberedVideoTrack()])
    viewer = await whep_watch(gateway.http, gateway.base, "cam", ("video",), pipeline="gray")
    client = await WsClient.connect(gateway.http, gateway.base)
    try:
        await wait_for(lambda: grey(viewer.received), timeout=20)
        (rendition,) = await renditions(gateway)
        url = f"{gateway.base}/api/renditions/{rendition['id']}"
        body = {"stage": "grayscale", "params": {"strength": 0.0}}
        async with gateway.http.patch(url, json=body) as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["params"] == {"strength": 0.0}
        await wait_for(lambda: colourful(viewer.received), timeout=10)
        # The same over the WebSocket, back to grey.
        await client.request(
            {
                "type": "pipeline-update",
                "rendition": rendition["id"],
                "stage": "grayscale",
                "params": {"strength": 1.0},
            }
        )
        reply = await client.next("pipeline-updated", "error")
        assert reply["type"] == "pipeline-updated", reply
        await wait_for(lambda: grey(viewer.received), timeout=10)
        # Bad parameters and unknown stages are refused, the rendition keeps going.
        async with gateway.http.patch(
            url, json={"stage": "grayscale", "params": {"strength": 3}}
        ) as response:
            assert response.status == 400
            assert (await response.json())["error"] == "invalid-params"
        async with gateway.http.patch(url, json={"stage": "nope", "params": {}}) as response:
            assert response.status == 404
            assert (await response.json())["error"] == "unknown-stage"
        in_order(viewer.received.numbers)
    finally:
        await client.close()
        await close_all(gateway, viewer, publisher)


async def test_a_viewer_switches_pipeline_without_renegotiating(gateway: RunningGateway) -> None:
    publisher = await whip_publish(gateway.http, gateway.base, "cam", [NumberedVideoTrack()])
    viewer = await whep_watch(gateway.http, gateway.base, "cam", ("video",))
    session = viewer.location.rsplit("/", 1)[1]
    url = f"{gateway.base}/api/sessions/{session}/pipeline"
    try:
        await wait_for(lambda: colourful(viewer.received), timeout=20)
        async with gateway.http.put(url, json={"pipeline": "gray"}) as response:
            assert response.status == 200, await response.text()
            body = await response.json()
        assert body["mids"] and next(iter(body["receiving"].values()))["pipeline"] == "gray"
        await wait_for(lambda: grey(viewer.received), timeout=10)
        async with gateway.http.get(f"{gateway.base}/api/sessions/{session}") as response:
            (receiving,) = (await response.json())["receiving"].values()
        assert receiving["pipeline"] == "gray" and receiving["codec"] == "VP8"
        async with gateway.http.put(url, json={"pipeline": None}) as response:
            assert response.status == 200
        await wait_for(lambda: colourful(viewer.received), timeout=10)
        await wait_for(lambda: not gateway.registry.renditions.live, timeout=5)
        numbers = viewer.received.numbers
        in_order(numbers)
        # One RTP stream throughout: the numbers kept coming, no reconnect.
        assert viewer.pc.connectionState == "connected"
        async with gateway.http.put(url, json={"pipeline": "nope"}) as response:
            assert response.status == 400
            assert (await response.json())["error"] == "unknown-pipeline"
        async with gateway.http.put(url, json={"pipeline": "quiet"}) as response:
            assert response.status == 422  # an audio pipeline; this viewer receives no audio
    finally:
        await close_all(gateway, viewer, publisher)


async def test_websocket_subscribe_through_a_pipeline_and_switch(gateway: RunningGateway) -> None:
    publisher = await whip_publish(gateway.http, gateway.base, "cam", [NumberedVideoTrack()])
    client = await WsClient.connect(gateway.http, gateway.base)
    pc, session, received, tasks = await ws_subscribe(client, "cam", pipeline="gray")
    try:
        answer = next(e for e in client.events if e["type"] == "answer")
        (video,) = [r for r in answer["receiving"].values() if r["pipeline"] == "gray"]
        assert video["rendition"] == gateway.registry.renditions.live[0].id
        await wait_for(lambda: grey(received), timeout=20)
        await client.request({"type": "pipeline", "session": session, "pipeline": None})
        reply = await client.next("pipeline-switched", "error")
        assert reply["type"] == "pipeline-switched", reply
        await wait_for(lambda: colourful(received), timeout=10)
        await client.request({"type": "subscribe", "room": "cam", "sdp": "v=0", "pipeline": "x"})
        error = await client.next("error")
        assert error["code"] == "unknown-pipeline"
    finally:
        for task in tasks:
            task.cancel()
        await pc.close()
        await client.close()
        await close_all(gateway, publisher)


async def test_audio_pipelines_change_the_samples(gateway: RunningGateway) -> None:
    publisher = await whip_publish(gateway.http, gateway.base, "cam", [ToneTrack()])
    plain = await whep_watch(gateway.http, gateway.base, "cam", ("audio",))
    quiet = await whep_watch(gateway.http, gateway.base, "cam", ("audio",), pipeline="quiet")
    silent = await whep_watch(gateway.http, gateway.base, "cam", ("audio",), pipeline="silent")
    try:
        viewers: list[Viewer] = [plain, quiet, silent]
        await wait_for(lambda: all(v.received.audio_frames >= 100 for v in viewers), timeout=30)
        loud, soft = plain.received.audio_peak, quiet.received.audio_peak
        # -12 dB is a quarter of the amplitude (Opus round trips are not exact).
        assert loud > 4000
        assert 0.15 * loud < soft < 0.4 * loud, (loud, soft)
        assert silent.received.audio_peak < 50
        stats = {r["pipeline"]: r for r in await renditions(gateway)}
        assert stats["quiet"]["codec"] == "opus" and stats["quiet"]["frames_encoded"] > 50
    finally:
        await close_all(gateway, plain, quiet, silent, publisher)


async def test_one_rendition_encodes_once_per_codec_its_viewers_take(
    gateway: RunningGateway,
) -> None:
    publisher = await whip_publish(
        gateway.http, gateway.base, "cam", [NumberedVideoTrack()], video_codec="H264"
    )
    h264 = await whep_watch(gateway.http, gateway.base, "cam", ("video",), pipeline="gray")
    vp8 = await whep_watch(
        gateway.http, gateway.base, "cam", ("video",), pipeline="gray", codec="VP8"
    )
    try:
        for viewer in (h264, vp8):
            await wait_for(
                lambda v=viewer: len(v.received.numbers) >= 30 and grey(v.received), timeout=20
            )
            in_order(viewer.received.numbers)
        (rendition,) = await renditions(gateway)
        # One decode and one pipeline run per frame; one encode per codec.
        assert rendition["decoders"] == 1 and rendition["encoders"] == 2
        assert {o["codec"] for o in rendition["outputs"]} == {"H264", "VP8"}
        assert all(o["subscribers"] == 1 for o in rendition["outputs"])
        assert rendition["frames_processed"] <= rendition["frames_decoded"]
        assert rendition["frames_encoded"] <= 2 * rendition["frames_processed"]
        await vp8.close(gateway.http, gateway.base)
        await wait_for(lambda: gateway.registry.renditions.encoders == 1, timeout=5)
        (rendition,) = await renditions(gateway)
        assert rendition["codecs"] == ["H264"]
    finally:
        await close_all(gateway, h264, publisher)


async def test_unknown_pipeline_is_refused_at_subscribe(gateway: RunningGateway) -> None:
    publisher = await whip_publish(gateway.http, gateway.base, "cam", [NumberedVideoTrack()])
    try:
        async with gateway.http.post(
            f"{gateway.base}/whep/cam?pipeline=nope",
            data="v=0\r\n",
            headers={"Content-Type": "application/sdp"},
        ) as response:
            assert response.status == 400
            body = await response.json()
        assert body["error"] == "unknown-pipeline" and "gray" in body["message"]
        assert not gateway.registry.renditions.live
        async with gateway.http.get(f"{gateway.base}/api/pipelines") as response:
            names = {p["name"]: p["kind"] for p in (await response.json())["pipelines"]}
        assert names["gray"] == "video" and names["quiet"] == "audio"
    finally:
        await close_all(gateway, publisher)


async def test_room_participants_receive_a_track_through_a_pipeline(
    gateway: RunningGateway,
) -> None:
    alice = await Participant.join(gateway.http, gateway.base, "meet", "alice")
    bob = await Participant.join(gateway.http, gateway.base, "meet", "bob")
    carol = await Participant.join(gateway.http, gateway.base, "meet", "carol")
    try:
        (track,) = await alice.add_tracks([(NumberedVideoTrack(), "camera")])
        await bob.watch(track, "video", pipeline="gray")
        await carol.watch(track, "video")
        await wait_for(lambda: grey(bob.received[track]), timeout=20)
        await wait_for(lambda: colourful(carol.received[track]), timeout=20)
        # Bob switches back to the unprocessed track over his socket: no new offer.
        await bob.client.request({"type": "pipeline", "pipeline": None})
        reply = await bob.client.next("pipeline-switched", "error")
        assert reply["type"] == "pipeline-switched" and reply["mids"], reply
        await wait_for(lambda: colourful(bob.received[track]), timeout=10)
        await bob.client.request({"type": "pipeline", "pipeline": "privacy"})
        await bob.client.next("pipeline-switched")
        await wait_for(lambda: bool(gateway.registry.renditions.live), timeout=5)
        # The track ends: its renditions stop with it.
        await alice.client.request({"type": "unpublish", "track": track})
        await wait_for(lambda: not gateway.registry.renditions.live, timeout=5)
        in_order(bob.received[track].numbers)
    finally:
        for participant in (alice, bob, carol):
            await participant.close()


async def test_viewer_keyframe_requests_go_to_the_rendition_encoder_not_upstream(
    gateway: RunningGateway,
) -> None:
    publisher = await whip_publish(gateway.http, gateway.base, "cam", [NumberedVideoTrack()])
    first = await whep_watch(gateway.http, gateway.base, "cam", ("video",), pipeline="gray")
    late: list[Viewer] = []
    try:
        await wait_for(lambda: len(first.received.numbers) >= 20, timeout=20)
        stats = await gateway.stats()
        track = next(t for t in stats["rooms"][0]["tracks"] if t["kind"] == "video")
        upstream_before = track["keyframe_requests_upstream"]
        (rendition,) = stats["processing"]["renditions"]
        keyframes_before = rendition["keyframes_encoded"]
        # Late viewers each need a keyframe to start: the rendition's encoder makes them.
        for _ in range(3):
            viewer = await whep_watch(
                gateway.http, gateway.base, "cam", ("video",), pipeline="gray"
            )
            late.append(viewer)
            await wait_for(lambda v=viewer: len(v.received.numbers) >= 5, timeout=10)
            assert grey(viewer.received)
        stats = await gateway.stats()
        track = next(t for t in stats["rooms"][0]["tracks"] if t["kind"] == "video")
        (rendition,) = stats["processing"]["renditions"]
        assert rendition["keyframes_encoded"] > keyframes_before
        assert rendition["keyframe_requests"]["encoder"] >= 1
        # The publisher heard nothing of it (its decoder needed no new keyframe).
        assert track["keyframe_requests_upstream"] == upstream_before
        assert rendition["keyframe_requests"]["upstream"] <= 2
    finally:
        await close_all(gateway, first, *late, publisher)


async def test_a_viewer_vanishing_mid_handshake_leaves_no_rendition(
    gateway: RunningGateway,
) -> None:
    gateway.config.ice.connect_timeout_s = 1.0
    publisher = await whip_publish(gateway.http, gateway.base, "cam", [NumberedVideoTrack()])
    try:
        pc = new_peer()
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        async with gateway.http.post(
            f"{gateway.base}/whep/cam?pipeline=gray",
            data=pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp"},
        ) as response:
            assert response.status == 201
        # The client goes away without applying the answer: ICE never connects.
        await pc.close()
        assert len(gateway.registry.renditions.live) == 1
        await wait_for(lambda: not gateway.registry.renditions.live, timeout=10)
        await wait_for(
            lambda: not any(t.name.startswith("rendition-") for t in threading.enumerate()),
            timeout=5,
        )
        # The track itself is untouched: a passthrough viewer still gets it.
        viewer = await whep_watch(gateway.http, gateway.base, "cam", ("video",))
        await wait_for(lambda: len(viewer.received.numbers) >= 10, timeout=20)
        await viewer.close(gateway.http, gateway.base)
    finally:
        await close_all(gateway, publisher)


async def test_the_publisher_leaving_ends_its_renditions_and_their_viewers(
    gateway: RunningGateway, gateway_config: Config
) -> None:
    # Viewers end with their publisher here (test_failover.py keeps them for its
    # return); the grace is read when the room is created.
    gateway_config.rooms.publisher_grace_s = 0
    publisher = await whip_publish(gateway.http, gateway.base, "cam", [NumberedVideoTrack()])
    viewer = await whep_watch(gateway.http, gateway.base, "cam", ("video",), pipeline="edges")
    try:
        await wait_for(lambda: len(viewer.received.sizes) > 0, timeout=20)
        session = gateway.registry.sessions[viewer.location.rsplit("/", 1)[1]]
        await publisher.close(gateway.http, gateway.base)
        await wait_for(lambda: not gateway.registry.renditions.live, timeout=5)
        await wait_for(lambda: session.closed, timeout=5)
        assert session.close_reason == "publisher-left"
    finally:
        await viewer.close()
