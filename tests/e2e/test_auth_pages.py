"""The web app with auth on, in headless Chromium: tokens from links or the prompt, signed
recording URLs, identities in rooms, and Chromium's own WHIP with a bearer token."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, Request

from tests.conftest import RunningGateway
from tests.support.peers import whep_watch
from tests.support.tokens import bearer, secure_config, token

from .conftest import CAMERA_HEIGHT, CAMERA_WIDTH, serve
from .pages import (
    GATHERED,
    TIMEOUT_S,
    assert_frames_grow,
    open_page,
    open_watcher,
    poll,
    start_publisher,
    wait_js,
    watch_stats,
)

# One gateway and one Chromium for the module: its tests share the module's event loop.
pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(120),
    pytest.mark.asyncio(loop_scope="module"),
]

FRAMES = "window.watchStats.framesDecoded"
PROMPT = "#token-prompt"
STORED = "sessionStorage.getItem('webrtc-gateway.token')"
CAMERA_SIZE = f"{CAMERA_WIDTH}x{CAMERA_HEIGHT}"


def publish_token(identity: str) -> str:
    return token(identity, "a*", canPublish=True)


def subscribe_token(identity: str) -> str:
    return token(identity, "a*", canSubscribe=True)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def secure_gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningGateway]:
    config = secure_config()
    config.recording.directory = str(tmp_path_factory.mktemp("recordings"))
    async with serve(config) as gateway:
        yield gateway


@pytest_asyncio.fixture(loop_scope="module")
async def contexts(module_browser: Browser) -> AsyncIterator[list[BrowserContext]]:
    """The test's browser contexts (each a tab's own sessionStorage), closed after it."""
    opened: list[BrowserContext] = []
    yield opened
    for context in opened:
        await context.close()


async def new_context(browser: Browser, contexts: list[BrowserContext]) -> BrowserContext:
    context = await browser.new_context()
    contexts.append(context)
    return context


async def assert_no_token_in_address(page: Page, value: str) -> None:
    href: str = await page.evaluate("location.href")
    assert "token" not in href and value not in href, f"the token stays in {href}"
    assert await page.evaluate(STORED) == value


async def sessions_end(gateway: RunningGateway) -> None:
    async def ended() -> bool:
        return not gateway.registry.sessions

    await poll(ended, "every session ends once the pages close")


async def test_links_with_tokens_publish_and_watch(
    secure_gateway: RunningGateway, module_browser: Browser, contexts: list[BrowserContext]
) -> None:
    gateway = secure_gateway
    publishing = publish_token("alice")
    publisher = await start_publisher(
        await new_context(module_browser, contexts), gateway.base, "abc", token=publishing
    )
    assert await publisher.evaluate("window.publishState.identity") == "alice"
    assert (await publisher.text_content("#session") or "").endswith(" as alice")
    await assert_no_token_in_address(publisher, publishing)

    viewing = subscribe_token("bob")
    referers: list[str] = []

    def on_request(request: Request) -> None:
        if "/api/" in request.url:
            referers.append(request.headers.get("referer", ""))

    context = await new_context(module_browser, contexts)
    context.on("request", on_request)
    watcher = await open_watcher(context, gateway.base, "abc", token=viewing)
    assert await assert_frames_grow(watcher, FRAMES) > 0
    await wait_js(
        watcher,
        f"window.watchStats.width === {CAMERA_WIDTH} && window.watchStats.height === {CAMERA_HEIGHT}",
    )
    assert await watcher.text_content("#stat-resolution") == CAMERA_SIZE
    # The viewer's token reads its own session's stats: the layer panel fills in.
    await wait_js(
        watcher, "window.watchStats.layers.simulcast && window.watchStats.layers.estimateBps > 0"
    )
    await assert_no_token_in_address(watcher, viewing)
    assert not await watcher.is_visible(PROMPT)
    assert not await watcher.is_visible("#error")
    # The page's API calls (pipelines, the room's ingest stats) went out with the token,
    # and their Referer no longer names it.
    assert referers and all(viewing not in r and "token=" not in r for r in referers)
    assert {s.identity for s in gateway.registry.sessions.values()} == {"alice", "bob"}

    # The token lives in the tab: a link without one (here, the same page again) still works.
    await watcher.goto(f"{gateway.base}/watch.html?room=abc")
    await wait_js(watcher, f"{FRAMES} > 0")
    assert (await watch_stats(watcher))["state"] == "connected"
    # Its "Rooms" link too, where this token's grant falls short: the prompt says so.
    await watcher.click("header a")
    await watcher.wait_for_selector(PROMPT, state="visible")
    assert watcher.url.endswith("/"), watcher.url
    reason = await watcher.text_content("#token-reason") or ""
    assert "does not allow" in reason and "may not list rooms" in reason, reason
    assert "--list" in (await watcher.text_content("#token-command") or "")
    assert "forbidden" in (await watcher.text_content("#error") or "")
    assert await watcher.evaluate(STORED) == viewing, "a token that is merely short stays"

    for context in contexts:
        await context.close()
    contexts.clear()
    await sessions_end(gateway)


async def test_without_a_token_the_pages_prompt_for_one(
    secure_gateway: RunningGateway, module_browser: Browser, contexts: list[BrowserContext]
) -> None:
    gateway = secure_gateway
    room = "a-prompt"
    url = f"{gateway.base}/publish.html?room={room}&width={CAMERA_WIDTH}&height={CAMERA_HEIGHT}&hint=detail"
    publisher = await open_page(await new_context(module_browser, contexts), url, "publish")
    await wait_js(publisher, "window.publishState && window.publishState.state === 'ready'")
    assert not await publisher.is_visible(PROMPT), "the page asks before the gateway does"
    await publisher.click("#start")
    await publisher.wait_for_selector(PROMPT, state="visible")
    assert await publisher.evaluate("window.publishState.state") == "error"
    assert "needs an access token" in (await publisher.text_content("#token-reason") or "")
    command = await publisher.text_content("#token-command") or ""
    assert command.startswith("webrtc-gateway token --identity")
    assert f"--room '{room}' --publish" in command
    assert "token-required" in (await publisher.text_content("#error") or "")
    assert not gateway.registry.sessions

    # The prompt's token retries the publish, on the same page.
    await publisher.fill("#token-input", publish_token("carol"))
    await publisher.click("#token-submit")
    await wait_js(publisher, "window.publishState.state === 'connected'")
    assert not await publisher.is_visible(PROMPT)
    assert await publisher.evaluate("window.publishState.identity") == "carol"

    watcher = await open_page(
        await new_context(module_browser, contexts),
        f"{gateway.base}/watch.html?room={room}",
        "watch",
    )
    await watcher.wait_for_selector(PROMPT, state="visible")
    await wait_js(watcher, "window.watchStats.state === 'waiting for an access token'")
    # A token the gateway refuses says why, and the prompt stays for another.
    await watcher.fill("#token-input", "not-a-token")
    async with watcher.expect_navigation():  # the page starts again with the token
        await watcher.click("#token-submit")
    await watcher.wait_for_selector(PROMPT, state="visible")
    reason = await watcher.text_content("#token-reason") or ""
    assert "refused the access token" in reason and "invalid-token" in reason, reason
    assert await watcher.evaluate(STORED) is None

    # A link pasted whole works as well as the bare token.
    viewing = subscribe_token("dave")
    await watcher.fill("#token-input", f"{gateway.base}/watch.html?room={room}&token={viewing}")
    async with watcher.expect_navigation():
        await watcher.click("#token-submit")
    await wait_js(watcher, f"window.watchStats && {FRAMES} > 0")
    assert await assert_frames_grow(watcher, FRAMES) > 0
    await wait_js(watcher, f"window.watchStats.width === {CAMERA_WIDTH}")
    assert not await watcher.is_visible(PROMPT)
    assert await watcher.evaluate(STORED) == viewing


async def test_recordings_page_lists_and_plays_with_a_record_token(
    secure_gateway: RunningGateway, module_browser: Browser, contexts: list[BrowserContext]
) -> None:
    gateway = secure_gateway
    room = "a-rec"
    context = await new_context(module_browser, contexts)
    await start_publisher(context, gateway.base, room, token=publish_token("erin"))
    recording = token("frank", room, roomRecord=True)
    page = await open_page(
        context, f"{gateway.base}/recordings.html?room={room}&token={recording}", "recordings"
    )
    await wait_js(page, "window.recordingsState && window.recordingsState.error === null")
    assert not await page.is_visible(PROMPT)

    await page.click("#record-start")
    row = "#recordings tr[data-id]"
    await page.wait_for_selector(row, timeout=TIMEOUT_S * 1000)
    assert await page.text_content(f"{row} .state") == "recording"
    admin = bearer(token("admin", admin=True))

    async def recorded_seconds() -> bool:
        async with gateway.http.get(f"{gateway.base}/api/stats", headers=admin) as response:
            stats = await response.json()
        found = next(r for r in stats["rooms"] if r["room"] == room)
        recordings = found["recording"]["recordings"]
        return bool(recordings) and recordings[0]["duration_s"] >= 3

    await poll(recorded_seconds, "3 s recorded")
    await page.click("#record-stop")
    await wait_js(
        page,
        "window.recordingsState.recordings.length === 1 && "
        "window.recordingsState.recordings[0].state === 'complete'",
    )

    await page.click(f"{row} button.play")
    await wait_js(page, "document.getElementById('player').currentTime > 1")
    player: dict[str, Any] = await page.evaluate(
        "(({src, videoWidth, videoHeight}) => ({src, videoWidth, videoHeight}))"
        "(document.getElementById('player'))"
    )
    assert player["videoWidth"] > 0 and player["videoHeight"] > 0
    # A <video> sends no Authorization header: its signed URL is what lets it in.
    assert "sig=" in player["src"] and "expires=" in player["src"], player["src"]
    assert not await page.is_visible("#error")

    href = await page.get_attribute(f"{row} a", "href") or ""
    assert href.endswith("&download=1") and "sig=" in href and "?" in href, href
    download = await page.evaluate(
        """async (href) => {
          const response = await fetch(href);
          await response.arrayBuffer();
          return [response.status, response.headers.get("Content-Disposition")];
        }""",
        href,
    )
    assert download[0] == 200 and download[1].startswith("attachment"), download
    unsigned = href.split("?")[0]
    status = await page.evaluate("async (url) => (await fetch(url)).status", unsigned)
    assert status == 401, "the file without a signature nor a token"


async def test_room_page_shows_identities(
    secure_gateway: RunningGateway, module_browser: Browser, contexts: list[BrowserContext]
) -> None:
    gateway = secure_gateway
    room = "a-meet"
    grants: dict[str, Any] = {"canPublish": True, "canSubscribe": True, "canPublishData": True}
    tokens = {
        "Alice": token("alice", room, name="Alice", **grants),  # its name is the display name
        "Bobby": token("bob", room, **grants),  # no name: the one asked for in ?name=
    }
    size = f"&width={CAMERA_WIDTH}&height={CAMERA_HEIGHT}&hint=detail"
    pages: dict[str, Page] = {}
    for shown, link in (
        ("Alice", f"room.html?room={room}{size}&token={tokens['Alice']}"),
        ("Bobby", f"room.html?room={room}&name=Bobby{size}&token={tokens['Bobby']}"),
    ):
        context = await new_context(module_browser, contexts)
        page = await open_page(context, f"{gateway.base}/{link}", f"room {shown}")
        await wait_js(page, "window.roomState && window.roomState.state === 'joined'")
        assert await page.evaluate("window.roomState.name") == shown
        assert await page.text_content("#own-name") == shown
        await assert_no_token_in_address(page, tokens[shown])
        pages[shown] = page
    assert await pages["Alice"].evaluate("window.roomState.identity") == "alice"
    assert await pages["Bobby"].evaluate("window.roomState.identity") == "bob"

    for viewer, other, identity in (("Alice", "Bobby", "bob"), ("Bobby", "Alice", "alice")):
        page = pages[viewer]
        tile = f"Object.values(window.roomState.tiles).find(t => t.name === {json.dumps(other)})"
        await wait_js(page, f"{tile} && {tile}.framesDecoded > 0")
        assert await assert_frames_grow(page, f"{tile}.framesDecoded") > 0
        assert await page.evaluate(f"{tile}.identity") == identity
        figure = page.locator("figure.tile[data-participant]", has_text=other)
        assert await figure.locator(".name").text_content() == other
        assert await figure.locator(".identity").text_content() == f"({identity})"
        assert not await page.is_visible("#error")

    await pages["Bobby"].fill("#chat-text", "hello from bob")
    await pages["Bobby"].click("#chat-send")
    await wait_js(pages["Alice"], "window.roomState.chat.some(m => m.text === 'hello from bob')")
    assert await pages["Alice"].evaluate("window.roomState.chat.at(-1).name") == "Bobby"


WHIP = (
    "async ({token, rooms, width, height}) => {"
    + GATHERED
    + """
  const stream = await navigator.mediaDevices.getUserMedia({
    video: {width: {exact: width}, height: {exact: height}}, audio: true,
  });
  stream.getVideoTracks()[0].contentHint = "detail";
  const results = [];
  for (const room of rooms) {
    const pc = new RTCPeerConnection({iceServers: []});
    for (const track of stream.getTracks()) {
      pc.addTransceiver(track, {direction: "sendonly", streams: [stream]});
    }
    const response = await fetch(`/whip/${room}`, {
      method: "POST",
      headers: {"Content-Type": "application/sdp", "Authorization": `Bearer ${token}`},
      body: await gathered(pc),
    });
    const body = await response.text();
    const type = (response.headers.get("Content-Type") ?? "").split(";")[0];
    results.push({room, status: response.status, type, body, location: response.headers.get("Location")});
    if (response.status === 201) {
      await pc.setRemoteDescription({type: "answer", sdp: body});
      window.whip = {pc, location: response.headers.get("Location")};
    } else {
      pc.close();
    }
  }
  return results;
}"""
)


async def test_chromium_whip_with_a_bearer_token(
    secure_gateway: RunningGateway, module_browser: Browser, contexts: list[BrowserContext]
) -> None:
    gateway = secure_gateway
    publishing = publish_token("grace")
    page = await open_page(
        await new_context(module_browser, contexts), f"{gateway.base}/style.css", "whip"
    )
    allowed, refused = await page.evaluate(
        WHIP,
        {
            "token": publishing,
            "rooms": ["abc", "b"],
            "width": CAMERA_WIDTH,
            "height": CAMERA_HEIGHT,
        },
    )

    assert allowed["status"] == 201, allowed
    assert allowed["type"] == "application/sdp"
    assert allowed["location"].startswith("/whip/abc/")
    # Outside the token's rooms: refused with a JSON reason, nothing created.
    assert refused["status"] == 403 and refused["type"] == "application/json", refused
    assert json.loads(refused["body"])["error"] == "forbidden"
    assert "b" not in gateway.registry.rooms

    await wait_js(page, "window.whip.pc.connectionState === 'connected'")
    (session,) = [s for s in gateway.registry.sessions.values() if s.room.name == "abc"]
    assert session.identity == "grace" and session.transport == "whip"

    async def connected() -> bool:
        return session.connected_at is not None

    await poll(connected, "the gateway's WHIP session connects")
    viewer = await whep_watch(
        gateway.http, gateway.base, "abc", kinds=("video",), token=subscribe_token("heidi")
    )
    try:

        async def decoded() -> bool:
            received = viewer.received
            return len(received.arrival) >= 20 and (CAMERA_WIDTH, CAMERA_HEIGHT) in received.sizes

        await poll(decoded, "an aiortc WHEP viewer decodes 20 of Chromium's frames, full size")
        # The fake camera's colour bars survive the trip: the chroma is far from grey.
        frame = viewer.received.last_frame
        assert frame is not None
        chroma = frame.to_ndarray(format="yuv420p")[frame.height :].astype(int)
        assert abs(chroma - 128).mean() > 30
    finally:
        await viewer.close(gateway.http, gateway.base)

    status = await page.evaluate(
        """async (token) => (await fetch(window.whip.location, {
          method: "DELETE", headers: {"Authorization": `Bearer ${token}`},
        })).status""",
        publishing,
    )
    assert status == 200
    await sessions_end(gateway)
