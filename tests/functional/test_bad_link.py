"""A viewer behind a real rate limit (tc tbf on a veth) far below the stream's bitrate
degrades alone: it drops to keyframes, counted, while a viewer on a clean path keeps
every frame.

    gwB1-sfu: gateway 192.0.2.1, the publisher and the good viewer (no limit)
        |  veth, tbf 300 kbit on the gateway's end (gateway -> slow viewer)
    gwB1-slow: the slow viewer 192.0.2.2
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway_process import start_gateway_process
from tests.support.nat_world import PeerProcess
from tests.support.netns import Namespace, network
from tests.support.tokens import KEY, SECRET, token

pytestmark = pytest.mark.timeout(180)

GATEWAY_IP, SLOW_IP = "192.0.2.1", "192.0.2.2"
BASE = f"http://{GATEWAY_IP}:8080"
LIMIT = "300kbit"
CONFIG = f"""
ice:
  addresses: [{GATEWAY_IP}]
auth:
  enabled: true
  keys: [{{key: {KEY}, secret: "{SECRET}"}}]
log:
  level: warning
"""


@dataclass
class SlowLink:
    sfu: Namespace
    slow: Namespace


@pytest.fixture
def slow_link() -> Iterator[SlowLink]:
    with network("gwB1") as net:
        sfu, slow = net.namespace("sfu"), net.namespace("slow")
        sfu_if, _ = net.link(sfu, f"{GATEWAY_IP}/24", slow, f"{SLOW_IP}/24", "sl")
        sfu.rate_limit(sfu_if, LIMIT)
        yield SlowLink(sfu, slow)


async def egress(link: SlowLink, location: str, access: str) -> dict[str, Any]:
    session = location.rstrip("/").rsplit("/", 1)[-1]
    body = await link.sfu.fetch_json(f"{BASE}/api/sessions/{session}", access)
    streams: dict[str, Any] = body["egress"]
    (video,) = [s for s in streams.values() if s["kind"] == "video"]
    return video  # type: ignore[no-any-return]


async def test_viewer_behind_slow_link_drops_to_keyframes_alone(
    slow_link: SlowLink, tmp_path: Path
) -> None:
    gateway = await start_gateway_process(
        CONFIG, tmp_path, host=GATEWAY_IP, port=8080, wrapper=slow_link.sfu.command()
    )
    access = token("source", room="slow", canPublish=True, canSubscribe=True)
    slow_access = token("slow-viewer", room="slow", canSubscribe=True)
    operator = token("operator", admin=True)  # reads /api/stats and every session
    # ~1.5-2 Mbps: 640x480 at 30 fps with a band of noise (--busy).
    source = await PeerProcess.start(
        slow_link.sfu, "--base", BASE, "--room", "slow", "--token", access,
        "--publish", "--watch", "--busy", "--width", "640", "--height", "480", "--seconds", "16",
    )  # fmt: skip
    slow: PeerProcess | None = None
    try:
        await source.until("published")
        good = await source.until("watching")
        slow = await PeerProcess.start(
            slow_link.slow, "--base", BASE, "--room", "slow", "--token", slow_access,
            "--watch", "--seconds", "12",
        )  # fmt: skip
        watching = await slow.until("watching")
        # The slow viewer's socket backs up behind the token bucket: past the backlog
        # bound the gateway drops it to the next keyframe, and counts it.
        # Polled while the slow viewer lives (12 s; each poll is a process in the namespace,
        # slow on a busy machine): its session ends with it.
        deadline = asyncio.get_running_loop().time() + 9
        while True:
            slow_stats = await egress(slow_link, watching["location"], operator)
            if slow_stats["dropped_backlog"] > 0 and slow_stats["frames_sent"] > 0:
                break
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"the slow viewer was never dropped: {slow_stats}")
            await asyncio.sleep(0.2)
        good_stats = await egress(slow_link, good["location"], operator)
        stats = await slow_link.sfu.fetch_json(f"{BASE}/api/stats", operator)
        slow_result = await slow.until("result", timeout=90)
        result = await source.until("result", timeout=90)
    finally:
        for peer in (source, slow):
            if peer is not None:
                await peer.close()
        await gateway.close()
    (track,) = [t for room in stats["rooms"] for t in room["tracks"] if t["kind"] == "video"]
    assert track["bitrate_in_bps"] > 3 * 300_000, track  # far above the slow link
    assert track["drops"] >= slow_stats["dropped_backlog"] > 0, track
    # The good viewer never dropped: every frame since its first, in order.
    assert good_stats["dropped_backlog"] == 0, good_stats
    numbers = result["numbers"]
    assert numbers == sorted(numbers), numbers
    span = result["frames_sent"] - numbers[0]
    assert len(numbers) >= 0.8 * span, (len(numbers), span)
    # The slow viewer still gets pictures (keyframes), far fewer than were sent.
    assert slow_result["numbers"], slow_result
    assert len(slow_result["numbers"]) < 0.8 * span, slow_result
