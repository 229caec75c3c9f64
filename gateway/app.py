"""Builds the aiohttp application: routes, error handling, CORS and lifetimes."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import web

from . import api
from .appkeys import CONFIG, REGISTRY, SOCKETS
from .auth import http as auth_http
from .auth.signed_urls import UrlSigner
from .cluster.node import ClusterNode
from .config import Config, check_exposure
from .errors import GatewayError, not_found
from .metrics import endpoint as metrics_endpoint
from .processing import api as processing_api
from .recording import api as recording_api
from .recording.controller import RecordingController
from .rooms.policy import AccessPolicy
from .rooms.registry import Registry
from .signaling import ice, websocket, whep, whip

logger = logging.getLogger(__name__)

WEB_ROOT = Path(__file__).parent / "web"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a JSON body with a status; nothing escapes to aiohttp."""
    try:
        return await handler(request)
    except GatewayError as exc:
        response = web.json_response(exc.to_json(), status=exc.status)
        if exc.status == 401:
            # RFC 6750 3: which scheme, and why the token was not good enough.
            error = "invalid_request" if exc.code == "token-required" else "invalid_token"
            response.headers["WWW-Authenticate"] = f'Bearer realm="webrtc-gateway", error="{error}"'
        if exc.retry_after_s is not None:
            response.headers["Retry-After"] = str(exc.retry_after_s)
        if exc.redirect_base is not None:
            # RFC 9725 4.5: the same request, method and body, at the room's home node.
            response.headers["Location"] = exc.redirect_base + request.path_qs
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not-found", 405: "method-not-allowed", 413: "body-too-large"}.get(
            exc.status, "http-error"
        )
        response = web.json_response({"error": code, "message": exc.reason}, status=exc.status)
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        logger.exception("%s %s failed", request.method, request.path)
        return web.json_response(
            {"error": "internal-error", "message": "internal error"}, status=500
        )


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Before any handler: the Host a request names, and the Origin of a browser's write."""
    auth_http.check_host(request)
    if request.path != "/ws":  # the socket checks its Origin itself, before upgrading
        auth_http.check_origin(request)
    return await handler(request)


@web.middleware
async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Lets pages from the configured origins use WHIP, WHEP and the API (RFC 9725 4.5)."""
    response = await handler(request)
    origins = request.app[CONFIG].server.cors_origins
    origin = request.headers.get("Origin")
    if origin and ("*" in origins or origin in origins):
        headers = response.headers
        headers["Access-Control-Allow-Origin"] = "*" if "*" in origins else origin
        headers["Access-Control-Allow-Methods"] = "GET, POST, PATCH, DELETE, OPTIONS"
        headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization, If-Match"
        headers["Access-Control-Expose-Headers"] = "Location, ETag, Link, Accept-Post"
        headers["Access-Control-Max-Age"] = "600"
        if "*" not in origins:
            headers["Vary"] = "Origin"
    return response


async def static_file(request: web.Request) -> web.FileResponse:
    """The web app's files: a flat directory, so a name never leaves it."""
    name = request.match_info.get("name") or "index.html"
    path = WEB_ROOT / name
    if "/" in name or name.startswith(".") or not path.is_file():
        raise not_found(f"no page {request.path!r}")
    # A page opened with ?token= must not hand it to anyone in a Referer.
    return web.FileResponse(
        path, headers={"Cache-Control": "no-cache", "Referrer-Policy": "same-origin"}
    )


async def drain(app: web.Application) -> None:
    """The first SIGTERM/SIGINT: new sessions are refused (503 draining, readyz fails),
    every socket is told ``going-away``, recordings are finalized (reason shutdown), and
    live sessions get ``server.drain_timeout_s`` to end by themselves; the rest are closed.
    The sockets and the server close afterwards, in the app's shutdown."""
    registry = app[REGISTRY]
    registry.drain.begin()
    logger.warning(
        "draining: %d session(s) get up to %gs to end",
        len(registry.sessions),
        registry.drain.timeout_s,
    )
    # First: the files are complete whatever happens next (a second signal, a SIGKILL).
    await app[recording_api.RECORDINGS].close()
    left = await registry.drain.wait(lambda: len(registry.sessions))
    if left:
        logger.warning("drain time is up: closing %d session(s)", left)
    # Before the sockets close, so their clients get `session-ended` (reason shutdown).
    await registry.close_sessions()
    await asyncio.sleep(0.05)  # lets each socket's writer send it


def create_app(config: Config, policy: AccessPolicy | None = None) -> web.Application:
    """The gateway; ``policy`` decides who may do what (default: tokens per ``config.auth``,
    or everything when auth is off)."""
    check_exposure(config)
    ice.restrict_host_addresses(config.ice.addresses)
    app = web.Application(
        middlewares=[cors, errors, guard], client_max_size=config.server.max_body_bytes
    )
    app[CONFIG] = config
    app[SOCKETS] = weakref.WeakSet()
    app[recording_api.URL_SIGNER] = UrlSigner(
        config.auth.url_signing_secret, config.auth.signed_url_ttl_s
    )
    # Recordings first: their files end with reason 'shutdown', then sessions close.
    app.on_shutdown.append(recording_api.finalize)
    app.on_shutdown.append(websocket.close_all)

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        registry = Registry(config, policy)
        app[REGISTRY] = registry
        await registry.policy.start()  # loads the JWKS, if any: a bad one stops the start
        recordings = RecordingController(registry, config.recording)
        app[recording_api.RECORDINGS] = recordings
        await recordings.recover()
        node: ClusterNode | None = None
        if config.cluster.redis_url:
            node = ClusterNode(config.cluster, registry.load)
            await node.start()  # an unreachable Redis stops the start
            registry.join_cluster(node)
            await registry.serve_pipe()  # cluster.pipe_dir: other local nodes pull from it
        yield
        await recordings.close()
        # Shutdown: every peer connection closes, every subscriber is told.
        await registry.close()
        if node is not None:
            await node.close()  # its rooms are released at once, not after the TTL
        await registry.policy.close()

    app.cleanup_ctx.append(lifetime)
    api.add_routes(app)
    recording_api.add_routes(app)
    processing_api.add_routes(app)
    whip.add_routes(app)
    whep.add_routes(app)
    metrics_endpoint.add_routes(app)
    app.router.add_get("/ws", websocket.handler)
    app.router.add_get("/", static_file)
    app.router.add_get("/{name}", static_file)
    return app
