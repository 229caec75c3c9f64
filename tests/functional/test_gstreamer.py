"""Stock GStreamer webrtcbin (Debian's 1.22) as WHIP publisher and WHEP viewer.

webrtcbin keeps its defaults: a self-signed RSA certificate, bundle-only second m-line
(port 0), no header extensions, and (``--trickle``) candidates trickled in PATCHes after
an offer that has none. It runs in the system python (tests/support/gst_client.py).
"""

from __future__ import annotations

import contextlib

import pytest

from tests.conftest import RunningGateway
from tests.support.gst_process import GstClient, check_answer
from tests.support.media import NumberedVideoTrack, ToneTrack
from tests.support.peers import Viewer, wait_for, whep_watch, whip_publish


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


def trickled_candidates(gateway: RunningGateway, room: str, transport: str) -> int:
    """Remote candidates the gateway took from PATCHes for the room's sessions of that
    transport (the tests have one)."""
    return sum(
        s.candidates_received
        for s in gateway.registry.sessions.values()
        if s.room.name == room and s.transport == transport
    )


def assert_trickled(result: dict[str, object]) -> None:
    assert result["offer_candidates"] == 0, "the offer was sent after gathering"
    assert isinstance(result["trickled"], int) and result["trickled"] >= 1
    assert result["ended_candidates"], "no end-of-candidates PATCH"
    patches = result["patches"]
    assert isinstance(patches, list) and patches and set(patches) == {204}, patches


@pytest.mark.parametrize(
    ("codec", "setup", "trickle"),
    [
        ("VP8", "actpass", False),
        ("H264", "actpass", False),
        ("VP8", "active", False),
        ("H264", "actpass", True),
    ],
    ids=[
        "vp8-gateway-dtls-client",
        "h264-gateway-dtls-client",
        "vp8-gateway-dtls-server",
        "h264-trickle",
    ],
)
async def test_gstreamer_publisher_reaches_aiortc_viewer(
    gateway: RunningGateway, codec: str, setup: str, trickle: bool
) -> None:
    # actpass: the gateway answers as DTLS client against webrtcbin's RSA certificate;
    # active: webrtcbin is the DTLS client and the gateway serves.
    publisher = await GstClient.start(
        "publish", f"{gateway.base}/whip/gst", codec, 40, setup=setup, trickle=trickle
    )
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
        if trickle:
            assert trickled_candidates(gateway, "gst", "whip") >= 1
    finally:
        if viewer is not None:
            await viewer.close()
        result = await publisher.result()
    assert result["connected"]
    check_answer(result["answer"])
    if trickle:
        assert_trickled(result)


@pytest.mark.parametrize(
    ("codec", "trickle"),
    [("VP8", False), ("H264", False), ("VP8", True)],
    ids=["vp8", "h264", "vp8-trickle"],
)
async def test_gstreamer_viewer_decodes_aiortc_publisher(
    gateway: RunningGateway, codec: str, trickle: bool
) -> None:
    video = NumberedVideoTrack(640, 360, fps=30)
    publisher = await whip_publish(gateway.http, gateway.base, "cam", [video, ToneTrack()], codec)
    try:
        viewer = await GstClient.start(
            "watch", f"{gateway.base}/whep/cam", codec, 30, trickle=trickle, frames=90
        )
        if trickle:
            await wait_for(lambda: trickled_candidates(gateway, "cam", "whep") >= 1, timeout=20)
        result = await viewer.result()
    finally:
        with contextlib.suppress(Exception):
            await publisher.close(gateway.http, gateway.base)
    assert result["connected"]
    check_answer(result["answer"])
    assert result["video_sizes"] == [[640, 360]]
    assert_numbered(result["video_numbers"], 60)
    # The 440 Hz tone is +-8000: decoded Opus keeps it far above silence.
    assert result["audio_buffers"] >= 90, "audio did not arrive"
    assert result["audio_peak"] > 2000, "audio is silent"
    if trickle:
        assert_trickled(result)


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_gstreamer_publisher_to_gstreamer_viewer(gateway: RunningGateway, codec: str) -> None:
    """webrtcbin on both sides: its own barcode frames and tone, decoded by webrtcbin."""
    publisher = await GstClient.start("publish", f"{gateway.base}/whip/gst2", codec, 40)
    try:
        await wait_for(
            lambda: (r := gateway.registry.room("gst2")) is not None and len(r.publishers) == 2,
            timeout=20,
        )
        viewer = await GstClient.start("watch", f"{gateway.base}/whep/gst2", codec, 30, frames=60)
        watched = await viewer.result()
    finally:
        published = await publisher.result()
    assert published["connected"] and watched["connected"]
    check_answer(published["answer"])
    check_answer(watched["answer"])
    assert watched["video_sizes"] == [[320, 240]]
    assert_numbered(watched["video_numbers"], 60)
    assert watched["video_numbers"][-1] < published["frames_pushed"]
    assert watched["audio_buffers"] >= 60 and watched["audio_peak"] > 2000, "audio is silent"
