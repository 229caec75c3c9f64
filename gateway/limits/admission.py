"""Admission of new sessions and sockets: rates per source IP and identity, counted refusals."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..config import LimitSettings
from ..errors import GatewayError
from .buckets import KeyedRateLimit


def too_many(message: str, code: str, retry_after_s: int, status: int = 429) -> GatewayError:
    return GatewayError(status, code, message, retry_after_s=retry_after_s)


class Admission:
    """Refuses what would let one client exhaust the gateway; counts every refusal.

    Sessions (WHIP, WHEP, WS publish/subscribe/join) are rate-limited per source IP and
    per token identity, and bounded gateway-wide while they are still connecting (each
    holds UDP sockets until ICE succeeds or times out). Signaling sockets are bounded per
    source IP.
    """

    def __init__(self, settings: LimitSettings) -> None:
        self.settings = settings
        self._per_ip = KeyedRateLimit(
            settings.sessions_per_ip_per_s, settings.sessions_per_ip_burst, settings.tracked_clients
        )
        self._per_identity = KeyedRateLimit(
            settings.sessions_per_identity_per_s,
            settings.sessions_per_identity_burst,
            settings.tracked_clients,
        )
        self._sockets: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()

    def refuse(self, reason: str) -> None:
        """Count a refusal decided elsewhere (candidates, m-lines, watched rooms...)."""
        self.refused[reason] += 1

    def admit_session(self, address: str | None, identity: str | None, pending: int) -> None:
        """Raise 429/503 (with Retry-After) unless a new session may be created now."""
        if pending >= self.settings.max_pending_sessions:
            self.refuse("pending_sessions")
            raise too_many(
                f"{pending} sessions are still connecting; try again shortly",
                "too-many-pending",
                2,
                503,
            )
        if address is not None:
            self._take(self._per_ip, address, "sessions_per_ip", "from one address")
        if identity is not None:
            self._take(self._per_identity, identity, "sessions_per_identity", "per identity")

    def _take(self, limits: KeyedRateLimit, key: str, reason: str, per: str) -> None:
        bucket = limits.take(key)
        if bucket is not None:
            self.refuse(reason)
            raise too_many(
                f"at most {bucket.rate:g} new sessions per second {per} (bursts of {bucket.burst})",
                "rate-limited",
                bucket.retry_after_s,
            )

    def open_socket(self, address: str | None) -> None:
        if address is None:
            return
        if self._sockets[address] >= self.settings.max_sockets_per_ip:
            self.refuse("sockets_per_ip")
            raise too_many(
                f"at most {self.settings.max_sockets_per_ip} signaling sockets per address",
                "too-many-sockets",
                5,
            )
        self._sockets[address] += 1

    def close_socket(self, address: str | None) -> None:
        if address is None:
            return
        self._sockets[address] -= 1
        if self._sockets[address] <= 0:
            del self._sockets[address]

    def stats(self) -> dict[str, Any]:
        return {
            "refused": dict(self.refused),
            "tracked_addresses": len(self._per_ip),
            "tracked_identities": len(self._per_identity),
            "open_sockets": sum(self._sockets.values()),
        }
