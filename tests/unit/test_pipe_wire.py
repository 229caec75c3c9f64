"""The frame pipe's messages: every type round-trips; anything malformed or oversized is a
WireError, never a crash or an unbounded read."""

from __future__ import annotations

import asyncio
import json
import struct

import pytest

from gateway.cluster import pipe_wire as wire


def reader_of(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


@pytest.mark.parametrize(
    "message",
    [
        wire.Hello("room-1", "a.token"),
        wire.Hello("room-1"),
        wire.Tracks((wire.TrackInfo("t1", "video", "VP8"), wire.TrackInfo("t2", "audio", "opus"))),
        wire.Refused("no-publisher", "room 'x' has no publisher here", 404),
        wire.Frame(1, 0xFFFFFFFF, True, False, b"\x10" * 5000),
        wire.Frame(0, 3000, False, True, b""),
        wire.KeyframeRequest(1),
        wire.TrackEnded(0),
    ],
)
async def test_every_message_round_trips(message: wire.Message) -> None:
    assert await wire.read(reader_of(wire.encode(message))) == message


async def test_a_frame_is_its_header_then_its_data() -> None:
    frame = wire.Frame(2, 90000 * 3, True, True, b"abc")
    assert wire.frame_header(frame) + frame.data == wire.encode(frame)
    # Timestamps are RTP's 32 bits: a track's unwrapped timeline is cut to them.
    wrapped = wire.Frame(0, (1 << 32) + 5, False, False, b"")
    assert (await wire.read(reader_of(wire.encode(wrapped)))) == wire.Frame(0, 5, False, False, b"")


def header(kind: int, length: int) -> bytes:
    return struct.pack("!BBBII", kind, 0, 0, 0, length)


@pytest.mark.parametrize(
    "data",
    [
        header(99, 0),  # no such type
        header(4, wire.MAX_FRAME_BYTES + 1),  # a frame past the bound: not read
        header(1, wire.MAX_CONTROL_BYTES + 1),  # a control message past its bound
        header(1, 5) + b"{nope",  # not JSON
        header(1, 2) + b"[]",  # not an object
        header(1, 2) + b"{}",  # no room
        header(1, 13) + b'{"room": 123}',  # not a string
        header(2, len(b'{"tracks": 1}')) + b'{"tracks": 1}',
    ],
)
async def test_malformed_messages_are_wire_errors(data: bytes) -> None:
    with pytest.raises(wire.WireError):
        await wire.read(reader_of(data))


async def test_a_track_list_is_bounded() -> None:
    tracks = [{"id": str(i), "kind": "video", "codec": "VP8"} for i in range(wire.MAX_TRACKS + 1)]
    body = json.dumps({"tracks": tracks}).encode()
    with pytest.raises(wire.WireError):
        await wire.read(reader_of(header(2, len(body)) + body))


async def test_a_cut_message_is_the_other_end_gone() -> None:
    with pytest.raises(asyncio.IncompleteReadError):
        await wire.read(reader_of(header(4, 100) + b"only part"))
    with pytest.raises(asyncio.IncompleteReadError):
        await wire.read(reader_of(b"\x04\x00"))


def test_control_messages_past_the_bound_are_not_sent() -> None:
    with pytest.raises(wire.WireError):
        wire.encode(wire.Hello("r", "x" * wire.MAX_CONTROL_BYTES))
