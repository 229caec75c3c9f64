"""Pages on other sites cannot act through a visitor's browser: Origin and Host checks."""

from __future__ import annotations

import aiohttp
import pytest

from gateway.recording.api import RECORDINGS
from tests.conftest import RunningGateway
from tests.support.media import NumberedVideoTrack
from tests.support.peers import wait_for, whip_publish

EVIL = {"Origin": "http://evil.test"}


async def test_cross_site_writes_and_sockets_are_refused_without_auth(
    gateway: RunningGateway,
) -> None:
    # Auth is off (the quick start on localhost): the Origin check is what stops a page
    # elsewhere from recording, deleting or publishing through the visitor's browser.
    publisher = await whip_publish(
        gateway.http, gateway.base, "home", [NumberedVideoTrack(320, 240)]
    )
    for method, path in (
        ("POST", "/api/rooms/home/recording"),
        ("DELETE", publisher.location),
        ("POST", "/whip/other"),
        ("PATCH", publisher.location),
    ):
        async with gateway.http.request(method, gateway.base + path, headers=EVIL) as response:
            assert response.status == 403, (method, path)
            assert (await response.json())["error"] == "origin-not-allowed"
            assert "Access-Control-Allow-Origin" not in response.headers
    assert gateway.app[RECORDINGS].is_recorded("home") is False
    # Reads are answered, but without CORS headers the page cannot see them.
    async with gateway.http.get(gateway.base + "/api/rooms", headers=EVIL) as response:
        assert response.status == 200
        assert "Access-Control-Allow-Origin" not in response.headers
    # Cross-site WebSocket hijacking: refused at the upgrade.
    url = gateway.base.replace("http", "ws", 1) + "/ws"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await gateway.http.ws_connect(url, headers=EVIL)
    assert refused.value.status == 403
    # The gateway's own pages (same origin) work as before.
    same = {"Origin": gateway.base}
    ws = await gateway.http.ws_connect(url, headers=same)
    assert (await ws.receive_json())["type"] == "hello"
    await ws.close()
    async with gateway.http.delete(gateway.base + publisher.location, headers=same) as response:
        assert response.status == 200
    await publisher.pc.close()
    await wait_for(lambda: not gateway.registry.sessions)


async def test_dns_rebinding_names_are_refused_on_an_open_loopback_gateway(
    gateway: RunningGateway,
) -> None:
    # evil.test resolving to 127.0.0.1 would make the page same-origin with its own name.
    for host in ("evil.test", f"evil.test:{gateway.config.server.port}", "127.0.0.1.nip.io"):
        async with gateway.http.get(
            gateway.base + "/api/rooms", headers={"Host": host}
        ) as response:
            assert response.status == 421, host
            assert (await response.json())["error"] == "host-not-allowed"
    for host in ("localhost", f"127.0.0.1:{gateway.config.server.port}", "[::1]:8080"):
        async with gateway.http.get(gateway.base + "/healthz", headers={"Host": host}) as response:
            assert response.status == 200, host
