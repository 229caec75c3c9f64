"""The naive aiortc broadcast pattern, as aiortc's examples do it: the baseline.

The publisher's tracks are decoded by aiortc (once) and fanned out with
``MediaRelay().subscribe(track)``; every viewer's RTCRtpSender then ENCODES the frames
again for itself (one VP8 + one Opus encode per viewer). Same WHIP/WHEP URL shapes as the
gateway (``POST /whip/ROOM``, ``POST /whep/ROOM``, 201 + Location, DELETE), so the
benchmark's publisher and viewers work unchanged.

``python -m bench.naive_server --port P``. Relay proxies are unbuffered (latest frame
wins) so a saturated encoder drops frames instead of queueing them without bound; a
MediaBlackhole consumer keeps the one decode running (and its queue drained) with no
viewer, as in aiortc's server example.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import uuid

from aiohttp import web
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaBlackhole, MediaRelay

from .peers import loopback_only, new_peer, prefer

logger = logging.getLogger("naive")


class NaiveServer:
    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.tracks: dict[str, MediaStreamTrack] = {}
        self.sessions: dict[str, RTCPeerConnection] = {}
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
        refused = self.refuse(request)
        if refused is not None:
            return refused
        pc = new_peer()
        session = uuid.uuid4().hex
        self.sessions[session] = pc
        await pc.setRemoteDescription(RTCSessionDescription(sdp=await request.text(), type="offer"))
        for kind, track in self.tracks.items():
            proxy = self.relay.subscribe(track, buffered=False)
            pc.addTrack(self.outgoing(kind, proxy, request, session))
            for transceiver in pc.getTransceivers():
                if transceiver.kind == kind:
                    prefer(transceiver, kind, "VP8" if kind == "video" else "opus")
        await pc.setLocalDescription(await pc.createAnswer())
        return self._answer(request, pc, session)

    def refuse(self, request: web.Request) -> web.Response | None:
        """A viewer's request refused before anything is made (None: accepted)."""
        return None

    def outgoing(
        self, kind: str, proxy: MediaStreamTrack, request: web.Request, session: str
    ) -> MediaStreamTrack:
        """What a viewer's sender encodes: the decoded track as relayed."""
        return proxy

    def forget(self, session: str) -> None:
        """A viewer's session was deleted."""

    def _answer(self, request: web.Request, pc: RTCPeerConnection, session: str) -> web.Response:
        response = web.Response(
            status=201, text=pc.localDescription.sdp, content_type="application/sdp"
        )
        response.headers["Location"] = f"{request.path}/{session}"
        return response

    async def delete(self, request: web.Request) -> web.Response:
        session = request.match_info["session"]
        self.forget(session)
        pc = self.sessions.pop(session, None)
        if pc is not None:
            await pc.close()
        return web.Response(status=200)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "sessions": len(self.sessions)})

    async def close(self, app: web.Application) -> None:
        await self.blackhole.stop()
        await asyncio.gather(*(pc.close() for pc in self.sessions.values()))


def serve(server: NaiveServer, port: int, routes: list[web.RouteDef] | None = None) -> None:
    """Run ``server`` on 127.0.0.1:``port`` with the gateway's WHIP/WHEP URL shapes."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s naive %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aioice").setLevel(logging.WARNING)
    logging.getLogger("aiortc").setLevel(logging.WARNING)
    loopback_only()
    app = web.Application()
    app.router.add_post("/whip/{room}", server.whip)
    app.router.add_post("/whep/{room}", server.whep)
    app.router.add_delete("/whip/{room}/{session}", server.delete)
    app.router.add_delete("/whep/{room}/{session}", server.delete)
    app.router.add_get("/healthz", server.healthz)
    app.router.add_routes(routes or [])
    app.on_shutdown.append(server.close)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    serve(NaiveServer(), parser.parse_args().port)


if __name__ == "__main__":
    main()
