"""One (track, pipeline): decoded once and processed once, in its own worker thread."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av

from processors.base import FrameContext
from processors.pipeline import Pipeline, PipelineEvent, Timer

from ..media.frames import OutgoingFrame
from ..media.publisher import Publisher
from .decoder import DecodeError, Decoder
from .encoder import make_encoder
from .mailbox import Mailbox
from .output import RenditionOutput
from .rung import Rung

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


@dataclass(slots=True)
class _Arrival:
    frame: OutgoingFrame
    perf: float  # time.perf_counter() when the frame reached the rendition
    wall: float  # time.time() at the same moment, for processors (timestamps)


class _Gap:
    """Marks lost frames in the mailbox: the decoder must restart at a keyframe."""


_GAP = _Gap()


class Rendition:
    """A published track through one pipeline, for any number of viewers in any codec.

    It is a frame sink of the track's Publisher: ``push`` only hands the encoded frame
    to the rendition's worker thread. The worker decodes every frame (cheap, and a
    decoder cannot skip references) but runs the pipeline and the encoders on the
    newest decoded video frame only: when processing is slower than the frame rate,
    older frames are dropped and counted, so latency never builds up. Audio frames
    are all processed, in order. Each codec its viewers negotiated is one
    RenditionOutput (an encoder and its viewers): the frame is processed once and
    encoded once per codec. The last output closing closes the rendition.
    """

    def __init__(
        self,
        source: Publisher,
        pipeline_name: str,
        pipeline: Pipeline,
        settings: RenditionSettings,
        room: str,
        on_close: Callable[[Rendition], None],
    ) -> None:
        if pipeline.kind != source.kind:
            raise ValueError(f"a {pipeline.kind} pipeline cannot process a {source.kind} track")
        self.source = source
        self.kind = source.kind
        self.pipeline_name = pipeline_name
        self.pipeline = pipeline
        self.room = room
        self.id = f"{source.id}.{pipeline_name}"
        self._settings = settings
        self._on_close = on_close
        self._loop = asyncio.get_running_loop()
        # By (codec, rung): one encoder per codec its viewers take, and per made layer.
        self._outputs: dict[tuple[str, Rung | None], RenditionOutput] = {}
        self._mailbox: Mailbox[_Arrival | _Gap] = Mailbox(settings.queue_frames)
        self._decoder = Decoder(source.codec)
        self.closed = False
        self.created_at = time.monotonic()
        self.events: list[PipelineEvent] = []
        self.on_event: Callable[[Rendition, PipelineEvent], None] | None = None
        pipeline.on_event = self._pipeline_event
        # Worker-side counters (written by the worker only, read by stats).
        self.decode_timer = Timer()
        self.encode_timer = Timer()  # all of a frame's encodes (one per output)
        self.frames_decoded = 0
        self.frames_processed = 0
        self.dropped_latest = 0  # decoded video frames replaced by a newer one
        self.dropped_by_pipeline = 0
        self.skipped_until_keyframe = 0
        self.decode_errors = 0
        # Loop-side counters.
        self.latency = Timer()  # frame in (push) to packets out (forward), every output, ms
        self.frames_in = 0
        self.upstream_keyframe_requests = 0
        self._thread = threading.Thread(target=self._work, name=f"rendition-{self.id}", daemon=True)
        self._thread.start()
        source.forwarder.add_sink(self)
        source.on_close(self.close)
        if self.kind == "video":
            self._request_upstream_keyframe()  # the decoder starts at one

    # -- outputs (on the loop) ------------------------------------------------------------

    def output(self, codec: str, rung: Rung | None = None) -> RenditionOutput:
        """The output encoding this rendition in ``codec`` (scaled to ``rung``: a made
        layer), created on first use (its viewer subscribes at once; an output without
        viewers closes itself)."""
        key = (codec, rung)
        output = self._outputs.get(key)
        if output is None or output.closed:
            settings = self._settings
            bitrate = settings.audio_bitrate if self.kind == "audio" else settings.video_bitrate
            encoder = make_encoder(
                self.kind,
                codec,
                rung.bitrate if rung is not None else bitrate,
                settings.encoder_threads,
                settings.keyframe_interval_frames,
                exact=rung is not None,
            )
            output = RenditionOutput(
                self,
                codec,
                encoder,
                settings.keyframe_request_interval_s,
                self._loop,
                self._output_closed,
                rung,
            )
            self._outputs[key] = output
        return output

    @property
    def outputs(self) -> list[RenditionOutput]:
        return list(self._outputs.values())

    def _output_closed(self, output: RenditionOutput) -> None:
        key = (output.codec, output.rung)
        if self._outputs.get(key) is output:
            del self._outputs[key]
        if not self._outputs:
            self.close()

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
                        self.post(self._request_upstream_keyframe)
                        continue
                    waiting_for_keyframe = False
                decoded = self._decode(item)
                if decoded is None:
                    waiting_for_keyframe = self.kind == "video"
                    if waiting_for_keyframe:
                        self._decoder.reset()
                        self.post(self._request_upstream_keyframe)
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

    def post(self, callback: Callable[..., None], *args: Any) -> None:
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
        started = time.perf_counter()
        # An output added or closed by the loop meanwhile is seen from the next frame.
        for encoder in list(self._outputs.values()):
            if not encoder.closed:
                encoder.encode(output, item.frame.timestamp, item.perf)
        self.encode_timer.add((time.perf_counter() - started) * 1000.0)

    def _pipeline_event(self, event: PipelineEvent) -> None:
        # From the worker thread: report on the loop.
        self.post(self._report, event)

    def _report(self, event: PipelineEvent) -> None:
        self.events.append(event)
        del self.events[:-20]
        if self.on_event is not None and not self.closed:
            self.on_event(self, event)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._mailbox.close()  # the worker finishes its current frame and exits
        self.source.forwarder.remove_sink(self)
        for output in self.outputs:
            output.close()
        self._on_close(self)

    # -- reporting ------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "track": self.source.id,
            "kind": self.kind,
            "pipeline": self.pipeline_name,
            "codecs": [o.codec for o in self.outputs],
        }

    def stats(self) -> dict[str, Any]:
        outputs = self.outputs
        first = outputs[0] if outputs else None
        elapsed = max(time.monotonic() - self.created_at, 1e-6)
        encoded = [o.stats() for o in outputs]
        return {
            **self.describe(),
            # The first output's codec and picture (usually the only ones; see "outputs").
            "codec": first.codec if first else None,
            "resolution": list(first.resolution) if first and first.resolution else None,
            "room": self.room,
            "subscribers": sum(o["subscribers"] for o in encoded),
            "frames_in": self.frames_in,
            "frames_decoded": self.frames_decoded,
            "frames_processed": self.frames_processed,
            "frames_encoded": sum(o["frames_encoded"] for o in encoded),
            "keyframes_encoded": sum(o["keyframes_encoded"] for o in encoded),
            "frames_out": sum(o["frames_out"] for o in encoded),
            "frames_sent": sum(o["frames_sent"] for o in encoded),
            "bitrate_out_bps": int(sum(o.bytes_out for o in outputs) * 8 / elapsed),
            # One decoder per rendition and one encoder per codec its viewers use, whatever
            # their number; a decoder reopens after lost frames, an encoder when the
            # picture size changes.
            "decoders": 1,
            "encoders": len(outputs),
            "decoder_opens": self._decoder.opens,
            "encoder_opens": sum(o["encoder_opens"] for o in encoded),
            "drops": {
                "latest_wins": self.dropped_latest,
                "queue_overflow": self._mailbox.discarded,
                "by_pipeline": self.dropped_by_pipeline,
                "until_keyframe": self.skipped_until_keyframe,
                "decode_errors": self.decode_errors,
                "encode_errors": sum(o["encode_errors"] for o in encoded),
                "viewer_backlog": sum(o["viewer_backlog_drops"] for o in encoded),
            },
            # Viewers' PLIs become keyframes of their output's encoder (at most one per
            # interval); only the decoder's own need reaches the publisher.
            "keyframe_requests": {
                "encoder": sum(o["keyframe_requests"]["encoder"] for o in encoded),
                "coalesced": sum(o["keyframe_requests"]["coalesced"] for o in encoded),
                "upstream": self.upstream_keyframe_requests,
            },
            "timing": {
                "decode": self.decode_timer.snapshot(),
                "process": self.pipeline.total.snapshot(),
                "encode": self.encode_timer.snapshot(),
                "latency": self.latency.snapshot(),
            },
            "outputs": encoded,
            "pipeline_stats": self.pipeline.snapshot(),
            "events": [
                {"kind": e.kind, "stage": e.stage, "message": e.message} for e in self.events
            ],
        }
