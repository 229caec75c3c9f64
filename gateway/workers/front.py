"""The front of a multi-process gateway: one port for HTTP and WebSocket signaling, each
request routed to the worker process its room lives on; media goes to the workers direct."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict
from redis.asyncio import Redis

from ..cluster.directory import Directory, NodeInfo
from ..cluster.signal_relay import SignalRelay
from ..config import Config
from . import stats as worker_stats

logger = logging.getLogger(__name__)

# Headers that belong to one hop (RFC 9110 7.6.1) or that aiohttp sets itself.
_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
        "upgrade", "content-length", "host",
    }
)  # fmt: skip
NODES_CACHE_S = 0.25
MAX_REDIRECTS = 3  # workers send a request on (room-elsewhere, gateway-full) at most so often
RESOURCES = 100_000  # WHIP/WHEP session URLs remembered, least recently used forgotten
# Messages that say which room a socket is for (its worker is picked by the first of them).
_ROOMED = frozenset({"publish", "join", "watch", "subscribe", "record-start"})


class Worker:
    """What the front knows of one worker: its base URL, cluster node id, and whether its
    process runs (a dead one is being started again)."""

    def __init__(
        self, index: int, base: str, node_id: str, alive: Callable[[], bool] = lambda: True
    ) -> None:
        self.index = index
        self.base = base
        self.node_id = node_id
        self.alive = alive


class WorkerUnavailable(Exception):
    """No worker can take the request now (one is being started again)."""


@web.middleware
async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """A worker that cannot be reached is a 503 with a JSON body, as the gateway's own
    errors are; nothing escapes to aiohttp."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except (WorkerUnavailable, aiohttp.ClientError, OSError) as exc:
        logger.warning("%s %s: worker unavailable: %s", request.method, request.path, exc)
        return web.json_response(
            {"error": "worker-unavailable", "message": "try again shortly", "retry_after": 2},
            status=503,
            headers={"Retry-After": "2"},
        )


class Router:
    """Picks a worker for a request: the room's home (from the workers' shared directory),
    else the least loaded; and remembers which worker holds each session resource."""

    def __init__(self, workers: list[Worker], redis_url: str, config: Config) -> None:
        self.workers = workers
        self._by_base = {w.base: w for w in workers}
        self._by_node = {w.node_id: w for w in workers}
        self._redis: Redis = Redis.from_url(redis_url, socket_timeout=2.0)
        self.directory = Directory(
            self._redis, config.cluster.key_prefix, config.cluster.node_ttl_s
        )
        self._resources: OrderedDict[str, Worker] = OrderedDict()
        self._heartbeat_s = config.cluster.heartbeat_s
        self._nodes_cache: tuple[float, list[NodeInfo]] | None = None
        # Requests sent to each worker since its last heartbeat could count them (bounded).
        self._sent: deque[tuple[float, Worker]] = deque(maxlen=10_000)
        self._recent: Counter[int] = Counter()
        self.routed = 0

    def worker_at(self, url: str) -> Worker | None:
        return next((w for base, w in self._by_base.items() if url.startswith(base)), None)

    async def home(self, room: str) -> Worker | None:
        node_id = await self.directory.home(room)
        worker = self._by_node.get(node_id) if node_id else None
        return worker if worker is not None and worker.alive() else None

    async def nodes(self) -> list[NodeInfo]:
        """The workers' heartbeats, read at most every NODES_CACHE_S: they change only every
        heartbeat_s, and every routed request and socket asks for them."""
        now = time.monotonic()
        if self._nodes_cache is None or now - self._nodes_cache[0] > NODES_CACHE_S:
            self._nodes_cache = (now, await self.directory.nodes())
        return self._nodes_cache[1]

    async def least_loaded(self) -> Worker:
        """Fewest sessions by the heartbeats, plus what the front sent each worker since
        (a heartbeat is up to heartbeat_s old: without them, a burst lands on one worker)."""
        loads = {n.id: n.load for n in await self.nodes()}
        running = [w for w in self.workers if w.alive()]
        live = [w for w in running if w.node_id in loads] or running
        if not live:
            raise WorkerUnavailable("no worker process is running")
        now = time.monotonic()
        while self._sent and now - self._sent[0][0] > 2 * self._heartbeat_s:
            self._recent[self._sent.popleft()[1].index] -= 1

        def load(worker: Worker) -> int:
            sessions = int(loads.get(worker.node_id, {}).get("sessions", 0))
            return sessions + self._recent[worker.index]

        chosen = min(live, key=load)
        if len(self._sent) == self._sent.maxlen:
            self._recent[self._sent.popleft()[1].index] -= 1
        self._sent.append((now, chosen))
        self._recent[chosen.index] += 1
        return chosen

    async def for_room(self, room: str) -> Worker:
        return await self.home(room) or await self.least_loaded()

    def remember(self, location: str, worker: Worker) -> None:
        self._resources[location] = worker
        self._resources.move_to_end(location)
        while len(self._resources) > RESOURCES:
            self._resources.popitem(last=False)

    def resource(self, path: str) -> Worker | None:
        worker = self._resources.get(path)
        if worker is not None:
            self._resources.move_to_end(path)
        return worker

    def forget(self, path: str) -> None:
        self._resources.pop(path, None)

    async def close(self) -> None:
        await self._redis.aclose()


