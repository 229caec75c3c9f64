"""A client's signaling socket carried on to another gateway (LiveKit's signal relay): to the
room's home node, or (the workers' front) to the worker its room lives on."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping

import aiohttp
from aiohttp import WSMsgType

logger = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT_S = 10.0


class SignalRelay:
    """An upstream socket at another gateway: what the client sends is passed on with
    ``send``, what the gateway sends is handed to ``deliver`` (text, in order). When the
    upstream ends by itself (that gateway's shutdown, its auth timeout) ``on_closed`` runs;
    ``close()`` ends it without."""

    def __init__(
        self,
        deliver: Callable[[str], Awaitable[None]],
        on_closed: Callable[[], None],
        http: aiohttp.ClientSession | None = None,
    ) -> None:
        self._deliver = deliver
        self._on_closed = on_closed
        self._own_http = http is None
        self._http = http
        self._upstream: aiohttp.ClientWebSocketResponse | None = None
        self._pump: asyncio.Task[None] | None = None

    async def open(
        self,
        base: str,
        query: str,
        headers: Mapping[str, str],
        *,
        replay: list[str] | None = None,
        first: str | None = None,
        max_msg_size: int = 4 * 1024 * 1024,
    ) -> None:
        """Connects to ``base``'s socket. With ``replay`` (the client's ``auth`` messages) the
        client had its ``hello`` and replies already: the new ones are dropped; without, they
        are delivered. ``first`` is then sent."""
        if self._http is None:
            self._http = aiohttp.ClientSession()
        url = base.replace("http", "ws", 1) + "/ws" + (f"?{query}" if query else "")
        try:
            upstream = await self._http.ws_connect(
                url, headers=headers, heartbeat=20, max_msg_size=max_msg_size
            )
            self._upstream = upstream
            if replay is not None:
                await _skip(upstream, "hello")
                for text in replay:
                    await upstream.send_str(text)
                    await _skip(upstream, "authenticated", "error")
            if first is not None:
                await upstream.send_str(first)
        except BaseException:
            await self.close()
            raise
        self._pump = asyncio.ensure_future(self._from_upstream(upstream))

    async def send(self, text: str) -> None:
        if self._upstream is not None and not self._upstream.closed:
            await self._upstream.send_str(text)

    async def _from_upstream(self, upstream: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for message in upstream:
                if message.type == WSMsgType.TEXT:
                    await self._deliver(message.data)
        except (aiohttp.ClientError, ConnectionError) as exc:
            logger.info("relayed socket ended: %s", exc)
        self._on_closed()  # not on cancel: close() ends it quietly

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None
        if self._upstream is not None:
            await self._upstream.close()
            self._upstream = None
        if self._http is not None and self._own_http:
            await self._http.close()
        self._http = None if self._own_http else self._http


async def _skip(upstream: aiohttp.ClientWebSocketResponse, *types: str) -> None:
    """Reads (and drops) what the gateway sends until a message of one of ``types``."""
    while True:
        message = await asyncio.wait_for(upstream.receive(), HANDSHAKE_TIMEOUT_S)
        if message.type != WSMsgType.TEXT:
            raise ConnectionError("the gateway closed the socket")
        if json.loads(message.data).get("type") in types:
            return
