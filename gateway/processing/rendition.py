"""One (track, pipeline, codec): decoded once, processed once, encoded once, fanned out."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
from aiortc.clock import current_ntp_time

from processors.base import FrameContext
from processors.pipeline import Pipeline, PipelineEvent, Timer

from ..media import tap
from ..media.forwarder import Forwarder
from ..media.frames import OutgoingFrame
from ..media.keyframes import KeyframeRequester
from ..media.publisher import Publisher
from ..media.subscriber import Subscriber
from .decoder import DecodeError, Decoder
from .encoder import AudioEncoder, VideoEncoder, make_encoder
from .mailbox import Mailbox

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RenditionSettings:
    """What a rendition needs from the configuration (see config.yaml, ``processing``)."""

    video_bitrate: int
    audio_bitrate: int
    encoder_threads: int
    keyframe_interval_frames: int
    queue_frames: int
    keyframe_request_interval_s: float
    viewer_backlog_bytes: int


@dataclass(slots=True)
class _Arrival:
    frame: OutgoingFrame
    perf: float  # time.perf_counter() when the frame reached the rendition
    wall: float  # time.time() at the same moment, for processors (timestamps)


class _Gap:
    """Marks lost frames in the mailbox: the decoder must restart at a keyframe."""


_GAP = _Gap()


class Rendition:
    """A published track as one pipeline's output, ready for any number of viewers.

    It is a frame sink of the track's Publisher: ``push`` only hands the encoded frame
    to the rendition's worker thread. The worker decodes every frame (cheap, and a
    decoder cannot skip references) but runs the pipeline and the encoder on the
    newest decoded video frame only: when processing is slower than the frame rate,
    older frames are dropped and counted, so latency never builds up. Audio frames
    are all processed, in order. Encoded frames come back to the event loop and go
    out through the rendition's own Forwarder, to Subscribers exactly like the
    passthrough path's; their PLIs ask this rendition's encoder for a keyframe
    (coalesced), never the publisher. The last subscriber leaving closes it.
    """

    def __init__(
        self,
        source: Publisher,
        pipeline_name: str,
        pipeline: Pipeline,
        codec: str,
        settings: RenditionSettings,
        room: str,
        on_close: Callable[[Rendition], None],
    ) -> None:
        if pipeline.kind != source.kind:
            raise ValueError(f"a {pipeline.kind} pipeline cannot process a {source.kind} track")
        self.source = source
        self.kind = source.kind
        self.codec = codec
        self.pipeline_name = pipeline_name
        self.pipeline = pipeline
        self.room = room
        self.id = f"{source.id}.{pipeline_name}.{codec.lower()}"
        self._settings = settings
        self._on_close = on_close
        self._loop = asyncio.get_running_loop()
        self.forwarder = Forwarder()
        self.keyframes = KeyframeRequester(
            settings.keyframe_request_interval_s, self._want_keyframe
        )
        self._keyframe_wanted = True  # the first output frame is a keyframe
        self._packetize = tap.packetizer(codec)
        self._mailbox: Mailbox[_Arrival | _Gap] = Mailbox(settings.queue_frames)
        self._decoder = Decoder(source.codec)
        bitrate = settings.audio_bitrate if self.kind == "audio" else settings.video_bitrate
        self._encoder: VideoEncoder | AudioEncoder = make_encoder(
            self.kind,
            codec,
            bitrate,
            settings.encoder_threads,
            settings.keyframe_interval_frames,
        )
        self.closed = False
        self.created_at = time.monotonic()
        self.events: list[PipelineEvent] = []
        self.on_event: Callable[[Rendition, PipelineEvent], None] | None = None
        pipeline.on_event = self._pipeline_event
        # Worker-side counters (written by the worker only, read by stats).
        self.decode_timer = Timer()
        self.encode_timer = Timer()
        self.frames_decoded = 0
        self.frames_processed = 0
        self.frames_encoded = 0
        self.keyframes_encoded = 0
        self.dropped_latest = 0  # decoded video frames replaced by a newer one
        self.dropped_by_pipeline = 0
        self.skipped_until_keyframe = 0
        self.decode_errors = 0
        self.encode_errors = 0
        # Loop-side counters.
        self.latency = Timer()  # frame in (push) to packets out (forward), ms
        self.frames_in = 0
        self.frames_out = 0
        self.bytes_out = 0
        self.upstream_keyframe_requests = 0
        self._retired = {"frames": 0, "bytes": 0, "drops": 0}
        self._idle_timer: asyncio.TimerHandle | None = None
        self._thread = threading.Thread(target=self._work, name=f"rendition-{self.id}", daemon=True)
        self._thread.start()
        source.forwarder.add_sink(self)
        source.on_close(self.close)
        if self.kind == "video":
            self._request_upstream_keyframe()  # the decoder starts at one
        # Created for a subscriber that may still fail to negotiate: do not outlive it.
        self._idle_timer = self._loop.call_later(5.0, self._close_if_idle)

    # -- the viewer side (on the loop), the same shape as a Publisher's ------------------

    def subscribe(self, max_backlog: int) -> Subscriber:
        subscriber = Subscriber(
            self.kind, max_backlog, self.keyframes.request, on_stop=self._retire
        )
        subscriber.source = self
        self.forwarder.add(subscriber)
        return subscriber

    def _retire(self, subscriber: Subscriber) -> None:
        self.forwarder.remove(subscriber)
        self._retired["frames"] += subscriber.frames_sent
        self._retired["bytes"] += subscriber.bytes_sent
        self._retired["drops"] += subscriber.dropped_backlog
        if not self.forwarder.subscribers:
            self.close()

    def _close_if_idle(self) -> None:
        self._idle_timer = None
        if not self.forwarder.subscribers:
            self.close()

    def _want_keyframe(self) -> bool:
        # Read by the worker before its next encode; a plain bool is safe to share.
        self._keyframe_wanted = True
        return True

    # -- the frame-sink side (on the loop) -----------------------------------------------

    def push(self, frame: OutgoingFrame) -> None:
        if self.closed:
            return
        self.frames_in += 1
        arrival = _Arrival(frame, time.perf_counter(), time.time())
        # Overflow discards the backlog: a video decoder then needs a keyframe (the gap).
        marker = _GAP if self.kind == "video" else None
        self._mailbox.put(arrival, overflow_marker=marker)

    def frames_lost_upstream(self) -> None:
        if self.kind == "video" and not self.closed:
            self._mailbox.put(_GAP)

    def _request_upstream_keyframe(self) -> None:
        if not self.closed:
            self.upstream_keyframe_requests += 1
            self.source.keyframes.request()

    # -- the worker thread ----------------------------------------------------------------

    def _work(self) -> None:
        waiting_for_keyframe = self.kind == "video"
        while True:
            items = self._mailbox.take()
            if items is None:
                break
            newest: tuple[av.VideoFrame | av.AudioFrame, _Arrival] | None = None
            for item in items:
                if isinstance(item, _Gap):
                    if not waiting_for_keyframe:
                        waiting_for_keyframe = True
                        self._decoder.reset()
                    continue
                if waiting_for_keyframe:
                    if not item.frame.keyframe:
                        self.skipped_until_keyframe += 1
                        self._post(self._request_upstream_keyframe)
                        continue
                    waiting_for_keyframe = False
                decoded = self._decode(item)
                if decoded is None:
                    waiting_for_keyframe = self.kind == "video"
                    if waiting_for_keyframe:
                        self._decoder.reset()
                        self._post(self._request_upstream_keyframe)
                    continue
                for frame in decoded:
                    if self.kind == "audio":
                        self._process(frame, item)
                        continue
                    if newest is not None:
                        self.dropped_latest += 1
                    newest = (frame, item)
            if newest is not None:
                self._process(*newest)

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback`` on the event loop (from the worker)."""
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            # The loop has closed (shutdown): nothing will read this rendition again.
            self._mailbox.close()

    def _decode(self, item: _Arrival) -> list[av.VideoFrame | av.AudioFrame] | None:
        started = time.perf_counter()
        try:
            frames = self._decoder.decode(item.frame.data, item.frame.timestamp)
        except DecodeError as error:
            self.decode_errors += 1
            if self.decode_errors == 1 or self.decode_errors % 100 == 0:
                logger.warning("rendition %s: decoding failed: %s", self.id, error)
            return None
        self.decode_timer.add((time.perf_counter() - started) * 1000.0)
        self.frames_decoded += len(frames)
        return frames

    def _process(self, frame: av.VideoFrame | av.AudioFrame, item: _Arrival) -> None:
        context = FrameContext(
            pts=item.frame.timestamp,
            time_base=self._decoder.time_base,
            wall_time=item.wall,
            track_id=self.source.id,
            room=self.room,
            frame_index=self.frames_processed,
        )
        self.frames_processed += 1
        output = self.pipeline.process(frame, context)
        if output is None:
            self.dropped_by_pipeline += 1
            return
        keyframe = self._keyframe_wanted
        self._keyframe_wanted = False
        started = time.perf_counter()
        try:
            packets = self._encoder.encode(output, item.frame.timestamp, keyframe)
        except (av.FFmpegError, ValueError) as error:
            self.encode_errors += 1
            self._keyframe_wanted = True
            if self.encode_errors == 1 or self.encode_errors % 100 == 0:
                logger.warning("rendition %s: encoding failed: %s", self.id, error)
            return
        self.encode_timer.add((time.perf_counter() - started) * 1000.0)
        for packet in packets:
            self.frames_encoded += 1
            self.keyframes_encoded += packet.keyframe and self.kind == "video"
            outgoing = OutgoingFrame(
                data=packet.data,
                payloads=self._packetize(packet.data),
                timestamp=item.frame.timestamp + packet.offset,
                keyframe=packet.keyframe,
                size=len(packet.data),
                ntp_time=current_ntp_time(),
            )
            self._post(self._forward, outgoing, item.perf)

    # -- back on the loop -----------------------------------------------------------------

    def _forward(self, frame: OutgoingFrame, arrived: float) -> None:
        if self.closed:
            return
        if frame.keyframe and self.kind == "video":
            self.keyframes.keyframe_arrived()
        self.forwarder.forward(frame)
        self.frames_out += 1
        self.bytes_out += frame.size
        self.latency.add((time.perf_counter() - arrived) * 1000.0)

    def _pipeline_event(self, event: PipelineEvent) -> None:
        # From the worker thread: report on the loop.
        self._post(self._report, event)

    def _report(self, event: PipelineEvent) -> None:
        self.events.append(event)
        del self.events[:-20]
        if self.on_event is not None and not self.closed:
            self.on_event(self, event)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self.keyframes.close()
        self._mailbox.close()  # the worker finishes its current frame and exits
        self.source.forwarder.remove_sink(self)
        for subscriber in self.forwarder.subscribers:
            subscriber.stop()
        self._on_close(self)

    # -- reporting ------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "track": self.source.id,
            "kind": self.kind,
            "pipeline": self.pipeline_name,
            "codec": self.codec,
        }

    def stats(self) -> dict[str, Any]:
        subscribers = self.forwarder.subscribers
        elapsed = max(time.monotonic() - self.created_at, 1e-6)
        size = self._encoder.size
        return {
            **self.describe(),
            "room": self.room,
            "subscribers": len(subscribers),
            "frames_in": self.frames_in,
            "frames_decoded": self.frames_decoded,
            "frames_processed": self.frames_processed,
            "frames_encoded": self.frames_encoded,
            "keyframes_encoded": self.keyframes_encoded,
            "frames_out": self.frames_out,
            "bitrate_out_bps": int(self.bytes_out * 8 / elapsed),
            "resolution": list(size) if size else None,
            # One decoder and one encoder per rendition, whatever its viewer count; a
            # decoder reopens after lost frames, an encoder when the picture size changes.
            "decoders": 1,
            "encoders": 1,
            "decoder_opens": self._decoder.opens,
            "encoder_opens": self._encoder.opens,
            "drops": {
                "latest_wins": self.dropped_latest,
                "queue_overflow": self._mailbox.discarded,
                "by_pipeline": self.dropped_by_pipeline,
                "until_keyframe": self.skipped_until_keyframe,
                "decode_errors": self.decode_errors,
                "encode_errors": self.encode_errors,
                "viewer_backlog": self._retired["drops"]
                + sum(s.dropped_backlog for s in subscribers),
            },
            "frames_sent": self._retired["frames"] + sum(s.frames_sent for s in subscribers),
            # Viewers' PLIs become keyframes of this encoder (at most one per interval);
            # only the decoder's own need reaches the publisher.
            "keyframe_requests": {
                "encoder": self.keyframes.sent,
                "coalesced": self.keyframes.coalesced,
                "upstream": self.upstream_keyframe_requests,
            },
            "timing": {
                "decode": self.decode_timer.snapshot(),
                "process": self.pipeline.total.snapshot(),
                "encode": self.encode_timer.snapshot(),
                "latency": self.latency.snapshot(),
            },
            "pipeline_stats": self.pipeline.snapshot(),
            "events": [
                {"kind": e.kind, "stage": e.stage, "message": e.message} for e in self.events
            ],
        }
