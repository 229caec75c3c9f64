"""A single-layer video track's server-made layers: the rungs of its room's ladder below
its own picture, each made (one decode of the track, a scale and an encode per rung) only
while a viewer takes it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import not_found
from ..limits.meter import RateMeter
from ..media.layers import BITRATE_WINDOW_S, PACKET_OVERHEAD
from .encoder import ENCODERS
from .output import RenditionOutput
from .rung import LADDER, Rung

if TYPE_CHECKING:
    from ..media.publisher import Publisher
    from .renditions import Renditions

# A made layer's cost before it has run: its encoder's constant bitrate, plus headers
# for a packet per frame at this rate and one per this many payload bytes.
FRAME_RATE = 30
PACKET_BYTES = 1100


def wire_bitrate(bitrate: float, frame_rate: float) -> float:
    """What ``bitrate`` of video costs on a viewer's link, headers included (bits/s)."""
    packets = frame_rate + bitrate / 8 / PACKET_BYTES
    return bitrate + packets * PACKET_OVERHEAD * 8


class MadeLayers:
    """The layers the gateway can make of ``track`` (a Publisher that sends one layer), for
    the layer selection (rooms/layer_selection.py) to put viewers on like a simulcast
    track's layers. Nothing runs until a viewer is switched to a rung: the rung's output
    (Renditions.acquire, the LADDER rendition) is made then and closes with its last viewer,
    and the shared decoder closes with the last rung."""

    def __init__(
        self,
        track: Publisher,
        rungs: tuple[Rung, ...],
        renditions: Renditions,
        room: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.track = track
        self._rungs = rungs
        self._renditions = renditions
        self._room = room
        self._bytes = RateMeter(lambda: float(track.bytes_in), clock, BITRATE_WINDOW_S)
        self._frames = RateMeter(lambda: float(track.frames_in), clock, BITRATE_WINDOW_S)

    def rungs(self) -> list[Rung]:
        """The rungs below the track's own picture (none before its first keyframe told
        its size, or for a codec the gateway cannot encode)."""
        size = self.track.resolution
        if size is None or self.track.closed or self.track.codec not in ENCODERS:
            return []
        return [rung for rung in self._rungs if rung.height < size[1]]

    def top_wire_bps(self) -> float:
        """What forwarding the track itself costs on a viewer's link, now (bits/s)."""
        bits = self._bytes.rate() * 8
        return wire_bitrate(bits, self._frames.rate()) if bits else 0.0

    def info(self) -> list[dict[str, Any]]:
        """Each rung as the selection and the stats see a layer."""
        size = self.track.resolution
        if size is None:
            return []
        live = {output.rung: output for output in self._renditions.made(self.track)}
        return [
            {
                "rid": rung.rid,
                "resolution": list(rung.size(*size)),
                "bitrate_bps": rung.bitrate,
                "wire_bps": int(wire_bitrate(rung.bitrate, FRAME_RATE)),
                "flowing": True,  # made on demand: always to be had
                "made": True,
                "live": rung in live,
                "subscribers": len(live[rung].forwarder.subscribers) if rung in live else 0,
            }
            for rung in self.rungs()
        ]

    def output(self, rid: str) -> RenditionOutput:
        """The made layer ``rid``, started if nobody takes it yet (the caller subscribes at
        once); raises unknown-layer, or too-many-renditions at the processing limit."""
        rung = next((r for r in self.rungs() if r.rid == rid), None)
        if rung is None:
            known = ", ".join(r.rid for r in self.rungs()) or "none"
            raise not_found(
                f"no layer {rid[:32]!r} is made of this track (made: {known})", "unknown-layer"
            )
        return self._renditions.acquire(self.track, LADDER, self.track.codec, self._room, rung)
