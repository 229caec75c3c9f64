"""The watermark's image is an asset name: no URL is ever fetched, no load stalls the loop.

Real gateway, real aiortc publisher and viewer: what the viewer decodes shows the watermark.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiohttp import web

from gateway.config import Config
from tests.conftest import RunningGateway, free_port, loopback_config
from tests.support.media import NumberedVideoTrack
from tests.support.peers import Received, Viewer, wait_for, whep_watch, whip_publish
from tests.support.signaling import WsClient

MARK = 96  # pixels a side of the small marks, drawn in the bottom-right corner


def write_png(path: Path, rgba: np.ndarray) -> None:
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = rgba.shape[1], rgba.shape[0], "rgba"
        for packet in [
            *stream.encode(av.VideoFrame.from_ndarray(rgba, format="rgba")),
            *stream.encode(),
        ]:
            container.mux(packet)


def png_bytes(tmp: Path) -> bytes:
    write_png(tmp, np.full((MARK, MARK, 4), 255, np.uint8))
    return tmp.read_bytes()


@pytest.fixture
def assets_dir(tmp_path: Path) -> Path:
    assets = tmp_path / "assets"
    assets.mkdir()
    write_png(assets / "clear.png", np.zeros((MARK, MARK, 4), np.uint8))  # fully transparent
    blue = np.zeros((MARK, MARK, 4), np.uint8)
    blue[..., 2] = blue[..., 3] = 255  # opaque pure blue: U far above the picture's 90
    write_png(assets / "blue.png", blue)
    # As large as a mark may be (1920x1080) and noisy: its decode takes a while.
    rng = np.random.default_rng(3)
    big = rng.integers(0, 256, (1080, 1920, 4), dtype=np.uint8)
    big[..., 3] = 255
    write_png(assets / "big.png", big)
    os.mkfifo(assets / "slow.png")  # nobody ever writes it
    outside = tmp_path / "outside"
    outside.mkdir()
    write_png(outside / "secret.png", blue)
    return assets


@pytest.fixture
def gateway_config(assets_dir: Path) -> Config:
    config = loopback_config()
    config.processing.assets_dir = str(assets_dir)
    config.processing.pipelines["branded"] = [
        {"watermark": {"path": "clear.png", "position": "bottom-right", "margin": 0}}
    ]
    return config


class HitCounter:
    """An aiohttp server on loopback, on its own loop in its own thread, counting requests.

    Its own loop: were the gateway to fetch a URL while blocking its loop (as it once did),
    this server still answers, so the test sees the fetch instead of hanging.
    """

    def __init__(self, body: bytes) -> None:
        self.port = free_port()
        self.hits: list[str] = []
        self._body = body
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self) -> None:
        async def anything(request: web.Request) -> web.Response:
            self.hits.append(request.path_qs)
            return web.Response(body=self._body, content_type="image/png")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", anything)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def __enter__(self) -> HitCounter:
        self._thread.start()
        assert self._ready.wait(10), "the counting server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def counter(tmp_path: Path) -> Iterator[HitCounter]:
    with HitCounter(png_bytes(tmp_path / "served.png")) as server:
        yield server


def corner_u(received: Received) -> float | None:
    """Mean U of the bottom-right corner of the newest decoded frame."""
    frame = received.last_frame
    if frame is None:
        return None
    planes = frame.to_ndarray(format="yuv420p")
    h, w = frame.height, frame.width
    u = planes[h : h + h // 4].reshape(h // 2, w // 2)
    c = MARK // 2
    return float(u[-c + 8 :, -c + 8 :].mean())  # inside the mark, clear of its edges


async def branded(gateway: RunningGateway) -> tuple[Viewer, Viewer, str]:
    """A publisher, a viewer through 'branded' once frames flow, and the rendition's URL."""
    publisher = await whip_publish(gateway.http, gateway.base, "cam", [NumberedVideoTrack()])
    viewer = await whep_watch(gateway.http, gateway.base, "cam", ("video",), pipeline="branded")
    await wait_for(lambda: len(viewer.received.numbers) >= 15, timeout=30)
    (rendition,) = gateway.registry.renditions.live
    return publisher, viewer, f"{gateway.base}/api/renditions/{rendition.id}"


async def patch_path(gateway: RunningGateway, url: str, **params: Any) -> tuple[int, Any]:
    body = {"stage": "watermark", "params": params}
    async with asyncio.timeout(20):  # a load blocking the loop would not even get here
        async with gateway.http.patch(url, json=body) as response:
            return response.status, await response.json()


async def frames_keep_coming(viewer: Viewer, more: int = 15) -> None:
    last = viewer.received.numbers[-1]
    await wait_for(lambda: viewer.received.numbers[-1] >= last + more, timeout=20)


async def healthy(gateway: RunningGateway) -> None:
    async with gateway.http.get(f"{gateway.base}/healthz") as response:
        assert response.status == 200


