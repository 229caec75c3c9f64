"""Chat and data messages between participants: size and rate limits per sender."""

from __future__ import annotations

import time
from typing import Any

from ..errors import GatewayError
from ..limits.buckets import RateLimit


def chat_message(
    sender_id: str, sender_name: str, text: Any, to: str | None, max_bytes: int, limit: RateLimit
) -> dict[str, Any]:
    """Check one chat message and build what recipients get; raises a clear error."""
    if not isinstance(text, str) or not text:
        raise GatewayError(400, "invalid-message", "a chat message needs a non-empty 'text'")
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise GatewayError(
            413, "message-too-large", f"chat messages are at most {max_bytes} bytes, got {size}"
        )
    if not limit.take():
        raise GatewayError(
            429,
            "rate-limited",
            f"at most {limit.rate:g} messages per second (bursts of {limit.burst})",
        )
    message: dict[str, Any] = {
        "type": "chat",
        "from": sender_id,
        "name": sender_name,
        "text": text,
        "at": time.time(),
    }
    if to is not None:
        message["to"] = to
    return message
