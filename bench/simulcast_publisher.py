"""Worker: publishes pre-encoded VP8 layers over WHIP as simulcast (or one of them plain).

``python -m bench.simulcast_publisher --base http://127.0.0.1:PORT --room bench --mode
simulcast|plain`` then JSON-lines commands on stdin (bench/control.py): ``snapshot``,
``record``, ``sends``, ``layers``. See bench/simulcast_media.py for how the RTP is made.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from typing import Any

import aiohttp
from aiortc import RTCSessionDescription

from gateway.media.tap import on_rtcp_received

from .control import serve, setup_worker_logging
from .media import FPS, frame_key
from .peers import loopback_only, new_peer, post_sdp, prefer
from .simulcast_media import (
    RID_EXTENSION_ID,
    RID_URI,
    LayerSender,
    ensure_layers,
    extension_ids,
    keyframe_requests,
    simulcast_offer,
)


class SimulcastPublisher:
    def __init__(self, mode: str) -> None:
        layers = ensure_layers()
        if mode == "plain":
            # The top layer alone, as one stream: the baseline of comparable bitrate.
            self.senders = [LayerSender(layers[-1], None)]
        else:
            self.senders = [LayerSender(layer, layer.spec.rid) for layer in layers]
        self.mode = mode
        self.pc = new_peer()
        self.location = ""
        self.recording = False
        self.sent: list[tuple[int, float]] = []
        self.unknown_requests = 0
        self._task: asyncio.Task[None] | None = None
        self.late_frames = 0

    def _on_rtcp(self, data: bytes) -> bytes:
        by_ssrc = {s.ssrc: s for s in self.senders}
        for _, ssrc in keyframe_requests(data):
            sender = by_ssrc.get(ssrc)
            if sender is None:
                self.unknown_requests += 1
            else:
                sender.requests += 1
                sender.want_keyframe = True
        return data

    async def publish(self, http: aiohttp.ClientSession, base: str, room: str) -> None:
        transceiver = self.pc.addTransceiver("video", direction="sendonly")
        prefer(transceiver, "video", "VP8")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        local = self.pc.localDescription.sdp
        rids = [s.rid for s in self.senders if s.rid] or None
        offer = simulcast_offer(local, rids)
        answer, self.location = await post_sdp(http, f"{base}/whip/{room}", offer)
        if rids:
            if f"a=simulcast:recv {';'.join(rids)}" not in answer:
                raise RuntimeError(f"simulcast not accepted:\n{answer}")
            if extension_ids(answer).get(RID_URI) != RID_EXTENSION_ID:
                raise RuntimeError(f"rid extension not accepted:\n{answer}")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        deadline = time.monotonic() + 30
        while self.pc.connectionState != "connected":
            if time.monotonic() > deadline or self.pc.connectionState == "failed":
                raise RuntimeError(f"publisher not connected: {self.pc.connectionState}")
            await asyncio.sleep(0.05)
        transport = transceiver.sender.transport
        on_rtcp_received(transport, self._on_rtcp)
        ids = extension_ids(answer)
        payload_type = next(
            int(line.split()[0].split(":")[1])
            for line in answer.splitlines()
            if line.startswith("a=rtpmap:") and "VP8/90000" in line
        )
        self._task = asyncio.ensure_future(
            self._run(transport, payload_type, ids, transceiver.mid or "0")
        )

    async def _run(self, transport: Any, payload_type: int, ids: dict[str, int], mid: str) -> None:
        start = time.monotonic()
        number = 0
        with contextlib.suppress(ConnectionError):
            while True:
                delay = start + number / FPS - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -0.1:
                    self.late_frames += 1
                for sender in self.senders:
                    packets, data, _ = sender.packets_for(number, payload_type, ids, mid)
                    for packet in packets:
                        await transport._send_rtp(packet)
                    if self.recording:
                        self.sent.append((frame_key(data), time.monotonic()))
                number += 1

    def snapshot(self) -> dict[str, Any]:
        top = self.senders[-1]
        return {
            "t": time.monotonic(),
            "state": self.pc.connectionState,
            "video_frames": top.frames,  # frames per layer: all layers go in step
            "video_keyframes": sum(s.keyframes for s in self.senders),
            "video_bytes": sum(s.bytes for s in self.senders),
            "audio_frames": 0,
            "layers": self.layers(),
        }

    def layers(self) -> dict[str, dict[str, int]]:
        return {
            str(s.rid or "plain"): {
                "ssrc": s.ssrc,
                "frames": s.frames,
                "keyframes": s.keyframes,
                "keyframes_on_request": s.keyframes_on_request,
                "keyframe_requests": s.requests,
                "bytes": s.bytes,
                "packets": s.packets,
            }
            for s in self.senders
        }

    async def close(self, http: aiohttp.ClientSession, base: str) -> None:
        if self._task is not None:
            self._task.cancel()
        with contextlib.suppress(Exception):
            async with http.delete(base + self.location, timeout=aiohttp.ClientTimeout(5)):
                pass
        await self.pc.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--room", default="bench")
    parser.add_argument("--mode", choices=["simulcast", "plain"], default="simulcast")
    args = parser.parse_args()
    setup_worker_logging(f"publisher-{args.mode}")
    loopback_only()
    publisher = SimulcastPublisher(args.mode)
    async with aiohttp.ClientSession() as http:
        await publisher.publish(http, args.base, args.room)

        async def snapshot(_: dict[str, Any]) -> dict[str, Any]:
            return publisher.snapshot()

        async def record(message: dict[str, Any]) -> dict[str, Any]:
            publisher.recording = bool(message.get("on"))
            if message.get("clear"):
                publisher.sent.clear()
            return {}

        async def sends(_: dict[str, Any]) -> dict[str, Any]:
            return {"sent": publisher.sent}

        async def layers(_: dict[str, Any]) -> dict[str, Any]:
            return {
                "layers": publisher.layers(),
                "unknown_requests": publisher.unknown_requests,
                "late_frames": publisher.late_frames,
            }

        try:
            await serve({"snapshot": snapshot, "record": record, "sends": sends, "layers": layers})
        finally:
            await publisher.close(http, args.base)


if __name__ == "__main__":
    asyncio.run(main())
