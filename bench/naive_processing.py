"""The naive aiortc processing pattern, as aiortc's server example does it: the baseline.

aiortc decodes the publisher's video (once) and ``MediaRelay().subscribe(track)`` hands the
decoded frames to every viewer's own transform track (aiortc's ``VideoTransformTrack``
pattern): its ``recv()`` runs the SAME pipeline as the gateway's rendition (the project's
processors, ``processors.registry.build_pipeline``) on the event loop, once per viewer, and
returns the frame, which the viewer's RTCRtpSender then ENCODES for itself (VP8; Opus for
the audio, which aiortc cannot forward without re-encoding either). Same WHIP/WHEP URL
shapes as the gateway (``POST /whep/ROOM?pipeline=NAME``), so the benchmark's publisher and
viewers work unchanged.

``python -m bench.naive_processing --port P --pipelines '{"gray": ["grayscale"]}'``.
Relay proxies are unbuffered (latest frame wins, like the rendition's worker) so a
saturated server drops frames instead of queueing them; a MediaBlackhole keeps the decode
running with no viewer. ``GET /api/naive`` gives each viewer's frames transformed and the
pipeline's timings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
import uuid
from typing import Any

import av
from aiohttp import web
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaBlackhole, MediaRelay

from processors.base import FrameContext
from processors.pipeline import Pipeline
from processors.registry import build_pipeline

from .peers import loopback_only, new_peer, prefer

logger = logging.getLogger("naive")


class TransformTrack(MediaStreamTrack):
    """One viewer's processed video: its own pipeline run on the loop, on every frame."""

    kind = "video"

    def __init__(self, source: MediaStreamTrack, pipeline: Pipeline, room: str) -> None:
        super().__init__()
        self.source = source
        self.pipeline = pipeline
        self.room = room
        self.frames = 0

    async def recv(self) -> av.VideoFrame:
        frame = await self.source.recv()
        assert isinstance(frame, av.VideoFrame)
        context = FrameContext(
            pts=frame.pts,
            time_base=frame.time_base,
            wall_time=time.time(),
            track_id="video",
            room=self.room,
            frame_index=self.frames,
        )
        self.frames += 1
        out = self.pipeline.process(frame, context)
        return frame if out is None else out

    def stop(self) -> None:
        super().stop()
        self.source.stop()


class NaiveProcessingServer:
    def __init__(self, pipelines: dict[str, Any]) -> None:
        self.pipelines = pipelines
        self.relay = MediaRelay()
        self.tracks: dict[str, MediaStreamTrack] = {}
        self.sessions: dict[str, RTCPeerConnection] = {}
        self.transforms: dict[str, TransformTrack] = {}
        self.blackhole = MediaBlackhole()

    async def whip(self, request: web.Request) -> web.Response:
        pc = new_peer()
        session = uuid.uuid4().hex
        self.sessions[session] = pc

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self.tracks[track.kind] = track
            self.blackhole.addTrack(self.relay.subscribe(track, buffered=False))

        await pc.setRemoteDescription(RTCSessionDescription(sdp=await request.text(), type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        await self.blackhole.start()
        return self._answer(request, pc, session)

    async def whep(self, request: web.Request) -> web.Response:
        if "video" not in self.tracks:
            return web.Response(status=404, text="no publisher")
        name = request.query.get("pipeline")
        if name is not None and name not in self.pipelines:
            return web.Response(status=400, text=f"unknown pipeline {name!r}")
        pc = new_peer()
        session = uuid.uuid4().hex
        self.sessions[session] = pc
        await pc.setRemoteDescription(RTCSessionDescription(sdp=await request.text(), type="offer"))
        for kind, track in self.tracks.items():
            proxy: MediaStreamTrack = self.relay.subscribe(track, buffered=False)
            if kind == "video" and name is not None:
                pipeline = build_pipeline(self.pipelines[name], name=name)
                transform = TransformTrack(proxy, pipeline, request.match_info["room"])
                self.transforms[session] = transform
                proxy = transform
            pc.addTrack(proxy)
            for transceiver in pc.getTransceivers():
                if transceiver.kind == kind:
                    prefer(transceiver, kind, "VP8" if kind == "video" else "opus")
        await pc.setLocalDescription(await pc.createAnswer())
        return self._answer(request, pc, session)

    def _answer(self, request: web.Request, pc: RTCPeerConnection, session: str) -> web.Response:
        response = web.Response(
            status=201, text=pc.localDescription.sdp, content_type="application/sdp"
        )
        response.headers["Location"] = f"{request.path}/{session}"
        return response

    async def delete(self, request: web.Request) -> web.Response:
        session = request.match_info["session"]
        self.transforms.pop(session, None)
        pc = self.sessions.pop(session, None)
        if pc is not None:
            await pc.close()
        return web.Response(status=200)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "sessions": len(self.sessions)})

    async def stats(self, request: web.Request) -> web.Response:
        """Per viewer: frames its transform track processed, and its pipeline's timings."""
        return web.json_response(
            {
                "viewers": [
                    {
                        "session": session,
                        "frames_transformed": track.frames,
                        "process": track.pipeline.total.snapshot(),
                        "pipeline_stats": track.pipeline.snapshot(),
                    }
                    for session, track in self.transforms.items()
                ]
            }
        )

    async def close(self, app: web.Application) -> None:
        await self.blackhole.stop()
        await asyncio.gather(*(pc.close() for pc in self.sessions.values()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pipelines", required=True, help='JSON: {"name": [processor, ...], ...}')
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s naive %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aioice").setLevel(logging.WARNING)
    logging.getLogger("aiortc").setLevel(logging.WARNING)
    loopback_only()
    server = NaiveProcessingServer(json.loads(args.pipelines))
    app = web.Application()
    app.router.add_post("/whip/{room}", server.whip)
    app.router.add_post("/whep/{room}", server.whep)
    app.router.add_delete("/whip/{room}/{session}", server.delete)
    app.router.add_delete("/whep/{room}/{session}", server.delete)
    app.router.add_get("/healthz", server.healthz)
    app.router.add_get("/api/naive", server.stats)
    app.on_shutdown.append(server.close)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
