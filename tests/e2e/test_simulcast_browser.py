"""Chromium publishes simulcast over WHIP: each layer is received on its own, viewers get
the best layer that flows by default, or the layer they ask for."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from gateway.config import Config
from tests.conftest import RunningGateway
from tests.support.peers import wait_for, whep_watch

from .conftest import CAMERA_HEIGHT, CAMERA_WIDTH
from .pages import GATHERED, open_page, open_watcher, start_publisher, wait_js, watch_stats

# Three encodings (a quarter, a half, full size), as the web app and most SFU clients
# send them: libwebrtc sends two of them for a 640x480 camera (docs/architecture.md).
SIMULCAST_PUBLISH = (
    "async ({room, width, height, codec}) => {"
    + GATHERED
    + """
  const stream = await navigator.mediaDevices.getUserMedia({
    video: {width: {exact: width}, height: {exact: height}}, audio: false,
  });
  stream.getVideoTracks()[0].contentHint = "detail";
  const pc = new RTCPeerConnection({iceServers: []});
  const transceiver = pc.addTransceiver(stream.getVideoTracks()[0], {
    direction: "sendonly",
    sendEncodings: [
      {rid: "q", scaleResolutionDownBy: 4}, {rid: "h", scaleResolutionDownBy: 2}, {rid: "f"},
    ],
  });
  transceiver.setCodecPreferences(RTCRtpSender.getCapabilities("video").codecs.filter(
    (c) => [`video/${codec}`, "video/rtx"].includes(c.mimeType.toLowerCase())
      && (codec !== "h264" || (c.sdpFmtpLine ?? "").includes("packetization-mode=1"))));
  const {location, answer} = await post(`/whip/${room}`, await gathered(pc));
  await pc.setRemoteDescription({type: "answer", sdp: answer});
  window.whip = {pc, location};
  return answer;
}"""
)

SENT = """async () => {
  const sent = {};
  (await window.whip.pc.getStats()).forEach((s) => {
    if (s.type === "outbound-rtp") sent[s.rid] = [s.frameWidth ?? 0, s.framesSent ?? 0];
  });
  return sent;
}"""


def video_track(gateway: RunningGateway, room: str) -> Any:
    (track,) = [t for t in gateway.registry.rooms[room].publishers if t.kind == "video"]
    return track


def flowing(gateway: RunningGateway, room: str) -> set[str]:
    track = video_track(gateway, room)
    return {layer["rid"] for layer in track.layer_info() if layer["flowing"]}


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_each_simulcast_layer_reaches_its_viewers(
    gateway: RunningGateway, browser: Browser, codec: str, gateway_config: Config
) -> None:
    # Ingest and the viewers' own choices, not the estimate's: on a loaded machine these
    # aiortc viewers (on the gateway's own event loop) lose packets for real, and the
    # estimate then rightly steps them down (tests/e2e/test_viewer_bandwidth.py tests
    # that). Read when each viewer's session is made.
    gateway_config.media.adapt_layers = False
    context = await browser.new_context()
    page = await open_page(context, gateway.base + "/", "simulcast")
    answer = await page.evaluate(
        SIMULCAST_PUBLISH,
        {
            "room": "layers",
            "width": CAMERA_WIDTH,
            "height": CAMERA_HEIGHT,
            "codec": codec.lower(),
        },
    )
    assert "a=simulcast:recv q;h;f" in answer, answer
    await wait_for(lambda: "layers" in gateway.registry.rooms, timeout=15)
    await wait_for(lambda: {"q", "h"} <= flowing(gateway, "layers"), timeout=30)
    track = video_track(gateway, "layers")
    assert track.codec == codec and set(track.layers) == {"q", "h", "f"}
    described = {layer["rid"]: layer for layer in track.layer_info()}
    assert described["q"]["resolution"] == [CAMERA_WIDTH // 4, CAMERA_HEIGHT // 4]
    assert described["h"]["resolution"] == [CAMERA_WIDTH // 2, CAMERA_HEIGHT // 2]
    assert described["q"]["ssrc"] != described["h"]["ssrc"]

    best = await whep_watch(gateway.http, gateway.base, "layers", kinds=("video",))
    low = await whep_watch(gateway.http, gateway.base, "layers", kinds=("video",), layer="q")
    try:
        # Each viewer's first keyframe may need a second PLI: libwebrtc ignores one right
        # after the keyframes that start its layers (KeyframeRequester sends it again).
        await wait_for(lambda: len(best.received.size_log) > 45, timeout=30)
        await wait_for(lambda: len(low.received.size_log) > 45, timeout=30)
        # The default viewer gets the best layer that flows (h: libwebrtc sends no f at
        # this camera size); the one that asked gets q, each at the layer's own size.
        assert set(best.received.size_log[-30:]) == {(CAMERA_WIDTH // 2, CAMERA_HEIGHT // 2)}
        assert set(low.received.size_log) == {(CAMERA_WIDTH // 4, CAMERA_HEIGHT // 4)}
        stats = track.stats()
        by_rid = {layer["rid"]: layer for layer in stats["layers"]}
        assert by_rid["q"]["subscribers"] == 1 and by_rid["q"]["frames"] > 45
        assert next(layer for layer in stats["layers"] if layer["followed"])["rid"] == "h"
        assert stats["subscribers"] == 1  # the default viewer; the other is q's
        sent = await page.evaluate(SENT)
        assert sent["q"][1] > 45 and sent["h"][1] > 45, sent

        # A layer the track does not have: a clear error, nothing half made.
        async with gateway.http.post(
            f"{gateway.base}/whep/layers?layer=zz",
            data=best.pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp"},
        ) as response:
            body = await response.json()
        assert (response.status, body["error"]) == (404, "unknown-layer"), body
        assert len(gateway.registry.rooms["layers"].subscribers) == 2

        # The default viewer switches live to the layer that fits a 200x150 tile: the same
        # RTP stream goes on, the old layer until the new one's keyframe (no gap).
        session = best.location.rsplit("/", 1)[1]
        seen = len(best.received.size_log)
        async with gateway.http.put(
            f"{gateway.base}/api/sessions/{session}/layer",
            json={"max_width": 200, "max_height": 150},
        ) as response:
            switched = await response.json()
        assert response.status == 200, switched
        assert switched["mids"] == ["0"], switched
        (receiving,) = switched["receiving"].values()
        assert "q" in (receiving["layer"], receiving.get("switching_to")), switched
        small = (CAMERA_WIDTH // 4, CAMERA_HEIGHT // 4)
        await wait_for(lambda: best.received.size_log[-15:] == [small] * 15, timeout=20)
        after = best.received.size_log[seen:]
        first_small = after.index(small)
        assert set(after[first_small:]) == {small}  # one switch, no way back
        arrival = best.received.arrival[seen:]
        gaps = [b - a for a, b in itertools.pairwise(arrival)]
        # At 30 fps a frame is due every 33 ms: the switch costs no more than a busy
        # machine's jitter, never the wait for the new layer's keyframe.
        assert max(gaps[max(0, first_small - 3) : first_small + 3]) < 0.25, gaps
        assert best.pc.connectionState == "connected"
        async with gateway.http.get(f"{gateway.base}/api/sessions/{session}") as response:
            (receiving,) = (await response.json())["receiving"].values()
        assert receiving["layer"] == "q" and "switching_to" not in receiving, receiving
        # Asked for a layer the track lacks, or a size that is not one: clear errors.
        async with gateway.http.put(
            f"{gateway.base}/api/sessions/{session}/layer", json={"layer": "zz"}
        ) as response:
            assert (response.status, (await response.json())["error"]) == (404, "unknown-layer")
        async with gateway.http.put(
            f"{gateway.base}/api/sessions/{session}/layer", json={"max_width": -3}
        ) as response:
            assert (response.status, (await response.json())["error"]) == (400, "invalid-message")
    finally:
        await best.close(gateway.http, gateway.base)
        await low.close(gateway.http, gateway.base)
        await context.close()


def layer(gateway: RunningGateway, room: str, rid: str) -> dict[str, Any]:
    info = video_track(gateway, room).layer_info()
    return next(entry for entry in info if entry["rid"] == rid)


async def test_a_layer_nobody_takes_is_stopped_at_the_publisher(
    gateway: RunningGateway, browser: Browser
) -> None:
    """The publish page (WebSocket) sends f and h. Unwatched, the gateway tells it to stop
    f (h, the smallest, always goes on); a viewer comes: f is asked for again, and Chromium
    sends it again. (How soon the viewer then gets the full picture is Chromium's bandwidth
    estimate ramping up again, slow on a busy machine: not asserted.)"""
    context = await browser.new_context()
    try:
        await start_publisher(context, gateway.base, "dynacast")
        await wait_for(lambda: "dynacast" in gateway.registry.rooms, timeout=15)
        await wait_for(lambda: layer(gateway, "dynacast", "f")["flowing"], timeout=30)
        await wait_for(lambda: not layer(gateway, "dynacast", "f")["active"], timeout=15)
        # Chromium stopped encoding it: no frame of f for a second.
        await wait_for(lambda: not layer(gateway, "dynacast", "f")["flowing"], timeout=15)
        frames = layer(gateway, "dynacast", "f")["frames"]
        assert layer(gateway, "dynacast", "h")["flowing"]

        viewer = await whep_watch(gateway.http, gateway.base, "dynacast", kinds=("video",))
        try:
            await wait_for(lambda: layer(gateway, "dynacast", "f")["active"], timeout=5)
            await wait_for(
                lambda: layer(gateway, "dynacast", "f")["frames"] > frames + 30, timeout=30
            )
            await wait_for(lambda: len(viewer.received.size_log) > 30, timeout=30)
        finally:
            await viewer.close(gateway.http, gateway.base)
    finally:
        await context.close()


async def shows_layer(
    gateway: RunningGateway, watcher: Page, session: str, rid: str, target: str | None
) -> None:
    """The watch page shows that it decodes layer ``rid`` and that the gateway's target for
    it is ``target`` (None: the track's best, the layer it follows: ``rid`` here), as its
    session's stats say; the link's estimate, and the publisher's layers with bitrates."""
    shown = "window.watchStats.layers"
    await wait_js(
        watcher,
        f"{shown}.simulcast === true && {shown}.current === {json.dumps(rid)}"
        f" && {shown}.target === {json.dumps(target)} && {shown}.targetRid === {json.dumps(rid)}"
        f" && {shown}.estimateBps > 0",
    )
    async with gateway.http.get(f"{gateway.base}/api/sessions/{session}") as response:
        body = await response.json()
    (selection,) = [r["selection"] for r in body["receiving"].values() if r.get("selection")]
    assert selection["target"] == target, selection
    assert body["link"]["estimate_bps"] > 0, body["link"]
    layer = next(i for i in video_track(gateway, "switch").layer_info() if i["rid"] == rid)
    resolution = "x".join(map(str, layer["resolution"]))
    assert await watcher.text_content("#layer-current") == f"{rid} ({resolution})"
    assert await watcher.text_content("#layer-target") == (target or f"best ({rid})")
    assert await watcher.text_content("#layer-paused") == "playing"
    assert int(await watcher.text_content("#layer-estimate") or 0) > 0
    # The publisher's layers, each with its bitrate (q and h flow: f is not sent at 640x480;
    # a layer's bitrate is measured over two seconds from its start).
    await wait_js(
        watcher,
        f"['q', 'h'].every((rid) => {shown}.published.some("
        "(p) => p.rid === rid && p.flowing && p.bitrateBps >= 1000))",
    )
    for published in ("q", "h"):
        row = watcher.locator(f"#publisher-layers tr[data-rid={published}]")
        cells = await row.locator("td").all_text_contents()
        assert int(cells[2]) > 0 and cells[3].startswith("flowing"), cells


async def test_a_chromium_viewer_switches_layers_without_a_freeze(
    gateway: RunningGateway, browser: Browser
) -> None:
    """The watch page's one RTP stream changes layer under it (VP8 picture IDs rewritten,
    the old layer until the new one's keyframe): Chromium decodes on at full rate. The
    page shows the layer it decodes and the gateway's target for it."""
    context = await browser.new_context()
    try:
        page = await open_page(context, gateway.base + "/", "simulcast publisher")
        await page.evaluate(
            SIMULCAST_PUBLISH,
            {"room": "switch", "width": CAMERA_WIDTH, "height": CAMERA_HEIGHT, "codec": "vp8"},
        )
        await wait_for(lambda: "switch" in gateway.registry.rooms, timeout=15)
        await wait_for(lambda: {"q", "h"} <= flowing(gateway, "switch"), timeout=30)
        watcher = await open_watcher(context, gateway.base, "switch")
        half = f"{CAMERA_WIDTH // 2}x{CAMERA_HEIGHT // 2}"
        await wait_js(
            watcher, f"`${{window.watchStats.width}}x${{window.watchStats.height}}` === '{half}'"
        )
        (viewer,) = gateway.registry.rooms["switch"].subscribers
        await shows_layer(gateway, watcher, viewer.id, "h", None)
        for target, size in (("q", (CAMERA_WIDTH // 4, CAMERA_HEIGHT // 4)), (None, None)):
            before = (await watch_stats(watcher))["framesDecoded"]
            started = time.monotonic()
            async with gateway.http.put(
                f"{gateway.base}/api/sessions/{viewer.id}/layer", json={"layer": target}
            ) as response:
                assert response.status == 200, await response.text()
            width, height = size or (CAMERA_WIDTH // 2, CAMERA_HEIGHT // 2)
            await wait_js(watcher, f"window.watchStats.width === {width}", timeout=20)
            await asyncio.sleep(3)
            stats = await watch_stats(watcher)
            assert stats["height"] == height and stats["state"] == "connected"
            # ~30 fps throughout: no wait for a keyframe, no freeze at the switch (the
            # page samples its stats every second: one second of slack).
            gained = stats["framesDecoded"] - before
            elapsed = time.monotonic() - started
            assert gained >= 24 * (elapsed - 1.0), (target, gained, elapsed)
            await shows_layer(gateway, watcher, viewer.id, target or "h", target)
            assert await watcher.text_content("#layer-cap") == (
                f"layer {target}" if target else "none"
            )
    finally:
        await context.close()


# The same, each layer in three temporal layers (VP8 L1T3: 1/4, 1/4 and 1/2 of the frames).
TEMPORAL_PUBLISH = SIMULCAST_PUBLISH.replace(
    '{rid: "q", scaleResolutionDownBy: 4}, {rid: "h", scaleResolutionDownBy: 2}, {rid: "f"},',
    '{rid: "q", scaleResolutionDownBy: 4, scalabilityMode: "L1T3"},'
    ' {rid: "h", scaleResolutionDownBy: 2, scalabilityMode: "L1T3"},'
    ' {rid: "f", scalabilityMode: "L1T3"},',
)


async def test_a_frame_rate_cap_leaves_out_temporal_layers(
    gateway: RunningGateway, browser: Browser
) -> None:
    assert TEMPORAL_PUBLISH != SIMULCAST_PUBLISH
    context = await browser.new_context()
    page = await open_page(context, gateway.base + "/", "temporal layers")
    await page.evaluate(
        TEMPORAL_PUBLISH,
        {"room": "temporal", "width": CAMERA_WIDTH, "height": CAMERA_HEIGHT, "codec": "vp8"},
    )
    await wait_for(lambda: "temporal" in gateway.registry.rooms, timeout=15)
    await wait_for(lambda: {"q", "h"} <= flowing(gateway, "temporal"), timeout=30)
    viewer = await whep_watch(gateway.http, gateway.base, "temporal", ("video",), layer="h")
    session = viewer.location.rsplit("/", 1)[1]
    url = f"{gateway.base}/api/sessions/{session}"

    async def fps_over(seconds: float) -> float:
        before, started = len(viewer.received.size_log), time.monotonic()
        await asyncio.sleep(seconds)
        return (len(viewer.received.size_log) - before) / (time.monotonic() - started)

    try:
        await wait_for(lambda: len(viewer.received.size_log) > 30, timeout=30)
        full = await fps_over(3)
        async with gateway.http.put(url + "/layer", json={"layer": "h", "max_fps": 15}) as reply:
            assert reply.status == 200, await reply.text()
        await asyncio.sleep(1)  # the cap is judged from the next frames
        capped = await fps_over(3)
        async with gateway.http.get(url) as reply:
            body = await reply.json()
        (egress,) = body["egress"].values()
        (receiving,) = body["receiving"].values()
        print("fps", full, "capped", capped, egress)
        # Two of the three temporal layers: half the frames, every one decoded.
        assert 0.35 <= capped / full <= 0.65, (full, capped)
        assert egress["temporal_drops"] > 20, egress
        assert receiving["selection"]["cap"] == {"rid": "h", "max_fps": 15.0}, receiving
        assert set(viewer.received.size_log[-20:]) == {(CAMERA_WIDTH // 2, CAMERA_HEIGHT // 2)}
        assert egress["keyframe_requests"] <= 2, egress  # no decoder lost its references
        async with gateway.http.put(url + "/layer", json={"layer": "h"}) as reply:
            assert reply.status == 200  # the cap lifted: every frame again
        await asyncio.sleep(1)
        assert await fps_over(3) >= 0.8 * full
    finally:
        await viewer.close(gateway.http, gateway.base)
