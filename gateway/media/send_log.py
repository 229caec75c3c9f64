"""What was sent to one viewer, by transport-wide sequence number: the sender's half of
transport-cc, read back against the viewer's feedback."""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

from .congestion import NOT_RECEIVED, Feedback

SEQUENCE_SPACE = 1 << 16
# States of a logged sequence number.
_UNUSED, _SENT, _RECEIVED, _LOST = 0, 1, 2, 3


@dataclass
class FeedbackSummary:
    """What one feedback packet says of packets this log sent."""

    received: int = 0
    lost: int = 0
    received_bytes: int = 0
    # (send time in s of this log's clock, arrival time in µs of the viewer's clock) of each
    # packet received, in sequence order: the two clocks' offset is unknown, only their
    # difference's trend means something (a queue growing on the path).
    delays: list[tuple[float, int]] = field(default_factory=list)


class SendLog:
    """Numbers every packet sent on one transport (the value of its transport-wide-cc
    header extension) and keeps its send time and size, indexed by the 16-bit number
    itself: a fixed 64 Ki-entry ring, no allocation per packet. A number is reused after
    65536 packets (a minute of a 10 Mbps viewer), long after its feedback came.

    Feedback may report a packet lost and, later, received (it was only reordered): it is
    then counted received and its loss taken back. Each packet counts once.

    Packets sent before ``judged_from`` (``forgive``) count only as throughput: their loss
    and delay tell of congestion the sender has already answered (a viewer stepped down
    to a lower layer: the old layer's queue drains, its drops are no news).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._sent_at = array("d", bytes(8 * SEQUENCE_SPACE))
        self._size = array("H", bytes(2 * SEQUENCE_SPACE))
        self._state = bytearray(SEQUENCE_SPACE)
        self._next = 0
        self.packets = 0
        self.feedbacks = 0
        self.judged_from = float("-inf")
        self.forgiven = 0  # packets sent before judged_from, not judged

    def forgive(self) -> None:
        """What was sent until now is not judged for congestion any more."""
        self.judged_from = self._clock()

    def stamp(self, size: int) -> int:
        """The number of the next packet (``size`` bytes on the wire), logged as sent now."""
        sequence = self._next
        self._next = (sequence + 1) & 0xFFFF
        self._sent_at[sequence] = self._clock()
        self._size[sequence] = min(size, 0xFFFF)
        self._state[sequence] = _SENT
        self.packets += 1
        return sequence

    def read(self, feedback: Feedback) -> FeedbackSummary:
        """Account one transport feedback packet; numbers never sent here are ignored."""
        self.feedbacks += 1
        summary = FeedbackSummary()
        state, sizes, sent_at = self._state, self._size, self._sent_at
        arrivals = feedback.arrivals()
        base = feedback.base_seq
        judged_from = self.judged_from
        for index, status in enumerate(feedback.statuses):
            sequence = (base + index) & 0xFFFF
            known = state[sequence]
            if known == _UNUSED or known == _RECEIVED:
                continue  # not ours, or reported before
            if sent_at[sequence] < judged_from:
                state[sequence] = _RECEIVED  # settled: never counted again
                self.forgiven += 1
                if status != NOT_RECEIVED:
                    summary.received_bytes += sizes[sequence]
                continue
            if status == NOT_RECEIVED:
                if known == _SENT:
                    state[sequence] = _LOST
                    summary.lost += 1
                continue
            if known == _LOST:
                summary.lost -= 1  # reordered, not lost
            state[sequence] = _RECEIVED
            summary.received += 1
            summary.received_bytes += sizes[sequence]
            summary.delays.append((sent_at[sequence], arrivals[sequence]))
        return summary
