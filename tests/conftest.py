"""Fixtures: a gateway running in-process on loopback, and an HTTP client for it."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.appkeys import REGISTRY
from gateway.config import Config
from gateway.rooms.registry import Registry


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loopback_config() -> Config:
    config = Config()
    config.ice.addresses = ["127.0.0.1"]
    # Participants whose socket closes leave quickly (test_reconnect covers the grace).
    config.rooms.reconnect_grace_s = 0.5
    config.server.port = free_port()
    # Every test client comes from 127.0.0.1, and some open sessions faster than one
    # person would; the limit tests (test_abuse_limits) set the defaults back.
    config.limits.sessions_per_ip_per_s = 100.0
    config.limits.sessions_per_ip_burst = 200
    return config


@dataclass
class RunningGateway:
    base: str
    app: web.Application
    http: aiohttp.ClientSession
    config: Config

    @property
    def registry(self) -> Registry:
        return self.app[REGISTRY]

    async def stats(self) -> dict:  # type: ignore[type-arg]
        async with self.http.get(f"{self.base}/api/stats") as response:
            assert response.status == 200
            return await response.json()  # type: ignore[no-any-return]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client for tests that run their own gateway (a process, another config)."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def gateway_config() -> Config:
    return loopback_config()


@pytest.fixture
async def gateway(gateway_config: Config) -> AsyncIterator[RunningGateway]:
    app = create_app(gateway_config)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", gateway_config.server.port)
    await site.start()
    async with aiohttp.ClientSession() as http:
        yield RunningGateway(
            f"http://127.0.0.1:{gateway_config.server.port}", app, http, gateway_config
        )
    await runner.cleanup()
