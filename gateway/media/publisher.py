"""The ingest side of one published track: encoded frames in, shared packets out."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from aiortc.clock import current_ntp_time

from . import tap
from .feed import FEED_COUNTERS, Feed
from .forwarder import Forwarder
from .frames import EncodedFrame, OutgoingFrame, video_size
from .keyframes import KeyframeRequester
from .subscriber import Subscriber

logger = logging.getLogger(__name__)

# RTP clock rates (RFC 7587 for Opus, RFC 3551 for the rest): a successor's timeline
# continues from the predecessor's by the wall-clock time between them.
AUDIO_CLOCK_RATES = {"opus": 48000, "pcmu": 8000, "pcma": 8000, "g722": 8000}
VIDEO_CLOCK_RATE = 90000


class LayerMaker(Protocol):
    """A track's server-made layers, as the track itself sees them (processing/ladder.py's
    MadeLayers: the packet path knows nothing of processing)."""

    def info(self) -> list[dict[str, Any]]: ...


class Publisher:
    """Receives one track's encoded frames from its Feed and forwards them.

    Each frame is packetized once (RTP payloads shared by all subscribers, its
    timestamp made relative to the first frame): no decode, no encode, no
    per-viewer copy or packetization.

    The track outlives the feed feeding it: when its publisher's connection is gone
    (``detach``), a returning publisher's receiver can take it over (``rebind``), and
    every viewer, rendition and sink of it carries on with the same track, its timeline
    continued by the wall-clock time in between.
    """

    def __init__(
        self,
        kind: str,
        codec: str,
        feed: Feed,
        keyframe_interval_s: float,
        source: str = "",
        owner: str = "",
    ) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.kind = kind
        self.codec = codec
        self.source = source or ("camera" if kind == "video" else "microphone")
        self.owner = owner  # id of the session that publishes it
        self.muted = False
        self._packetize = tap.packetizer(codec)
        self.forwarder = Forwarder()
        self.keyframes = KeyframeRequester(keyframe_interval_s, self._send_pli)
        self._clock_rate = (
            VIDEO_CLOCK_RATE if kind == "video" else AUDIO_CLOCK_RATES.get(codec.lower(), 48000)
        )
        self._ssrc: int | None = None
        self._first_ts: int | None = None
        self._last_ts = 0
        self._ts_cycles = 0
        # The timeline: each receiver's timestamps, relative to its first, start here.
        self._timeline_base = 0
        self._last_pts = 0
        self.paused_at: float | None = None  # detached, waiting for a successor
        self.takeovers = 0
        self._retired = dict.fromkeys(FEED_COUNTERS, 0)
        self._on_close: list[Callable[[], None]] = []
        self.started_at = time.monotonic()
        self.frames_in = 0
        self.bytes_in = 0
        self.keyframes_in = 0
        self.gaps = 0
        self.resolution: tuple[int, int] | None = None
        self.closed = False
        # Windowed ingest numbers (bitrate, fps, loss, jitter, feedback), set by media/ingest.py.
        self.ingest_stats: Callable[[], dict[str, Any]] | None = None
        # A simulcast track: each layer as a track of its own (by rid), for viewers that
        # pick one, and what the layers are now (rid, SSRC, resolution, flowing).
        self.layers: dict[str, Publisher] = {}
        self.layer_info: Callable[[], list[dict[str, Any]]] | None = None
        # A layer track: the simulcast track it is a layer of, and its rid.
        self.layer_of: Publisher | None = None
        self.rid: str | None = None
        # A simulcast track: re-decide now which layers its publisher sends (a viewer asked
        # for one that may be stopped; media/layer_demand.py).
        self.layers_wanted: Callable[[], None] | None = None
        # A single-layer video track in a room with a ladder (processing.ladders): the
        # lower layers the gateway can make of it.
        self.made_layers: LayerMaker | None = None
        self._feed: Feed | None = None
        self._bind(feed)

    def _bind(self, feed: Feed) -> None:
        self._feed = feed
        # Frames of a feed this track has left (a late batch) are not taken.
        feed.start(lambda frames: self._from(feed, frames))

    def _from(self, feed: Feed, frames: list[EncodedFrame]) -> None:
        if feed is self._feed:
            self.on_frames(frames)

    def detach(self) -> None:
        """The publisher's connection is gone but the track is kept for a successor:
        viewers keep their subscriptions and wait (nothing is sent meanwhile)."""
        if self.closed or self._feed is None:
            return
        for key, value in self._feed_counters().items():
            self._retired[key] += value
        self._feed = None
        self._ssrc = None
        self.ingest_stats = None
        self._end_layers()  # a successor brings layers of its own
        self.keyframes.close()
        self.paused_at = time.monotonic()

    def rebind(self, feed: Feed, owner: str) -> None:
        """A returning publisher's (or a new relay's) feed feeds this track from now on.
        Its first frame continues the timeline; viewers resume at its first keyframe."""
        if self.closed:
            raise RuntimeError("a closed track cannot be taken over")
        if self._feed is not None:
            self.detach()
        now = time.monotonic()
        paused_s = now - (self.paused_at if self.paused_at is not None else now)
        self._timeline_base = self._last_pts + max(1, round(paused_s * self._clock_rate))
        self._first_ts = None
        self._ts_cycles = 0
        self.paused_at = None
        self.owner = owner
        self.takeovers += 1
        self._bind(feed)
        # Deltas of the new encoder mean nothing after the old one's frames.
        self.forwarder.gap()
        if self.kind == "video":
            self.keyframes.request()  # sent once the new SSRC is known

    @property
    def paused(self) -> bool:
        return self.paused_at is not None

    def on_frames(self, frames: list[EncodedFrame]) -> None:
        for frame in frames:
            self._deliver(frame)

    def _deliver(self, frame: EncodedFrame) -> None:
        if self.closed or self._feed is None:
            return
        if self._ssrc is None:
            self._ssrc = frame.ssrc
            self.keyframes.retry()
        pts = self._pts(frame.timestamp)
        outgoing = OutgoingFrame(
            data=frame.data,
            payloads=self._packetize(frame.data),
            timestamp=pts,
            keyframe=frame.keyframe,
            size=len(frame.data),
            ntp_time=current_ntp_time(),
            # Without sender reports: the track's own timeline (its made layers' too).
            captured=frame.captured if frame.captured is not None else pts / self._clock_rate,
            temporal_id=frame.temporal_id,
        )
        self.frames_in += 1
        self.bytes_in += len(frame.data)
        if self.kind == "video":
            if frame.discontinuity:
                self.gaps += 1
                self.forwarder.gap()
                self.keyframes.request()
            if frame.keyframe:
                self.keyframes_in += 1
                self.keyframes.keyframe_arrived()
                self.resolution = video_size(self.codec, frame.data) or self.resolution
        if not self.muted:
            self.forwarder.forward(outgoing)

    def _pts(self, timestamp: int) -> int:
        """RTP timestamp unwrapped past 2**32 and made relative to the first frame (of
        the first receiver: a successor's continue the timeline)."""
        if self._first_ts is None:
            self._first_ts = timestamp
            self._last_ts = timestamp
        elif timestamp < self._last_ts and self._last_ts - timestamp > 0x80000000:
            self._ts_cycles += 1
            self._last_ts = timestamp
        elif timestamp > self._last_ts and timestamp - self._last_ts < 0x80000000:
            self._last_ts = timestamp
        pts = self._timeline_base + (self._ts_cycles << 32) + timestamp - self._first_ts
        self._last_pts = max(self._last_pts, pts)
        return pts

    @property
    def clock_rate(self) -> int:
        """The RTP clock of the track's timestamps (Hz)."""
        return self._clock_rate

    def subscribe(self, max_backlog: int) -> Subscriber:
        return self.forwarder.subscribe(self.kind, max_backlog, self.keyframes.request, self)

    def _send_pli(self) -> bool:
        if self._ssrc is None or self._feed is None or self.closed:
            return False
        self._feed.request_keyframe(self._ssrc)
        return True

    def on_close(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` when the track ends (renditions of it stop with it)."""
        self._on_close.append(callback)

    def remove_on_close(self, callback: Callable[[], None]) -> None:
        """Forget ``callback`` (its owner ended before the track)."""
        if callback in self._on_close:
            self._on_close.remove(callback)

    def _end_layers(self) -> None:
        for layer in self.layers.values():
            layer.close()
        self.layers = {}
        self.layer_info = None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._end_layers()
        self.keyframes.close()
        for subscriber in self.forwarder.subscribers:
            subscriber.stop()
        for callback in self._on_close:
            try:
                callback()
            except Exception:
                logger.exception("track close callback failed")

    def set_muted(self, muted: bool) -> None:
        """Pause or resume forwarding; nothing is torn down. Viewers resume at a keyframe."""
        if muted == self.muted:
            return
        self.muted = muted
        if not muted and self.kind == "video":
            self.forwarder.gap()
            self.keyframes.request()

    def _feed_counters(self) -> dict[str, int]:
        """The current feed's share of the FEED_COUNTERS (0 while detached)."""
        if self._feed is None:
            return dict.fromkeys(FEED_COUNTERS, 0)
        return self._feed.counters()

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "codec": self.codec,
            "source": self.source,
            "muted": self.muted,
        }
        if self.layer_info is not None:
            described["layers"] = [
                {"rid": layer["rid"], "resolution": layer["resolution"]}
                for layer in self.layer_info()
            ]
        return described

    def stats(self) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self.started_at, 1e-6)
        subscribers = self.forwarder.subscribers
        sent = self.forwarder.totals()
        current = self._feed_counters()
        received = {key: self._retired[key] + current.get(key, 0) for key in FEED_COUNTERS}
        return {
            "id": self.id,
            "kind": self.kind,
            "codec": self.codec,
            "frames_received": self.frames_in,
            "bytes_received": self.bytes_in,
            "keyframes_received": self.keyframes_in,
            "bitrate_in_bps": int(self.bytes_in * 8 / elapsed),
            "resolution": list(self.resolution) if self.resolution else None,
            "frames_forwarded": sent["frames"],
            "bytes_forwarded": sent["bytes"],
            "frames_decoded": received["frames_decoded"],
            "drops": sent["drops"],
            "skipped_until_keyframe": sent["skipped"],
            "upstream_gaps": self.gaps,
            "packets_late": received["packets_late"],
            # Loss repair: NACKs to the publisher and what it resent (RTX), frames given up
            # on (a packet never came: viewers wait for the keyframe a PLI asks for), and
            # the viewers' NACKs answered from their history.
            "nacks_sent": received["nacks_sent"],
            "nack_retries": received["nack_retries"],
            "retransmissions_received": received["retransmissions_received"],
            "frames_unrepaired": received["frames_unrepaired"],
            "nacks_received": sent["nacks"],
            "retransmissions_sent": sent["retransmissions"],
            "keyframe_requests_upstream": self.keyframes.sent,
            "keyframe_requests_coalesced": self.keyframes.coalesced,
            "tap_errors": received["tap_errors"],
            "forward_errors": self.forwarder.errors,
            "subscribers": len(subscribers),
            "paused": self.paused,
            "takeovers": self.takeovers,
            "ingest": self.ingest_stats() if self.ingest_stats is not None else None,
            "layers": self._layer_stats(),
            "made_layers": self.made_layers.info() if self.made_layers is not None else None,
        }

    def _layer_stats(self) -> list[dict[str, Any]] | None:
        if self.layer_info is None:
            return None
        out = []
        for layer in self.layer_info():
            track = self.layers.get(str(layer["rid"]))
            out.append({**layer, "subscribers": len(track.forwarder.subscribers) if track else 0})
        return out
