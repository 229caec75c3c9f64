"""A tiny JSON-lines command channel between the benchmark and its worker processes.

A worker reads one JSON command per line on stdin ({"cmd": NAME, ...}) and answers one
JSON line on stdout ({"ok": true, ...} or {"ok": false, "error": ...}). Logs go to stderr.
Every subprocess is started here, remembered by PID, and ended by that PID only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Self

logger = logging.getLogger("bench")

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
PYTHON = sys.executable
ROOT = Path(__file__).resolve().parent.parent
# Where child processes run (their ``gateway`` package is the one found here): the work
# tree, or a snapshot of one git revision (see broadcast.py --gateway-rev).
WORKDIR: list[Path] = [ROOT]


async def serve(handlers: dict[str, Handler]) -> None:
    """Worker side: answer commands until "quit" or end of input."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout
    out.write(json.dumps({"ok": True, "ready": True, "pid": os.getpid()}) + "\n")
    out.flush()
    while True:
        line = await reader.readline()
        if not line:
            break
        message = json.loads(line)
        name = message.get("cmd")
        if name == "quit":
            out.write(json.dumps({"ok": True}) + "\n")
            out.flush()
            break
        try:
            handler = handlers[name]
            reply = {"ok": True, **(await handler(message))}
        except Exception as exc:
            logger.exception("command %s failed", name)
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


def _open_log(path: Path) -> Any:
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "ab")  # the child writes to it; our copy is closed after the fork


class Process:
    """A subprocess this benchmark started; ``stop()`` ends exactly it (by PID)."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.name = name
        self.proc = proc
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    async def start(
        cls, name: str, args: list[str], log_dir: Path, env: dict[str, str] | None = None
    ) -> Self:
        log_path = log_dir / f"{name}.log"
        log = _open_log(log_path)
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            cwd=str(WORKDIR[0]),
            env={**os.environ, **(env or {})},
            limit=64 * 1024 * 1024,
        )
        log.close()
        logger.debug("started %s (pid %d)", name, proc.pid)
        return cls(name, proc, log_path)

    async def stop(self, wait_s: float = 10.0) -> None:
        if self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), wait_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Worker(Process):
    """A subprocess that speaks the JSON-lines command channel."""

    async def wait_ready(self, wait_s: float = 60.0) -> None:
        await self._read(wait_s)

    async def call(self, cmd: str, wait_s: float = 120.0, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"cmd": cmd, **args}) + "\n").encode())
        await self.proc.stdin.drain()
        reply = await self._read(wait_s)
        if not reply.get("ok"):
            raise RuntimeError(f"{self.name}: {cmd} failed: {reply.get('error')}")
        return reply

    async def _read(self, wait_s: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), wait_s)
        except TimeoutError as exc:
            raise RuntimeError(f"{self.name}: no answer within {wait_s}s") from exc
        if not line:
            raise RuntimeError(f"{self.name} exited; log tail:\n{self.tail()}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    async def stop(self, wait_s: float = 10.0) -> None:
        if self.proc.returncode is None and self.proc.stdin is not None:
            with contextlib.suppress(Exception):
                self.proc.stdin.write(b'{"cmd": "quit"}\n')
                await self.proc.stdin.drain()
                await asyncio.wait_for(self.proc.wait(), 5)
        await super().stop(wait_s)


def setup_worker_logging(name: str) -> None:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s",
    )
    # BENCH_ICE_LOG=1 keeps aioice's info messages (ICE consent expiry, for instance).
    ice_level = logging.INFO if os.environ.get("BENCH_ICE_LOG") else logging.WARNING
    logging.getLogger("aioice").setLevel(ice_level)
    logging.getLogger("aiortc").setLevel(logging.WARNING)


def now() -> float:
    return time.monotonic()
