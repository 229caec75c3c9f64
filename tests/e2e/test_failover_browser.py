"""A Chromium WHEP viewer across a publisher failover: the same peer connection shows the
returning publisher's frames, on the same RTP stream, with no new offer."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser

from tests.conftest import RunningGateway
from tests.support.media import NumberedVideoTrack, ToneTrack
from tests.support.peers import wait_for, whip_publish

from .frame_reader import CLOSE, WATCH, watch_state
from .pages import open_page, wait_js

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

SECOND = 3000  # the returning publisher's first frame number


async def test_chromium_viewer_resumes_on_the_returning_publisher(
    gateway: RunningGateway, browser: Browser
) -> None:
    first = await whip_publish(
        gateway.http, gateway.base, "relay", [NumberedVideoTrack(320, 240), ToneTrack()]
    )
    context = await browser.new_context()
    second = None
    try:
        page = await open_page(context, f"{gateway.base}/", "whep failover")
        await page.evaluate(WATCH, {"room": "relay"})
        await wait_js(page, "whep.numbers.length >= 30")
        before = await watch_state(page)

        await first.close(gateway.http, gateway.base)  # DELETE: the stream is kept
        await wait_for(lambda: (r := gateway.registry.room("relay")) is not None and r.held)
        tracks = [NumberedVideoTrack(320, 240, first=SECOND), ToneTrack()]
        second = await whip_publish(gateway.http, gateway.base, "relay", tracks)
        await wait_js(page, f"whep.numbers.filter((n) => n >= {SECOND}).length >= 30")
        after = await watch_state(page)
        await page.evaluate(CLOSE, "whep")
    finally:
        await context.close()
        if second is not None:
            await second.close(gateway.http, gateway.base)

    numbers: list[int] = after["numbers"]
    switch = next(i for i, n in enumerate(numbers) if n >= SECOND)
    assert switch >= 30 and all(n < SECOND for n in numbers[:switch])
    assert all(n >= SECOND for n in numbers[switch:]), numbers[switch:]
    # Each side's frames in order: nothing from the old publisher after the new one's.
    assert numbers[switch:] == sorted(numbers[switch:])
    assert after["sizes"] == ["320x240"]
    video_before, video_after = before["video"], after["video"]
    # The same inbound stream (one SSRC), no sequence jump counted as loss, decoding on.
    assert video_after["ssrc"] == video_before["ssrc"]
    assert video_after["packetsLost"] - video_before["packetsLost"] < 30, (
        video_before["packetsLost"],
        video_after["packetsLost"],
    )
    assert video_after["keyFramesDecoded"] > video_before["keyFramesDecoded"]
    assert video_after["framesDecoded"] >= video_before["framesDecoded"] + 30
