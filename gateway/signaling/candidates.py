"""Checks remote ICE candidates before aioice uses them: ports, addresses, transports."""

from __future__ import annotations

import ipaddress
from typing import Any

from ..errors import bad_request

MAX_PRIORITY = 2**32 - 1
# RFC 8839 allows 32 characters; twice that leaves room for suffixes such as the one
# announce_address() adds, and still bounds what a client can make us store.
MAX_FOUNDATION = 64


def check_candidate(candidate: Any) -> None:
    """Raise 400 invalid-candidate for what would break or abuse the ICE agent.

    A port outside 1-65535 kills the session's UDP socket on the first check ("Fatal
    write error"); multicast, broadcast and unspecified addresses make the gateway send
    its checks where no peer listens. Only literal IP addresses are taken: mDNS names are
    dropped before this (never resolved) and other host names are refused (no DNS on a
    client's behalf).
    """
    where = f"candidate {str(getattr(candidate, 'foundation', ''))[:MAX_FOUNDATION]!r}"
    port = candidate.port
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise bad_request(f"{where}: port {port} is not 1-65535", "invalid-candidate")
    if not isinstance(candidate.component, int) or not 1 <= candidate.component <= 256:
        raise bad_request(f"{where}: component must be 1-256", "invalid-candidate")
    if not isinstance(candidate.priority, int) or not 0 <= candidate.priority <= MAX_PRIORITY:
        raise bad_request(f"{where}: priority must be 0-{MAX_PRIORITY}", "invalid-candidate")
    if not 1 <= len(str(candidate.foundation)) <= MAX_FOUNDATION:
        raise bad_request(
            f"{where}: foundation must be 1-{MAX_FOUNDATION} characters", "invalid-candidate"
        )
    if str(candidate.type) not in ("host", "srflx", "prflx", "relay"):
        raise bad_request(f"{where}: unknown type {candidate.type!r}", "invalid-candidate")
    try:
        address = ipaddress.ip_address(candidate.ip)
    except ValueError:
        raise bad_request(
            f"{where}: {str(candidate.ip)[:64]!r} is not an IP address", "invalid-candidate"
        ) from None
    if address.is_multicast or address.is_unspecified or _broadcast(address):
        raise bad_request(
            f"{where}: {address} is not a unicast address a peer can use", "invalid-candidate"
        )


def _broadcast(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return address.version == 4 and address == ipaddress.IPv4Address("255.255.255.255")
