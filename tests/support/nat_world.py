"""A client network behind a NAT router and a "public" one with the gateway and coturn,
as network namespaces (tests/support/netns.py), and peers run inside them.

    gwB1-cli 10.99.0.2 --- 10.99.0.1 gwB1-nat 198.51.100.254 --- 198.51.100.1 gwB1-pub
    (clients, default route    (router: MASQUERADE onto          (gateway; coturn on
     via the router)            its public address)               198.51.100.2:3478)

The public side has no route back to 10.99.0.0/24: only the NAT's mappings reach the
clients. The gateway runs as its own process inside gwB1-pub, with auth on: clients learn
STUN and TURN (REST credentials the gateway mints for their token) from it.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.coturn import Coturn, start_coturn_in_namespace
from tests.support.gateway_process import GatewayProcess, start_gateway_process
from tests.support.netns import Namespace, Network, network
from tests.support.tokens import KEY, SECRET

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "gwB1"
GATEWAY_IP, TURN_IP, NAT_PUBLIC_IP = "198.51.100.1", "198.51.100.2", "198.51.100.254"
NAT_PRIVATE_IP, CLIENT_IP = "10.99.0.1", "10.99.0.2"
TURN_PORT = 3478
GATEWAY_PORT = 8080
BASE = f"http://{GATEWAY_IP}:{GATEWAY_PORT}"


@dataclass
class NatWorld:
    net: Network
    pub: Namespace
    router: Namespace
    client: Namespace
    router_public_if: str
    coturn: Coturn

    def hostile(self) -> None:
        """Port-randomising NAT, and direct UDP to the gateway dropped: only coturn's
        port gets through, so the only working path is a relay."""
        self.router.flush_firewall()
        self.router.masquerade(self.router_public_if, random_fully=True)
        self.router.drop_forwarded_udp(GATEWAY_IP)
        self.router.drop_forwarded_udp(TURN_IP, except_port=TURN_PORT)


@contextmanager
def nat_world(directory: Path) -> Iterator[NatWorld]:
    """The namespaces, plain MASQUERADE on the router, coturn running; all gone on exit."""
    with network(PREFIX) as net:
        pub, router, client = net.namespace("pub"), net.namespace("nat"), net.namespace("cli")
        pub_if, router_public_if = net.link(
            pub, f"{GATEWAY_IP}/24", router, f"{NAT_PUBLIC_IP}/24", "pu"
        )
        net.link(router, f"{NAT_PRIVATE_IP}/24", client, f"{CLIENT_IP}/24", "pr")
        pub.run("ip", "addr", "add", f"{TURN_IP}/24", "dev", pub_if)
        router.sysctl("net.ipv4.ip_forward", "1")
        router.masquerade(router_public_if)
        client.route("default", NAT_PRIVATE_IP)
        coturn = start_coturn_in_namespace(
            pub.command(), directory / "coturn", TURN_IP, "198.51.100.0-198.51.100.255"
        )
        try:
            yield NatWorld(net, pub, router, client, router_public_if, coturn)
        finally:
            coturn.stop()


def gateway_config(coturn: Coturn) -> str:
    return f"""
ice:
  addresses: [{GATEWAY_IP}]
  servers:
    - urls: ["{coturn.stun_url}"]
    - urls: ["{coturn.turn_url}"]
      secret: "{coturn.secret}"
      ttl_s: 600
auth:
  enabled: true
  keys: [{{key: {KEY}, secret: "{SECRET}"}}]
log:
  level: warning
"""


async def start_gateway(world: NatWorld, directory: Path) -> GatewayProcess:
    return await start_gateway_process(
        gateway_config(world.coturn),
        directory,
        host=GATEWAY_IP,
        port=GATEWAY_PORT,
        wrapper=world.pub.command(),
    )


class PeerProcess:
    """tests/support/netns_peer.py running in a namespace; its JSON lines as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, namespace: Namespace, *args: str) -> PeerProcess:
        process = await asyncio.create_subprocess_exec(
            *namespace.python("-m", "tests.support.netns_peer", *args),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        return cls(process)

    async def next_event(self, timeout: float = 60) -> dict[str, Any]:
        assert self.process.stdout is not None
        while True:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
            if not line:
                raise AssertionError(f"the peer exited: {await self.stderr()}")
            if line.startswith(b"{"):
                event: dict[str, Any] = json.loads(line)
                self.events.append(event)
                if event["event"] == "error":
                    raise AssertionError(f"the peer failed: {event} {await self.stderr()}")
                return event

    async def until(self, name: str, timeout: float = 60) -> dict[str, Any]:
        while True:
            event = await self.next_event(timeout)
            if event["event"] == name:
                return event

    async def stderr(self) -> str:
        assert self.process.stderr is not None
        with_timeout = asyncio.wait_for(self.process.stderr.read(), 10)
        return (await with_timeout).decode(errors="replace")[-3000:]

    async def close(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()


async def gateway_pair(world: NatWorld, location: str, access: str) -> dict[str, Any]:
    """The candidate pair the gateway's side of a session nominated (GET /api/sessions)."""
    session = location.rstrip("/").rsplit("/", 1)[-1]
    for _ in range(100):
        body = await world.pub.fetch_json(f"{BASE}/api/sessions/{session}", access)
        if body["candidate_pair"] is not None:
            pair: dict[str, Any] = body["candidate_pair"]
            return pair
        await asyncio.sleep(0.2)
    raise AssertionError(f"the gateway nominated no pair for {location}")


def assert_in_order(numbers: list[int], at_least: int) -> None:
    assert len(numbers) >= at_least, numbers
    assert numbers == sorted(numbers), numbers  # a path that works: no gaps, no reordering