class Front:
    """The front's aiohttp application: static pages and health served here, the rest
    forwarded (method, headers, body) to a worker and its answer returned as it is."""

    def __init__(self, router: Router, config: Config) -> None:
        self.router = router
        self.config = config
        self._http: aiohttp.ClientSession | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None
        return self._http

    def app(self) -> web.Application:
        from ..app import static_file  # the same pages, from the same directory

        app = web.Application(
            middlewares=[errors], client_max_size=self.config.server.max_body_bytes
        )
        app.cleanup_ctx.append(self._lifetime)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/ws", self.websocket)
        app.router.add_post("/whip/{room}", self.create_session)
        app.router.add_post("/whep/{room}", self.create_session)
        app.router.add_route("*", "/whip/{room}/{session}", self.session_request)
        app.router.add_route("*", "/whep/{room}/{session}", self.session_request)
        app.router.add_route("OPTIONS", "/whip/{room}", self.any_worker)
        app.router.add_route("OPTIONS", "/whep/{room}", self.any_worker)
        app.router.add_get("/api/rooms", self.rooms)
        app.router.add_get("/api/stats", self.stats)
        app.router.add_route("*", "/api/rooms/{room}", self.room_request)
        app.router.add_route("*", "/api/rooms/{room}/{rest:.*}", self.room_request)
        app.router.add_route("*", "/api/sessions/{session}", self.session_anywhere)
        app.router.add_route("*", "/api/sessions/{session}/{rest:.*}", self.session_anywhere)
        app.router.add_route("*", "/api/{rest:.*}", self.any_worker)
        app.router.add_get("/", static_file)
        app.router.add_get("/{name}", static_file)
        return app

    async def _lifetime(self, app: web.Application) -> AsyncIterator[None]:
        self._http = aiohttp.ClientSession(auto_decompress=False)
        yield
        await self._http.close()

    # -- forwarding -----------------------------------------------------------------------

    def _headers(self, request: web.Request) -> CIMultiDict[str]:
        headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in _HOP)
        # The worker checks the Host (DNS rebinding) and Origin the browser used, and
        # rate-limits the client's address, not the front's.
        headers["Host"] = request.host
        forwarded = request.headers.get("X-Forwarded-For")
        peer = request.remote or ""
        headers["X-Forwarded-For"] = f"{forwarded}, {peer}" if forwarded else peer
        return headers

    async def forward(self, request: web.Request, worker: Worker) -> web.Response:
        body = await request.read()
        headers = self._headers(request)
        for _ in range(MAX_REDIRECTS + 1):
            async with self.http.request(
                request.method,
                worker.base + request.path_qs,
                data=body,
                headers=headers,
                allow_redirects=False,
            ) as upstream:
                payload = await upstream.read()
                location = upstream.headers.get("Location", "")
                onward = self.router.worker_at(location) if upstream.status == 307 else None
                if onward is None:
                    self.router.routed += 1
                    return self._response(upstream, payload, worker)
            worker = onward  # the room's home, or a worker with room for a viewer
        raise web.HTTPBadGateway(text="workers redirected the request in a loop")

    def _response(
        self, upstream: aiohttp.ClientResponse, payload: bytes, worker: Worker
    ) -> web.Response:
        headers = CIMultiDict((k, v) for k, v in upstream.headers.items() if k.lower() not in _HOP)
        location = headers.get("Location")
        if location is not None and location.startswith("/"):
            self.router.remember(location, worker)  # a new WHIP/WHEP session resource
        return web.Response(status=upstream.status, body=payload, headers=headers)

    async def create_session(self, request: web.Request) -> web.Response:
        return await self.forward(request, await self.router.for_room(request.match_info["room"]))

    async def session_request(self, request: web.Request) -> web.StreamResponse:
        worker = self.router.resource(request.path)
        if worker is None:
            worker = await self.router.for_room(request.match_info["room"])
        response = await self.forward(request, worker)
        if request.method == "DELETE" and response.status < 300:
            self.router.forget(request.path)
        return response

    async def room_request(self, request: web.Request) -> web.Response:
        return await self.forward(request, await self.router.for_room(request.match_info["room"]))

    async def session_anywhere(self, request: web.Request) -> web.Response:
        """A session's API by its id: whichever worker has it."""
        response: web.Response | None = None
        for worker in self.router.workers:
            response = await self.forward(request, worker)
            if response.status != 404:
                return response
        assert response is not None
        return response

    async def any_worker(self, request: web.Request) -> web.Response:
        return await self.forward(request, await self.router.least_loaded())

    async def rooms(self, request: web.Request) -> web.Response:
        """Every worker's rooms, each room once: as its home worker has it."""
        homes = await self.router.directory.homes()
        merged: list[Any] = []
        for worker in self.router.workers:
            response = await self.forward(request, worker)
            if response.status != 200:
                return response
            assert isinstance(response.body, bytes)
            for room in json.loads(response.body)["rooms"]:
                if homes.get(room["room"], worker.node_id) == worker.node_id:
                    merged.append(room)
        return web.json_response({"rooms": merged})

    async def stats(self, request: web.Request) -> web.Response:
        """Every running worker's /api/stats summed (each worker checks the caller's token);
        workers that did not answer (being started again) are listed as missing."""
        answered: list[tuple[int, str, dict[str, Any]]] = []
        missing: list[int] = []
        for worker in self.router.workers:
            if not worker.alive():
                missing.append(worker.index)
                continue
            try:
                response = await self.forward(request, worker)
            except (aiohttp.ClientError, OSError):
                missing.append(worker.index)
                continue
            if response.status != 200:
                return response  # refused (no token, no grant): as the worker said
            assert isinstance(response.body, bytes)
            answered.append((worker.index, worker.node_id, json.loads(response.body)))
        merged = worker_stats.merge(answered)
        merged["workers"] = {"answered": [i for i, _, _ in answered], "missing": missing}
        return web.json_response(merged)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "workers": len(self.router.workers)})

    async def readyz(self, request: web.Request) -> web.Response:
        live = {n.id for n in await self.router.nodes() if not n.load.get("draining")}
        ready = [w.index for w in self.router.workers if w.node_id in live and w.alive()]
        status = 200 if ready else 503
        return web.json_response(
            {"status": "ready" if ready else "no-worker", "workers_ready": ready}, status=status
        )

    # -- the signaling socket ---------------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        """Bridges a client's socket to one worker's. It starts at the least loaded worker
        (its `hello` goes out at once); the first message naming a room moves it to that
        room's home if it said nothing yet but `auth`/`ping` (the `auth` is replayed)."""
        client = web.WebSocketResponse(max_msg_size=self.config.server.max_body_bytes)
        await client.prepare(request)
        bridge = _Bridge(self, request, client)
        try:
            await bridge.run()
        finally:
            await bridge.close()
        return client


