"""The room page in headless Chromium: two participants (separate browser contexts, each
with the fake camera) see each other, through the gateway (sfu) and peer-to-peer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from gateway.config import Config
from tests.conftest import RunningGateway, loopback_config

from .conftest import CAMERA_HEIGHT, CAMERA_WIDTH
from .pages import assert_frames_grow, open_page, poll, wait_js

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]


async def join(
    browser: Browser, gateway: RunningGateway, room: str, name: str, mode: str | None = None
) -> Page:
    """room.html in its own browser context, once it has joined.

    hint=detail keeps the camera's resolution (see pages.start_publisher)."""
    context = await browser.new_context()
    url = (
        f"{gateway.base}/room.html?room={room}&name={name}"
        f"&width={CAMERA_WIDTH}&height={CAMERA_HEIGHT}&hint=detail"
    )
    if mode is not None:
        url += f"&mode={mode}"
    page = await open_page(context, url, f"room {room} {name}")
    await wait_js(page, "window.roomState && window.roomState.state === 'joined'")
    assert await page.is_visible("#controls") and await page.is_visible("#chat")
    assert not await page.is_visible("#join"), "the join form shows while joined"
    return page


def tile(name: str) -> str:
    """JS: the page's tile (window.roomState.tiles entry) of the participant called ``name``."""
    return f"Object.values(window.roomState.tiles).find(t => t.name === {json.dumps(name)})"


async def sees_video(
    page: Page, name: str, size: tuple[int, int] = (CAMERA_WIDTH, CAMERA_HEIGHT)
) -> None:
    """``page`` decodes ``name``'s camera, more and more frames, at ``size`` (the published
    size; through the gateway, the layer that fits the tile)."""
    await wait_js(page, f"{tile(name)} && {tile(name)}.framesDecoded > 0")
    assert await assert_frames_grow(page, f"{tile(name)}.framesDecoded") > 0
    # The encoder may start below the camera's size and step up once bandwidth allows.
    width, height = size
    await wait_js(page, f"{tile(name)}.width === {width} && {tile(name)}.height === {height}")
    # Their audio arrives too, and the tile shows the name, the video and the audio.
    await wait_js(page, f"{tile(name)}.audioPackets > 0")
    assert await assert_frames_grow(page, f"{tile(name)}.audioPackets", seconds=1) > 0
    figure = page.locator("figure.tile[data-participant]", has_text=name)
    assert await figure.locator(".name").text_content() == name
    assert await figure.locator("video").count() >= 1
    assert await figure.locator("audio").count() == 1


# room.js's CAP_STEPS: a tile's size in device pixels is rounded up to the next of these.
CAP_STEPS = (160, 240, 320, 480, 640, 960, 1280, 1920, 2560, 3840)


