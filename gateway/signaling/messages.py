"""The WebSocket protocol's messages: parsing and checking what clients send."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from ..errors import GatewayError

PROTOCOL_VERSION = 2

# What a client may put in 'id': echoed on every reply and error about that request.
RequestId = str | int | None
# Required fields and their types (an alias: in the message classes `type` is their name).
Required = dict[str, type]


class ProtocolError(GatewayError):
    def __init__(self, code: str, message: str, request_id: Any = None) -> None:
        super().__init__(400, code, message)
        self.request_id = request_id


@dataclass(frozen=True, kw_only=True)
class Message:
    """A checked client message: each subclass is one `type`, with its fields typed."""

    type: ClassVar[str]
    required: ClassVar[Required] = {}

    request_id: RequestId = None
    # The object as it came, unknown fields included; handlers read the typed fields.
    fields: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)

    @classmethod
    def build(cls, data: dict[str, Any], request_id: RequestId) -> Self:
        """The message from an object whose `required` fields are already checked; a type
        with optional fields overrides it (and raises ProtocolError for a bad one)."""
        values = {name: data[name] for name in cls.required}
        return cls(**values, request_id=request_id, fields=data)


@dataclass(frozen=True)
class CandidateInit:
    """A trickled remote candidate, as RTCIceCandidateInit names it."""

    candidate: str
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None


@dataclass(frozen=True)
class _StreamOffer(Message):
    """An offer that opens a one-purpose session in a room (publish or subscribe)."""

    required = {"room": str, "sdp": str}

    room: str
    sdp: str
    pipeline: str | None = None

    @classmethod
    def build(cls, data: dict[str, Any], request_id: RequestId) -> Self:
        pipeline = _pipeline(data, request_id)
        return cls(data["room"], data["sdp"], pipeline, request_id=request_id, fields=data)


@dataclass(frozen=True)
class Publish(_StreamOffer):
    type = "publish"


@dataclass(frozen=True)
class Subscribe(_StreamOffer):
    type = "subscribe"


@dataclass(frozen=True)
class Candidate(Message):
    type = "candidate"
    required = {"session": str}

    session: str
    candidate: CandidateInit | None = None  # None: end of candidates

    @classmethod
    def build(cls, data: dict[str, Any], request_id: RequestId) -> Self:
        candidate = _candidate(data.get("candidate"), request_id)
        return cls(data["session"], candidate, request_id=request_id, fields=data)


@dataclass(frozen=True)
class Leave(Message):
    type = "leave"
    required = {"session": str}

    session: str


@dataclass(frozen=True)
class Watch(Message):
    type = "watch"
    required = {"room": str}

    room: str


@dataclass(frozen=True)
class Unwatch(Message):
    type = "unwatch"
    required = {"room": str}

    room: str


@dataclass(frozen=True)
class Ping(Message):
    type = "ping"


@dataclass(frozen=True)
class Auth(Message):
    """An access token for this socket (docs/security.md), first or to refresh it."""

    type = "auth"
    required = {"token": str}

    token: str


@dataclass(frozen=True)
class RecordStart(Message):
    """Recording a room (see docs/protocol.md); events go to the room's watchers."""

    type = "record-start"
    required = {"room": str}

    room: str
    pipeline: str | None = None

    @classmethod
    def build(cls, data: dict[str, Any], request_id: RequestId) -> Self:
        pipeline = _pipeline(data, request_id)
        return cls(data["room"], pipeline, request_id=request_id, fields=data)


@dataclass(frozen=True)
class RecordStop(Message):
    type = "record-stop"
    required = {"room": str}

    room: str


@dataclass(frozen=True)
class Join(Message):
    """Rooms of participants: one peer connection each, renegotiated by its offers."""

    type = "join"
    required = {"room": str, "name": str}

    room: str
    name: str
    mode: str | None = None

    @classmethod
    def build(cls, data: dict[str, Any], request_id: RequestId) -> Self:
        mode = data.get("mode")
        if mode is not None and not isinstance(mode, str):
            raise ProtocolError("invalid-message", "'mode' must be a string", request_id)
        return cls(data["room"], data["name"], mode, request_id=request_id, fields=data)


