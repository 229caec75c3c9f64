"""ICE helpers: remote candidates, Link headers, and the addresses aioice gathers on."""

from __future__ import annotations

from collections.abc import Iterator

import aioice
import aioice.ice
import pytest

from gateway.auth.principal import OPEN
from gateway.config import IceServer, IceSettings
from gateway.errors import GatewayError
from gateway.signaling import ice
from gateway.signaling.ice import (
    client_ice_servers,
    link_headers,
    parse_candidate,
    restrict_host_addresses,
    rtc_configuration,
)

SRFLX = (
    "candidate:842163049 1 udp 1677729535 203.0.113.9 61000 typ srflx "
    "raddr 192.168.1.20 rport 50001 generation 0 ufrag EsAw network-cost 999"
)
HOST = "candidate:1 1 udp 2122260223 192.168.1.20 50001 typ host generation 0"


@pytest.fixture
def restore_host_addresses() -> Iterator[None]:
    """Puts back whatever get_host_addresses was (the app patches it at create_app)."""
    saved = aioice.ice.get_host_addresses
    yield
    aioice.ice.get_host_addresses = saved


# --- parse_candidate ------------------------------------------------------------------------


def test_parse_srflx_candidate() -> None:
    candidate = parse_candidate(SRFLX, "0", 0)
    assert candidate is not None
    assert (candidate.foundation, candidate.component, candidate.protocol) == (
        "842163049",
        1,
        "udp",
    )
    assert (candidate.priority, candidate.ip, candidate.port) == (1677729535, "203.0.113.9", 61000)
    assert candidate.type == "srflx"
    assert (candidate.relatedAddress, candidate.relatedPort) == ("192.168.1.20", 50001)
    assert (candidate.sdpMid, candidate.sdpMLineIndex) == ("0", 0)


@pytest.mark.parametrize(
    "text",
    [HOST, HOST[len("candidate:") :], "a=" + HOST, "  " + HOST + "\r\n"],
)
def test_parse_host_candidate_with_or_without_prefixes(text: str) -> None:
    candidate = parse_candidate(text, "video", 1)
    assert candidate is not None
    assert (candidate.type, candidate.ip, candidate.port) == ("host", "192.168.1.20", 50001)
    assert (candidate.foundation, candidate.priority) == ("1", 2122260223)
    assert (candidate.sdpMid, candidate.sdpMLineIndex) == ("video", 1)


def test_parse_tcp_candidate() -> None:
    candidate = parse_candidate(
        "candidate:4 1 TCP 1518280447 192.168.1.20 9 typ host tcptype active", "0", 0
    )
    assert candidate is not None
    assert candidate.protocol == "TCP"
    assert candidate.tcpType == "active"


def test_ipv6_candidate() -> None:
    candidate = parse_candidate("candidate:7 1 udp 2122262783 2001:db8::5 50003 typ host", "0", 0)
    assert candidate is not None and candidate.ip == "2001:db8::5"


def test_mdns_candidate_is_ignored() -> None:
    text = "candidate:1 1 udp 2113937151 4f9c6c7a-3e8b-4d54-9e2b-2b7f0e5a1c11.local 50000 typ host"
    assert parse_candidate(text, "0", 0) is None
    assert parse_candidate("a=" + text, None, None) is None


def test_missing_mid_and_index_default_to_the_first_section() -> None:
    candidate = parse_candidate(HOST, None, None)
    assert candidate is not None
    assert (candidate.sdpMid, candidate.sdpMLineIndex) == (None, 0)


def test_mid_without_index_keeps_the_index_unset() -> None:
    candidate = parse_candidate(HOST, "1", None)
    assert candidate is not None
    assert (candidate.sdpMid, candidate.sdpMLineIndex) == ("1", None)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "candidate:",
        "candidate:1 1 udp",
        "candidate:1 1 udp 2122260223 192.168.1.20 50001 typ",
        "candidate:1 one udp 2122260223 192.168.1.20 50001 typ host",
        "candidate:1 1 udp high 192.168.1.20 50001 typ host",
        "candidate:1 1 udp 2122260223 192.168.1.20 port typ host",
        "candidate:1 1 udp 1 192.168.1.20 50001 typ srflx raddr 10.0.0.1 rport x",
        "candidate:1 1 udp 2122260223 192.168.1.20 50001 foo host",
        "not a candidate at all",
    ],
)
def test_malformed_candidate(text: str) -> None:
    with pytest.raises(GatewayError) as info:
        parse_candidate(text, "0", 0)
    assert (info.value.status, info.value.code) == (400, "invalid-candidate")


def test_malformed_candidate_message_quotes_it_truncated() -> None:
    text = "candidate:" + "x" * 500
    with pytest.raises(GatewayError) as info:
        parse_candidate(text, "0", 0)
    assert "malformed ICE candidate" in info.value.message
    assert len(info.value.message) < 300


def test_unknown_transport_is_refused() -> None:
    with pytest.raises(GatewayError) as info:
        parse_candidate("candidate:1 1 sctp 1 192.168.1.20 5000 typ host", "0", 0)
    assert info.value.code == "invalid-candidate"
    assert "sctp" in info.value.message


# --- ICE servers ----------------------------------------------------------------------------

STUN = IceServer(urls=["stun:stun.example.org:3478"])
TURN = IceServer(
    urls=["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"],
    username="gw",
    credential="s3cret",
)


def test_no_link_headers_without_servers() -> None:
    assert link_headers(IceSettings(), OPEN) == []


