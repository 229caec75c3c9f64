"""One node's copy of a room homed on another node of the same machine, pulled over the
frame pipe: encoded frames in from a Unix socket, no DTLS, SRTP, RTP or reassembly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from ..errors import GatewayError
from ..media.feed import FrameHandler
from ..media.frames import EncodedFrame
from ..rooms.negotiation import DEFAULT_SOURCE
from . import pipe_wire as wire
from .relay import RelaySession

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
READ_LIMIT = 1024 * 1024  # socket bytes buffered before reading pauses (flow control)
_PIPE_SSRC = 1  # frames carry no SSRC: one stream per track per link


class PipeFeed:
    """A track's frames as the pipe brings them; keyframe requests go back on it."""

    def __init__(self, relay: PipeRelaySession, index: int) -> None:
        self._relay = relay
        self._index = index
        self._on_frames: FrameHandler | None = None
        self.frames = 0
        self.discontinuities = 0

    def start(self, on_frames: FrameHandler) -> None:
        self._on_frames = on_frames

    def deliver(self, message: wire.Frame) -> None:
        self.frames += 1
        self.discontinuities += message.discontinuity
        if self._on_frames is not None:
            frame = EncodedFrame(
                message.data,
                message.timestamp,
                message.keyframe,
                message.discontinuity,
                int(time.monotonic() * 1000),
                _PIPE_SSRC,
            )
            self._on_frames([frame])

    def request_keyframe(self, ssrc: int) -> None:
        self._relay.send(wire.KeyframeRequest(self._index))

    def counters(self) -> dict[str, int]:
        # Losses at the source side of the pipe reach us as discontinuities: what a
        # receiver counts as frames it could not repair.
        return {"frames_unrepaired": self.discontinuities}


class PipeRelaySession(RelaySession):
    """A relay whose tracks come over the pipe from ``path``. It negotiates nothing: its
    peer connection is never used (the Session it is gives the room a publisher with the
    usual lifetime, hold and takeover); it ends when the pipe does."""

    _writer: asyncio.StreamWriter | None = None
    _reading: asyncio.Task[None] | None = None
    _feeds: tuple[PipeFeed, ...] = ()

    async def pull_pipe(self, path: str, origin: str, token: str | None) -> None:
        self.origin = origin  # the source node's URL: excluded when it is lost
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(path, limit=READ_LIMIT), CONNECT_TIMEOUT_S
            )
            self._writer = writer
            writer.write(wire.encode(wire.Hello(self.room.name, token)))
            answer = await asyncio.wait_for(wire.read(reader), CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, wire.WireError) as exc:
            raise GatewayError(
                502, "relay-failed", f"the frame pipe of {origin} cannot be used: {exc}"
            ) from exc
        if isinstance(answer, wire.Refused):
            raise GatewayError(
                502,
                "relay-failed",
                f"the room's node {origin} refused: {answer.code}: {answer.message}",
            )
        if not isinstance(answer, wire.Tracks) or not answer.tracks:
            raise GatewayError(502, "relay-failed", f"{origin} sent no tracks")
        self._feeds = tuple(PipeFeed(self, index) for index in range(len(answer.tracks)))
        for index, (info, feed) in enumerate(zip(answer.tracks, self._feeds, strict=True)):
            # Each track becomes a Publisher here, or takes over one the room kept.
            source = DEFAULT_SOURCE.get(info.kind, "")
            self.media.publish(str(index), info.kind, info.codec, feed, source)
        self._reading = asyncio.ensure_future(self._read(reader))
        self.connected_at = time.monotonic()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        reason = "relay-lost"
        try:
            while True:
                message = await wire.read(reader)
                if isinstance(message, wire.Frame) and message.track < len(self._feeds):
                    self._feeds[message.track].deliver(message)
                elif isinstance(message, wire.TrackEnded):
                    track = self.published.get(str(message.track))
                    if track is not None:
                        track.close()
                    if not self.publishers:
                        reason = "source-ended"
                        break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the source node closed the link or died
        except wire.WireError as exc:
            logger.warning("frame pipe from %s: %s", self.origin, exc)
        # Not on cancellation: that is close() itself.
        self.close_soon(reason)

    def send(self, message: wire.Message) -> None:
        writer = self._writer
        if writer is not None and not writer.transport.is_closing():
            writer.write(wire.encode(message))

    @property
    def state(self) -> str:
        if self.closed:
            return "closed"
        return "connected" if self._reading is not None else "new"

    async def close(self, reason: str = "closed") -> None:
        if self.closed:
            return
        reading = self._reading
        if reading is not None and reading is not asyncio.current_task():
            reading.cancel()
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        await super().close(reason)
