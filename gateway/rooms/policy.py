"""The one place that decides who may join, publish in or subscribe to a room."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import GatewayError


@dataclass
class Request:
    """Who asks for what: the action, the room, and what the client presented."""

    action: str  # "join", "publish", "subscribe" or "control" (live processing changes)
    room: str
    transport: str  # "whip", "whep" or "ws"
    credentials: dict[str, Any] = field(default_factory=dict)  # e.g. a bearer token


class AccessPolicy:
    """Allows everything. A deployment's policy (tokens, say) overrides ``check``.

    Every WHIP, WHEP and WebSocket request to join, publish or subscribe passes
    here before anything is created, so a refusal changes nothing.
    """

    def check(self, request: Request) -> None:
        """Raise ``forbidden(...)`` to refuse; return to allow."""


def forbidden(message: str) -> GatewayError:
    return GatewayError(403, "forbidden", message)
