"""A Publisher taken over by a new receiver: its viewers' RTP stream goes on unbroken."""

from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCCertificate, RTCDtlsTransport, RTCIceGatherer, RTCIceTransport, RTCRtpReceiver

from gateway.media.feed import ReceiverFeed
from gateway.media.frames import EncodedFrame
from gateway.media.publisher import Publisher

from .test_subscriber import FakeOutput


def receiver(kind: str = "video") -> RTCRtpReceiver:
    """A real aiortc receiver on a transport that never starts (no network)."""
    transport = RTCDtlsTransport(
        RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()]
    )
    return RTCRtpReceiver(kind, transport)


def frame(timestamp: int, keyframe: bool = False, ssrc: int = 1) -> EncodedFrame:
    return EncodedFrame(b"\x00" * 40, timestamp, keyframe, False, 0, ssrc)


async def test_a_successor_continues_sequence_and_timeline() -> None:
    publisher = Publisher("video", "VP8", ReceiverFeed(receiver(), "VP8", "video"), 0.5)
    subscriber = publisher.subscribe(100_000)
    output = FakeOutput()
    subscriber.start(output)  # type: ignore[arg-type]
    publisher.on_frames([frame(1000, keyframe=True), frame(4000), frame(7000)])
    before = output.packets()
    assert [p.timestamp - before[0].timestamp for p in before] == [0, 3000, 6000]

    publisher.detach()
    assert publisher.paused
    publisher.on_frames([frame(10000)])  # a late frame of the old receiver: dropped
    assert len(output.packets()) == len(before)
    await asyncio.sleep(0.2)
    publisher.rebind(ReceiverFeed(receiver(), "VP8", "video"), owner="successor")
    assert not publisher.paused and publisher.owner == "successor"
    # The new encoder's stream: its own SSRC and timestamps; deltas wait for its keyframe.
    publisher.on_frames([frame(500_000, ssrc=2)])
    assert len(output.packets()) == len(before)
    publisher.on_frames([frame(503_000, keyframe=True, ssrc=2), frame(506_000, ssrc=2)])
    after = output.packets()[len(before) :]
    assert len(after) == 2
    # Sequence numbers go on from the last one sent; the timestamp moves on by at least
    # the 0.2 s away (90 kHz), not back to the new stream's origin.
    assert after[0].sequence_number == (before[-1].sequence_number + 1) & 0xFFFF
    step = (after[0].timestamp - before[-1].timestamp) & 0xFFFFFFFF
    assert 0.2 * 90000 <= step <= 2 * 90000, step
    assert (after[1].timestamp - after[0].timestamp) & 0xFFFFFFFF == 3000
    assert publisher.stats()["takeovers"] == 1


async def test_audio_timeline_moves_on_in_its_clock_rate() -> None:
    publisher = Publisher("audio", "opus", ReceiverFeed(receiver("audio"), "opus", "audio"), 0.5)
    subscriber = publisher.subscribe(100_000)
    output = FakeOutput()
    subscriber.start(output)  # type: ignore[arg-type]
    publisher.on_frames([frame(0), frame(960)])
    publisher.detach()
    await asyncio.sleep(0.1)
    publisher.rebind(ReceiverFeed(receiver("audio"), "opus", "audio"), owner="successor")
    publisher.on_frames([frame(77_777, ssrc=2)])  # audio needs no keyframe
    sent = output.packets()
    step = (sent[2].timestamp - sent[1].timestamp) & 0xFFFFFFFF
    assert 0.1 * 48000 <= step <= 1.5 * 48000, step


async def test_a_closed_track_cannot_be_taken_over() -> None:
    publisher = Publisher("video", "VP8", ReceiverFeed(receiver(), "VP8", "video"), 0.5)
    publisher.close()
    with pytest.raises(RuntimeError):
        publisher.rebind(ReceiverFeed(receiver(), "VP8", "video"), owner="late")
