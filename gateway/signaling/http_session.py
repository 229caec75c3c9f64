"""What WHIP (RFC 9725) and WHEP share: SDP bodies, session resources, trickle PATCH."""

from __future__ import annotations

from aiohttp import web

from ..appkeys import CONFIG, REGISTRY
from ..auth import http as auth_http
from ..auth.principal import Principal
from ..errors import GatewayError, bad_request
from ..rooms.registry import Registry
from ..rooms.session import Session
from . import ice

SDP_TYPE = "application/sdp"
TRICKLE_TYPE = "application/trickle-ice-sdpfrag"


async def read_body(request: web.Request, content_type: str) -> str:
    if request.content_type != content_type:
        raise GatewayError(
            415,
            "unsupported-media-type",
            f"expected Content-Type {content_type}, got {request.content_type or 'none'}",
        )
    limit = request.app[CONFIG].server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise GatewayError(413, "body-too-large", f"the body exceeds {limit} bytes")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise GatewayError(413, "body-too-large", f"the body exceeds {limit} bytes") from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_request("the body is not UTF-8 text", "invalid-sdp") from exc


def answer_response(request: web.Request, session: Session, answer: str, kind: str) -> web.Response:
    # The Location is the session's capability: only this response carries its id.
    location = f"/{kind}/{session.room.name}/{session.id}"
    # body=, not text=: aiohttp would append "; charset=utf-8", which strict clients reject.
    response = web.Response(status=201, body=answer.encode(), content_type=SDP_TYPE)
    response.headers["Location"] = location
    response.headers["ETag"] = f'"{session.id}"'
    for value in ice.link_headers(request.app[CONFIG].ice, session.owner):
        response.headers.add("Link", value)
    return response


def registry(request: web.Request) -> Registry:
    return request.app[REGISTRY]


def _kind(request: web.Request) -> str:
    return "whip" if request.path.startswith("/whip/") else "whep"


async def session_of(request: web.Request) -> Session:
    """The session a WHIP (or WHEP) resource URL names: of that kind only, for its owner."""
    caller = await auth_http.caller(request)
    return registry(request).session(
        request.match_info["session"],
        caller,
        transport=_kind(request),
        room=request.match_info["room"],
    )


async def delete_session(request: web.Request) -> web.Response:
    session = await session_of(request)
    await session.close("deleted")
    return web.Response(status=200)


async def patch_session(request: web.Request) -> web.Response:
    """Trickle ICE (RFC 9725 4.3.1 / RFC 8840 sdpfrag). ICE restarts are refused with
    422 (allowed by the RFC when only trickle is supported): aiortc cannot restart ICE."""
    session = await session_of(request)
    if_match = request.headers.get("If-Match")
    if if_match is not None and if_match not in ("*", f'"{session.id}"'):
        raise GatewayError(412, "precondition-failed", "If-Match does not match the session's ETag")
    fragment = await read_body(request, TRICKLE_TYPE)
    ufrag = None
    mid: str | None = None
    index = -1
    candidates: list[tuple[str, str | None, int]] = []
    end = False
    for line in fragment.splitlines():
        line = line.strip()
        if line.startswith("a=ice-ufrag:"):
            ufrag = line.split(":", 1)[1]
        elif line.startswith("m="):
            index += 1
            mid = None
        elif line.startswith("a=mid:"):
            mid = line.split(":", 1)[1]
        elif line.startswith("a=candidate:"):
            candidates.append((line[2:], mid, max(index, 0)))
        elif line == "a=end-of-candidates":
            end = True
    if ufrag is not None and session.remote_ufrag is not None and ufrag != session.remote_ufrag:
        raise GatewayError(422, "ice-restart-unsupported", "ICE restarts are not supported")
    limits = request.app[CONFIG].limits
    if len(candidates) > limits.max_candidates_per_request:
        registry(request).admission.refuse("candidates_per_request")
        raise bad_request(
            f"a PATCH carries at most {limits.max_candidates_per_request} candidates",
            "too-many-candidates",
        )
    for candidate, candidate_mid, candidate_index in candidates:
        await session.add_candidate(
            candidate, candidate_mid, candidate_index if candidate_mid is None else None
        )
    if end:
        await session.add_candidate(None)
    return web.Response(status=204)


async def options(request: web.Request) -> web.Response:
    """CORS preflights carry no token and get no ICE servers; a client that sends its
    token with OPTIONS (RFC 9725 4.6) gets the servers it may use, TURN included."""
    response = web.Response(status=204)
    response.headers["Accept-Post"] = SDP_TYPE
    principal: Principal | None = None
    policy = registry(request).policy
    if not policy.enabled or "Authorization" in request.headers:
        principal = (await auth_http.caller(request)).principal
    if principal is not None:
        for value in ice.link_headers(request.app[CONFIG].ice, principal):
            response.headers.add("Link", value)
    return response
