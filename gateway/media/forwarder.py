"""Fans one track's outgoing frames out to every subscriber and other frame sink."""

from __future__ import annotations

import logging
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

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._sinks: list[FrameSink] = []
        self.frames = 0
        self.bytes = 0
        self.errors = 0

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
