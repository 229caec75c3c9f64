"""SendLog: transport-wide numbering of sent packets, read back against transport-cc feedback."""

from __future__ import annotations

from gateway.media.congestion import (
    LARGE_DELTA,
    NOT_RECEIVED,
    SMALL_DELTA,
    Feedback,
    encode_feedback,
    parse_feedback,
)
from gateway.media.send_log import SEQUENCE_SPACE, FeedbackSummary, SendLog
from tests.support.fake_clock import Clock

R, L, N = SMALL_DELTA, LARGE_DELTA, NOT_RECEIVED


def feedback(
    base: int, statuses: list[int], deltas: list[int] | None = None, ref: int = 0
) -> Feedback:
    """A feedback packet through the wire format (every received packet 1 ms apart if no
    ``deltas``)."""
    if deltas is None:
        deltas = [4] * sum(1 for s in statuses if s != N)
    return parse_feedback(encode_feedback(1, 2, base, ref, 0, statuses, deltas))


def test_stamp_numbers_consecutively_and_wraps_at_65536() -> None:
    log = SendLog(Clock())
    assert [log.stamp(100) for _ in range(3)] == [0, 1, 2]
    for _ in range(SEQUENCE_SPACE - 4):
        log.stamp(100)
    assert log.stamp(100) == 0xFFFF
    assert log.stamp(100) == 0
    assert log.packets == SEQUENCE_SPACE + 1


def test_read_reports_sizes_send_times_and_arrivals() -> None:
    clock = Clock(1.0)
    log = SendLog(clock)
    for size in (1200, 800, 500):
        log.stamp(size)
        clock.advance(0.01)
    # Reference 2 x 64 ms = 128 ms; deltas 1 ms, 2 ms, 75 ms (a large delta).
    summary = log.read(feedback(0, [R, R, L], [4, 8, 300], ref=2))
    assert (summary.received, summary.lost, summary.received_bytes) == (3, 0, 2500)
    assert [arrival for _, arrival in summary.delays] == [129_000, 131_000, 206_000]
    assert [round(sent, 6) for sent, _ in summary.delays] == [1.0, 1.01, 1.02]
    assert log.feedbacks == 1


def test_lost_counts_once_and_is_taken_back_when_the_packet_arrives_late() -> None:
    log = SendLog(Clock())
    sizes = [1000, 700, 300]
    for size in sizes:
        log.stamp(size)
    first = log.read(feedback(0, [R, N, R]))
    assert (first.received, first.lost, first.received_bytes) == (2, 1, 1300)
    # Reported lost again: not counted again.
    again = log.read(feedback(1, [N]))
    assert (again.received, again.lost) == (0, 0)
    # Then received (it was reordered): received now, the loss withdrawn.
    late = log.read(feedback(0, [R, R, R]))
    assert (late.received, late.lost, late.received_bytes) == (1, -1, 700)
    assert len(late.delays) == 1


def test_a_packet_reported_received_twice_counts_once() -> None:
    log = SendLog(Clock())
    for _ in range(4):
        log.stamp(1000)
    assert log.read(feedback(0, [R, R, R, R])).received == 4
    assert log.read(feedback(2, [R, R])) == FeedbackSummary()
    # Received, then reported lost (an old report arriving late): it stays received.
    assert log.read(feedback(0, [N, N])) == FeedbackSummary()


def test_numbers_never_stamped_are_ignored() -> None:
    log = SendLog(Clock())
    for _ in range(3):
        log.stamp(1000)
    summary = log.read(feedback(0, [R, R, R, R, N, R]))
    assert (summary.received, summary.lost, summary.received_bytes) == (3, 0, 3000)
    assert log.read(feedback(40_000, [R, N, R])) == FeedbackSummary()
    assert log.feedbacks == 2


def test_feedback_across_the_wrap_and_reused_numbers_count_anew() -> None:
    clock = Clock()
    log = SendLog(clock)
    log.stamp(111)  # number 0, first round
    assert log.read(feedback(0, [R])).received_bytes == 111
    for _ in range(SEQUENCE_SPACE - 3):
        log.stamp(50)
    clock.advance(60.0)
    assert [log.stamp(size) for size in (1001, 1002, 1003, 1004)] == [65534, 65535, 0, 1]
    summary = log.read(feedback(65534, [R, N, R, R]))
    # Number 0 was received in its first round; reused, it counts again, at its new size.
    assert (summary.received, summary.lost, summary.received_bytes) == (3, 1, 1001 + 1003 + 1004)
    assert [sent for sent, _ in summary.delays] == [160.0, 160.0, 160.0]


def test_size_is_capped_at_16_bits() -> None:
    log = SendLog(Clock())
    log.stamp(70_000)
    assert log.read(feedback(0, [R])).received_bytes == 0xFFFF


def test_what_was_sent_before_forgive_counts_as_throughput_only() -> None:
    clock = Clock(1.0)
    log = SendLog(clock)
    for size in (1000, 700, 300):  # the old layer's, into a queue
        log.stamp(size)
    clock.advance(0.1)
    log.forgive()  # stepped down: its congestion is answered
    log.stamp(200)
    summary = log.read(feedback(0, [R, N, N, R]))
    # The old packets' loss and delays are not judged; what got through still counts.
    assert (summary.received, summary.lost, summary.received_bytes) == (1, 0, 1200)
    assert len(summary.delays) == 1 and log.forgiven == 3
    # Reported again, even as received: settled, never counted again.
    again = log.read(feedback(0, [R, R, R]))
    assert (again.received, again.lost, again.received_bytes) == (0, 0, 0)
