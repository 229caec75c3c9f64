"""Forwarder: the same frame, payloads built once, to every subscriber."""

from __future__ import annotations

from gateway.media.forwarder import Forwarder
from gateway.media.frames import OutgoingFrame
from gateway.media.subscriber import Subscriber

from .test_subscriber import FakeOutput


def subscriber(kind: str = "video") -> tuple[Subscriber, FakeOutput]:
    sub = Subscriber(kind, 10_000, lambda: None)
    output = FakeOutput()
    sub.start(output)  # type: ignore[arg-type]
    return sub, output


def frame(keyframe: bool = True) -> OutgoingFrame:
    return OutgoingFrame(b"a" * 30 + b"b" * 20, [b"a" * 30, b"b" * 20], 0, keyframe, 50, 0)


async def test_forward_hands_the_frame_to_every_subscriber() -> None:
    forwarder = Forwarder()
    pairs = [subscriber() for _ in range(3)]
    for sub, _ in pairs:
        forwarder.add(sub)
    forwarder.forward(frame())
    for _, output in pairs:
        assert [p.payload for p in output.packets()] == [b"a" * 30, b"b" * 20]
    assert forwarder.frames == 1
    assert forwarder.bytes == 50
    assert forwarder.subscribers == [sub for sub, _ in pairs]


async def test_removed_subscriber_receives_nothing() -> None:
    forwarder = Forwarder()
    (kept, kept_out), (removed, removed_out) = subscriber("audio"), subscriber("audio")
    forwarder.add(kept)
    forwarder.add(removed)
    forwarder.remove(removed)
    forwarder.remove(removed)  # twice is harmless
    assert forwarder.subscribers == [kept]
    forwarder.forward(frame())
    assert len(kept_out.sent) == 2
    assert removed_out.sent == []


async def test_gap_makes_video_subscribers_wait_for_a_keyframe() -> None:
    forwarder = Forwarder()
    sub, output = subscriber("video")
    forwarder.add(sub)
    forwarder.forward(frame(keyframe=True))
    forwarder.gap()
    forwarder.forward(frame(keyframe=False))
    assert len(output.sent) == 2
    assert sub.skipped_until_keyframe == 1


class RecordingSink:
    def __init__(self) -> None:
        self.frames: list[OutgoingFrame] = []
        self.gaps = 0

    def push(self, frame: OutgoingFrame) -> None:
        self.frames.append(frame)

    def frames_lost_upstream(self) -> None:
        self.gaps += 1


def test_sinks_get_every_frame_and_gap_until_removed() -> None:
    forwarder = Forwarder()
    sink = RecordingSink()
    forwarder.add_sink(sink)
    first = frame()
    forwarder.forward(first)
    forwarder.gap()
    assert sink.frames == [first] and sink.gaps == 1
    assert forwarder.sinks == [sink] and forwarder.subscribers == []
    forwarder.remove_sink(sink)
    forwarder.forward(frame(False))
    assert sink.frames == [first]


class Exploding(RecordingSink):
    def push(self, frame: OutgoingFrame) -> None:
        raise RuntimeError("boom")


def test_a_failing_sink_does_not_cost_the_others_the_frame() -> None:
    forwarder = Forwarder()
    forwarder.add_sink(Exploding())
    healthy = RecordingSink()
    forwarder.add_sink(healthy)
    forwarder.forward(frame())
    assert len(healthy.frames) == 1 and forwarder.errors == 1


def test_subscribe_keeps_totals_of_viewers_that_left_and_reports_empty() -> None:
    emptied: list[bool] = []
    forwarder = Forwarder(on_empty=lambda: emptied.append(True))
    source = object()
    first = forwarder.subscribe("video", 10_000, lambda: None, source)
    second = forwarder.subscribe("video", 10_000, lambda: None, source)
    assert first.source is source and forwarder.subscribers == [first, second]
    for sub in (first, second):
        sub.start(FakeOutput())  # type: ignore[arg-type]
    forwarder.forward(frame())
    forwarder.forward(frame(keyframe=False))
    first.stop()
    assert forwarder.subscribers == [second] and not emptied
    assert forwarder.totals() == {
        "frames": 4,
        "bytes": 200,
        "drops": 0,
        "skipped": 0,
        "nacks": 0,
        "retransmissions": 0,
    }
    second.stop()
    assert emptied == [True]
    assert forwarder.totals()["frames"] == 4
