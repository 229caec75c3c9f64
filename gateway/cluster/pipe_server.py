"""Serves this node's tracks to other nodes of the same machine over a Unix socket: each
encoded frame written once per pulling node, keyframe requests read back."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import GatewayError
from ..media.frames import OutgoingFrame
from ..media.publisher import Publisher
from ..rooms.policy import Request
from ..rooms.room import check_room_name
from . import pipe_wire as wire

if TYPE_CHECKING:
    from ..drain import Drain
    from ..rooms.policy import AccessPolicy
    from ..rooms.room import Room


@dataclass(frozen=True)
class PipeAdmission:
    """What a pulling node's hello is checked against: this node's rooms, access policy and
    drain state (the registry's)."""

    rooms: Mapping[str, Room]
    policy: AccessPolicy
    drain: Drain


logger = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 5.0
# A pulling node that cannot take frames as fast as they come (its loop stalled) has this
# much queued in our socket before its video is dropped until a keyframe.
MAX_BACKLOG_BYTES = 4 * 1024 * 1024
MAX_LINKS = 256  # pulling connections at once (a node has one per room it relays)


class PipeSink:
    """One track's frames to one pulling node: a FrameSink of the track's Forwarder.

    Never blocks: a write only queues in the socket's transport. Past MAX_BACKLOG_BYTES
    queued, video is dropped until the next keyframe (requested) and audio is dropped,
    each counted; the frame after a drop says so (discontinuity)."""

    def __init__(self, link: PipeLink, index: int, track: Publisher) -> None:
        self._link = link
        self._index = index
        self._track = track
        self._video = track.kind == "video"
        self._waiting_for_keyframe = self._video
        self._discontinuity = False
        self.frames = 0
        self.dropped = 0
        self.skipped = 0

    def start(self) -> None:
        if self._video:
            self._track.keyframes.request()  # the pulling node starts at a keyframe

    def push(self, frame: OutgoingFrame) -> None:
        if self._link.backlog() > MAX_BACKLOG_BYTES:
            self.dropped += 1
            self._discontinuity = True
            if self._video and not self._waiting_for_keyframe:
                self._waiting_for_keyframe = True
                self._track.keyframes.request()
            return
        if self._waiting_for_keyframe:
            if not frame.keyframe:
                self.skipped += 1
                return
            self._waiting_for_keyframe = False
        message = wire.Frame(
            self._index, frame.timestamp, frame.keyframe, self._discontinuity, frame.data
        )
        self._discontinuity = False
        self._link.send_frame(message)
        self.frames += 1

    def frames_lost_upstream(self) -> None:
        # The source lost frames: the next one sent says so; the pulling node's viewers
        # then wait for the keyframe the source's track has requested.
        self._discontinuity = True

    def keyframe_requested(self) -> None:
        self._track.keyframes.request()


class PipeLink:
    """One pulling node's connection: its Hello checked by the access policy, then its
    room's tracks (the first of each kind, as a WHEP relay takes them) flow to it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.sinks: list[PipeSink] = []
        self.room = ""

    def backlog(self) -> int:
        transport = self._writer.transport
        return 0 if transport.is_closing() else transport.get_write_buffer_size()

    def send(self, message: wire.Message) -> None:
        if not self._writer.transport.is_closing():
            self._writer.write(wire.encode(message))

    def send_frame(self, frame: wire.Frame) -> None:
        if not self._writer.transport.is_closing():
            self._writer.write(wire.frame_header(frame))
            self._writer.write(frame.data)

    async def serve(self, registry: PipeAdmission) -> None:
        hello = await asyncio.wait_for(wire.read(self._reader), HELLO_TIMEOUT_S)
        if not isinstance(hello, wire.Hello):
            raise wire.WireError("the first message must be a hello")
        tracks = await self._admit(registry, hello)
        self.send(wire.Tracks(tuple(wire.TrackInfo(t.id, t.kind, t.codec) for t in tracks)))
        ended: list[asyncio.Future[None]] = []
        callbacks: list[Callable[[], None]] = []
        for index, track in enumerate(tracks):
            sink = PipeSink(self, index, track)
            self.sinks.append(sink)
            track.forwarder.add_sink(sink)
            sink.start()
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            callbacks.append(functools.partial(_set, done))
            track.on_close(callbacks[-1])
            ended.append(done)
        reading = asyncio.ensure_future(self._read_requests())
        try:
            pending: set[asyncio.Future[Any]] = {reading, *ended}
            while reading in pending:
                finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if reading in finished:
                    reading.result()  # the pulling node went, or sent what it may not
                for index, done in enumerate(ended):
                    if done in finished:
                        self.send(wire.TrackEnded(index))
                if all(done.done() for done in ended):
                    break  # every track ended: the pulling node's relay ends with them
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reading
            for sink, track, callback in zip(self.sinks, tracks, callbacks, strict=True):
                track.forwarder.remove_sink(sink)
                track.remove_on_close(callback)

    async def _admit(self, registry: PipeAdmission, hello: wire.Hello) -> list[Publisher]:
        name = check_room_name(hello.room)
        self.room = name
        principal = await registry.policy.authenticate(hello.token)
        registry.policy.check(Request("subscribe", name, "pipe", principal))
        registry.drain.admit()
        room = registry.rooms.get(name)
        tracks: list[Publisher] = []
        for track in room.publishers if room is not None else []:
            if track.kind in ("video", "audio") and all(t.kind != track.kind for t in tracks):
                tracks.append(track)
        if not tracks:
            raise GatewayError(404, "no-publisher", f"room {name!r} has no publisher here")
        return tracks

    async def _read_requests(self) -> None:
        while True:
            message = await wire.read(self._reader)
            if isinstance(message, wire.KeyframeRequest) and message.track < len(self.sinks):
                self.sinks[message.track].keyframe_requested()
            elif not isinstance(message, wire.KeyframeRequest):
                raise wire.WireError(f"a pulling node may not send {type(message).__name__}")

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()


def _set(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


class PipeServer:
    """Listens on ``path`` (in a directory only this user can enter) for other nodes of
    this machine pulling a room's tracks; each connection a PipeLink, owned here."""

    def __init__(self, path: str, registry: PipeAdmission) -> None:
        self.path = path
        self._registry = registry
        self._server: asyncio.AbstractServer | None = None
        self._links: dict[asyncio.Task[None], PipeLink] = {}
        self.served = 0
        self.refused = 0
        self.broken = 0  # links that sent something that is not a pipe message
        self._retired = {"frames_sent": 0, "dropped": 0}  # of links that have ended

    async def start(self) -> None:
        directory = Path(self.path).parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # left by a previous run of this node (a restart)
        self._server = await asyncio.start_unix_server(
            self._accept, path=self.path, limit=wire.HEADER_SIZE + wire.MAX_CONTROL_BYTES
        )
        os.chmod(self.path, 0o600)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = PipeLink(reader, writer)
        if len(self._links) >= MAX_LINKS:
            self.refused += 1
            link.send(wire.Refused("too-many-links", "this node feeds its maximum", 503))
            writer.close()
            return
        task = asyncio.ensure_future(self._serve(link))
        self._links[task] = link
        task.add_done_callback(self._links.pop)

    async def _serve(self, link: PipeLink) -> None:
        try:
            self.served += 1
            await link.serve(self._registry)
        except GatewayError as exc:
            self.refused += 1
            link.send(wire.Refused(exc.code, exc.message, exc.status))
        except (wire.WireError, TimeoutError) as exc:
            self.broken += 1
            logger.warning("frame pipe: a link ended: %s", exc)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the pulling node went away
        finally:
            self._retired["frames_sent"] += sum(s.frames for s in link.sinks)
            self._retired["dropped"] += sum(s.dropped for s in link.sinks)
            await link.close()

    @property
    def links(self) -> int:
        """Pulling nodes fed now (each counts as a relay against cluster.max_relays)."""
        return sum(1 for link in self._links.values() if link.sinks)

    def stats(self) -> dict[str, Any]:
        sinks = [sink for link in self._links.values() for sink in link.sinks]
        return {
            "path": self.path,
            "links": self.links,
            "served": self.served,
            "refused": self.refused,
            "broken": self.broken,
            "frames_sent": self._retired["frames_sent"] + sum(s.frames for s in sinks),
            "dropped": self._retired["dropped"] + sum(s.dropped for s in sinks),
        }

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._links):
            task.cancel()
        if self._links:
            await asyncio.gather(*self._links, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()  # its connections are closed by now
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
