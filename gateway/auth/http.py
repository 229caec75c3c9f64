"""Who an HTTP request comes from: its bearer token, source address and Origin."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from aiohttp import web

from ..appkeys import CONFIG, REGISTRY
from ..config import is_loopback_host
from ..errors import GatewayError
from .principal import Caller
from .tokens import unauthorized

CALLER = web.RequestKey("caller", Caller)
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def bearer_token(request: web.Request) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (RFC 6750), None without one."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("the Authorization header must be 'Bearer <token>'")
    return token.strip()


async def caller(request: web.Request, token: str | None = None) -> Caller:
    """The request's principal (authenticated once per request) and source address.

    ``token`` overrides the Authorization header (the WebSocket's ``?access_token=``).
    """
    found: Caller | None = request.get(CALLER)
    if found is not None and token is None:
        return found
    policy = request.app[REGISTRY].policy
    principal = await policy.authenticate(token if token is not None else bearer_token(request))
    result = Caller(principal, client_address(request))
    request[CALLER] = result
    return result


def client_address(request: web.Request) -> str | None:
    """The client's IP: the peer's, or from X-Forwarded-For when the peer is a trusted
    proxy (``server.trusted_proxies``); the rightmost untrusted hop wins, so a client
    cannot choose its own address by sending the header itself."""
    peer = request.remote
    proxies = request.app[CONFIG].server.trusted_proxies
    if not proxies or peer is None or not _trusted(peer, proxies):
        return peer
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            return hop
    return peer


def _trusted(address: str, proxies: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(p, strict=False) for p in proxies)


def same_origin(request: web.Request, origin: str) -> bool:
    parts = urlsplit(origin)
    return parts.netloc.lower() == request.host.lower() and parts.scheme in ("http", "https")


def origin_allowed(request: web.Request, origin: str) -> bool:
    """Same origin, or one of ``server.cors_origins`` ("*": any, only with auth off)."""
    origins = request.app[CONFIG].server.cors_origins
    return same_origin(request, origin) or "*" in origins or origin in origins


def check_origin(request: web.Request) -> None:
    """Refuse cross-origin writes and sockets from pages that are not allowed.

    A browser sends Origin with every cross-origin request and every WebSocket; a page
    elsewhere must not start a recording or open a socket on a user's behalf (CSRF,
    cross-site WebSocket hijacking), even on a gateway without auth on localhost.
    Clients that send no Origin are not browsers: their tokens speak for them.
    """
    origin = request.headers.get("Origin")
    if origin is None or origin_allowed(request, origin):
        return
    if request.method in SAFE_METHODS and request.path != "/ws":
        return  # reads: CORS already keeps the response from the page
    raise GatewayError(403, "origin-not-allowed", f"requests from {origin[:100]!r} are not allowed")


def check_host(request: web.Request) -> None:
    """With auth off on loopback, only loopback host names are served: a page on another
    site whose name is made to resolve to 127.0.0.1 (DNS rebinding) reaches nothing."""
    config = request.app[CONFIG]
    if config.auth.enabled or config.auth.allow_anonymous:
        return
    host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
    host = host.strip("[]")
    if is_loopback_host(host):
        return
    raise GatewayError(
        421,
        "host-not-allowed",
        "this gateway runs without auth and serves only localhost; see auth.allow_anonymous",
    )
