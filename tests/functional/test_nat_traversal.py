"""Clients behind a real NAT (network namespaces, iptables MASQUERADE) reach the gateway
through STUN (server-reflexive) or, when the NAT is hostile, a real coturn relay.

Topology, every address inside namespaces the test makes (tests/support/netns.py):

    gwB1-cli 10.99.0.2 --- 10.99.0.1 gwB1-nat 198.51.100.254 --- 198.51.100.1 gwB1-pub
    (client, default route     (router: MASQUERADE onto          (gateway; coturn on
     via the router)            its public address)               198.51.100.2:3478)

The public side has no route back to 10.99.0.0/24: only the NAT's mappings reach the
client. The gateway runs as its own process inside gwB1-pub, with auth on: clients learn
STUN and TURN (REST credentials the gateway mints for their token) from its Link headers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.nat_world import (
    BASE,
    CLIENT_IP,
    NAT_PUBLIC_IP,
    TURN_IP,
    NatWorld,
    PeerProcess,
    assert_in_order,
    gateway_pair,
    nat_world,
    start_gateway,
)
from tests.support.tokens import token

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[NatWorld]:
    with nat_world(tmp_path) as built:
        yield built


async def publish_and_watch(world: NatWorld, room: str) -> tuple[dict[str, Any], ...]:
    """One aiortc process behind the NAT publishes numbered frames over WHIP and watches
    them back over WHEP; returns its result and the gateway's pairs (publisher, viewer)."""
    access = token("natclient", room=room, canPublish=True, canSubscribe=True)
    peer = await PeerProcess.start(
        world.client, "--base", BASE, "--room", room, "--token", access,
        "--publish", "--watch", "--seconds", "4", "--frames", "90",
    )  # fmt: skip
    try:
        published = await peer.until("published")
        watching = await peer.until("watching")
        publisher_side = await gateway_pair(world, published["location"], access)
        viewer_side = await gateway_pair(world, watching["location"], access)
        result = await peer.until("result", timeout=90)
    finally:
        await peer.close()
    return result, publisher_side, viewer_side


async def test_client_behind_masquerade_connects_server_reflexive(
    world: NatWorld, tmp_path: Path
) -> None:
    gateway = await start_gateway(world, tmp_path)
    try:
        result, publisher_side, viewer_side = await publish_and_watch(world, "nat-srflx")
    finally:
        await gateway.close()
    # The client learnt STUN and TURN from the gateway and found its public mapping.
    assert result["ice_servers"] == [world.coturn.stun_url, world.coturn.turn_url]
    assert "srflx" in result["publisher_candidates"], result
    for client_side, gateway_side in (
        (result["publisher_pair"], publisher_side),
        (result["viewer_pair"], viewer_side),
    ):
        # Direct: the client's own socket to the gateway's host address, through the NAT.
        assert client_side["local"]["type"] == "host", client_side
        assert client_side["local"]["address"].startswith(CLIENT_IP + ":"), client_side
        assert client_side["remote"] == {
            "type": "host",
            "address": gateway_side["local"]["address"],
        }
        # The gateway sees the NAT's address: the server-reflexive candidate STUN found.
        assert gateway_side["local"]["type"] == "host", gateway_side
        assert gateway_side["remote"]["type"] == "srflx", gateway_side
        assert gateway_side["remote"]["address"].startswith(NAT_PUBLIC_IP + ":"), gateway_side
    # Media both ways: the frames it published came back, decoded, in order.
    assert_in_order(result["numbers"], 60)
    assert result["sizes"] == [[320, 240]]


async def test_hostile_nat_relays_through_coturn(world: NatWorld, tmp_path: Path) -> None:
    world.hostile()
    gateway = await start_gateway(world, tmp_path)
    try:
        result, publisher_side, viewer_side = await publish_and_watch(world, "nat-relay")
    finally:
        await gateway.close()
    for client_side, gateway_side in (
        (result["publisher_pair"], publisher_side),
        (result["viewer_pair"], viewer_side),
    ):
        # The client's end is its relay on coturn, and that is what the gateway talks to.
        assert client_side["local"]["type"] == "relay", client_side
        assert client_side["local"]["address"].startswith(TURN_IP + ":"), client_side
        assert gateway_side["remote"]["type"] == "relay", gateway_side
        assert gateway_side["remote"]["address"] == client_side["local"]["address"]
    assert_in_order(result["numbers"], 60)
    # The relay was allocated with the REST credentials the gateway minted for the token.
    usernames = await asyncio.to_thread(world.coturn.allocations)
    assert any(name.endswith(":natclient") for name in usernames), usernames
