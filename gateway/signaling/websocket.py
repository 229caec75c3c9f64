"""The WebSocket signaling endpoint: publish, subscribe, trickle ICE, room events."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from ..appkeys import CONFIG, REGISTRY, SOCKETS
from ..errors import GatewayError, bad_request
from ..recording.api import RECORDINGS, describe_recorder
from ..recording.controller import RecordingController
from ..rooms.registry import Registry
from ..rooms.room import Room
from ..rooms.session import Session
from . import ice, messages, sdp

logger = logging.getLogger(__name__)


class Channel:
    """One WebSocket client: the sessions it opened and the rooms it watches.

    Its sessions end when the socket closes. Messages are handled one at a time,
    in order, so a client's candidates never overtake the offer they belong to.
    """

    def __init__(self, ws: web.WebSocketResponse, registry: Registry) -> None:
        self.ws = ws
        self.registry = registry
        self.sessions: dict[str, Session] = {}
        self.watching: dict[str, Room] = {}
        self.participant: Session | None = None  # after `join`
        self.closed = False
        self.recordings: RecordingController | None = None
        self._trickled: set[str] = set()  # sessions whose candidates were sent
        # Events are queued and written by one task: room events fire from
        # synchronous callbacks, and writes to one socket must not interleave.
        self._outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=1000)
        self.dropped_events = 0

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
            message = messages.parse(text)
            request_id = message.request_id
            await self._dispatch(message)
        except messages.ProtocolError as exc:
            self.send(messages.error(exc, exc.request_id))
        except GatewayError as exc:
            self.send(messages.error(exc, request_id))
        except Exception:
            logger.exception("websocket message failed")
            self.send(
                messages.error(GatewayError(500, "internal-error", "internal error"), request_id)
            )

    async def _dispatch(self, message: messages.Message) -> None:
        kind = message.type
        if kind == "ping":
            self.send({"type": "pong", "id": message.request_id})
        elif kind in ("publish", "subscribe"):
            await self._negotiate(message)
        elif kind == "candidate":
            session = self._own(message["session"])
            candidate = message.get("candidate")
            if candidate is None:
                await session.add_candidate(None)
            else:
                await session.add_candidate(
                    candidate["candidate"], candidate.get("sdpMid"), candidate.get("sdpMLineIndex")
                )
        elif kind == "leave":
            session = self._own(message["session"])
            await session.close("left")
        elif kind == "watch":
            self._watch(message["room"])
        elif kind == "join":
            self._join(message)
        elif kind == "resume":
            self._resume(message)
        elif kind == "offer":
            await self._offer(message)
        elif kind in ("unpublish", "mute"):
            self._change_track(message)
        elif kind == "chat":
            to = message.get("to")
            if to is not None and not isinstance(to, str):
                raise bad_request("'to' must be a participant id", "invalid-message")
            self.registry.chat(self._joined(), message["text"], to)
        elif kind == "signal":
            session = self._joined()
            session.room.relay(session, message["to"], message.get("data"))
        elif kind in ("record-start", "record-stop"):
            await self._record(message)
        elif kind == "pipeline":
            self._switch_pipeline(message)
        elif kind == "pipeline-update":
            result = self.registry.renditions.update(
                message["rendition"],
                message["stage"],
                message.get("params", {}),
                message.get("enable", False),
            )
            self.send({"type": "pipeline-updated", "id": message.request_id, **result})
        elif kind == "unwatch":
            room = self.watching.pop(message["room"], None)
            if room is not None:
                room.unlisten(self.send)
                self.registry.release_if_idle(room)

    async def _negotiate(self, message: messages.Message) -> None:
        room = message["room"]
        if message.type == "publish":
            session, answer = await self.registry.publish(room, message["sdp"], "ws")
        else:
            session, answer = await self.registry.subscribe(
                room, message["sdp"], "ws", pipeline=message.get("pipeline")
            )
        self.sessions[session.id] = session
        session.on_close(self._session_closed)
        self._send_answer(session, answer, message.request_id)

    def _send_answer(self, session: Session, answer: str, request_id: Any) -> None:
        self.send(
            {
                "type": "answer",
                "id": request_id,
                "session": session.id,
                "room": session.room.name,
                "role": session.role,
                "sdp": sdp.strip_candidates(answer),
                # Per mid: the track and pipeline (with its rendition id) it receives.
                "receiving": session.receiving(),
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

    def _join(self, message: messages.Message) -> None:
        if self.participant is not None:
            raise bad_request("this socket has already joined a room", "already-joined")
        mode = message.get("mode")
        if mode is not None and not isinstance(mode, str):
            raise bad_request("'mode' must be a string", "invalid-message")
        session = self.registry.join(message["room"], message["name"], mode)
        self._adopt(session)
        self.send(
            {
                "type": "joined",
                "id": message.request_id,
                "participant": session.id,
                "resume_token": session.resume_token,
                "room": session.room.describe(),
            }
        )
        session.room.listen(self.send)

    def _resume(self, message: messages.Message) -> None:
        if self.participant is not None:
            raise bad_request("this socket has already joined a room", "already-joined")
        session = self.registry.resume(message["participant"], message["token"])
        self._adopt(session)
        self._trickled.add(session.id)  # its transport, and candidates, are unchanged
        session.reattach(self.send)
        self.send(
            {
                "type": "resumed",
                "id": message.request_id,
                "participant": session.id,
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

    async def _offer(self, message: messages.Message) -> None:
        session = self._joined()
        result = await self.registry.renegotiate(
            session,
            message["sdp"],
            message.get("publish", {}),
            message.get("subscribe", {}),
            pipelines=message.get("pipelines", {}),
        )
        self._send_answer(session, result.answer, message.request_id)

    def _change_track(self, message: messages.Message) -> None:
        session = self._joined()
        publisher = next((p for p in session.publishers if p.id == message["track"]), None)
        if publisher is None:
            raise GatewayError(404, "unknown-track", f"you publish no track {message['track']!r}")
        if message.type == "unpublish":
            session.unpublish(publisher)
            session.room.track_unpublished(publisher)
        else:
            publisher.set_muted(message["muted"])
            session.room.track_muted(publisher)

    def _switch_pipeline(self, message: messages.Message) -> None:
        """One of this socket's sessions receives through another pipeline (or none)."""
        session_id = message.get("session")
        if session_id is not None:
            session = self._own(session_id)
        else:
            session = self._joined()
        pipeline = message.get("pipeline")
        switched = session.switch_pipeline(pipeline, message.get("mid"))
        self.send(
            {
                "type": "pipeline-switched",
                "id": message.request_id,
                "session": session.id,
                "pipeline": pipeline,
                "mids": switched,
                "receiving": session.receiving(),
            }
        )

    async def _record(self, message: messages.Message) -> None:
        assert self.recordings is not None
        room, start = message["room"], message.type == "record-start"
        if start:
            recorders = await self.recordings.start(room, "ws", message.get("pipeline"))
        else:
            recorders = await self.recordings.stop(room, transport="ws")
        self.send(
            {
                "type": "recording",
                "id": message.request_id,
                "room": room,
                "recording": start,
                "recordings": [describe_recorder(r) for r in recorders],
            }
        )

    def _own(self, session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None:
            raise GatewayError(404, "unknown-session", f"no session {session_id!r} on this socket")
        return session

    def _watch(self, name: str) -> None:
        if name in self.watching:
            raise bad_request(f"already watching room {name!r}", "already-watching")
        room = self.registry.get_or_create_room(name)
        self.watching[name] = room
        room.listen(self.send)
        self.send({"type": "room-state", **room.describe()})

    def _session_closed(self, session: Session) -> None:
        if self.closed:
            return  # a participant detached from this socket, ending later
        self.sessions.pop(session.id, None)
        if session is self.participant:
            session.room.unlisten(self.send)
        self.send({"type": "session-ended", "session": session.id, "reason": session.close_reason})

    async def close(self) -> None:
        for room in self.watching.values():
            room.unlisten(self.send)
            self.registry.release_if_idle(room)
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


async def handler(request: web.Request) -> web.WebSocketResponse:
    config = request.app[CONFIG]
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=config.server.max_body_bytes)
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    channel = Channel(ws, request.app[REGISTRY])
    channel.recordings = request.app[RECORDINGS]
    writer = asyncio.ensure_future(channel.writer())
    channel.send(
        {
            "type": "hello",
            "protocol": messages.PROTOCOL_VERSION,
            "ice_servers": ice.client_ice_servers(config.ice),
        }
    )
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
        request.app[SOCKETS].discard(ws)
        await channel.close()
        try:
            await asyncio.wait_for(writer, timeout=1)
        except (TimeoutError, asyncio.CancelledError):
            writer.cancel()
    return ws


async def close_all(app: web.Application) -> None:
    """On shutdown: without this, open sockets hold the server up until its timeout."""
    sockets = app[SOCKETS]
    for ws in list(sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
