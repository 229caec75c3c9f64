"""What a token allows: LiveKit's ``video`` grant, parsed strictly, plus the gateway's own."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

# LiveKit's names for track sources, and ours (the room page's `screen`).
SOURCES = {
    "camera": "camera",
    "microphone": "microphone",
    "screen_share": "screen",
    "screen_share_audio": "screen-audio",
    "screen": "screen",
    "screen-audio": "screen-audio",
}

# Grant keys as tokens spell them -> Grants field. LiveKit's first, then ours.
_BOOLEANS = {
    "roomJoin": "room_join",
    "roomList": "room_list",
    "roomRecord": "room_record",
    "roomAdmin": "room_admin",
    "roomCreate": "room_create",
    "canPublish": "can_publish",
    "canSubscribe": "can_subscribe",
    "canPublishData": "can_publish_data",
    "hidden": "hidden",
    "recorder": "recorder",
    "canUpdateOwnMetadata": "can_update_metadata",
    "ingressAdmin": "ingress_admin",
    "admin": "admin",  # ours: every room, stats, every recording
}
_LISTS = {"canPublishSources": "sources", "pipelines": "pipelines"}  # pipelines: ours
_STRINGS = {"room": "room"}
# LiveKit grant keys we read and ignore (they configure LiveKit features we do not have).
_IGNORED = {"destinationRoom", "agent", "canSubscribeMetrics"}
MAX_LIST = 64


class GrantError(ValueError):
    """A grant has an unknown key or a value of the wrong type."""


@dataclass(frozen=True)
class Grants:
    """Permissions; ``room`` is a room name or a shell pattern of names (``a*``).

    As in LiveKit, ``can_publish``, ``can_subscribe`` and ``can_publish_data`` are allowed
    when a token leaves them out; ``sources`` None means every source, ``pipelines`` None
    means the gateway's ``auth.default_pipelines``.
    """

    room: str | None = None
    room_join: bool = False
    room_list: bool = False
    room_record: bool = False
    room_admin: bool = False
    room_create: bool = False
    can_publish: bool = True
    can_subscribe: bool = True
    can_publish_data: bool = True
    hidden: bool = False
    recorder: bool = False
    can_update_metadata: bool = False
    ingress_admin: bool = False
    admin: bool = False
    sources: tuple[str, ...] | None = None
    pipelines: tuple[str, ...] | None = None

    def covers(self, room: str) -> bool:
        """Whether ``room`` is one of this grant's rooms (exact name or pattern)."""
        if self.admin:
            return True
        if not self.room:
            return False
        # Room names cannot contain *, ? or [ (rooms.check_room_name): a grant with them
        # is a pattern, one without is matched exactly.
        return fnmatch.fnmatchcase(room, self.room)

    def may_publish_source(self, source: str) -> bool:
        if self.sources is None:
            return True
        return SOURCES.get(source, source) in self.sources

    def may_use_pipeline(self, pipeline: str, default: tuple[str, ...]) -> bool:
        allowed = self.pipelines if self.pipelines is not None else default
        return any(fnmatch.fnmatchcase(pipeline, pattern) for pattern in allowed)

    def describe(self) -> dict[str, Any]:
        """The grant as a token spells it (for docs and the CLI)."""
        out: dict[str, Any] = {}
        if self.room is not None:
            out["room"] = self.room
        for claim, name in _BOOLEANS.items():
            out[claim] = getattr(self, name)
        for claim, name in _LISTS.items():
            value = getattr(self, name)
            if value is not None:
                out[claim] = list(value)
        return out


ALL = Grants(
    room="*",
    room_join=True,
    room_list=True,
    room_record=True,
    room_admin=True,
    room_create=True,
    admin=True,
)
"""Everything: what every client may do when auth is off."""

NONE = Grants(can_publish=False, can_subscribe=False, can_publish_data=False)


def parse_grants(video: Any, *, lenient_defaults: bool = True) -> Grants:
    """A token's (or config's) ``video`` grant; raises GrantError on anything unexpected.

    ``lenient_defaults``: LiveKit's rule that an absent canPublish, canSubscribe or
    canPublishData means allowed. Off for grants written in config.yaml (``auth.anonymous``),
    where only what is written is allowed.
    """
    if video is None:
        return NONE
    if not isinstance(video, Mapping):
        raise GrantError("the grant ('video') must be an object")
    values: dict[str, Any] = {}
    if not lenient_defaults:
        values.update(can_publish=False, can_subscribe=False, can_publish_data=False)
    for key, value in video.items():
        if key in _BOOLEANS:
            if not isinstance(value, bool):
                raise GrantError(f"grant {key!r} must be true or false")
            values[_BOOLEANS[key]] = value
        elif key in _STRINGS:
            if not isinstance(value, str) or len(value) > 256:
                raise GrantError(f"grant {key!r} must be a string of at most 256 characters")
            values[_STRINGS[key]] = value
        elif key in _LISTS:
            if (
                not isinstance(value, list)
                or len(value) > MAX_LIST
                or not all(isinstance(v, str) and 0 < len(v) <= 64 for v in value)
            ):
                raise GrantError(f"grant {key!r} must be a list of at most {MAX_LIST} names")
            if key == "canPublishSources":
                unknown = [v for v in value if v not in SOURCES]
                if unknown:
                    raise GrantError(f"unknown source(s) {unknown} (known: {sorted(SOURCES)})")
                value = [SOURCES[v] for v in value]
            values[_LISTS[key]] = tuple(value)
        elif key not in _IGNORED:
            raise GrantError(f"unknown grant {key!r}")
    return Grants(**values)


def grant_fields() -> list[str]:
    return [f.name for f in fields(Grants)]