async def test_a_url_as_watermark_is_refused_and_never_fetched(
    gateway: RunningGateway, counter: HitCounter, assets_dir: Path
) -> None:
    # An asset whose content is a playlist of URLs: a demuxer would fetch them.
    (assets_dir / "playlist.png").write_text(
        f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n{counter.url}/segment.ts\n"
    )
    publisher, viewer, url = await branded(gateway)
    client = await WsClient.connect(gateway.http, gateway.base)
    try:
        refused_forms = [
            f"{counter.url}/mark.png",
            f"tcp://127.0.0.1:{counter.port}",
            f"concat:{counter.url}/a.png|{counter.url}/b.png",
            f"subfile,,start,0,end,64,,:{counter.url}/mark.png",
            f"async:{counter.url}/mark.png",
            str(assets_dir / "blue.png"),  # absolute, even inside the directory
            "../outside/secret.png",
        ]
        for name in refused_forms:
            status, body = await patch_path(gateway, url, path=name)
            assert status == 400, (name, body)
            assert body["error"] == "invalid-params"
            assert "not an asset name" in body["message"], body
        status, body = await patch_path(gateway, url, path="playlist.png")
        assert status == 400 and "not a PNG or JPEG image" in body["message"], body
        # The WebSocket's pipeline-update takes the same road.
        rendition = url.rsplit("/", 1)[1]
        await client.request(
            {
                "type": "pipeline-update",
                "rendition": rendition,
                "stage": "watermark",
                "params": {"path": f"{counter.url}/ws.png"},
            }
        )
        reply = await client.next("pipeline-updated", "error")
        assert reply["type"] == "error" and reply["code"] == "invalid-params", reply
        assert "not an asset name" in reply["message"]
        await frames_keep_coming(viewer)
        await healthy(gateway)
        assert counter.hits == [], "the gateway fetched a URL"
        stats = (await gateway.stats())["processing"]["renditions"][0]
        (stage,) = stats["pipeline_stats"]["stages"]
        assert stage["params"]["path"] == "clear.png" and stage["failures"] == 0
    finally:
        await client.close()
        await viewer.close(gateway.http, gateway.base)
        await publisher.close(gateway.http, gateway.base)


async def test_outside_files_and_missing_files_get_the_same_answer(
    gateway: RunningGateway, assets_dir: Path
) -> None:
    (assets_dir / "escape.png").symlink_to(assets_dir.parent / "outside" / "secret.png")
    (assets_dir / "gone.png").symlink_to(assets_dir.parent / "outside" / "nothing.png")
    publisher, viewer, url = await branded(gateway)
    try:
        answers = {}
        for name in ("escape.png", "gone.png", "absent.png"):
            status, body = await patch_path(gateway, url, path=name)
            assert status == 400, body
            answers[name] = (body["error"], body["message"].replace(repr(name), "NAME"))
        assert len(set(answers.values())) == 1, answers
        await frames_keep_coming(viewer)
    finally:
        await viewer.close(gateway.http, gateway.base)
        await publisher.close(gateway.http, gateway.base)


async def test_a_slow_asset_never_stalls_the_loop(gateway: RunningGateway) -> None:
    publisher, viewer, url = await branded(gateway)
    loop_thread = threading.get_ident()
    try:
        # A FIFO nobody writes: opening it would wait for ever. Refused, not waited on.
        status, body = await patch_path(gateway, url, path="slow.png")
        assert status == 400 and "not a regular file" in body["message"], body
        await frames_keep_coming(viewer)
        await healthy(gateway)
        # The largest mark allowed, noisy: a long decode. It runs in a thread while the
        # loop carries on: the test (on the gateway's loop) sees the thread inside it, and
        # meanwhile the viewer gets new frames and /healthz answers.
        update = asyncio.ensure_future(patch_path(gateway, url, path="big.png", opacity=0.0))
        newest_while_loading: set[int] = set()
        health: asyncio.Future[None] | None = None
        health_while_loading = False
        while not update.done():
            if any(
                thread != loop_thread and _loading(frame)
                for thread, frame in sys._current_frames().items()
            ):
                newest_while_loading.add(viewer.received.numbers[-1])
                health = health or asyncio.ensure_future(healthy(gateway))
                health_while_loading = health_while_loading or health.done()
            await asyncio.sleep(0.002)
        assert newest_while_loading, "the asset was not loaded in a thread while the loop ran"
        assert len(newest_while_loading) >= 2, "no frame reached the viewer during the load"
        assert health is not None and health_while_loading, "/healthz waited for the load"
        await health
        status, body = await update
        assert status == 200 and body["params"]["path"] == "big.png", body
        await frames_keep_coming(viewer)
        await healthy(gateway)
    finally:
        await viewer.close(gateway.http, gateway.base)
        await publisher.close(gateway.http, gateway.base)


def _loading(frame: Any) -> bool:
    while frame is not None:
        code = frame.f_code
        if code.co_name in ("load_mark", "read") and code.co_filename.endswith(
            ("processors/watermark.py", "processors/assets.py")
        ):
            return True
        frame = frame.f_back
    return False


async def test_an_asset_inside_the_directory_changes_the_pixels(gateway: RunningGateway) -> None:
    publisher, viewer, url = await branded(gateway)
    try:
        # The configured mark, read in the rendition's worker thread, is transparent.
        u = corner_u(viewer.received)
        assert u is not None and abs(u - 90) < 10, u
        status, body = await patch_path(gateway, url, path="blue.png")
        assert status == 200, body
        assert body["params"]["path"] == "blue.png"
        await wait_for(lambda: (corner_u(viewer.received) or 0) > 200, timeout=10)
        # Back to the transparent one: the picture's own colour again.
        status, body = await patch_path(gateway, url, path="clear.png")
        assert status == 200, body
        await wait_for(lambda: abs((corner_u(viewer.received) or 0) - 90) < 10, timeout=10)
        stats = (await gateway.stats())["processing"]["renditions"][0]
        (stage,) = stats["pipeline_stats"]["stages"]
        assert stage["failures"] == 0 and not stage["disabled"]
        numbers = viewer.received.numbers
        assert numbers == sorted(numbers)
    finally:
        await viewer.close(gateway.http, gateway.base)
        await publisher.close(gateway.http, gateway.base)