@dataclass(frozen=True)
class Offer(Message):
    type = "offer"
    required = {"sdp": str}

    sdp: str
    # Per mid: the source it publishes, the track it receives, the pipeline for that track.
    publish: dict[str, str] = field(default_factory=dict)
    subscribe: dict[str, str] = field(default_factory=dict)
    pipelines: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, data: dict[str, Any], request_id: RequestId) -> Self:
        publish, subscribe, pipelines = (
            _mid_map(data, key, request_id) for key in ("publish", "subscribe", "pipelines")
        )
        return cls(data["sdp"], publish, subscribe, pipelines, request_id=request_id, fields=data)


@dataclass(frozen=True)
class Unpublish(Message):
    type = "unpublish"
    required = {"track": str}

    track: str


@dataclass(frozen=True)
class Mute(Message):
    type = "mute"
    required = {"track": str, "muted": bool}

    track: str
    muted: bool


@dataclass(frozen=True)
class Chat(Message):
    type = "chat"
    required = {"text": str}

    text: str
    to: str | None = None  # a participant's public id; None: the whole room

    @classmethod
    def build(cls, data: dict[str, Any], request_id: RequestId) -> Self:
        to = data.get("to")
        if to is not None and not isinstance(to, str):
            raise ProtocolError("invalid-message", "'to' must be a participant id", request_id)
        return cls(data["text"], to, request_id=request_id, fields=data)


@dataclass(frozen=True)
class Resume(Message):
    type = "resume"
    required = {"session": str, "token": str}

    session: str
    token: str


@dataclass(frozen=True)
class Signal(Message):
    type = "signal"
    required = {"to": str}

    to: str
    data: Any = None  # relayed as it is: the peers' own offers, answers and candidates

    @classmethod
    def build(cls, data: dict[str, Any], request_id: RequestId) -> Self:
        return cls(data["to"], data.get("data"), request_id=request_id, fields=data)


@dataclass(frozen=True)
class Layer(Message):
    """Simulcast (docs/architecture.md#simulcast-ingest): receive another layer of the
    video a session receives: by rid, by the picture size that fits (a tile's size), or
    the best layer that flows (neither); ``max_fps`` caps its frame rate (temporal
    layers)."""

    type = "layer"

    layer: str | None = None
    max_width: int | None = None
    max_height: int | None = None
    session: str | None = None  # None: this socket's participant
    mid: str | None = None  # None: every received simulcast video
    max_fps: float | None = None

    @classmethod
    def build(cls, data: dict[str, Any], request_id: RequestId) -> Self:
        for key in ("layer", "session", "mid"):
            if not isinstance(data.get(key), str | None):
                raise ProtocolError("invalid-message", f"{key!r} must be a string", request_id)
        sizes = [_dimension(data, key, request_id) for key in ("max_width", "max_height")]
        max_fps = data.get("max_fps")
        if max_fps is not None and (
            not isinstance(max_fps, int | float)
            or isinstance(max_fps, bool)
            or not 1 <= max_fps <= MAX_FPS
        ):
            raise ProtocolError(
                "invalid-message", f"'max_fps' must be a number, 1-{MAX_FPS}", request_id
            )
        return cls(
            data.get("layer"),
            sizes[0],
            sizes[1],
            data.get("session"),
            data.get("mid"),
            float(max_fps) if max_fps is not None else None,
            request_id=request_id,
            fields=data,
        )


MAX_FPS = 240


def _dimension(data: dict[str, Any], key: str, request_id: RequestId) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 16384:
        raise ProtocolError("invalid-message", f"{key!r} must be 1-16384 pixels", request_id)
    return value


