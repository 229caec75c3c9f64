"""One viewer's egress of one track: RTP packets written as soon as a frame is forwarded."""

from __future__ import annotations

import random
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .frames import OutgoingFrame, capture_ticks, vp8_picture_id, with_vp8_picture_id
from .tap import RtpOutput

# Sent packets kept for NACK retransmission: ~1.7 s of 1.5 Mbps video, ~4 s at 600 kbps.
# A NACK comes within a round trip or two; the history is most of a viewer's memory.
HISTORY = 256
# A packet is resent at most once per round trip (RTCP's), within these bounds.
MIN_RESEND_S, MAX_RESEND_S = 0.01, 0.5
_HEADER = struct.Struct("!BBHII")
# The same with one header extension (RFC 8285 one-byte form): the transport-wide sequence
# number, two bytes, padded to a word.
_HEADER_CC = struct.Struct("!BBHIIHHBHx")
# What a packet adds on the wire to its RTP header and payload: SRTP's tag, UDP and IPv4.
WIRE_OVERHEAD = 10 + 8 + 20
# A padding-only packet carries at most this much padding (its last byte counts it, so 255
# at most; libwebrtc's largest is 224 too).
MAX_PADDING = 224
PADDING_OVERHEAD = _HEADER_CC.size + WIRE_OVERHEAD  # a padding packet's bytes besides it
# A frame-rate cap reads the source's temporal layers from its last frames: their rate, and
# each layer's share of them (L1T3: 1/4, 1/4, 1/2), judged again every few frames.
TEMPORAL_WINDOW = 32
TEMPORAL_JUDGE_EVERY = 8
FPS_TOLERANCE = 1.15  # a cap of 15 takes 15.x fps (a 30 fps source's two lower layers)


