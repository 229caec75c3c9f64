"""Retention: finished recordings deleted past an age, then oldest first over a total size."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from ..config import RecordingSettings
from ..errors import GatewayError
from .store import RecordingStore, StoredFile, utc_iso

logger = logging.getLogger(__name__)

DAY_S = 86400.0


def choose(
    files: list[StoredFile],
    active: set[str],
    now: float,
    max_age_s: float,
    max_total_bytes: int,
) -> list[StoredFile]:
    """What to delete: finished files that ended more than ``max_age_s`` ago, then the
    oldest finished ones while all files (those being written too) exceed
    ``max_total_bytes``. 0 turns either rule off; a file in ``active`` is never chosen."""
    finished = sorted((f for f in files if f.id not in active), key=lambda f: f.ended)
    chosen = [f for f in finished if max_age_s > 0 and now - f.ended > max_age_s]
    if max_total_bytes > 0:
        total = sum(f.size for f in files) - sum(f.size for f in chosen)
        taken = {f.id for f in chosen}
        for candidate in finished:
            if total <= max_total_bytes:
                break
            if candidate.id not in taken:
                chosen.append(candidate)
                total -= candidate.size
    return chosen


class Retention:
    """A task that sweeps the recordings directory every ``retention_check_s``.

    The directory is read and files are deleted in a thread. ``lock`` is held from the
    listing to the choice, and by the controller from creating a file to registering
    its recording, so a file just created is known to be active when it is seen.
    """

    def __init__(
        self,
        store: RecordingStore,
        settings: RecordingSettings,
        active: Callable[[], set[str]],
        lock: asyncio.Lock,
    ) -> None:
        self.store = store
        self.settings = settings
        self._active = active
        self._lock = lock
        self._task: asyncio.Task[None] | None = None
        self.deleted = 0
        self.deleted_bytes = 0
        self.failed = 0
        # As of the last sweep.
        self.files: int | None = None
        self.bytes: int | None = None
        self.free_bytes: int | None = None
        self.checked_at: float | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="recording-retention")

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                # A directory that cannot be read today may be readable at the next check.
                logger.exception("recording retention failed in %s", self.store.directory)
            await asyncio.sleep(self.settings.retention_check_s)

    async def sweep(self) -> list[str]:
        """Deletes what retention says is to go; returns the recordings' ids."""
        async with self._lock:
            files, free = await asyncio.to_thread(self._scan)
            chosen = choose(
                files,
                self._active(),
                time.time(),
                self.settings.retention_days * DAY_S,
                self.settings.retention_total_bytes,
            )
        deleted = await asyncio.to_thread(self._delete, chosen) if chosen else []
        gone = sum(f.size for f in deleted)
        self.deleted += len(deleted)
        self.deleted_bytes += gone
        self.failed += len(chosen) - len(deleted)
        self.files = len(files) - len(deleted)
        self.bytes = sum(f.size for f in files) - gone
        self.free_bytes = free
        self.checked_at = time.time()
        if deleted:
            logger.info(
                "retention deleted %d recording(s), %d bytes: %s",
                len(deleted),
                gone,
                ", ".join(f.id for f in deleted),
            )
        return [f.id for f in deleted]

    def _scan(self) -> tuple[list[StoredFile], int]:
        return self.store.entries(), self.store.free_bytes()

    def _delete(self, chosen: list[StoredFile]) -> list[StoredFile]:
        deleted = []
        for file in chosen:
            try:
                self.store.delete(file.id)
            except (OSError, GatewayError) as exc:
                # Deleted meanwhile (DELETE /api/recordings/ID), or not ours to delete.
                logger.warning("retention cannot delete recording %s: %s", file.id, exc)
                continue
            deleted.append(file)
        return deleted

    def stats(self) -> dict[str, Any]:
        return {
            "deleted": self.deleted,
            "deleted_bytes": self.deleted_bytes,
            "delete_failures": self.failed,
            "files": self.files,
            "bytes": self.bytes,
            "disk_free_bytes": self.free_bytes,
            "checked_at": utc_iso(self.checked_at) if self.checked_at is not None else None,
        }

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
