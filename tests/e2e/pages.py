"""Driving the gateway's web pages (and raw WHIP/WHEP) from Playwright."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from playwright.async_api import BrowserContext, ConsoleMessage, Page

from .conftest import CAMERA_HEIGHT, CAMERA_WIDTH

logger = logging.getLogger("chromium")

# Conditions get generous time: the 2 cores are shared with other work.
TIMEOUT_S = 30.0

# Both sides are non-trickle: the offer goes out once ICE gathering is complete, and the
# gateway's answer carries its candidates.
GATHERED = """
async function gathered(pc) {
  await pc.setLocalDescription(await pc.createOffer());
  if (pc.iceGatheringState !== "complete") {
    await new Promise((resolve) => pc.addEventListener("icegatheringstatechange",
      () => pc.iceGatheringState === "complete" && resolve()));
  }
  return pc.localDescription.sdp;
}
async function post(url, sdp) {
  const response = await fetch(url, {
    method: "POST", headers: {"Content-Type": "application/sdp"}, body: sdp,
  });
  const body = await response.text();
  if (response.status !== 201) throw new Error(`POST ${url}: ${response.status} ${body}`);
  const type = response.headers.get("Content-Type") ?? "";
  if (type.split(";")[0].trim() !== "application/sdp") throw new Error(`answer type ${type}`);
  const location = response.headers.get("Location");
  if (!location) throw new Error(`POST ${url}: no Location`);
  return {location, answer: body};
}
"""


# Chromium's camera and microphone over WHIP from page JavaScript: ``codec`` (or null: every
# codec) for video, with its RTX too when ``rtx``. Sets window.whip, returns the Location.
WHIP_PUBLISH = (
    "async ({room, width, height, codec, rtx}) => {"
    + GATHERED
    + """
  const stream = await navigator.mediaDevices.getUserMedia({
    video: {width: {exact: width}, height: {exact: height}}, audio: true,
  });
  // Keep the resolution under CPU pressure (see start_publisher).
  stream.getVideoTracks()[0].contentHint = "detail";
  const pc = new RTCPeerConnection({iceServers: []});
  for (const track of stream.getTracks()) {
    const transceiver = pc.addTransceiver(track, {direction: "sendonly", streams: [stream]});
    if (codec && track.kind === "video") {
      const names = [`video/${codec.toLowerCase()}`, ...(rtx ? ["video/rtx"] : [])];
      transceiver.setCodecPreferences(RTCRtpSender.getCapabilities("video").codecs.filter(
        (c) => names.includes(c.mimeType.toLowerCase())));
    }
  }
  const {location, answer} = await post(`/whip/${room}`, await gathered(pc));
  await pc.setRemoteDescription({type: "answer", sdp: answer});
  window.whip = {pc, location};
  return location;
}"""
)


async def open_page(
    context: BrowserContext, url: str, name: str, setup: Callable[[Page], None] | None = None
) -> Page:
    """A new page at ``url`` whose console and errors go to the test log; ``setup`` runs
    before it loads (to attach listeners)."""
    page = await context.new_page()
    if setup is not None:
        setup(page)

    def console(message: ConsoleMessage) -> None:
        logger.info("[%s] console.%s: %s", name, message.type, message.text)

    page.on("console", console)
    page.on("pageerror", lambda error: logger.error("[%s] page error: %s", name, error))
    await page.goto(url)
    return page


async def wait_js(page: Page, expression: str, timeout: float = TIMEOUT_S) -> Any:
    """Waits until the page's ``expression`` is truthy; returns its value."""
    handle = await page.wait_for_function(expression, polling=250, timeout=timeout * 1000)
    return await handle.json_value()


async def poll(check: Callable[[], Awaitable[bool]], what: str, timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        await asyncio.sleep(0.25)


def with_token(url: str, token: str | None) -> str:
    """``url`` with ``&token=`` (the web app's way in when auth is on) if there is one."""
    return url if token is None else f"{url}&token={token}"


async def start_publisher(
    context: BrowserContext, base: str, room: str, token: str | None = None
) -> Page:
    """publish.html with the fake camera, publishing until the page closes.

    hint=detail keeps the camera's resolution (the encoder drops frame rate instead):
    under CPU or bandwidth pressure Chromium would otherwise scale down and take tens
    of seconds to come back, and the tests check that viewers get the published size.
    """
    url = f"{base}/publish.html?room={room}&width={CAMERA_WIDTH}&height={CAMERA_HEIGHT}&hint=detail"
    url = with_token(url, token)
    page = await open_page(context, url, f"publish {room}")
    await wait_js(page, "window.publishState && window.publishState.state === 'ready'")
    await page.click("#start")
    await wait_js(page, "window.publishState.state === 'connected'")
    assert await page.evaluate("window.publishState.sessionId"), "no session id"
    return page


async def open_watcher(
    context: BrowserContext, base: str, room: str, token: str | None = None
) -> Page:
    """watch.html, once it has decoded a first frame."""
    url = with_token(f"{base}/watch.html?room={room}", token)
    page = await open_page(context, url, f"watch {room}")
    await wait_js(page, "window.watchStats && window.watchStats.framesDecoded > 0")
    return page


async def watch_stats(page: Page) -> dict[str, Any]:
    stats: dict[str, Any] = await page.evaluate("({...window.watchStats})")
    return stats


async def assert_frames_grow(page: Page, sample: str, seconds: float = 3.0) -> int:
    """Samples the decoded-frame count (JS ``sample`` -> number) twice; returns the gain."""
    first = int(await page.evaluate(sample))
    await asyncio.sleep(seconds)
    # The count is refreshed at most every second: wait for it to move, however slowly.
    await wait_js(page, f"({sample}) > {first}")
    return int(await page.evaluate(sample)) - first


async def deny_media_permission(context: BrowserContext) -> None:
    """Makes ``context`` a viewer without camera/microphone permission.

    --use-fake-ui-for-media-stream reports camera and microphone as granted to every
    secure origin, which stops Chromium hiding host addresses behind mDNS names;
    denying both for this context restores what a real viewer's browser does. The CDP
    session stays attached: Chromium drops its permission overrides when it detaches.
    """
    page = await context.new_page()
    session = await context.new_cdp_session(page)
    target = await session.send("Target.getTargetInfo")
    context_id = target["targetInfo"]["browserContextId"]
    await session.detach()
    await page.close()
    assert context.browser is not None
    browser_session = await context.browser.new_browser_cdp_session()
    for name in ("camera", "microphone"):
        await browser_session.send(
            "Browser.setPermission",
            {"permission": {"name": name}, "setting": "denied", "browserContextId": context_id},
        )
