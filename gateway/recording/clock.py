"""One clock for a recording's tracks: each track's RTP time anchored to arrival time."""

from __future__ import annotations

import math

NTP_UNIT = 1 << 32  # aiortc's NTP times are 32.32 fixed point seconds
WINDOW_S = 10.0


class TrackClock:
    """Maps one track's RTP timestamps onto wall-clock seconds.

    RTP timestamps keep the sender's exact frame spacing, but every track starts at
    its own random origin. A frame's arrival time minus its RTP time is the track's
    offset plus that frame's network, jitter and transmission delay; the smallest
    value seen over the last 10-20 s (the least-delayed frame's) is the estimate.
    Audio and video cross the same network path, so their minimal delays match and
    both tracks land on one clock within a few milliseconds. The window lets the
    estimate follow a sender whose clocks drift (a sound card's sample clock).

    The offset applied moves towards the estimate by at most ``slew`` seconds per
    second of media (5%), so a better estimate never squeezes or stretches frames
    visibly. If RTP time and arrival time part by more than ``resync_s`` (a sender
    that restarted its clock, or stopped it while paused), the track re-anchors at
    once: the file then shows the pause as it was lived, as a gap.
    """

    def __init__(self, clock_rate: int, resync_s: float = 2.0, slew: float = 0.05) -> None:
        self.clock_rate = clock_rate
        self._resync_s = resync_s
        self._slew = slew
        self._window_start: float | None = None
        self._window_min = math.inf
        self._previous_min = math.inf
        self._applied: float | None = None
        self._last_media_s: float | None = None
        self.resyncs = 0

    @property
    def estimate(self) -> float:
        return min(self._window_min, self._previous_min)

    def observe(self, rtp_timestamp: int, ntp_time: int) -> None:
        """Takes one frame's (RTP time, arrival time) into the offset estimate."""
        arrival_s = ntp_time / NTP_UNIT
        sample = arrival_s - rtp_timestamp / self.clock_rate
        estimate = self.estimate
        if math.isfinite(estimate) and abs(sample - estimate) > self._resync_s:
            self.resyncs += 1
            self._window_start = None
            self._previous_min = math.inf
            self._applied = None  # jump: no slewing across a resync
        if self._window_start is None or arrival_s - self._window_start >= WINDOW_S:
            self._previous_min = self._window_min if self._window_start is not None else math.inf
            self._window_min = math.inf
            self._window_start = arrival_s
        self._window_min = min(self._window_min, sample)

    def wall_s(self, rtp_timestamp: int) -> float:
        """The frame's time on the shared clock (call ``observe`` for it first)."""
        media_s = rtp_timestamp / self.clock_rate
        estimate = self.estimate
        if self._applied is None or self._last_media_s is None:
            self._applied = estimate
        else:
            step = self._slew * max(media_s - self._last_media_s, 0.0)
            self._applied += max(-step, min(step, estimate - self._applied))
        self._last_media_s = media_s
        return media_s + self._applied
