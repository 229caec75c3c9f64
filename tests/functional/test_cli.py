"""The command line: embedded defaults, overrides, clear configuration errors, clean exit."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp

from tests.conftest import free_port


async def run_gateway(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


async def test_starts_with_defaults_serves_and_stops_on_sigterm() -> None:
    port = free_port()
    process = await run_gateway("--port", str(port), env={"GATEWAY_ICE_ADDRESSES": "[127.0.0.1]"})
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        assert f"http://localhost:{port}/" in line.decode()
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                        body = await response.json()
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            # Liveness only: what runs on the gateway is for those with a grant to see.
            assert body["status"] == "ok" and set(body) == {"status", "version"}
            async with http.get(f"http://127.0.0.1:{port}/") as response:
                assert response.status == 200
                assert "<html" in (await response.text()).lower()
            # An open signaling socket must not hold up the shutdown. Its token (ignored
            # with auth off) must not reach the access log.
            ws = await http.ws_connect(f"ws://127.0.0.1:{port}/ws?access_token=SECRET-VALUE")
            assert (await ws.receive_json())["type"] == "hello"
            process.send_signal(signal.SIGTERM)
            assert (await ws.receive_json())["type"] == "going-away"
            closing = await ws.receive()
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            # Without closing it, aiohttp would wait its whole 60 s shutdown timeout.
            code = await asyncio.wait_for(process.wait(), timeout=30)
            assert process.stderr is not None
            log = (await process.stderr.read()).decode()
            assert '"GET /ws?access_token=[redacted] HTTP/1.1" 101' in log, log
            assert "SECRET-VALUE" not in log
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert code == 0


async def test_bad_configuration_names_the_key(tmp_path: Path) -> None:
    cases = {
        "server:\n  port: 70000\n": "server.port",
        "server:\n  prot: 1\n": "server.prot",
        "ice:\n  addresses: [not-an-ip]\n": "ice.addresses[0]",
        "media:\n  video_codecs: [VP9]\n": "media.video_codecs",
        "server: [1, 2]\n": "server",
        "ice:\n  servers:\n    - urls: ['turn:turn.example.org']\n": "ice.servers[0]",
    }
    for text, key in cases.items():
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        process = await run_gateway("--config", str(path))
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
        assert process.returncode == 2, text
        assert f"configuration error: {key}" in stderr.decode(), stderr.decode()

    process = await run_gateway(env={"GATEWAY_SERVER_PORT": "eighty"})
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 2
    assert "server.port: expected an integer" in stderr.decode()

    # Serving the network with auth off must be asked for, never a default.
    process = await run_gateway("--host", "0.0.0.0")
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 2
    assert "server.host: 0.0.0.0 serves the network with auth off" in stderr.decode()

    process = await run_gateway("--config", str(tmp_path / "missing.yaml"))
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 2
    assert "cannot read config file" in stderr.decode()
