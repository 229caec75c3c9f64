"""The rate meter: a counter's growth over each sample interval (CPU share, bytes sent)."""

from __future__ import annotations

import time

from gateway.limits.meter import SAMPLE_S, RateMeter


def test_the_rate_is_growth_over_wall_time_per_interval() -> None:
    clock, cpu = [100.0], [5.0]
    meter = RateMeter(counter=lambda: cpu[0], clock=lambda: clock[0])
    assert meter.rate() == 0.0
    clock[0] += 2 * SAMPLE_S
    cpu[0] += 1.5 * SAMPLE_S  # 75% of a core
    assert meter.rate() == 0.75
    # Asked again within the interval: the last sample, not a rate over no time.
    clock[0] += SAMPLE_S / 10
    cpu[0] += SAMPLE_S
    assert meter.rate() == 0.75
    clock[0] += SAMPLE_S
    assert abs(meter.rate() - SAMPLE_S / (1.1 * SAMPLE_S)) < 1e-9


def test_a_counter_that_went_back_is_no_growth() -> None:
    clock, sent = [0.0], [10_000.0]
    meter = RateMeter(counter=lambda: sent[0], clock=lambda: clock[0])
    clock[0] += SAMPLE_S
    sent[0] = 4_000.0  # a session's bytes retired before they were summed
    assert meter.rate() == 0.0
    clock[0] += SAMPLE_S
    sent[0] += 125_000
    assert meter.rate() == 125_000 / SAMPLE_S


def test_a_real_busy_loop_shows() -> None:
    meter = RateMeter()
    deadline = time.monotonic() + SAMPLE_S * 1.2
    while time.monotonic() < deadline:
        pass
    assert meter.rate() > 0.5
