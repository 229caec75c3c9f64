"""Chromium publishes simulcast over WHIP: each layer is received on its own, viewers get
the best layer that flows by default, or the layer they ask for."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Browser

from tests.conftest import RunningGateway
from tests.support.peers import wait_for, whep_watch

from .conftest import CAMERA_HEIGHT, CAMERA_WIDTH
from .pages import GATHERED, open_page

# Three encodings (a quarter, a half, full size), as the web app and most SFU clients
# send them: libwebrtc sends two of them for a 640x480 camera (docs/architecture.md).
SIMULCAST_PUBLISH = (
    "async ({room, width, height}) => {"
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
    (c) => ["video/vp8", "video/rtx"].includes(c.mimeType.toLowerCase())));
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


async def test_each_simulcast_layer_reaches_its_viewers(
    gateway: RunningGateway, browser: Browser
) -> None:
    context = await browser.new_context()
    page = await open_page(context, gateway.base + "/", "simulcast")
    answer = await page.evaluate(
        SIMULCAST_PUBLISH, {"room": "layers", "width": CAMERA_WIDTH, "height": CAMERA_HEIGHT}
    )
    assert "a=simulcast:recv q;h;f" in answer, answer
    await wait_for(lambda: "layers" in gateway.registry.rooms, timeout=15)
    await wait_for(lambda: {"q", "h"} <= flowing(gateway, "layers"), timeout=30)
    track = video_track(gateway, "layers")
    assert set(track.layers) == {"q", "h", "f"}
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
    finally:
        await best.close(gateway.http, gateway.base)
        await low.close(gateway.http, gateway.base)
        await context.close()
