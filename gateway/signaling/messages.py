"""The WebSocket protocol's messages: parsing and checking what clients send."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import GatewayError

PROTOCOL_VERSION = 2

# Required fields and their types, per client message type.
_SCHEMA: dict[str, dict[str, type | tuple[type, ...]]] = {
    "publish": {"room": str, "sdp": str},
    "subscribe": {"room": str, "sdp": str},
    "candidate": {"session": str},
    "leave": {"session": str},
    "watch": {"room": str},
    "unwatch": {"room": str},
    "ping": {},
    # An access token for this socket (docs/security.md), first or to refresh it.
    "auth": {"token": str},
    # Recording a room (see docs/protocol.md); events go to the room's watchers.
    "record-start": {"room": str},
    "record-stop": {"room": str},
    # Rooms of participants: one peer connection each, renegotiated by its offers.
    "join": {"room": str, "name": str},
    "offer": {"sdp": str},
    "unpublish": {"track": str},
    "mute": {"track": str, "muted": bool},
    "chat": {"text": str},
    "resume": {"session": str, "token": str},
    "signal": {"to": str},
    # Processing (docs/processors.md): switch what a session receives to another pipeline
    # (or back to the unprocessed track, "pipeline": null), and change a live rendition's
    # parameters.
    "pipeline": {},
    "pipeline-update": {"rendition": str, "stage": str},
}


class ProtocolError(GatewayError):
    def __init__(self, code: str, message: str, request_id: Any = None) -> None:
        super().__init__(400, code, message)
        self.request_id = request_id


@dataclass
class Message:
    type: str
    fields: dict[str, Any]
    request_id: Any

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


def parse(text: str) -> Message:
    try:
        data = json.loads(text)
    # ValueError, not only JSONDecodeError: integers of more than 4300 digits raise it.
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("invalid-json", f"the message is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ProtocolError("invalid-message", "a message must be a JSON object")
    request_id = data.get("id")
    # bool is an int subclass in Python, but JSON true/false are not integers.
    if request_id is not None and (
        isinstance(request_id, bool) or not isinstance(request_id, str | int)
    ):
        raise ProtocolError("invalid-message", "'id' must be a string or an integer")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("invalid-message", "a message needs a string 'type'", request_id)
    schema = _SCHEMA.get(kind)
    if schema is None:
        raise ProtocolError(
            "unknown-type", f"unknown message type {kind!r}; known: {sorted(_SCHEMA)}", request_id
        )
    for key, expected in schema.items():
        if not isinstance(data.get(key), expected):
            wanted = "true or false" if expected is bool else "a string"
            raise ProtocolError("invalid-message", f"{kind!r} needs {wanted} {key!r}", request_id)
    if kind == "candidate":
        _check_candidate(data.get("candidate"), request_id)
    if kind in ("publish", "subscribe", "pipeline", "record-start") and not isinstance(
        data.get("pipeline"), str | type(None)
    ):
        raise ProtocolError("invalid-message", "'pipeline' must be a name or null", request_id)
    if kind == "pipeline":
        for key in ("session", "mid"):
            if not isinstance(data.get(key), str | type(None)):
                raise ProtocolError("invalid-message", f"{key!r} must be a string", request_id)
    if kind == "pipeline-update":
        if not isinstance(data.get("params", {}), dict) or not isinstance(
            data.get("enable", False), bool
        ):
            raise ProtocolError(
                "invalid-message",
                "'pipeline-update' takes 'params' (an object) and 'enable' (true or false)",
                request_id,
            )
    if kind == "offer":
        for key in ("publish", "subscribe", "pipelines"):
            mapping = data.get(key, {})
            if not isinstance(mapping, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
            ):
                raise ProtocolError(
                    "invalid-message", f"'offer' {key!r} must map mids to strings", request_id
                )
    return Message(kind, data, request_id)


def _check_candidate(candidate: Any, request_id: Any) -> None:
    if candidate is None:
        return
    ok = (
        isinstance(candidate, dict)
        and isinstance(candidate.get("candidate"), str)
        and isinstance(candidate.get("sdpMid"), str | type(None))
        and isinstance(candidate.get("sdpMLineIndex"), int | type(None))
        and not isinstance(candidate.get("sdpMLineIndex"), bool)
    )
    if not ok:
        raise ProtocolError(
            "invalid-candidate",
            "'candidate' must be null or {candidate: string, sdpMid?: string, sdpMLineIndex?: int}",
            request_id,
        )


def error(exc: GatewayError, request_id: Any = None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "error", "code": exc.code, "message": exc.message}
    if request_id is not None:
        message["id"] = request_id
    if exc.retry_after_s is not None:  # rate limits, draining: when to try again
        message["retry_after"] = exc.retry_after_s
    if exc.redirect_base is not None:  # room-elsewhere: the node to connect to instead
        message["node"] = exc.redirect_base
    return message
