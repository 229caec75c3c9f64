"""aiortc peers for the benchmark: WHIP publishers, and WHEP viewers that never decode.

A viewer's receivers are tapped with the gateway's own ``tap_receiver`` + ``FrameAssembler``:
complete encoded frames go to a counter instead of aiortc's decoder thread.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)

from gateway.media.assembler import FrameAssembler
from gateway.media.frames import EncodedFrame
from gateway.media.tap import tap_receiver
from gateway.signaling.ice import restrict_host_addresses

from .media import frame_key

VIDEO_TICKS_PER_FRAME = 3000  # 90 kHz / 30 fps


def loopback_only() -> None:
    """Every peer of this process gathers ICE candidates on 127.0.0.1 only."""
    restrict_host_addresses(["127.0.0.1"])


def route_keyframe_requests(sender: Any, callback: Callable[[], None]) -> None:
    """A publisher's RTCRtpSender turns PLI/FIR into ``_send_keyframe()`` (aiortc 1.16):
    send it to our own encoder, which aiortc's packet path never reaches."""
    if not callable(getattr(sender, "_send_keyframe", None)):
        raise RuntimeError("aiortc internals changed: RTCRtpSender has no _send_keyframe")
    sender._send_keyframe = callback


def new_peer() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


def prefer(transceiver: Any, kind: str, codec: str) -> None:
    caps = RTCRtpSender.getCapabilities(kind).codecs
    transceiver.setCodecPreferences([c for c in caps if c.name.lower() in (codec.lower(), "rtx")])


async def post_sdp(http: aiohttp.ClientSession, url: str, sdp: str) -> tuple[str, str]:
    async with http.post(
        url,
        data=sdp,
        headers={"Content-Type": "application/sdp"},
        timeout=aiohttp.ClientTimeout(30),
    ) as response:
        body = await response.text()
        if response.status != 201:
            raise RuntimeError(f"POST {url}: {response.status} {body[:300]}")
        return body, response.headers.get("Location", "")


async def whip_publish(
    http: aiohttp.ClientSession, base: str, room: str, tracks: list[MediaStreamTrack]
) -> tuple[RTCPeerConnection, str]:
    pc = new_peer()
    for track in tracks:
        transceiver = pc.addTransceiver(track, direction="sendonly")
        prefer(transceiver, track.kind, "VP8" if track.kind == "video" else "opus")
    await pc.setLocalDescription(await pc.createOffer())
    answer, location = await post_sdp(http, f"{base}/whip/{room}", pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return pc, location


@dataclass
class ViewerCounters:
    """What one viewer received, updated on the event loop by its taps."""

    created_at: float = field(default_factory=time.monotonic)
    ice_connected_at: float | None = None
    connected_at: float | None = None
    first_keyframe_at: float | None = None
    failed: str | None = None
    disconnected_at: float | None = None  # connection failed or closed after being up
    video_frames: int = 0
    video_keyframes: int = 0
    video_bytes: int = 0
    video_gap_frames: int = 0  # frames missing, from RTP timestamp jumps
    video_discontinuities: int = 0
    audio_frames: int = 0
    last_video_ts: int | None = None
    # While recording: (frame key, completion time) of each video frame, for latency.
    recording: bool = False
    arrivals: list[tuple[int, float]] = field(default_factory=list)

    def snapshot(self) -> dict[str, Any]:
        return {
            "video_frames": self.video_frames,
            "video_keyframes": self.video_keyframes,
            "video_bytes": self.video_bytes,
            "video_gap_frames": self.video_gap_frames,
            "video_discontinuities": self.video_discontinuities,
            "audio_frames": self.audio_frames,
        }


class TappedViewer:
    """A WHEP viewer (or a direct peer's receiving side) that counts encoded frames."""

    def __init__(self, keep_arrivals: bool = False) -> None:
        self.pc = new_peer()
        self.counters = ViewerCounters()
        self.location = ""
        self.assemblers: list[FrameAssembler] = []
        self._keep_arrivals = keep_arrivals
        self.pc.on("connectionstatechange", self._on_state)
        self.pc.on("iceconnectionstatechange", self._on_ice_state)
        self.pc.on("track", self._on_track)

    def _on_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected" and self.counters.connected_at is None:
            self.counters.connected_at = time.monotonic()
        elif state in ("failed", "closed") and self.counters.connected_at is not None:
            self.counters.disconnected_at = self.counters.disconnected_at or time.monotonic()
        if state == "failed":
            self.counters.failed = self.counters.failed or "connection failed"

    def _on_ice_state(self) -> None:
        if self.pc.iceConnectionState in ("connected", "completed"):
            if self.counters.ice_connected_at is None:
                self.counters.ice_connected_at = time.monotonic()

    def _on_track(self, track: MediaStreamTrack) -> None:
        for transceiver in self.pc.getTransceivers():
            if transceiver.receiver.track is track:
                codec = "VP8" if track.kind == "video" else "opus"
                assembler = FrameAssembler(codec, track.kind)
                self.assemblers.append(assembler)
                sink = self._on_video if track.kind == "video" else self._on_audio
                tap_receiver(transceiver.receiver, assembler, sink)

    def _on_video(self, frames: list[EncodedFrame]) -> None:
        c = self.counters
        for frame in frames:
            if c.video_frames == 0 and not frame.keyframe:
                continue  # cannot happen through the gateway; counted from the first keyframe
            if frame.keyframe and c.first_keyframe_at is None:
                c.first_keyframe_at = time.monotonic()
            if c.last_video_ts is not None:
                step = (frame.timestamp - c.last_video_ts) & 0xFFFFFFFF
                if step < 0x80000000:
                    c.video_gap_frames += max(0, round(step / VIDEO_TICKS_PER_FRAME) - 1)
            c.last_video_ts = frame.timestamp
            c.video_frames += 1
            c.video_keyframes += frame.keyframe
            c.video_bytes += len(frame.data)
            c.video_discontinuities += frame.discontinuity
            if c.recording:
                c.arrivals.append((frame_key(frame.data), time.monotonic()))

    def _on_audio(self, frames: list[EncodedFrame]) -> None:
        self.counters.audio_frames += len(frames)

    async def offer(self, kinds: tuple[str, ...] = ("video", "audio")) -> str:
        for kind in kinds:
            transceiver = self.pc.addTransceiver(kind, direction="recvonly")
            prefer(transceiver, kind, "VP8" if kind == "video" else "opus")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def whep(self, http: aiohttp.ClientSession, url: str) -> None:
        try:
            answer, self.location = await post_sdp(http, url, await self.offer())
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        except Exception as exc:
            self.counters.failed = f"{type(exc).__name__}: {exc}"
            raise

    async def rtp_stats(self) -> dict[str, int]:
        """Inbound RTP totals over both receivers (packets lost before NACK recovery)."""
        received = lost = 0
        for transceiver in self.pc.getTransceivers():
            if transceiver.kind != "video":
                continue
            with contextlib.suppress(Exception):
                report = await transceiver.receiver.getStats()
                for stat in report.values():
                    if getattr(stat, "type", "") == "inbound-rtp":
                        received += stat.packetsReceived
                        lost += max(0, stat.packetsLost)
        return {"rtp_received": received, "rtp_lost": lost}

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.pc.close()
