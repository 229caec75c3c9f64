"""ICE setup: STUN/TURN servers, the addresses we gather on, and remote candidates."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable

import aioice.ice
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceCandidate,
    RTCIceServer,
    RTCIceTransportPolicy,
)
from aiortc.sdp import candidate_from_sdp

from ..auth.principal import Principal
from ..config import IceServer, IceSettings
from ..errors import bad_request
from .candidates import check_candidate
from .turn import rest_credentials

GATEWAY_IDENTITY = "gateway"  # the TURN username label of the gateway's own allocations

_original_host_addresses: Callable[[bool, bool], list[str]] = aioice.ice.get_host_addresses


def restrict_host_addresses(addresses: list[str]) -> None:
    """Choose the local addresses host candidates are gathered on, process-wide.

    aioice gathers on every interface except 127.0.0.1 and has no setting for it.
    An empty list means every interface plus loopback (local browsers and tests on
    one machine need 127.0.0.1); a list means exactly those addresses.
    """
    wanted = [ipaddress.ip_address(a) for a in addresses]

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        if wanted:
            return [
                str(a)
                for a in wanted
                if (a.version == 4 and use_ipv4) or (a.version == 6 and use_ipv6)
            ]
        found = _original_host_addresses(use_ipv4, use_ipv6)
        if use_ipv4 and "127.0.0.1" not in found:
            found.append("127.0.0.1")
        return found

    aioice.ice.get_host_addresses = host_addresses


def rtc_configuration(settings: IceSettings) -> RTCConfiguration:
    # An explicit (possibly empty) list: with None aiortc falls back to a public STUN server.
    # max-bundle: every transceiver on one transport. With aiortc's default ("balanced")
    # the transceivers we create before applying a first offer are grouped by kind, and
    # one of a second kind can be left on a transport that never starts.
    servers = []
    for server in settings.servers:
        username, credential = _credentials(server, GATEWAY_IDENTITY)
        servers.append(RTCIceServer(urls=server.urls, username=username, credential=credential))
    return RTCConfiguration(
        iceServers=servers,
        bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
        iceTransportPolicy=RTCIceTransportPolicy.RELAY
        if settings.transport_policy == "relay"
        else RTCIceTransportPolicy.ALL,
    )


def _credentials(
    server: IceServer, identity: str, token_expires_at: float | None = None
) -> tuple[str | None, str | None]:
    if server.secret is not None:
        ttl_s = server.ttl_s
        if token_expires_at is not None:
            # A relay credential is worth no more than the token it was given for: it
            # expires with it (at least a minute, so a token about to be refreshed works).
            ttl_s = max(60, min(ttl_s, int(token_expires_at - time.time())))
        return rest_credentials(server.secret, identity, ttl_s)
    return server.username, server.credential


def _entitled(server: IceServer, principal: Principal) -> bool:
    """TURN relays cost bandwidth: their credentials go only to clients with a token
    (or to everyone when auth is off). STUN servers need none and go to all."""
    needs_credentials = server.secret is not None or server.username is not None
    return not needs_credentials or principal.authenticated or principal.grants.admin


def client_ice_servers(settings: IceSettings, principal: Principal) -> list[dict[str, object]]:
    """The ICE servers as a browser's RTCConfiguration wants them, for this client."""
    servers: list[dict[str, object]] = []
    for s in settings.servers:
        if not _entitled(s, principal):
            continue
        entry: dict[str, object] = {"urls": s.urls}
        username, credential = _credentials(s, principal.identity, principal.expires_at)
        if username is not None:
            entry["username"] = username
            entry["credential"] = credential
        servers.append(entry)
    return servers


def link_headers(settings: IceSettings, principal: Principal) -> list[str]:
    """WHIP/WHEP ``Link: <url>; rel="ice-server"`` values (RFC 9725 section 4.6)."""
    values: list[str] = []
    for s in settings.servers:
        if not _entitled(s, principal):
            continue
        username, credential = _credentials(s, principal.identity, principal.expires_at)
        for url in s.urls:
            value = f'<{url}>; rel="ice-server"'
            if username is not None:
                value += (
                    f'; username="{username}"; credential="{credential}"'
                    '; credential-type="password"'
                )
            values.append(value)
    return values


def parse_candidate(
    candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
) -> RTCIceCandidate | None:
    """A remote candidate from signaling; None for an mDNS one (ignored on purpose)."""
    text = candidate.strip()
    if text.startswith("a="):
        text = text[2:]
    if text.startswith("candidate:"):
        text = text[len("candidate:") :]
    fields = text.split()
    try:
        if len(fields) < 8 or fields[6] != "typ":
            raise ValueError("no 'typ' field")
        parsed = candidate_from_sdp(text)
    except Exception as exc:
        raise bad_request(
            f"malformed ICE candidate: {candidate[:200]!r}", "invalid-candidate"
        ) from exc
    if parsed.protocol.lower() not in ("udp", "tcp"):
        raise bad_request(f"unknown candidate transport {parsed.protocol!r}", "invalid-candidate")
    if parsed.ip.endswith(".local"):
        return None
    check_candidate(parsed)
    parsed.sdpMid = sdp_mid
    parsed.sdpMLineIndex = sdp_mline_index
    if sdp_mid is None and sdp_mline_index is None:
        parsed.sdpMLineIndex = 0
    return parsed
