"""The frame pipe's messages: typed, length-prefixed, bounded, on a Unix stream socket."""

from __future__ import annotations

import asyncio
import json
import struct
from dataclasses import dataclass
from typing import Any

# type, track index, flags, RTP timestamp, payload length
_HEADER = struct.Struct("!BBBII")
HEADER_SIZE = _HEADER.size

_HELLO, _TRACKS, _REFUSED, _FRAME, _KEYFRAME_REQUEST, _TRACK_ENDED = range(1, 7)
_KEYFRAME, _DISCONTINUITY = 0x01, 0x02

MAX_CONTROL_BYTES = 8 * 1024  # a hello, a track list, a refusal: JSON, small
MAX_FRAME_BYTES = 8 * 1024 * 1024  # past any encoded frame a gateway forwards
MAX_TRACKS = 8


class WireError(Exception):
    """The other end sent something that is not a pipe message: the link ends."""


@dataclass(frozen=True, slots=True)
class Hello:
    """Client to server, first: the room wanted, and a token for the access policy."""

    room: str
    token: str | None = None


@dataclass(frozen=True, slots=True)
class TrackInfo:
    id: str
    kind: str
    codec: str


@dataclass(frozen=True, slots=True)
class Tracks:
    """Server to client, the answer to Hello: the tracks that will flow, by index."""

    tracks: tuple[TrackInfo, ...]


@dataclass(frozen=True, slots=True)
class Refused:
    """Server to client, instead of Tracks: why not (then the link ends)."""

    code: str
    message: str
    status: int = 403


@dataclass(frozen=True, slots=True)
class Frame:
    """One complete encoded frame of track ``track``; ``discontinuity``: frames were lost
    before it (a video decoder needs a keyframe)."""

    track: int
    timestamp: int
    keyframe: bool
    discontinuity: bool
    data: bytes


@dataclass(frozen=True, slots=True)
class KeyframeRequest:
    """Client to server: a viewer of ``track`` needs a keyframe."""

    track: int


@dataclass(frozen=True, slots=True)
class TrackEnded:
    """Server to client: ``track`` has ended at its source for good."""

    track: int


Message = Hello | Tracks | Refused | Frame | KeyframeRequest | TrackEnded


def frame_header(frame: Frame) -> bytes:
    """The header a Frame's data follows (sent as two writes: no copy of the data)."""
    flags = (_KEYFRAME if frame.keyframe else 0) | (_DISCONTINUITY if frame.discontinuity else 0)
    return _HEADER.pack(_FRAME, frame.track, flags, frame.timestamp & 0xFFFFFFFF, len(frame.data))


def encode(message: Message) -> bytes:
    if isinstance(message, Frame):
        return frame_header(message) + message.data
    if isinstance(message, KeyframeRequest):
        return _HEADER.pack(_KEYFRAME_REQUEST, message.track, 0, 0, 0)
    if isinstance(message, TrackEnded):
        return _HEADER.pack(_TRACK_ENDED, message.track, 0, 0, 0)
    body: dict[str, Any]
    if isinstance(message, Hello):
        kind, body = _HELLO, {"room": message.room, "token": message.token}
    elif isinstance(message, Tracks):
        kind = _TRACKS
        body = {"tracks": [{"id": t.id, "kind": t.kind, "codec": t.codec} for t in message.tracks]}
    else:
        kind = _REFUSED
        body = {"code": message.code, "message": message.message, "status": message.status}
    payload = json.dumps(body).encode()
    if len(payload) > MAX_CONTROL_BYTES:
        raise WireError(f"a control message of {len(payload)} bytes is too large")
    return _HEADER.pack(kind, 0, 0, 0, len(payload)) + payload


async def read(reader: asyncio.StreamReader) -> Message:
    """The next message; raises WireError for anything malformed or over its bound, and
    asyncio.IncompleteReadError when the other end has gone."""
    kind, track, flags, timestamp, length = _HEADER.unpack(await reader.readexactly(HEADER_SIZE))
    if kind == _FRAME:
        if length > MAX_FRAME_BYTES:
            raise WireError(f"a frame of {length} bytes is over {MAX_FRAME_BYTES}")
        data = await reader.readexactly(length)
        return Frame(track, timestamp, bool(flags & _KEYFRAME), bool(flags & _DISCONTINUITY), data)
    if kind == _KEYFRAME_REQUEST:
        return KeyframeRequest(track)
    if kind == _TRACK_ENDED:
        return TrackEnded(track)
    if kind not in (_HELLO, _TRACKS, _REFUSED):
        raise WireError(f"unknown message type {kind}")
    if length > MAX_CONTROL_BYTES:
        raise WireError(f"a control message of {length} bytes is over {MAX_CONTROL_BYTES}")
    try:
        body = json.loads(await reader.readexactly(length))
        return _control(kind, body)
    except (ValueError, TypeError, KeyError) as exc:
        raise WireError(f"a malformed control message: {exc}") from exc


def _control(kind: int, body: Any) -> Message:
    if not isinstance(body, dict):
        raise TypeError("not an object")
    if kind == _HELLO:
        token = body.get("token")
        return Hello(_string(body["room"]), _string(token) if token is not None else None)
    if kind == _TRACKS:
        tracks = body["tracks"]
        if not isinstance(tracks, list) or len(tracks) > MAX_TRACKS:
            raise TypeError("tracks must be a list of at most 8")
        return Tracks(
            tuple(
                TrackInfo(_string(t["id"]), _string(t["kind"]), _string(t["codec"])) for t in tracks
            )
        )
    return Refused(_string(body["code"]), _string(body["message"]), int(body.get("status", 403)))


def _string(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 4096:
        raise TypeError("expected a string")
    return value