@dataclass(frozen=True)
class Pipeline(Message):
    """Processing (docs/processors.md): switch what a session receives to another pipeline,
    or back to the unprocessed track ("pipeline": null)."""

    type = "pipeline"

    pipeline: str | None = None
    session: str | None = None  # None: this socket's participant
    mid: str | None = None  # None: every received track of the pipeline's kind

    @classmethod
    def build(cls, data: dict[str, Any], request_id: RequestId) -> Self:
        pipeline = _pipeline(data, request_id)
        for key in ("session", "mid"):
            if not isinstance(data.get(key), str | None):
                raise ProtocolError("invalid-message", f"{key!r} must be a string", request_id)
        return cls(
            pipeline, data.get("session"), data.get("mid"), request_id=request_id, fields=data
        )


@dataclass(frozen=True)
class PipelineUpdate(Message):
    """Processing: change a live rendition's parameters."""

    type = "pipeline-update"
    required = {"rendition": str, "stage": str}

    rendition: str
    stage: str
    params: dict[str, Any] = field(default_factory=dict)
    enable: bool = False  # turns a stage disabled after failures back on

    @classmethod
    def build(cls, data: dict[str, Any], request_id: RequestId) -> Self:
        params, enable = data.get("params", {}), data.get("enable", False)
        if not isinstance(params, dict) or not isinstance(enable, bool):
            raise ProtocolError(
                "invalid-message",
                "'pipeline-update' takes 'params' (an object) and 'enable' (true or false)",
                request_id,
            )
        return cls(
            data["rendition"], data["stage"], params, enable, request_id=request_id, fields=data
        )


TYPES: dict[str, type[Message]] = {
    cls.type: cls
    for cls in (
        Publish,
        Subscribe,
        Candidate,
        Leave,
        Watch,
        Unwatch,
        Ping,
        Auth,
        RecordStart,
        RecordStop,
        Join,
        Offer,
        Unpublish,
        Mute,
        Chat,
        Resume,
        Signal,
        Pipeline,
        Layer,
        PipelineUpdate,
    )
}
# Required fields per type: the fuzz tests build messages from it.
_SCHEMA: dict[str, Required] = {kind: cls.required for kind, cls in TYPES.items()}


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
    cls = TYPES.get(kind)
    if cls is None:
        raise ProtocolError(
            "unknown-type", f"unknown message type {kind!r}; known: {sorted(TYPES)}", request_id
        )
    for key, expected in cls.required.items():
        if not isinstance(data.get(key), expected):
            wanted = "true or false" if expected is bool else "a string"
            raise ProtocolError("invalid-message", f"{kind!r} needs {wanted} {key!r}", request_id)
    return cls.build(data, request_id)


def _pipeline(data: dict[str, Any], request_id: RequestId) -> str | None:
    pipeline = data.get("pipeline")
    if not isinstance(pipeline, str | None):
        raise ProtocolError("invalid-message", "'pipeline' must be a name or null", request_id)
    return pipeline


def _mid_map(data: dict[str, Any], key: str, request_id: RequestId) -> dict[str, str]:
    mapping = data.get(key, {})
    if not isinstance(mapping, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
    ):
        raise ProtocolError(
            "invalid-message", f"'offer' {key!r} must map mids to strings", request_id
        )
    return mapping


def _candidate(candidate: Any, request_id: RequestId) -> CandidateInit | None:
    if candidate is None:
        return None
    ok = (
        isinstance(candidate, dict)
        and isinstance(candidate.get("candidate"), str)
        and isinstance(candidate.get("sdpMid"), str | None)
        and isinstance(candidate.get("sdpMLineIndex"), int | None)
        and not isinstance(candidate.get("sdpMLineIndex"), bool)
    )
    if not ok:
        raise ProtocolError(
            "invalid-candidate",
            "'candidate' must be null or {candidate: string, sdpMid?: string, sdpMLineIndex?: int}",
            request_id,
        )
    return CandidateInit(
        candidate["candidate"], candidate.get("sdpMid"), candidate.get("sdpMLineIndex")
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
