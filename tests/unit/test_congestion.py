"""Transport-cc feedback: the wire format against known packets, and the recorder against
hand-built arrival sequences (wraparound, reordering, loss, long gaps)."""

from __future__ import annotations

import random
import struct

import pytest

from gateway.media.congestion import (
    HISTORY_US,
    LARGE_DELTA,
    MAX_DELTAS,
    MAX_WINDOW,
    NOT_RECEIVED,
    SMALL_DELTA,
    Feedback,
    FeedbackRecorder,
    encode_feedback,
    parse_feedback,
    transport_sequence_number,
)

# Packets from pion/rtcp's transport_layer_cc_test.go (captured from libwebrtc-style
# senders: padding bit set, the padding count in the last byte).
PION_EXAMPLE_1 = bytes.fromhex("afcd0005fa17fa1743032fa0009900013de8021720019401")
PION_EXAMPLE_4 = bytes.fromhex(
    "afcd0007fa17fa17193dd8bb0004000710636e012007" + "4c242410" + "0c0c1000" + "0003"
)
PION_EXAMPLE_6 = bytes.fromhex("afcd00079b74f61f9371dcbc853c000963f916b3d55200309baa6aaa7b010901")

SENDER, MEDIA = 0x11223344, 0x55667788
T0 = 1_000_000_000  # µs: an arbitrary monotonic clock reading


def header(packet: bytes) -> tuple[int, int, int, int]:
    """(version, padding bit, FMT, payload type) of an RTCP packet."""
    return packet[0] >> 6, packet[0] >> 5 & 1, packet[0] & 0x1F, packet[1]


# --- the wire format ---------------------------------------------------------------------


def test_parses_known_packets() -> None:
    one = parse_feedback(PION_EXAMPLE_1)
    assert (one.sender_ssrc, one.media_ssrc) == (4195875351, 1124282272)
    assert (one.base_seq, one.reference_ticks, one.fb_count) == (153, 4057090, 23)
    assert (one.statuses, one.deltas) == ([SMALL_DELTA], [148])  # 37 ms
    four = parse_feedback(PION_EXAMPLE_4)
    assert four.statuses == [SMALL_DELTA] * 7
    assert [d * 250 for d in four.deltas] == [19000, 9000, 9000, 4000, 3000, 3000, 4000]
    six = parse_feedback(PION_EXAMPLE_6)
    assert six.base_seq == 34108
    assert six.statuses == [1, 1, 1, 1, 1, 0, 2, 0, 0]  # a two-bit vector, then a run
    assert [d * 250 for d in six.deltas] == [38750, 42500, 26500, 42500, 30750, 66250]
    assert list(six.arrivals()) == [34108, 34109, 34110, 34111, 34112, 34114]


@pytest.mark.parametrize("known", [PION_EXAMPLE_1, PION_EXAMPLE_4])
def test_encodes_known_packets_byte_for_byte(known: bytes) -> None:
    f = parse_feedback(known)
    assert (
        encode_feedback(
            f.sender_ssrc,
            f.media_ssrc,
            f.base_seq,
            f.reference_ticks,
            f.fb_count,
            f.statuses,
            f.deltas,
        )
        == known
    )


def test_hand_built_packet_with_loss_and_a_large_delta() -> None:
    # seq 100 received 1 ms after the reference, 101 lost, 102 received 300 ms later
    # (a large delta), 103 received 0.5 ms before 102 (negative: large too).
    packet = encode_feedback(SENDER, MEDIA, 100, 0x123456, 7, [1, 0, 2, 2], [4, 1200, -2])
    expected = (
        struct.pack("!BBH", 0x80 | 0x20 | 15, 205, 6)  # padded; 6 words follow
        + struct.pack("!II", SENDER, MEDIA)
        + struct.pack("!HH", 100, 4)
        + bytes([0x12, 0x34, 0x56, 7])
        # a two-bit status vector chunk: 1 1 | 01 00 10 10 00 00 00
        + struct.pack("!H", 0b11_01_00_10_10_00_00_00)
        + bytes([4])
        + struct.pack("!hh", 1200, -2)
        + bytes([1])  # one padding byte: the count is the last byte
    )
    assert packet == expected
    assert header(packet) == (2, 1, 15, 205)


