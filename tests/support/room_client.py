"""A room participant for tests: one aiortc peer connection, renegotiated by its offers."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiortc import MediaStreamTrack, RTCRtpTransceiver, RTCSessionDescription

from gateway.signaling import sdp as sdp_tools

from .peers import Received, _consume, new_peer, prefer
from .signaling import WsClient, trickle


class Participant:
    """Joins a room over the WebSocket, publishes and subscribes on one connection.

    Every offer states what each m-line is for (the gateway answers only what is
    asked): ``publish`` maps mids to sources, ``subscribe`` mids to track ids.
    """

    def __init__(self, client: WsClient, name: str) -> None:
        self.client = client
        self.name = name
        self.pc = new_peer()
        self.id = ""  # public participant id (what others see in events)
        self.session = ""  # resource id (only this client knows it)
        self.joined: dict[str, Any] = {}
        self.publish: dict[str, str] = {}  # mid -> source
        self.published: dict[str, str] = {}  # mid -> track id (from track-published)
        self.subscribe: dict[str, str] = {}  # mid -> track id
        self.pipelines: dict[str, str] = {}  # mid -> pipeline it is received through
        self.received: dict[str, Received] = {}  # track id -> what arrived
        self._tasks: list[asyncio.Task[None]] = []
        self._negotiated = False
        self._pending_sources: list[tuple[RTCRtpTransceiver, str]] = []
        self._want: dict[int, str] = {}  # transceiver -> track id, until it has a mid
        self._want_pipeline: dict[int, str] = {}
        self.pc.on("track", self._on_track)

    @classmethod
    async def join(
        cls,
        http: aiohttp.ClientSession,
        base: str,
        room: str,
        name: str,
        token: str | None = None,
    ) -> Participant:
        client = await WsClient.connect(http, base, token)
        participant = cls(client, name)
        await client.request({"type": "join", "room": room, "name": name})
        reply = await client.next("joined", "error")
        assert reply["type"] == "joined", reply
        participant.id = reply["participant"]
        participant.session = reply["session"]
        participant.joined = reply
        return participant

    def room_tracks(self) -> dict[str, dict[str, Any]]:
        """Track id -> {participant, kind, ...} for every track others published so far."""
        tracks: dict[str, dict[str, Any]] = {}
        for p in self.joined["room"]["participants"]:
            for track in p["tracks"]:
                tracks[track["id"]] = {**track, "participant": p["id"]}
        for event in self.client.events:
            if event["type"] == "track-published" and event["participant"] != self.id:
                tracks[event["track"]["id"]] = {
                    **event["track"],
                    "participant": event["participant"],
                }
            elif event["type"] == "track-unpublished":
                tracks.pop(event["track"], None)
        return tracks

    async def add_tracks(self, tracks: list[tuple[MediaStreamTrack, str]]) -> list[str]:
        """Publish (track, source) pairs; returns the new track ids."""
        before = len(self.client.events)
        for track, source in tracks:
            transceiver = self.pc.addTransceiver(track, direction="sendonly")
            prefer(transceiver, track.kind, "VP8" if track.kind == "video" else "opus")
            self._pending_sources.append((transceiver, source))
        await self.renegotiate()
        ids = []
        for event in self.client.events[before:]:
            if event["type"] == "track-published" and event["participant"] == self.id:
                ids.append(event["track"]["id"])
        return ids

    async def watch(self, track_id: str, kind: str, pipeline: str | None = None) -> None:
        """Receive a track (through ``pipeline`` if given), reusing an idle transceiver of
        its kind when there is one."""
        transceiver = next(
            (
                t
                for t in self.pc.getTransceivers()
                if t.kind == kind and t.direction == "inactive" and t.mid not in self.publish
            ),
            None,
        )
        if transceiver is None:
            transceiver = self.pc.addTransceiver(kind, direction="recvonly")
        else:
            transceiver.direction = "recvonly"
        self.received.setdefault(track_id, Received())
        self._want[id(transceiver)] = track_id
        if pipeline is not None:
            self._want_pipeline[id(transceiver)] = pipeline
        await self.renegotiate()

    async def unwatch(self, track_id: str) -> None:
        for mid, wanted in list(self.subscribe.items()):
            if wanted == track_id:
                del self.subscribe[mid]
                self.pipelines.pop(mid, None)
                transceiver = next(t for t in self.pc.getTransceivers() if t.mid == mid)
                transceiver.direction = "inactive"
        await self.renegotiate()

    async def renegotiate(self) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        for transceiver, source in self._pending_sources:
            assert transceiver.mid is not None
            self.publish[transceiver.mid] = source
        self._pending_sources.clear()
        for transceiver in self.pc.getTransceivers():
            wanted = self._want.pop(id(transceiver), None)
            if wanted is not None and transceiver.mid is not None:
                self.subscribe[transceiver.mid] = wanted
                pipeline = self._want_pipeline.pop(id(transceiver), None)
                if pipeline is not None:
                    self.pipelines[transceiver.mid] = pipeline
        offer = self.pc.localDescription.sdp
        request_id = await self.client.request(
            {
                "type": "offer",
                "sdp": sdp_tools.strip_candidates(offer),
                "publish": self.publish,
                "subscribe": self.subscribe,
                **({"pipelines": self.pipelines} if self.pipelines else {}),
            }
        )
        reply = await self.client.next("answer", "error")
        assert reply.get("id") == request_id and reply["type"] == "answer", reply
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type="answer"))
        if self._negotiated:
            return
        self._negotiated = True
        # First negotiation: trickle our candidates, take the gateway's.
        await trickle(self.client, self.pc, self.session, offer)

    def _on_track(self, track: MediaStreamTrack) -> None:
        transceiver = next(t for t in self.pc.getTransceivers() if t.receiver.track is track)
        self._tasks.append(asyncio.ensure_future(self._route(transceiver, track)))

    async def _route(self, transceiver: RTCRtpTransceiver, track: MediaStreamTrack) -> None:
        """Frames of one transceiver go to whichever track id it receives right now."""
        proxy = _Routed(self, transceiver)
        await _consume(track, proxy, True)  # type: ignore[arg-type]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()
        await self.client.close()


class _Routed:
    """Looks like a Received, but files each frame under the transceiver's current track."""

    def __init__(self, participant: Participant, transceiver: RTCRtpTransceiver) -> None:
        self._participant = participant
        self._transceiver = transceiver

    def _target(self) -> Received:
        track_id = self._participant.subscribe.get(self._transceiver.mid or "", "")
        return self._participant.received.setdefault(track_id, Received())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._target(), name, value)
