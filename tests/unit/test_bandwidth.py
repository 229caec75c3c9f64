"""BandwidthEstimate: the loss rule, transport-cc windows, standing-queue overuse, REMB caps."""

from __future__ import annotations

import pytest

from gateway.media.bandwidth import (
    BASE_DELAY_S,
    DRAINING_S,
    MIN_PACKETS,
    QUEUE_S,
    SETTLE_S,
    WINDOW_S,
    BandwidthEstimate,
)
from tests.support.fake_clock import Clock

START, FLOOR, CEILING = 1_000_000.0, 30_000.0, 10_000_000.0
OFFSET_US = 7_000_000  # the viewer's clock is offset from ours by an unknown amount


def setup(start: float = START, ceiling: float = CEILING) -> tuple[Clock, BandwidthEstimate]:
    clock = Clock()
    return clock, BandwidthEstimate(start, FLOOR, ceiling, clock)


def pairs(first_sent: float, count: int, delay_s: float) -> list[tuple[float, int]]:
    """(send_s, arrival_us) of ``count`` packets 10 ms apart, each ``delay_s`` in transit."""
    sends = [first_sent + 0.01 * i for i in range(count)]
    return [(s, round((s + delay_s) * 1e6) + OFFSET_US) for s in sends]


def window(
    clock: Clock, est: BandwidthEstimate, delay_s: float, received: int = 20, lost: int = 0
) -> None:
    """One transport-cc window: WINDOW_S later, ``received`` packets of 1250 bytes."""
    clock.advance(WINDOW_S)
    delays = pairs(clock() - 0.3, received, delay_s)
    est.on_transport_feedback(received, lost, received * 1250, delays)


def test_start_is_clamped_between_floor_and_ceiling() -> None:
    assert setup(start=10.0)[1].bps == FLOOR
    assert setup(start=50e6)[1].bps == CEILING


def test_a_lowered_ceiling_stops_growth_but_cuts_nothing() -> None:
    clock, est = setup()
    est.ceiling_bps = START / 2  # the layers' rates are low for now
    clock.advance(1.0)
    est.on_receiver_report(0.0, 900_000)
    assert est.bps == START  # no growth, and no cut: no congestion was seen
    clock.advance(1.0)
    est.on_receiver_report(0.5, 400_000)  # congestion: cut, from where it was
    assert est.bps == pytest.approx(START * 0.75)


@pytest.mark.parametrize(("after_s", "factor"), [(1.0, 1.08), (0.5, 1.08**0.5), (10.0, 1.08**2)])
def test_low_loss_grows_8_percent_a_second_for_at_most_two_seconds(
    after_s: float, factor: float
) -> None:
    clock, est = setup()
    clock.advance(after_s)
    est.on_receiver_report(0.01, 900_000)
    assert est.bps == pytest.approx(START * factor)
    assert est.loss == 0.01


def test_growth_stops_at_the_ceiling() -> None:
    clock, est = setup(ceiling=1_050_000)
    clock.advance(1.0)
    est.on_receiver_report(0.0, 900_000)
    assert est.bps == 1_050_000


def test_loss_between_2_and_10_percent_holds() -> None:
    clock, est = setup()
    for loss in (0.02, 0.05, 0.10):
        clock.advance(1.0)
        est.on_receiver_report(loss, 900_000)
        assert est.bps == START
    assert est.cuts == 0


@pytest.mark.parametrize("received_bps", [0.0, 500_000, 2_000_000])
def test_high_loss_cuts_by_half_the_loss(received_bps: float) -> None:
    """...but never below 85% of what got through (what an overuse would keep)."""
    clock, est = setup()
    clock.advance(1.0)
    est.on_receiver_report(0.2, received_bps)
    assert est.bps == pytest.approx(min(START, max(900_000, 0.85 * received_bps)))
    assert (est.cuts, est.loss, est.received_bps) == (1, 0.2, received_bps)


def test_a_cut_stops_at_the_floor() -> None:
    _, est = setup(start=40_000)
    est.on_receiver_report(0.8, 0.0)  # 40 kbps x 0.6 = 24 kbps, below the floor
    assert est.bps == FLOOR


def test_remb_caps_the_estimate_but_never_below_the_floor() -> None:
    _, est = setup()
    est.on_remb(400_000)
    assert (est.bps, est.remb_bps) == (400_000, 400_000)
    est.on_remb(5_000)
    assert est.bps == FLOOR
    est.on_remb(3_000_000)
    assert est.bps == START  # a cap, not a target


def test_a_window_is_judged_only_once_it_spans_window_s() -> None:
    clock, est = setup()
    clock.advance(WINDOW_S - 0.1)
    est.on_transport_feedback(15, 5, 15 * 1000, pairs(clock() - 0.1, 15, 0.02))
    assert (est.bps, est.loss) == (START, 0.0)
    clock.advance(0.1)
    est.on_transport_feedback(5, 0, 5 * 1000, pairs(clock() - 0.1, 5, 0.02))
    # 5 lost of 25 (20%): cut by 10%; 20 kB in 0.5 s got through: 320 kbps.
    assert est.loss == pytest.approx(0.2)
    assert est.received_bps == pytest.approx(320_000)
    assert est.bps == pytest.approx(900_000)


def test_a_window_with_too_few_packets_is_dropped() -> None:
    clock, est = setup()
    window(clock, est, 0.02, received=MIN_PACKETS - 5, lost=4)
    assert (est.bps, est.loss, est.cuts) == (START, 0.0, 0)
    # Its counts are not carried over: the next window alone, with no loss, is judged.
    window(clock, est, 0.02, received=MIN_PACKETS, lost=0)
    assert est.loss == 0.0
    assert est.bps == pytest.approx(START * 1.08**1.0)


