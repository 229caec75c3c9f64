"""GET /metrics: the Prometheus text format, behind the access policy's stats grant."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ..appkeys import REGISTRY
from ..auth.http import caller
from ..rooms.policy import Request
from .collector import GatewayCollector

METRICS: web.AppKey[CollectorRegistry] = web.AppKey("metrics", CollectorRegistry)


async def metrics(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    registry.policy.check(Request("stats", None, "http", (await caller(request)).principal))
    body = generate_latest(request.app[METRICS])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_routes(app: web.Application) -> None:
    # A registry of its own, not prometheus_client's global one: several gateways in one
    # process (the tests) must not count each other's tracks.
    collectors = CollectorRegistry()
    collectors.register(GatewayCollector(lambda: app[REGISTRY]))
    app[METRICS] = collectors
    app.router.add_get("/metrics", metrics)
