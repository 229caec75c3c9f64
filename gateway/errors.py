"""Client-facing errors: an HTTP status, a stable code and a human message."""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """Refuses one request; the server and every other session carry on."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def to_json(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message}


def bad_request(message: str, code: str = "bad-request") -> GatewayError:
    return GatewayError(400, code, message)


def not_found(message: str, code: str = "not-found") -> GatewayError:
    return GatewayError(404, code, message)


def conflict(message: str, code: str = "conflict") -> GatewayError:
    return GatewayError(409, code, message)
