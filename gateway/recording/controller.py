"""Which rooms are recorded: start/stop per room, auto-recording, one Recorder per publisher."""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..auth.principal import OPEN, Principal
from ..config import RecordingSettings
from ..errors import GatewayError, not_found
from ..media.forwarder import Forwarder
from ..media.publisher import Publisher
from ..processing.output import RenditionOutput
from ..rooms.policy import Request
from ..rooms.registry import Registry
from ..rooms.room import Room, check_room_name
from ..rooms.session import Session
from .muxer import TrackSpec, container_format
from .recorder import DISK_FULL, DURATION_LIMIT, SIZE_LIMIT, Recorder, RecorderTrack
from .retention import Retention
from .store import RecordingStore

logger = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 10.0
TOO_MANY = "too-many-recordings"
# When a refused start may be tried again: recordings end when their publishers do.
RETRY_AFTER_S = 30
LIMIT_REASONS = (SIZE_LIMIT, DURATION_LIMIT, DISK_FULL)


@dataclass
class Recording:
    """A running Recorder and the forwarders it listens to."""

    room: Room
    session: Session
    recorder: Recorder
    sinks: list[tuple[Forwarder, RecorderTrack]] = field(default_factory=list)


class RecordingController:
    """Starts and stops recordings; every publishing session of a recorded room gets one.

    A room is recorded from a start (HTTP or WebSocket) until a stop, or until nobody
    publishes in it any more; a room matching ``auto_record`` whenever someone
    publishes. A publisher leaving closes its file.

    Limits: at most ``max_concurrent`` files at once, none started with less than
    ``min_free_bytes`` free (refusals are counted); each Recorder stops itself at its
    size, duration and free-space limits; Retention deletes old finished files.
    """

    def __init__(self, registry: Registry, settings: RecordingSettings) -> None:
        self.registry = registry
        self.settings = settings
        self.store = RecordingStore(settings.directory)
        self.recordings: dict[str, Recording] = {}  # by publishing session id
        # Rooms recorded on request, with the pipeline their tracks are recorded through.
        self._rooms: dict[str, str | None] = {}
        self._starting: set[str] = set()
        self._hooked: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self.refused: Counter[str] = Counter()  # starts refused, by error code
        self.limited: Counter[str] = Counter()  # recordings stopped at a limit, by reason
        # Sessions whose file ended at a limit: a track they publish later does not start
        # another (a limit stops recording them; only a new start does).
        self._at_limit: set[str] = set()
        # Held from creating a file to registering its recording (see Retention).
        self._store_lock = asyncio.Lock()
        self.retention = Retention(self.store, settings, self._active_ids, self._store_lock)
        registry.on_publish.append(self._on_publish)
        registry.on_release.append(self._room_released)

    async def recover(self) -> None:
        """At start: marks what a killed gateway left behind as interrupted (off the
        loop), then starts the retention task (ended by close())."""
        active = {r.recorder.path for r in self.recordings.values()}
        count = await asyncio.to_thread(self.store.recover, active)
        if count:
            logger.warning("%d interrupted recording(s) found in %s", count, self.store.directory)
        if not self._closed:
            self.retention.start()

    def is_recorded(self, room: str) -> bool:
        return room in self._rooms or any(
            fnmatch.fnmatchcase(room, pattern) for pattern in self.settings.auto_record
        )

    async def start(
        self,
        room_name: str,
        transport: str = "http",
        pipeline: str | None = None,
        principal: Principal = OPEN,
    ) -> list[Recorder]:
        """Record the room's publishers, now and as they arrive; with ``pipeline``, their
        tracks of its kind as that pipeline's rendition (remuxed like any other track:
        its encode is shared with the rendition's viewers)."""
        policy = self.registry.policy
        policy.check(Request("record", check_room_name(room_name), transport, principal))
        self.registry.drain.admit()  # recordings were finalized when the drain began
        if pipeline is not None:
            self.registry.renditions.kind(pipeline)  # unknown-pipeline
            policy.check(Request("pipeline", room_name, transport, principal, pipeline=pipeline))
        room = self.registry.room(room_name)
        if room is None:
            raise not_found(f"no room {room_name!r}", "unknown-room")
        sessions = _publishing_sessions(room)
        if not sessions:
            raise not_found(f"room {room_name!r} has no publisher", "no-publisher")
        new = [s for s in sessions if s.id not in self.recordings and s.id not in self._starting]
        if not new:
            raise GatewayError(
                409, "already-recording", f"room {room_name!r} is already being recorded"
            )
        # Checked for every new file before any starts: a refused start records nothing.
        self._check_capacity(len(new))
        await self._check_disk()
        self._rooms[room.name] = pipeline
        started = []
        for session in new:
            self._at_limit.discard(session.id)
            recording = await self._record(room, session, disk_checked=True)
            if recording is not None:
                started.append(recording.recorder)
        return started

    async def stop(
        self,
        room_name: str,
        reason: str = "stopped",
        transport: str = "http",
        principal: Principal = OPEN,
    ) -> list[Recorder]:
        self.registry.policy.check(
            Request("record", check_room_name(room_name), transport, principal)
        )
        self._rooms.pop(room_name, None)
        recorders = [r.recorder for r in self.recordings.values() if r.room.name == room_name]
        if not recorders:
            raise not_found(f"room {room_name!r} is not being recorded", "not-recording")
        for recorder in recorders:
            recorder.stop(reason)
        await asyncio.gather(*(r.wait() for r in recorders))
        return recorders

    def active(self, room_name: str) -> list[Recorder]:
        return [r.recorder for r in self.recordings.values() if r.room.name == room_name]

    def is_active_file(self, recording_id: str) -> bool:
        return any(r.recorder.id == recording_id for r in self.recordings.values())

    def _active_ids(self) -> set[str]:
        return {r.recorder.id for r in self.recordings.values()}

    def _check_capacity(self, count: int) -> None:
        running = len(self.recordings) + len(self._starting)
        limit = self.settings.max_concurrent
        if running + count > limit:
            self.refused[TOO_MANY] += 1
            raise GatewayError(
                429,
                TOO_MANY,
                f"{running} recording(s) running, at most {limit} at once "
                "(recording.max_concurrent)",
                retry_after_s=RETRY_AFTER_S,
            )

    async def _check_disk(self) -> None:
        minimum = self.settings.min_free_bytes
        if minimum <= 0:
            return
        try:
            free = await asyncio.to_thread(self.store.free_bytes)
        except OSError as exc:
            raise GatewayError(
                500, "recording-failed", f"cannot use the recordings directory: {exc.strerror}"
            ) from exc
        if free < minimum:
            self.refused[DISK_FULL] += 1
            raise GatewayError(
                507,
                DISK_FULL,
                f"{free} bytes free for recordings, less than recording.min_free_bytes ({minimum})",
            )

    def _on_publish(self, room: Room, session: Session) -> None:
        if self._closed or not self.is_recorded(room.name):
            return
        if session.id in self.recordings or session.id in self._starting:
            return  # tracks a participant adds later are not in its running file
        if session.id in self._at_limit:
            return
        task = asyncio.ensure_future(self._auto_record(room, session))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _auto_record(self, room: Room, session: Session) -> None:
        try:
            await self._record(room, session)
        except GatewayError:
            pass  # logged, and told to the room's watchers, by _record

    async def _record(
        self, room: Room, session: Session, disk_checked: bool = False
    ) -> Recording | None:
        publishers = session.publishers
        # One file per participant: its first video and first audio track.
        first: dict[str, Publisher] = {}
        for publisher in publishers:
            first.setdefault(publisher.kind, publisher)
        chosen = [first[kind] for kind in ("video", "audio") if kind in first]
        if not chosen or session.closed:
            return None
        try:
            self._check_capacity(1)
            # Counted from here on, so starts meanwhile see this one.
            self._starting.add(session.id)
            if not disk_checked:
                await self._check_disk()
        except GatewayError as exc:
            self._starting.discard(session.id)
            # Auto-recording has nobody to answer: the log and the room's watchers are told.
            logger.warning(
                "not recording room %s, participant %s: %s",
                room.name,
                session.public_id,
                exc.message,
            )
            room.emit(
                {
                    "type": "recording-stopped",
                    "room": room.name,
                    "participant": session.public_id,
                    "recording": None,
                    "reason": exc.code,
                    "error": exc.message,
                }
            )
            raise
        try:
            if session.closed or self._closed:
                return None
            async with self._store_lock:
                return await self._create(room, session, chosen)
        finally:
            self._starting.discard(session.id)

    async def _create(
        self, room: Room, session: Session, chosen: list[Publisher]
    ) -> Recording | None:
        """Creates the file and starts its Recorder. Runs under the store lock and
        registers the recording before returning: retention never sees an unknown file."""
        pipeline = self._rooms.get(room.name)
        # What each recorded track is read from: the track, or its output through the
        # pipeline (in the track's own codec), made now so a refusal changes nothing.
        sources = [(p, self._processed(room, p, pipeline)) for p in chosen]
        try:
            _, extension = container_format([TrackSpec(p.kind, p.codec, 0) for p in chosen])
            started = time.time()
            path = await asyncio.to_thread(
                self.store.create, room.name, session.public_id, started, extension
            )
        except OSError as exc:
            logger.error("cannot create a recording in %s: %s", self.store.directory, exc)
            room.emit(
                {
                    "type": "recording-stopped",
                    "room": room.name,
                    "participant": session.public_id,
                    "recording": None,
                    "reason": "error",
                    "error": f"cannot create the file: {exc.strerror}",
                }
            )
            raise GatewayError(
                500, "recording-failed", f"cannot create the recording file: {exc.strerror}"
            ) from exc
        if session.closed or self._closed:
            await asyncio.to_thread(path.unlink, True)
            return None
        info = {
            "room": room.name,
            "participant": session.public_id,
            "identity": session.identity,
            "participant_name": getattr(session, "name", None),
            "transport": session.transport,
            "pipeline": pipeline,
        }
        settings = self.settings
        recorder = Recorder(
            path,
            self.store,
            info,
            queue_frames=settings.queue_frames,
            cluster_ms=settings.cluster_ms,
            fsync_interval_s=settings.fsync_interval_s,
            max_file_bytes=settings.max_file_bytes,
            max_duration_s=settings.max_duration_s,
            min_free_bytes=settings.min_free_bytes,
            on_end=self._ended,
        )
        recording = Recording(room, session, recorder)
        for publisher, output in sources:
            forwarder = output.forwarder if output else publisher.forwarder
            keyframes = output.keyframes if output else publisher.keyframes
            sink = recorder.add_track(publisher.kind, publisher.codec, keyframes.request)
            forwarder.add_sink(sink)
            recording.sinks.append((forwarder, sink))
        self.recordings[session.id] = recording
        if session.id not in self._hooked:
            self._hooked.add(session.id)
            session.on_close(self._session_closed)
        recorder.start()
        logger.info(
            "recording room %s, participant %s into %s", room.name, session.public_id, path.name
        )
        room.emit(
            {
                "type": "recording-started",
                "room": room.name,
                "participant": session.public_id,
                "identity": session.identity,
                "recording": recorder.id,
            }
        )
        return recording

    def _processed(
        self, room: Room, publisher: Publisher, pipeline: str | None
    ) -> RenditionOutput | None:
        renditions = self.registry.renditions
        if pipeline is None or renditions.kind(pipeline) != publisher.kind:
            return None
        return renditions.acquire(publisher, pipeline, publisher.codec, room.name)

    def _session_closed(self, session: Session) -> None:
        self._hooked.discard(session.id)
        self._at_limit.discard(session.id)
        recording = self.recordings.get(session.id)
        if recording is not None:
            recording.recorder.stop("publisher-left")

    def _room_released(self, room: Room) -> None:
        # The end of a kept stream nobody took over (its file ended with its publisher).
        if not self.active(room.name):
            self._rooms.pop(room.name, None)

    def _ended(self, recorder: Recorder) -> None:
        entry = next(
            ((sid, r) for sid, r in self.recordings.items() if r.recorder is recorder), None
        )
        if entry is None:
            return
        session_id, recording = entry
        del self.recordings[session_id]
        for forwarder, sink in recording.sinks:
            forwarder.remove_sink(sink)
        room = recording.room
        reason = "error" if recorder.error else recorder.reason or "stopped"
        event: dict[str, Any] = {
            "type": "recording-stopped",
            "room": room.name,
            "participant": recording.session.public_id,
            "recording": recorder.id,
            "reason": reason,
            "state": recorder.state,
        }
        if recorder.error:
            event["error"] = recorder.error
            # The live stream goes on; only this file stopped.
            logger.error("recording %s stopped by an error: %s", recorder.id, recorder.error)
        elif reason in LIMIT_REASONS:
            self.limited[reason] += 1
            if not recording.session.closed:
                self._at_limit.add(session_id)
            logger.warning("recording %s ended at a limit (%s)", recorder.id, reason)
        else:
            logger.info("recording %s ended (%s)", recorder.id, reason)
        room.emit(event)
        if not self.active(room.name) and not _publishing_sessions(room) and room.held is None:
            # A room recorded on request stops being recorded once nobody publishes (a
            # stream kept for its publisher's return still counts: see _room_released).
            self._rooms.pop(room.name, None)

    def room_stats(self, room_name: str) -> dict[str, Any]:
        recorders = self.active(room_name)
        return {
            "state": "recording" if recorders else "off",
            "recordings": [r.stats() for r in recorders],
        }

    def stats(self) -> dict[str, Any]:
        """Gateway-wide: files being written, refused starts, limits reached, the store."""
        return {
            "active": len(self.recordings),
            "max_concurrent": self.settings.max_concurrent,
            "refused": dict(self.refused),
            "stopped_at_limit": dict(self.limited),
            "retention": self.retention.stats(),
        }

    async def close(self) -> None:
        """Finalizes every file (trailer, cues, sidecar) before the gateway exits."""
        self._closed = True
        await self.retention.close()
        for task in list(self._tasks):
            task.cancel()
        recorders = [r.recorder for r in self.recordings.values()]
        for recorder in recorders:
            recorder.stop("shutdown")
        if recorders:
            await asyncio.wait(
                [asyncio.ensure_future(r.wait()) for r in recorders], timeout=SHUTDOWN_TIMEOUT_S
            )


def _publishing_sessions(room: Room) -> list[Session]:
    """The stream publisher and every participant with live tracks."""
    sessions = []
    if room.publisher is not None and not room.publisher.closed and room.publisher.publishers:
        sessions.append(room.publisher)
    sessions.extend(p for p in room.participants.values() if not p.closed and p.publishers)
    return sessions
