"""Client-facing errors: an HTTP status, a stable code and a human message."""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """Refuses one request; the server and every other session carry on."""

    def __init__(
        self, status: int, code: str, message: str, retry_after_s: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s  # a limit: when trying again may succeed
        # Another gateway's base URL that serves this request (a 307 to the same path there).
        self.redirect_base: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.retry_after_s is not None:
            body["retry_after"] = self.retry_after_s
        if self.redirect_base is not None:
            body["node"] = self.redirect_base
        return body


def bad_request(message: str, code: str = "bad-request") -> GatewayError:
    return GatewayError(400, code, message)


def not_found(message: str, code: str = "not-found") -> GatewayError:
    return GatewayError(404, code, message)


def conflict(message: str, code: str = "conflict") -> GatewayError:
    return GatewayError(409, code, message)
