"""Configured STUN/TURN servers reach clients: WHIP/WHEP Link headers and the WebSocket hello."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import aiohttp
import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.config import Config, IceServer
from tests.conftest import RunningGateway, loopback_config
from tests.support.signaling import WsClient
from tests.support.tokens import bearer, secure_config, token


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


def shared_secret_config() -> Config:
    config = secure_config()
    config.auth.anonymous = {"room": "*", "roomJoin": True, "canSubscribe": True}
    config.ice.servers = [
        IceServer(urls=["stun:stun.example.test:3478"]),
        IceServer(urls=["turn:turn.example.test:3478"], secret=TURN_SECRET, ttl_s=600),
        IceServer(urls=["turn:static.example.test:3478"], username="u", credential="p"),
    ]
    return config


TURN_SECRET = "the static-auth-secret of a turnserver.conf"


def check_rest_credential(username: str, credential: str, identity: str) -> None:
    """coturn's check (use-auth-secret): expiry in the future, HMAC-SHA1 of the username."""
    expiry, _, label = username.partition(":")
    assert label == identity
    assert time.time() + 500 < int(expiry) <= time.time() + 600
    digest = hmac.new(TURN_SECRET.encode(), username.encode(), hashlib.sha1).digest()
    assert credential == base64.b64encode(digest).decode()


async def test_turn_credentials_go_only_to_token_holders_and_expire() -> None:
    config = shared_secret_config()
    app = create_app(config)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", config.server.port).start()
    base = f"http://127.0.0.1:{config.server.port}"
    try:
        async with aiohttp.ClientSession() as http:
            # Anonymous clients (allowed to watch here) get STUN only: no relay on our bill.
            async with http.options(base + "/whep/room") as response:
                assert response.headers.getall("Link", []) == []  # a preflight shape: nothing
            client = await WsClient.connect(http, base)
            assert client.events[0]["ice_servers"] == [{"urls": ["stun:stun.example.test:3478"]}]
            await client.close()
            # With a token: fresh REST credentials for its identity, and the static ones.
            alice = token("alice", "room")
            async with http.options(base + "/whep/room", headers=bearer(alice)) as response:
                links = response.headers.getall("Link")
            assert links[0] == '<stun:stun.example.test:3478>; rel="ice-server"'
            fields = dict(
                part.strip().split("=", 1) for part in links[1].split(";")[2:] if "=" in part
            )
            check_rest_credential(
                fields["username"].strip('"'), fields["credential"].strip('"'), "alice"
            )
            assert 'username="u"; credential="p"' in links[2]
            # A short-lived token gets a relay credential that expires with it.
            brief = token("sam", "room", ttl_s=120)
            async with http.options(base + "/whep/room", headers=bearer(brief)) as response:
                short = response.headers.getall("Link")[1]
            expiry = int(short.split('username="', 1)[1].split(":", 1)[0])
            assert time.time() + 100 < expiry <= time.time() + 121
            client = await WsClient.connect(http, base, alice)
            authenticated = next(e for e in client.events if e["type"] == "authenticated")
            turn = authenticated["ice_servers"][1]
            check_rest_credential(turn["username"], turn["credential"], "alice")
            await client.close()
    finally:
        await runner.cleanup()
