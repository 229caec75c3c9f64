"""The gateway as a real process (``python -m gateway``), optionally inside a network namespace."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tests.conftest import free_port

READY_LINE = "gateway: web UI at "


class GatewayProcess:
    """A started gateway: its process, base URL and log (stdout and stderr, one file)."""

    def __init__(self, process: asyncio.subprocess.Process, base: str, log: Path) -> None:
        self.process = process
        self.base = base
        self.log = log

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, number: int = signal.SIGTERM) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(number)

    async def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM, then its exit status; SIGKILL if it does not exit in time."""
        if self.process.returncode is None:
            self.signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), timeout_s)
        except TimeoutError:
            self.kill()
            await self.process.wait()
            raise AssertionError(f"the gateway did not exit within {timeout_s}s") from None

    def kill(self) -> None:
        if self.process.returncode is None:
            self.signal(signal.SIGKILL)

    async def close(self) -> None:
        """Whatever happened: killed if still running, and reaped."""
        self.kill()
        await self.process.wait()


async def start_gateway_process(
    config_text: str,
    directory: Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    wrapper: Sequence[str] = (),
    timeout_s: float = 30,
) -> GatewayProcess:
    """Writes ``config_text`` to ``directory``/gateway.yaml and runs the gateway on it.

    ``wrapper`` prefixes the command (e.g. ``ip netns exec NS``). Readiness is read from the
    log (the line the gateway prints once it listens), so it works where this process cannot
    reach the gateway's address, as from outside its network namespace.
    """
    port = port or free_port()
    config = directory / "gateway.yaml"
    config.write_text(config_text)
    log = directory / "gateway.log"
    with log.open("wb") as output:  # a file, not a pipe: nobody has to read it meanwhile
        process = await asyncio.create_subprocess_exec(
            *wrapper,
            sys.executable,
            "-m",
            "gateway",
            "--config",
            str(config),
            "--host",
            host,
            "--port",
            str(port),
            stdout=output,
            stderr=output,
            env={k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
        )
    gateway = GatewayProcess(process, f"http://{host}:{port}", log)
    deadline = time.monotonic() + timeout_s
    while READY_LINE not in gateway.log_text():
        if process.returncode is not None or time.monotonic() > deadline:
            gateway.kill()
            await process.wait()
            raise AssertionError(f"the gateway did not start:\n{gateway.log_text()[-3000:]}")
        await asyncio.sleep(0.1)
    return gateway
