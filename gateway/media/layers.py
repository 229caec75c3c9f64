"""A simulcast track's layers: one receiver's packets split per layer (by rid, then by the
SSRC learned from it), each layer reassembled on its own, fed to its own track, and the
best layer that flows followed by the track every viewer gets by default."""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..limits.meter import RateMeter
from .assembler import FrameAssembler, RtpLike
from .feed import FrameHandler
from .frames import EncodedFrame, capture_ticks, video_size

# A layer that has sent no frame for this long is not flowing (the sender stopped it, or
# its bandwidth estimate no longer carries it).
STALE_S = 1.0
BITRATE_WINDOW_S = 2.0
PACKET_OVERHEAD = 12 + 8 + 4 + 10 + 8 + 20  # bytes: RTP, extension, VP8, SRTP, UDP, IPv4
# RTP clock of video: the default track's timeline goes on across a layer switch.
VIDEO_CLOCK_RATE = 90000


@dataclass
class _Layer:
    rid: str
    assembler: FrameAssembler
    handlers: list[FrameHandler] = field(default_factory=list)
    ssrc: int | None = None
    last_frame_at: float | None = None
    resolution: tuple[int, int] | None = None
    frames = 0
    bytes = 0
    packets = 0
    meter: RateMeter | None = None  # bytes per second, over the last two seconds
    packet_meter: RateMeter | None = None  # packets per second, likewise
    # The last sender report: (NTP time in seconds, RTP timestamp) of one instant.
    report: tuple[float, int] | None = None


def _bytes_of(layer: _Layer) -> float:
    return float(layer.bytes)


def _packets_of(layer: _Layer) -> float:
    return float(layer.packets)


