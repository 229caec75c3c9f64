"""A gateway killed with SIGKILL mid-recording leaves files that play; SIGTERM finalizes them."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.gateway_process import GatewayProcess, start_gateway_process
from tests.support.media import NumberedVideoTrack, ToneTrack
from tests.support.peers import whip_publish

from .recording_checks import assert_plays_in_order, live_recording, play

pytestmark = pytest.mark.timeout(180)


async def start_gateway(
    http: aiohttp.ClientSession, directory: Path, config_dir: Path
) -> GatewayProcess:
    return await start_gateway_process(
        "server:\n  drain_timeout_s: 0\nice:\n  addresses: [127.0.0.1]\nlog:\n  level: warning\n"
        f"recording:\n  directory: {directory}\n  auto_record: ['crash-*']\n",
        config_dir,
    )


async def record_for(
    http: aiohttp.ClientSession, gateway: GatewayProcess, room: str, seconds: float
) -> tuple[Any, NumberedVideoTrack, dict[str, Any]]:
    video = NumberedVideoTrack(320, 240, fps=30)
    publisher = await whip_publish(http, gateway.base, room, [video, ToneTrack()])
    for _ in range(400):
        try:
            if (await live_recording(http, gateway.base, room))["frames_written"] >= seconds * 80:
                break
        except ValueError:
            pass  # not recording yet
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the recording does not progress")
    return publisher, video, await live_recording(http, gateway.base, room)


def ffprobe_decode(path: Path) -> tuple[int, str]:
    """Decodes every video frame with ffprobe: (frames read, what it complained about)."""
    assert shutil.which("ffprobe"), (
        "ffprobe is missing: apt-get install ffmpeg (./dev.sh test does)"
    )
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(json.loads(out.stdout)["streams"][0]["nb_read_frames"]), out.stderr


async def test_sigkill_leaves_a_playable_file_missing_at_most_a_second(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    directory = tmp_path / "recordings"
    gateway = await start_gateway(http, directory, tmp_path)
    try:
        publisher, video, live = await record_for(http, gateway, "crash-1", 4)
        gateway.process.send_signal(signal.SIGKILL)
        sent_at_kill = video.count
        await gateway.process.wait()
    finally:
        if gateway.process.returncode is None:
            gateway.process.kill()
    await publisher.close()

    path = directory / live["file"]
    got = play(path)
    assert_plays_in_order(got, 320, 240)
    assert got.audio_times, "no audio"
    # The publisher had sent frame sent_at_kill - 1 when the gateway died.
    lost_s = (sent_at_kill - 1 - got.numbers[-1]) / 30
    assert lost_s <= 1.5, f"the file ends {lost_s:.2f} s before the kill"
    frames, complaints = ffprobe_decode(path)
    assert frames == len(got.numbers), complaints
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["state"] == "recording"

    # The next start marks it interrupted, with the duration found in the file.
    gateway = await start_gateway(http, directory, tmp_path)
    try:
        async with http.get(f"{gateway.base}/api/recordings") as response:
            (listed,) = (await response.json())["recordings"]
        assert listed["state"] == "interrupted"
        assert listed["duration_s"] == pytest.approx(got.video_times[-1], abs=0.2)
        assert listed["size"] == path.stat().st_size
    finally:
        gateway.process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(gateway.process.wait(), timeout=30)


async def test_sigterm_finalizes_every_recording(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    directory = tmp_path / "recordings"
    gateway = await start_gateway(http, directory, tmp_path)
    try:
        publisher, _, live = await record_for(http, gateway, "crash-2", 2)
        gateway.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(gateway.process.wait(), timeout=30) == 0
    finally:
        if gateway.process.returncode is None:
            gateway.process.kill()
    await publisher.close()
    path = directory / live["file"]
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["state"] == "complete" and sidecar["reason"] == "shutdown"
    got = play(path)
    assert_plays_in_order(got, 320, 240)
    # Finalized: the container knows its duration (and has cues for seeking).
    assert got.duration_s == pytest.approx(sidecar["duration_s"], abs=0.1)
