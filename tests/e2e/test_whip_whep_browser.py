"""Chromium publishing with WHIP and watching with WHEP, straight from page JavaScript."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser

from tests.conftest import RunningGateway
from tests.support.peers import whep_watch

from .conftest import CAMERA_HEIGHT, CAMERA_WIDTH
from .pages import GATHERED, WHIP_PUBLISH, assert_frames_grow, open_page, poll, wait_js

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

WHEP_WATCH = (
    "async ({room}) => {"
    + GATHERED
    + """
  const pc = new RTCPeerConnection({iceServers: []});
  pc.addTransceiver("video", {direction: "recvonly"});
  pc.addTransceiver("audio", {direction: "recvonly"});
  const video = document.createElement("video");
  Object.assign(video, {muted: true, autoplay: true, playsInline: true});
  document.body.append(video);
  pc.ontrack = ({track}) => {
    video.srcObject ??= new MediaStream();
    video.srcObject.addTrack(track);
  };
  const {location, answer} = await post(`/whep/${room}`, await gathered(pc));
  await pc.setRemoteDescription({type: "answer", sdp: answer});
  const whep = window.whep = {pc, location, framesDecoded: 0, width: 0, height: 0};
  setInterval(async () => {
    for (const s of (await pc.getStats()).values()) {
      if (s.type === "inbound-rtp" && s.kind === "video") {
        Object.assign(whep, {
          framesDecoded: s.framesDecoded ?? 0, width: s.frameWidth ?? 0, height: s.frameHeight ?? 0,
        });
      }
    }
  }, 250);
  return location;
}"""
)

DELETE = """async () => {
  const which = window.whip ?? window.whep;
  const response = await fetch(which.location, {method: "DELETE"});
  which.pc.close();
  return response.status;
}"""


async def test_whip_publish_and_whep_watch_from_chromium(
    gateway: RunningGateway, browser: Browser
) -> None:
    room = "e2e-whip"
    context = await browser.new_context()
    publisher = await open_page(context, f"{gateway.base}/", "whip")
    whip_location = await publisher.evaluate(
        WHIP_PUBLISH, {"room": room, "width": CAMERA_WIDTH, "height": CAMERA_HEIGHT, "codec": None}
    )
    assert whip_location.startswith(f"/whip/{room}/")
    await wait_js(publisher, "window.whip.pc.connectionState === 'connected'")

    watcher = await open_page(context, f"{gateway.base}/", "whep")
    whep_location = await watcher.evaluate(WHEP_WATCH, {"room": room})
    assert whep_location.startswith(f"/whep/{room}/")
    await wait_js(watcher, "window.whep.framesDecoded > 0")

    assert await assert_frames_grow(watcher, "window.whep.framesDecoded") > 0
    await wait_js(
        watcher, f"window.whep.width === {CAMERA_WIDTH} && window.whep.height === {CAMERA_HEIGHT}"
    )
    assert await watcher.evaluate("window.whep.pc.connectionState") == "connected"

    async def rooms() -> list[str]:
        async with gateway.http.get(f"{gateway.base}/api/rooms") as response:
            assert response.status == 200
            return [r["room"] for r in (await response.json())["rooms"]]

    assert room in await rooms()
    assert await watcher.evaluate(DELETE) == 200
    assert await publisher.evaluate(DELETE) == 200

    async def gone() -> bool:
        return room not in await rooms()

    await poll(gone, f"room {room} leaves /api/rooms after both DELETEs")
    assert not gateway.registry.sessions


async def test_chromium_h264_reaches_aiortc_and_chromium_viewers(
    gateway: RunningGateway, browser: Browser
) -> None:
    """Chromium's OpenH264 stream, forwarded untouched, decodes in aiortc and in Chromium."""
    room = "e2e-h264"
    context = await browser.new_context()
    publisher = await open_page(context, f"{gateway.base}/", "whip-h264")
    await publisher.evaluate(
        WHIP_PUBLISH,
        {"room": room, "width": CAMERA_WIDTH, "height": CAMERA_HEIGHT, "codec": "H264"},
    )
    await wait_js(publisher, "window.whip.pc.connectionState === 'connected'")

    viewer = await whep_watch(gateway.http, gateway.base, room, kinds=("video",))
    watcher = await open_page(context, f"{gateway.base}/", "whep-h264")
    await watcher.evaluate(WHEP_WATCH, {"room": room})
    await wait_js(
        watcher, f"window.whep.width === {CAMERA_WIDTH} && window.whep.height === {CAMERA_HEIGHT}"
    )
    assert await assert_frames_grow(watcher, "window.whep.framesDecoded") > 0

    async def decoded() -> bool:
        return len(viewer.received.arrival) >= 20

    await poll(decoded, "the aiortc viewer decodes 20 H264 frames")
    assert (CAMERA_WIDTH, CAMERA_HEIGHT) in viewer.received.sizes
    frame = viewer.received.last_frame
    assert frame is not None
    # The fake camera's colour bars survive: the decoded picture's chroma is far from grey.
    planes = frame.to_ndarray(format="yuv420p")
    chroma = planes[frame.height :].astype(int)
    assert abs(chroma - 128).mean() > 30
    async with gateway.http.get(f"{gateway.base}/api/stats") as response:
        (track,) = [
            t for t in (await response.json())["rooms"][0]["tracks"] if t["kind"] == "video"
        ]
    assert track["codec"] == "H264"
    assert track["frames_decoded"] == 0
    assert track["subscribers"] == 2
    await viewer.close(gateway.http, gateway.base)
    await watcher.evaluate(DELETE)
    await publisher.evaluate(DELETE)
