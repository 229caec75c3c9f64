"""The WebSocket signaling endpoint: publish, subscribe, trickle ICE, room events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from ..appkeys import CONFIG, REGISTRY, SOCKETS
from ..auth import http as auth_http
from ..auth.principal import Caller, Principal
from ..auth.signed_urls import UrlSigner
from ..auth.tokens import unauthorized
from ..cluster.node import RoomElsewhere
from ..cluster.signal_relay import SignalRelay
from ..errors import GatewayError, bad_request
from ..limits.buckets import RateLimit
from ..media.publisher import Publisher
from ..recording.api import RECORDINGS, URL_SIGNER, describe_recorder
from ..recording.controller import RecordingController
from ..rooms.policy import Request
from ..rooms.registry import Registry
from ..rooms.session import Session
from . import ice, messages, sdp

logger = logging.getLogger(__name__)


class Channel:
    """One WebSocket client: the sessions it opened and the rooms it watches.

    Its sessions end when the socket closes. Messages are handled one at a time,
    in order, so a client's candidates never overtake the offer they belong to.
    """

    def __init__(
        self,
        ws: web.WebSocketResponse,
        registry: Registry,
        caller: Caller | None = None,
        address: str | None = None,
    ) -> None:
        self.ws = ws
        self.registry = registry
        # None until the client authenticates (`auth`, or ?access_token= on connect).
        self.caller = caller
        self.address = address
        self.sessions: dict[str, Session] = {}
        self.watching: set[str] = set()
        self.participant: Session | None = None  # after `join`
        self.closed = False
        self.recordings: RecordingController | None = None
        self.signer: UrlSigner | None = None
        self._trickled: set[str] = set()  # sessions whose candidates were sent
        # Events are queued and written by one task: room events fire from
        # synchronous callbacks, and writes to one socket must not interleave.
        self._outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=1000)
        self.dropped_events = 0
        limits = registry.config.limits
        self._rate = RateLimit(limits.ws_messages_per_s, limits.ws_messages_burst)
        self.authenticated = asyncio.Event()
        if caller is not None:
            self.authenticated.set()
        # A socket that joined (or published in) a room homed on another cluster node is
        # carried on to that node: from then on its messages go there (SignalRelay).
        self.relay: SignalRelay | None = None
        self.query = ""  # the socket URL's query (?access_token=), replayed upstream
        self.forward_headers: dict[str, str] = {}  # Origin and Host, for the home's checks
        self._auth_texts: list[str] = []
        self._relay_end: asyncio.Task[bool] | None = None

    def send(self, message: dict[str, Any]) -> None:
        try:
            self._outbox.put_nowait(message)
        except asyncio.QueueFull:
            # A client that does not read its socket loses events, not the server's memory.
            self.dropped_events += 1

    async def writer(self) -> None:
        while (message := await self._outbox.get()) is not None:
            if self.ws.closed:
                break
            try:
                await self.ws.send_str(json.dumps(message))
            except (ConnectionError, RuntimeError):
                break

    async def handle(self, text: str) -> None:
        request_id = None
        try:
            if not self._rate.take():
                self.registry.admission.refuse("ws_messages")
                raise GatewayError(
                    429,
                    "rate-limited",
                    f"at most {self._rate.rate:g} messages per second (bursts of "
                    f"{self._rate.burst})",
                    retry_after_s=self._rate.retry_after_s,
                )
            if self.relay is not None:
                await self.relay.send(text)  # the home node answers it
                return
            message = messages.parse(text)
            request_id = message.request_id
            # `ping` before `auth` too: it only says the socket is alive.
            if self.caller is None and not isinstance(message, messages.Auth | messages.Ping):
                raise unauthorized("send an `auth` message with a token first", "token-required")
            await _HANDLERS[type(message)](self, message)
        except messages.ProtocolError as exc:
            self.send(messages.error(exc, exc.request_id))
        except GatewayError as exc:
            self.send(messages.error(exc, request_id))
        except Exception:
            logger.exception("websocket message failed")
            self.send(
                messages.error(GatewayError(500, "internal-error", "internal error"), request_id)
            )

    @property
    def principal(self) -> Principal:
        assert self.caller is not None
        return self.caller.principal

    @property
    def _caller(self) -> Caller:
        """Who acts: set for every message but `auth` and `ping` (see handle)."""
        assert self.caller is not None
        return self.caller

    async def _auth(self, message: messages.Auth) -> None:
        """A token for this socket (first, or a fresh one before the old expires)."""
        policy = self.registry.policy
        principal = await policy.authenticate(message.token)
        if self.caller is not None and principal.identity != self.principal.identity:
            if self.sessions:
                raise GatewayError(
                    409,
                    "identity-mismatch",
                    f"this socket acts for {self.principal.identity!r}; a new identity "
                    "needs a new socket",
                )
        self.caller = Caller(principal, self.address)
        self.authenticated.set()
        self._auth_texts = [json.dumps(message.fields)]  # for a home node, if relayed
        self.send(
            {
                "type": "authenticated",
                "id": message.request_id,
                "identity": principal.identity if principal.authenticated else None,
                "name": principal.name,
                "expires_at": principal.expires_at,
                "ice_servers": self._ice_servers(),
            }
        )

    async def _ping(self, message: messages.Ping) -> None:
        self.send({"type": "pong", "id": message.request_id})

    def _ice_servers(self) -> list[dict[str, object]]:
        if self.caller is None:
            return []
        return ice.client_ice_servers(self.registry.config.ice, self.principal)

    def _check(self, action: str, room: str, **narrowing: Any) -> None:
        self.registry.policy.check(Request(action, room, "ws", self.principal, **narrowing))

    async def _publish(self, message: messages.Publish) -> None:
        # A 'pipeline' is checked (see messages) but a publisher's tracks go out unprocessed.
        try:
            session, answer = await self.registry.publish(
                message.room, message.sdp, "ws", self._caller
            )
        except RoomElsewhere as elsewhere:
            await self._relay_or_raise(elsewhere, message)
            return
        self._opened(session, answer, message.request_id)

    async def _relay_or_raise(self, elsewhere: RoomElsewhere, message: messages.Message) -> None:
        """A room homed on another node: a socket with nothing here yet is carried on to
        it (the client's peer connection is then with that node); else room-elsewhere."""
        if self.sessions or self.watching or self.registry.cluster is None:
            raise elsewhere
        relay = SignalRelay(self._from_home, self._relay_closed)
        try:
            await relay.open(
                elsewhere.node.url,
                self.query,
                self.forward_headers,
                replay=self._auth_texts,
                first=json.dumps(message.fields),
                max_msg_size=self.registry.config.server.max_body_bytes,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise GatewayError(
                502, "relay-failed", f"the room's home node cannot be reached: {exc}"
            ) from exc
        self.relay = relay
        self.registry.cluster.signal_relays += 1

    async def _from_home(self, text: str) -> None:
        # Through the outbox, in order with what this node sends the client itself.
        with contextlib.suppress(ValueError):
            self.send(json.loads(text))

    def _relay_closed(self) -> None:
        if not self.closed and self._relay_end is None:
            self._relay_end = asyncio.ensure_future(self.ws.close())

    async def _subscribe(self, message: messages.Subscribe) -> None:
        session, answer = await self.registry.subscribe(
            message.room, message.sdp, "ws", self._caller, pipeline=message.pipeline
        )
        self._opened(session, answer, message.request_id)

    def _opened(self, session: Session, answer: str, request_id: Any) -> None:
        self.sessions[session.id] = session
        session.on_close(self._session_closed)
        # A simulcast publisher is told on this socket which layers anyone takes.
        session.media.on_layers = lambda layers: self.send({**layers, "session": session.id})
        self._send_answer(session, answer, request_id)

    async def _candidate(self, message: messages.Candidate) -> None:
        session = self._own(message.session)
        self._check("session", session.room.name, owner=session.owner.identity)
        candidate = message.candidate
        if candidate is None:
            await session.add_candidate(None)
        else:
            await session.add_candidate(
                candidate.candidate, candidate.sdp_mid, candidate.sdp_mline_index
            )

    async def _leave(self, message: messages.Leave) -> None:
        session = self._own(message.session)
        await session.close("left")

    def _send_answer(self, session: Session, answer: str, request_id: Any) -> None:
        self.send(
            {
                "type": "answer",
                "id": request_id,
                "session": session.id,
                # What others see of this session (room events, stats): never the id above.
                "participant": session.public_id,
                "room": session.room.name,
                "role": session.role,
                "sdp": sdp.strip_candidates(answer),
                # Per mid: the track and pipeline (with its rendition id) it receives.
                "receiving": session.media.receiving(),
            }
        )
        if session.id in self._trickled:
            return  # a renegotiation: the transport and its candidates are unchanged
        self._trickled.add(session.id)
        # Our candidates are trickled: the same path a gatherer that finishes
        # after the answer would take.
        for index, mid, candidate in sdp.candidate_lines(answer):
            self.send(
                {
                    "type": "candidate",
                    "session": session.id,
                    "candidate": {"candidate": candidate, "sdpMid": mid, "sdpMLineIndex": index},
                }
            )
        self.send({"type": "candidate", "session": session.id, "candidate": None})

    async def _join(self, message: messages.Join) -> None:
        if self.participant is not None:
            raise bad_request("this socket has already joined a room", "already-joined")
        try:
            session = await self.registry.join(
                message.room, message.name, message.mode, self._caller
            )
        except RoomElsewhere as elsewhere:
            await self._relay_or_raise(elsewhere, message)
            return
        self._adopt(session)
        self.send(
            {
                "type": "joined",
                "id": message.request_id,
                # Public: how the room knows us. Private: our session (candidates, leave,
                # resume), never shown to anyone else.
                "participant": session.public_id,
                "session": session.id,
                "identity": session.identity,
                "name": session.name,
                "resume_token": session.resume_token,
                "room": session.room.describe(),
                "ice_servers": self._ice_servers(),
            }
        )
        session.room.listen(self.send)

    async def _resume(self, message: messages.Resume) -> None:
        if self.participant is not None:
            raise bad_request("this socket has already joined a room", "already-joined")
        session = self.registry.resume(message.session, message.token, self._caller)
        self._adopt(session)
        self._trickled.add(session.id)  # its transport, and candidates, are unchanged
        session.reattach(self.send)
        self.send(
            {
                "type": "resumed",
                "id": message.request_id,
                "participant": session.public_id,
                "session": session.id,
                "room": session.room.describe(),
            }
        )
        session.flush_held()  # chat and signals that came while the socket was down
        session.room.listen(self.send)

    def _adopt(self, session: Session) -> None:
        session.notify = self.send
        self.participant = session
        self.sessions[session.id] = session
        session.on_close(self._session_closed)

    def _joined(self) -> Session:
        if self.participant is None or self.participant.closed:
            raise GatewayError(409, "not-joined", "join a room first")
        return self.participant

    async def _offer(self, message: messages.Offer) -> None:
        session = self._joined()
        result = await self.registry.renegotiate(
            session,
            message.sdp,
            message.publish,
            message.subscribe,
            self._caller,
            pipelines=message.pipelines,
        )
        self._send_answer(session, result.answer, message.request_id)

    async def _unpublish(self, message: messages.Unpublish) -> None:
        session, publisher = self._my_track(message.track)
        session.unpublish(publisher)
        session.room.track_unpublished(publisher)

    async def _mute(self, message: messages.Mute) -> None:
        session, publisher = self._my_track(message.track)
        publisher.set_muted(message.muted)
        session.room.track_muted(publisher)

    def _my_track(self, track: str) -> tuple[Session, Publisher]:
        session = self._joined()
        publisher = next((p for p in session.publishers if p.id == track), None)
        if publisher is None:
            raise GatewayError(404, "unknown-track", f"you publish no track {track!r}")
        return session, publisher

    async def _chat(self, message: messages.Chat) -> None:
        self.registry.chat(self._joined(), message.text, message.to, self._caller)

    async def _signal(self, message: messages.Signal) -> None:
        session = self._joined()
        self._check("join", session.room.name)
        session.room.relay(session, message.to, message.data)

    async def _pipeline(self, message: messages.Pipeline) -> None:
        """One of this socket's sessions receives through another pipeline (or none)."""
        if message.session is not None:
            session = self._own(message.session)
        else:
            session = self._joined()
        pipeline = message.pipeline
        if pipeline is not None:
            self.registry.check_pipeline(session.room.name, pipeline, "ws", self._caller)
        switched = session.switch_pipeline(pipeline, message.mid)
        self.send(
            {
                "type": "pipeline-switched",
                "id": message.request_id,
                "session": session.id,
                "pipeline": pipeline,
                "mids": switched,
                "receiving": session.media.receiving(),
            }
        )

    async def _layer(self, message: messages.Layer) -> None:
        """One of this socket's sessions receives another simulcast layer."""
        session = self._own(message.session) if message.session is not None else self._joined()
        self._check("subscribe", session.room.name)
        switched = session.switch_layer(
            message.layer, message.mid, message.max_width, message.max_height, message.max_fps
        )
        self.send(
            {
                "type": "layer-switched",
                "id": message.request_id,
                "session": session.id,
                "mids": switched,
                "receiving": session.media.receiving(),
            }
        )

    async def _pipeline_update(self, message: messages.PipelineUpdate) -> None:
        target = self.registry.renditions.get(message.rendition)
        self._check("control", target.room)
        result = await self.registry.renditions.update(
            message.rendition, message.stage, message.params, message.enable
        )
        self.send({"type": "pipeline-updated", "id": message.request_id, **result})

    async def _record(self, message: messages.RecordStart | messages.RecordStop) -> None:
        assert self.recordings is not None and self.signer is not None
        if isinstance(message, messages.RecordStart):
            recorders = await self.recordings.start(
                message.room, "ws", message.pipeline, principal=self.principal
            )
        else:
            recorders = await self.recordings.stop(
                message.room, transport="ws", principal=self.principal
            )
        self.send(
            {
                "type": "recording",
                "id": message.request_id,
                "room": message.room,
                "recording": isinstance(message, messages.RecordStart),
                "recordings": [describe_recorder(r, self.signer) for r in recorders],
            }
        )

    def _own(self, session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None:
            raise GatewayError(404, "unknown-session", f"no session {session_id!r} on this socket")
        return session

    async def _watch(self, message: messages.Watch) -> None:
        name = message.room
        if name in self.watching:
            raise bad_request(f"already watching room {name!r}", "already-watching")
        limit = self.registry.config.limits.max_watched_rooms
        if len(self.watching) >= limit:
            self.registry.admission.refuse("watched_rooms")
            raise GatewayError(
                429, "too-many-watches", f"a socket watches at most {limit} rooms", retry_after_s=1
            )
        self.watching.add(name)  # first: events may come while it is being set up
        try:
            state = await self.registry.watch(name, self.send, self._caller)
        except BaseException:
            self.watching.discard(name)
            raise
        self.send({"type": "room-state", **state})

    async def _unwatch(self, message: messages.Unwatch) -> None:
        if message.room in self.watching:
            self.watching.discard(message.room)
            await self.registry.unwatch(message.room, self.send)

    def _session_closed(self, session: Session) -> None:
        if self.closed:
            return  # a participant detached from this socket, ending later
        self.sessions.pop(session.id, None)
        if session is self.participant:
            session.room.unlisten(self.send)
        self.send({"type": "session-ended", "session": session.id, "reason": session.close_reason})

    async def close(self) -> None:
        if self.relay is not None:
            await self.relay.close()
        for name in list(self.watching):
            await self.registry.unwatch(name, self.send)
        self.watching.clear()
        self.closed = True
        participant = self.participant
        if participant is not None and not participant.closed:
            # The participant outlives its socket for a grace period (see `resume`).
            participant.room.unlisten(self.send)
            self.sessions.pop(participant.id, None)
            participant.detach(self.registry.config.rooms.reconnect_grace_s)
        sessions = list(self.sessions.values())
        self.sessions.clear()
        await asyncio.gather(*(s.close("socket-closed") for s in sessions), return_exceptions=True)
        if self._outbox.full():
            self._outbox.get_nowait()
        self._outbox.put_nowait(None)  # ends the writer


_Handler = Callable[["Channel", messages.Message], Awaitable[None]]
_M = TypeVar("_M", bound=messages.Message)


def _route(
    kind: type[_M], handler: Callable[[Channel, _M], Awaitable[None]]
) -> tuple[type[messages.Message], _Handler]:
    """A table entry; mypy checks that ``handler`` takes messages of ``kind``."""

    async def handle(channel: Channel, message: messages.Message) -> None:
        assert isinstance(message, kind)
        await handler(channel, message)

    return kind, handle


# One handler per client message type; Channel.handle lets only `auth` and `ping`
# through before the socket has a caller.
_HANDLERS: dict[type[messages.Message], _Handler] = dict(
    [
        _route(messages.Auth, Channel._auth),
        _route(messages.Ping, Channel._ping),
        _route(messages.Publish, Channel._publish),
        _route(messages.Subscribe, Channel._subscribe),
        _route(messages.Candidate, Channel._candidate),
        _route(messages.Leave, Channel._leave),
        _route(messages.Watch, Channel._watch),
        _route(messages.Unwatch, Channel._unwatch),
        _route(messages.Join, Channel._join),
        _route(messages.Resume, Channel._resume),
        _route(messages.Offer, Channel._offer),
        _route(messages.Unpublish, Channel._unpublish),
        _route(messages.Mute, Channel._mute),
        _route(messages.Chat, Channel._chat),
        _route(messages.Signal, Channel._signal),
        _route(messages.RecordStart, Channel._record),
        _route(messages.RecordStop, Channel._record),
        _route(messages.Pipeline, Channel._pipeline),
        _route(messages.Layer, Channel._layer),
        _route(messages.PipelineUpdate, Channel._pipeline_update),
    ]
)


async def handler(request: web.Request) -> web.WebSocketResponse:
    config = request.app[CONFIG]
    registry = request.app[REGISTRY]
    auth_http.check_origin(request)  # before the upgrade: a refused page gets a 403
    address = auth_http.client_address(request)
    # A token may come in the URL (browsers cannot set headers on a WebSocket) or in a
    # first `auth` message; a bad one in the URL is refused before the upgrade.
    token = request.query.get("access_token") or None
    caller: Caller | None = None
    try:
        caller = await auth_http.caller(request, token if token is not None else "")
    except GatewayError as exc:
        if token is not None or exc.code != "token-required":
            raise
    registry.admission.open_socket(address)
    try:
        return await _serve(request, registry, caller, address, config.auth.ws_auth_timeout_s)
    finally:
        registry.admission.close_socket(address)


async def _serve(
    request: web.Request,
    registry: Registry,
    caller: Caller | None,
    address: str | None,
    auth_timeout_s: float,
) -> web.WebSocketResponse:
    config = request.app[CONFIG]
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=config.server.max_body_bytes)
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    channel = Channel(ws, registry, caller, address)
    channel.query = request.query_string
    channel.forward_headers = {
        name: request.headers[name] for name in ("Origin", "Host") if name in request.headers
    }
    channel.recordings = request.app[RECORDINGS]
    channel.signer = request.app[URL_SIGNER]
    writer = asyncio.ensure_future(channel.writer())
    watchdog = asyncio.ensure_future(_close_unauthenticated(channel, auth_timeout_s))
    channel.send(
        {
            "type": "hello",
            "protocol": messages.PROTOCOL_VERSION,
            "auth_required": caller is None,
            "identity": caller.principal.identity
            if caller is not None and caller.principal.authenticated
            else None,
            "ice_servers": channel._ice_servers(),
        }
    )
    registry.drain.listen(channel.send)  # `going-away` on shutdown (now, if it has begun)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await channel.handle(msg.data)
            elif msg.type == WSMsgType.BINARY:
                channel.send(
                    messages.error(bad_request("binary messages are not part of the protocol"))
                )
            elif msg.type == WSMsgType.ERROR:
                # Includes messages over max_msg_size: aiohttp then closes with 1009.
                logger.info("websocket error: %s", ws.exception())
    finally:
        watchdog.cancel()
        registry.drain.unlisten(channel.send)
        request.app[SOCKETS].discard(ws)
        await channel.close()
        try:
            await asyncio.wait_for(writer, timeout=1)
        except (TimeoutError, asyncio.CancelledError):
            writer.cancel()
    return ws


AUTH_TIMEOUT_CLOSE = 4401  # an application close code (4000-4999): "no token in time"


async def _close_unauthenticated(channel: Channel, timeout_s: float) -> None:
    """A socket that never authenticates holds a slot for at most ``timeout_s``."""
    try:
        await asyncio.wait_for(channel.authenticated.wait(), timeout_s)
    except TimeoutError:
        channel.send(messages.error(unauthorized("no `auth` message in time", "token-required")))
        await asyncio.sleep(0.05)  # let the writer send it
        await channel.ws.close(code=AUTH_TIMEOUT_CLOSE, message=b"authentication timeout")


async def close_all(app: web.Application) -> None:
    """On shutdown: without this, open sockets hold the server up until its timeout."""
    sockets = app[SOCKETS]
    for ws in list(sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
