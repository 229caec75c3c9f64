"""Stock GStreamer webrtcbin (Debian's 1.22) as WHIP publisher and WHEP viewer.

webrtcbin keeps its defaults: a self-signed RSA certificate, bundle-only second m-line
(port 0), no header extensions. It runs in the system python (tests/support/gst_client.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningGateway
from tests.support.media import NumberedVideoTrack, ToneTrack
from tests.support.peers import Viewer, wait_for, whep_watch, whip_publish

CLIENT = Path(__file__).parent.parent / "support" / "gst_client.py"
SYSTEM_PYTHON = "/usr/bin/python3"


class GstClient:
    """One gst_client.py subprocess; the test owns it and ``result()`` always reaps it."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(
        cls, mode: str, url: str, codec: str, seconds: float, setup: str = "actpass"
    ) -> GstClient:
        process = await asyncio.create_subprocess_exec(
            SYSTEM_PYTHON,
            str(CLIENT),
            mode,
            url,
            "--codec",
            codec,
            "--seconds",
            str(seconds),
            "--setup",
            setup,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def result(self, timeout: float = 60.0) -> dict[str, Any]:
        try:
            out, err = await asyncio.wait_for(self.process.communicate(), timeout)
        finally:
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
        lines = out.decode().strip().splitlines()
        assert self.process.returncode == 0 and lines, err.decode()[-3000:]
        result: dict[str, Any] = json.loads(lines[-1])
        assert result["error"] is None, result["error"]
        return result


def media_sections(sdp: str) -> list[list[str]]:
    sections: list[list[str]] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            sections.append([])
        if sections:
            sections[-1].append(line)
    return sections


def check_answer(answer: str) -> None:
    """Every m-line answered with media, and each candidate listed once in the answer."""
    sections = media_sections(answer)
    assert [s[0].split()[0] for s in sections] == ["m=video", "m=audio"]
    for section in sections:
        assert "a=inactive" not in section, section[0]
    candidates = [line for line in answer.splitlines() if line.startswith("a=candidate:")]
    assert candidates, "the answer has no candidates"
    assert len(candidates) == len(set(candidates)), "a candidate is listed twice"


async def watch_publisher(gateway: RunningGateway, room: str) -> Viewer:
    """An aiortc WHEP viewer, once the GStreamer publisher's tracks are up."""
    await wait_for(
        lambda: (r := gateway.registry.room(room)) is not None and len(r.publishers) == 2,
        timeout=20,
    )
    return await whep_watch(gateway.http, gateway.base, room)


def assert_numbered(numbers: list[int], at_least: int) -> None:
    assert len(numbers) >= at_least, f"only {len(numbers)} frames decoded"
    assert numbers == sorted(numbers), "frames out of order"
    assert len(set(numbers)) == len(numbers), "a frame arrived twice"
    assert numbers[-1] - numbers[0] <= len(numbers) + 5, "frames missing"


@pytest.mark.parametrize(
    ("codec", "setup"),
    [("VP8", "actpass"), ("H264", "actpass"), ("VP8", "active")],
    ids=["vp8-gateway-dtls-client", "h264-gateway-dtls-client", "vp8-gateway-dtls-server"],
)
async def test_gstreamer_publisher_reaches_aiortc_viewer(
    gateway: RunningGateway, codec: str, setup: str
) -> None:
    # actpass: the gateway answers as DTLS client against webrtcbin's RSA certificate;
    # active: webrtcbin is the DTLS client and the gateway serves.
    publisher = await GstClient.start("publish", f"{gateway.base}/whip/gst", codec, 12, setup)
    viewer: Viewer | None = None
    try:
        viewer = await watch_publisher(gateway, "gst")
        got = viewer.received
        await wait_for(lambda: len(got.numbers) >= 60 and got.audio_frames >= 100, timeout=30)
        assert got.sizes == {(320, 240)}
        assert_numbered(got.numbers, 60)
        assert got.audio_peak > 1000, "audio is silent"
        stats = await gateway.stats()
        (room,) = stats["rooms"]
        tracks = {t["kind"]: t for t in room["tracks"]}
        assert tracks["video"]["codec"] == codec
        assert tracks["audio"]["codec"] == "opus"
    finally:
        if viewer is not None:
            await viewer.close()
        result = await publisher.result()
    assert result["connected"]
    check_answer(result["answer"])


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_gstreamer_viewer_decodes_aiortc_publisher(
    gateway: RunningGateway, codec: str
) -> None:
    video = NumberedVideoTrack(640, 360, fps=30)
    publisher = await whip_publish(gateway.http, gateway.base, "cam", [video, ToneTrack()], codec)
    try:
        viewer = await GstClient.start("watch", f"{gateway.base}/whep/cam", codec, 8)
        result = await viewer.result()
    finally:
        with contextlib.suppress(Exception):
            await publisher.close(gateway.http, gateway.base)
    assert result["connected"]
    check_answer(result["answer"])
    assert result["video_sizes"] == [[640, 360]]
    assert_numbered(result["video_numbers"], 60)
    assert result["audio_buffers"] >= 100, "audio did not arrive"
