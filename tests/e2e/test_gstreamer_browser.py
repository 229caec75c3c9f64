"""Stock GStreamer webrtcbin and headless Chromium through the gateway, both directions.

Chromium publishes its fake camera and microphone over WHIP from page JavaScript and a
GStreamer WHEP viewer (tests/support/gst_client.py) decodes them; a GStreamer WHIP
publisher's numbered frames (tests/support/media.py's barcode, drawn by gst_client) are
read back in Chromium from the <video> through a canvas, frame by frame.
"""

from __future__ import annotations

import contextlib

import pytest
from playwright.async_api import Browser

from tests.conftest import RunningGateway
from tests.support.gst_process import GstClient, check_answer
from tests.support.peers import wait_for

from .conftest import CAMERA_HEIGHT, CAMERA_WIDTH
from .frame_reader import CLOSE, WATCH, watch_state
from .pages import WHIP_PUBLISH, open_page, wait_js

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_gstreamer_viewer_decodes_chromium_publisher(
    gateway: RunningGateway, browser: Browser, codec: str
) -> None:
    room = f"chromium-{codec.lower()}"
    context = await browser.new_context()
    page = await open_page(context, f"{gateway.base}/", f"whip {codec}")
    await page.evaluate(
        WHIP_PUBLISH,
        {"room": room, "width": CAMERA_WIDTH, "height": CAMERA_HEIGHT, "codec": codec, "rtx": True},
    )
    await wait_js(page, "window.whip.pc.connectionState === 'connected'")
    await wait_for(
        lambda: (r := gateway.registry.room(room)) is not None and len(r.publishers) == 2,
        timeout=20,
    )
    try:
        viewer = await GstClient.start("watch", f"{gateway.base}/whep/{room}", codec, 30, frames=60)
        result = await viewer.result()
        stats = await gateway.stats()
    finally:
        with contextlib.suppress(Exception):
            await page.evaluate(CLOSE, "whip")
        await context.close()
    assert result["connected"]
    check_answer(result["answer"])
    assert result["video_sizes"] == [[CAMERA_WIDTH, CAMERA_HEIGHT]]
    assert result["video_frames"] >= 60
    # Chromium's fake microphone beeps: decoded Opus far above silence.
    assert result["audio_buffers"] >= 60, "audio did not arrive"
    assert result["audio_peak"] > 2000, "audio is silent"
    tracks = {t["kind"]: t for t in stats["rooms"][0]["tracks"]}
    assert tracks["video"]["codec"] == codec


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_chromium_viewer_reads_gstreamer_publisher_frames(
    gateway: RunningGateway, browser: Browser, codec: str
) -> None:
    room = f"gst-{codec.lower()}"
    publisher = await GstClient.start("publish", f"{gateway.base}/whip/{room}", codec, 40)
    context = await browser.new_context()
    try:
        await wait_for(
            lambda: (r := gateway.registry.room(room)) is not None and len(r.publishers) == 2,
            timeout=20,
        )
        page = await open_page(context, f"{gateway.base}/", f"whep {codec}")
        await page.evaluate(WATCH, {"room": room})
        await wait_js(
            page,
            "whep.numbers.length >= 60 && (whep.audio.totalSamplesReceived ?? 0) > 48000",
        )
        state = await watch_state(page)
        await page.evaluate(CLOSE, "whep")
    finally:
        await context.close()
        result = await publisher.result()
    assert result["connected"]
    check_answer(result["answer"])
    numbers: list[int] = state["numbers"]
    assert state["sizes"] == ["320x240"]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers), "order"
    assert numbers[-1] < result["frames_pushed"]
    assert state["unreadable"] <= len(numbers) // 10, "pictures too degraded to read"
    video, audio = state["video"], state["audio"]
    assert video["framesDecoded"] >= len(numbers)
    assert video["codecId"] and audio["codecId"]
    # webrtcbin's 440 Hz tone (volume 0.3), decoded and played: energy, not silence.
    assert audio["totalAudioEnergy"] > 0.01, audio
