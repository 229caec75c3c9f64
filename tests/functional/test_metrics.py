"""/metrics while real aiortc peers publish and watch: the counters move by what was
forwarded, they never go back when tracks end, and the output parses with
prometheus_client's own parser."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import RunningGateway
from tests.support.media import NumberedVideoTrack, ToneTrack
from tests.support.peers import wait_for, whep_watch, whip_publish


async def scrape(gateway: RunningGateway) -> dict[str, float]:
    """Every sample as name{label=value,...} -> value."""
    async with gateway.http.get(f"{gateway.base}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = await response.text()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


async def test_counters_follow_the_media_and_never_go_back(gateway: RunningGateway) -> None:
    idle = await scrape(gateway)
    assert idle["gateway_rooms{}"] == 0 and idle["gateway_frames_forwarded_total{}"] == 0
    publisher = await whip_publish(
        gateway.http, gateway.base, "metered", [NumberedVideoTrack(320, 240), ToneTrack()]
    )
    viewers = [await whep_watch(gateway.http, gateway.base, "metered") for _ in range(2)]
    try:
        await wait_for(lambda: all(len(v.received.numbers) >= 60 for v in viewers), timeout=30)
        live = await scrape(gateway)
        assert live["gateway_rooms{}"] == 1
        assert live["gateway_sessions{role=publisher}"] == 1
        assert live["gateway_sessions{role=subscriber}"] == 2
        assert live["gateway_tracks{codec=VP8,kind=video}"] == 1
        assert live["gateway_tracks{codec=opus,kind=audio}"] == 1
        received = live["gateway_frames_received_total{}"]
        forwarded = live["gateway_frames_forwarded_total{}"]
        # Two viewers of every frame (video and audio), less the few before each viewer's
        # first keyframe or connection.
        assert 2 * received * 0.8 <= forwarded <= 2 * received, (received, forwarded)
        assert live["gateway_forwarded_bytes_total{}"] > 2 * 0.8 * 60 * 100
        assert live["gateway_keyframes_received_total{}"] >= 1
    finally:
        for peer in (*viewers, publisher):
            await peer.close(gateway.http, gateway.base)
    await asyncio.sleep(0.2)
    await wait_for(lambda: not gateway.registry.rooms, timeout=10)
    after = await scrape(gateway)
    assert after["gateway_rooms{}"] == 0
    assert after["gateway_tracks_ended_total{}"] == 2
    # Ended tracks keep what they counted: a counter never goes back.
    for name in ("gateway_frames_received_total{}", "gateway_frames_forwarded_total{}"):
        assert after[name] >= live[name], name
