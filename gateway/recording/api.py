"""HTTP API of recordings: start/stop per room, list, download (with ranges), delete."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from ..errors import GatewayError
from ..rooms.room import check_room_name
from .controller import RecordingController
from .recorder import Recorder

RECORDINGS = web.AppKey("recordings", RecordingController)


def describe_recorder(recorder: Recorder) -> dict[str, Any]:
    return {
        "id": recorder.id,
        "room": recorder.info.get("room"),
        "participant": recorder.info.get("participant"),
        "pipeline": recorder.info.get("pipeline"),
        "state": recorder.state,
        "file": recorder.path.name,
        "url": f"/api/recordings/{recorder.id}/file",
    }


async def start(request: web.Request) -> web.Response:
    room = check_room_name(request.match_info["room"])
    # ?pipeline=NAME: record the tracks of its kind processed by that pipeline.
    pipeline = request.query.get("pipeline") or None
    recorders = await request.app[RECORDINGS].start(room, "http", pipeline)
    return web.json_response(
        {"room": room, "recording": True, "started": [describe_recorder(r) for r in recorders]},
        status=201,
    )


async def stop(request: web.Request) -> web.Response:
    room = check_room_name(request.match_info["room"])
    recorders = await request.app[RECORDINGS].stop(room, transport="http")
    return web.json_response(
        {"room": room, "recording": False, "stopped": [describe_recorder(r) for r in recorders]}
    )


async def state(request: web.Request) -> web.Response:
    room = check_room_name(request.match_info["room"])
    controller = request.app[RECORDINGS]
    return web.json_response(
        {"room": room, "recorded": controller.is_recorded(room), **controller.room_stats(room)}
    )


async def listing(request: web.Request) -> web.Response:
    controller = request.app[RECORDINGS]
    recordings = await asyncio.to_thread(controller.store.list)
    for info in recordings:
        _links(info, controller)
    return web.json_response({"recordings": recordings})


async def one(request: web.Request) -> web.Response:
    controller = request.app[RECORDINGS]
    info = await asyncio.to_thread(controller.store.read, request.match_info["id"])
    return web.json_response(_links(info, controller))


async def download(request: web.Request) -> web.FileResponse:
    """The media file; aiohttp answers Range requests (206), so players can seek."""
    controller = request.app[RECORDINGS]
    path = await asyncio.to_thread(controller.store.path, request.match_info["id"])
    info_type = "video/webm" if path.suffix == ".webm" else "video/x-matroska"
    disposition = "attachment" if request.query.get("download") else "inline"
    return web.FileResponse(
        path,
        headers={
            "Content-Type": info_type,
            "Content-Disposition": f'{disposition}; filename="{path.name}"',
            "Cache-Control": "no-cache",
        },
    )


async def delete(request: web.Request) -> web.Response:
    controller = request.app[RECORDINGS]
    recording_id = request.match_info["id"]
    path = await asyncio.to_thread(controller.store.path, recording_id)
    if controller.is_active_file(path.stem):
        raise GatewayError(
            409, "recording-active", f"recording {recording_id!r} is still being written"
        )
    await asyncio.to_thread(controller.store.delete, recording_id)
    return web.Response(status=204)


def _links(info: dict[str, Any], controller: RecordingController) -> dict[str, Any]:
    info["url"] = f"/api/recordings/{info['id']}/file"
    if controller.is_active_file(info["id"]):
        info["state"] = "recording"
    return info


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/rooms/{room}/recording", start)
    app.router.add_delete("/api/rooms/{room}/recording", stop)
    app.router.add_get("/api/rooms/{room}/recording", state)
    app.router.add_get("/api/recordings", listing)
    app.router.add_get("/api/recordings/{id}", one)
    app.router.add_get("/api/recordings/{id}/file", download)
    app.router.add_delete("/api/recordings/{id}", delete)


async def finalize(app: web.Application) -> None:
    """On shutdown: every recording gets its trailer and sidecar before sessions close."""
    if RECORDINGS in app:
        await app[RECORDINGS].close()
