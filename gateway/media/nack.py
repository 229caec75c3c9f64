"""Which packets lost on the way from a publisher to NACK, and when to ask for them again."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

# A missing packet is NACKed when its gap shows, then again every RETRY_S until it arrives,
# at most MAX_TRIES times in all: enough tries to beat 10% loss on both the NACK and the
# retransmission within the FrameAssembler's wait (MAX_WAIT_MS, 250 ms). On a long path
# a retry before the round trip is over only costs a duplicate the publisher suppresses
# (libwebrtc resends a packet at most once per RTT).
RETRY_S = 0.04
MAX_TRIES = 6
# Older missing packets are no use to the assembler any more.
MAX_AGE_S = 0.5
# A jump this large is a restarted stream or a reordering glitch, not loss to repair.
MAX_GAP = 512
# SSRCs one receiver keeps NACK state for (simulcast: a few layers).
MAX_STREAMS = 16


class _Packet(Protocol):
    sequence_number: int


class NackPolicy(Protocol):
    """What aiortc's receiver asks of its NACK generator."""

    missing: set[int]

    def add(self, packet: _SsrcPacket) -> bool: ...


class _SsrcPacket(Protocol):
    sequence_number: int
    ssrc: int


class NackScheduler:
    """Stands in for aiortc's NackGenerator on a publisher's video receiver.

    aiortc NACKs missing packets when a gap appears, and asks again for the ones still
    missing only when the next gap appears: a lost retransmission waits for unrelated
    loss, long enough at 10% loss that the assembler gives frames up. aiortc calls
    ``add`` for every packet (retransmissions unwrapped from RTX included) and, when it
    returns True, sends one NACK listing ``missing``; here ``missing`` is what is due now.
    Packets arrive every few milliseconds on a video stream, so retries need no timer.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.max_seq: int | None = None
        # sequence number -> [first missed at, last NACKed at, NACKs sent]
        self._pending: dict[int, list[float]] = {}
        self.missing: set[int] = set()
        self.retries = 0  # NACKs of a packet after its first
        self.given_up = 0  # missing packets no longer asked for (never arrived)

    def add(self, packet: _Packet) -> bool:
        now = self._clock()
        seq = packet.sequence_number
        if self.max_seq is None:
            self.max_seq = seq
            return False
        ahead = (seq - self.max_seq) & 0xFFFF
        if 0 < ahead < 0x8000:
            if ahead > MAX_GAP:
                self._pending.clear()
            else:
                for step in range(1, ahead):
                    self._pending[(self.max_seq + step) & 0xFFFF] = [now, -1e9, 0]
            self.max_seq = seq
        else:
            self._pending.pop(seq, None)
        due: set[int] = set()
        for missing, entry in list(self._pending.items()):
            if entry[2] >= MAX_TRIES or now - entry[0] > MAX_AGE_S:
                del self._pending[missing]
                self.given_up += 1
            elif now - entry[1] >= RETRY_S:
                if entry[2] > 0:
                    self.retries += 1
                entry[1] = now
                entry[2] += 1
                due.add(missing)
        self.missing = due
        return bool(due)


class SsrcNackSchedulers:
    """One NackScheduler per SSRC, for a receiver that gets several streams (the layers of
    a simulcast track): aiortc NACKs ``missing`` for the SSRC of the packet just added."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._schedulers: dict[int, NackScheduler] = {}
        self.missing: set[int] = set()

    def add(self, packet: _SsrcPacket) -> bool:
        scheduler = self._schedulers.get(packet.ssrc)
        if scheduler is None:
            if len(self._schedulers) >= MAX_STREAMS:
                self._schedulers.clear()  # a sender cycling SSRCs: forget the old ones
            scheduler = self._schedulers[packet.ssrc] = NackScheduler(self._clock)
        due = scheduler.add(packet)
        self.missing = scheduler.missing
        return due

    @property
    def retries(self) -> int:
        return sum(s.retries for s in self._schedulers.values())
