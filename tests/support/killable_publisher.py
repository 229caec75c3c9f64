"""Drives tests/support/publisher_process.py: a WHIP publisher a test can ``kill -9``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class PublisherProcess:
    """One publisher_process.py: its Location and the next frame number it will send."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.location = ""
        self.sent = 0
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls,
        base: str,
        room: str,
        *,
        first: int = 0,
        token: str | None = None,
        size: tuple[int, int] = (320, 240),
        noise: bool = False,
        bitrate: int | None = None,
        wrapper: list[str] | None = None,
    ) -> PublisherProcess:
        """``wrapper``: the command to run it in (a network namespace's ``ip netns exec``)."""
        args = ["--base", base, "--room", room, "--first", str(first)]
        args += ["--width", str(size[0]), "--height", str(size[1])]
        if token is not None:
            args += ["--token", token]
        if noise:
            args.append("--noise")
        if bitrate is not None:
            args += ["--bitrate", str(bitrate)]
        process = await asyncio.create_subprocess_exec(
            *(wrapper or []),
            sys.executable,
            "-m",
            "tests.support.publisher_process",
            *args,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        publisher = cls(process)
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), 30)
            publisher.location = json.loads(line)["location"]
        except BaseException:
            await publisher.kill()
            raise
        publisher._reader = asyncio.ensure_future(publisher._read())
        return publisher

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.sent = json.loads(line)["sent"]

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
        await self.process.wait()
        if self._reader is not None:
            await self._reader
