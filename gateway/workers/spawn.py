"""Worker gateway processes on this machine, and the private Redis they share."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import logging
import os
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from ..config import Config

logger = logging.getLogger(__name__)

READY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class WorkerSpec:
    index: int
    port: int
    node_id: str

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker_config(config: Config, spec: WorkerSpec, redis_url: str, pipe_dir: str) -> Config:
    """The front's settings for one worker: on loopback at its own port, a node of the
    machine's cluster whose rooms the others pull over the frame pipe in ``pipe_dir``,
    trusting the front's X-Forwarded-For."""
    worker = copy.deepcopy(config)
    worker.server.host = "127.0.0.1"
    worker.server.port = spec.port
    worker.server.workers = 1
    worker.server.trusted_proxies = [*config.server.trusted_proxies, "127.0.0.1"]
    worker.cluster.redis_url = redis_url
    worker.cluster.node_id = spec.node_id
    worker.cluster.advertise_url = spec.base
    worker.cluster.pipe_dir = pipe_dir
    if not worker.server.max_viewers:
        # One process is one core: past about this many viewers of a 1.5 Mbps stream it
        # lags (bench/results/broadcast.md); further viewers are served by other workers.
        worker.server.max_viewers = WORKER_VIEWERS
    return worker


WORKER_VIEWERS = 250


def to_yaml(config: Config) -> str:
    data: dict[str, Any] = dataclasses.asdict(config)
    return yaml.safe_dump(data, sort_keys=False)


class WorkerProcess:
    """One ``python -m gateway`` worker: started, restarted if it dies, stopped by PID."""

    def __init__(self, spec: WorkerSpec, config_text: str, directory: Path) -> None:
        self.spec = spec
        self._config_path = directory / f"worker-{spec.index}.yaml"
        self._config_path.write_text(config_text)
        self.process: asyncio.subprocess.Process | None = None
        self.ready = False  # answering: the front may send it requests
        self.restarts = 0

    async def start(self) -> None:
        self.ready = False
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            "--config",
            str(self._config_path),
            stdin=asyncio.subprocess.DEVNULL,
            # Its log (stderr) is the front's; its "web UI at" line is not the front's.
            stdout=asyncio.subprocess.DEVNULL,
        )
        await self._ready()
        self.ready = True

    async def _ready(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT_S
        async with aiohttp.ClientSession() as http:
            while loop.time() < deadline:
                if self.process is not None and self.process.returncode is not None:
                    raise RuntimeError(f"worker {self.spec.index} exited at start")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(f"{self.spec.base}/readyz") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"worker {self.spec.index} not ready in {READY_TIMEOUT_S:g}s")

    @property
    def alive(self) -> bool:
        """Running and answering (a worker being started again is not yet)."""
        return self.ready and self.process is not None and self.process.returncode is None

    async def wait(self) -> int:
        assert self.process is not None
        return await self.process.wait()

    async def stop(self, timeout_s: float) -> None:
        """SIGTERM (the worker drains), then SIGKILL if it is not gone in time."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout_s)
        except TimeoutError:
            process.kill()
            await process.wait()


class PrivateRedis:
    """The workers' directory when no cluster.redis_url is given: Debian's redis-server on
    a Unix socket in a private directory, no TCP port, no persistence."""

    def __init__(self) -> None:
        self._directory = Path(tempfile.mkdtemp(prefix="gateway-redis-"))
        self.socket = self._directory / "redis.sock"
        self.url = f"unix://{self.socket}"
        self.process: asyncio.subprocess.Process | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    async def start(self) -> None:
        os.chmod(self._directory, 0o700)  # only this user reaches the socket
        self.process = await asyncio.create_subprocess_exec(
            "redis-server",
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self._directory),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(100):
            if self.socket.exists():
                return
            if self.process.returncode is not None:
                raise RuntimeError("redis-server exited at start")
            await asyncio.sleep(0.05)
        raise RuntimeError("redis-server did not open its socket within 5 s")

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        shutil.rmtree(self._directory, ignore_errors=True)
