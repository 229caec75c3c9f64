"""A 1280x720 Chromium publisher ramps its send bitrate on the gateway's transport-cc feedback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from playwright.async_api import Browser

from gateway.media.congestion import TRANSPORT_CC_URI
from tests.conftest import RunningGateway

from .pages import assert_frames_grow, open_page, open_watcher, poll, wait_js

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

WIDTH, HEIGHT, FPS = 1280, 720, 30
PAN_PX = 4  # per frame; the texture repeats every PAN_PX * FRAMES pixels, so the clip loops
FRAMES = 60


def _texture(width: int, height: int, seed: int = 7) -> np.ndarray:
    """Detail at every scale (like a photo of foliage), periodic horizontally."""
    rng = np.random.default_rng(seed)
    out = np.zeros((height, width), dtype=np.float32)
    for cell, weight in ((2, 18.0), (6, 22.0), (20, 26.0), (60, 30.0)):
        coarse = rng.standard_normal((height // cell + 2, width // cell)).astype(np.float32)
        # Nearest-neighbour upscale, then a box blur: blobs of about ``cell`` pixels.
        fine = np.repeat(np.repeat(coarse, cell, axis=0), cell, axis=1)[:height, :width]
        for axis in (0, 1):
            fine = (fine + np.roll(fine, cell // 2, axis=axis)) / 2
        out += weight * fine
    return out


def detailed_frame(index: int, tile: np.ndarray) -> tuple[np.ndarray, ...]:
    """One yuv420p frame: the texture panned ``index * PAN_PX`` pixels, a moving bar, colour."""
    height, width = HEIGHT, WIDTH
    repeats = -(-width // tile.shape[1]) + 1
    strip = np.tile(tile, (1, repeats))
    shift = index * PAN_PX
    luma = np.clip(128 + strip[:, shift : shift + width], 16, 235).astype(np.uint8)
    bar = (index * width // FRAMES) % width
    luma[:, bar : bar + 24] = 235
    y, x = np.mgrid[0 : height // 2, 0 : width // 2]
    u = (128 + 60 * np.sin(x / 90.0)).astype(np.uint8)
    v = (128 + 60 * np.cos(y / 70.0)).astype(np.uint8)
    return luma, u, v


def write_clip(path: Path) -> Path:
    """The 1280x720 fake camera: a detailed texture panning, looping seamlessly."""
    tile = _texture(PAN_PX * FRAMES, HEIGHT)
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F{FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for index in range(FRAMES):
            out.write(b"FRAME\n")
            for plane in detailed_frame(index, tile):
                out.write(np.ascontiguousarray(plane).tobytes())
    return path


@pytest.fixture(scope="module")
def fake_camera(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's Chromium camera: the detailed 1280x720 clip."""
    return write_clip(tmp_path_factory.mktemp("camera") / f"detailed-{WIDTH}x{HEIGHT}.y4m")


# WHIP from the page; the camera track's contentHint "detail" makes Chromium keep the
# resolution (degradation preference maintain-resolution). Without it, libwebrtc's initial
# frame dropper opens at 480x270 for the 300 kbps it starts with, and its quality scaler
# climbs back only when the QP is low, which this detailed clip never gives: that is the
# browser's choice, the same whatever the feedback (bench/results/ingest.md has both).
PUBLISH = """
async ({width, height}) => {
  const stream = await navigator.mediaDevices.getUserMedia({
    video: {width: {exact: width}, height: {exact: height}}, audio: true,
  });
  stream.getVideoTracks()[0].contentHint = "detail";
  const pc = new RTCPeerConnection({iceServers: []});
  for (const track of stream.getTracks()) pc.addTransceiver(track, {direction: "sendonly"});
  await pc.setLocalDescription(await pc.createOffer());
  if (pc.iceGatheringState !== "complete") {
    await new Promise((resolve) => pc.addEventListener("icegatheringstatechange",
      () => pc.iceGatheringState === "complete" && resolve()));
  }
  const response = await fetch("/whip/ramp", {
    method: "POST", headers: {"Content-Type": "application/sdp"}, body: pc.localDescription.sdp,
  });
  const answer = await response.text();
  if (response.status !== 201) throw new Error(`WHIP ${response.status}: ${answer}`);
  await pc.setRemoteDescription({type: "answer", sdp: answer});
  window.whip = {pc, answer};
}
"""

OUTBOUND_VIDEO = """
async () => {
  for (const s of (await window.whip.pc.getStats()).values()) {
    if (s.type === "outbound-rtp" && s.kind === "video") {
      return {target: s.targetBitrate ?? 0, width: s.frameWidth ?? 0, height: s.frameHeight ?? 0};
    }
  }
  return {target: 0, width: 0, height: 0};
}
"""

# aiortc's REMB keeps a fresh 720p publisher at 0.2-0.6 Mbps for 20 s (about 1.2 Mbps at
# 20 s on a quiet machine; it grows by ~8% a second, so given a minute it gets there too).
# With transport-cc feedback Chromium's estimator passes 2 Mbps within about 4 s on loopback
# (bench/results/ingest.md); without it (aiortc's REMB) it stays under ~450 kbps. On a busy
# machine its delay-based estimator climbs slowly: one CI run was at 1.5 Mbps after 20 s,
# rising steadily. So: 2 Mbps within 40 s, far beyond the default, with room for that.
RAMPED_BPS = 2_000_000
RAMP_TIMEOUT_S = 40.0


async def test_chromium_720p_publisher_ramps_up_on_transport_cc_feedback(
    gateway: RunningGateway, browser: Browser
) -> None:
    context = await browser.new_context()
    publisher = await open_page(context, f"{gateway.base}/", "publisher")
    await publisher.evaluate(PUBLISH, {"width": WIDTH, "height": HEIGHT})
    answer = await publisher.evaluate("window.whip.answer")
    assert TRANSPORT_CC_URI in answer and "transport-cc" in answer and "b=AS:3000" in answer
    await wait_js(publisher, "window.whip.pc.connectionState === 'connected'")
    watcher = await open_watcher(context, gateway.base, "ramp")

    samples: list[dict[str, int]] = []

    async def ramped() -> bool:
        samples.append(await publisher.evaluate(OUTBOUND_VIDEO))
        return samples[-1]["target"] >= RAMPED_BPS

    try:
        await poll(ramped, f"targetBitrate >= {RAMPED_BPS}", RAMP_TIMEOUT_S)
    except AssertionError as exc:
        targets = [s["target"] for s in samples[::4]]
        raise AssertionError(f"{exc}; every second: {targets}") from None
    # Still sending the camera's full size, and the viewer gets it through the gateway.
    assert (samples[-1]["width"], samples[-1]["height"]) == (WIDTH, HEIGHT)
    await wait_js(watcher, f"window.watchStats.width === {WIDTH}")
    assert await assert_frames_grow(watcher, "window.watchStats.framesDecoded") > 0
    # The watch page shows the ingest side: transport-cc, a high received bitrate.
    ingest = await wait_js(
        watcher,
        "window.watchStats.ingest && window.watchStats.ingest.received_bps > 1000000 "
        "&& window.watchStats.ingest",
    )
    assert ingest["transport_cc"] is True and ingest["feedback_sent"] > 0
    assert ingest["estimate_bps"] == 3_000_000
    assert await watcher.text_content("#ingest-feedback") == (
        f"transport-cc ({ingest['feedback_sent']} packets)"
    )
    await context.close()