def test_hand_built_packet_with_a_one_bit_vector_and_a_run() -> None:
    # 14 symbols of received/lost fit one one-bit vector; then a run of 20 received.
    statuses = [1, 0] * 7 + [1] * 20
    deltas = [10] * 27
    packet = encode_feedback(SENDER, MEDIA, 65530, 1, 0, statuses, deltas)
    chunks = struct.unpack_from("!HH", packet, 20)
    assert chunks == (0b10_10101010101010, 0b0_01_0000000010100)
    assert len(packet) == 20 + 4 + 27 + 1  # one padding byte
    parsed = parse_feedback(packet)
    assert (parsed.statuses, parsed.deltas) == (statuses, deltas)


def test_the_last_chunk_may_cover_fewer_symbols_than_it_holds() -> None:
    packet = encode_feedback(SENDER, MEDIA, 9, 0, 0, [1, 0, 0, 1], [1, 2])
    assert struct.unpack_from("!H", packet, 20)[0] == 0b10_10010000000000
    assert parse_feedback(packet).statuses == [1, 0, 0, 1]


def test_a_long_loss_run_is_one_chunk() -> None:
    statuses = [1] + [NOT_RECEIVED] * 5000 + [1]
    packet = encode_feedback(SENDER, MEDIA, 0, 0, 0, statuses, [0, 0])
    # A one-bit vector (1 and 13 lost), a run of the other 4987 lost, a run of 1; deltas.
    assert len(packet) == 20 + 3 * 2 + 2
    assert parse_feedback(packet).statuses == statuses


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda p: p[:-4], "length field"),
        (lambda p: bytes([0x8F]) + p[1:], "trailing"),  # padding bytes without the bit
        (lambda p: p[:1] + bytes([206]) + p[2:], "not an RTCP transport feedback"),
        (lambda p: p[:14] + struct.pack("!H", 400) + p[16:], "truncated"),
    ],
)
def test_parse_refuses_malformed_packets(mangle: object, message: str) -> None:
    good = encode_feedback(SENDER, MEDIA, 1, 0, 0, [1, 1, 2], [1, 2, 300])
    parse_feedback(good)
    with pytest.raises(ValueError) as error:
        parse_feedback(mangle(good))  # type: ignore[operator]
    assert message in str(error.value)


# --- reading the sequence number from RTP ----------------------------------------------------


