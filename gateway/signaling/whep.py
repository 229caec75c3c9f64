"""WHEP egress: POST a receive-only SDP offer to watch a room's stream."""

from __future__ import annotations

from aiohttp import web

from ..auth import http as auth_http
from ..cluster.relay import RELAY_HEADER
from .http_session import (
    SDP_TYPE,
    answer_response,
    delete_session,
    options,
    patch_session,
    read_body,
    registry,
)


async def post(request: web.Request) -> web.Response:
    caller = await auth_http.caller(request)  # 401 before the body is read
    offer = await read_body(request, SDP_TYPE)
    # ?pipeline=NAME: receive the room's tracks of that pipeline's kind processed by it.
    pipeline = request.query.get("pipeline") or None
    # ?layer=RID: a simulcast track's layer rather than the best one that flows.
    layer = request.query.get("layer") or None
    # Another cluster node's relay: with auth on, only its node token makes it one.
    relay = RELAY_HEADER in request.headers and (
        not registry(request).policy.enabled or caller.principal.identity.startswith("node:")
    )
    session, answer = await registry(request).subscribe(
        request.match_info["room"],
        offer,
        "whep",
        caller,
        pipeline=pipeline,
        relay=relay,
        layer=layer,
    )
    return answer_response(request, session, answer, "whep")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/whep/{room}", post)
    app.router.add_route("OPTIONS", "/whep/{room}", options)
    app.router.add_delete("/whep/{room}/{session}", delete_session)
    app.router.add_patch("/whep/{room}/{session}", patch_session)
    app.router.add_route("OPTIONS", "/whep/{room}/{session}", options)
