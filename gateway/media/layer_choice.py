"""Which simulcast layer one viewer gets, from its bandwidth estimate: with hysteresis, a
hold before each step up that grows when a step up fails, a probe of the link before a
step up where the viewer's feedback can judge one, and a pause below the lowest."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

# Step up only when the next layer's bitrate fits in this share of the budget; step down
# as soon as the current one's exceeds the budget. The gap is the hysteresis.
UP_SHARE = 7 / 8
HOLD_S = 2.0  # after any change, this long before a step up
# After any change, this long before a step down: a switch waits for the new layer's
# keyframe, and the queue the old layer left on the path takes a while to drain; the
# estimate falls meanwhile, for a congestion already dealt with.
SETTLE_S = 2.0
# When no layer fits, the smallest is still sent while it needs no more than this many
# times the budget: pausing video is the last resort, for a link that carries almost
# nothing.
PAUSE_MARGIN = 4 / 3
# ...and only once even that has lasted this long: right after a step down the path still
# drains what the old layer left (its queue, the new layer's keyframe), and the estimate
# dips below the new layer for a second or two (measured: bench/results/simulcast.md).
PAUSE_AFTER_S = 3.0
MAX_HOLD_S = 32.0
# A step up may be probed for while the next layer needs up to this many times the budget:
# the estimate grows only 8%/s (2x in 9 s), a probe answers in a second.
PROBE_REACH = 2.0
# A step down this soon after a step up means the step up failed (the estimate had grown
# past what the link carries: nothing but trying tells, see docs/architecture.md): the
# hold before the next one doubles. This long without a failure resets it.
FAILED_WITHIN_S = 10.0
STABLE_S = 60.0  # longer than MAX_HOLD_S, or the longest hold would never be reached


class LayerChoice:
    """A viewer's place on a ladder of layers (``rates``: their bitrates, smallest first,
    up to the largest the viewer may have): ``level`` is its index, or None while paused.

    A new viewer starts at the top of its ladder (as a viewer with no estimate did before:
    the first report of loss brings it down). It steps one layer up at a time, never more
    often than the hold allows, and down to the largest layer that fits (once the last
    change settled); when not even the smallest nearly fits, video pauses (``paused``).

    With ``probing``, a step up that is due is not made at once: ``probe`` names the level
    wanted (when the hold has passed and the level needs no more than PROBE_REACH times
    the budget, not only 7/8 of it), the owner pads the link up to that level's rate, and
    ``probed`` says whether the link carried it: the step is made (the owner raises the
    estimate to what the probe showed), or counted as failed (the hold doubles) without the
    viewer ever seeing the congestion a failed step up costs.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, probing: bool = False) -> None:
        self._clock = clock
        self.probing = probing
        self.probe: int | None = None  # the level a probe is asked for (or runs for)
        self.probes = 0
        self.level: int | None = None
        self.started = False
        self.hold_s = HOLD_S
        self._changed_at = clock()
        self._stepped_up_at: float | None = None
        self._short_since: float | None = None  # since when not even the smallest fits
        self.switches = 0
        self.pauses = 0
        self.failed_steps = 0

    @property
    def paused(self) -> bool:
        return self.started and self.level is None

    def place(self, level: int) -> None:
        """The ladder changed under the viewer (a layer started or stopped flowing): it is
        now at ``level`` of the new one, by no choice of its own (not a switch)."""
        if self.started and self.level is not None:
            self.level = level

    def choose(self, rates: Sequence[float], budget_bps: float) -> int | None:
        """The level for the ladder ``rates`` (a rate of 0: unknown, taken to fit)."""
        if not rates:
            return self.level
        now = self._clock()
        if rates[0] <= PAUSE_MARGIN * budget_bps:
            self._short_since = None
        elif self._short_since is None:
            self._short_since = now
        top = len(rates) - 1
        if not self.started:
            self.started = True
            self.level = top
            self._changed_at = now
            return self.level
        if now - self._changed_at >= STABLE_S:
            self.hold_s = HOLD_S
        current = self.level
        if current is not None and current > top:  # the ladder got shorter (a lower cap)
            self._set(top, now, capped=True)
            return self.level
        fitting = [i for i, rate in enumerate(rates) if rate <= budget_bps]
        settled = now - self._changed_at >= SETTLE_S
        if self.probe is not None and (self.probe > top or current is None):
            self.probe = None  # the ladder changed under it: judged again
        if current is not None and rates[current] > budget_bps:
            self.probe = None  # not even the current one fits: no step up to try
            if not settled:
                return self.level
            if fitting:
                self._set(max(fitting), now)
            else:
                short_for = 0.0 if self._short_since is None else now - self._short_since
                self._set(None if short_for >= PAUSE_AFTER_S else 0, now)
        elif (current is None or current < top) and now - self._changed_at >= self.hold_s:
            step = 0 if current is None else current + 1
            if self.probing and current is not None:
                # A probe finds out what the estimate would take seconds of growth to
                # believe: tried for a layer up to PROBE_REACH times the budget.
                if self.probe is None and rates[step] <= PROBE_REACH * budget_bps:
                    self.probe = step
                    self.probes += 1
            elif rates[step] <= UP_SHARE * budget_bps:
                self._set(step, now)
        return self.level

    def probed(self, carried: bool) -> None:
        """The probe for ``probe`` is over: the link carried that level's rate (step up to
        it), or did not (a failed step up: the hold doubles, the viewer stays)."""
        level, self.probe = self.probe, None
        if level is None:
            return
        now = self._clock()
        if carried:
            self._set(level, now)
        else:
            self.failed_steps += 1
            self.hold_s = min(self.hold_s * 2, MAX_HOLD_S)
            self._changed_at = now

    def _set(self, level: int | None, now: float, capped: bool = False) -> None:
        previous = self.level
        if level == previous:
            return
        down = previous is not None and (level is None or level < previous)
        if down:
            up_at = self._stepped_up_at
            # Down for the viewer's own lower cap: no sign the step up failed.
            if up_at is not None and now - up_at < FAILED_WITHIN_S and not capped:
                self.failed_steps += 1
                self.hold_s = min(self.hold_s * 2, MAX_HOLD_S)
            self._stepped_up_at = None
        else:
            self._stepped_up_at = now
        if level is None:
            self.pauses += 1
        elif previous is not None:
            self.switches += 1
        self.level = level
        self._changed_at = now
