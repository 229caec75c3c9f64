"""Reassembles encoded frames from RTP packets as soon as their last packet arrives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .frames import EncodedFrame, is_keyframe, starts_frame, vp8_temporal_id

# How long a missing packet is waited for (NACK round trip) before the frames
# behind it are given up on and the stream restarts at the next frame boundary.
MAX_WAIT_MS = 250
# Bound on buffered packets (a 1080p keyframe is ~100-200 packets).
MAX_PACKETS = 1024


class RtpLike(Protocol):
    """The fields of aiortc's RtpPacket the assembler reads."""

    sequence_number: int
    timestamp: int
    marker: int
    ssrc: int
    payload: bytes


@dataclass(slots=True)
class _Slot:
    rtp: RtpLike
    data: bytes
    arrival_ms: int


class FrameAssembler:
    """Turns depayloaded RTP packets into complete frames, in order.

    aiortc's jitter buffer releases a frame only when the next frame's first
    packet arrives (one frame interval late). Here a frame is complete when every
    packet from the previous frame's end up to its marker bit is present.
    Audio frames are single packets and leave immediately.
    """

    def __init__(self, codec: str, kind: str) -> None:
        self.codec = codec
        self.is_video = kind == "video"
        self._vp8 = codec == "VP8"
        self._slots: dict[int, _Slot] = {}
        self._next: int | None = None  # extended seq that starts the next frame
        self._highest: int | None = None  # highest extended seq seen
        self._discontinuity = False
        self._ssrc: int | None = None
        self.packets_late = 0  # arrived after their frame was emitted or skipped
        self.frames_skipped = 0  # gave up on: packets lost for good

    def add(self, rtp: RtpLike, data: bytes, arrival_ms: int) -> list[EncodedFrame]:
        if rtp.ssrc != self._ssrc:
            if self._ssrc is not None:
                # A new source (the sender restarted): its sequence numbers are unrelated.
                self._slots.clear()
                self._next = self._highest = None
                self._discontinuity = True
            self._ssrc = rtp.ssrc
        seq = self._extend(rtp.sequence_number)
        if not self.is_video:
            return self._add_audio(rtp, data, seq, arrival_ms)

        if self._next is None:
            if starts_frame(self.codec, rtp.payload):
                self._next = seq
                self._drop_before(seq)
            elif rtp.marker:
                # The end of a frame we joined mid-way: the next packet starts one.
                self._next = seq + 1
                self._drop_before(seq + 1)
                return []
        elif seq < self._next:
            self.packets_late += 1
            return []

        if len(self._slots) >= MAX_PACKETS:
            self._restart()
        self._slots[seq] = _Slot(rtp, data, arrival_ms)
        if self._next is None:
            return []
        frames = self._collect()
        if not frames and self._head_waited_too_long(arrival_ms):
            self._skip_gap()
            frames = self._collect()
        return frames

    def _add_audio(
        self, rtp: RtpLike, data: bytes, seq: int, arrival_ms: int
    ) -> list[EncodedFrame]:
        if self._next is not None and seq < self._next:
            self.packets_late += 1
            return []
        discontinuity = self._next is not None and seq > self._next
        self._next = seq + 1
        return [EncodedFrame(data, rtp.timestamp, True, discontinuity, arrival_ms, rtp.ssrc)]

    def _extend(self, seq16: int) -> int:
        """Unwrap a 16-bit sequence number to the value nearest the highest seen."""
        if self._highest is None:
            self._highest = seq16
            return seq16
        base = self._highest & ~0xFFFF
        candidates = (base - 0x10000 + seq16, base + seq16, base + 0x10000 + seq16)
        seq = min(candidates, key=lambda c: abs(c - self._highest))  # type: ignore[operator]
        if seq > self._highest:
            self._highest = seq
        return seq

    def _collect(self) -> list[EncodedFrame]:
        frames: list[EncodedFrame] = []
        while self._next is not None:
            start = self._next
            first = self._slots.get(start)
            if first is None:
                break
            seq = start
            end: int | None = None
            while True:
                slot = self._slots.get(seq)
                if slot is None:
                    break
                if slot.rtp.timestamp != first.rtp.timestamp:
                    end = seq - 1  # marker bit lost, but the next frame began
                    break
                if slot.rtp.marker:
                    end = seq
                    break
                seq += 1
            if end is None:
                break
            parts = [self._slots.pop(s) for s in range(start, end + 1)]
            self._next = end + 1
            data = b"".join(p.data for p in parts)
            if not data:
                continue  # padding-only packets (bandwidth probes) carry no frame
            frames.append(
                EncodedFrame(
                    data=data,
                    timestamp=first.rtp.timestamp,
                    keyframe=is_keyframe(self.codec, data),
                    discontinuity=self._discontinuity,
                    arrival_ms=parts[-1].arrival_ms,
                    ssrc=first.rtp.ssrc,
                    temporal_id=vp8_temporal_id(first.rtp.payload) if self._vp8 else None,
                )
            )
            self._discontinuity = False
        return frames

    def _head_waited_too_long(self, now_ms: int) -> bool:
        """Whether packets have waited MAX_WAIT_MS behind a missing one.

        Only a gap is waited on: a frame still arriving (a large keyframe paced out
        over longer than MAX_WAIT_MS) has nothing missing. The wait for a missing
        packet starts when the first packet behind it arrived.
        """
        assert self._next is not None
        missing = self._next
        while missing in self._slots:
            missing += 1
        held = [slot.arrival_ms for seq, slot in self._slots.items() if seq > missing]
        return bool(held) and now_ms - min(held) > MAX_WAIT_MS

    def _skip_gap(self) -> None:
        """Give up on the missing packets: resume at the next known frame start."""
        assert self._next is not None
        for seq in sorted(self._slots):
            if seq <= self._next:
                continue
            previous = self._slots.get(seq - 1)
            slot = self._slots[seq]
            if (previous is not None and previous.rtp.marker) or starts_frame(
                self.codec, slot.rtp.payload
            ):
                self.frames_skipped += 1
                self._next = seq
                self._drop_before(seq)
                self._discontinuity = True
                return
        self._restart()

    def _restart(self) -> None:
        self.frames_skipped += 1
        self._slots.clear()
        self._next = None
        self._discontinuity = True

    def _drop_before(self, seq: int) -> None:
        for old in [s for s in self._slots if s < seq]:
            del self._slots[old]
