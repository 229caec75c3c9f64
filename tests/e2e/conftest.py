"""Fixtures for the browser tests: a deterministic fake camera and headless Chromium."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import Browser, async_playwright

from gateway.app import create_app
from gateway.config import Config
from tests.conftest import RunningGateway

CHROMIUM = Path("/usr/bin/chromium")

# What the fake camera delivers; the pages are asked for exactly this (?width=&height=).
CAMERA_WIDTH, CAMERA_HEIGHT, CAMERA_FPS, CAMERA_FRAMES = 640, 480, 30, 60

# See /work/shared/TESTING.md: headless as root, no background traffic, fake media,
# loopback ICE, and hidden pages that keep decoding at full rate.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]


def camera_frame(index: int, width: int, height: int) -> tuple[np.ndarray, ...]:
    """One yuv420p frame: eight colour bars, a luma ramp, and a white square moving across.

    Mostly still, so VP8 encodes it well at the few hundred kbps a fresh connection gets
    (busy frames make Chromium's encoder drop resolution or frame rate).
    """
    ramp = np.linspace(60, 200, height, dtype=np.float32)
    luma = np.repeat(ramp[:, None], width, axis=1).astype(np.uint8)
    side = height // 6
    left = index * (width - side) // CAMERA_FRAMES
    top = (height - side) // 2
    luma[top : top + side, left : left + side] = 235
    bars = np.arange(width // 2) * 8 // (width // 2)
    u_levels = np.array([16, 240, 128, 60, 200, 90, 240, 16], dtype=np.uint8)
    v_levels = np.array([240, 16, 220, 60, 100, 200, 240, 128], dtype=np.uint8)
    u = np.tile(u_levels[bars], (height // 2, 1))
    v = np.tile(v_levels[bars], (height // 2, 1))
    square = np.s_[top // 2 : (top + side) // 2, left // 2 : (left + side) // 2]
    u[square] = v[square] = 128
    return luma, u, v


def write_y4m(path: Path, width: int, height: int, fps: int, frames: int) -> Path:
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for index in range(frames):
            out.write(b"FRAME\n")
            for plane in camera_frame(index, width, height):
                out.write(np.ascontiguousarray(plane).tobytes())
    return path


@pytest.fixture(scope="session")
def fake_camera(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A looping .y4m clip Chromium serves as its camera."""
    path = tmp_path_factory.mktemp("camera") / f"camera-{CAMERA_WIDTH}x{CAMERA_HEIGHT}.y4m"
    return write_y4m(path, CAMERA_WIDTH, CAMERA_HEIGHT, CAMERA_FPS, CAMERA_FRAMES)


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium; a missing browser fails the tests, it never skips them."""
    assert CHROMIUM.exists(), (
        f"{CHROMIUM} is missing: apt-get install chromium (./dev.sh test does)"
    )
    return CHROMIUM


@asynccontextmanager
async def launch(
    chromium: Path, fake_camera: Path, extra_args: Sequence[str] = ()
) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(chromium),
            headless=True,
            args=[
                *CHROMIUM_FLAGS,
                f"--use-file-for-fake-video-capture={fake_camera}",
                *extra_args,
            ],
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def browser(chromium: Path, fake_camera: Path) -> AsyncIterator[Browser]:
    """Headless Chromium whose camera is ``fake_camera``; one per test (Playwright's
    objects belong to the test's event loop)."""
    async with launch(chromium, fake_camera) as browser:
        yield browser


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_browser(chromium: Path, fake_camera: Path) -> AsyncIterator[Browser]:
    """One Chromium for a whole module, whose tests then run in the module's event loop
    (``pytest.mark.asyncio(loop_scope="module")``); each test opens its own contexts."""
    async with launch(chromium, fake_camera) as browser:
        yield browser


@asynccontextmanager
async def serve(config: Config) -> AsyncIterator[RunningGateway]:
    """A gateway on loopback for as long as the block lasts (module-scoped fixtures use
    it where the ``gateway`` fixture is per test)."""
    app = create_app(config)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", config.server.port).start()
        async with aiohttp.ClientSession() as http:
            yield RunningGateway(f"http://127.0.0.1:{config.server.port}", app, http, config)
    finally:
        await runner.cleanup()
