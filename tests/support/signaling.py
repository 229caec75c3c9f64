"""A WebSocket signaling client for tests: publishes and watches with aiortc peers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from aiortc import MediaStreamTrack, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from gateway.signaling import sdp as sdp_tools

from .peers import Received, _consume, new_peer, prefer


class WsClient:
    """One signaling socket; messages other than replies are kept in ``events``."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.ensure_future(self._read())
        self._next_id = 0

    @classmethod
    async def connect(
        cls, http: aiohttp.ClientSession, base: str, token: str | None = None
    ) -> WsClient:
        ws = await http.ws_connect(base.replace("http", "ws", 1) + "/ws")
        client = cls(ws)
        hello = await client.next("hello")
        assert hello["protocol"] == 2
        if token is not None:
            await client.send({"type": "auth", "token": token})
            reply = await client.next("authenticated", "error")
            assert reply["type"] == "authenticated", reply
        return client

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                message = json.loads(msg.data)
                self.events.append(message)
                await self.inbox.put(message)

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message))

    async def request(self, message: dict[str, Any]) -> int:
        self._next_id += 1
        await self.send({**message, "id": self._next_id})
        return self._next_id

    async def next(self, *types: str, timeout: float = 15.0) -> dict[str, Any]:
        """The next message of one of ``types`` (others stay in ``events``)."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.inbox.get()
                if not types or message["type"] in types:
                    return message

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


async def _negotiate(
    client: WsClient, pc: Any, kind: str, room: str, extra: dict[str, Any] | None = None
) -> str:
    """Offer without candidates, then trickle ours and apply the gateway's."""
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    request_id = await client.request(
        {"type": kind, "room": room, "sdp": sdp_tools.strip_candidates(offer), **(extra or {})}
    )
    reply = await client.next("answer", "error")
    assert reply.get("id") == request_id, reply
    assert reply["type"] == "answer", reply
    session = str(reply["session"])
    await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type="answer"))
    await trickle(client, pc, session, offer)
    return session


async def trickle(client: WsClient, pc: Any, session: str, offer: str) -> None:
    """Send our candidates (those in ``offer``) and end-of-candidates, then apply the
    gateway's for ``session`` until its end-of-candidates."""
    for index, mid, line in sdp_tools.candidate_lines(offer):
        await client.send(
            {
                "type": "candidate",
                "session": session,
                "candidate": {"candidate": line, "sdpMid": mid, "sdpMLineIndex": index},
            }
        )
    await client.send({"type": "candidate", "session": session, "candidate": None})
    while True:
        message = await client.next("candidate")
        if message["session"] != session:
            continue
        if message["candidate"] is None:
            break
        candidate = candidate_from_sdp(message["candidate"]["candidate"].split(":", 1)[1])
        candidate.sdpMid = message["candidate"]["sdpMid"]
        candidate.sdpMLineIndex = message["candidate"]["sdpMLineIndex"]
        await pc.addIceCandidate(candidate)


async def ws_publish(
    client: WsClient, room: str, tracks: list[MediaStreamTrack], video_codec: str = "VP8"
) -> tuple[Any, str]:
    pc = new_peer()
    for track in tracks:
        transceiver = pc.addTransceiver(track, direction="sendonly")
        prefer(transceiver, track.kind, video_codec if track.kind == "video" else "opus")
    session = await _negotiate(client, pc, "publish", room)
    return pc, session


async def ws_subscribe(
    client: WsClient, room: str, pipeline: str | None = None
) -> tuple[Any, str, Received, list[asyncio.Task[None]]]:
    pc = new_peer()
    received = Received()
    tasks: list[asyncio.Task[None]] = []

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        tasks.append(asyncio.ensure_future(_consume(track, received, True)))

    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    extra = {"pipeline": pipeline} if pipeline else None
    session = await _negotiate(client, pc, "subscribe", room, extra)
    return pc, session, received, tasks
