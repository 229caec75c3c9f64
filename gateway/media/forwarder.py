"""Fans one track's outgoing frames out to every subscriber and other frame sink."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from .frames import OutgoingFrame
from .subscriber import Subscriber

logger = logging.getLogger(__name__)


class FrameSink(Protocol):
    """Anything fed a track's frames besides viewers (a recorder, a decoder)."""

    def push(self, frame: OutgoingFrame) -> None: ...

    def frames_lost_upstream(self) -> None: ...


class Forwarder:
    """Hands each frame, with its RTP payloads built once, to every subscriber and sink.

    Called on the event loop for every frame: a sink must return at once (hand
    heavy work to its own thread through a bounded queue).
    """

    def __init__(self, on_empty: Callable[[], None] | None = None) -> None:
        self._subscribers: list[Subscriber] = []
        self._sinks: list[FrameSink] = []
        self.frames = 0
        self.bytes = 0
        self.errors = 0
        # Called when the last viewer made by ``subscribe`` stops, or the last sink is
        # removed, and nothing is left (a rendition's output then ends).
        self._on_empty = on_empty
        # What viewers that have left sent and dropped (live ones are summed on demand).
        self._retired = dict.fromkeys(
            ("frames", "bytes", "drops", "skipped", "nacks", "retransmissions"), 0
        )

    def subscribe(
        self, kind: str, max_backlog: int, request_keyframe: Callable[[], None], source: object
    ) -> Subscriber:
        """A new viewer of this forwarder's track; its stop removes it and keeps its totals."""
        subscriber = Subscriber(kind, max_backlog, request_keyframe, on_stop=self._retire)
        subscriber.source = source
        subscriber.vp8 = getattr(source, "codec", "") == "VP8"
        self.add(subscriber)
        return subscriber

    def _retire(self, subscriber: Subscriber) -> None:
        self.remove(subscriber)
        self._retired["frames"] += subscriber.frames_sent
        self._retired["bytes"] += subscriber.bytes_sent
        self._retired["drops"] += subscriber.dropped_backlog
        self._retired["skipped"] += subscriber.skipped_until_keyframe
        self._retired["nacks"] += subscriber.nacks
        self._retired["retransmissions"] += subscriber.retransmissions
        self._check_empty()

    def totals(self) -> dict[str, int]:
        """Frames and bytes sent, backlog drops, frames skipped until a keyframe, NACKed
        packets and retransmissions, summed over every viewer this forwarder has had."""
        live = self._subscribers
        return {
            "frames": self._retired["frames"] + sum(s.frames_sent for s in live),
            "bytes": self._retired["bytes"] + sum(s.bytes_sent for s in live),
            "drops": self._retired["drops"] + sum(s.dropped_backlog for s in live),
            "skipped": self._retired["skipped"] + sum(s.skipped_until_keyframe for s in live),
            "nacks": self._retired["nacks"] + sum(s.nacks for s in live),
            "retransmissions": self._retired["retransmissions"]
            + sum(s.retransmissions for s in live),
        }

    def add(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def remove(self, subscriber: Subscriber) -> None:
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)

    def add_sink(self, sink: FrameSink) -> None:
        self._sinks.append(sink)

    def remove_sink(self, sink: FrameSink) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)
            self._check_empty()

    def _check_empty(self) -> None:
        if not self._subscribers and not self._sinks and self._on_empty is not None:
            self._on_empty()

    @property
    def subscribers(self) -> list[Subscriber]:
        return list(self._subscribers)

    @property
    def sinks(self) -> list[FrameSink]:
        return list(self._sinks)

    def forward(self, frame: OutgoingFrame) -> None:
        self.frames += 1
        self.bytes += frame.size
        for receiver in (*self._subscribers, *self._sinks):
            try:
                receiver.push(frame)
            except Exception:
                # One failing viewer or sink must not cost the others this frame.
                self.errors += 1
                if self.errors == 1 or self.errors % 1000 == 0:
                    logger.exception("forwarding a frame failed (%d failures)", self.errors)

    def gap(self) -> None:
        for subscriber in self._subscribers:
            subscriber.frames_lost_upstream()
        for sink in self._sinks:
            sink.frames_lost_upstream()
