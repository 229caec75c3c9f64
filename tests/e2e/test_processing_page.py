"""watch.html's Filter picker in headless Chromium: a room watched through the gateway's
"gray" pipeline, then switched back to the colour original on the same peer connection."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.async_api import Browser, Page

from tests.conftest import RunningGateway
from tests.support.media import NumberedVideoTrack, mean_chroma, numbered_frame
from tests.support.peers import whip_publish

from .pages import open_page, poll, wait_js

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

WIDTH, HEIGHT = 640, 360

# Before the page loads: count the page's peer connections, and a probe that draws the
# <video> into a canvas and measures the picture below NumberedVideoTrack's barcode row
# (the top ninth) and away from the edges.
INIT = """
window.peerConnections = 0;
const Native = window.RTCPeerConnection;
window.RTCPeerConnection = class extends Native {
  constructor(...args) {
    super(...args);
    window.peerConnections += 1;
  }
};
window.probePixels = () => {
  const video = document.getElementById("video");
  const w = video?.videoWidth, h = video?.videoHeight;
  if (!w || !h) return null;
  const canvas = (window.probeCanvas ??= document.createElement("canvas"));
  canvas.width = w;
  canvas.height = h;
  const context = canvas.getContext("2d", {willReadFrequently: true});
  context.drawImage(video, 0, 0, w, h);
  const x = Math.round(w * 0.05), y = Math.round(h * 0.2);
  const {data} = context.getImageData(x, y, w - 2 * x, Math.round(h * 0.95) - y);
  let spread = 0, luma = 0;
  for (let i = 0; i < data.length; i += 4) {
    const [r, g, b] = [data[i], data[i + 1], data[i + 2]];
    spread += Math.max(r, g, b) - Math.min(r, g, b);
    luma += (r + g + b) / 3;
  }
  const n = data.length / 4;
  return {spread: spread / n, luma: luma / n, width: w, height: h};
};
"""

# Mean max(R,G,B)-min(R,G,B) over the region: a grey picture decodes to a few units at
# most; the publisher's colour (U=90, V=200) to about 190.
GREY_SPREAD, COLOUR_SPREAD = 12, 60
PROBE = "window.probePixels()"
# Not black either: a grey picture the luma of NumberedVideoTrack's background (Y=110).
GREY = f"(p => p && p.spread < {GREY_SPREAD} && p.luma > 60 && p.luma < 200)({PROBE})"
COLOUR = f"(p => p && p.spread > {COLOUR_SPREAD})({PROBE})"


async def renditions(gateway: RunningGateway) -> list[dict[str, Any]]:
    async with gateway.http.get(f"{gateway.base}/api/renditions") as response:
        assert response.status == 200
        found: list[dict[str, Any]] = (await response.json())["renditions"]
        return found


async def probe(page: Page) -> dict[str, Any]:
    pixels: dict[str, Any] = await page.evaluate(PROBE)
    return pixels


async def test_watch_page_filter_grey_then_colour_on_one_connection(
    gateway: RunningGateway, browser: Browser
) -> None:
    room = "e2e-filter"
    # The publisher's picture is clearly not grey.
    u, v = mean_chroma(numbered_frame(0, WIDTH, HEIGHT))
    assert abs(u - 128) > 30 and abs(v - 128) > 30
    publisher = await whip_publish(
        gateway.http, gateway.base, room, [NumberedVideoTrack(WIDTH, HEIGHT)]
    )
    try:
        context = await browser.new_context()
        await context.add_init_script(INIT)
        page = await open_page(
            context, f"{gateway.base}/watch.html?room={room}&pipeline=gray", f"watch {room}"
        )
        # The picker offers the configured pipelines, labelled by kind; ?pipeline= chose one.
        assert await page.input_value("#filter") == "gray"
        labels = await page.eval_on_selector_all("#filter option", "os => os.map(o => o.text)")
        assert labels[0] == "none" and "gray (video)" in labels and "quiet (audio)" in labels

        await wait_js(page, "window.watchStats.framesDecoded > 0 && window.watchStats.rendition")
        session_id = await page.evaluate("window.watchStats.sessionId")
        assert session_id and await page.evaluate("window.watchStats.pipeline") == "gray"
        # Through the gray pipeline from the first frame: grey, never the colour.
        await wait_js(page, GREY)
        pixels = await probe(page)
        assert (pixels["width"], pixels["height"]) == (WIDTH, HEIGHT)
        assert pixels["spread"] < GREY_SPREAD, pixels

        (rendition,) = await renditions(gateway)
        assert rendition["pipeline"] == "gray" and rendition["room"] == room
        assert await page.evaluate("window.watchStats.rendition") == rendition["id"]
        # The rendition's numbers in the stats area.
        await wait_js(page, "window.watchStats.processing && window.watchStats.processing.fps > 0")
        assert await page.is_visible("#processing")
        assert await page.text_content("#proc-pipeline") == "gray (video)"
        assert "/" in (await page.text_content("#proc-latency") or "")
        assert int(await page.text_content("#proc-drops") or "-1") >= 0

        # An audio filter for a room without audio: the gateway's JSON error is shown and
        # the picker goes back to what the session still receives.
        await page.select_option("#filter", "quiet")
        await wait_js(page, "!document.getElementById('error').hidden")
        error = await page.text_content("#error") or ""
        assert "nothing-to-process" in error, error
        await wait_js(page, "document.getElementById('filter').value === 'gray'")
        assert await page.evaluate("window.watchStats.pipeline") == "gray"
        assert parse_qs(urlparse(page.url).query)["pipeline"] == ["gray"]
        await wait_js(page, GREY)

        # Back to the original, without renegotiating: the colour returns.
        await page.select_option("#filter", "")
        await wait_js(page, "window.watchStats.pipeline === null")
        await wait_js(page, COLOUR)
        pixels = await probe(page)
        assert pixels["spread"] > COLOUR_SPREAD, pixels
        assert not await page.is_visible("#error")
        assert not await page.is_visible("#processing")
        assert "pipeline" not in parse_qs(urlparse(page.url).query)

        # Same peer connection and gateway session throughout.
        assert await page.evaluate("window.peerConnections") == 1
        assert await page.evaluate("window.watchStats.sessionId") == session_id
        assert await page.evaluate("window.watchStats.state") == "connected"
        frames = await page.evaluate("window.watchStats.framesDecoded")
        await wait_js(page, f"window.watchStats.framesDecoded > {frames}")

        # Its last viewer gone, the rendition ends.
        async def no_rendition() -> bool:
            return not await renditions(gateway)

        await poll(no_rendition, "the gray rendition closes once nobody watches it")
        await context.close()
    finally:
        await publisher.close(gateway.http, gateway.base)
