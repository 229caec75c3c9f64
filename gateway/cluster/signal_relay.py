"""A client's signaling socket carried on to the room's home node (LiveKit's signal relay):
a participant may join a room through any node; its peer connection is with the home."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import WSMsgType

logger = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT_S = 10.0


class SignalRelay:
    """An upstream socket at the home node: what the client sends is passed on, what the
    home sends is handed to ``deliver`` (the local socket's ordered outbox)."""

    def __init__(
        self,
        deliver: Callable[[dict[str, Any]], None],
        on_closed: Callable[[], None],
    ) -> None:
        self._deliver = deliver
        self._on_closed = on_closed
        self._http: aiohttp.ClientSession | None = None
        self._upstream: aiohttp.ClientWebSocketResponse | None = None
        self._pump: asyncio.Task[None] | None = None
        self.node = ""

    async def open(
        self, base: str, query: str, headers: dict[str, str], replay: list[str], first: str
    ) -> None:
        """Connects to ``base``'s socket, replays the client's ``auth`` messages (their
        replies and the home's ``hello`` are the client's already), then sends ``first``."""
        self.node = base
        self._http = aiohttp.ClientSession()
        url = base.replace("http", "ws", 1) + "/ws" + (f"?{query}" if query else "")
        try:
            upstream = await self._http.ws_connect(url, headers=headers, heartbeat=20)
            self._upstream = upstream
            await _skip(upstream, "hello")
            for text in replay:
                await upstream.send_str(text)
                await _skip(upstream, "authenticated", "error")
            await upstream.send_str(first)
        except BaseException:
            await self.close()
            raise
        self._pump = asyncio.ensure_future(self._from_home(upstream))

    async def send(self, text: str) -> None:
        if self._upstream is not None and not self._upstream.closed:
            await self._upstream.send_str(text)

    async def _from_home(self, upstream: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for message in upstream:
                if message.type == WSMsgType.TEXT:
                    with contextlib.suppress(ValueError):
                        self._deliver(json.loads(message.data))
        finally:
            # The home closed its side (its shutdown, its auth timeout): so does the client.
            self._on_closed()

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None
        if self._upstream is not None:
            await self._upstream.close()
            self._upstream = None
        if self._http is not None:
            await self._http.close()
            self._http = None


async def _skip(upstream: aiohttp.ClientWebSocketResponse, *types: str) -> None:
    """Reads (and drops) what the home sends until a message of one of ``types``."""
    while True:
        message = await asyncio.wait_for(upstream.receive(), HANDSHAKE_TIMEOUT_S)
        if message.type != WSMsgType.TEXT:
            raise ConnectionError("the home node closed the socket")
        if json.loads(message.data).get("type") in types:
            return
