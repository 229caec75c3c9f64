"""The recordings page in headless Chromium: a room published from the web page is recorded,
listed, and played back (and seeked) in the page's video element."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from playwright.async_api import Browser

from gateway.config import Config
from tests.conftest import RunningGateway, loopback_config

from .pages import open_page, poll, start_publisher, wait_js

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


@pytest.fixture
def gateway_config(tmp_path: Path) -> Config:
    config = loopback_config()
    config.recording.directory = str(tmp_path / "recordings")
    return config


async def test_recordings_page_records_a_room_and_plays_it_back(
    gateway: RunningGateway, browser: Browser
) -> None:
    context = await browser.new_context()
    await start_publisher(context, gateway.base, "e2e-rec")
    page = await open_page(context, f"{gateway.base}/recordings.html?room=e2e-rec", "recordings")
    await wait_js(page, "window.recordingsState && window.recordingsState.error === null")

    await page.click("#record-start")
    row = "#recordings tr[data-id]"
    await page.wait_for_selector(row, timeout=30_000)
    assert await page.text_content(f"{row} .state") == "recording"
    assert not await page.is_visible("#error")

    async def recorded_seconds() -> bool:
        stats = await gateway.stats()
        room = next(r for r in stats["rooms"] if r["room"] == "e2e-rec")
        recordings = room["recording"]["recordings"]
        return bool(recordings) and recordings[0]["duration_s"] >= 4

    await poll(recorded_seconds, "4 s recorded")
    await page.click("#record-stop")
    await wait_js(
        page,
        "window.recordingsState.recordings.length === 1 && "
        "window.recordingsState.recordings[0].state === 'complete'",
    )
    assert await page.text_content(f"{row} .room") == "e2e-rec"

    await page.click(f"{row} button.play")
    # The browser plays what the gateway remuxed: frames advance at the published size.
    await wait_js(page, "document.getElementById('player').currentTime > 1")
    size = await page.evaluate(
        "[document.getElementById('player').videoWidth, document.getElementById('player').videoHeight]"
    )
    assert size[0] > 0 and size[1] > 0
    duration = await page.evaluate("document.getElementById('player').duration")
    assert 3 <= duration <= 30
    # Seeking back needs Range requests and the file's cues.
    await page.evaluate("document.getElementById('player').currentTime = 0.5")
    await wait_js(page, "!document.getElementById('player').seeking")
    position = await page.evaluate("document.getElementById('player').currentTime")
    assert position < 1.0 + 1.5
    frames = await page.evaluate(
        "document.getElementById('player').getVideoPlaybackQuality().totalVideoFrames"
    )
    await asyncio.sleep(1)
    assert (
        await page.evaluate(
            "document.getElementById('player').getVideoPlaybackQuality().totalVideoFrames"
        )
        > frames
    ), "the player does not advance"
    assert not await page.is_visible("#error")

    await page.click(f"{row} button.delete")
    await wait_js(page, "window.recordingsState.recordings.length === 0")
    assert await asyncio.to_thread(os.listdir, gateway.config.recording.directory) == []