class _Bridge:
    """One client socket and its upstream socket at a worker (a SignalRelay)."""

    def __init__(self, front: Front, request: web.Request, client: web.WebSocketResponse) -> None:
        self.front = front
        self.request = request
        self.client = client
        self.relay: SignalRelay | None = None
        self.worker: Worker | None = None
        self._auth: list[str] = []  # replayed on a move
        self._bound = False
        self._closing: asyncio.Task[bool] | None = None

    async def _connect(self, worker: Worker, replay: list[str] | None) -> None:
        headers = self.front._headers(self.request)
        for name in ("Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Extensions"):
            headers.popall(name, None)
        relay = SignalRelay(self.client.send_str, self._upstream_closed, self.front.http)
        await relay.open(
            worker.base,
            self.request.query_string,
            headers,
            replay=replay,
            max_msg_size=self.front.config.server.max_body_bytes,
        )
        self.relay, self.worker = relay, worker

    def _upstream_closed(self) -> None:
        # The worker closed its side (going away, an auth timeout): so does the client's.
        if self._closing is None:
            self._closing = asyncio.ensure_future(self.client.close())

    async def run(self) -> None:
        await self._connect(await self.front.router.least_loaded(), replay=None)
        async for message in self.client:
            if message.type != WSMsgType.TEXT:
                continue
            await self._route(message.data)
            assert self.relay is not None
            await self.relay.send(message.data)

    async def _route(self, text: str) -> None:
        if self._bound:
            return
        try:
            data = json.loads(text)
        except ValueError:
            return  # the worker answers it (invalid-json)
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "auth":
            self._auth.append(text)
            return
        if kind == "ping":
            return
        self._bound = True
        room = data.get("room") if isinstance(data, dict) else None
        if kind not in _ROOMED or not isinstance(room, str):
            return
        home = await self.front.router.home(room)
        if home is not None and home is not self.worker:
            # Nothing stateful happened at the first worker: start again at the home.
            if self.relay is not None:
                await self.relay.close()
            await self._connect(home, replay=self._auth)

    async def close(self) -> None:
        if self.relay is not None:
            await self.relay.close()
