"""HTTP API of recordings: start/stop per room, list, download (with ranges), delete."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from ..auth.http import caller
from ..auth.signed_urls import UrlSigner
from ..errors import GatewayError
from ..rooms.policy import Request
from ..rooms.room import check_room_name
from .controller import RecordingController
from .recorder import Recorder

RECORDINGS = web.AppKey("recordings", RecordingController)
URL_SIGNER = web.AppKey("url_signer", UrlSigner)


def file_path(recording_id: str) -> str:
    return f"/api/recordings/{recording_id}/file"


def describe_recorder(recorder: Recorder, signer: UrlSigner) -> dict[str, Any]:
    return {
        "id": recorder.id,
        "room": recorder.info.get("room"),
        "participant": recorder.info.get("participant"),
        "pipeline": recorder.info.get("pipeline"),
        "state": recorder.state,
        "file": recorder.path.name,
        # Signed: a <video src> plays it without a bearer token, for a few minutes.
        "url": signer.sign(file_path(recorder.id)),
    }


async def start(request: web.Request) -> web.Response:
    room = check_room_name(request.match_info["room"])
    # ?pipeline=NAME: record the tracks of its kind processed by that pipeline.
    pipeline = request.query.get("pipeline") or None
    principal = (await caller(request)).principal
    recorders = await request.app[RECORDINGS].start(room, "http", pipeline, principal=principal)
    signer = request.app[URL_SIGNER]
    return web.json_response(
        {
            "room": room,
            "recording": True,
            "started": [describe_recorder(r, signer) for r in recorders],
        },
        status=201,
    )


async def stop(request: web.Request) -> web.Response:
    room = check_room_name(request.match_info["room"])
    principal = (await caller(request)).principal
    recorders = await request.app[RECORDINGS].stop(room, transport="http", principal=principal)
    signer = request.app[URL_SIGNER]
    return web.json_response(
        {
            "room": room,
            "recording": False,
            "stopped": [describe_recorder(r, signer) for r in recorders],
        }
    )


async def state(request: web.Request) -> web.Response:
    room = check_room_name(request.match_info["room"])
    controller = request.app[RECORDINGS]
    principal = (await caller(request)).principal
    controller.registry.policy.check(Request("watch", room, "http", principal))
    return web.json_response(
        {"room": room, "recorded": controller.is_recorded(room), **controller.room_stats(room)}
    )


async def listing(request: web.Request) -> web.Response:
    """The recordings of the rooms the caller may record (all of them for an admin)."""
    controller = request.app[RECORDINGS]
    principal = (await caller(request)).principal
    policy = controller.registry.policy
    recordings = await asyncio.to_thread(controller.store.list)
    visible = []
    for info in recordings:
        try:
            policy.check(Request("record", _room_of(info), "http", principal))
        except GatewayError as exc:
            if exc.status == 401:
                raise
            continue
        visible.append(_links(info, controller, request.app[URL_SIGNER]))
    return web.json_response({"recordings": visible})


async def _recording(request: web.Request) -> dict[str, Any]:
    """A recording's metadata, after checking the caller may record its room."""
    controller = request.app[RECORDINGS]
    principal = (await caller(request)).principal
    info = await asyncio.to_thread(controller.store.read, request.match_info["id"])
    controller.registry.policy.check(Request("record", _room_of(info), "http", principal))
    return info


def _room_of(info: dict[str, Any]) -> str | None:
    room = info.get("room")
    return room if isinstance(room, str) else None


async def one(request: web.Request) -> web.Response:
    controller = request.app[RECORDINGS]
    info = await _recording(request)
    return web.json_response(_links(info, controller, request.app[URL_SIGNER]))


async def download(request: web.Request) -> web.FileResponse:
    """The media file; aiohttp answers Range requests (206), so players can seek.

    Either the URL is signed (``expires`` and ``sig``, from a listing: what a <video>
    element can use) or the request carries a token that may record the room."""
    controller = request.app[RECORDINGS]
    signature = request.query.get("sig")
    if signature is not None:
        request.app[URL_SIGNER].check(
            file_path(request.match_info["id"]), request.query.get("expires", ""), signature
        )
    else:
        await _recording(request)
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
    await _recording(request)
    recording_id = request.match_info["id"]
    path = await asyncio.to_thread(controller.store.path, recording_id)
    if controller.is_active_file(path.stem):
        raise GatewayError(
            409, "recording-active", f"recording {recording_id!r} is still being written"
        )
    await asyncio.to_thread(controller.store.delete, recording_id)
    return web.Response(status=204)


def _links(
    info: dict[str, Any], controller: RecordingController, signer: UrlSigner
) -> dict[str, Any]:
    info["url"] = signer.sign(file_path(info["id"]))
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
