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
import json
import time
from typing import Any

import av
from aiohttp import web
from aiortc import MediaStreamTrack

from processors.base import FrameContext
from processors.pipeline import Pipeline
from processors.registry import build_pipeline

from .naive_server import NaiveServer, serve


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


class NaiveProcessingServer(NaiveServer):
    """The broadcast baseline's server, each viewer's video through its own transform track."""

    def __init__(self, pipelines: dict[str, Any]) -> None:
        super().__init__()
        self.pipelines = pipelines
        self.transforms: dict[str, TransformTrack] = {}

    def refuse(self, request: web.Request) -> web.Response | None:
        name = request.query.get("pipeline")
        if name is not None and name not in self.pipelines:
            return web.Response(status=400, text=f"unknown pipeline {name!r}")
        return None

    def outgoing(
        self, kind: str, proxy: MediaStreamTrack, request: web.Request, session: str
    ) -> MediaStreamTrack:
        name = request.query.get("pipeline")
        if kind != "video" or name is None:
            return proxy
        pipeline = build_pipeline(self.pipelines[name], name=name)
        transform = TransformTrack(proxy, pipeline, request.match_info["room"])
        self.transforms[session] = transform
        return transform

    def forget(self, session: str) -> None:
        self.transforms.pop(session, None)

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pipelines", required=True, help='JSON: {"name": [processor, ...], ...}')
    args = parser.parse_args()
    server = NaiveProcessingServer(json.loads(args.pipelines))
    serve(server, args.port, [web.get("/api/naive", server.stats)])


if __name__ == "__main__":
    main()
