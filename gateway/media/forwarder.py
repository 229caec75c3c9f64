"""Fans one track's outgoing frames out to every subscriber of it."""

from __future__ import annotations

from .frames import OutgoingFrame
from .subscriber import Subscriber


class Forwarder:
    """Hands each frame, with its RTP payloads built once, to every subscriber."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self.frames = 0
        self.bytes = 0

    def add(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def remove(self, subscriber: Subscriber) -> None:
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)

    @property
    def subscribers(self) -> list[Subscriber]:
        return list(self._subscribers)

    def forward(self, frame: OutgoingFrame) -> None:
        self.frames += 1
        self.bytes += frame.size
        for subscriber in self._subscribers:
            subscriber.push(frame)

    def gap(self) -> None:
        for subscriber in self._subscribers:
            subscriber.frames_lost_upstream()
