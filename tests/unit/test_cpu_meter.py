"""The CPU meter: a share of one core over each sample interval, from the process's clock."""

from __future__ import annotations

from gateway.limits.cpu import SAMPLE_S, CpuMeter


def test_the_share_is_cpu_time_over_wall_time_per_interval() -> None:
    clock, cpu = [100.0], [5.0]
    meter = CpuMeter(cpu=lambda: cpu[0], clock=lambda: clock[0])
    assert meter.share() == 0.0
    clock[0] += 2 * SAMPLE_S
    cpu[0] += 1.5 * SAMPLE_S  # 75% of a core
    assert meter.share() == 0.75
    # Asked again within the interval: the last sample, not a share over no time.
    clock[0] += SAMPLE_S / 10
    cpu[0] += SAMPLE_S
    assert meter.share() == 0.75
    clock[0] += SAMPLE_S
    assert abs(meter.share() - SAMPLE_S / (1.1 * SAMPLE_S)) < 1e-9


def test_a_real_busy_loop_shows() -> None:
    import time

    meter = CpuMeter()
    deadline = time.monotonic() + SAMPLE_S * 1.2
    while time.monotonic() < deadline:
        pass
    assert meter.share() > 0.5