class LayerRouter:
    """Splits a simulcast receiver's packets among its layers.

    The rid header extension names a packet's layer; the SSRC it came on is then learned
    and kept (senders stop sending the rid once receiver reports arrive), and re-learned if
    a rid moves to a new SSRC (a restarted encoder). Packets of an SSRC no rid has named
    yet, and rids the offer did not list, are dropped and counted.
    """

    def __init__(
        self, codec: str, rids: tuple[str, ...], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.codec = codec
        self.rids = rids
        self._clock = clock
        self._layers = {rid: _Layer(rid, FrameAssembler(codec, "video")) for rid in rids}
        for layer in self._layers.values():
            layer.meter = RateMeter(functools.partial(_bytes_of, layer), clock, BITRATE_WINDOW_S)
            layer.packet_meter = RateMeter(
                functools.partial(_packets_of, layer), clock, BITRATE_WINDOW_S
            )
        self._by_ssrc: dict[int, _Layer] = {}
        self._rtx: dict[int, str] = {}  # RTX SSRC -> rid it repairs
        self.unrouted = 0
        self.unknown_rid = 0

    def subscribe(self, rid: str, handler: FrameHandler) -> None:
        self._layers[rid].handlers.append(handler)

    def unsubscribe(self, rid: str, handler: FrameHandler) -> None:
        handlers = self._layers[rid].handlers
        if handler in handlers:
            handlers.remove(handler)

    def add(self, packet: RtpLike, rid: str | None, data: bytes, arrival_ms: int) -> None:
        """One depayloaded packet; ``rid`` is its rid header extension, if it had one (only
        the first packets of each SSRC do)."""
        layer = self._route(packet, rid)
        if layer is None:
            return
        layer.packets += 1
        frames = layer.assembler.add(packet, data, arrival_ms)
        if not frames:
            return
        layer.last_frame_at = self._clock()
        report = layer.report
        for frame in frames:
            if report is not None:
                ticks = (frame.timestamp - report[1] + 0x80000000) % 0x100000000 - 0x80000000
                frame.captured = report[0] + ticks / VIDEO_CLOCK_RATE
            layer.frames += 1
            layer.bytes += len(frame.data)
            if frame.keyframe:
                layer.resolution = video_size(self.codec, frame.data) or layer.resolution
        for handler in list(layer.handlers):
            handler(frames)

    def _route(self, packet: RtpLike, rid: str | None) -> _Layer | None:
        if rid is not None:
            layer = self._layers.get(rid)
            if layer is None:
                self.unknown_rid += 1
                return None
            if layer.ssrc != packet.ssrc:
                if layer.ssrc is not None:
                    self._by_ssrc.pop(layer.ssrc, None)
                layer.ssrc = packet.ssrc
                self._by_ssrc[packet.ssrc] = layer
            return layer
        found = self._by_ssrc.get(packet.ssrc)
        if found is None:
            self.unrouted += 1
        return found

    def sender_report(self, ssrc: int, ntp_timestamp: int, rtp_timestamp: int) -> None:
        """A layer's RTCP sender report: its frames' capture times follow from it."""
        layer = self._by_ssrc.get(ssrc)
        if layer is not None:
            layer.report = (ntp_timestamp / 2**32, rtp_timestamp)

    def learn_rtx(self, rtx_ssrc: int, repaired_rid: str) -> None:
        """``rtx_ssrc`` carries retransmissions of layer ``repaired_rid``."""
        if repaired_rid in self._layers:
            self._rtx[rtx_ssrc] = repaired_rid

    def repaired_ssrc(self, rtx_ssrc: int) -> int | None:
        """The media SSRC an RTX SSRC repairs, once both are known."""
        rid = self._rtx.get(rtx_ssrc)
        return self._layers[rid].ssrc if rid is not None else None

    def knows(self, ssrc: int) -> bool:
        return ssrc in self._by_ssrc or ssrc in self._rtx

    def ssrc(self, rid: str) -> int | None:
        return self._layers[rid].ssrc

    def flowing(self, rid: str) -> bool:
        at = self._layers[rid].last_frame_at
        return at is not None and self._clock() - at < STALE_S

    def resolution(self, rid: str) -> tuple[int, int] | None:
        return self._layers[rid].resolution

    def frame_bytes(self, rid: str) -> float:
        """Mean encoded bytes per frame of a layer so far (0 before its first)."""
        layer = self._layers[rid]
        return layer.bytes / layer.frames if layer.frames else 0.0

    def bitrate(self, rid: str) -> float:
        """A layer's encoded bitrate (bits per second) over the last two seconds: its
        keyframes and the encoder's swings smoothed enough to choose a layer by."""
        meter = self._layers[rid].meter
        return meter.rate() * 8 if meter is not None and self.flowing(rid) else 0.0

    def wire_bitrate(self, rid: str) -> float:
        """What forwarding a layer costs on a viewer's link, in bits per second: its
        payload plus each packet's headers (RTP with one extension, the VP8 descriptor,
        SRTP's tag, UDP, IPv4), which at a few hundred kbps is a tenth of it or more."""
        meter = self._layers[rid].packet_meter
        packets = meter.rate() if meter is not None and self.flowing(rid) else 0.0
        return self.bitrate(rid) + packets * PACKET_OVERHEAD * 8

    def counters(self, rid: str) -> dict[str, int]:
        assembler = self._layers[rid].assembler
        return {
            "packets_late": assembler.packets_late,
            "frames_unrepaired": assembler.frames_skipped,
        }

    def describe(self) -> list[dict[str, object]]:
        return [
            {
                "rid": layer.rid,
                "ssrc": layer.ssrc,
                "resolution": list(layer.resolution) if layer.resolution else None,
                "frames": layer.frames,
                "bytes": layer.bytes,
                "bitrate_bps": int(self.bitrate(layer.rid)),
                "wire_bps": int(self.wire_bitrate(layer.rid)),
                "flowing": self.flowing(layer.rid),
                # Its sender reports came: switches to and from it align by capture time.
                "sender_reports": layer.report is not None,
            }
            for layer in self._layers.values()
        ]


class LayerFeed:
    """One layer of a simulcast receiver, as a track's Feed."""

    def __init__(self, router: LayerRouter, rid: str, send_pli: Callable[[int], None]) -> None:
        self._router = router
        self.rid = rid
        self._send_pli = send_pli

    def start(self, on_frames: FrameHandler) -> None:
        self._router.subscribe(self.rid, on_frames)

    def request_keyframe(self, ssrc: int) -> None:
        self._send_pli(ssrc)

    def counters(self) -> dict[str, int]:
        return self._router.counters(self.rid)


class BestLayerFeed:
    """The layers of a simulcast receiver as one track: the best layer that flows (the
    largest picture, else the last the offer lists), switched to at its keyframe (asked
    for), its timestamps continued from the previous layer's by wall-clock time. What
    viewers, recordings and pipelines of the track get unless a viewer picks a layer."""

    def __init__(
        self,
        router: LayerRouter,
        send_pli: Callable[[int], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._router = router
        self._send_pli = send_pli
        self._clock = clock
        self._on_frames: FrameHandler | None = None
        self.current: str | None = None
        self._target: str | None = None
        self._offset = 0  # added to the current layer's timestamps
        # (timestamp, wall clock, capture time) of the last frame out
        self._last_out: tuple[int, float, float | None] | None = None
        self.switches = 0

    def start(self, on_frames: FrameHandler) -> None:
        self._on_frames = on_frames
        for rid in self._router.rids:
            self._router.subscribe(rid, functools.partial(self._frames, rid))

    def best(self) -> str | None:
        """The layer to follow now: the largest flowing picture; where the resolution is
        not known (H264: not parsed), the most bytes per frame."""
        flowing = [rid for rid in self._router.rids if self._router.flowing(rid)]
        if not flowing:
            return None

        def rank(rid: str) -> tuple[int, float]:
            size = self._router.resolution(rid)
            return (size[0] * size[1] if size else 0, self._router.frame_bytes(rid))

        return max(flowing, key=rank)

    def _frames(self, rid: str, frames: list[EncodedFrame]) -> None:
        if self._on_frames is None:
            return
        best = self.best() or rid
        if best != self.current and best != self._target:
            self._target = best
            ssrc = self._router.ssrc(best)
            if ssrc is not None:
                self._send_pli(ssrc)
        switched = False
        if rid == self._target:
            keyframes = [i for i, f in enumerate(frames) if f.keyframe]
            if keyframes:
                frames = frames[keyframes[0] :]
                switched = self.current is not None
                self._switch(rid, frames[0])
        if rid != self.current:
            return
        # The frames are the layer track's too: copies carry this track's timeline.
        out = [self._continue(f, switched and i == 0) for i, f in enumerate(frames)]
        self._on_frames(out)

    def _switch(self, rid: str, first: EncodedFrame) -> None:
        now = self._clock()
        if self._last_out is None:
            self._offset = 0
        else:
            last_ts, at, captured = self._last_out
            self._offset = (last_ts + _elapsed(at, now, captured, first) - first.timestamp) & (
                0xFFFFFFFF
            )
        if self.current is not None:
            self.switches += 1
        self.current, self._target = rid, None

    def _continue(self, frame: EncodedFrame, switched: bool) -> EncodedFrame:
        timestamp = (frame.timestamp + self._offset) & 0xFFFFFFFF
        self._last_out = (timestamp, self._clock(), frame.captured)
        # After a switch the previous layer's deltas mean nothing: a discontinuity.
        discontinuity = frame.discontinuity or switched
        return dataclasses.replace(frame, timestamp=timestamp, discontinuity=discontinuity)

    def request_keyframe(self, ssrc: int) -> None:
        # Whatever SSRC the track saw first: the layer it follows now is asked.
        rid = self.current
        target = self._router.ssrc(rid) if rid is not None else None
        if target is not None:
            self._send_pli(target)

    def counters(self) -> dict[str, int]:
        totals = {"packets_late": 0, "frames_unrepaired": 0}
        for rid in self._router.rids:
            for key, value in self._router.counters(rid).items():
                totals[key] += value
        return totals


def _elapsed(at: float, now: float, captured: float | None, first: EncodedFrame) -> int:
    """Ticks between the last frame out and ``first`` of the new layer: by their capture
    times (the sender's reports), else by the wall clock between their arrivals."""
    ticks = capture_ticks(captured, first.captured)
    return ticks if ticks is not None else max(1, round((now - at) * VIDEO_CLOCK_RATE))
