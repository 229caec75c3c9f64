"""Server-made layers: a single-layer aiortc publisher in a room with a ladder, aiortc
viewers put on the layers the gateway makes of it, and back on the original."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from gateway.config import Config, Ladder, LadderRung
from tests.conftest import RunningGateway, loopback_config
from tests.support.media import NumberedVideoTrack
from tests.support.peers import Received, Viewer, wait_for, whep_watch, whip_publish

ORIGINAL = (640, 360)
MADE = {"240p": (426, 240), "120p": (214, 120)}


@pytest.fixture
def gateway_config(request: pytest.FixtureRequest) -> Config:
    config = loopback_config()
    config.processing.ladders = [
        Ladder("ladder-*", [LadderRung(240, 300), LadderRung(120, 120)]),
    ]
    # A test may lower the processing limit (indirect parametrization).
    config.processing.max_renditions = getattr(request, "param", config.processing.max_renditions)
    return config


def session_of(viewer: Viewer) -> str:
    return viewer.location.rsplit("/", 1)[1]


async def put_layer(gateway: RunningGateway, viewer: Viewer, body: dict[str, Any]) -> Any:
    url = f"{gateway.base}/api/sessions/{session_of(viewer)}/layer"
    async with gateway.http.put(url, json=body) as response:
        return response.status, await response.json()


async def receiving(gateway: RunningGateway, viewer: Viewer) -> dict[str, Any]:
    async with gateway.http.get(f"{gateway.base}/api/sessions/{session_of(viewer)}") as response:
        assert response.status == 200
        (mline,) = (await response.json())["receiving"].values()
    return dict(mline)


async def ladder_renditions(gateway: RunningGateway) -> list[dict[str, Any]]:
    stats = await gateway.stats()
    return [r for r in stats["processing"]["renditions"] if r["pipeline"] == "@ladder"]


async def steady_on(received: Received, size: tuple[int, int], frames: int = 15) -> None:
    await wait_for(lambda: received.size_log[-frames:] == [size] * frames, timeout=20)


def assert_continuous(received: Received) -> None:
    """Frame numbers in order, and at every change of picture size no more than one frame
    interval lost: one frame missing, or one shown twice. (A switch is made at the new
    layer's keyframe, the old layer shown until then; a made layer runs a few milliseconds
    behind the original, so its first keyframe can be of the frame last shown.)"""
    numbers = received.numbers
    log = received.size_log
    switches = {i for i in range(1, len(log)) if log[i] != log[i - 1]}
    assert switches, "no switch seen"
    for i in range(1, len(numbers)):
        step = numbers[i] - numbers[i - 1]
        context = list(zip(numbers[i - 3 : i + 3], log[i - 3 : i + 3], strict=False))
        if i in switches:
            assert 0 <= step <= 2, context
        else:
            assert step >= 1, context  # in order, never twice within a layer


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_a_capped_viewer_gets_made_layers_made_once_and_only_while_watched(
    gateway: RunningGateway, codec: str
) -> None:
    publisher = await whip_publish(
        gateway.http, gateway.base, "ladder-a", [NumberedVideoTrack(*ORIGINAL, fps=30)], codec
    )
    viewer = await whep_watch(gateway.http, gateway.base, "ladder-a", ("video",))
    other = await whep_watch(gateway.http, gateway.base, "ladder-a", ("video",))
    try:
        await steady_on(viewer.received, ORIGINAL)
        stats = await gateway.stats()
        (track,) = [t for t in stats["rooms"][0]["tracks"] if t["kind"] == "video"]
        made = {m["rid"]: m for m in track["made_layers"]}
        assert {rid: tuple(m["resolution"]) for rid, m in made.items()} == MADE
        assert not any(m["live"] for m in made.values())
        assert not await ladder_renditions(gateway), "made before anyone needs it"
        assert (await receiving(gateway, viewer))["selection"]["target"] is None

        # A tile of 480x270 takes the largest made layer within it.
        status, body = await put_layer(gateway, viewer, {"max_width": 480, "max_height": 270})
        assert status == 200, body
        await steady_on(viewer.received, MADE["240p"])
        mline = await receiving(gateway, viewer)
        assert mline["made"] and mline["layer"] == "240p" and mline["codec"] == codec
        (ladder,) = await ladder_renditions(gateway)
        assert ladder["decoders"] == 1 and ladder["encoders"] == 1
        assert [o["layer"] for o in ladder["outputs"]] == ["240p"]
        assert ladder["resolution"] == list(MADE["240p"])

        # Both viewers on the smallest: one encoder for the two; 240p stops (no viewer).
        for who in (viewer, other):
            status, body = await put_layer(gateway, who, {"layer": "120p"})
            assert status == 200, body
        await steady_on(viewer.received, MADE["120p"])
        await steady_on(other.received, MADE["120p"])
        await wait_for(lambda: gateway.registry.renditions.encoders == 1, timeout=10)
        (ladder,) = await ladder_renditions(gateway)
        assert [o["layer"] for o in ladder["outputs"]] == ["120p"]
        assert ladder["subscribers"] == 2 and ladder["decoders"] == 1
        # The original still goes out untouched: the publisher's track is never decoded
        # for its passthrough viewers.
        assert (await gateway.stats())["rooms"][0]["tracks"][0]["frames_decoded"] == 0

        # Lifting the caps: the original again, and the made layers stop.
        for who in (viewer, other):
            status, body = await put_layer(gateway, who, {})
            assert status == 200, body
        await steady_on(viewer.received, ORIGINAL)
        await wait_for(lambda: not gateway.registry.renditions.live, timeout=10)
        await wait_for(
            lambda: not any(t.name.startswith("rendition-") for t in threading.enumerate()),
            timeout=5,
        )
        assert_continuous(viewer.received)
        assert viewer.pc.connectionState == "connected"  # one RTP stream throughout

        status, body = await put_layer(gateway, viewer, {"layer": "1080p"})
        assert status == 404 and body["error"] == "unknown-layer", body
    finally:
        for peer in (viewer, other, publisher):
            await peer.close(gateway.http, gateway.base)
        await asyncio.sleep(0)


async def test_a_whep_viewer_asks_for_a_made_layer_by_name(gateway: RunningGateway) -> None:
    publisher = await whip_publish(
        gateway.http, gateway.base, "ladder-b", [NumberedVideoTrack(*ORIGINAL, fps=30)]
    )
    # The track's picture size is known from its first keyframe: only then are rungs made.
    await wait_for(lambda: _resolution_known(gateway), timeout=20)
    viewer = await whep_watch(gateway.http, gateway.base, "ladder-b", ("video",), layer="120p")
    try:
        await wait_for(lambda: len(viewer.received.size_log) >= 20, timeout=20)
        assert set(viewer.received.size_log) == {MADE["120p"]}
        mline = await receiving(gateway, viewer)
        assert mline["layer"] == "120p" and mline["selection"]["cap"] == {"rid": "120p"}
        response = await gateway.http.post(
            f"{gateway.base}/whep/ladder-b?layer=4k",
            data=viewer.pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp"},
        )
        assert response.status == 404 and (await response.json())["error"] == "unknown-layer"
    finally:
        await viewer.close(gateway.http, gateway.base)
        await publisher.close(gateway.http, gateway.base)


def _resolution_known(gateway: RunningGateway) -> bool:
    return any(
        p.resolution is not None
        for room in gateway.registry.rooms.values()
        for p in room.publishers
    )


@pytest.mark.parametrize("gateway_config", [1], indirect=True)
async def test_a_made_layer_past_the_processing_limit_is_refused_and_the_viewer_stays(
    gateway: RunningGateway,
) -> None:
    publisher = await whip_publish(
        gateway.http, gateway.base, "ladder-c", [NumberedVideoTrack(*ORIGINAL, fps=30)]
    )
    first = await whep_watch(gateway.http, gateway.base, "ladder-c", ("video",))
    second = await whep_watch(gateway.http, gateway.base, "ladder-c", ("video",))
    try:
        await steady_on(second.received, ORIGINAL)
        status, body = await put_layer(gateway, first, {"layer": "240p"})
        assert status == 200, body
        await steady_on(first.received, MADE["240p"])
        # The one rendition encoder the limit allows is taken: 503, and nothing changes.
        status, body = await put_layer(gateway, second, {"layer": "120p"})
        assert status == 503 and body["error"] == "too-many-renditions", body
        seen = len(second.received.size_log)
        await wait_for(lambda: len(second.received.size_log) >= seen + 15, timeout=10)
        assert set(second.received.size_log[seen:]) == {ORIGINAL}
        # The same rung is shared, not a second encoder: allowed.
        status, body = await put_layer(gateway, second, {"layer": "240p"})
        assert status == 200, body
        await steady_on(second.received, MADE["240p"])
    finally:
        for peer in (first, second, publisher):
            await peer.close(gateway.http, gateway.base)


async def test_a_room_without_a_ladder_has_no_made_layers(gateway: RunningGateway) -> None:
    publisher = await whip_publish(gateway.http, gateway.base, "plain", [NumberedVideoTrack()])
    viewer = await whep_watch(gateway.http, gateway.base, "plain", ("video",))
    try:
        await wait_for(lambda: len(viewer.received.numbers) >= 10, timeout=20)
        stats = await gateway.stats()
        assert stats["rooms"][0]["tracks"][0]["made_layers"] is None
        status, body = await put_layer(gateway, viewer, {"max_height": 120})
        assert status == 422 and body["error"] == "not-simulcast", body
    finally:
        await viewer.close(gateway.http, gateway.base)
        await publisher.close(gateway.http, gateway.base)
