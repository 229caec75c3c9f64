"""Worker: many room participants in one process, publishers or subscribers.

``python -m bench.rooms_worker --base http://127.0.0.1:PORT --room R --role publisher
--file IN.webm`` (or ``--role subscriber``), then JSON-lines commands on stdin (see
bench/control.py): ``add``, ``status``, ``snapshot``, ``close_all``.

Publishers join the room over the WebSocket and publish one pre-encoded VP8 video track each
(``bench.media.PacketFileTrack``: packets of the file, paced in real time, no encoding).
Subscribers join and send one offer with a ``subscribe`` map (one recvonly video m-line per
track). They never decode: each receiver is tapped with the gateway's own ``tap_receiver`` +
``FrameAssembler``, and complete frames are counted per m-line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import MediaStreamTrack, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from gateway.media.assembler import FrameAssembler
from gateway.media.frames import EncodedFrame
from gateway.media.tap import tap_receiver
from gateway.signaling import sdp as sdp_tools

from .control import serve, setup_worker_logging
from .media import PacketFileTrack, StoredStream, read_file
from .peers import VIDEO_TICKS_PER_FRAME, loopback_only, new_peer, prefer


class Socket:
    """One signaling WebSocket; every message is queued, replies are picked by type."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.kept: list[dict[str, Any]] = []
        self._next_id = 0
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def connect(cls, http: aiohttp.ClientSession, base: str) -> Socket:
        ws = await http.ws_connect(base.replace("http", "ws", 1) + "/ws")
        socket = cls(ws)
        await socket.next("hello")
        return socket

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await self.inbox.put(json.loads(msg.data))

    async def request(self, message: dict[str, Any]) -> int:
        self._next_id += 1
        await self.ws.send_str(json.dumps({**message, "id": self._next_id}))
        return self._next_id

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message))

    async def next(self, *types: str, wait_s: float = 30.0) -> dict[str, Any]:
        """The next message of one of ``types``; others are kept (events) or dropped."""
        async with asyncio.timeout(wait_s):
            while True:
                message = await self.inbox.get()
                if message["type"] in types:
                    return message
                if message["type"] == "track-published":
                    self.kept.append(message)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        self._reader.cancel()


@dataclass
class StreamCounter:
    """Complete video frames received on one m-line (one publisher's track)."""

    track: str
    frames: int = 0
    keyframes: int = 0
    bytes: int = 0
    gap_frames: int = 0
    first_keyframe_at: float | None = None
    last_ts: int | None = None

    def on_frames(self, frames: list[EncodedFrame]) -> None:
        for frame in frames:
            if self.frames == 0 and not frame.keyframe:
                continue
            if frame.keyframe and self.first_keyframe_at is None:
                self.first_keyframe_at = time.monotonic()
            if self.last_ts is not None:
                step = (frame.timestamp - self.last_ts) & 0xFFFFFFFF
                if step < 0x80000000:
                    self.gap_frames += max(0, round(step / VIDEO_TICKS_PER_FRAME) - 1)
            self.last_ts = frame.timestamp
            self.frames += 1
            self.keyframes += frame.keyframe
            self.bytes += len(frame.data)


