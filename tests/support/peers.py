"""aiortc peers that publish with WHIP and watch with WHEP, recording what they decode."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import aiohttp
import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from .media import read_frame_number


def new_peer() -> RTCPeerConnection:
    # No STUN: every test stays on loopback.
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token is not None else {}


def prefer(transceiver: object, kind: str, codec: str) -> None:
    caps = RTCRtpSender.getCapabilities(kind).codecs
    chosen = [c for c in caps if c.name.lower() in (codec.lower(), "rtx")]
    transceiver.setCodecPreferences(chosen)  # type: ignore[attr-defined]


@dataclass
class Publisher:
    pc: RTCPeerConnection
    location: str
    tracks: list[MediaStreamTrack]
    token: str | None = None  # the one it published with: its resource needs it

    async def close(self, http: aiohttp.ClientSession | None = None, base: str = "") -> None:
        if http is not None:
            async with http.delete(base + self.location, headers=auth_headers(self.token)):
                pass
        await self.pc.close()


async def whip_publish(
    http: aiohttp.ClientSession,
    base: str,
    room: str,
    tracks: list[MediaStreamTrack],
    video_codec: str = "VP8",
    token: str | None = None,
) -> Publisher:
    pc = new_peer()
    for track in tracks:
        transceiver = pc.addTransceiver(track, direction="sendonly")
        prefer(transceiver, track.kind, video_codec if track.kind == "video" else "opus")
    await pc.setLocalDescription(await pc.createOffer())
    async with http.post(
        f"{base}/whip/{room}",
        data=pc.localDescription.sdp,
        headers={"Content-Type": "application/sdp", **auth_headers(token)},
    ) as response:
        body = await response.text()
        assert response.status == 201, body
        location = response.headers["Location"]
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    return Publisher(pc, location, tracks, token)


@dataclass
class Received:
    """What one viewer decoded."""

    numbers: list[int] = field(default_factory=list)
    sizes: set[tuple[int, int]] = field(default_factory=set)
    size_log: list[tuple[int, int]] = field(default_factory=list)  # each frame's, in order
    arrival: list[float] = field(default_factory=list)
    unreadable: int = 0  # frames whose number did not check (degraded pictures)
    # len(numbers) when each unreadable frame arrived: where a decoded frame's number is unknown
    unreadable_at: list[int] = field(default_factory=list)
    audio_frames: int = 0
    audio_peak: int = 0
    first_frame_at: float | None = None
    last_frame: av.VideoFrame | None = None


@dataclass
class Viewer:
    pc: RTCPeerConnection
    location: str
    received: Received
    tasks: list[asyncio.Task[None]]
    started_at: float
    token: str | None = None

    async def close(self, http: aiohttp.ClientSession | None = None, base: str = "") -> None:
        for task in self.tasks:
            task.cancel()
        if http is not None:
            async with http.delete(base + self.location, headers=auth_headers(self.token)):
                pass
        await self.pc.close()


async def _consume(track: MediaStreamTrack, received: Received, read: bool) -> None:
    if not read:
        return
    with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
        while True:
            frame = await track.recv()
            if isinstance(frame, av.VideoFrame):
                now = time.monotonic()
                received.first_frame_at = received.first_frame_at or now
                received.sizes.add((frame.width, frame.height))
                received.size_log.append((frame.width, frame.height))
                number = read_frame_number(frame)
                if number is None:
                    received.unreadable += 1
                    received.unreadable_at.append(len(received.numbers))
                else:
                    received.numbers.append(number)
                received.arrival.append(now)
                received.last_frame = frame
            elif isinstance(frame, av.AudioFrame):
                received.audio_frames += 1
                received.audio_peak = max(received.audio_peak, int(abs(frame.to_ndarray()).max()))


async def whep_watch(
    http: aiohttp.ClientSession,
    base: str,
    room: str,
    kinds: tuple[str, ...] = ("video", "audio"),
    read: bool = True,
    pipeline: str | None = None,
    codec: str | None = None,
    token: str | None = None,
    layer: str | None = None,
) -> Viewer:
    pc = new_peer()
    received = Received()
    tasks: list[asyncio.Task[None]] = []

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        tasks.append(asyncio.ensure_future(_consume(track, received, read)))

    for kind in kinds:
        transceiver = pc.addTransceiver(kind, direction="recvonly")
        if codec is not None and kind == "video":
            prefer(transceiver, kind, codec)
    await pc.setLocalDescription(await pc.createOffer())
    started = time.monotonic()
    params = {"pipeline": pipeline, "layer": layer}
    query = "&".join(f"{key}={value}" for key, value in params.items() if value)
    query = f"?{query}" if query else ""
    async with http.post(
        f"{base}/whep/{room}{query}",
        data=pc.localDescription.sdp,
        headers={"Content-Type": "application/sdp", **auth_headers(token)},
    ) as response:
        body = await response.text()
        assert response.status == 201, body
        location = response.headers["Location"]
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    return Viewer(pc, location, received, tasks, started, token)


async def wait_for(predicate: object, timeout: float = 20.0, interval: float = 0.05) -> None:
    """Poll ``predicate()`` until true; fail with a clear message after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        await asyncio.sleep(interval)