def rtp_with(extension: bytes, profile: int = 0xBEDE, csrcs: int = 0) -> bytes:
    padded = extension + bytes(-len(extension) % 4)
    head = bytes([0x90 | csrcs, 96]) + struct.pack("!HII", 1, 2, 3) + bytes(4 * csrcs)
    return head + struct.pack("!HH", profile, len(padded) // 4) + padded + b"payload"


def test_reads_the_one_byte_extension_among_others() -> None:
    mid = bytes([0x10]) + b"0"  # id 1, 1 byte
    abs_send_time = bytes([0x32]) + b"\x01\x02\x03"  # id 3, 3 bytes
    seq = bytes([0x51]) + struct.pack("!H", 51234)  # id 5, 2 bytes
    assert transport_sequence_number(rtp_with(mid + abs_send_time + seq), 5) == 51234
    assert transport_sequence_number(rtp_with(mid + b"\x00\x00" + seq), 5) == 51234  # padding
    assert transport_sequence_number(rtp_with(seq, csrcs=2), 5) == 51234
    assert transport_sequence_number(rtp_with(mid + abs_send_time), 5) is None
    assert transport_sequence_number(rtp_with(seq), 4) is None


def test_reads_the_two_byte_extension() -> None:
    element = bytes([5, 2]) + struct.pack("!H", 7)
    assert transport_sequence_number(rtp_with(bytes([1, 1, 0x30]) + element, 0x1000), 5) == 7


def test_packets_without_a_usable_extension_give_none() -> None:
    plain = bytes([0x80, 96]) + struct.pack("!HII", 1, 2, 3) + b"payload"
    assert transport_sequence_number(plain, 5) is None
    truncated = rtp_with(bytes([0x51]) + struct.pack("!H", 1))[:14]
    assert transport_sequence_number(truncated, 5) is None
    assert transport_sequence_number(b"\x90", 5) is None


# --- the recorder --------------------------------------------------------------------------


def run(
    arrivals: list[tuple[int, int]], recorder: FeedbackRecorder | None = None
) -> list[Feedback]:
    """Records (seq, µs) in order, then parses the feedback it produces."""
    recorder = recorder or FeedbackRecorder()
    for seq, time_us in arrivals:
        recorder.record(seq, time_us)
    return [parse_feedback(p) for p in recorder.feedback(SENDER, MEDIA)]


def reported(feedback: list[Feedback]) -> dict[int, int | None]:
    """Sequence number -> reported arrival (µs) or None (reported lost), latest report wins."""
    out: dict[int, int | None] = {}
    for f in feedback:
        arrivals = f.arrivals()
        for i in range(len(f.statuses)):
            seq = (f.base_seq + i) & 0xFFFF
            out[seq] = arrivals.get(seq)
    return out


def test_in_order_arrivals_are_reported_to_the_quarter_millisecond() -> None:
    arrivals = [(10 + i, T0 + i * 1_130) for i in range(40)]
    (feedback,) = run(arrivals)
    assert (feedback.sender_ssrc, feedback.media_ssrc, feedback.base_seq) == (SENDER, MEDIA, 10)
    assert feedback.statuses == [SMALL_DELTA] * 40
    assert feedback.reference_ticks == T0 // 64_000
    for seq, time_us in arrivals:
        # Deltas accumulate rounded values: every arrival is within 125 µs, no drift.
        assert abs(feedback.arrivals()[seq] - time_us) <= 125


def test_sequence_numbers_wrap_around() -> None:
    seqs = [65533, 65534, 65535, 0, 1, 2]
    (feedback,) = run([(s, T0 + i * 1000) for i, s in enumerate(seqs)])
    assert feedback.base_seq == 65533
    assert list(feedback.arrivals()) == seqs


def test_lost_packets_are_reported_as_not_received() -> None:
    (feedback,) = run([(s, T0 + s * 1000) for s in (1, 2, 5, 6, 9)])
    assert feedback.statuses == [1, 1, 0, 0, 1, 1, 0, 0, 1]
    assert reported([feedback])[3] is None


def test_a_gap_at_the_end_is_reported_with_the_next_arrival() -> None:
    recorder = FeedbackRecorder()
    first = run([(1, T0), (2, T0 + 1000)], recorder)
    assert [f.statuses for f in first] == [[1, 1]]
    assert run([], recorder) == []  # nothing new: no feedback
    (second,) = run([(5, T0 + 5000)], recorder)
    assert (second.base_seq, second.statuses) == (3, [0, 0, 1])  # 3 and 4 were lost


def test_reordering_within_a_feedback_interval() -> None:
    # 7 arrives before 6, 9 well before 8: negative deltas.
    order = [(5, 0), (7, 1000), (6, 1750), (9, 2000), (8, 9000), (10, 9500)]
    (feedback,) = run([(s, T0 + t) for s, t in order])
    assert feedback.statuses == [SMALL_DELTA, SMALL_DELTA, LARGE_DELTA, SMALL_DELTA, LARGE_DELTA, 1]
    assert reported([feedback]) == {s: T0 + t for s, t in order}


def test_a_packet_reported_lost_that_arrives_later_is_reported_again() -> None:
    recorder = FeedbackRecorder()
    (first,) = run([(1, T0), (3, T0 + 2000), (4, T0 + 3000)], recorder)
    assert reported([first])[2] is None
    (second,) = run([(2, T0 + 40_000), (5, T0 + 41_000)], recorder)
    # Reported again from the late packet on, its neighbours still as received.
    assert second.base_seq == 2
    assert reported([second]) == {2: T0 + 40_000, 3: T0 + 2000, 4: T0 + 3000, 5: T0 + 41_000}
    assert second.fb_count == first.fb_count + 1


def test_a_packet_later_than_the_history_is_not_reported() -> None:
    recorder = FeedbackRecorder()
    later = [(s, T0 + HISTORY_US + 10_000 + s) for s in range(4, 40)]
    run([(1, T0), (3, T0 + 1000), *later], recorder)
    # 1 and 3 are forgotten: reporting 2 again with its neighbours is no longer possible.
    assert run([(2, T0 + HISTORY_US + 20_000)], recorder) == []
    assert recorder.too_late == 1


def test_duplicates_are_reported_once_with_the_first_arrival() -> None:
    recorder = FeedbackRecorder()
    (feedback,) = run([(1, T0), (2, T0 + 1000), (2, T0 + 5000), (3, T0 + 6000)], recorder)
    assert reported([feedback]) == {1: T0, 2: T0 + 1000, 3: T0 + 6000}
    assert recorder.duplicates == 1


def test_a_gap_longer_than_a_delta_can_hold_starts_a_new_packet() -> None:
    # A delta holds ±8.19 s: a 10 s silence needs a new reference time.
    feedback = run([(1, T0), (2, T0 + 1000), (3, T0 + 10_000_000), (4, T0 + 10_001_000)])
    assert [(f.base_seq, len(f.statuses)) for f in feedback] == [(1, 2), (3, 2)]
    assert feedback[1].reference_ticks == (T0 + 10_000_000) // 64_000
    assert reported(feedback) == {1: T0, 2: T0 + 1000, 3: T0 + 10_000_000, 4: T0 + 10_001_000}
    assert [f.fb_count for f in feedback] == [0, 1]


def test_many_packets_are_split_and_feedback_counts_wrap() -> None:
    recorder = FeedbackRecorder()
    counts: list[int] = []
    seq = 0
    for _ in range(300):  # more feedback packets than fb_count can count
        feedback = run([(seq, T0 + seq * 100)], recorder)
        counts += [f.fb_count for f in feedback]
        seq += 1
    assert counts == [n % 256 for n in range(300)]
    for s in range(seq, seq + 2 * MAX_DELTAS + 10):
        recorder.record(s, T0 + s * 100)
    packets = recorder.feedback(SENDER, MEDIA)
    assert all(len(p) <= 1200 for p in packets)
    burst = [parse_feedback(p) for p in packets]
    assert [len(f.deltas) for f in burst] == [MAX_DELTAS, MAX_DELTAS, 10]
    assert [f.fb_count for f in burst] == [300 % 256, 301 % 256, 302 % 256]
    assert recorder.packets_sent == 303


def test_a_sequence_jump_restarts_the_window() -> None:
    recorder = FeedbackRecorder()
    run([(1, T0)], recorder)
    (feedback,) = run([(1 + MAX_WINDOW + 500, T0 + 1000)], recorder)
    assert feedback.base_seq == (1 + MAX_WINDOW + 500) & 0xFFFF
    assert feedback.statuses == [SMALL_DELTA]


def test_random_loss_and_reordering_round_trip() -> None:
    rng = random.Random(6)
    recorder = FeedbackRecorder()
    truth: dict[int, int] = {}
    reports: dict[int, int | None] = {}
    seq, now = 64000, T0
    for _interval in range(60):  # 60 feedback intervals, across the 16-bit wrap
        batch = []
        for _ in range(rng.randrange(0, 40)):
            now += rng.randrange(0, 3000)
            if rng.random() > 0.1:  # 10% lost
                batch.append((seq & 0xFFFF, now))
            seq += 1
        for i in range(len(batch) - 1):  # swap neighbours now and then
            if rng.random() < 0.15:
                (s1, t1), (s2, t2) = batch[i], batch[i + 1]
                batch[i], batch[i + 1] = (s2, t1), (s1, t2)
        truth.update(batch)
        reports.update(reported(run(batch, recorder)))
    received = {s: t for s, t in reports.items() if t is not None}
    assert received.keys() == truth.keys()
    assert all(abs(received[s] - truth[s]) <= 125 for s in truth)
    lost = {s for s, t in reports.items() if t is None}
    assert lost and not lost & truth.keys()
