"""The publisher-side NACK scheduler: first NACK on a gap, retries until the packet comes."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.media.nack import MAX_AGE_S, MAX_TRIES, RETRY_S, NackScheduler


@dataclass
class Packet:
    sequence_number: int


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_gap_is_nacked_at_once_and_again_until_it_arrives() -> None:
    clock = Clock()
    nacks = NackScheduler(clock)
    assert not nacks.add(Packet(10))
    assert nacks.add(Packet(13))  # 11 and 12 missing
    assert nacks.missing == {11, 12}
    clock.now += RETRY_S / 2
    assert not nacks.add(Packet(14))  # too soon to ask again
    clock.now += RETRY_S
    assert nacks.add(Packet(15))
    assert nacks.missing == {11, 12}
    assert nacks.retries == 2
    assert not nacks.add(Packet(11))  # the retransmission (RTX unwrapped)
    clock.now += RETRY_S
    assert nacks.add(Packet(16))
    assert nacks.missing == {12}


def test_gives_up_after_max_tries_or_age() -> None:
    clock = Clock()
    nacks = NackScheduler(clock)
    nacks.add(Packet(0))
    nacks.add(Packet(2))
    sent = 1
    seq = 3
    for _ in range(MAX_TRIES * 2):
        clock.now += RETRY_S
        if nacks.add(Packet(seq)):
            sent += 1
        seq += 1
    assert sent == MAX_TRIES
    assert nacks.given_up == 1
    nacks.add(Packet(seq + 1))  # a new gap
    clock.now += MAX_AGE_S + 0.01
    assert not nacks.add(Packet(seq + 2))
    assert nacks.given_up == 2


def test_wraparound_and_large_jumps() -> None:
    clock = Clock()
    nacks = NackScheduler(clock)
    nacks.add(Packet(0xFFFE))
    assert nacks.add(Packet(1))
    assert nacks.missing == {0xFFFF, 0}
    # A jump of thousands is a restarted stream, not loss: nothing is asked for.
    clock.now += RETRY_S
    nacks.add(Packet(0xFFFF))
    nacks.add(Packet(0))
    assert not nacks.add(Packet(5000))
    assert nacks.max_seq == 5000
    # A late, old packet changes nothing.
    assert not nacks.add(Packet(4000))
    assert nacks.max_seq == 5000
