"""A Recorder: frame sinks on the event loop, a bounded queue, a muxing worker thread."""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..media.frames import OutgoingFrame, video_size
from .clock import NTP_UNIT, TrackClock
from .codecs import opus_duration_samples
from .muxer import Muxer, TrackSpec
from .store import COMPLETE, FAILED, RECORDING, RecordingStore, utc_iso

logger = logging.getLogger(__name__)

# Recorder states.
STARTING, STOPPING = "starting", "stopping"  # plus RECORDING, COMPLETE, FAILED (store)
_KEYFRAME_RETRY_S = 1.0
# The worker wakes up this often and writes everything queued meanwhile: a wake-up
# per frame would cost a lock, a notify and a GIL hand-over on the event loop's thread.
_DRAIN_INTERVAL_S = 0.1
Item = tuple[int, bytes, int, bool, int]  # track index, data, RTP time, keyframe, NTP time
# Frames from the first keyframe on are held this long before the file opens, so each
# track's offset is estimated from many frames, not from the keyframe alone (large, it
# arrives late, and the frames after it would be squeezed together).
_ESTIMATE_S = 0.5
NTP_UNIX_OFFSET_S = 2208988800  # aiortc's NTP times count from 1900
# Reasons a recording ends by itself, at a limit (recording.max_file_bytes,
# max_duration_s, min_free_bytes), its file finalized and playable.
SIZE_LIMIT, DURATION_LIMIT, DISK_FULL = "size-limit", "duration-limit", "disk-full"
# What the file adds to the frames' bytes, as an upper bound, so a file stopped at
# max_file_bytes is never bigger: header, tracks and trailer (measured: under 700 bytes
# for VP8/H264 + Opus), and per frame its block header, clusters and cues (measured:
# 8-12 bytes).
_HEADER_RESERVE = 2048
_FRAME_RESERVE = 16
# How often the worker looks at the free space on the recordings' file system.
_DISK_CHECK_S = 1.0


@dataclass
class _Timeline:
    """The worker's clocks once a file is open: time zero is its first frame."""

    clocks: list[TrackClock]
    origin_s: float
    last_ms: list[int]


def _arrival_s(item: Item) -> float:
    return item[4] / NTP_UNIT


