"""Runs the front and its workers (server.workers): starts them, restarts a worker that
dies, and on SIGTERM drains the workers before everything stops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from ..config import Config
from .front import Front, Router, Worker
from .spawn import PrivateRedis, WorkerProcess, WorkerSpec, free_port, to_yaml, worker_config

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)
RESTART_DELAY_S = 1.0


def worker_count(config: Config) -> int:
    return config.server.workers or os.cpu_count() or 1


async def serve_workers(config: Config) -> int:
    count = worker_count(config)
    private: PrivateRedis | None = None
    redis_url = config.cluster.redis_url
    if not redis_url:
        if not PrivateRedis.available():
            print(
                "configuration error: server.workers: the workers share their rooms through "
                "Redis: install redis-server (Debian: apt-get install redis-server) or set "
                "cluster.redis_url",
                flush=True,
            )
            return 2
        private = PrivateRedis()
        await private.start()
        redis_url = private.url
    directory = Path(tempfile.mkdtemp(prefix="gateway-workers-"))
    name = config.cluster.node_id or f"{socket.gethostname()}-{secrets.token_hex(3)}"
    specs = [WorkerSpec(i, free_port(), f"{name}-w{i}") for i in range(count)]
    workers = [
        WorkerProcess(
            spec,
            to_yaml(worker_config(config, spec, redis_url, str(directory / "pipes"))),
            directory,
        )
        for spec in specs
    ]
    router = Router(
        [Worker(w.spec.index, w.spec.base, w.spec.node_id, _alive(w)) for w in workers],
        redis_url,
        config,
    )
    runner = web.AppRunner(Front(router, config).app(), handle_signals=False)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for number in SIGNALS:
        loop.add_signal_handler(number, stop.set)
    watchers: list[asyncio.Task[None]] = []
    try:
        await asyncio.gather(*(w.start() for w in workers))
        watchers = [asyncio.ensure_future(_keep_alive(w, stop)) for w in workers]
        await runner.setup()
        await web.TCPSite(runner, config.server.host, config.server.port).start()
        host = "localhost" if config.server.host in ("127.0.0.1", "0.0.0.0") else config.server.host
        print(
            f"gateway: web UI at http://{host}:{config.server.port}/ ({count} workers)",
            flush=True,
        )
        await stop.wait()
        logger.warning("stopping: %d workers drain", count)
    finally:
        for number in SIGNALS:
            loop.remove_signal_handler(number)
        for task in watchers:
            task.cancel()
        for task in watchers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Each worker drains (server.drain_timeout_s), then the front stops.
        timeout = config.server.drain_timeout_s + 15
        await asyncio.gather(*(w.stop(timeout) for w in workers), return_exceptions=True)
        await runner.cleanup()
        await router.close()
        if private is not None:
            await private.stop()
        await asyncio.to_thread(shutil.rmtree, directory, True)
    return 0


def _alive(worker: WorkerProcess) -> Callable[[], bool]:
    return lambda: worker.alive


async def _keep_alive(worker: WorkerProcess, stop: asyncio.Event) -> None:
    """A worker that exits is started again (its rooms' clients reconnect to it)."""
    while not stop.is_set():
        code = await worker.wait()
        if stop.is_set():
            return
        worker.restarts += 1
        logger.error("worker %d exited (%s); restarting it", worker.spec.index, code)
        await asyncio.sleep(RESTART_DELAY_S)
        try:
            await worker.start()
        except RuntimeError as exc:
            logger.error("worker %d: %s", worker.spec.index, exc)
