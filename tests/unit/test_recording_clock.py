"""TrackClock: RTP time mapped onto one wall clock, robust to jitter, pauses and jumps."""

from __future__ import annotations

import itertools

import pytest

from gateway.recording.clock import NTP_UNIT, TrackClock

T0 = 3_970_000_000.0  # an NTP time (seconds)


def ntp(seconds: float) -> int:
    return int((T0 + seconds) * NTP_UNIT)


def wall(clock: TrackClock, rtp: int, arrival_s: float) -> float:
    clock.observe(rtp, ntp(arrival_s))
    return clock.wall_s(rtp) - T0


def test_two_tracks_with_unrelated_origins_share_one_clock() -> None:
    video, audio = TrackClock(90000), TrackClock(48000)
    for i in range(100):
        t = i / 30
        # Video: RTP origin 1e9, 20 ms late, plus 0-30 ms of jitter.
        video.observe(1_000_000_000 + round(t * 90000), ntp(t + 0.020 + (i % 4) * 0.010))
    for i in range(150):
        t = i / 50
        audio.observe(777 + round(t * 48000), ntp(t + 0.020 + (i % 3) * 0.004))
    # Capture time 2.0 s of each track maps to the same instant (min delay: 20 ms).
    v = video.wall_s(1_000_000_000 + 180000) - T0
    a = audio.wall_s(777 + 96000) - T0
    assert v == pytest.approx(2.020, abs=0.001)
    assert a == pytest.approx(v, abs=0.001)


def test_frame_spacing_follows_rtp_not_arrival_jitter() -> None:
    clock = TrackClock(90000)
    times = [wall(clock, i * 3000, i / 30 + 0.05 + (0.03 if i % 2 else 0)) for i in range(60)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap == pytest.approx(1 / 30, abs=1e-6) for gap in gaps)


def test_a_better_estimate_is_slewed_in_not_jumped() -> None:
    clock = TrackClock(90000)
    # The first frame (a keyframe) took 200 ms longer to arrive than those after it.
    first = wall(clock, 0, 0.250)
    times = [first] + [wall(clock, i * 3000, i / 30 + 0.050) for i in range(1, 150)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Never squeezed by more than 5%, and the estimate is reached in the end.
    assert min(gaps) >= (1 / 30) * 0.95 - 1e-9
    assert times[-1] == pytest.approx(149 / 30 + 0.050, abs=0.001)


def test_a_pause_stays_a_gap_and_a_restarted_rtp_clock_resyncs() -> None:
    clock = TrackClock(90000)
    for i in range(30):
        wall(clock, i * 3000, i / 30 + 0.01)
    # Paused 3 s with the RTP clock running: the gap is kept.
    assert wall(clock, (30 + 90) * 3000, 4.01) == pytest.approx(4.01, abs=0.001)
    # The sender restarts its RTP clock at 0 (a new encoder): re-anchored on arrival.
    assert wall(clock, 0, 5.0) == pytest.approx(5.0, abs=0.001)
    assert wall(clock, 3000, 5.0 + 1 / 30) == pytest.approx(5.0 + 1 / 30, abs=0.001)
    assert clock.resyncs == 1


def test_the_estimate_follows_a_drifting_sender() -> None:
    """A sender clock 0.1% slow: after two windows the offset tracks it."""
    clock = TrackClock(48000)
    for i in range(50 * 60):  # 60 s of 20 ms packets
        t = i / 50
        last = wall(clock, round(t * 0.999 * 48000), t + 0.01)
    # Arrival-anchored within the window's drift (20 s x 0.1%) plus the slew.
    assert last == pytest.approx(59.98 + 0.01, abs=0.03)
