"""One codec of a rendition: its encoder, its keyframe requests and its viewers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import av
from aiortc.clock import current_ntp_time

from processors.pipeline import Timer

from ..media import tap
from ..media.forwarder import Forwarder
from ..media.frames import OutgoingFrame
from ..media.keyframes import KeyframeRequester
from ..media.subscriber import Subscriber
from .encoder import AudioEncoder, VideoEncoder
from .rung import Rung

if TYPE_CHECKING:
    from .rendition import Rendition

logger = logging.getLogger(__name__)

IDLE_CLOSE_S = 5.0
"""An output made for a viewer whose negotiation then failed closes after this long."""


class RenditionOutput:
    """A rendition's processed frames encoded once in one codec, for all of its viewers.

    Its ``subscribe`` has a Publisher's shape, so a session's SenderSlot is pointed at
    either. Viewers' PLIs ask this encoder for a keyframe (coalesced), never the
    publisher. The worker thread calls ``encode``; the frames come back to the loop
    and go out through this output's Forwarder like passthrough frames. When its last
    viewer leaves and no sink (a recording) is left, it closes (and the rendition, when
    it was its last output).
    """

    def __init__(
        self,
        rendition: Rendition,
        codec: str,
        encoder: VideoEncoder | AudioEncoder,
        keyframe_request_interval_s: float,
        loop: asyncio.AbstractEventLoop,
        on_close: Callable[[RenditionOutput], None],
        rung: Rung | None = None,
    ) -> None:
        self.rendition = rendition
        self.source = rendition.source  # the published track, as for a Publisher's viewers
        self.kind = rendition.kind
        self.pipeline_name = rendition.pipeline_name
        self.id = rendition.id
        self.codec = codec
        # A server-made layer (processing/ladder.py): the rung its frames are scaled to;
        # ``rid`` names it as a simulcast layer's rid names that layer.
        self.rung = rung
        self.rid = rung.rid if rung is not None else None
        self._encoder = encoder
        self._loop = loop
        self._on_close = on_close
        self._packetize = tap.packetizer(codec)
        self._clock_rate = rendition.source.clock_rate
        self.forwarder = Forwarder(on_empty=self.close)
        self.keyframes = KeyframeRequester(keyframe_request_interval_s, self._want_keyframe)
        self._keyframe_wanted = True  # the first frame out is a keyframe
        self.closed = False
        self.created_at = time.monotonic()
        # Worker side.
        self.encode_timer = Timer()
        self.frames_encoded = 0
        self.keyframes_encoded = 0
        self.encode_errors = 0
        # Loop side.
        self.latency = Timer()  # frame into the rendition -> packets out, ms
        self.frames_out = 0
        self.bytes_out = 0
        self._idle_timer: asyncio.TimerHandle | None = loop.call_later(
            IDLE_CLOSE_S, self._close_if_idle
        )

    # -- viewers (on the loop) ------------------------------------------------------------

    def subscribe(self, max_backlog: int) -> Subscriber:
        return self.forwarder.subscribe(self.kind, max_backlog, self.keyframes.request, self)

    def _close_if_idle(self) -> None:
        self._idle_timer = None
        if not self.forwarder.subscribers and not self.forwarder.sinks:
            self.close()

    def _want_keyframe(self) -> bool:
        # Read by the worker before its next encode; a plain bool is safe to share.
        self._keyframe_wanted = True
        return True

    # -- the worker thread ----------------------------------------------------------------

    def encode(self, frame: av.VideoFrame | av.AudioFrame, timestamp: int, arrived: float) -> None:
        """Encode one processed frame and hand its packets to the loop."""
        keyframe = self._keyframe_wanted
        self._keyframe_wanted = False
        started = time.perf_counter()
        try:
            if self.rung is not None and isinstance(frame, av.VideoFrame):
                frame = self.rung.scale(frame)
            packets = self._encoder.encode(frame, timestamp, keyframe)  # type: ignore[arg-type]
        except (av.FFmpegError, ValueError) as error:
            self.encode_errors += 1
            self._keyframe_wanted = True
            if self.encode_errors == 1 or self.encode_errors % 100 == 0:
                logger.warning("rendition %s (%s): encoding failed: %s", self.id, self.codec, error)
            return
        self.encode_timer.add((time.perf_counter() - started) * 1000.0)
        for packet in packets:
            self.frames_encoded += 1
            self.keyframes_encoded += packet.keyframe and self.kind == "video"
            outgoing = OutgoingFrame(
                data=packet.data,
                payloads=self._packetize(packet.data),
                timestamp=timestamp + packet.offset,
                keyframe=packet.keyframe,
                size=len(packet.data),
                ntp_time=current_ntp_time(),
                # The source track's timeline, as its own frames without sender reports.
                captured=(timestamp + packet.offset) / self._clock_rate,
            )
            self.rendition.post(self._forward, outgoing, arrived)

    # -- back on the loop -----------------------------------------------------------------

    def _forward(self, frame: OutgoingFrame, arrived: float) -> None:
        if self.closed:
            return
        if frame.keyframe and self.kind == "video":
            self.keyframes.keyframe_arrived()
        self.forwarder.forward(frame)
        self.frames_out += 1
        self.bytes_out += frame.size
        latency = (time.perf_counter() - arrived) * 1000.0
        self.latency.add(latency)
        self.rendition.latency.add(latency)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self.keyframes.close()
        for subscriber in self.forwarder.subscribers:
            subscriber.stop()
        self._on_close(self)

    # -- reporting ------------------------------------------------------------------------

    @property
    def encoder_opens(self) -> int:
        return self._encoder.opens

    @property
    def resolution(self) -> tuple[int, int] | None:
        return self._encoder.size

    def stats(self) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self.created_at, 1e-6)
        size = self.resolution
        sent = self.forwarder.totals()
        return {
            "codec": self.codec,
            "layer": self.rid,
            "subscribers": len(self.forwarder.subscribers),
            "frames_encoded": self.frames_encoded,
            "keyframes_encoded": self.keyframes_encoded,
            "frames_out": self.frames_out,
            "frames_sent": sent["frames"],
            "bitrate_out_bps": int(self.bytes_out * 8 / elapsed),
            "resolution": list(size) if size else None,
            "encoder_opens": self.encoder_opens,
            "encode_errors": self.encode_errors,
            "viewer_backlog_drops": sent["drops"],
            "keyframe_requests": {
                "encoder": self.keyframes.sent,
                "coalesced": self.keyframes.coalesced,
            },
            "timing": {"encode": self.encode_timer.snapshot(), "latency": self.latency.snapshot()},
        }