class Subscriber:
    """Writes a track's shared frames to one viewer, with its own SSRC, sequence and clock.

    aiortc negotiates the sending transceiver and runs its RTCP (see SenderSlot);
    media bypasses aiortc's send loop (see tap.RtpOutput). When a transceiver
    switches to another track, the new Subscriber continues the old one's sequence
    numbers and timeline. The viewer's queue is its socket's send backlog:
    once over ``max_backlog`` bytes (the network cannot keep up) video is dropped
    until the next keyframe, which is requested, and audio frames are dropped.
    """

    def __init__(
        self,
        kind: str,
        max_backlog: int,
        request_keyframe: Callable[[], None],
        on_stop: Callable[[Subscriber], None] | None = None,
    ) -> None:
        self.kind = kind
        self._max_backlog = max_backlog
        self._request_keyframe = request_keyframe
        self._on_stop = on_stop
        self._output: RtpOutput | None = None
        self.source: object = None  # the Publisher this subscriber receives
        self.stopped = False
        self._waiting_for_keyframe = kind == "video"
        self._sequence = random.getrandbits(16)
        self._timestamp_origin = random.getrandbits(32)
        # Set when continuing another subscriber's stream: where our timeline resumes.
        self._resume_at: int | None = None
        # ...and the last frame's there (timestamp, capture time), to continue it by the
        # time between the two frames' capture (layers of one track share that clock).
        self._resume_from: tuple[int, float | None] | None = None
        self._last_timestamp = 0
        self._last_captured: float | None = None
        # (sequence number, SRTP packet, when last resent) of what was sent
        self._history: list[tuple[int, bytes, float] | None] = [None] * HISTORY
        self.created_at = time.monotonic()
        self.connected_at: float | None = None
        self.first_frame_at: float | None = None
        self.frames_sent = 0
        self.packets_sent = 0
        self.bytes_sent = 0  # payload bytes, as RTCP counts them
        self.dropped_backlog = 0
        self.skipped_until_keyframe = 0
        self.keyframe_requests = 0  # PLI/FIR from this viewer
        self.nacks = 0  # sequence numbers this viewer NACKed (each request counted)
        self.retransmissions = 0  # of those, resent from the history
        self.resends_skipped = 0  # NACKs for a packet resent less than a round trip ago
        self.padding_bytes = 0  # probing the viewer's link (``pad``)
        # Video paused: the viewer's link carries no layer of it (audio goes on).
        self.paused = False
        self.paused_frames = 0
        # Set while standing by to take a transceiver over at the source's next keyframe.
        self._standby: Callable[[], None] | None = None
        # VP8: picture IDs made continuous across a switch of source (each source counts
        # its own), as a decoder expects of one stream (mediasoup and LiveKit do the same).
        self.vp8 = False
        self._last_picture_id: int | None = None
        self._picture_id_resume: int | None = None
        self._picture_id_offset = 0
        # The viewer's frame-rate cap: frames of VP8 temporal layers above what fits in it
        # are left out (no decoder needs them; their picture IDs are closed up). A source
        # without temporal layers is sent whole.
        self._max_fps: float | None = None
        self._temporal: deque[tuple[int, int]] = deque(maxlen=TEMPORAL_WINDOW)
        self._max_temporal_id: int | None = None  # None: every layer
        self.temporal_drops = 0

    @property
    def max_fps(self) -> float | None:
        return self._max_fps

    @max_fps.setter
    def max_fps(self, fps: float | None) -> None:
        if fps != self._max_fps:
            self._max_fps = fps
            self._temporal.clear()
            self._max_temporal_id = None

    def _leave_out(self, frame: OutgoingFrame) -> bool:
        """Whether ``frame`` is of a temporal layer above the viewer's frame-rate cap."""
        tid = frame.temporal_id
        if tid is None or self._max_fps is None:
            return False
        recent = self._temporal
        recent.append((frame.timestamp, tid))
        if len(recent) % TEMPORAL_JUDGE_EVERY == 0 or len(recent) == TEMPORAL_WINDOW:
            self._max_temporal_id = _max_temporal_id(recent, self._max_fps)
        limit = self._max_temporal_id
        return limit is not None and tid > limit and not frame.keyframe

    def continue_from(self, previous: Subscriber) -> None:
        """Take over a transceiver from ``previous``: same sequence, no timestamp jump back."""
        self._sequence = previous._sequence
        self._resume_at = (previous._last_timestamp + 3000) & 0xFFFFFFFF
        if self.kind == "video":
            self._resume_from = (previous._last_timestamp, previous._last_captured)
        if previous._last_picture_id is not None:
            self._picture_id_resume = (previous._last_picture_id + 1) & 0x7FFF

    # -- called through the SenderSlot (aiortc's sender) ----------------------------------

    def start(self, output: RtpOutput) -> None:
        """DTLS is up and aiortc started this sender: frames can flow."""
        self._output = output
        self.connected_at = time.monotonic()
        if self.kind == "video":
            self._request_keyframe()

    def stand_by(self, output: RtpOutput, take_over: Callable[[], None]) -> None:
        """Connected but silent until the source's next keyframe (asked for now); then
        ``take_over()`` hands it the transceiver and that keyframe is its first frame. A
        switch between layers so leaves no gap: the current subscriber sends until then."""
        self._output = output
        self.connected_at = time.monotonic()
        self._standby = take_over
        self._request_keyframe()

    def pause(self) -> None:
        """Send no video until ``resume()`` (the viewer's link cannot carry any)."""
        self.paused = True

    def resume(self) -> None:
        """Video again, from a keyframe (asked for now)."""
        if self.paused:
            self.paused = False
            self._waiting_for_keyframe = True
            self._request_keyframe()

    def on_keyframe_request(self) -> None:
        self.keyframe_requests += 1
        self._request_keyframe()

    def on_nack(self, sequence_number: int) -> None:
        self.nacks += 1
        index = sequence_number % HISTORY
        entry = self._history[index]
        if entry is None or entry[0] != sequence_number or self._output is None:
            return
        now = time.monotonic()
        round_trip = self._output.round_trip_s
        interval = min(max(round_trip or 0.0, MIN_RESEND_S), MAX_RESEND_S)
        if now - entry[2] < interval:
            # Asked again within a round trip of the last copy, which cannot have arrived
            # yet: Chromium re-NACKs every ~100 ms whatever the queue on the path, and on
            # a congested link each copy more only deepens it (libwebrtc's sender skips
            # these too).
            self.resends_skipped += 1
            return
        self._history[index] = (sequence_number, entry[1], now)
        self._output.resend(entry[1])
        self.retransmissions += 1

    # -- called by the forwarder --------------------------------------------------------

    def push(self, frame: OutgoingFrame) -> None:
        output = self._output
        if output is None or self.stopped:
            return  # not connected yet; the first frame it gets will be a keyframe
        if self.paused:
            self.paused_frames += 1
            return
        if self._standby is not None:
            if not frame.keyframe:
                self.skipped_until_keyframe += 1
                return
            take_over, self._standby = self._standby, None
            take_over()  # continues the current subscriber's sequence and timeline
        if self._waiting_for_keyframe:
            if not frame.keyframe:
                self.skipped_until_keyframe += 1
                return
            self._waiting_for_keyframe = False
        if self._max_fps is not None and self._leave_out(frame):
            self.temporal_drops += 1
            # The next frame sent takes this one's picture ID: the viewer sees no gap.
            self._picture_id_offset = (self._picture_id_offset - 1) & 0x7FFF
            return
        if output.backlog() > self._max_backlog:
            self.dropped_backlog += 1
            if self.kind == "video":
                self._waiting_for_keyframe = True
                self._request_keyframe()
            return
        if self._resume_at is not None:
            resume_at = self._resume_at
            if self._resume_from is not None:
                last, captured = self._resume_from
                ticks = capture_ticks(captured, frame.captured)
                if ticks is not None:
                    resume_at = (last + ticks) & 0xFFFFFFFF
            self._timestamp_origin = (resume_at - frame.timestamp) & 0xFFFFFFFF
            self._resume_at = self._resume_from = None
        timestamp = (self._timestamp_origin + frame.timestamp) & 0xFFFFFFFF
        self._last_timestamp = timestamp
        self._last_captured = frame.captured
        payloads = self._picture_ids(frame.payloads) if self.vp8 else frame.payloads
        last = len(payloads) - 1
        payload_type = output.payload_type
        ssrc = output.ssrc
        video = self.kind == "video"
        log = output.send_log
        for index, payload in enumerate(payloads):
            # Marker: a video frame's last packet; for audio only the first packet ever.
            marker = (index == last) if video else (self.packets_sent == 0)
            sequence = self._sequence
            second = payload_type | (0x80 if marker else 0)
            if log is None:
                header = _HEADER.pack(0x80, second, sequence, timestamp, ssrc)
            else:
                transport_sequence = log.stamp(_HEADER_CC.size + len(payload) + WIRE_OVERHEAD)
                header = _HEADER_CC.pack(
                    0x90, second, sequence, timestamp, ssrc,
                    0xBEDE, 1, output.transport_cc_id << 4 | 1, transport_sequence,
                )  # fmt: skip
            protected = output.send(header + payload)
            if protected is None:
                return
            self._history[sequence % HISTORY] = (sequence, protected, 0.0)
            self._sequence = (sequence + 1) & 0xFFFF
            self.packets_sent += 1
            self.bytes_sent += len(payload)
        self.frames_sent += 1
        if self.first_frame_at is None:
            self.first_frame_at = time.monotonic()
        output.report(frame.ntp_time, timestamp, self.packets_sent, self.bytes_sent)

    def pad(self, size: int) -> int:
        """Send about ``size`` bytes of padding-only packets (RTP padding, RFC 3550 5.1:
        no payload, the P bit, the stream's next sequence numbers and its last timestamp),
        numbered for transport-cc, to probe the viewer's link; receivers drop them (libwebrtc
        fills its sequence gaps with them). Returns the bytes sent. Only where the viewer's
        feedback can judge them, and only between frames of a stream that has started."""
        output = self._output
        log = output.send_log if output is not None else None
        if output is None or log is None or self.stopped or self.frames_sent == 0:
            return 0
        sent = 0
        while sent < size:
            padding = min(MAX_PADDING, max(1, size - sent))
            transport_sequence = log.stamp(_HEADER_CC.size + padding + WIRE_OVERHEAD)
            header = _HEADER_CC.pack(
                0xB0, output.payload_type, self._sequence, self._last_timestamp, output.ssrc,
                0xBEDE, 1, output.transport_cc_id << 4 | 1, transport_sequence,
            )  # fmt: skip
            if output.send(header + bytes(padding - 1) + bytes((padding,))) is None:
                break
            self._sequence = (self._sequence + 1) & 0xFFFF
            self.packets_sent += 1
            self.padding_bytes += padding
            sent += padding
        return sent

    def _picture_ids(self, payloads: list[bytes]) -> list[bytes]:
        picture_id = vp8_picture_id(payloads[0]) if payloads else None
        if picture_id is None:
            return payloads
        if self._picture_id_resume is not None:
            self._picture_id_offset = (self._picture_id_resume - picture_id) & 0x7FFF
            self._picture_id_resume = None
        out = (picture_id + self._picture_id_offset) & 0x7FFF
        self._last_picture_id = out
        if not self._picture_id_offset:
            return payloads  # the shared payloads as they are: no copy
        return [with_vp8_picture_id(p, out) for p in payloads]

    def frames_lost_upstream(self) -> None:
        """The publisher's stream has a gap: deltas are useless until a keyframe."""
        if self.kind == "video":
            self._waiting_for_keyframe = True

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            if self._on_stop is not None:
                self._on_stop(self)

    @property
    def time_to_first_frame_ms(self) -> float | None:
        if self.first_frame_at is None or self.connected_at is None:
            return None
        return (self.first_frame_at - self.connected_at) * 1000

    def stats(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "frames_sent": self.frames_sent,
            "packets_sent": self.packets_sent,
            "bytes_sent": self.bytes_sent,
            "dropped_backlog": self.dropped_backlog,
            "skipped_until_keyframe": self.skipped_until_keyframe,
            "keyframe_requests": self.keyframe_requests,
            "nacks": self.nacks,
            "retransmissions": self.retransmissions,
            "resends_skipped": self.resends_skipped,
            "padding_bytes": self.padding_bytes,
            "temporal_drops": self.temporal_drops,
            "paused_frames": self.paused_frames,
            "time_to_first_frame_ms": self.time_to_first_frame_ms,
        }


def _max_temporal_id(recent: deque[tuple[int, int]], max_fps: float) -> int | None:
    """The highest temporal layer whose frames, with those of the layers below, come at no
    more than ``max_fps`` (0 at least), from ``recent`` (timestamp, TID) frames of 90 kHz;
    None (all) while too few frames tell."""
    if len(recent) < TEMPORAL_JUDGE_EVERY:
        return None
    span = (recent[-1][0] - recent[0][0]) / 90000  # the track's unwrapped timeline
    if span <= 0:
        return None
    fps = (len(recent) - 1) / span
    allowed = 0
    for tid in sorted({t for _, t in recent}):
        share = sum(1 for _, t in recent if t <= tid) / len(recent)
        if fps * share <= max_fps * FPS_TOLERANCE:
            allowed = tid
    return allowed
