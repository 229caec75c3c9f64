"""The recordings directory: safe unique names, JSON sidecars, listing, deletion, free space."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from stat import S_ISREG
from typing import Any

import av

from ..errors import GatewayError, bad_request, not_found

logger = logging.getLogger(__name__)

# A recording's id is its file name without extension: letters, digits, '.', '_', '-',
# never starting with '.', so it can never name a path outside the directory.
RECORDING_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,159}$")
EXTENSIONS = {"webm": "video/webm", "mkv": "video/x-matroska"}
# Sidecar states: recording (being written; after a crash until the next start),
# complete, failed (a write error ended it), interrupted (the gateway died).
RECORDING, COMPLETE, FAILED, INTERRUPTED = "recording", "complete", "failed", "interrupted"


def check_id(recording_id: str) -> str:
    if not RECORDING_ID.match(recording_id) or ".." in recording_id:
        raise bad_request(f"{recording_id!r} is not a recording id", "invalid-recording-id")
    return recording_id


def utc_iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class StoredFile:
    """What retention needs of a recording: its size and when it ended."""

    id: str
    size: int
    ended: float  # Unix time: the sidecar's "end", else the file's last write


StoredFiles = list[StoredFile]  # (inside RecordingStore, "list" is its method)


class RecordingStore:
    """Files in one flat directory: ``<id>.<webm|mkv>`` and its ``<id>.json`` sidecar.

    Every method touches the disk: call them from a thread, never on the event loop.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).resolve()

    def create(self, room: str, participant: str, started: float, extension: str) -> Path:
        """Reserves a new, unique file for a recording (created empty, O_EXCL)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.fromtimestamp(started, UTC).strftime("%Y%m%dT%H%M%S%fZ")
        # Room names are already [A-Za-z0-9_.-]; the participant id is ours (hex).
        base = f"{_safe(room)}_{stamp}_{_safe(participant)[:12]}"
        for attempt in range(100):
            name = base if attempt == 0 else f"{base}-{attempt}"
            path = self.directory / f"{name}.{extension}"
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            os.close(fd)
            return path
        raise GatewayError(500, "recording-name-taken", f"no free file name for {base}")

    def path(self, recording_id: str) -> Path:
        """The media file of an existing recording; refuses anything but a plain id."""
        check_id(recording_id)
        for extension in EXTENSIONS:
            path = self.directory / f"{recording_id}.{extension}"
            if path.parent == self.directory and path.is_file():
                return path
        raise not_found(f"no recording {recording_id!r}", "unknown-recording")

    def write_sidecar(self, media: Path, info: dict[str, Any]) -> None:
        """Replaces the sidecar atomically, so a crash leaves the old or the new one."""
        sidecar = media.with_suffix(".json")
        temporary = sidecar.with_name(f".{sidecar.name}.tmp")
        with temporary.open("w") as out:
            json.dump(info, out, indent=2)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, sidecar)

    def read(self, recording_id: str) -> dict[str, Any]:
        media = self.path(recording_id)
        return self._describe(media)

    def list(self) -> list[dict[str, Any]]:
        found = []
        if not self.directory.is_dir():
            return []
        for media in self.directory.iterdir():
            extension = media.suffix.lstrip(".")
            if extension in EXTENSIONS and RECORDING_ID.match(media.stem) and media.is_file():
                found.append(self._describe(media))
        found.sort(key=lambda r: str(r.get("start") or ""), reverse=True)
        return found

    def entries(self) -> StoredFiles:
        """Every recording's size and end time (reads each sidecar, not the media)."""
        if not self.directory.is_dir():
            return []
        found = []
        for media in self.directory.iterdir():
            extension = media.suffix.lstrip(".")
            if extension not in EXTENSIONS or not RECORDING_ID.match(media.stem):
                continue
            try:
                info = media.stat()
            except FileNotFoundError:
                continue  # deleted meanwhile
            if not S_ISREG(info.st_mode):
                continue
            ended = _timestamp(_sidecar(media).get("end"))
            found.append(
                StoredFile(media.stem, info.st_size, info.st_mtime if ended is None else ended)
            )
        return found

    def free_bytes(self) -> int:
        """Free space, for an unprivileged writer, on the directory's file system (the
        one it will be created on, if it is not yet: measuring creates nothing)."""
        where = self.directory
        while not where.exists() and where != where.parent:
            where = where.parent
        return shutil.disk_usage(where).free

    def delete(self, recording_id: str) -> None:
        media = self.path(recording_id)
        media.unlink()
        with contextlib.suppress(FileNotFoundError):
            media.with_suffix(".json").unlink()

    def recover(self, active: set[Path]) -> int:
        """Marks recordings a previous process left 'recording' as interrupted.

        Their files are playable as they are (Matroska clusters); their duration is
        found by reading the packets' timestamps (no decode).
        """
        recovered = 0
        for info in self.list():
            media = self.directory / info["file"]
            if info.get("state") != RECORDING or media in active:
                continue
            info["state"] = INTERRUPTED
            info["duration_s"] = last_timestamp(media)
            info["size"] = media.stat().st_size
            info.pop("path", None)
            self.write_sidecar(media, _stored(info))
            recovered += 1
            logger.warning("recording %s was interrupted (gateway stopped abruptly)", media.name)
        return recovered

    def _describe(self, media: Path) -> dict[str, Any]:
        info = _sidecar(media)
        stat = media.stat()
        info.update(
            {
                "id": media.stem,
                "file": media.name,
                "content_type": EXTENSIONS[media.suffix.lstrip(".")],
                "size": stat.st_size,
            }
        )
        info.setdefault("state", INTERRUPTED)
        info.setdefault("start", utc_iso(stat.st_mtime))
        return info


def last_timestamp(media: Path) -> float | None:
    """Seconds to the end of the last complete packet in a file, or None if unreadable."""
    end = None
    try:
        with av.open(str(media)) as container:
            for packet in container.demux():
                if packet.pts is not None and packet.time_base is not None:
                    stop = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                    end = stop if end is None else max(end, stop)
    except (av.FFmpegError, OSError):
        logger.warning("cannot read %s", media.name)
    return round(end, 3) if end is not None else None


def _sidecar(media: Path) -> dict[str, Any]:
    """A recording's sidecar, or {} when it is missing or unreadable."""
    with contextlib.suppress(OSError, ValueError):
        loaded = json.loads(media.with_suffix(".json").read_text())
        if isinstance(loaded, dict):
            return loaded
    return {}


def _timestamp(iso: Any) -> float | None:
    if not isinstance(iso, str):
        return None
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return None
    # Ours always carry +00:00; one without a zone is read as UTC, not local time.
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _stored(info: dict[str, Any]) -> dict[str, Any]:
    # What is derived from the file itself is not stored in the sidecar.
    return {k: v for k, v in info.items() if k not in ("id", "content_type")}


def _safe(text: str) -> str:
    # Ids refuse "..", so a room named "a..b" must not put one in its file name.
    safe = re.sub(r"\.{2,}", "_", re.sub(r"[^A-Za-z0-9_.-]", "_", text))
    return safe.lstrip(".") or "x"
