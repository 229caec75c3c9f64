"""Fans one stream of encoded packets out to every subscriber of it."""

from __future__ import annotations

from typing import Any

import av

from .subscriber import Subscriber


class Forwarder:
    """Hands each encoded packet, unchanged and uncopied, to every subscriber."""

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

    def forward(self, packet: av.Packet[Any], keyframe: bool) -> None:
        self.frames += 1
        self.bytes += packet.size
        for subscriber in self._subscribers:
            subscriber.push(packet, keyframe)

    def gap(self) -> None:
        for subscriber in self._subscribers:
            subscriber.frames_lost_upstream()