async def tile_cap(gateway: RunningGateway, page: Page, name: str) -> tuple[int, int]:
    """The layer cap ``page`` sent for ``name``'s camera: its tile's size rounded up to a
    step, as the gateway holds it for the page's session. Returns the layer size that fits
    it (the camera sends f, the full size, and h, half of it)."""
    cap = await wait_js(page, f"{tile(name)} && {tile(name)}.cap")
    figure = page.locator("figure.tile[data-participant]", has_text=name)
    box = await figure.locator("video.camera").evaluate(
        "(v) => [v.clientWidth * devicePixelRatio, v.clientHeight * devicePixelRatio]"
    )
    for pixels, capped in zip(box, (cap["max_width"], cap["max_height"]), strict=True):
        assert 0 < pixels <= capped == min(s for s in CAP_STEPS if s >= pixels), (box, cap)
    participant = await page.evaluate("window.roomState.participantId")
    (session,) = [s for s in gateway.registry.sessions.values() if s.public_id == participant]

    async def held() -> bool:
        async with gateway.http.get(f"{gateway.base}/api/sessions/{session.id}") as response:
            receiving = (await response.json())["receiving"].values()
        caps = [r["selection"]["cap"] for r in receiving if r.get("selection")]
        return caps == [cap]

    await poll(held, f"the gateway holds {name}'s tile cap {cap} for {participant}")
    fitting = [
        (w, h)
        for w, h in ((CAMERA_WIDTH, CAMERA_HEIGHT), (CAMERA_WIDTH // 2, CAMERA_HEIGHT // 2))
        if w <= cap["max_width"] and h <= cap["max_height"]
    ]
    return fitting[0] if fitting else (CAMERA_WIDTH // 2, CAMERA_HEIGHT // 2)


def viewers(track: dict[str, Any]) -> int:
    """A track's viewers: of a camera's layers too (a tile's cap puts its viewer on one)."""
    layers = track["layers"] or []
    return int(track["subscribers"]) + sum(int(layer["subscribers"]) for layer in layers)


async def room_stats(gateway: RunningGateway, name: str) -> dict[str, Any]:
    stats = await gateway.stats()
    found = [r for r in stats["rooms"] if r["room"] == name]
    assert found, f"room {name!r} missing from /api/stats: {stats}"
    room: dict[str, Any] = found[0]
    return room


async def chat(sender: Page, receiver: Page, text: str) -> None:
    await sender.fill("#chat-text", text)
    await sender.click("#chat-send")
    await wait_js(receiver, f"window.roomState.chat.some(m => m.text === {json.dumps(text)})")
    assert await receiver.locator("#chat-log li", has_text=text).count() == 1


async def test_two_room_pages_see_each_other_through_the_gateway(
    gateway: RunningGateway, browser: Browser
) -> None:
    ann = await join(browser, gateway, "e2e-meet", "ann")
    bob = await join(browser, gateway, "e2e-meet", "bob")
    assert await ann.evaluate("window.roomState.mode") == "sfu"
    # Each page sends its tile's size as the cap of the camera's layers: a ~300 px tile
    # gets h (320x240), not the full 640x480.
    await sees_video(ann, "bob", await tile_cap(gateway, ann, "bob"))
    await sees_video(bob, "ann", await tile_cap(gateway, bob, "ann"))
    # A narrow, tall window: one column of wider tiles, whose new cap takes the full size.
    # (How soon the full picture then comes is the publisher's encoder: not asserted.)
    await ann.set_viewport_size({"width": 520, "height": 1000})
    await wait_js(ann, f"{tile('bob')}.cap.max_width === {CAMERA_WIDTH}")
    assert await tile_cap(gateway, ann, "bob") == (CAMERA_WIDTH, CAMERA_HEIGHT)
    for page in (ann, bob):
        assert await page.evaluate("window.roomState.connection") == "connected"
        assert await page.evaluate("Object.keys(window.roomState.tiles).length") == 1
        assert not await page.is_visible("#error")

    room = await room_stats(gateway, "e2e-meet")
    assert room["mode"] == "sfu" and room["participants"] == 2
    assert len(room["tracks"]) == 4
    assert sorted(t["kind"] for t in room["tracks"]) == ["audio", "audio", "video", "video"]
    assert all(t["frames_decoded"] == 0 for t in room["tracks"]), "the gateway decoded media"
    assert all(viewers(t) == 1 for t in room["tracks"]), room["tracks"]

    async def all_forwarded() -> bool:
        # A camera's frames reach its viewer through a layer (decoded on the tiles above).
        room = await room_stats(gateway, "e2e-meet")
        return all(
            t["frames_received"] > 0 and (t["frames_forwarded"] > 0 or t["layers"])
            for t in room["tracks"]
        )

    await poll(all_forwarded, "every track received and forwarded")

    await chat(ann, bob, "hello bob")
    message = await bob.evaluate("window.roomState.chat.at(-1)")
    assert (message["name"], message["to"]) == ("ann", None)
    assert message["from"] == await ann.evaluate("window.roomState.participantId")
    await chat(bob, ann, "hi ann")

    # Ann leaves: her tile disappears from bob's page, and the gateway forgets her.
    await ann.click("#leave")
    await wait_js(ann, "window.roomState.state === 'left'")
    await wait_js(bob, "Object.keys(window.roomState.tiles).length === 0")
    assert await bob.locator("figure.tile[data-participant]").count() == 0
    assert await ann.is_visible("#join")

    async def one_left() -> bool:
        room = await room_stats(gateway, "e2e-meet")
        return bool(room["participants"] == 1 and len(room["tracks"]) == 2)

    await poll(one_left, "ann gone from the room's stats")
    assert not await bob.is_visible("#error")


async def test_screen_share_and_mute_reach_the_other_page(
    gateway: RunningGateway, browser: Browser
) -> None:
    ann = await join(browser, gateway, "e2e-share", "ann")
    bob = await join(browser, gateway, "e2e-share", "bob")
    await wait_js(bob, f"{tile('ann')} && {tile('ann')}.framesDecoded > 0")

    # A screen track (Chromium's fake screen) on the same connection: a second video.
    await ann.click("#share-screen")
    await wait_js(bob, f"{tile('ann')}.videos === 2")
    figure = bob.locator("figure.tile[data-participant]", has_text="ann")
    await figure.locator("video.screen").wait_for(timeout=30_000)

    async def screen_forwarded() -> bool:
        room = await room_stats(gateway, "e2e-share")
        videos = [t for t in room["tracks"] if t["kind"] == "video"]
        # The cameras reach their viewers through a layer; the screen is one layer.
        return len(videos) == 3 and all(
            viewers(t) == 1 and (t["frames_forwarded"] > 0 or t["layers"]) for t in videos
        )

    await poll(screen_forwarded, "the screen forwarded to bob")

    await ann.click("#share-screen")  # stop sharing: the m-line is kept for reuse
    await wait_js(bob, f"{tile('ann')}.videos === 1")
    await ann.click("#mute-camera")
    await wait_js(bob, f"{tile('ann')}.videoMuted === true")
    await ann.click("#mute-camera")
    await wait_js(bob, f"{tile('ann')}.videoMuted === false")
    assert await assert_frames_grow(bob, f"{tile('ann')}.framesDecoded") > 0
    for page in (ann, bob):
        assert not await page.is_visible("#error")


async def test_two_room_pages_see_each_other_peer_to_peer(
    gateway: RunningGateway, browser: Browser
) -> None:
    ann = await join(browser, gateway, "e2e-p2p", "ann", mode="p2p")
    bob = await join(browser, gateway, "e2e-p2p", "bob", mode="p2p")
    assert await bob.evaluate("window.roomState.mode") == "p2p"
    await sees_video(ann, "bob")
    await sees_video(bob, "ann")
    for page, other in ((ann, "bob"), (bob, "ann")):
        assert await page.evaluate(f"{tile(other)}.connection") == "connected"
        assert not await page.is_visible("#error")

    room = await room_stats(gateway, "e2e-p2p")
    assert room["mode"] == "p2p" and room["participants"] == 2
    assert room["tracks"] == [], "media reached the gateway in a peer-to-peer room"
    assert room["signals_relayed"] > 0

    await chat(bob, ann, "p2p chat")
    await bob.click("#leave")
    await wait_js(ann, "Object.keys(window.roomState.tiles).length === 0")


class TestSocketDrop:
    @pytest.fixture
    def gateway_config(self) -> Config:
        """A grace period the page's reconnect fits in easily on a loaded machine."""
        config = loopback_config()
        config.rooms.reconnect_grace_s = 5.0
        return config

    async def test_room_page_resumes_after_its_socket_drops(
        self, gateway: RunningGateway, browser: Browser
    ) -> None:
        ann = await join(browser, gateway, "e2e-drop", "ann", mode="sfu")
        bob = await join(browser, gateway, "e2e-drop", "bob", mode="sfu")
        await wait_js(ann, f"{tile('bob')} && {tile('bob')}.framesDecoded > 0")
        await wait_js(bob, f"{tile('ann')} && {tile('ann')}.framesDecoded > 0")
        ann_id = await ann.evaluate("window.roomState.participantId")
        bob_tile = await bob.evaluate("Object.keys(window.roomState.tiles)")
        assert bob_tile == [ann_id]

        # Record every status ann's page shows (each one, however brief), then drop its
        # socket (no `leave`).
        await ann.evaluate(
            """() => {
                window.seenStates = [];
                new MutationObserver((records) => {
                    for (const r of records) {
                        for (const n of r.addedNodes) window.seenStates.push(n.textContent);
                    }
                }).observe(document.getElementById("status"), {childList: true});
            }"""
        )
        pcs_before = await ann.evaluate("window.roomConnections().length")
        await ann.evaluate("window.roomDropSocket()")
        await wait_js(ann, "window.seenStates.includes('joined')")
        assert await ann.evaluate("window.seenStates") == ["reconnecting…", "joined"]
        assert await ann.evaluate("window.roomState.state") == "joined"
        assert await ann.evaluate("window.roomState.participantId") == ann_id
        # The same peer connection carried on; nothing was torn down on either side.
        assert await ann.evaluate("window.roomConnections().length") == pcs_before
        assert await ann.evaluate("window.roomState.connection") == "connected"
        assert await ann.is_visible("#controls") and not await ann.is_visible("#join")

        # Bob never lost ann: her tile stays and keeps decoding; ann still sees bob.
        assert await bob.evaluate("Object.keys(window.roomState.tiles)") == [ann_id]
        assert await assert_frames_grow(bob, f"{tile('ann')}.framesDecoded") > 0
        assert await assert_frames_grow(ann, f"{tile('bob')}.framesDecoded") > 0

        # Past the grace period the gateway still has ann: she was resumed, not dropped.
        await asyncio.sleep(6)
        room = await room_stats(gateway, "e2e-drop")
        assert room["participants"] == 2 and len(room["tracks"]) == 4
        assert await bob.evaluate("Object.keys(window.roomState.tiles)") == [ann_id]

        # Signaling works on the new socket: chat both ways.
        await chat(ann, bob, "back again")
        await chat(bob, ann, "welcome back")
        for page in (ann, bob):
            assert not await page.is_visible("#error")
