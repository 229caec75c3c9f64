"""Public keys for RS256/ES256 tokens: a JWKS file or URL, refreshed in the background."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt

logger = logging.getLogger(__name__)

MAX_JWKS_BYTES = 1 << 20
UNKNOWN_KID_REFRESH_S = 30.0  # a token with a new kid refreshes the set at most this often


class JwksSource:
    """The operator's key set (never a URL from a token: no ``jku``, no ``x5u``).

    Loaded at start; refreshed every ``refresh_s`` by a task this object owns, and at
    most every 30 s when a token names a key the set does not have (key rotation).
    A failed refresh keeps the previous keys.
    """

    def __init__(self, location: str, refresh_s: float) -> None:
        self.location = location
        self.refresh_s = refresh_s
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.refreshes = 0
        self.failures = 0

    async def start(self) -> None:
        await self.refresh()
        if not self._keys:
            raise RuntimeError(f"auth.jwks: no usable key in {self.location}")
        self._task = asyncio.create_task(self._refresh_loop(), name="jwks-refresh")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def key(self, kid: str | None) -> jwt.PyJWK | None:
        found = self._find(kid)
        if found is None and time.monotonic() - self._loaded_at > UNKNOWN_KID_REFRESH_S:
            await self.refresh()
            found = self._find(kid)
        return found

    def _find(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    async def refresh(self) -> None:
        async with self._lock:
            try:
                data = await self._fetch()
                keys = jwt.PyJWKSet.from_dict(data).keys
            except (OSError, ValueError, aiohttp.ClientError, TimeoutError, jwt.PyJWTError) as exc:
                self.failures += 1
                logger.warning("JWKS %s could not be loaded: %s", self.location, exc)
                return
            finally:
                self._loaded_at = time.monotonic()
            self._keys = {k.key_id: k for k in keys}
            self.refreshes += 1

    async def _fetch(self) -> dict[str, Any]:
        if "://" in self.location:
            timeout = aiohttp.ClientTimeout(total=10)
            async with aiohttp.ClientSession(timeout=timeout) as http:
                async with http.get(self.location, allow_redirects=False) as response:
                    # Not only errors: a redirect (never followed) is no key set either.
                    if response.status != 200:
                        raise ValueError(f"the JWKS URL answered HTTP {response.status}")
                    raw = await _read_body(response.content, MAX_JWKS_BYTES + 1)
        else:
            raw = await asyncio.to_thread(_read_file, Path(self.location))
        if len(raw) > MAX_JWKS_BYTES:
            raise ValueError(f"the JWKS exceeds {MAX_JWKS_BYTES} bytes")
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("a JWKS is a JSON object with 'keys'")
        return data

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            await self.refresh()


async def _read_body(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """Up to ``limit`` bytes of a response: one read(n) returns only what has arrived."""
    raw = bytearray()
    while len(raw) < limit:
        chunk = await stream.read(limit - len(raw))
        if not chunk:
            break
        raw.extend(chunk)
    return bytes(raw)


def _read_file(path: Path) -> bytes:
    with path.open("rb") as file:
        return file.read(MAX_JWKS_BYTES + 1)
