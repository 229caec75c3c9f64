"""What one session's peer connection publishes and receives, negotiated offer by offer."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.sdp import MediaDescription, SessionDescription

from ..config import Config
from ..errors import GatewayError, bad_request, not_found
from ..media import tap
from ..media.feed import Feed, PliSender, ReceiverFeed
from ..media.ingest import IngestControl, transport_cc_extension, transport_cc_payload_types
from ..media.layer_demand import LayerDemand
from ..media.layers import BestLayerFeed, LayerFeed, LayerRouter
from ..media.nack import SsrcNackSchedulers
from ..media.publisher import Publisher
from ..media.sender_slot import SenderSlot
from ..media.subscriber import Subscriber
from ..media.track_totals import TrackTotals
from ..processing.ladder import MadeLayers
from ..processing.output import RenditionOutput
from ..processing.renditions import Renditions
from ..signaling import sdp, simulcast
from . import negotiation
from .layer_selection import (
    ORIGINAL,
    Cap,
    LayerSelection,
    layer_target,
    layered_track,
    made_layers,
)
from .negotiation import Negotiation


class SessionMedia:
    """The media side of a Session: its transceivers, the tracks it publishes (by mid) and
    the slots it receives on (by mid), each offer answered against them.

    The remote end always makes the offers and the gateway answers, so the two never
    offer at once (no glare). Each offer says, per m-line (by mid), what it is for:
    a track the client publishes, or a published track it wants to receive. The Session
    owns this and its lifetime (timers, liveness, signaling, close).
    """

    def __init__(
        self,
        pc: RTCPeerConnection,
        config: Config,
        room_name: str,
        owner_id: str,
        renditions: Renditions | None,
        totals: TrackTotals | None = None,
    ) -> None:
        self.pc = pc
        self._totals = totals  # the gateway's media counters: every track made here
        self._config = config
        self._room_name = room_name
        self._owner_id = owner_id  # the session's public id: its tracks' owner
        self._renditions = renditions
        self.published: dict[str, Publisher] = {}  # mid -> track this session publishes
        self.slots: dict[str, SenderSlot] = {}  # mid -> what this session receives
        self._pending: dict[RTCRtpReceiver, tuple[str, str, str, str]] = {}
        self._announced: set[str] = set()  # published track ids already reported
        # A returning publisher's predecessor's tracks, taken over by kind and codec.
        self._adopt: list[Publisher] = []
        self.remote_ufrag: str | None = None
        # Published video m-lines that send simulcast: their layers (by mid).
        self._layers: dict[str, simulcast.Layers] = {}
        self._offered_layers: dict[str, simulcast.Layers] = {}
        self._demands: dict[str, LayerDemand] = {}
        # Told {"type": "layers", "mid", "track", "active": {rid: bool}} when the layers
        # anyone takes change: the publisher may stop the others (the Session's socket);
        # and, as a viewer, the layer its link carries ("layer-chosen", "video-paused",
        # "video-resumed": rooms/layer_selection.py).
        self.on_layers: Callable[[dict[str, Any]], None] | None = None
        # transport-cc feedback and bitrate bounds for what this session publishes
        self._ingest = IngestControl(config.ingest, room_name)
        # What the viewer's link carries, and the simulcast layer each video gets from it.
        self.selection = LayerSelection(
            self.slots,
            lambda track: track.subscribe(config.media.viewer_backlog_bytes),
            self._tell,
            config.media.adapt_layers,
        )
        pc.on("track", self._on_track)

    @property
    def publishers(self) -> list[Publisher]:
        return [p for p in self.published.values() if not p.closed]

    @property
    def subscribers(self) -> list[Subscriber]:
        return [s.subscriber for s in self.slots.values() if s.subscriber is not None]

    @property
    def egress_bytes(self) -> int:
        """Media bytes (SRTP) sent to the remote end."""
        return sum(slot.output.bytes_sent for slot in self.slots.values() if slot.output)

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
        self,
        offer: str,
        publishers: list[Publisher],
        pipeline: str | None = None,
        layer: str | None = None,
    ) -> str:
        """Receive, per receiving m-line, the first room track of its kind (WHEP); tracks
        of ``pipeline``'s kind through that pipeline, the others as published; the video
        track's simulcast ``layer`` (a rid) if one is named, or its made layer (the track
        is negotiated, then switched to it at once)."""
        description = self._parse(offer, "recv")
        processed = self.pipeline_kind(pipeline) if pipeline else None
        subscribe, pipelines = negotiation.received_tracks(
            description, publishers, pipeline, processed
        )
        made: list[str] = []
        if layer is not None:
            for mid, track in subscribe.items():
                maker = made_layers(track)
                if track.kind == "video" and not track.layers and maker is not None:
                    if layer not in [rung.rid for rung in maker.rungs()]:
                        maker.output(layer)  # raises unknown-layer, naming them
                    made.append(mid)
                else:
                    subscribe[mid] = negotiation.layer_of(track, layer)
        answer = (await self.negotiate(offer, {}, subscribe, description, pipelines)).answer
        for mid in made:
            if mid in self.slots:
                self.switch_layer(layer, mid)
        return answer

    def _parse(self, offer: str, want: str) -> SessionDescription:
        limits = self._config.limits
        return sdp.parse_offer(
            offer,
            want=want,
            max_m_lines=limits.max_m_lines,
            max_candidates=limits.max_candidates_per_session,
        )

    def pipeline_kind(self, pipeline: str) -> str:
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
        if description is None:
            description = self._parse(offer, "any")
        media = [m for m in description.media if m.kind in negotiation.DEFAULT_SOURCE]
        self._check(media, publish, subscribe, description, pipelines)
        self._offered_layers = self._simulcast(offer, publish)
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
        result.answer = await self._answer(offer, description)
        result.published = [p for p in self.publishers if p.id not in self._announced]
        self._announced.update(p.id for p in result.published)
        return result

    def _simulcast(self, offer: str, publish: Mapping[str, str]) -> dict[str, simulcast.Layers]:
        """The simulcast layers the offer sends on the m-lines it publishes (none when
        media.max_simulcast_layers is 0 or 1). A known m-line keeps the layers it had."""
        most = self._config.media.max_simulcast_layers
        if most < 2:
            return {}
        offered = simulcast.offered_layers(offer, most)
        return {
            mid: layers
            for mid, layers in offered.items()
            if mid in publish and self._layers.get(mid, layers).rids == layers.rids
        }

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
            self.pipeline_kind,
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
        return self._renditions.acquire(track, pipeline, codec, self._room_name)

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
            self.expect_track(transceiver.receiver, m.kind, caps[0].name, source, m.rtp.muxId)
            layers = self._offered_layers.get(m.rtp.muxId)
            if layers is not None:
                self._layers[m.rtp.muxId] = layers
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
            before = layered_track(current.source) if current is not None else None
            if before is None or before is not layered_track(wanted):
                # Another track on this m-line: the cap and choice for the last one go.
                self.selection.forget(transceiver.mid or "")
            subscriber = wanted.subscribe(self._config.media.viewer_backlog_bytes)
            slot.assign(subscriber)
            root = wanted.layer_of or wanted if isinstance(wanted, Publisher) else None
            if root is not None and root.layers_wanted is not None:
                root.layers_wanted()  # a layer it now needs may be stopped
        transceiver.setCodecPreferences(
            negotiation.capabilities(slot.kind, wanted.codec, rtx=False)
        )
        transceiver.direction = "sendonly"

    # -- published tracks -------------------------------------------------------------------

    def adopt(self, tracks: list[Publisher]) -> None:
        """Take over ``tracks`` (kept by the room for this returning publisher): each
        published m-line of the same kind and codec feeds one instead of a new track."""
        self._adopt = list(tracks)

    def planned_codecs(
        self, description: SessionDescription, mids: Mapping[str, str]
    ) -> list[tuple[str, str]]:
        """(kind, codec) of each m-line in ``mids``, as the answer will publish it."""
        return negotiation.planned_codecs(self._config.media, description, mids)

    def expect_track(
        self, receiver: RTCRtpReceiver, kind: str, codec: str, source: str, mid: str
    ) -> None:
        """``receiver``'s track, when aiortc announces it, is published on ``mid``."""
        self._pending[receiver] = (kind, codec, source, mid)

    def _on_track(self, track: MediaStreamTrack) -> None:
        for transceiver in self.pc.getTransceivers():
            if transceiver.receiver.track is track and transceiver.receiver in self._pending:
                kind, codec, source, mid = self._pending.pop(transceiver.receiver)
                layers = self._layers.get(mid)
                if layers is not None:
                    published = self._publish_layers(transceiver.receiver, mid, codec, source)
                else:
                    feed = ReceiverFeed(transceiver.receiver, codec, kind)
                    published = self.publish(mid, kind, codec, feed, source)
                    if kind == "video":
                        self._offer_made_layers(published)
                self._ingest.attach(transceiver, published)

    def _publish_layers(
        self, receiver: RTCRtpReceiver, mid: str, codec: str, source: str
    ) -> Publisher:
        """A simulcast m-line: its packets split per layer, each layer a track of its own
        (``layers``, by rid), and the track published on ``mid`` following the best."""
        rids = self._layers[mid].rids
        router = LayerRouter(codec, rids)
        tap.tap_layers(receiver, router)
        tap.replace_nack_generator(receiver, SsrcNackSchedulers())
        send_pli = PliSender(receiver)
        best = BestLayerFeed(router, send_pli)
        track = self.publish(mid, "video", codec, best, source)
        interval = self._config.media.keyframe_request_interval_ms / 1000
        track.layers = {
            rid: Publisher(
                "video",
                codec,
                LayerFeed(router, rid, send_pli),
                interval,
                source=source,
                owner=self._owner_id,
            )
            for rid in rids
        }
        for rid, layer in track.layers.items():
            layer.layer_of, layer.rid = track, rid
            if self._totals is not None:
                self._totals.add(layer)

        def info() -> list[dict[str, Any]]:
            # "active": whether the publisher was asked to send it (nobody takes it: no).
            return [
                {
                    **layer,
                    "followed": layer["rid"] == best.current,
                    "active": demand.active.get(str(layer["rid"]), True),
                }
                for layer in router.describe()
            ]

        track.layer_info = info

        def area(rid: str) -> float | None:
            size = router.resolution(rid)
            return float(size[0] * size[1]) if size else None

        old = self._demands.pop(mid, None)
        if old is not None:
            old.stop()
        demand = LayerDemand(track, area, lambda active: self._layers_changed(mid, track, active))
        track.layers_wanted = demand.check
        self._demands[mid] = demand
        demand.start()
        return track

    def _offer_made_layers(self, track: Publisher) -> None:
        """A single-layer video in a room with a ladder (processing.ladders): its lower
        layers are made by the gateway, when a viewer needs one."""
        if self._renditions is None or track.layers or track.made_layers is not None:
            return
        rungs = self._renditions.ladder(self._room_name)
        if rungs:
            track.made_layers = MadeLayers(track, rungs, self._renditions, self._room_name)

    def _layers_changed(self, mid: str, track: Publisher, active: dict[str, bool]) -> None:
        self._tell({"type": "layers", "mid": mid, "track": track.id, "active": active})

    def _tell(self, message: dict[str, Any]) -> None:
        if self.on_layers is not None:
            self.on_layers(message)

    def publish(self, mid: str, kind: str, codec: str, feed: Feed, source: str = "") -> Publisher:
        """``feed`` is published on ``mid``: it takes over a kept track of the same kind and
        codec (a returning publisher's, a replaced relay's), or becomes a new one."""
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
            adopted.rebind(feed, owner=self._owner_id)
            self._announced.add(adopted.id)  # the room knows it already
            self.published[mid] = adopted
            return adopted
        publisher = Publisher(
            kind,
            codec,
            feed,
            self._config.media.keyframe_request_interval_ms / 1000,
            source=source,
            owner=self._owner_id,
        )
        if self._totals is not None:
            self._totals.add(publisher)
        self.published[mid] = publisher
        return publisher

    async def _answer(self, offer: str, description: SessionDescription) -> str:
        first = next((m for m in description.media if m.ice is not None), None)
        if self.remote_ufrag is None and first is not None and first.ice is not None:
            self.remote_ufrag = first.ice.usernameFragment
        try:
            await self.pc.setRemoteDescription(
                RTCSessionDescription(sdp=sdp.strip_mdns_candidates(offer), type="offer")
            )
            self._ingest.negotiate(description)
            self._accept_layer_extensions()
            self._accept_viewer_transport_cc(description)
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except GatewayError:
            raise
        except Exception as exc:
            raise GatewayError(
                422, "negotiation-failed", f"the offer cannot be negotiated: {exc}"
            ) from exc
        answer: str = self._ingest.shape_answer(self.pc.localDescription.sdp)
        answer = simulcast.accept_layers(
            answer, {mid: self._layers[mid] for mid in self._offered_layers if mid in self._layers}
        )
        if self.slots:
            self.selection.start()
        if self._config.ice.announced_address:
            answer = sdp.announce_address(answer, self._config.ice.announced_address)
        return sdp.candidates_once(answer)

    def _accept_viewer_transport_cc(self, description: SessionDescription) -> None:
        """transport-cc on what this session receives, where its offer has it: the packets
        sent to it are numbered and its feedback read (media/viewer_link.py)."""
        if not self._config.media.viewer_transport_cc:
            return
        transceivers = {t.mid: t for t in self.pc.getTransceivers() if t.mid is not None}
        for m in description.media:
            mid = m.rtp.muxId
            transceiver = transceivers.get(mid)
            if mid not in self.slots or transceiver is None or m.port == 0:
                continue
            extension_id = transport_cc_extension(m)
            if extension_id is None:
                continue
            payload_types = transport_cc_payload_types(m)
            if payload_types:
                tap.accept_transport_cc(transceiver, extension_id, payload_types)
                self.selection.transport_cc[mid] = extension_id

    def _accept_layer_extensions(self) -> None:
        """The rid extensions, so aiortc parses them (and answers them): between
        setRemoteDescription, which resets each transceiver's list, and createAnswer."""
        for transceiver in self.pc.getTransceivers():
            layers = self._layers.get(transceiver.mid or "")
            if layers is None or transceiver.mid not in self._offered_layers:
                continue
            tap.accept_header_extension(transceiver, layers.rid_extension, simulcast.RID_URI)
            if layers.repaired_extension is not None:
                tap.accept_header_extension(
                    transceiver, layers.repaired_extension, simulcast.REPAIRED_RID_URI
                )

    # -- what is received -------------------------------------------------------------------

    def switch_pipeline(self, pipeline: str | None, mid: str | None = None) -> list[str]:
        """Feed what this session receives through ``pipeline`` (None: as published),
        without renegotiating: same transceiver, codec and RTP stream, so the viewer
        sees the new picture within a keyframe. ``mid`` picks one m-line; otherwise
        every received track of the pipeline's kind switches. Returns the mids switched."""
        kind = self.pipeline_kind(pipeline) if pipeline else None
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
                target = self._renditions.acquire(track, pipeline, current.codec, self._room_name)
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

    def switch_layer(
        self,
        layer: str | None,
        mid: str | None = None,
        max_width: int | None = None,
        max_height: int | None = None,
        max_fps: float | None = None,
    ) -> list[str]:
        """Receive another simulcast layer of the video this session receives, without
        renegotiating (the same transceiver and RTP stream continue; the viewer resumes at
        the layer's keyframe): ``layer`` by rid, or the largest whose picture fits
        ``max_width`` x ``max_height``, or (neither) the best layer that flows; at most
        ``max_fps`` frames a second where the layer has temporal layers to leave out. A
        single-layer video with made layers (processing.ladders) switches among them and
        its original alike. ``mid`` picks one m-line; otherwise every received layered
        video. Returns the mids switched."""
        if mid is not None and mid not in self.slots:
            raise not_found(f"this session receives nothing on m-line {mid!r}", "unknown-mid")
        switched: list[str] = []
        simulcast_mids = 0
        for key in [mid] if mid is not None else list(self.slots):
            slot = self.slots[key]
            current = slot.subscriber.source if slot.subscriber is not None else None
            track = layered_track(current)
            if track is None or track.kind != "video":
                continue
            target: Publisher | RenditionOutput
            if track.layers:
                target = _pick_layer(track, layer, max_width, max_height)
            elif (maker := made_layers(track)) is not None and maker.rungs():
                rid = _pick_made(maker, layer, max_width, max_height)
                target = layer_target(track, rid)
            else:
                continue
            simulcast_mids += 1
            self.selection.set_cap(key, Cap(layer, max_width, max_height, max_fps))
            slot.max_fps = max_fps
            waiting = slot.standby.source if slot.standby is not None else None
            if target is current and waiting is not None:
                slot.assign(slot.subscriber)  # back to what it receives: the switch is off
            elif target is not current and target is not waiting:
                slot.switch(target.subscribe(self._config.media.viewer_backlog_bytes))
                switched.append(key)
                if track.layers_wanted is not None:
                    track.layers_wanted()  # a stopped layer starts again now
        if not simulcast_mids:
            raise GatewayError(
                422, "not-simulcast", "this session receives no simulcast video (unprocessed)"
            )
        return switched

    def _received_kind(self, mid: str) -> str | None:
        subscriber = self.slots[mid].subscriber
        return subscriber.kind if subscriber is not None else None

    def receiving(self) -> dict[str, dict[str, Any]]:
        """Per m-line: the track received and the pipeline it goes through (or None)."""
        out: dict[str, dict[str, Any]] = {}
        for mid, slot in self.slots.items():
            source = slot.subscriber.source if slot.subscriber is not None else None
            if isinstance(source, RenditionOutput) and source.rung is not None:
                # A made layer of the track, chosen as a simulcast layer is.
                out[mid] = {
                    "track": source.source.id,
                    "pipeline": None,
                    "codec": source.codec,
                    "layer": source.rid,
                    "made": True,
                    "selection": self.selection.stats(mid),
                }
            elif isinstance(source, RenditionOutput):
                out[mid] = {
                    "track": source.source.id,
                    "pipeline": source.pipeline_name,
                    "rendition": source.id,
                    "codec": source.codec,
                }
            elif isinstance(source, Publisher):
                track = source.layer_of or source
                out[mid] = {"track": track.id, "pipeline": None, "codec": source.codec}
                if track.layers or track.made_layers is not None:
                    out[mid]["layer"] = source.rid  # None: the best layer, or the original
                    out[mid]["selection"] = self.selection.stats(mid)
            if mid in out and "layer" in out[mid]:
                standby = slot.standby.source if slot.standby is not None else None
                if isinstance(standby, Publisher | RenditionOutput):
                    # Switching, at the new layer's next keyframe (None: the best).
                    out[mid]["switching_to"] = standby.rid
        return out

    # -- the end ----------------------------------------------------------------------------

    def close(self, kept: Callable[[Publisher], bool]) -> None:
        """Stop everything: tracks the room keeps for a returning publisher (``kept``) are
        only detached, the others end; every slot stops its subscriber."""
        self._ingest.close()
        self.selection.close()
        for demand in self._demands.values():
            demand.stop()
        for publisher in self.published.values():
            if kept(publisher):
                publisher.detach()
            else:
                publisher.close()
        for slot in self.slots.values():
            slot.close()