def test_a_standing_queue_over_the_base_delay_is_overuse() -> None:
    clock, est = setup()
    window(clock, est, 0.050)
    window(clock, est, 0.050 + QUEUE_S + 0.010)
    # 20 x 1250 bytes in 0.5 s = 400 kbps got through; 85% of it.
    assert est.queue_s == pytest.approx(0.050, abs=1e-5)
    assert est.overuses == 1
    assert est.bps == pytest.approx(340_000)
    assert est.loss == 0.0


def test_a_queue_below_queue_s_is_no_overuse() -> None:
    clock, est = setup()
    window(clock, est, 0.050)
    window(clock, est, 0.050 + QUEUE_S - 0.010)
    assert est.queue_s == pytest.approx(0.030, abs=1e-5)
    assert est.overuses == 0
    assert est.bps == pytest.approx(START * 1.08)  # no loss: two half seconds of growth


def test_one_packet_at_the_base_delay_means_no_standing_queue() -> None:
    clock, est = setup()
    window(clock, est, 0.050)
    clock.advance(WINDOW_S)
    delays = pairs(clock() - 0.3, 19, 0.150) + pairs(clock() - 0.05, 1, 0.050)
    est.on_transport_feedback(20, 0, 25_000, delays)
    assert est.queue_s == pytest.approx(0.0, abs=1e-5)
    assert est.overuses == 0


@pytest.mark.parametrize(("gap_s", "overuse"), [(BASE_DELAY_S - 1, 1), (BASE_DELAY_S + 1, 0)])
def test_the_base_delay_is_the_least_over_base_delay_s(gap_s: float, overuse: int) -> None:
    clock, est = setup()
    window(clock, est, 0.010)
    clock.advance(gap_s - 2 * WINDOW_S)
    window(clock, est, 0.100)  # spans the silence: not judged, a new window starts
    assert est.overuses == 0
    window(clock, est, 0.100)
    assert est.overuses == overuse
    assert est.queue_s == pytest.approx(0.090 if overuse else 0.0, abs=1e-5)


def test_overuse_never_raises_the_estimate() -> None:
    clock, est = setup(start=200_000)
    window(clock, est, 0.0, received=10)  # 200 kbps got through: growth is above it
    grown = est.bps
    assert grown == pytest.approx(200_000 * 1.08**0.5)
    window(clock, est, 0.1)  # 85% of 400 kbps is above the estimate
    assert est.overuses == 1
    assert est.bps == grown


def test_after_an_overuse_cut_the_queue_is_judged_again_only_settle_s_later() -> None:
    clock, est = setup()
    window(clock, est, 0.050)
    window(clock, est, 0.100)
    assert est.overuses == 1
    for _ in range(round(SETTLE_S / WINDOW_S) - 1):
        window(clock, est, 0.100)
    assert est.overuses == 1
    window(clock, est, 0.100)
    assert est.overuses == 2


@pytest.mark.parametrize(("shrink_s", "overuses"), [(DRAINING_S + 0.005, 1), (0.002, 2)])
def test_a_draining_queue_is_no_overuse(shrink_s: float, overuses: int) -> None:
    clock, est = setup()
    window(clock, est, 0.050)
    clock.advance(SETTLE_S)  # the next window is judged after the settling time
    window(clock, est, 0.120)
    assert est.overuses == 1
    clock.advance(SETTLE_S)
    window(clock, est, 0.120 - shrink_s)
    assert est.overuses == overuses


def test_no_growth_while_a_queue_stands() -> None:
    clock, est = setup(start=200_000)
    window(clock, est, 0.0)
    window(clock, est, 0.1)  # overuse: 85% of 400 kbps is above 200k, kept
    kept = est.bps
    for _ in range(4):  # the queue stays: no loss, but no growth either
        window(clock, est, 0.1)
    assert est.bps == kept
    window(clock, est, 0.0)  # drained
    assert est.bps > kept


def test_a_loss_cut_waits_for_the_last_cut_to_settle() -> None:
    clock, est = setup()
    clock.advance(1.0)
    est.on_receiver_report(0.2, 0.0)
    clock.advance(SETTLE_S / 2)
    est.on_receiver_report(0.4, 0.0)  # the same congestion, still showing
    assert (est.cuts, est.bps) == (1, pytest.approx(900_000))
    clock.advance(SETTLE_S)
    est.on_receiver_report(0.4, 0.0)
    assert (est.cuts, est.bps) == (2, pytest.approx(720_000))


def test_a_passed_probe_raises_the_estimate_to_what_got_through() -> None:
    clock, est = setup()
    est.probed(2_500_000)
    assert est.bps == 2_500_000
    est.probed(500_000)  # less than it believes already: no cut
    assert est.bps == 2_500_000
    clock.advance(1.0)
    est.on_receiver_report(0.0, 2_000_000)  # growth counts from the probe
    assert est.bps == pytest.approx(2_500_000 * 1.08)


def test_a_clean_window_raises_the_estimate_to_what_got_through() -> None:
    clock, est = setup()
    clock.advance(1.0)
    est.on_receiver_report(0.5, 400_000)  # a cut: 750 kbps
    clock.advance(1.0)
    est.on_receiver_report(0.0, 900_000)  # the path drained: 900 kbps got through cleanly
    assert est.bps == 900_000
    clock.advance(1.0)
    est.on_receiver_report(0.05, 2_000_000)  # with loss: no such evidence
    assert est.bps == 900_000