class RoomPeer:
    """One participant: a socket, a join, one peer connection negotiated once."""

    def __init__(self, socket: Socket) -> None:
        self.socket = socket
        self.pc = new_peer()
        self.id = ""
        self.streams: dict[str, StreamCounter] = {}  # mid -> counter (subscribers)
        self.tracks: list[PacketFileTrack] = []  # what it publishes (publishers)
        self.published: list[str] = []  # its track ids
        self.failed: str | None = None
        self.pc.on("track", self._on_track)

    async def join(self, room: str, name: str) -> None:
        await self.socket.request({"type": "join", "room": room, "name": name})
        reply = await self.socket.next("joined", "error")
        if reply["type"] != "joined":
            raise RuntimeError(f"join: {reply}")
        self.id = reply["participant"]

    def _on_track(self, track: MediaStreamTrack) -> None:
        for transceiver in self.pc.getTransceivers():
            if transceiver.receiver.track is track and transceiver.mid in self.streams:
                assembler = FrameAssembler("VP8", "video")
                tap_receiver(
                    transceiver.receiver, assembler, self.streams[transceiver.mid].on_frames
                )

    async def negotiate(self, maps: Callable[[], tuple[dict[str, str], dict[str, str]]]) -> None:
        """One offer; ``maps()`` gives (publish, subscribe) once the mids are set."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        publish, subscribe = maps()
        offer = self.pc.localDescription.sdp
        request_id = await self.socket.request(
            {
                "type": "offer",
                "sdp": sdp_tools.strip_candidates(offer),
                "publish": publish,
                "subscribe": subscribe,
            }
        )
        reply = await self.socket.next("answer", "error")
        if reply["type"] != "answer" or reply.get("id") != request_id:
            raise RuntimeError(f"offer: {reply}")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type="answer"))
        for index, mid, line in sdp_tools.candidate_lines(offer):
            await self.socket.send(
                {
                    "type": "candidate",
                    "session": self.id,
                    "candidate": {"candidate": line, "sdpMid": mid, "sdpMLineIndex": index},
                }
            )
        await self.socket.send({"type": "candidate", "session": self.id, "candidate": None})
        while True:
            message = await self.socket.next("candidate")
            if message["candidate"] is None:
                break
            candidate = candidate_from_sdp(message["candidate"]["candidate"].split(":", 1)[1])
            candidate.sdpMid = message["candidate"]["sdpMid"]
            candidate.sdpMLineIndex = message["candidate"]["sdpMLineIndex"]
            await self.pc.addIceCandidate(candidate)

    async def publish(self, stream: StoredStream) -> None:
        track = PacketFileTrack(stream, [None])  # its own clock: publishers are not in step
        self.tracks.append(track)
        transceiver = self.pc.addTransceiver(track, direction="sendonly")
        prefer(transceiver, "video", "VP8")
        await self.negotiate(lambda: ({str(transceiver.mid): "camera"}, {}))
        events = list(self.socket.kept)
        deadline = time.monotonic() + 10
        while not self.published and time.monotonic() < deadline:
            for event in events:
                if event["participant"] == self.id:
                    self.published.append(event["track"]["id"])
            events.clear()
            if not self.published:
                with contextlib.suppress(TimeoutError):
                    events.append(await self.socket.next("track-published", wait_s=0.5))
        if not self.published:
            raise RuntimeError("no track-published for our own track")

    async def subscribe(self, tracks: list[str]) -> None:
        transceivers = [self.pc.addTransceiver("video", direction="recvonly") for _ in tracks]
        for transceiver in transceivers:
            prefer(transceiver, "video", "VP8")

        def maps() -> tuple[dict[str, str], dict[str, str]]:
            wanted: dict[str, str] = {}
            for transceiver, track in zip(transceivers, tracks, strict=True):
                assert transceiver.mid is not None
                wanted[transceiver.mid] = track
                self.streams[transceiver.mid] = StreamCounter(track)
            return {}, wanted

        await self.negotiate(maps)

    async def close(self) -> None:
        for track in self.tracks:
            track.stop()
        with contextlib.suppress(Exception):
            await self.pc.close()
        await self.socket.close()


class Worker:
    def __init__(self, base: str, room: str, role: str, stream: StoredStream | None) -> None:
        self.base, self.room, self.role, self.stream = base, room, role, stream
        self.peers: list[RoomPeer] = []
        self.http: aiohttp.ClientSession | None = None

    async def add(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self.http is not None
        semaphore = asyncio.Semaphore(int(message.get("concurrency", 4)))
        failures: list[str] = []
        tracks: list[str] = list(message.get("tracks", []))

        async def one(name: str) -> None:
            async with semaphore:
                assert self.http is not None
                try:
                    peer = RoomPeer(await Socket.connect(self.http, self.base))
                except Exception as exc:
                    failures.append(f"connect: {exc}"[:200])
                    return
                self.peers.append(peer)
                try:
                    await peer.join(self.room, name)
                    if self.role == "publisher":
                        assert self.stream is not None
                        await peer.publish(self.stream)
                    else:
                        await peer.subscribe(tracks)
                except Exception as exc:
                    peer.failed = f"{type(exc).__name__}: {exc}"[:200]
                    failures.append(peer.failed)

        await asyncio.gather(*(one(name) for name in message["names"]))
        return {
            "peers": len(self.peers),
            "failures": failures[:5],
            "tracks": [t for p in self.peers for t in p.published],
        }

    async def status(self, _: dict[str, Any]) -> dict[str, Any]:
        streams = [s for p in self.peers for s in p.streams.values()]
        return {
            "peers": len(self.peers),
            "connected": sum(p.pc.connectionState == "connected" for p in self.peers),
            "failed": sum(
                p.failed is not None or p.pc.connectionState == "failed" for p in self.peers
            ),
            "streams": len(streams),
            "receiving": sum(s.first_keyframe_at is not None for s in streams),
            "sent_frames": sum(t.log.frames for p in self.peers for t in p.tracks),
        }

    async def snapshot(self, _: dict[str, Any]) -> dict[str, Any]:
        return {
            "t": time.monotonic(),
            "streams": [
                [s.frames, s.gap_frames, s.bytes] for p in self.peers for s in p.streams.values()
            ],
            "sent": [[t.log.frames, t.log.bytes] for p in self.peers for t in p.tracks],
        }

    async def close_all(self, _: dict[str, Any]) -> dict[str, Any]:
        peers, self.peers = self.peers, []
        await asyncio.gather(*(p.close() for p in peers))
        return {"closed": len(peers)}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--room", default="rooms")
    parser.add_argument("--role", choices=("publisher", "subscriber"), required=True)
    parser.add_argument("--file", help="the pre-encoded input (publishers)")
    args = parser.parse_args()
    setup_worker_logging(f"rooms-{args.role}")
    loopback_only()
    stream = read_file(Path(args.file))["video"] if args.file else None
    worker = Worker(args.base, args.room, args.role, stream)
    async with aiohttp.ClientSession() as http:
        worker.http = http
        try:
            await serve(
                {
                    "add": worker.add,
                    "status": worker.status,
                    "snapshot": worker.snapshot,
                    "close_all": worker.close_all,
                }
            )
        finally:
            await asyncio.gather(*(p.close() for p in worker.peers))


if __name__ == "__main__":
    asyncio.run(main())
