"""Late viewers start at a fresh keyframe; a congested viewer never slows the others."""

from __future__ import annotations

import itertools
import time
from typing import Any

from gateway.media.subscriber import Subscriber
from tests.conftest import RunningGateway
from tests.support.media import NumberedVideoTrack, ToneTrack
from tests.support.peers import wait_for, whep_watch, whip_publish


async def video_stats(gateway: RunningGateway) -> dict[str, Any]:
    stats = await gateway.stats()
    (video,) = [t for t in stats["rooms"][0]["tracks"] if t["kind"] == "video"]
    return video


async def test_late_viewer_gets_a_keyframe_on_request(gateway: RunningGateway) -> None:
    video = NumberedVideoTrack(320, 240)
    publisher = await whip_publish(gateway.http, gateway.base, "late", [video])
    first = await whep_watch(gateway.http, gateway.base, "late")
    await wait_for(
        lambda: len(first.received.numbers) >= 60
    )  # ~2 s in: well past the first keyframe
    before = await video_stats(gateway)

    late = await whep_watch(gateway.http, gateway.base, "late")
    await wait_for(lambda: len(late.received.numbers) >= 10)
    after = await video_stats(gateway)
    # The join caused an upstream PLI and the publisher answered with a keyframe.
    assert after["keyframe_requests_upstream"] > before["keyframe_requests_upstream"]
    assert after["keyframes_received"] > before["keyframes_received"]
    # The late viewer's first decoded frame is a recent one, and it decodes cleanly in order.
    assert late.received.numbers[0] >= 60
    assert late.received.numbers == sorted(late.received.numbers)
    assert late.received.sizes == {(320, 240)}
    await late.close(gateway.http, gateway.base)
    await first.close(gateway.http, gateway.base)
    await publisher.close(gateway.http, gateway.base)


async def test_congested_viewer_drops_to_keyframe_without_slowing_others(
    gateway: RunningGateway,
) -> None:
    publisher = await whip_publish(
        gateway.http, gateway.base, "stall", [NumberedVideoTrack(320, 240), ToneTrack()]
    )
    # One viewer never reads what it receives (its own decoder backs up, not ours).
    idle = await whep_watch(gateway.http, gateway.base, "stall", read=False)
    healthy = [await whep_watch(gateway.http, gateway.base, "stall") for _ in range(2)]
    stalled = await whep_watch(gateway.http, gateway.base, "stall")
    await wait_for(lambda: all(len(v.received.numbers) >= 20 for v in [*healthy, stalled]))

    # Congest the gateway's socket towards one viewer for 1.5 s, as a saturated
    # network would: its send backlog reports more than the configured bound.
    room = gateway.registry.rooms["stall"]
    (video_track,) = [p for p in room.publishers if p.kind == "video"]
    subscriber: Subscriber = video_track.forwarder.subscribers[-1]
    output = subscriber._output
    assert output is not None
    real_backlog = output.backlog
    congested_until = time.monotonic() + 1.5
    output.backlog = lambda: 10**9 if time.monotonic() < congested_until else real_backlog()  # type: ignore[method-assign]

    before = await video_stats(gateway)
    healthy_subscribers = video_track.forwarder.subscribers[1:3]
    skipped = [s.skipped_until_keyframe for s in healthy_subscribers]
    marks = [len(v.received.numbers) for v in healthy]
    stalled_mark = len(stalled.received.numbers)
    await wait_for(lambda: time.monotonic() > congested_until + 0.2, timeout=20)
    await wait_for(lambda: len(stalled.received.numbers) > stalled_mark + 20, timeout=20)

    # The congested viewer dropped, waited for a keyframe (requested), and resumed.
    stats = await video_stats(gateway)
    assert subscriber.dropped_backlog > 0
    assert stats["drops"] >= subscriber.dropped_backlog
    assert stats["keyframe_requests_upstream"] > before["keyframe_requests_upstream"]
    resumed = stalled.received.numbers[stalled_mark:]
    assert resumed == sorted(resumed)
    gap = [b - a for a, b in itertools.pairwise(resumed) if b - a > 1]
    assert gap and max(gap) >= 30, "the congested viewer should have skipped ~1.5 s of frames"
    # The healthy viewers were sent every frame in the meantime: the gateway dropped nothing
    # for them, and each decoded frame number follows the last one. A frame it decoded whose
    # number the picture no longer shows (a degraded picture on a busy machine) still arrived.
    for healthy_subscriber, skipped_before in zip(healthy_subscribers, skipped, strict=True):
        assert healthy_subscriber.dropped_backlog == 0
        assert healthy_subscriber.skipped_until_keyframe == skipped_before
    for viewer, mark in zip(healthy, marks, strict=True):
        window = viewer.received.numbers[mark:]
        assert len(window) >= 30
        for index, (a, b) in enumerate(itertools.pairwise(window), start=mark + 1):
            unread_between = viewer.received.unreadable_at.count(index)
            assert b - a == 1 + unread_between, (
                f"a healthy viewer lost frames {a + 1}..{b - 1} "
                f"({unread_between} decoded but unreadable there)"
            )

    for viewer in [idle, *healthy, stalled]:
        await viewer.close(gateway.http, gateway.base)
    await publisher.close(gateway.http, gateway.base)
