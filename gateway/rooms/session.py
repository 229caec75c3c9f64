"""One remote endpoint's session: its peer connection's lifetime (connect, liveness, close),
its signaling outside media, and its media side (SessionMedia) answering its offers."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiortc import RTCDataChannel, RTCPeerConnection
from aiortc.sdp import SessionDescription

from ..auth.principal import OPEN, Principal
from ..config import Config
from ..errors import GatewayError, bad_request
from ..limits.buckets import RateLimit
from ..media import tap
from ..media.liveness import Liveness
from ..media.publisher import Publisher
from ..media.sender_slot import SenderSlot
from ..media.subscriber import Subscriber
from ..media.track_totals import TrackTotals
from ..processing.renditions import Renditions
from ..signaling import ice
from .negotiation import Negotiation
from .session_media import SessionMedia

if TYPE_CHECKING:
    from .room import Room

logger = logging.getLogger(__name__)

PUBLISHER = "publisher"
SUBSCRIBER = "subscriber"
PARTICIPANT = "participant"

HELD_MESSAGES = 200
"""Messages (chat, p2p signals) kept for a participant whose socket is down."""


class Session:
    """A peer connection plus what flows over it; ``close()`` releases everything.

    What it publishes and receives, offer by offer, is its ``media`` (SessionMedia); this
    owns when it lives: the connect timeout, the publisher-lost watchdog, the socket's
    grace period, ICE candidates, messages outside media, and the close.
    """

    def __init__(
        self,
        room: Room,
        role: str,
        config: Config,
        transport: str,
        name: str = "",
        renditions: Renditions | None = None,
        owner: Principal = OPEN,
        totals: TrackTotals | None = None,
    ) -> None:
        # The resource id is a capability (WHIP/WHEP Location, the socket's own messages):
        # only the session's creator learns it. Everyone else sees the public id.
        self.id = uuid.uuid4().hex
        self.public_id = uuid.uuid4().hex[:16]
        self.owner = owner
        self.room = room
        self.role = role
        self.transport = transport  # "whip", "whep" or "ws": who signals for it
        self.name = name
        self._config = config
        self.pc = RTCPeerConnection(ice.rtc_configuration(config.ice))
        tap.accept_rsa_dtls_peers(self.pc)  # GStreamer and other RSA-certificate peers
        self.media = SessionMedia(self.pc, config, room.name, self.public_id, renditions, totals)
        self.created_at = time.monotonic()
        self.connected_at: float | None = None
        self.closed = False
        self.close_reason: str | None = None
        self._remote_candidates_ended = False
        self.candidates_received = 0
        self.feeds_relay = False  # a viewer that is another cluster node's relay
        self._on_close: list[Callable[[Session], Any]] = []
        # Set by the room for its stream publisher: asked at close whether the room keeps
        # the session's tracks for a returning publisher (then they are only detached).
        self.hold_tracks: Callable[[Session], list[Publisher]] | None = None
        # How to reach the remote end outside media: its signaling socket, and its
        # "chat" data channel when it opened one (preferred for chat).
        self.notify: Callable[[dict[str, Any]], None] | None = None
        self.data_channel: RTCDataChannel | None = None
        self.on_data: Callable[[Session, str], None] | None = None
        self.chat_limit: RateLimit | None = None
        # Lets the same client take the session back on a new socket (see detach()).
        self.resume_token = secrets.token_urlsafe(18)
        self.held: deque[dict[str, Any]] = deque(maxlen=HELD_MESSAGES)
        self.held_dropped = 0
        self._grace_timer: asyncio.TimerHandle | None = None
        self._connect_timer: asyncio.TimerHandle | None = None
        self._close_task: asyncio.Task[None] | None = None
        self._liveness: Liveness | None = None  # started once connected
        self.media.on_layers = self._tell_layers
        self.pc.on("connectionstatechange", self._on_connection_state)
        self.pc.on("datachannel", self._on_datachannel)

    def on_close(self, callback: Callable[[Session], Any]) -> None:
        self._on_close.append(callback)

    @property
    def published(self) -> dict[str, Publisher]:
        """mid -> track this session publishes."""
        return self.media.published

    @property
    def slots(self) -> dict[str, SenderSlot]:
        """mid -> what this session receives."""
        return self.media.slots

    @property
    def publishers(self) -> list[Publisher]:
        return self.media.publishers

    @property
    def subscribers(self) -> list[Subscriber]:
        return self.media.subscribers

    @property
    def egress_bytes(self) -> int:
        return self.media.egress_bytes

    @property
    def remote_ufrag(self) -> str | None:
        return self.media.remote_ufrag

    # -- offers: answered by the media side, within this session's lifetime -----------------

    def plan_publish(self, offer: str) -> tuple[SessionDescription, dict[str, str]]:
        return self.media.plan_publish(offer)

    async def accept_publish(
        self, offer: str, plan: tuple[SessionDescription, dict[str, str]] | None = None
    ) -> str:
        """Publish every track the offer sends (WHIP); returns the SDP answer."""
        self._check_open()
        answer = await self.media.accept_publish(offer, plan)
        self._negotiated()
        return answer

    async def accept_subscribe(
        self,
        offer: str,
        publishers: list[Publisher],
        pipeline: str | None = None,
        layer: str | None = None,
    ) -> str:
        """Receive the room's tracks (WHEP); returns the SDP answer."""
        self._check_open()
        answer = await self.media.accept_subscribe(offer, publishers, pipeline, layer)
        self._negotiated()
        return answer

    async def negotiate(
        self,
        offer: str,
        publish: Mapping[str, str],
        subscribe: Mapping[str, Publisher],
        description: SessionDescription | None = None,
        pipelines: Mapping[str, str] = {},
    ) -> Negotiation:
        """Answer any offer, first or renegotiation (see SessionMedia.negotiate)."""
        self._check_open()
        result = await self.media.negotiate(offer, publish, subscribe, description, pipelines)
        self._negotiated()
        return result

    def switch_pipeline(self, pipeline: str | None, mid: str | None = None) -> list[str]:
        """Receive through ``pipeline`` without renegotiating (SessionMedia.switch_pipeline)."""
        self._check_open()
        return self.media.switch_pipeline(pipeline, mid)

    def switch_layer(
        self,
        layer: str | None,
        mid: str | None = None,
        max_width: int | None = None,
        max_height: int | None = None,
        max_fps: float | None = None,
    ) -> list[str]:
        """Receive another simulcast layer (SessionMedia.switch_layer)."""
        self._check_open()
        return self.media.switch_layer(layer, mid, max_width, max_height, max_fps)

    def unpublish(self, publisher: Publisher) -> None:
        """Stop forwarding one of this session's tracks (its m-line stays until renegotiated)."""
        publisher.close()

    def _check_open(self) -> None:
        if self.closed:
            raise GatewayError(410, "session-closed", "the session has ended")

    def _negotiated(self) -> None:
        """An answer was made: ICE must connect within ice.connect_timeout_s."""
        if self._connect_timer is None and self.connected_at is None and not self.closed:
            self._connect_timer = asyncio.get_running_loop().call_later(
                self._config.ice.connect_timeout_s, self._connect_timed_out
            )

    # -- messages outside media --------------------------------------------------------------

    def deliver(self, message: dict[str, Any]) -> None:
        channel = self.data_channel
        if channel is not None and channel.readyState == "open":
            channel.send(json.dumps(message))
        elif self.notify is not None:
            self.notify(message)
        elif self.detached:
            # Chat and p2p signals sent while the socket is down wait for the resume
            # (bounded: the oldest go first, counted).
            if len(self.held) == self.held.maxlen:
                self.held_dropped += 1
            self.held.append(message)

    def _tell_layers(self, message: dict[str, Any]) -> None:
        # Only a publisher with a signaling socket can be told (a WHIP client keeps
        # sending every layer); a detached one is not told.
        if self.notify is not None:
            self.notify({**message, "session": self.id})

    def flush_held(self) -> None:
        """Deliver what arrived while detached (after the client knows it has resumed)."""
        while self.held and self.notify is not None:
            self.notify(self.held.popleft())

    def detach(self, grace_s: float) -> None:
        """The signaling socket is gone: keep the session for ``grace_s`` seconds."""
        self.notify = None
        if grace_s <= 0:
            self.close_soon("socket-lost")
        elif self._grace_timer is None and not self.closed:
            self._grace_timer = asyncio.get_running_loop().call_later(
                grace_s, self.close_soon, "socket-lost"
            )

    def reattach(self, notify: Callable[[dict[str, Any]], None]) -> None:
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        self.notify = notify

    @property
    def detached(self) -> bool:
        return self._grace_timer is not None

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != "chat":
            return
        self.data_channel = channel

        @channel.on("message")
        def on_message(data: str | bytes) -> None:
            if self.on_data is not None and isinstance(data, str):
                self.on_data(self, data)

    # -- ICE -------------------------------------------------------------------------------

    async def add_candidate(
        self, candidate: str | None, sdp_mid: str | None = None, sdp_mline_index: int | None = None
    ) -> None:
        """A trickled remote candidate; None signals end-of-candidates."""
        if self.closed:
            raise GatewayError(410, "session-closed", "the session has ended")
        if candidate is None or candidate == "":
            if not self._remote_candidates_ended:
                self._remote_candidates_ended = True
                await self._add_to_pc(None)
            return
        parsed = ice.parse_candidate(candidate, sdp_mid, sdp_mline_index)
        if parsed is None or self._remote_candidates_ended:
            return
        # aioice re-sorts its whole check list for each remote candidate: bounded here.
        limit = self._config.limits.max_candidates_per_session
        if self.candidates_received >= limit:
            raise bad_request(
                f"a session takes at most {limit} remote candidates", "too-many-candidates"
            )
        self.candidates_received += 1
        await self._add_to_pc(parsed)

    async def _add_to_pc(self, candidate: Any) -> None:
        try:
            await self.pc.addIceCandidate(candidate)
        except ValueError:
            # aioice refuses candidates after end-of-candidates on a shared (bundled)
            # transport; the candidate is redundant there.
            pass

    # -- lifetime --------------------------------------------------------------------------

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected" and self.connected_at is None:
            self.connected_at = time.monotonic()
            if self._connect_timer is not None:
                self._connect_timer.cancel()
                self._connect_timer = None
            self._watch_liveness()
        elif state in ("failed", "closed"):
            self.close_soon("ice-failed" if state == "failed" else "closed")

    def _watch_liveness(self) -> None:
        timeout_s = self._config.ingest.publisher_timeout_s
        if timeout_s <= 0 or self.closed:
            return
        self._liveness = Liveness(
            timeout_s, lambda: tap.datagrams_received(self.pc), self._went_quiet
        )
        self._liveness.start()

    def _went_quiet(self, quiet_s: float) -> None:
        if not self.published:
            # Only publishers are ended for silence: a viewer sends little (RTCP) and
            # ICE consent ends it when it is gone. It may publish later: keep watching.
            self._watch_liveness()
            return
        logger.warning(
            "session %s (room %s) sent nothing for %.1fs: publisher lost",
            self.id,
            self.room.name,
            quiet_s,
        )
        self.close_soon("publisher-lost")

    def _connect_timed_out(self) -> None:
        self._connect_timer = None
        if self.connected_at is None:
            self.close_soon("connect-timeout")

    def close_soon(self, reason: str) -> None:
        if not self.closed and self._close_task is None:
            self._close_task = asyncio.ensure_future(self.close(reason))

    async def close(self, reason: str = "closed") -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        if self._liveness is not None:
            self._liveness.stop()
        kept: list[Publisher] = []
        if self.hold_tracks is not None:
            try:
                kept = self.hold_tracks(self)
            except Exception:
                logger.exception("keeping the tracks of session %s failed", self.id)
        # Tracks the room holds for a returning publisher are only detached.
        self.media.close(lambda publisher: any(publisher is k for k in kept))
        for callback in self._on_close:
            try:
                callback(self)
            except Exception:
                logger.exception("session close callback failed")
        try:
            await self.pc.close()
        except Exception:
            logger.exception("closing peer connection of session %s failed", self.id)
        logger.info(
            "session %s (%s, room %s) closed: %s", self.id, self.role, self.room.name, reason
        )

    @property
    def state(self) -> str:
        return "closed" if self.closed else str(self.pc.connectionState)

    @property
    def identity(self) -> str | None:
        """The token identity that created the session (None: anonymous)."""
        return self.owner.identity if self.owner.authenticated else None

    def describe(self) -> dict[str, Any]:
        """What others may know of the session: its public id, never its resource id."""
        return {
            "id": self.public_id,
            "identity": self.identity,
            "name": self.name,
            "role": self.role,
            "transport": self.transport,
            "state": self.state,
            "tracks": [p.describe() for p in self.publishers],
        }
