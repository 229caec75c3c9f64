"""The JSON HTTP API: health, readiness, stats and the list of live rooms."""

from __future__ import annotations

import threading

from aiohttp import web

from . import __version__
from .appkeys import REGISTRY
from .auth.http import caller
from .errors import not_found
from .recording.api import RECORDINGS
from .rooms.policy import Request
from .rooms.room import check_room_name


async def healthz(request: web.Request) -> web.Response:
    """Liveness, for load balancers and probes: open to all, so it tells nothing else."""
    return web.json_response({"status": "ok", "version": __version__})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: 503 once the gateway drains (it takes no new sessions). Open to all, as
    healthz, so it tells only that."""
    if request.app[REGISTRY].drain.draining:
        return web.json_response({"status": "draining"}, status=503)
    return web.json_response({"status": "ready"})


async def stats(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    registry.policy.check(Request("stats", None, "http", (await caller(request)).principal))
    body = registry.stats()
    recordings = request.app[RECORDINGS]
    for room in body["rooms"]:
        room["recording"] = recordings.room_stats(room["room"])
    body["recording"] = recordings.stats()
    body["threads"] = threading.active_count()
    return web.json_response(body)


async def rooms(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    registry.policy.check(Request("list", None, "http", (await caller(request)).principal))
    return web.json_response(
        {
            "rooms": [
                {
                    "room": room.name,
                    "live": bool(room.publishers) and room.held is None,
                    # Kept for its publisher's return (publisher failover).
                    "paused": room.held is not None,
                    "viewers": len(room.subscribers),
                    "tracks": [{"kind": p.kind, "codec": p.codec} for p in room.publishers],
                }
                for room in registry.rooms.values()
            ]
        }
    )


async def room(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    name = check_room_name(request.match_info["room"])
    registry.policy.check(Request("watch", name, "http", (await caller(request)).principal))
    found = registry.room(name)
    if found is None:
        raise not_found(f"no room {name!r}", "unknown-room")
    return web.json_response(found.stats())


async def cluster(request: web.Request) -> web.Response:
    """The cluster as Redis knows it: nodes, their load and the rooms homed on each."""
    registry = request.app[REGISTRY]
    registry.policy.check(Request("stats", None, "http", (await caller(request)).principal))
    if registry.cluster is None:
        raise not_found("this gateway is not part of a cluster (cluster.redis_url)", "no-cluster")
    return web.json_response(await registry.cluster.describe())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/stats", stats)
    app.router.add_get("/api/rooms", rooms)
    app.router.add_get("/api/rooms/{room}", room)
    app.router.add_get("/api/cluster", cluster)