def test_link_header_without_credentials() -> None:
    assert link_headers(IceSettings(servers=[STUN]), OPEN) == [
        '<stun:stun.example.org:3478>; rel="ice-server"'
    ]


def test_link_headers_with_turn_credentials_one_per_url() -> None:
    assert link_headers(IceSettings(servers=[STUN, TURN]), OPEN) == [
        '<stun:stun.example.org:3478>; rel="ice-server"',
        '<turn:turn.example.org:3478?transport=udp>; rel="ice-server"; username="gw"; '
        'credential="s3cret"; credential-type="password"',
        '<turns:turn.example.org:5349>; rel="ice-server"; username="gw"; '
        'credential="s3cret"; credential-type="password"',
    ]


def test_client_ice_servers() -> None:
    assert client_ice_servers(IceSettings(servers=[STUN, TURN]), OPEN) == [
        {"urls": ["stun:stun.example.org:3478"]},
        {
            "urls": ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"],
            "username": "gw",
            "credential": "s3cret",
        },
    ]


def test_rtc_configuration_has_an_explicit_empty_server_list() -> None:
    assert rtc_configuration(IceSettings()).iceServers == []
    (server,) = rtc_configuration(IceSettings(servers=[TURN])).iceServers
    assert (server.urls, server.username, server.credential) == (TURN.urls, "gw", "s3cret")


# --- restrict_host_addresses ----------------------------------------------------------------


@pytest.mark.usefixtures("restore_host_addresses")
def test_explicit_addresses_are_exactly_those_gathered() -> None:
    restrict_host_addresses(["127.0.0.1"])
    assert aioice.ice.get_host_addresses(True, False) == ["127.0.0.1"]
    assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1"]
    assert aioice.ice.get_host_addresses(False, True) == []


@pytest.mark.usefixtures("restore_host_addresses")
def test_explicit_addresses_are_filtered_by_family() -> None:
    restrict_host_addresses(["10.0.0.5", "::1", "127.0.0.1"])
    assert aioice.ice.get_host_addresses(True, True) == ["10.0.0.5", "::1", "127.0.0.1"]
    assert aioice.ice.get_host_addresses(True, False) == ["10.0.0.5", "127.0.0.1"]
    assert aioice.ice.get_host_addresses(False, True) == ["::1"]


@pytest.mark.usefixtures("restore_host_addresses")
def test_no_addresses_means_every_interface_plus_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bool, bool]] = []

    def interfaces(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        calls.append((use_ipv4, use_ipv6))
        return (["192.168.1.20"] if use_ipv4 else []) + (["2001:db8::5"] if use_ipv6 else [])

    monkeypatch.setattr(ice, "_original_host_addresses", interfaces)
    restrict_host_addresses([])
    assert aioice.ice.get_host_addresses(True, False) == ["192.168.1.20", "127.0.0.1"]
    assert aioice.ice.get_host_addresses(True, True) == ["192.168.1.20", "2001:db8::5", "127.0.0.1"]
    assert aioice.ice.get_host_addresses(False, True) == ["2001:db8::5"]
    assert calls == [(True, False), (True, True), (False, True)]


@pytest.mark.usefixtures("restore_host_addresses")
def test_loopback_is_not_added_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ice, "_original_host_addresses", lambda v4, v6: ["127.0.0.1", "10.1.1.1"])
    restrict_host_addresses([])
    assert aioice.ice.get_host_addresses(True, False) == ["127.0.0.1", "10.1.1.1"]


@pytest.mark.usefixtures("restore_host_addresses")
def test_a_later_call_replaces_the_earlier_restriction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ice, "_original_host_addresses", lambda v4, v6: ["192.168.1.20"])
    restrict_host_addresses(["10.0.0.5"])
    restrict_host_addresses([])
    assert aioice.ice.get_host_addresses(True, False) == ["192.168.1.20", "127.0.0.1"]
    restrict_host_addresses(["10.0.0.6"])
    assert aioice.ice.get_host_addresses(True, False) == ["10.0.0.6"]


@pytest.mark.usefixtures("restore_host_addresses")
def test_invalid_address_is_refused_at_once() -> None:
    before = aioice.ice.get_host_addresses
    with pytest.raises(ValueError):
        restrict_host_addresses(["eth0"])
    assert aioice.ice.get_host_addresses is before


@pytest.mark.usefixtures("restore_host_addresses")
async def test_aioice_gathers_only_on_the_restricted_address() -> None:
    restrict_host_addresses(["127.0.0.1"])
    connection = aioice.Connection(ice_controlling=True, components=1, use_ipv6=True)
    try:
        await connection.gather_candidates()
        hosts = [c for c in connection.local_candidates if c.type == "host"]
        assert [c.host for c in hosts] == ["127.0.0.1"]
    finally:
        await connection.close()


def test_relay_only_needs_a_turn_server() -> None:
    from gateway.config import ConfigError, load

    with pytest.raises(ConfigError, match=r"ice\.transport_policy: relay needs a turn: server"):
        load(environ={"GATEWAY_ICE_TRANSPORT_POLICY": "relay"})
    config = load(
        environ={
            "GATEWAY_ICE_TRANSPORT_POLICY": "relay",
            "GATEWAY_ICE_SERVERS": "[{urls: ['turn:127.0.0.1:3478'], username: u, credential: p}]",
        }
    )
    assert config.ice.transport_policy == "relay"
