"""One aiortc publisher through the gateway to several aiortc viewers, packet path only."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import RunningGateway
from tests.support.media import NumberedVideoTrack, ToneTrack
from tests.support.peers import wait_for, whep_watch, whip_publish


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_five_viewers_decode_numbered_frames_in_order(
    gateway: RunningGateway, codec: str
) -> None:
    video = NumberedVideoTrack(640, 360, fps=30)
    publisher = await whip_publish(gateway.http, gateway.base, "cam", [video, ToneTrack()], codec)
    viewers = [await whep_watch(gateway.http, gateway.base, "cam") for _ in range(5)]
    try:
        await wait_for(lambda: all(len(v.received.numbers) >= 45 for v in viewers), timeout=40)
        await wait_for(lambda: all(v.received.audio_frames >= 25 for v in viewers), timeout=20)
        for viewer in viewers:
            got = viewer.received
            assert got.sizes == {(640, 360)}
            assert got.numbers == sorted(got.numbers), "frames out of order"
            assert len(set(got.numbers)) == len(got.numbers), "a frame arrived twice"
            assert got.numbers[-1] - got.numbers[0] <= len(got.numbers) + 5, "frames missing"
            assert got.audio_peak > 1000, "audio is silent"
        stats = await gateway.stats()
        (room,) = stats["rooms"]
        tracks = {t["kind"]: t for t in room["tracks"]}
        assert tracks["video"]["codec"] == codec
        assert tracks["video"]["frames_decoded"] == 0
        assert tracks["video"]["subscribers"] == 5
        assert tracks["audio"]["codec"] == "opus"
        assert tracks["video"]["frames_forwarded"] >= 5 * 45
    finally:
        for viewer in viewers:
            await viewer.close()
        await publisher.close()
        await asyncio.sleep(0)
