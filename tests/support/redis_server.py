"""A real Redis (Debian's redis-server) on 127.0.0.1 for one test, with no persistence."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tests.conftest import free_port

REDIS_SERVER = "/usr/bin/redis-server"


class RedisServer:
    """A redis-server process the test owns; ``stop()`` ends it by its PID."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def start_redis(directory: Path, port: int | None = None) -> RedisServer:
    port = port or free_port()
    process = await asyncio.create_subprocess_exec(
        REDIS_SERVER,
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--save", "",
        "--appendonly", "no",
        "--dir", str(directory),
        "--protected-mode", "yes",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    server = RedisServer(process, port)
    client = Redis.from_url(server.url)
    try:
        for _ in range(100):
            with contextlib.suppress(OSError, RedisError):
                if await client.ping():
                    return server
            if process.returncode is not None:
                raise AssertionError(f"redis-server exited with {process.returncode}")
            await asyncio.sleep(0.05)
        raise AssertionError("redis-server did not answer PING within 5 s")
    except BaseException:
        await server.stop()
        raise
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def redis_server(directory: Path) -> AsyncIterator[RedisServer]:
    server = await start_redis(directory)
    try:
        yield server
    finally:
        await server.stop()
