"""All rooms and sessions of one gateway process; creates them and removes idle ones."""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from ..auth.principal import LOCAL, Caller, Principal
from ..cluster.node import ClusterNode, GatewayFull
from ..cluster.pipe_server import PipeAdmission, PipeServer
from ..cluster.relays import Relays
from ..config import Config
from ..drain import Drain
from ..errors import GatewayError, bad_request, not_found
from ..limits.admission import Admission
from ..limits.buckets import RateLimit
from ..limits.meter import RateMeter
from ..media.track_totals import TrackTotals
from ..processing.rendition import Rendition
from ..processing.renditions import Renditions
from .chat import chat_message
from .negotiation import Negotiation
from .policy import AccessPolicy, Request
from .room import P2P, SFU, EventListener, Room, check_room_name, empty_room
from .session import PARTICIPANT, PUBLISHER, SUBSCRIBER, Session

logger = logging.getLogger(__name__)

# Per-track loss-repair counters (Publisher.stats) that /api/stats also sums.
LOSS_TOTALS = (
    "nacks_sent",
    "nack_retries",
    "retransmissions_received",
    "frames_unrepaired",
    "upstream_gaps",
    "nacks_received",
    "retransmissions_sent",
)


class Registry:
    """Owns every Room and Session; closing it closes them all."""

    def __init__(self, config: Config, policy: AccessPolicy | None = None) -> None:
        self.config = config
        self.policy = policy or AccessPolicy(config.auth)
        self.admission = Admission(config.limits)
        self.cpu = RateMeter()  # server.max_cpu
        # Shut down on a signal: no new sessions (publish, subscribe, join) meanwhile.
        self.drain = Drain(config.server.drain_timeout_s)
        self.rooms: dict[str, Room] = {}
        self.sessions: dict[str, Session] = {}
        # Media counters over every track this gateway has had (/metrics).
        self.track_totals = TrackTotals()
        self._egress_retired = 0  # bytes sent by sessions that have closed
        self.egress = RateMeter(self._egress_bytes)  # server.max_egress_mbps
        # Watchers (WS `watch`) of rooms that do not exist yet: a watch never creates a
        # room. Bounded by sockets x limits.max_watched_rooms.
        self._waiting: dict[str, set[EventListener]] = {}
        # Called with (room, session) once a publisher's tracks exist (auto-recording).
        self.on_publish: list[Callable[[Room, Session], None]] = []
        # Called with a room that was idle and is released.
        self.on_release: list[Callable[[Room], None]] = []
        # A node of a cluster (cluster.redis_url): rooms homed across nodes, relays.
        self.cluster: ClusterNode | None = None
        self.relays: Relays | None = None
        self.pipe: PipeServer | None = None  # this node's frame pipe (cluster.pipe_dir)
        # Processed tracks (named pipelines), shared by every session that asks.
        self.renditions = Renditions(config)
        self.renditions.on_event = self._rendition_event

    def join_cluster(self, node: ClusterNode) -> None:
        """Rooms are homed through ``node`` from now on; viewers of rooms homed elsewhere
        are served here through relays."""
        self.cluster = node
        self.relays = Relays(
            self.config, node, lambda name: self.get_or_create_room(name, copy=True), self._track
        )
        self.on_release.append(lambda room: node.release_soon(room.name))
        node.on_lost = self._room_moved

    async def serve_pipe(self) -> None:
        """Serve this node's rooms to the other nodes of its pipe directory, if it has one."""
        if self.cluster is not None and self.cluster.pipe:
            self.pipe = PipeServer(
                self.cluster.pipe, PipeAdmission(self.rooms, self.policy, self.drain)
            )
            await self.pipe.start()

    def _room_moved(self, name: str) -> None:
        """Another node is ``name``'s home now: what this node has of it ends."""
        room = self.rooms.get(name)
        if room is None or room.copy:
            return
        for session in list(self.sessions.values()):
            if session.room is room and session.role in (PUBLISHER, PARTICIPANT):
                session.close_soon("room-moved")

    def room(self, name: str) -> Room | None:
        return self.rooms.get(check_room_name(name))

    def get_or_create_room(self, name: str, mode: str = SFU, copy: bool = False) -> Room:
        """The room ``name``, created if needed; ``copy``: this node's copy of a room homed
        on another node (a relay), which local watchers do not watch."""
        room = self.room(name)
        if room is None:
            if len(self.rooms) >= self.config.rooms.max_rooms:
                raise GatewayError(
                    503, "too-many-rooms", "the gateway has its maximum number of rooms"
                )
            rooms = self.config.rooms
            room = Room(
                name,
                rooms.max_subscribers,
                rooms.max_participants,
                mode,
                publisher_grace_s=rooms.publisher_grace_s,
            )
            room.on_idle = self.release_if_idle
            self.rooms[name] = room
            if copy:
                room.copy = True
                return room
            room.on_event = lambda event: self._share(room, event)
            for listener in self._waiting.pop(name, ()):
                room.listen(listener)
        return room

    def session(
        self,
        session_id: str,
        caller: Caller,
        *,
        transport: str | None = None,
        room: str | None = None,
    ) -> Session:
        """A session its owner (or an admin of its room) asks about; ``transport`` and
        ``room`` narrow the lookup (a WHIP resource URL names only WHIP sessions)."""
        session = self.sessions.get(session_id)
        if (
            session is None
            or (room is not None and session.room.name != room)
            or (transport is not None and session.transport != transport)
        ):
            raise not_found(f"no session {session_id[:64]!r}", "unknown-session")
        self.policy.check(
            Request(
                "session",
                session.room.name,
                transport or "http",
                caller.principal,
                owner=session.owner.identity,
            )
        )
        return session

    def _admit(self, caller: Caller) -> None:
        """Rate and connecting-session limits, before a session (and its sockets) exists."""
        pending = sum(1 for s in self.sessions.values() if s.connected_at is None)
        principal = caller.principal
        self.admission.admit_session(
            caller.address, principal.identity if principal.authenticated else None, pending
        )

    async def publish(
        self, room_name: str, offer: str, transport: str, caller: Caller = LOCAL
    ) -> tuple[Session, str]:
        room_name = check_room_name(room_name)
        self.policy.check(Request("publish", room_name, transport, caller.principal))
        self.drain.admit()
        self._admit(caller)
        if self.cluster is not None:
            await self.cluster.claim(room_name)  # or a 307 to the room's home node
        room = self.get_or_create_room(room_name)
        if room.mode == P2P:
            raise GatewayError(409, "p2p-room", f"room {room_name!r} is peer-to-peer")
        session = self._session(room, PUBLISHER, transport, owner=caller)
        self._track(session)
        try:
            plan = session.plan_publish(offer)
            for source in sorted(set(plan[1].values())):
                self.policy.check(
                    Request("publish", room_name, transport, caller.principal, source=source)
                )
            await self._replace_same_identity(room, session)
            room.claim_publisher(session, session.media.planned_codecs(*plan))
            answer = await session.accept_publish(offer, plan)
        except BaseException:
            await session.close("rejected")
            raise
        room.announce_publisher()
        self._published(room, session)
        return session, answer

    async def _replace_same_identity(self, room: Room, session: Session) -> None:
        """A publisher reconnecting before its old connection was found dead (same token
        identity): the old one ends now, and the new one takes its stream over."""
        current = room.publisher
        if (
            current is not None
            and not current.closed
            and self.policy.enabled
            and session.identity is not None
            and current.identity == session.identity
        ):
            await current.close("replaced")

    def check_pipeline(self, room: str, pipeline: str, transport: str, caller: Caller) -> str:
        """The pipeline's kind, if it exists and the caller may use it."""
        kind = self.renditions.kind(pipeline)  # unknown-pipeline first: names are public
        self.policy.check(Request("pipeline", room, transport, caller.principal, pipeline=pipeline))
        return kind

    async def subscribe(
        self,
        room_name: str,
        offer: str,
        transport: str,
        caller: Caller = LOCAL,
        pipeline: str | None = None,
        relay: bool = False,
        layer: str | None = None,
    ) -> tuple[Session, str]:
        """A viewer of the room's stream; ``pipeline`` names a configured pipeline to
        receive the tracks of its kind through. ``relay``: another node's relay, which
        server.max_viewers does not turn away (its viewers were placed there)."""
        room_name = check_room_name(room_name)
        self.policy.check(Request("subscribe", room_name, transport, caller.principal))
        self.drain.admit()
        if pipeline is not None:
            self.check_pipeline(room_name, pipeline, transport, caller)
        if not relay:
            await self._place_viewer()
        room = self.room(room_name)
        admitted = False
        if (room is None or not room.publishers) and self.relays is not None:
            self._admit(caller)  # a relay costs a peer connection: limits first
            admitted = True
            room = await self.relays.copy(room_name) or room  # homed on another node
        if room is None or not room.publishers:
            raise not_found(f"room {room_name!r} has no publisher", "no-publisher")
        if not admitted:
            self._admit(caller)
        session = self._session(room, SUBSCRIBER, transport, owner=caller)
        session.feeds_relay = relay
        self._track(session)
        if self.relays is not None:
            relays, viewed = self.relays, room
            relays.viewer_joined(viewed)
            session.on_close(lambda _: relays.viewer_left(viewed))
        try:
            room.add_subscriber(session)
            answer = await session.accept_subscribe(offer, room.publishers, pipeline, layer)
        except BaseException:
            await session.close("rejected")
            raise
        return session, answer

    async def join(
        self,
        room_name: str,
        name: str,
        mode: str | None = None,
        caller: Caller = LOCAL,
    ) -> Session:
        """A participant joins by name; its peer connection is negotiated by its offers.

        ``mode`` "p2p" creates a peer-to-peer room (or must match an existing one);
        rooms named by ``rooms.p2p_rooms`` are always peer-to-peer. With a token, its
        ``name`` (if any) is the display name, and a participant already in the room with
        the same identity is replaced (or the join refused: ``auth.duplicate_identity``).
        """
        room_name = check_room_name(room_name)
        principal = caller.principal
        self.policy.check(Request("join", room_name, "ws", principal))
        self.drain.admit()  # before a same-identity participant is replaced
        name = principal.name or name
        if not 1 <= len(name) <= 64 or not name.isprintable():
            raise bad_request("a display name is 1-64 printable characters", "invalid-name")
        if mode not in (None, SFU, P2P):
            raise bad_request(f"mode is {SFU!r} or {P2P!r}", "invalid-mode")
        await self._one_per_identity(room_name, principal)
        self._admit(caller)
        if self.cluster is not None:
            await self.cluster.claim(room_name)  # or room-elsewhere, naming its node
        rooms = self.config.rooms
        configured = (
            P2P if any(fnmatch.fnmatchcase(room_name, p) for p in rooms.p2p_rooms) else None
        )
        existing = self.room(room_name)
        wanted = configured or mode or (existing.mode if existing else SFU)
        if existing is None:
            room = self.get_or_create_room(room_name, wanted)
        elif existing.mode != wanted:
            raise GatewayError(
                409, "mode-mismatch", f"room {room_name!r} is {existing.mode}, not {wanted}"
            )
        else:
            room = existing
        if room.mode == P2P:
            room.max_participants = rooms.p2p_max_participants
        session = self._session(room, PARTICIPANT, "ws", name, owner=caller)
        try:
            room.add_participant(session)
        except GatewayError:
            self.release_if_idle(room)
            raise
        self._track(session)
        session.chat_limit = RateLimit(rooms.chat_rate_per_s, rooms.chat_burst)
        session.on_data = self._on_data
        return session

    async def _one_per_identity(self, room_name: str, principal: Principal) -> None:
        room = self.room(room_name)
        if room is None or not self.policy.enabled or not principal.authenticated:
            return
        same = [p for p in room.participants.values() if p.identity == principal.identity]
        if not same:
            return
        if self.config.auth.duplicate_identity == "refuse":
            raise GatewayError(
                409,
                "duplicate-identity",
                f"{principal.identity!r} is already in room {room_name!r}",
            )
        # As LiveKit does: the newest connection of an identity wins.
        for session in same:
            await session.close("duplicate-identity")

    def resume(self, session_id: str, token: str, caller: Caller = LOCAL) -> Session:
        """Take back a participant whose socket dropped, within the grace period."""
        session = self.sessions.get(session_id)
        if (
            session is None
            or session.closed
            or session.role != PARTICIPANT
            or not secrets.compare_digest(session.resume_token, token)
        ):
            raise GatewayError(
                404, "cannot-resume", "no participant to resume with that id and token"
            )
        self.policy.check(
            Request(
                "session",
                session.room.name,
                "ws",
                caller.principal,
                owner=session.owner.identity,
            )
        )
        return session

    def chat(
        self, session: Session, text: Any, to: str | None, caller: Caller | None = None
    ) -> None:
        """A participant's chat message, to the room or to one participant."""
        principal = (caller or Caller(session.owner)).principal
        self.policy.check(Request("data", session.room.name, "ws", principal))
        message = chat_message(
            session.public_id,
            session.name,
            text,
            to,
            self.config.rooms.chat_max_bytes,
            session.chat_limit or RateLimit(self.config.rooms.chat_rate_per_s, 1),
        )
        session.room.chat(message)

    def _on_data(self, session: Session, text: str) -> None:
        """A message on a participant's "chat" data channel: {"text", "to"?}."""
        try:
            # A JSON envelope around a chat text of at most chat_max_bytes.
            if len(text) > 2 * self.config.rooms.chat_max_bytes + 1024:
                raise GatewayError(
                    413, "message-too-large", "the data channel message is too large"
                )
            data = json.loads(text)
            if not isinstance(data, dict):
                raise bad_request("data channel messages are JSON objects", "invalid-message")
            to = data.get("to")
            self.chat(session, data.get("text"), to if isinstance(to, str) else None)
        # ValueError covers JSONDecodeError and integers of more than 4300 digits.
        except (ValueError, RecursionError):
            session.deliver({"type": "error", "code": "invalid-json", "message": "not valid JSON"})
        except GatewayError as exc:
            session.deliver({"type": "error", "code": exc.code, "message": exc.message})

    async def renegotiate(
        self,
        session: Session,
        offer: str,
        publish: Mapping[str, str],
        subscribe: Mapping[str, str],
        caller: Caller = LOCAL,
        pipelines: Mapping[str, str] = {},
    ) -> Negotiation:
        """A participant's offer: ``publish`` maps mids to sources, ``subscribe`` mids to
        track ids of the room, ``pipelines`` some of those mids to a pipeline to receive
        the track through. Publishing and receiving pass the access policy."""
        room = session.room
        if room.mode == P2P:
            raise GatewayError(
                409,
                "p2p-room",
                f"room {room.name!r} is peer-to-peer: media never reaches the gateway",
            )
        principal = caller.principal
        if publish:
            self.policy.check(Request("publish", room.name, "ws", principal))
        for mid, source in publish.items():
            if mid not in session.published:
                self.policy.check(Request("publish", room.name, "ws", principal, source=source))
        if subscribe:
            self.policy.check(Request("subscribe", room.name, "ws", principal))
        tracks = {}
        for mid, track_id in subscribe.items():
            if room.was_unpublished(track_id):
                # Gone since the client's offer was made: answered inactive, as if
                # the client had dropped it (a race, not an error).
                continue
            tracks[mid] = room.track(track_id)  # raises unknown-track
        for track in tracks.values():
            if track.owner == session.public_id:
                raise bad_request(f"track {track.id} is your own", "own-track")
        for mid, pipeline in pipelines.items():
            if mid not in subscribe:
                raise bad_request(f"m-line {mid} has a pipeline but receives no track", "no-track")
            self.check_pipeline(room.name, pipeline, "ws", caller)
        new = [mid for mid in publish if mid not in session.published]
        limit = self.config.rooms.max_tracks_per_participant
        if len(session.publishers) + len(new) > limit:
            raise GatewayError(
                403, "too-many-tracks", f"a participant publishes at most {limit} tracks"
            )
        pipelines = {mid: name for mid, name in pipelines.items() if mid in tracks}
        result = await session.negotiate(offer, publish, tracks, pipelines=pipelines)
        for publisher in result.unpublished:
            room.track_unpublished(publisher)
        room.tracks_published(session, result.published)
        if result.published:
            self._published(room, session)
        return result

    def _session(
        self, room: Room, role: str, transport: str, name: str = "", *, owner: Caller
    ) -> Session:
        return Session(
            room,
            role,
            self.config,
            transport,
            name,
            self.renditions,
            owner=owner.principal,
            totals=self.track_totals,
        )

    async def watch(self, name: str, listener: EventListener, caller: Caller) -> dict[str, Any]:
        """``listener`` gets the room's events, now or once it exists; returns its state.
        Watching never creates a room (so it cannot fill ``rooms.max_rooms``). In a cluster
        it also gets the events of the room's home node, wherever that is."""
        name = check_room_name(name)
        self.policy.check(Request("watch", name, "ws", caller.principal))
        room = self.rooms.get(name)
        local = room is not None and not room.copy
        if room is not None and local:
            room.listen(listener)
            state = room.describe()
        else:
            self._waiting.setdefault(name, set()).add(listener)
            state = empty_room(name)
        if self.cluster is not None:
            await self.cluster.events.watch(name, listener)
            if not local and await self.cluster.home(name) is not None:
                state = await self.cluster.events.state(name) or state
        return state

    async def unwatch(self, name: str, listener: EventListener) -> None:
        room = self.rooms.get(name)
        if room is not None:
            room.unlisten(listener)
        waiting = self._waiting.get(name)
        if waiting is not None:
            waiting.discard(listener)
            if not waiting:
                del self._waiting[name]
        if self.cluster is not None:
            await self.cluster.events.unwatch(name, listener)

    def _share(self, room: Room, event: dict[str, Any]) -> None:
        """A room homed here tells the cluster (its watchers on other nodes)."""
        if self.cluster is not None and room.name in self.cluster.homed:
            self.cluster.events.publish(room.name, event, room.describe())

    def _rendition_event(self, room_name: str, rendition: Rendition, event: Any) -> None:
        room = self.rooms.get(room_name)
        if room is not None:
            room.emit(
                {
                    "type": "processor-disabled",
                    "room": room_name,
                    "track": rendition.source.id,
                    "rendition": rendition.id,
                    "pipeline": rendition.pipeline_name,
                    "stage": event.stage,
                    "message": event.message,
                }
            )

    def _published(self, room: Room, session: Session) -> None:
        for hook in self.on_publish:
            try:
                hook(room, session)
            except Exception:
                logger.exception("publish hook failed")

    def _track(self, session: Session) -> None:
        self.sessions[session.id] = session
        session.on_close(self._forget)

    def _forget(self, session: Session) -> None:
        if self.sessions.pop(session.id, None) is not None:
            self._egress_retired += session.egress_bytes
        self.release_if_idle(session.room)

    def release_if_idle(self, room: Room) -> None:
        # Deferred: the closing session is still attached to the room right now.
        asyncio.get_running_loop().call_soon(self._drop_if_idle, room)

    def _drop_if_idle(self, room: Room) -> None:
        if room.idle and self.rooms.get(room.name) is room:
            del self.rooms[room.name]
            # Its watchers wait for the next room of that name.
            listeners = room.take_listeners()
            if listeners and not room.copy:
                self._waiting.setdefault(room.name, set()).update(listeners)
            logger.info("room %s is idle and released", room.name)
            for hook in self.on_release:
                try:
                    hook(room)
                except Exception:
                    logger.exception("room release hook failed")

    async def close_sessions(self, reason: str = "shutdown") -> None:
        sessions = list(self.sessions.values())
        await asyncio.gather(*(s.close(reason) for s in sessions), return_exceptions=True)

    async def close(self) -> None:
        await self.close_sessions()
        if self.pipe is not None:
            await self.pipe.close()
        if self.relays is not None:
            await self.relays.close()
        for room in self.rooms.values():
            room.release()  # streams kept for a return end too
        self.renditions.close()
        self.rooms.clear()

    def full(self) -> str | None:
        """Why this node takes no more viewers (server.max_viewers, max_cpu), if it does not."""
        server = self.config.server
        if server.max_viewers and self.viewers() >= server.max_viewers:
            return f"this gateway serves its maximum of {server.max_viewers} viewers"
        if server.max_cpu and self.cpu.rate() >= server.max_cpu:
            return f"this gateway uses more than {server.max_cpu:g} of a core"
        if server.max_egress_mbps and self.egress_mbps() >= server.max_egress_mbps:
            return f"this gateway sends more than {server.max_egress_mbps:g} Mbps"
        return None

    def _egress_bytes(self) -> float:
        live = sum(session.egress_bytes for session in self.sessions.values())
        return float(self._egress_retired + live)

    def egress_mbps(self) -> float:
        """Media this node sent over the last second (every viewer and relay), in Mbps."""
        return self.egress.rate() * 8 / 1e6

    def viewers(self) -> int:
        return sum(len(room.subscribers) for room in self.rooms.values())

    def load(self) -> dict[str, Any]:
        """What this node tells the cluster in its heartbeat."""
        return {
            "rooms": len(self.rooms),
            "sessions": len(self.sessions),
            "viewers": self.viewers(),
            "max_viewers": self.config.server.max_viewers,
            "cpu": round(self.cpu.rate(), 3),
            "max_cpu": self.config.server.max_cpu,
            "egress_mbps": round(self.egress_mbps(), 3),
            "max_egress_mbps": self.config.server.max_egress_mbps,
            # Other nodes' relays fed from here, against cluster.max_relays.
            "relays_out": sum(1 for s in self.sessions.values() if s.feeds_relay)
            + (self.pipe.links if self.pipe is not None else 0),
            "max_relays": self.config.cluster.max_relays,
            "draining": self.drain.draining,
        }

    async def _place_viewer(self) -> None:
        """A new viewer where there is room: here under server.max_viewers and max_cpu,
        else (307) the cluster node with the most room left, else 503."""
        why = self.full()
        if why is None:
            return
        self.admission.refuse("viewers")
        if self.cluster is not None:
            node = await self.cluster.roomiest()
            if node is not None:
                raise GatewayFull(node)
        raise GatewayError(503, "gateway-full", why, 5)

    def _cluster_stats(self) -> dict[str, Any] | None:
        if self.cluster is None or self.relays is None:
            return None
        return {
            "node": self.cluster.id,
            "homed": len(self.cluster.homed),
            "heartbeat_errors": self.cluster.heartbeat_errors,
            "relays": self.relays.stats(),
            "pipe": self.pipe.stats() if self.pipe is not None else None,
        }

    def stats(self) -> dict[str, Any]:
        rooms = [room.stats() for room in self.rooms.values()]
        tracks = [track for room in rooms for track in room["tracks"]]
        return {
            "rooms": rooms,
            # Loss repair over every live track (per track in rooms[].tracks[]).
            "loss": {key: sum(track[key] for track in tracks) for key in LOSS_TOTALS},
            "sessions": len(self.sessions),
            "cluster": self._cluster_stats(),
            "processing": self.renditions.stats(),
            "limits": self.admission.stats(),
            "auth": {
                "enabled": self.policy.enabled,
                "tokens_verified": self.policy.verifier.verified,
                "tokens_refused": self.policy.verifier.refused,
                "requests_refused": self.policy.refused,
            },
        }