class RecorderTrack:
    """One track's way into a Recorder: a FrameSink for a Forwarder.

    ``push`` runs on the event loop for every frame and only enqueues; when the
    queue is full the frame is dropped and counted, and video then waits for the
    next keyframe (one is requested): the forwarder and its viewers never wait.
    """

    def __init__(
        self,
        recorder: Recorder,
        index: int,
        spec: TrackSpec,
        request_keyframe: Callable[[], None],
    ) -> None:
        self._recorder = recorder
        self.index = index
        self.spec = spec
        self._request_keyframe = request_keyframe
        self._is_video = spec.kind == "video"
        # Video starts at a keyframe: a file must begin with something decodable.
        self._waiting_keyframe = self._is_video
        self._last_request = -float("inf")
        self.frames_in = 0
        self.dropped = 0
        self.skipped = 0

    def push(self, frame: OutgoingFrame) -> None:
        if not self._recorder.accepting:
            return
        self.frames_in += 1
        if self._waiting_keyframe:
            if not frame.keyframe:
                self.skipped += 1
                self.request_keyframe()
                return
            self._waiting_keyframe = False
        if not self._recorder.enqueue(
            (self.index, frame.data, frame.timestamp, frame.keyframe, frame.ntp_time)
        ):
            self.dropped += 1
            if self._is_video:
                self._waiting_keyframe = True
                self.request_keyframe(force=True)

    def frames_lost_upstream(self) -> None:
        # Deltas after a gap would decode to garbage: resume at a keyframe.
        if self._is_video and not self._waiting_keyframe:
            self._waiting_keyframe = True
            self.request_keyframe(force=True)

    def request_keyframe(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_request >= _KEYFRAME_RETRY_S:
            self._last_request = now
            self._request_keyframe()


class Recorder:
    """Records one participant's tracks into one file, in sync, without re-encoding.

    Frames reach the worker thread through one bounded queue shared by the tracks,
    so they keep their arrival order; every 100 ms the thread maps their timestamps
    onto one clock, muxes them (PyAV releases the GIL while writing) and, on a
    cadence, fsyncs the file.
    A write error (a full disk) ends this recording only, with ``error`` set. So does,
    cleanly (file finalized, no error), reaching ``max_file_bytes``, ``max_duration_s``
    or less than ``min_free_bytes`` free on the disk (0: no such limit); ``reason``
    then says which.
    """

    def __init__(
        self,
        path: Path,
        store: RecordingStore,
        info: dict[str, Any],
        *,
        queue_frames: int,
        cluster_ms: int,
        fsync_interval_s: float,
        max_file_bytes: int = 0,
        max_duration_s: float = 0.0,
        min_free_bytes: int = 0,
        on_end: Callable[[Recorder], None] | None = None,
    ) -> None:
        self.path = path
        self.id = path.stem
        self._store = store
        self.info = dict(info)
        # Appended to on the event loop, popped by the worker: deque operations are
        # atomic, so neither side ever takes a lock or waits for the other.
        self._queue: deque[Item] = deque()
        self._max_queued = queue_frames
        self._cluster_ms = cluster_ms
        self._fsync_interval_s = fsync_interval_s
        self._max_file_bytes = max_file_bytes
        self._max_duration_ms = round(max_duration_s * 1000)
        self._min_free_bytes = min_free_bytes
        self._on_end = on_end
        self.tracks: list[RecorderTrack] = []
        self.state = STARTING
        self.reason: str | None = None
        self.error: str | None = None
        self.accepting = False
        # stop() runs on the event loop, a limit stops it from the worker thread.
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._at_limit = False  # the worker writes no more frames
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: asyncio.Future[None] | None = None
        # Written by the worker thread, read by stats().
        self.frames_written = 0
        self.bytes_written = 0
        self.size = 0
        self.duration_ms = 0
        self._start_unix_s: float | None = None  # wall clock of the file's time 0

    def add_track(
        self, kind: str, codec: str, request_keyframe: Callable[[], None]
    ) -> RecorderTrack:
        clock_rate = 48000 if kind == "audio" else 90000
        track = RecorderTrack(
            self, len(self.tracks), TrackSpec(kind, codec, clock_rate), request_keyframe
        )
        self.tracks.append(track)
        return track

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._done = self._loop.create_future()
        self.accepting = True
        self._thread = threading.Thread(target=self._run, name=f"recorder-{self.id}", daemon=True)
        self._thread.start()
        for track in self.tracks:
            if track.spec.kind == "video":
                track.request_keyframe(force=True)

    def enqueue(self, item: Item) -> bool:
        if len(self._queue) >= self._max_queued:
            return False
        self._queue.append(item)
        return True

    def stop(self, reason: str) -> None:
        """Stops taking frames; the worker writes what is queued, then finalizes."""
        with self._lock:
            if self._stopping.is_set():
                return
            self.accepting = False
            self.reason = self.reason or reason
            if self.state in (STARTING, RECORDING):
                self.state = STOPPING
            self._stopping.set()  # wakes the worker, which drains the queue first

    async def wait(self) -> None:
        if self._done is not None:
            await asyncio.shield(self._done)

    @property
    def active(self) -> bool:
        return self._done is not None and not self._done.done()

    # --- worker thread ---

    def _run(self) -> None:
        muxer = Muxer(self.path, [t.spec for t in self.tracks], self._cluster_ms)
        timeline: _Timeline | None = None
        held: list[Item] = []
        last_sync = last_disk_check = time.monotonic()
        try:
            while True:
                stopping = self._stopping.wait(_DRAIN_INTERVAL_S)
                while self._queue and self.error is None and not self._at_limit:
                    item = self._queue.popleft()
                    if timeline is not None:
                        self._write(muxer, timeline, item)
                    elif held or self._starts_file(item):
                        held.append(item)
                        if _arrival_s(item) - _arrival_s(held[0]) >= _ESTIMATE_S:
                            timeline, held = self._open(muxer, held), []
                if stopping and held and self.error is None and not self._at_limit:
                    timeline, held = self._open(muxer, held), []
                if muxer.is_open and time.monotonic() - last_sync >= self._fsync_interval_s:
                    self.size = muxer.sync()
                    last_sync = time.monotonic()
                if self._min_free_bytes and time.monotonic() - last_disk_check >= _DISK_CHECK_S:
                    last_disk_check = time.monotonic()
                    if shutil.disk_usage(self.path.parent).free < self._min_free_bytes:
                        self._reach_limit(DISK_FULL)
                if stopping:
                    break
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            self.accepting = False
            logger.error("recording %s failed, stopping it: %s", self.id, self.error)
        self._queue.clear()  # what a limit left unwritten
        self._finish(muxer)

    def _reach_limit(self, reason: str) -> None:
        """Worker thread: the file ends here; stop() wakes the loop to finalize it."""
        if not self._at_limit:
            self._at_limit = True
            self.stop(reason)

    def _video(self) -> RecorderTrack | None:
        return next((t for t in self.tracks if t.spec.kind == "video"), None)

    def _starts_file(self, item: Item) -> bool:
        """A file starts at a keyframe whose size is known; audio before it is left out."""
        video = self._video()
        if video is None:
            return True
        index, data, _, keyframe, _ = item
        return index == video.index and keyframe and video_size(video.spec.codec, data) is not None

    def _open(self, muxer: Muxer, held: list[Item]) -> _Timeline:
        video = self._video()
        size = video_size(video.spec.codec, held[0][1]) if video is not None else None
        muxer.open(size)
        clocks = [TrackClock(t.spec.clock_rate) for t in self.tracks]
        # Offsets estimated from everything held, not from the first (large, late) keyframe.
        for index, _, timestamp, _, ntp_time in held:
            clocks[index].observe(timestamp, ntp_time)
        first_index, _, first_timestamp, _, _ = held[0]
        origin_s = clocks[first_index].wall_s(first_timestamp)
        timeline = _Timeline(clocks, origin_s, [-1] * len(self.tracks))
        self._start_unix_s = origin_s - NTP_UNIX_OFFSET_S
        self.info["start"] = utc_iso(self._start_unix_s)
        self.info["tracks"] = [
            {"kind": t.spec.kind, "codec": t.spec.codec}
            | ({"width": size[0], "height": size[1]} if size and t is video else {})
            for t in self.tracks
        ]
        with self._lock:
            if self.state == STARTING:
                self.state = RECORDING
        self._store.write_sidecar(self.path, self._sidecar(RECORDING))
        for item in held:
            self._write(muxer, timeline, item)
        return timeline

    def _write(self, muxer: Muxer, timeline: _Timeline, item: Item) -> None:
        index, data, timestamp, keyframe, ntp_time = item
        clock = timeline.clocks[index]
        clock.observe(timestamp, ntp_time)
        pts_ms = round((clock.wall_s(timestamp) - timeline.origin_s) * 1000)
        if pts_ms < 0:
            return  # audio from before the first keyframe
        # A muxer needs increasing timestamps per track.
        pts_ms = max(pts_ms, timeline.last_ms[index] + 1)
        timeline.last_ms[index] = pts_ms
        duration_ms = 0
        if self.tracks[index].spec.kind == "audio":
            duration_ms = opus_duration_samples(data) // 48
        if self._at_limit:
            return
        if self._max_duration_ms and pts_ms + duration_ms > self._max_duration_ms:
            self._reach_limit(DURATION_LIMIT)
            return
        if self._max_file_bytes and self._size_with(len(data)) > self._max_file_bytes:
            self._reach_limit(SIZE_LIMIT)
            return
        muxer.write(index, data, pts_ms, keyframe, duration_ms)
        self.frames_written += 1
        self.bytes_written += len(data)
        self.duration_ms = max(self.duration_ms, pts_ms + duration_ms)

    def _size_with(self, frame_bytes: int) -> int:
        """At most what the finalized file would weigh with one more frame of this size."""
        frames = self.frames_written + 1
        return _HEADER_RESERVE + self.bytes_written + frame_bytes + _FRAME_RESERVE * frames

    def _finish(self, muxer: Muxer) -> None:
        opened = muxer.is_open
        try:
            muxer.close()
        except Exception as exc:
            if self.error is None:
                self.error = f"{type(exc).__name__}: {exc}"
                logger.error("recording %s could not be finalized: %s", self.id, self.error)
        try:
            if opened:
                self.size = self.path.stat().st_size
                self._store.write_sidecar(
                    self.path, self._sidecar(FAILED if self.error else COMPLETE)
                )
            elif self.path.exists() and self.path.stat().st_size == 0:
                # Nothing was ever recorded (no keyframe came): leave no empty file.
                self.path.unlink()
        except OSError as exc:
            logger.error("recording %s: cannot write its sidecar: %s", self.id, exc)
        self.state = FAILED if self.error else COMPLETE if opened else "empty"
        self._notify()

    def _notify(self) -> None:
        loop, done = self._loop, self._done
        if loop is None or done is None:
            return
        try:
            loop.call_soon_threadsafe(self._ended)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more

    def _ended(self) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(None)
        if self._on_end is not None:
            self._on_end(self)

    def _sidecar(self, state: str) -> dict[str, Any]:
        info = dict(self.info)
        info.update(
            {
                "file": self.path.name,
                "state": state,
                "duration_s": round(self.duration_ms / 1000, 3),
                "size": self.size,
                "frames_written": self.frames_written,
                "frames_dropped": sum(t.dropped for t in self.tracks),
            }
        )
        if state != RECORDING:
            # The media's end, not the moment the file was closed: a publisher found lost
            # after seconds of silence ended when its last frame did.
            ended = time.time()
            if self._start_unix_s is not None and self.duration_ms:
                ended = min(ended, self._start_unix_s + self.duration_ms / 1000)
            info["end"] = utc_iso(ended)
            info["reason"] = self.reason
        if self.error:
            info["error"] = self.error
        return info

    def stats(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "file": self.path.name,
            "state": self.state,
            "frames_written": self.frames_written,
            "frames_dropped": sum(t.dropped for t in self.tracks),
            "frames_skipped_until_keyframe": sum(t.skipped for t in self.tracks),
            "bytes_written": self.bytes_written,
            "file_size": self.size,
            "duration_s": round(self.duration_ms / 1000, 3),
            "queued": len(self._queue),
            "error": self.error,
        }
