"""Which layers of a simulcast track anyone takes, so its publisher can stop sending the rest
(LiveKit's dynacast, Jitsi's sender constraints): checked every second, told on change."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .publisher import Publisher

CHECK_S = 1.0
# A layer is stopped only after this many checks in a row found nobody taking it: a viewer
# switching layers back and forth must not make the publisher's encoder flap.
IDLE_CHECKS = 2


class LayerDemand:
    """Decides each layer of ``track`` active or not, and calls ``tell(active)`` with the
    rid -> bool map whenever that changes (at once for a layer someone now needs).

    A layer is needed while its own track has a viewer or sink, and the track's largest
    layer is needed while the track itself has one (the track follows the best layer that
    flows: stopping the largest would lower everyone's picture). Until every layer's size
    is known, all are needed. The smallest layer is never stopped: a publisher that sends
    nothing at all would look lost (ingest.publisher_timeout_s), and a first viewer gets a
    picture at once.
    """

    def __init__(
        self,
        track: Publisher,
        size: Callable[[str], float | None],
        tell: Callable[[dict[str, bool]], None],
    ) -> None:
        self._track = track
        self._size = size  # a layer's picture area (or bytes per frame), None if unknown
        self._tell = tell
        self._active = dict.fromkeys(track.layers, True)
        self._idle = dict.fromkeys(track.layers, 0)
        self._timer: asyncio.TimerHandle | None = None
        self.changes = 0

    @property
    def active(self) -> dict[str, bool]:
        return dict(self._active)

    def start(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(CHECK_S, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self._track.closed:
            return
        self.check()
        self.start()

    def needed(self) -> set[str]:
        layers = self._track.layers
        sizes = {rid: self._size(rid) for rid in layers}
        if any(size is None for size in sizes.values()):
            return set(layers)
        wanted = {rid for rid, layer in layers.items() if _consumers(layer)}
        if _consumers(self._track):
            wanted.add(max(sizes, key=lambda rid: sizes[rid] or 0.0))
        if layers:
            wanted.add(min(sizes, key=lambda rid: sizes[rid] or 0.0))
        return wanted

    def check(self) -> None:
        """Re-decide now (also called when a viewer asks for a layer)."""
        wanted = self.needed()
        active = dict(self._active)
        for rid in active:
            if rid in wanted:
                self._idle[rid] = 0
                active[rid] = True
            else:
                self._idle[rid] += 1
                if self._idle[rid] >= IDLE_CHECKS:
                    active[rid] = False
        if active != self._active:
            self._active = active
            self.changes += 1
            self._tell(dict(active))

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _consumers(track: Publisher) -> int:
    return len(track.forwarder.subscribers) + len(track.forwarder.sinks)
