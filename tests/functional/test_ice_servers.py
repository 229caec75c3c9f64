"""Configured STUN/TURN servers reach clients: WHIP/WHEP Link headers and the WebSocket hello."""

from __future__ import annotations

import pytest

from gateway.config import Config, IceServer
from tests.conftest import RunningGateway, loopback_config
from tests.support.signaling import WsClient


@pytest.fixture
def gateway_config() -> Config:
    config = loopback_config()
    # Announced to clients only: OPTIONS and the hello create no peer connection,
    # so nothing is ever sent to these addresses.
    config.ice.servers = [
        IceServer(urls=["stun:stun.example.test:3478"]),
        IceServer(urls=["turn:turn.example.test:3478?transport=udp"], username="u", credential="p"),
    ]
    return config


async def test_link_headers_and_hello_announce_ice_servers(gateway: RunningGateway) -> None:
    for path in ("/whip/room", "/whep/room"):
        async with gateway.http.options(gateway.base + path) as response:
            assert response.status == 204
            links = response.headers.getall("Link")
    assert links == [
        '<stun:stun.example.test:3478>; rel="ice-server"',
        '<turn:turn.example.test:3478?transport=udp>; rel="ice-server"; username="u"; '
        'credential="p"; credential-type="password"',
    ]
    client = await WsClient.connect(gateway.http, gateway.base)
    hello = client.events[0]
    assert hello["ice_servers"] == [
        {"urls": ["stun:stun.example.test:3478"]},
        {"urls": ["turn:turn.example.test:3478?transport=udp"], "username": "u", "credential": "p"},
    ]
    await client.close()
