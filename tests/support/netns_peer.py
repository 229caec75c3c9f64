"""An aiortc WHIP publisher and/or WHEP viewer as its own process, to run inside a namespace.

    python -m tests.support.netns_peer --base URL --room ROOM [--token T] [--publish] [--watch]

ICE servers come from the gateway, as a WHIP/WHEP client learns them: the ``Link``
headers of ``OPTIONS`` (RFC 9725), with the TURN credentials the gateway mints for the
token. Prints one JSON object per line: ``{"event": "published" | "watching",
"location": ...}`` once each session exists, and ``{"event": "result", ...}`` at the end:
frames sent, frame numbers decoded (with arrival times), and each peer's nominated
candidate pair (types and addresses) and gathered candidate types.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
import time
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)

from gateway.media import tap
from tests.support.media import NumberedVideoTrack
from tests.support.peers import Received, _consume, prefer

_LINK = re.compile(r'^<([^>]+)>; rel="ice-server"(.*)$')
_PARAM = re.compile(r';\s*([a-z-]+)="([^"]*)"')
_CANDIDATE_TYPE = re.compile(r"^a=candidate:\S+ \d \S+ \d+ \S+ \d+ typ (\S+)", re.MULTILINE)


class BusyVideoTrack(NumberedVideoTrack):
    """Numbered frames with noise below the number: the encoder then spends its whole
    target bitrate (about as much as a camera), as a real camera does."""

    def __init__(self, width: int, height: int, fps: int) -> None:
        super().__init__(width, height, fps)
        self._random = np.random.default_rng(self.count)

    async def recv(self) -> av.VideoFrame:
        frame = await super().recv()
        planes = frame.to_ndarray(format="yuv420p")
        # A band of noise below the row of number blocks, a tenth of the picture: VP8
        # cannot compress noise, so this sets the bitrate (~1.5 Mbps at 640x480, 30 fps).
        top = frame.width // 16 + 8
        band = frame.height // 10
        planes[top : top + band] = self._random.integers(
            0, 256, (band, frame.width), dtype=np.uint8
        )
        busy = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        busy.pts, busy.time_base = frame.pts, frame.time_base
        return busy


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def ice_servers(links: list[str]) -> list[RTCIceServer]:
    servers = []
    for value in links:
        match = _LINK.match(value)
        if match is None:
            continue
        params = dict(_PARAM.findall(match.group(2)))
        servers.append(
            RTCIceServer(
                urls=match.group(1),
                username=params.get("username"),
                credential=params.get("credential"),
            )
        )
    return servers


async def post_sdp(
    http: aiohttp.ClientSession, url: str, sdp: str, headers: dict[str, str], retry_s: float
) -> tuple[str, str]:
    """The answer and Location; a WHEP 404 (nobody publishes yet) is retried."""
    deadline = time.monotonic() + retry_s
    while True:
        async with http.post(
            url, data=sdp, headers={"Content-Type": "application/sdp", **headers}
        ) as response:
            body = await response.text()
            if response.status == 201:
                return body, response.headers["Location"]
            if response.status != 404 or time.monotonic() > deadline:
                raise RuntimeError(f"POST {url}: {response.status} {body}")
        await asyncio.sleep(0.2)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--room", required=True)
    parser.add_argument("--token")
    parser.add_argument("--publish", action="store_true")
    parser.add_argument("--watch", action="store_true")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--busy", action="store_true", help="noisy frames: a high bitrate")
    parser.add_argument("--seconds", type=float, default=5.0, help="media time once flowing")
    parser.add_argument("--frames", type=int, default=0, help="stop once this many decoded")
    parser.add_argument("--timeout", type=float, default=45.0)
    args = parser.parse_args()

    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    peers: list[RTCPeerConnection] = []
    tasks: list[asyncio.Task[None]] = []
    video: NumberedVideoTrack | None = None
    received = Received()
    result: dict[str, Any] = {}
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        async with http.options(f"{args.base}/whip/{args.room}", headers=headers) as response:
            servers = ice_servers(response.headers.getall("Link", []))
        result["ice_servers"] = [s.urls for s in servers]

        def new_peer() -> RTCPeerConnection:
            pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
            peers.append(pc)
            return pc

        try:
            if args.publish:
                kind = BusyVideoTrack if args.busy else NumberedVideoTrack
                video = kind(args.width, args.height, args.fps)
                pub = new_peer()
                prefer(pub.addTransceiver(video, direction="sendonly"), "video", "VP8")
                await pub.setLocalDescription(await pub.createOffer())
                answer, location = await post_sdp(
                    http, f"{args.base}/whip/{args.room}", pub.localDescription.sdp, headers, 0
                )
                await pub.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
                result["publisher_candidates"] = _CANDIDATE_TYPE.findall(pub.localDescription.sdp)
                emit("published", location=location)
            if args.watch:
                view = new_peer()

                @view.on("track")
                def on_track(track: MediaStreamTrack) -> None:
                    tasks.append(asyncio.ensure_future(_consume(track, received, True)))

                prefer(view.addTransceiver("video", direction="recvonly"), "video", "VP8")
                await view.setLocalDescription(await view.createOffer())
                answer, location = await post_sdp(
                    http,
                    f"{args.base}/whep/{args.room}",
                    view.localDescription.sdp,
                    headers,
                    args.timeout,
                )
                await view.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
                result["viewer_candidates"] = _CANDIDATE_TYPE.findall(view.localDescription.sdp)
                emit("watching", location=location)
            # Media time counts from the first decoded frame (or the first frame sent).
            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline:
                if (args.watch and received.first_frame_at) or (
                    not args.watch and video is not None and video.count > 0
                ):
                    break
                await asyncio.sleep(0.05)
            flowing_at = time.monotonic()
            while time.monotonic() < min(deadline, flowing_at + args.seconds):
                if args.frames and len(received.numbers) >= args.frames:
                    break
                await asyncio.sleep(0.05)
            pairs = [tap.selected_pair(pc) for pc in peers]
            result.update(
                frames_sent=video.count if video is not None else 0,
                numbers=received.numbers,
                arrival=[round(t - started, 3) for t in received.arrival],
                unreadable=received.unreadable,
                sizes=sorted(received.sizes),
                publisher_pair=pairs[0] if args.publish else None,
                viewer_pair=pairs[-1] if args.watch else None,
            )
        finally:
            for task in tasks:
                task.cancel()
            for pc in peers:
                with contextlib.suppress(Exception):
                    await pc.close()
    emit("result", **result)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as exc:
        emit("error", error=f"{type(exc).__name__}: {exc}")
        sys.exit(1)
