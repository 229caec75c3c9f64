"""One viewer's bandwidth estimate, from what its feedback says of the media sent to it.

The loss rule is Galène's (and GCC's loss controller's): below 2% loss the estimate grows,
above 10% it is cut by half the loss, and between it holds. Two refinements:
- with transport-cc, a standing queue (every packet of a window delayed by more than
  ``QUEUE_S`` beyond the least delay seen lately) that is not draining is congestion too,
  found before a bottleneck's buffer overflows into loss: the estimate becomes 85% of
  what got through (GCC's overuse response), and does not grow while a queue stands;
- after any cut the path takes a while to drain, so the next cut waits ``SETTLE_S``, and
  a loss cut never goes below what an overuse would keep;
- a REMB from the viewer caps it.
Pure logic over an injected clock: the session feeds it (media/viewer_link.py).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

LOW_LOSS, HIGH_LOSS = 0.02, 0.10
GROWTH_PER_S = 0.08  # ~8%/s while loss stays low
# A window of feedback is judged once it spans this long (transport-cc feedback comes
# every ~100 ms: one packet is too few to count loss on). Receiver reports are judged
# one by one: each covers the second or so since the one before.
WINDOW_S = 0.5
QUEUE_S = 0.040  # a standing queue this deep (every packet of a window) is overuse
BASE_DELAY_S = 10.0  # the least delay is looked for over this long
OVERUSE_BACKOFF = 0.85  # on overuse: this share of what got through
MIN_PACKETS = 10  # fewer received in a window: too few to judge
SETTLE_S = 1.0  # after a cut, the path is given this long to drain before the next
STALE_WINDOW_S = 2.0  # a window longer than this spans a silence: not judged
DRAINING_S = 0.005  # a queue shorter by this than the window before is draining


class BandwidthEstimate:
    """The estimate, in bits per second (``bps``), at least ``floor_bps``; it grows up to
    ``ceiling_bps`` (starting above it, it stays until congestion cuts it)."""

    def __init__(
        self,
        start_bps: float,
        floor_bps: float,
        ceiling_bps: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self.floor_bps = floor_bps
        self.ceiling_bps = ceiling_bps
        self._bps = min(max(start_bps, floor_bps), ceiling_bps)
        self.remb_bps: float | None = None
        now = clock()
        self._grown_at = now
        # The current transport-cc window.
        self._window_at = now
        self._received = 0
        self._lost = 0
        self._received_bytes = 0
        self._least_queue_s: float | None = None
        # (time, least delay of a window) over BASE_DELAY_S: the path's delay with no queue.
        self._delays: deque[tuple[float, float]] = deque()
        self.loss = 0.0  # of the last window or report judged
        self.received_bps = 0.0  # what got through in it
        self.queue_s = 0.0  # the standing queue of the last transport-cc window
        self.cuts = 0
        self.overuses = 0
        self._cut_at: float | None = None

    @property
    def bps(self) -> float:
        if self.remb_bps is not None:
            return max(self.floor_bps, min(self._bps, self.remb_bps))
        return self._bps

    def on_transport_feedback(
        self, received: int, lost: int, received_bytes: int, delays: list[tuple[float, int]]
    ) -> None:
        """One transport-cc feedback's counts (see SendLog.read)."""
        now = self._clock()
        self._received += received
        self._lost += lost
        self._received_bytes += received_bytes
        if delays:
            # One-way delay up to the viewer's clock offset: only its changes matter.
            least = min(arrival / 1e6 - sent for sent, arrival in delays)
            if self._least_queue_s is None or least < self._least_queue_s:
                self._least_queue_s = least
        elapsed = now - self._window_at
        if elapsed < WINDOW_S:
            return
        if elapsed > STALE_WINDOW_S:
            # Feedback resumed after a silence (video paused, a first window): a rate
            # averaged over it would be meaningless. Start afresh.
            self._window_at, self._received, self._lost, self._received_bytes = now, 0, 0, 0
            self._least_queue_s = None
            return
        received_total, lost_total = self._received, max(self._lost, 0)
        got_bytes, least_delay = self._received_bytes, self._least_queue_s
        self._window_at, self._received, self._lost, self._received_bytes = now, 0, 0, 0
        self._least_queue_s = None
        if received_total + lost_total < MIN_PACKETS:
            return
        self.received_bps = got_bytes * 8 / elapsed
        overuse = False
        if least_delay is not None:
            self._delays.append((now, least_delay))
            while self._delays and now - self._delays[0][0] > BASE_DELAY_S:
                self._delays.popleft()
            base = min(delay for _, delay in self._delays)
            previous, self.queue_s = self.queue_s, least_delay - base
            draining = self.queue_s < previous - DRAINING_S
            overuse = self.queue_s > QUEUE_S and not draining
        loss = lost_total / (received_total + lost_total)
        self._judge(loss, now, overuse, queued=self.queue_s > QUEUE_S)

    def on_receiver_report(self, fraction_lost: float, received_bps: float) -> None:
        """A receiver report's fraction lost (0-1) of what was sent since the last one, and
        the rate that got through (the rate sent then, less the loss)."""
        self.received_bps = received_bps
        self._judge(fraction_lost, self._clock(), False)

    def probed(self, bps: float) -> None:
        """A probe showed the link carries ``bps`` (padding up to it, no congestion): the
        estimate is at least that, whatever its growth had reached."""
        self._set(max(self._bps, bps))
        self._grown_at = self._clock()

    def on_remb(self, bps: float) -> None:
        self.remb_bps = bps

    def _judge(self, loss: float, now: float, overuse: bool, queued: bool = False) -> None:
        self.loss = loss
        elapsed = max(0.0, now - self._grown_at)
        self._grown_at = now
        # One cut per SETTLE_S, whatever says so: the congestion a cut answers goes on
        # showing (queue, loss) until it drains, and cutting again for it would undershoot.
        settled = self._cut_at is None or now - self._cut_at >= SETTLE_S
        if overuse and self.received_bps:
            if settled:
                self.overuses += 1
                self._cut_at = now
                self._set(min(self._bps, OVERUSE_BACKOFF * self.received_bps))
        elif loss > HIGH_LOSS:
            if settled:
                self.cuts += 1
                self._cut_at = now
                # Never below the share of what got through that an overuse keeps.
                floor = OVERUSE_BACKOFF * self.received_bps
                self._set(min(self._bps, max(self._bps * (1 - loss / 2), floor)))
        elif loss < LOW_LOSS and not queued:
            grown = self._bps
            if grown < self.ceiling_bps:
                grown = min(grown * (1 + GROWTH_PER_S) ** min(elapsed, 2.0), self.ceiling_bps)
            # What got through with neither loss nor a queue, the link carries: an estimate
            # cut while the path drained the sender's own backlog (retransmissions, a new
            # layer's keyframes) is below it, and would pause a viewer the link now serves.
            self._set(max(grown, self.received_bps))

    def _set(self, bps: float) -> None:
        # The ceiling bounds growth only. Lowered (the layers' rates were low while the
        # sender's encoder ramped up), it must not cut an estimate no congestion cut: a
        # viewer on a clean path would be stepped down for nothing, and climb back at 8%/s.
        self._bps = max(bps, self.floor_bps)