def _pick_layer(
    track: Publisher, layer: str | None, max_width: int | None, max_height: int | None
) -> Publisher:
    """The layer track asked for, or the simulcast track itself (the best that flows)."""
    if layer is not None:
        return negotiation.layer_of(track, layer)
    if max_width is None and max_height is None:
        return track
    sizes = {
        str(info["rid"]): info["resolution"]
        for info in (track.layer_info() if track.layer_info is not None else [])
        if info["resolution"] and info["flowing"]
    }
    rid = _largest_fitting(sizes, max_width, max_height)
    return track.layers[rid] if rid is not None else track


def _pick_made(
    made: MadeLayers, layer: str | None, max_width: int | None, max_height: int | None
) -> str | None:
    """The made layer asked for, or the largest of them and the original that fits (None:
    the original)."""
    if layer is not None or (max_width is None and max_height is None):
        return layer
    sizes = {str(info["rid"]): info["resolution"] for info in made.info()}
    if made.track.resolution is not None:
        sizes[ORIGINAL] = list(made.track.resolution)
    rid = _largest_fitting(sizes, max_width, max_height)
    return None if rid == ORIGINAL else rid


def _largest_fitting(
    sizes: Mapping[str, Any], max_width: int | None, max_height: int | None
) -> str | None:
    """The rid of the largest picture in ``sizes`` (rid -> [width, height]) within the
    bounds, else the smallest there is; None when there is none."""
    fitting = [
        (width * height, rid)
        for rid, (width, height) in sizes.items()
        if (max_width is None or width <= max_width)
        and (max_height is None or height <= max_height)
    ]
    if fitting:
        return max(fitting)[1]
    if sizes:  # nothing fits: the smallest there is
        return min((w * h, rid) for rid, (w, h) in sizes.items())[1]
    return None
