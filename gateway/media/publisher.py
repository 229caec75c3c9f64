"""The ingest side of one published track: encoded frames in, shared packets out."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiortc import RTCRtpReceiver
from aiortc.clock import current_ntp_time

from . import tap
from .assembler import FrameAssembler
from .forwarder import Forwarder
from .frames import EncodedFrame, OutgoingFrame, vp8_resolution
from .keyframes import KeyframeRequester
from .nack import NackScheduler
from .subscriber import Subscriber

logger = logging.getLogger(__name__)


class Publisher:
    """Receives one track's encoded frames from aiortc and forwards them.

    Each frame is packetized once (RTP payloads shared by all subscribers, its
    timestamp made relative to the first frame): no decode, no encode, no
    per-viewer copy or packetization.
    """

    def __init__(
        self,
        kind: str,
        codec: str,
        receiver: RTCRtpReceiver,
        keyframe_interval_s: float,
        source: str = "",
        owner: str = "",
    ) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.kind = kind
        self.codec = codec
        self.source = source or ("camera" if kind == "video" else "microphone")
        self.owner = owner  # id of the session that publishes it
        self.muted = False
        self._receiver = receiver
        self._packetize = tap.packetizer(codec)
        self._assembler = FrameAssembler(codec, kind)
        self.forwarder = Forwarder()
        self.keyframes = KeyframeRequester(keyframe_interval_s, self._send_pli)
        self._ssrc: int | None = None
        self._first_ts: int | None = None
        self._last_ts = 0
        self._ts_cycles = 0
        self._pli_tasks: set[asyncio.Task[None]] = set()
        self._on_close: list[Callable[[], None]] = []
        self.started_at = time.monotonic()
        self.frames_in = 0
        self.bytes_in = 0
        self.keyframes_in = 0
        self.gaps = 0
        self.resolution: tuple[int, int] | None = None
        self.closed = False
        # Windowed ingest numbers (bitrate, fps, loss, jitter, feedback), set by media/ingest.py.
        self.ingest_stats: Callable[[], dict[str, Any]] | None = None
        tap.tap_receiver(receiver, self._assembler, self.on_frames)
        self._nacks = tap.count_nacks(receiver)
        self._nack_scheduler = NackScheduler()
        if kind == "video":
            tap.replace_nack_generator(receiver, self._nack_scheduler)

    def on_frames(self, frames: list[EncodedFrame]) -> None:
        for frame in frames:
            self._deliver(frame)

    def _deliver(self, frame: EncodedFrame) -> None:
        if self.closed:
            return
        if self._ssrc is None:
            self._ssrc = frame.ssrc
            self.keyframes.retry()
        outgoing = OutgoingFrame(
            data=frame.data,
            payloads=self._packetize(frame.data),
            timestamp=self._pts(frame.timestamp),
            keyframe=frame.keyframe,
            size=len(frame.data),
            ntp_time=current_ntp_time(),
        )
        self.frames_in += 1
        self.bytes_in += len(frame.data)
        if self.kind == "video":
            if frame.discontinuity:
                self.gaps += 1
                self.forwarder.gap()
                self.keyframes.request()
            if frame.keyframe:
                self.keyframes_in += 1
                self.keyframes.keyframe_arrived()
                if self.codec == "VP8":
                    self.resolution = vp8_resolution(frame.data) or self.resolution
        if not self.muted:
            self.forwarder.forward(outgoing)

    def _pts(self, timestamp: int) -> int:
        """RTP timestamp unwrapped past 2**32 and made relative to the first frame."""
        if self._first_ts is None:
            self._first_ts = timestamp
            self._last_ts = timestamp
        elif timestamp < self._last_ts and self._last_ts - timestamp > 0x80000000:
            self._ts_cycles += 1
            self._last_ts = timestamp
        elif timestamp > self._last_ts and timestamp - self._last_ts < 0x80000000:
            self._last_ts = timestamp
        return (self._ts_cycles << 32) + timestamp - self._first_ts

    def subscribe(self, max_backlog: int) -> Subscriber:
        return self.forwarder.subscribe(self.kind, max_backlog, self.keyframes.request, self)

    def _send_pli(self) -> bool:
        if self._ssrc is None or self.closed:
            return False
        task = asyncio.ensure_future(tap.send_pli(self._receiver, self._ssrc))
        self._pli_tasks.add(task)
        task.add_done_callback(self._pli_tasks.discard)
        return True

    def on_close(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` when the track ends (renditions of it stop with it)."""
        self._on_close.append(callback)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.keyframes.close()
        for subscriber in self.forwarder.subscribers:
            subscriber.stop()
        for callback in self._on_close:
            try:
                callback()
            except Exception:
                logger.exception("track close callback failed")

    def set_muted(self, muted: bool) -> None:
        """Pause or resume forwarding; nothing is torn down. Viewers resume at a keyframe."""
        if muted == self.muted:
            return
        self.muted = muted
        if not muted and self.kind == "video":
            self.forwarder.gap()
            self.keyframes.request()

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "codec": self.codec,
            "source": self.source,
            "muted": self.muted,
        }

    def stats(self) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self.started_at, 1e-6)
        subscribers = self.forwarder.subscribers
        sent = self.forwarder.totals()
        return {
            "id": self.id,
            "kind": self.kind,
            "codec": self.codec,
            "frames_received": self.frames_in,
            "bytes_received": self.bytes_in,
            "keyframes_received": self.keyframes_in,
            "bitrate_in_bps": int(self.bytes_in * 8 / elapsed),
            "resolution": list(self.resolution) if self.resolution else None,
            "frames_forwarded": sent["frames"],
            "bytes_forwarded": sent["bytes"],
            "frames_decoded": tap.frames_decoded(self._receiver),
            "drops": sent["drops"],
            "skipped_until_keyframe": sent["skipped"],
            "upstream_gaps": self.gaps,
            "packets_late": self._assembler.packets_late,
            # Loss repair: NACKs to the publisher and what it resent (RTX), frames given up
            # on (a packet never came: viewers wait for the keyframe a PLI asks for), and
            # the viewers' NACKs answered from their history.
            "nacks_sent": self._nacks.sequence_numbers,
            "nack_retries": self._nack_scheduler.retries,
            "retransmissions_received": tap.retransmissions_received(self._receiver),
            "frames_unrepaired": self._assembler.frames_skipped,
            "nacks_received": sent["nacks"],
            "retransmissions_sent": sent["retransmissions"],
            "keyframe_requests_upstream": self.keyframes.sent,
            "keyframe_requests_coalesced": self.keyframes.coalesced,
            "tap_errors": tap.tap_errors(self._receiver),
            "forward_errors": self.forwarder.errors,
            "subscribers": len(subscribers),
            "ingest": self.ingest_stats() if self.ingest_stats is not None else None,
        }
