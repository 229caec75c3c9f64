"""The web app on a cluster of three: Chromium's watch pages at nodes b and c show a stream
published at node a (the home's events reach them over Redis; each serves it through its
relay)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser

from tests.support.cluster_nodes import cluster_of
from tests.support.media import NumberedVideoTrack, ToneTrack
from tests.support.peers import whip_publish

from .pages import assert_frames_grow, open_watcher, wait_js, watch_stats

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


async def test_watch_page_on_another_node(browser: Browser, tmp_path: Path) -> None:
    async with cluster_of(tmp_path, "three") as cluster:
        a, b, c = (cluster.nodes[n] for n in ("a", "b", "c"))
        context = await browser.new_context()
        try:
            # The page at b first: it waits, and learns of the publisher from a.
            page = await context.new_page()
            await page.goto(f"{b.base}/watch.html?room=across")
            await wait_js(page, "window.watchStats.state === 'waiting for a publisher'")
            publisher = await whip_publish(
                cluster.http, a.base, "across", [NumberedVideoTrack(640, 360), ToneTrack()]
            )
            try:
                await wait_js(page, "window.watchStats.framesDecoded > 0")
                assert await assert_frames_grow(page, "window.watchStats.framesDecoded") > 0
                stats = await watch_stats(page)
                assert stats["state"] == "connected"
                assert (stats["width"], stats["height"]) == (640, 360)
                # A second page at b shares the relay; a third at c has its own relay.
                second = await open_watcher(context, b.base, "across")
                assert await assert_frames_grow(second, "window.watchStats.framesDecoded") > 0
                third = await open_watcher(context, c.base, "across")
                assert await assert_frames_grow(third, "window.watchStats.framesDecoded") > 0
                rooms = [await cluster.room(n, "across") for n in ("a", "b", "c")]
                assert [r["subscribers"] if r else None for r in rooms] == [2, 2, 1], rooms
            finally:
                await publisher.close(cluster.http, a.base)
        finally:
            await context.close()
