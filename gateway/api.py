"""The JSON HTTP API: health, stats and the list of live rooms."""

from __future__ import annotations

import threading

from aiohttp import web

from . import __version__
from .appkeys import REGISTRY
from .errors import not_found
from .recording.api import RECORDINGS


async def healthz(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    return web.json_response(
        {
            "status": "ok",
            "version": __version__,
            "rooms": len(registry.rooms),
            "sessions": len(registry.sessions),
        }
    )


async def stats(request: web.Request) -> web.Response:
    body = request.app[REGISTRY].stats()
    recordings = request.app[RECORDINGS]
    for room in body["rooms"]:
        room["recording"] = recordings.room_stats(room["room"])
    body["threads"] = threading.active_count()
    return web.json_response(body)


async def rooms(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    return web.json_response(
        {
            "rooms": [
                {
                    "room": room.name,
                    "live": bool(room.publishers),
                    "viewers": len(room.subscribers),
                    "tracks": [{"kind": p.kind, "codec": p.codec} for p in room.publishers],
                }
                for room in registry.rooms.values()
            ]
        }
    )


async def room(request: web.Request) -> web.Response:
    found = request.app[REGISTRY].room(request.match_info["room"])
    if found is None:
        raise not_found(f"no room {request.match_info['room']!r}", "unknown-room")
    return web.json_response(found.stats())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/stats", stats)
    app.router.add_get("/api/rooms", rooms)
    app.router.add_get("/api/rooms/{room}", room)
