"""One viewer's egress of one track: a bounded queue feeding aiortc's packetizer."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError


class Subscriber(MediaStreamTrack):
    """A track whose ``recv()`` returns the publisher's own encoded packets.

    aiortc's RTCRtpSender packetizes whatever av.Packet ``recv()`` returns (the
    packet object is shared by every subscriber of the track, never copied).
    Drop policy when the viewer falls behind: video drops everything queued and
    waits for the next keyframe (asking for one), since a decoder cannot use
    delta frames after a gap; audio drops the oldest packet.
    """

    def __init__(
        self,
        kind: str,
        capacity: int,
        request_keyframe: Callable[[], None],
        on_stop: Callable[[Subscriber], None] | None = None,
    ) -> None:
        super().__init__()
        self.kind = kind
        self._capacity = capacity
        self._queue: deque[av.Packet[Any]] = deque()
        self._ready = asyncio.Event()
        self._request_keyframe = request_keyframe
        self._on_stop = on_stop
        self._started = False
        self._waiting_for_keyframe = kind == "video"
        self.created_at = time.monotonic()
        self.connected_at: float | None = None
        self.first_frame_at: float | None = None
        self.frames_sent = 0
        self.bytes_sent = 0
        self.dropped_overflow = 0
        self.skipped_until_keyframe = 0
        self.keyframe_requests = 0  # from this viewer (PLI/FIR) plus our own waits

    def push(self, packet: av.Packet[Any], keyframe: bool) -> None:
        """Called by the forwarder on the event loop for every frame of the track."""
        if not self._started or self.readyState == "ended":
            # aiortc starts reading once ICE and DTLS are up; frames before that
            # are of no use (the first one sent must be a keyframe anyway).
            return
        if self._waiting_for_keyframe:
            if not keyframe:
                self.skipped_until_keyframe += 1
                return
            self._waiting_for_keyframe = False
        if len(self._queue) >= self._capacity:
            if self.kind == "video":
                self.dropped_overflow += len(self._queue) + (0 if keyframe else 1)
                self._queue.clear()
                if not keyframe:
                    self._wait_for_keyframe()
                    return
            else:
                self._queue.popleft()
                self.dropped_overflow += 1
        self._queue.append(packet)
        self._ready.set()

    def frames_lost_upstream(self) -> None:
        """The publisher's stream has a gap: deltas are useless until a keyframe."""
        if self.kind == "video" and self._started:
            self._queue.clear()
            self._waiting_for_keyframe = True

    def on_keyframe_request(self) -> None:
        """The viewer sent PLI or FIR."""
        self.keyframe_requests += 1
        self._request_keyframe()

    async def recv(self) -> Any:
        if not self._started:
            self._started = True
            self.connected_at = time.monotonic()
            if self.kind == "video":
                self._request_keyframe()
        while not self._queue:
            if self.readyState == "ended":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        packet = self._queue.popleft()
        if self.first_frame_at is None:
            self.first_frame_at = time.monotonic()
        self.frames_sent += 1
        self.bytes_sent += packet.size
        return packet

    def stop(self) -> None:
        if self.readyState != "ended":
            super().stop()
            self._queue.clear()
            self._ready.set()  # wake recv() so the sender loop ends
            if self._on_stop is not None:
                self._on_stop(self)

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def time_to_first_frame_ms(self) -> float | None:
        if self.first_frame_at is None or self.connected_at is None:
            return None
        return (self.first_frame_at - self.connected_at) * 1000

    def _wait_for_keyframe(self) -> None:
        self._waiting_for_keyframe = True
        self._request_keyframe()

    def stats(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "frames_sent": self.frames_sent,
            "bytes_sent": self.bytes_sent,
            "queued": len(self._queue),
            "dropped_overflow": self.dropped_overflow,
            "skipped_until_keyframe": self.skipped_until_keyframe,
            "keyframe_requests": self.keyframe_requests,
            "time_to_first_frame_ms": self.time_to_first_frame_ms,
        }
