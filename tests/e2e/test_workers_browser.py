"""The web app through a multi-process gateway's front (server.workers: 2): Chromium's
publish page and watch page on the front's one port, their sockets and WHEP carried to the
workers."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser

from tests.support.gateway_process import start_gateway_process

from .pages import assert_frames_grow, open_watcher, start_publisher, watch_stats

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

CONFIG = """
server:
  drain_timeout_s: 0
  workers: 2
ice:
  addresses: [127.0.0.1]
log:
  level: info
"""


async def test_publish_and_watch_pages_through_the_front(browser: Browser, tmp_path: Path) -> None:
    front = await start_gateway_process(CONFIG, tmp_path, timeout_s=60)
    context = await browser.new_context()
    try:
        await start_publisher(context, front.base, "front")
        watcher = await open_watcher(context, front.base, "front")
        assert await assert_frames_grow(watcher, "window.watchStats.framesDecoded") > 0
        assert (await watch_stats(watcher))["state"] == "connected"
        second = await open_watcher(context, front.base, "front")
        assert await assert_frames_grow(second, "window.watchStats.framesDecoded") > 0
    finally:
        await context.close()
        assert await front.stop() == 0, front.log_text()[-3000:]
