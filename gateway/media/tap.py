"""The one place that touches aiortc's private internals (pinned to aiortc 1.16.x).

aiortc has no public hook for encoded frames on the receive side, and it turns a
viewer's PLI/FIR into a flag for an encoder that forwarded packets never meet.
Everything that reaches past its public API lives here, with its own tests, so a
version bump has one file to re-check.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from typing import Any

from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtp import RtpPacket

from .assembler import FrameAssembler
from .frames import EncodedFrame

logger = logging.getLogger(__name__)

FrameSink = Callable[[list[EncodedFrame]], None]

# Name-mangled private attributes of RTCRtpReceiver in aiortc 1.16.
_JITTER_BUFFER_ATTR = "_RTCRtpReceiver__jitter_buffer"
_DECODER_QUEUE_ATTR = "_RTCRtpReceiver__decoder_queue"


class _CountingQueue:
    """Wraps the receiver's decoder queue to count frames that reach aiortc's decoder.

    The tap hands aiortc nothing to decode, so this stays 0 on the packet path; it
    is measured rather than assumed, so an aiortc change that reroutes frames to
    the decoder shows up in the stats and the tests.
    """

    def __init__(self, inner: queue.Queue[Any]) -> None:
        self._inner = inner
        self.frames = 0

    def put(self, item: Any) -> None:
        if item is not None:
            self.frames += 1
        self._inner.put(item)

    def get(self) -> Any:
        return self._inner.get()


class _TapBuffer:
    """Stands in for the receiver's jitter buffer.

    aiortc calls ``add(packet)`` on the event loop for every depayloaded RTP packet
    (after SRTP, RTX unwrapping and NACK bookkeeping). Frames go to our sink as soon
    as they are complete; aiortc's decoder thread receives nothing, so nothing is
    decoded. An exception here would kill the whole transport, so none escapes.
    """

    capacity = 0

    def __init__(self, assembler: FrameAssembler, sink: FrameSink) -> None:
        self._assembler = assembler
        self._sink = sink
        self.errors = 0

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        try:
            data: bytes = getattr(packet, "_data", b"")
            frames = self._assembler.add(packet, data, int(time.monotonic() * 1000))
            if frames:
                self._sink(frames)
        except Exception:
            self.errors += 1
            logger.exception("encoded-frame tap failed on an RTP packet")
        return False, None


def tap_receiver(receiver: RTCRtpReceiver, assembler: FrameAssembler, sink: FrameSink) -> None:
    """Route a receiver's complete encoded frames to ``sink`` instead of its decoder.

    Must be called before the receiver starts (on the peer connection's ``track``
    event, which aiortc fires during setRemoteDescription).
    """
    for attr in (_JITTER_BUFFER_ATTR, _DECODER_QUEUE_ATTR):
        if not hasattr(receiver, attr):
            raise RuntimeError(f"aiortc internals changed: RTCRtpReceiver has no {attr}")
    setattr(receiver, _JITTER_BUFFER_ATTR, _TapBuffer(assembler, sink))
    setattr(receiver, _DECODER_QUEUE_ATTR, _CountingQueue(getattr(receiver, _DECODER_QUEUE_ATTR)))


def tap_errors(receiver: RTCRtpReceiver) -> int:
    buffer = getattr(receiver, _JITTER_BUFFER_ATTR, None)
    return buffer.errors if isinstance(buffer, _TapBuffer) else 0


def frames_decoded(receiver: RTCRtpReceiver) -> int:
    """Frames this receiver passed to aiortc's decoder thread."""
    counter = getattr(receiver, _DECODER_QUEUE_ATTR, None)
    return counter.frames if isinstance(counter, _CountingQueue) else 0


async def send_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> None:
    """Ask the remote sender of ``media_ssrc`` for a keyframe (RTCP PLI)."""
    await receiver._send_rtcp_pli(media_ssrc)


def route_keyframe_requests(sender: RTCRtpSender, on_request: Callable[[], None]) -> None:
    """Deliver a viewer's PLI/FIR for this sender to ``on_request``.

    aiortc answers them by setting a flag for its own encoder, which forwarded
    packets never pass through.
    """
    if not callable(getattr(sender, "_send_keyframe", None)):
        raise RuntimeError("aiortc internals changed: RTCRtpSender has no _send_keyframe")
    sender._send_keyframe = on_request  # type: ignore[method-assign]
