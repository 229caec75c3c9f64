"""Where a published track's encoded frames come from: a peer's aiortc receiver, tapped."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from aiortc import RTCRtpReceiver

from . import tap
from .assembler import FrameAssembler
from .frames import EncodedFrame
from .nack import NackScheduler

FrameHandler = Callable[[list[EncodedFrame]], None]

# What a feed counts while it feeds a track (the track sums them over every feed it had).
FEED_COUNTERS = (
    "frames_decoded",
    "packets_late",
    "nacks_sent",
    "nack_retries",
    "retransmissions_received",
    "frames_unrepaired",
    "tap_errors",
)


class Feed(Protocol):
    """The source side of a Publisher: it hands over complete encoded frames and takes
    keyframe requests back. One feed feeds one track; a track may change feeds (a
    returning publisher, a relay replaced)."""

    def start(self, on_frames: FrameHandler) -> None:
        """Begin calling ``on_frames`` (on the event loop) with each batch of frames."""

    def request_keyframe(self, ssrc: int) -> None:
        """Ask the sender of ``ssrc`` (as frames carried it) for a keyframe."""

    def counters(self) -> dict[str, int]:
        """This feed's share of FEED_COUNTERS."""


class PliSender:
    """Sends PLIs for a receiver's remote SSRCs; owns each send until it is done."""

    def __init__(self, receiver: RTCRtpReceiver) -> None:
        self._receiver = receiver
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, ssrc: int) -> None:
        task = asyncio.ensure_future(tap.send_pli(self._receiver, ssrc))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class ReceiverFeed:
    """A peer connection's receiver: its RTP reassembled into frames in aiortc's jitter
    buffer seat (tap.tap_receiver), NACKs scheduled by us, PLIs sent as RTCP."""

    def __init__(self, receiver: RTCRtpReceiver, codec: str, kind: str) -> None:
        self.receiver = receiver
        self._kind = kind
        self._assembler = FrameAssembler(codec, kind)
        self._nacks = tap.NackCount()
        self._nack_scheduler = NackScheduler()
        self._send_pli = PliSender(receiver)

    def start(self, on_frames: FrameHandler) -> None:
        # Before the receiver starts (aiortc's ``track`` event): no packet is missed.
        tap.tap_receiver(self.receiver, self._assembler, on_frames)
        self._nacks = tap.count_nacks(self.receiver)
        if self._kind == "video":
            tap.replace_nack_generator(self.receiver, self._nack_scheduler)

    def request_keyframe(self, ssrc: int) -> None:
        self._send_pli(ssrc)

    def counters(self) -> dict[str, int]:
        return {
            "frames_decoded": tap.frames_decoded(self.receiver),
            "packets_late": self._assembler.packets_late,
            "nacks_sent": self._nacks.sequence_numbers,
            "nack_retries": self._nack_scheduler.retries,
            "retransmissions_received": tap.retransmissions_received(self.receiver),
            "frames_unrepaired": self._assembler.frames_skipped,
            "tap_errors": tap.tap_errors(self.receiver),
        }
