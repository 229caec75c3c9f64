"""Media counters of every track a gateway has had: the live tracks' own, plus what the
tracks that ended had counted, so a total never goes back (Prometheus counters)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .publisher import Publisher

# Publisher.stats() keys summed into the totals.
COUNTERS = (
    "frames_received",
    "bytes_received",
    "keyframes_received",
    "frames_forwarded",
    "bytes_forwarded",
    "drops",
    "skipped_until_keyframe",
    "nacks_sent",
    "retransmissions_received",
    "frames_unrepaired",
    "nacks_received",
    "retransmissions_sent",
    "keyframe_requests_upstream",
)


class TrackTotals:
    """Owned by the Registry: every Publisher its sessions make is ``add``ed (simulcast
    layer tracks too) and counted until it closes; its last counts then stay in ``ended``."""

    def __init__(self) -> None:
        self._live: dict[int, Publisher] = {}
        self.ended = dict.fromkeys(COUNTERS, 0)
        self.tracks_ended = 0

    def add(self, track: Publisher) -> None:
        if id(track) in self._live or track.closed:
            return
        self._live[id(track)] = track
        track.on_close(lambda: self._retire(track))

    def _retire(self, track: Publisher) -> None:
        if self._live.pop(id(track), None) is None:
            return
        counts = track.stats()
        for key in COUNTERS:
            self.ended[key] += int(counts[key])
        self.tracks_ended += 1

    @property
    def live(self) -> Iterable[Publisher]:
        return list(self._live.values())

    def totals(self) -> dict[str, Any]:
        """Each counter over every track so far, and the live tracks by (kind, codec)."""
        out: dict[str, Any] = dict(self.ended)
        tracks: dict[tuple[str, str], int] = {}
        for track in self.live:
            counts = track.stats()
            for key in COUNTERS:
                out[key] += int(counts[key])
            if track.layer_of is None:  # a simulcast layer is part of its track
                tracks[(track.kind, track.codec)] = tracks.get((track.kind, track.codec), 0) + 1
        out["tracks"] = tracks
        return out
