"""One remote endpoint's peer connection: what it publishes and receives, renegotiated."""

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

from aiortc import (
    MediaStreamTrack,
    RTCDataChannel,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.sdp import MediaDescription, SessionDescription

from ..auth.principal import OPEN, Principal
from ..config import Config
from ..errors import GatewayError, bad_request, not_found
from ..limits.buckets import RateLimit
from ..media import tap
from ..media.feed import ReceiverFeed
from ..media.ingest import IngestControl
from ..media.liveness import Liveness
from ..media.publisher import Publisher
from ..media.sender_slot import SenderSlot
from ..media.subscriber import Subscriber
from ..processing.output import RenditionOutput
from ..processing.renditions import Renditions
from ..signaling import ice, sdp
from . import negotiation
from .negotiation import Negotiation

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

    The remote end always makes the offers and the gateway answers, so the two never
    offer at once (no glare). Each offer says, per m-line (by mid), what it is for:
    a track the client publishes, or a published track it wants to receive.
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
        self._renditions = renditions
        self.pc = RTCPeerConnection(ice.rtc_configuration(config.ice))
        tap.accept_rsa_dtls_peers(self.pc)  # GStreamer and other RSA-certificate peers
        self.published: dict[str, Publisher] = {}  # mid -> track this session publishes
        self.slots: dict[str, SenderSlot] = {}  # mid -> what this session receives
        self._pending: dict[RTCRtpReceiver, tuple[str, str, str, str]] = {}
        self._announced: set[str] = set()  # published track ids already reported
        self.created_at = time.monotonic()
        self.connected_at: float | None = None
        self.closed = False
        self.close_reason: str | None = None
        self.remote_ufrag: str | None = None
        self._remote_candidates_ended = False
        self.candidates_received = 0
        self.feeds_relay = False  # a viewer that is another cluster node's relay
        self._on_close: list[Callable[[Session], Any]] = []
        # Set by the room for its stream publisher: asked at close whether the room keeps
        # the session's tracks for a returning publisher (then they are only detached).
        self.hold_tracks: Callable[[Session], list[Publisher]] | None = None
        # A returning publisher's predecessor's tracks, taken over by kind and codec.
        self._adopt: list[Publisher] = []
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
        self.pc.on("connectionstatechange", self._on_connection_state)
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._on_datachannel)
        # transport-cc feedback and bitrate bounds for what this session publishes
        self._ingest = IngestControl(config.ingest, room.name)

    def on_close(self, callback: Callable[[Session], Any]) -> None:
        self._on_close.append(callback)

    @property
    def publishers(self) -> list[Publisher]:
        return [p for p in self.published.values() if not p.closed]

    @property
    def egress_bytes(self) -> int:
        """Media bytes (SRTP) this session has sent to its remote end."""
        return sum(slot.output.bytes_sent for slot in self.slots.values() if slot.output)

    @property
    def subscribers(self) -> list[Subscriber]:
        return [s.subscriber for s in self.slots.values() if s.subscriber is not None]

    # -- WHIP / WHEP / one-purpose sessions ----------------------------------------------

    def plan_publish(self, offer: str) -> tuple[SessionDescription, dict[str, str]]:
        """What a WHIP offer publishes: its description and mid -> source (camera for
        video, microphone for audio), before anything is negotiated."""
        description = self._parse(offer, "send")
        return description, negotiation.published_sources(description)

    async def accept_publish(
        self, offer: str, plan: tuple[SessionDescription, dict[str, str]] | None = None
    ) -> str:
        """Publish every track the offer sends (WHIP); returns the SDP answer."""
        description, publish = plan or self.plan_publish(offer)
        return (await self.negotiate(offer, publish, {}, description)).answer

    async def accept_subscribe(
        self, offer: str, publishers: list[Publisher], pipeline: str | None = None
    ) -> str:
        """Receive, per receiving m-line, the first room track of its kind (WHEP); tracks
        of ``pipeline``'s kind through that pipeline, the others as published."""
        description = self._parse(offer, "recv")
        processed = self._pipeline_kind(pipeline) if pipeline else None
        subscribe, pipelines = negotiation.received_tracks(
            description, publishers, pipeline, processed
        )
        return (await self.negotiate(offer, {}, subscribe, description, pipelines)).answer

    def _parse(self, offer: str, want: str) -> SessionDescription:
        limits = self._config.limits
        return sdp.parse_offer(
            offer,
            want=want,
            max_m_lines=limits.max_m_lines,
            max_candidates=limits.max_candidates_per_session,
        )

    def _pipeline_kind(self, pipeline: str) -> str:
        if self._renditions is None:
            raise GatewayError(501, "processing-off", "this gateway does not process media")
        return self._renditions.kind(pipeline)

    # -- any offer, first or renegotiation -------------------------------------------------

    async def negotiate(
        self,
        offer: str,
        publish: Mapping[str, str],
        subscribe: Mapping[str, Publisher],
        description: SessionDescription | None = None,
        pipelines: Mapping[str, str] = {},
    ) -> Negotiation:
        """Answer ``offer``: m-lines in ``publish`` (mid -> source) are tracks the client
        publishes; those in ``subscribe`` (mid -> track) receive that track, through the
        pipeline ``pipelines`` names for the mid if any. Any other m-line is answered
        inactive; a known one that is no longer wanted stops."""
        if self.closed:
            raise GatewayError(410, "session-closed", "the session has ended")
        if description is None:
            description = self._parse(offer, "any")
        media = [m for m in description.media if m.kind in negotiation.DEFAULT_SOURCE]
        self._check(media, publish, subscribe, description, pipelines)
        transceivers = {t.mid: t for t in self.pc.getTransceivers() if t.mid is not None}
        result = Negotiation(answer="")
        for m in media:
            mid = m.rtp.muxId
            direction = negotiation.direction(m)
            publishing = mid in publish and direction in negotiation.SENDING
            wanted = subscribe.get(mid) if direction in negotiation.RECEIVING else None
            source = self._source(m, wanted, pipelines.get(mid))
            transceiver = transceivers.get(mid)
            if transceiver is None:
                self._add_transceiver(m, publish.get(mid, ""), publishing, source)
                continue
            publisher = self.published.get(mid)
            if publisher is not None and not publisher.closed and not publishing:
                publisher.close()
                result.unpublished.append(publisher)
            self._receive(transceiver, m.kind, source)
        answer = await self._answer(offer, description)
        result.answer = answer
        result.published = [p for p in self.publishers if p.id not in self._announced]
        self._announced.update(p.id for p in result.published)
        return result

    def _check(
        self,
        media: list[MediaDescription],
        publish: Mapping[str, str],
        subscribe: Mapping[str, Publisher],
        description: SessionDescription,
        pipelines: Mapping[str, str],
    ) -> None:
        """Refuse the whole offer before changing anything."""
        known = {t.mid for t in self.pc.getTransceivers() if t.mid is not None}
        negotiation.check_offer(
            media,
            publish,
            subscribe,
            description,
            pipelines,
            known,
            self._config.media,
            self._pipeline_kind,
        )

    def _source(
        self, m: MediaDescription, track: Publisher | None, pipeline: str | None
    ) -> Publisher | RenditionOutput | None:
        """What an m-line receives: the track itself, or its rendition through ``pipeline``
        in the codec the m-line takes (shared with every viewer asking the same)."""
        if track is None or not pipeline or self._renditions is None:
            return track
        codec = Renditions.codec_for(track.kind, track.codec, [c.name for c in m.rtp.codecs])
        assert codec is not None  # checked by _check
        current = self.slots.get(m.rtp.muxId)
        source = current.subscriber.source if current and current.subscriber else None
        if isinstance(source, RenditionOutput) and not source.closed:
            if (source.source, source.pipeline_name) == (track, pipeline):
                return source  # keep the codec already negotiated on this m-line
        return self._renditions.acquire(track, pipeline, codec, self.room.name)

    def _add_transceiver(
        self,
        m: MediaDescription,
        source: str,
        publishing: bool,
        wanted: Publisher | RenditionOutput | None,
    ) -> None:
        """A new m-line: a transceiver created now is the one aiortc pairs with it."""
        if publishing:
            codec = negotiation.publish_codec(self._config.media, m)
            assert codec is not None  # checked by _check
            transceiver = self.pc.addTransceiver(m.kind, direction="recvonly")
            # RTX lets the publisher resend what we NACK on a separate stream.
            caps = negotiation.capabilities(m.kind, codec, rtx=True)
            transceiver.setCodecPreferences(caps)
            self._pending[transceiver.receiver] = (m.kind, caps[0].name, source, m.rtp.muxId)
        elif negotiation.direction(m) in negotiation.RECEIVING:
            stale = self.slots.pop(m.rtp.muxId, None)
            if stale is not None:  # never left holding a subscriber (mids are unique)
                stale.close()
            slot = SenderSlot(m.kind)
            transceiver = self.pc.addTransceiver(slot.track, direction="inactive")
            slot.bind(transceiver)
            self.slots[m.rtp.muxId] = slot
            self._point(slot, transceiver, wanted)
        else:
            self.pc.addTransceiver(m.kind, direction="inactive")

    def _receive(
        self,
        transceiver: RTCRtpTransceiver,
        kind: str,
        wanted: Publisher | RenditionOutput | None,
    ) -> None:
        """Point a negotiated transceiver's sending side at ``wanted`` (or at nothing)."""
        mid = transceiver.mid
        assert mid is not None
        slot = self.slots.get(mid)
        if slot is None:
            if wanted is None:
                return
            # A transceiver first used otherwise now receives: give it a slot.
            slot = SenderSlot(kind)
            transceiver.sender.replaceTrack(slot.track)
            slot.bind(transceiver)
            self.slots[mid] = slot
        self._point(slot, transceiver, wanted)

    def _point(
        self,
        slot: SenderSlot,
        transceiver: RTCRtpTransceiver,
        wanted: Publisher | RenditionOutput | None,
    ) -> None:
        current = slot.subscriber
        if wanted is None:
            slot.assign(None)
            transceiver.direction = "inactive"
            return
        if current is None or current.source is not wanted:
            subscriber = wanted.subscribe(self._config.media.viewer_backlog_bytes)
            slot.assign(subscriber)
        transceiver.setCodecPreferences(
            negotiation.capabilities(slot.kind, wanted.codec, rtx=False)
        )
        transceiver.direction = "sendonly"

    def adopt(self, tracks: list[Publisher]) -> None:
        """Take over ``tracks`` (kept by the room for this returning publisher): each
        published m-line of the same kind and codec feeds one instead of a new track."""
        self._adopt = list(tracks)

    def planned_codecs(
        self, description: SessionDescription, mids: Mapping[str, str]
    ) -> list[tuple[str, str]]:
        """(kind, codec) of each m-line in ``mids``, as the answer will publish it."""
        return negotiation.planned_codecs(self._config.media, description, mids)

    def _on_track(self, track: MediaStreamTrack) -> None:
        for transceiver in self.pc.getTransceivers():
            if transceiver.receiver.track is track and transceiver.receiver in self._pending:
                kind, codec, source, mid = self._pending.pop(transceiver.receiver)
                adopted = next(
                    (
                        p
                        for p in self._adopt
                        if p.kind == kind and p.codec.lower() == codec.lower() and not p.closed
                    ),
                    None,
                )
                if adopted is not None:
                    self._adopt.remove(adopted)
                    adopted.rebind(self._feed(transceiver, kind, codec), owner=self.public_id)
                    self.published[mid] = adopted
                    self._announced.add(adopted.id)  # the room knows it already
                else:
                    self.published[mid] = Publisher(
                        kind,
                        codec,
                        self._feed(transceiver, kind, codec),
                        self._config.media.keyframe_request_interval_ms / 1000,
                        source=source,
                        owner=self.public_id,
                    )
                self._ingest.attach(transceiver, self.published[mid])

    @staticmethod
    def _feed(transceiver: RTCRtpTransceiver, kind: str, codec: str) -> ReceiverFeed:
        return ReceiverFeed(transceiver.receiver, codec, kind)

    async def _answer(self, offer: str, description: SessionDescription) -> str:
        first = next((m for m in description.media if m.ice is not None), None)
        if self.remote_ufrag is None and first is not None and first.ice is not None:
            self.remote_ufrag = first.ice.usernameFragment
        try:
            await self.pc.setRemoteDescription(
                RTCSessionDescription(sdp=sdp.strip_mdns_candidates(offer), type="offer")
            )
            self._ingest.negotiate(description)
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except GatewayError:
            raise
        except Exception as exc:
            raise GatewayError(
                422, "negotiation-failed", f"the offer cannot be negotiated: {exc}"
            ) from exc
        if self._connect_timer is None and self.connected_at is None:
            self._connect_timer = asyncio.get_running_loop().call_later(
                self._config.ice.connect_timeout_s, self._connect_timed_out
            )
        answer: str = self._ingest.shape_answer(self.pc.localDescription.sdp)
        if self._config.ice.announced_address:
            answer = sdp.announce_address(answer, self._config.ice.announced_address)
        answer = sdp.candidates_once(answer)
        return answer

    def switch_pipeline(self, pipeline: str | None, mid: str | None = None) -> list[str]:
        """Feed what this session receives through ``pipeline`` (None: as published),
        without renegotiating: same transceiver, codec and RTP stream, so the viewer
        sees the new picture within a keyframe. ``mid`` picks one m-line; otherwise
        every received track of the pipeline's kind switches. Returns the mids switched."""
        if self.closed:
            raise GatewayError(410, "session-closed", "the session has ended")
        kind = self._pipeline_kind(pipeline) if pipeline else None
        if mid is not None and mid not in self.slots:
            raise not_found(f"this session receives nothing on m-line {mid!r}", "unknown-mid")
        chosen = [mid] if mid is not None else list(self.slots)
        switched: list[str] = []
        for key in chosen:
            slot = self.slots[key]
            current = slot.subscriber.source if slot.subscriber is not None else None
            if not isinstance(current, Publisher | RenditionOutput):
                continue
            track = current.source if isinstance(current, RenditionOutput) else current
            if kind is not None and track.kind != kind:
                if mid is not None:
                    raise bad_request(
                        f"pipeline {pipeline!r} processes {kind}, m-line {mid} is {track.kind}",
                        "wrong-kind",
                    )
                continue
            target: Publisher | RenditionOutput
            if pipeline is None:
                if track.codec != current.codec:
                    raise GatewayError(
                        409,
                        "codec-mismatch",
                        f"m-line {key} was negotiated as {current.codec}; track {track.id} is "
                        f"{track.codec}: receiving it unprocessed needs a new offer",
                    )
                target = track
            else:
                assert self._renditions is not None
                target = self._renditions.acquire(track, pipeline, current.codec, self.room.name)
            if target is not current:
                slot.assign(target.subscribe(self._config.media.viewer_backlog_bytes))
                switched.append(key)
        if (
            kind is not None
            and not switched
            and not any(self._received_kind(k) == kind for k in chosen)
        ):
            raise GatewayError(422, "nothing-to-process", f"this session receives no {kind} track")
        return switched

    def _received_kind(self, mid: str) -> str | None:
        subscriber = self.slots[mid].subscriber
        return subscriber.kind if subscriber is not None else None

    def receiving(self) -> dict[str, dict[str, Any]]:
        """Per m-line: the track received and the pipeline it goes through (or None)."""
        out: dict[str, dict[str, Any]] = {}
        for mid, slot in self.slots.items():
            source = slot.subscriber.source if slot.subscriber is not None else None
            if isinstance(source, RenditionOutput):
                out[mid] = {
                    "track": source.source.id,
                    "pipeline": source.pipeline_name,
                    "rendition": source.id,
                    "codec": source.codec,
                }
            elif isinstance(source, Publisher):
                out[mid] = {"track": source.id, "pipeline": None, "codec": source.codec}
        return out

    def unpublish(self, publisher: Publisher) -> None:
        """Stop forwarding one of this session's tracks (its m-line stays until renegotiated)."""
        publisher.close()

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
        self._ingest.close()
        kept: list[Publisher] = []
        if self.hold_tracks is not None:
            try:
                kept = self.hold_tracks(self)
            except Exception:
                logger.exception("keeping the tracks of session %s failed", self.id)
        for publisher in self.published.values():
            if any(publisher is k for k in kept):
                publisher.detach()  # the room holds it for a returning publisher
            else:
                publisher.close()
        for slot in self.slots.values():
            slot.close()
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
