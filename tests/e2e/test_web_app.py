"""The web app in headless Chromium: publish.html -> gateway -> watch.html, and index.html."""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.async_api import Browser, WebSocket

from gateway.config import Config
from tests.conftest import RunningGateway

from .conftest import CAMERA_HEIGHT, CAMERA_WIDTH
from .pages import (
    assert_frames_grow,
    deny_media_permission,
    open_page,
    open_watcher,
    start_publisher,
    wait_js,
    watch_stats,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

FRAMES = "window.watchStats.framesDecoded"


def room_stats(stats: dict[str, Any], name: str) -> dict[str, Any]:
    found = [r for r in stats["rooms"] if r["room"] == name]
    assert found, f"room {name!r} missing from /api/stats: {stats}"
    room: dict[str, Any] = found[0]
    return room


async def test_publish_page_to_watch_page(gateway: RunningGateway, browser: Browser) -> None:
    context = await browser.new_context()
    publisher = await start_publisher(context, gateway.base, "e2e-pages")
    watcher = await open_watcher(context, gateway.base, "e2e-pages")

    assert await assert_frames_grow(watcher, FRAMES) > 0
    # The encoder may start below the camera's size and step up once bandwidth allows.
    await wait_js(
        watcher,
        f"window.watchStats.width === {CAMERA_WIDTH} && window.watchStats.height === {CAMERA_HEIGHT}",
    )
    stats = await watch_stats(watcher)
    assert stats["state"] == "connected"
    assert stats["timeToFirstFrameMs"] is not None and stats["timeToFirstFrameMs"] > 0
    # The DOM mirrors window.watchStats.
    assert await watcher.text_content("#stat-resolution") == f"{CAMERA_WIDTH}x{CAMERA_HEIGHT}"
    assert int(await watcher.text_content("#stat-frames") or 0) > 0
    assert await watcher.text_content("#stat-state") == "connected"
    assert not await watcher.is_visible("#error")
    assert not await publisher.is_visible("#error")
    assert await publisher.text_content("#status") == "connected"
    # Auth is off: the pages never ask for a token (token.js builds no prompt).
    for page in (publisher, watcher):
        assert await page.locator("#token-prompt").count() == 0

    room = room_stats(await gateway.stats(), "e2e-pages")
    video = next(t for t in room["tracks"] if t["kind"] == "video")
    assert video["frames_decoded"] == 0, "the gateway decoded video it should only forward"
    assert video["subscribers"] == 1
    assert {t["kind"] for t in room["tracks"]} == {"video", "audio"}
    # The publish page sends the camera as simulcast (two layers at this size), and the
    # watch page gets the full picture: the layer the track follows.
    layers = {layer["rid"]: layer for layer in video["layers"]}
    assert set(layers) == {"f", "h"} and layers["f"]["followed"], layers
    assert layers["h"]["resolution"] == [CAMERA_WIDTH // 2, CAMERA_HEIGHT // 2]


async def test_watch_page_without_media_permission_uses_mdns(
    gateway: RunningGateway, browser: Browser
) -> None:
    """A pure viewer hides its addresses behind .local names: the gateway ignores them and
    must learn the browser's address from its connectivity checks (peer-reflexive)."""
    publishing = await browser.new_context()
    await start_publisher(publishing, gateway.base, "e2e-mdns")

    viewing = await browser.new_context()
    await deny_media_permission(viewing)
    sent: list[dict[str, Any]] = []

    def on_socket(ws: WebSocket) -> None:
        ws.on("framesent", lambda payload: sent.append(json.loads(payload)))

    watcher = await open_page(
        viewing,
        f"{gateway.base}/watch.html?room=e2e-mdns",
        "watch e2e-mdns",
        setup=lambda page: page.on("websocket", on_socket),
    )
    assert (
        await watcher.evaluate("navigator.permissions.query({name: 'camera'}).then(p => p.state)")
        == "denied"
    )
    await wait_js(watcher, f"{FRAMES} > 0")
    assert await assert_frames_grow(watcher, FRAMES) > 0

    candidates = [
        m["candidate"]["candidate"] for m in sent if m["type"] == "candidate" and m["candidate"]
    ]
    host = [c for c in candidates if " typ host" in c]
    assert host, f"the watcher trickled no host candidate: {candidates}"
    addresses = [c.split()[4] for c in host]
    assert all(a.endswith(".local") for a in addresses), (
        f"expected only mDNS host candidates from a viewer without media permission: {host}"
    )


async def test_index_lists_live_room_with_viewers(
    gateway: RunningGateway, browser: Browser
) -> None:
    context = await browser.new_context()
    await start_publisher(context, gateway.base, "e2e-index")
    watcher = await open_watcher(context, gateway.base, "e2e-index")

    index = await open_page(context, f"{gateway.base}/", "index")
    row = index.locator('tr[data-room="e2e-index"]')
    await row.locator(".viewers", has_text="1").wait_for(timeout=30_000)
    assert (await row.locator(".status").text_content()) == "live"
    assert "video VP8" in (await row.locator(".tracks").text_content() or "")
    href = await row.locator("a").get_attribute("href")
    assert href == "watch.html?room=e2e-index"

    # The viewer leaves: the count follows within a poll or two.
    await watcher.close()
    await row.locator(".viewers", has_text="0").wait_for(timeout=30_000)


async def test_watch_page_keeps_watching_a_returning_publisher(
    gateway: RunningGateway, browser: Browser
) -> None:
    """Stop and start on the publish page: the watch page shows the pause, and the same
    viewing session goes on with the new publisher's frames (publisher failover)."""
    context = await browser.new_context()
    publisher = await start_publisher(context, gateway.base, "e2e-again")
    watcher = await open_watcher(context, gateway.base, "e2e-again")
    first_session = await publisher.evaluate("window.publishState.sessionId")
    await wait_js(watcher, f"{FRAMES} > 0")
    viewing = await watcher.evaluate("window.watchStats.sessionId")

    await publisher.click("#stop")
    await wait_js(watcher, "window.watchStats.state.startsWith('paused')")
    assert "may return within 30 s" in (await watcher.text_content("#stat-state") or "")
    paused_at = await watcher.evaluate(FRAMES)

    await publisher.click("#start")
    await wait_js(publisher, "window.publishState.state === 'connected'")
    assert await publisher.evaluate("window.publishState.sessionId") != first_session
    await wait_js(
        watcher, f"{FRAMES} > {paused_at} + 30 && window.watchStats.state === 'connected'"
    )
    assert await watcher.evaluate("window.watchStats.sessionId") == viewing
    room = room_stats(await gateway.stats(), "e2e-again")
    assert room["subscribers"] == 1 and room["takeovers"] == 1


async def test_watch_page_waits_when_the_publisher_does_not_return(
    gateway: RunningGateway, browser: Browser, gateway_config: Config
) -> None:
    """With no grace the viewing session ends with its publisher; the page waits and
    subscribes again to the next one."""
    gateway_config.rooms.publisher_grace_s = 0  # read when the room is created
    context = await browser.new_context()
    publisher = await start_publisher(context, gateway.base, "e2e-gone")
    watcher = await open_watcher(context, gateway.base, "e2e-gone")
    await wait_js(watcher, f"{FRAMES} > 0")
    viewing = await watcher.evaluate("window.watchStats.sessionId")

    await publisher.click("#stop")
    await wait_js(watcher, "window.watchStats.state === 'waiting for a publisher'")
    await publisher.click("#start")
    await wait_js(watcher, f"{FRAMES} > 0 && window.watchStats.state === 'connected'")
    assert await watcher.evaluate("window.watchStats.sessionId") != viewing
    assert await assert_frames_grow(watcher, FRAMES) > 0


async def test_publish_page_shows_gateway_errors(gateway: RunningGateway, browser: Browser) -> None:
    context = await browser.new_context()
    await start_publisher(context, gateway.base, "e2e-busy")
    url = f"{gateway.base}/publish.html?room=e2e-busy&width={CAMERA_WIDTH}&height={CAMERA_HEIGHT}"
    second = await open_page(context, url, "publish e2e-busy again")
    await wait_js(second, "window.publishState && window.publishState.state === 'ready'")
    await second.click("#start")
    await wait_js(second, "window.publishState.state === 'error'")
    assert await second.is_visible("#error")
    assert "room-busy" in (await second.text_content("#error") or "")
    assert await second.evaluate("window.publishState.sessionId") is None
    assert await second.is_enabled("#start"), "the user can try again"
