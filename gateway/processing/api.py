"""HTTP API of processing: configured pipelines, live renditions, switching and live control."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ..appkeys import CONFIG, REGISTRY
from ..auth.http import caller
from ..errors import GatewayError, bad_request
from ..media import tap
from ..rooms.policy import Request
from ..signaling import messages


async def _json_body(request: web.Request) -> dict[str, Any]:
    limit = request.app[CONFIG].server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise GatewayError(413, "body-too-large", f"the body exceeds {limit} bytes")
    try:
        body = json.loads(await request.read() or b"{}")
    except web.HTTPRequestEntityTooLarge as exc:
        raise GatewayError(413, "body-too-large", f"the body exceeds {limit} bytes") from exc
    # ValueError: besides JSONDecodeError and UnicodeDecodeError, json refuses integers of
    # more than 4300 digits with a plain ValueError.
    except (ValueError, RecursionError) as exc:
        raise bad_request(f"the body is not valid JSON: {exc}", "invalid-json") from exc
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object", "invalid-json")
    return body


async def pipelines(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    registry.policy.check(Request("info", None, "http", (await caller(request)).principal))
    return web.json_response({"pipelines": registry.renditions.describe()})


async def list_renditions(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    registry.policy.check(Request("stats", None, "http", (await caller(request)).principal))
    return web.json_response(registry.renditions.stats())


async def rendition(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    principal = (await caller(request)).principal
    found = registry.renditions.get(request.match_info["rendition"])
    registry.policy.check(Request("watch", found.room, "http", principal))
    return web.json_response(found.stats())


async def update_rendition(request: web.Request) -> web.Response:
    """PATCH {"stage": NAME, "params": {...}, "enable"?: true}: from the next frame on,
    for every viewer of the rendition."""
    registry = request.app[REGISTRY]
    principal = (await caller(request)).principal
    target = registry.renditions.get(request.match_info["rendition"])
    registry.policy.check(Request("control", target.room, "http", principal))
    body = await _json_body(request)
    stage, params, enable = body.get("stage"), body.get("params", {}), body.get("enable", False)
    if not isinstance(stage, str) or not isinstance(params, dict) or not isinstance(enable, bool):
        raise bad_request(
            "expected {stage: string, params?: object, enable?: boolean}", "invalid-message"
        )
    return web.json_response(await registry.renditions.update(target.id, stage, params, enable))


async def switch_pipeline(request: web.Request) -> web.Response:
    """PUT {"pipeline": NAME or null, "mid"?: MID}: what a session receives, switched
    without renegotiation. The session id (from the WHEP Location) is the capability."""
    registry = request.app[REGISTRY]
    who = await caller(request)
    session = registry.session(request.match_info["session"], who)
    registry.policy.check(Request("subscribe", session.room.name, "http", who.principal))
    body = await _json_body(request)
    pipeline, mid = body.get("pipeline"), body.get("mid")
    if not isinstance(pipeline, str | type(None)) or not isinstance(mid, str | type(None)):
        raise bad_request("expected {pipeline: string or null, mid?: string}", "invalid-message")
    if pipeline is not None:
        registry.check_pipeline(session.room.name, pipeline, "http", who)
    switched = session.switch_pipeline(pipeline, mid)
    return web.json_response(
        {
            "session": session.id,  # the caller's own: it named it in the URL
            "pipeline": pipeline,
            "mids": switched,
            "receiving": session.media.receiving(),
        }
    )


async def switch_layer(request: web.Request) -> web.Response:
    """PUT {"layer": RID or null, "max_width"?, "max_height"?, "max_fps"?, "mid"?}: another
    simulcast layer of the video a session receives, without renegotiation."""
    registry = request.app[REGISTRY]
    who = await caller(request)
    session = registry.session(request.match_info["session"], who)
    registry.policy.check(Request("subscribe", session.room.name, "http", who.principal))
    body = await _json_body(request)
    message = messages.Layer.build(body, None)  # a 400 for any malformed field
    switched = session.switch_layer(
        message.layer, message.mid, message.max_width, message.max_height, message.max_fps
    )
    return web.json_response(
        {"session": session.id, "mids": switched, "receiving": session.media.receiving()}
    )


async def session_media(request: web.Request) -> web.Response:
    """What a session receives: per mid, the track, its pipeline and rendition, and how
    that viewer keeps up (its egress counters); the ICE candidate pair it uses."""
    registry = request.app[REGISTRY]
    session = registry.session(request.match_info["session"], await caller(request))
    egress = {
        mid: slot.subscriber.stats()
        for mid, slot in session.slots.items()
        if slot.subscriber is not None
    }
    return web.json_response(
        {
            **session.describe(),
            "room": session.room.name,
            "receiving": session.media.receiving(),
            "egress": egress,
            "link": {
                **session.media.selection.link.stats(),
                "audio_bps": int(session.media.selection.audio_bps),
            },
            "candidate_pair": tap.selected_pair(session.pc),
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/pipelines", pipelines)
    app.router.add_get("/api/renditions", list_renditions)
    app.router.add_get("/api/renditions/{rendition}", rendition)
    app.router.add_patch("/api/renditions/{rendition}", update_rendition)
    app.router.add_get("/api/sessions/{session}", session_media)
    app.router.add_put("/api/sessions/{session}/pipeline", switch_pipeline)
    app.router.add_put("/api/sessions/{session}/layer", switch_layer)
