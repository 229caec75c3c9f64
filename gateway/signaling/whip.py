"""WHIP ingest (RFC 9725): POST an SDP offer to publish a room's stream."""

from __future__ import annotations

from aiohttp import web

from ..auth import http as auth_http
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
    session, answer = await registry(request).publish(
        request.match_info["room"], offer, "whip", caller
    )
    return answer_response(request, session, answer, "whip")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/whip/{room}", post)
    app.router.add_route("OPTIONS", "/whip/{room}", options)
    app.router.add_delete("/whip/{room}/{session}", delete_session)
    app.router.add_patch("/whip/{room}/{session}", patch_session)
    app.router.add_route("OPTIONS", "/whip/{room}/{session}", options)
