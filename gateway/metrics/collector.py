"""What /metrics exposes, read from the gateway's own counters when scraped: nothing is
counted per packet for it (the media path's counters already exist)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ..rooms.registry import Registry

# (metric name without _total, TrackTotals key, help)
MEDIA_COUNTERS = (
    ("gateway_frames_received", "frames_received", "Encoded frames received from publishers."),
    ("gateway_received_bytes", "bytes_received", "Encoded media bytes received from publishers."),
    ("gateway_keyframes_received", "keyframes_received", "Keyframes received from publishers."),
    ("gateway_frames_forwarded", "frames_forwarded", "Frames sent to viewers (each viewer's)."),
    ("gateway_forwarded_bytes", "bytes_forwarded", "Media bytes sent to viewers."),
    ("gateway_nacks_sent", "nacks_sent", "NACKs sent to publishers for lost packets."),
    (
        "gateway_retransmissions_received",
        "retransmissions_received",
        "Retransmitted packets (RTX) received from publishers.",
    ),
    (
        "gateway_frames_unrepaired",
        "frames_unrepaired",
        "Frames given up on: a packet never arrived.",
    ),
    ("gateway_nacks_received", "nacks_received", "Packets viewers asked again (NACK)."),
    ("gateway_retransmissions_sent", "retransmissions_sent", "Packets resent to viewers."),
    (
        "gateway_keyframe_requests_upstream",
        "keyframe_requests_upstream",
        "Keyframe requests (PLI) sent to publishers.",
    ),
)
DROPS = (("backlog", "drops"), ("until_keyframe", "skipped_until_keyframe"))


class GatewayCollector(Collector):
    """One gateway process's metrics, read from its registry at each scrape (``registry``
    gives it: the app makes its Registry only when it starts)."""

    def __init__(self, registry: Callable[[], Registry]) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        registry = self._registry()
        rooms = GaugeMetricFamily("gateway_rooms", "Rooms open.")
        rooms.add_metric([], len(registry.rooms))
        yield rooms
        sessions = GaugeMetricFamily("gateway_sessions", "Sessions open, by role.", labels=["role"])
        roles: dict[str, int] = {}
        for session in registry.sessions.values():
            roles[session.role] = roles.get(session.role, 0) + 1
        for role, count in sorted(roles.items()):
            sessions.add_metric([role], count)
        yield sessions
        totals = registry.track_totals.totals()
        tracks = GaugeMetricFamily(
            "gateway_tracks", "Published tracks live, by kind and codec.", labels=["kind", "codec"]
        )
        for (kind, codec), count in sorted(totals["tracks"].items()):
            tracks.add_metric([kind, codec], count)
        yield tracks
        for name, key, text in MEDIA_COUNTERS:
            counter = CounterMetricFamily(name, text)
            counter.add_metric([], totals[key])
            yield counter
        drops = CounterMetricFamily(
            "gateway_viewer_frames_dropped",
            "Frames not sent to a viewer, by reason: its send backlog was full, or it waited"
            " for a keyframe.",
            labels=["reason"],
        )
        for reason, key in DROPS:
            drops.add_metric([reason], totals[key])
        yield drops
        ended = CounterMetricFamily("gateway_tracks_ended", "Published tracks that ended.")
        ended.add_metric([], registry.track_totals.tracks_ended)
        yield ended
