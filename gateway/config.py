"""Settings: embedded defaults, overridden by config.yaml, then by GATEWAY_* variables."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ENV_PREFIX = "GATEWAY_"
VIDEO_CODECS = ("VP8", "H264")
AUDIO_CODECS = ("opus",)
PIPELINE_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")


class ConfigError(ValueError):
    """A setting is missing, unknown or invalid; the message names the key."""


@dataclass
class IceServer:
    urls: list[str]
    username: str | None = None
    credential: str | None = None


@dataclass
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 65536
    cors_origins: list[str] = field(default_factory=lambda: ["*"])


@dataclass
class IceSettings:
    servers: list[IceServer] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    announced_address: str | None = None
    connect_timeout_s: float = 15.0


@dataclass
class MediaSettings:
    video_codecs: list[str] = field(default_factory=lambda: ["VP8", "H264"])
    audio_codecs: list[str] = field(default_factory=lambda: ["opus"])
    keyframe_request_interval_ms: int = 500
    viewer_backlog_bytes: int = 262144


@dataclass
class RoomBitrate:
    room: str  # a shell pattern (fnmatch) of room names
    max_bitrate_kbps: int
    min_bitrate_kbps: int = 0


@dataclass
class IngestSettings:
    transport_cc: bool = True
    feedback_interval_ms: int = 50
    max_bitrate_kbps: int = 3000
    min_bitrate_kbps: int = 0
    rooms: list[RoomBitrate] = field(default_factory=list)


@dataclass
class RoomSettings:
    max_subscribers: int = 500
    max_rooms: int = 1000
    max_participants: int = 50
    max_tracks_per_participant: int = 8
    p2p_rooms: list[str] = field(default_factory=list)
    p2p_max_participants: int = 4
    chat_max_bytes: int = 4096
    chat_rate_per_s: float = 5.0
    chat_burst: int = 10
    reconnect_grace_s: float = 10.0


@dataclass
class RecordingSettings:
    directory: str = "recordings"
    auto_record: list[str] = field(default_factory=list)
    queue_frames: int = 300
    cluster_ms: int = 500
    fsync_interval_s: float = 1.0


def _default_pipelines() -> dict[str, Any]:
    return {
        "gray": ["grayscale"],
        "privacy": ["blur", "timestamp"],
        "edges": ["edges"],
        "mirror": [{"rotate": {"angle": 0, "flip": "horizontal"}}],
        "pixelate": ["pixelate"],
        "clock": ["timestamp"],
        "small": [{"resize": {"width": 640}}],
        "quiet": [{"gain": {"gain_db": -12.0}}],
        "silent": ["mute"],
    }


@dataclass
class ProcessingSettings:
    pipelines: dict[str, Any] = field(default_factory=_default_pipelines)
    max_renditions: int = 16
    video_bitrate_kbps: int = 1500
    audio_bitrate_kbps: int = 64
    encoder_threads: int = 1
    keyframe_interval_s: float = 10.0
    queue_frames: int = 30
    max_consecutive_failures: int = 5


@dataclass
class LogSettings:
    level: str = "info"


@dataclass
class Config:
    server: ServerSettings = field(default_factory=ServerSettings)
    ice: IceSettings = field(default_factory=IceSettings)
    media: MediaSettings = field(default_factory=MediaSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    rooms: RoomSettings = field(default_factory=RoomSettings)
    log: LogSettings = field(default_factory=LogSettings)
    recording: RecordingSettings = field(default_factory=RecordingSettings)
    processing: ProcessingSettings = field(default_factory=ProcessingSettings)


def load(path: str | Path | None = None, environ: typing.Mapping[str, str] | None = None) -> Config:
    """Build the configuration; raises ConfigError naming the offending key."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        raw = loaded or {}
    _apply_env(raw, os.environ if environ is None else environ)
    config: Config = _build(Config, raw, "")
    _validate(config)
    return config


def _apply_env(raw: dict[str, Any], environ: typing.Mapping[str, str]) -> None:
    sections = {f.name: f for f in dataclasses.fields(Config)}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        if section not in sections or not key:
            raise ConfigError(f"environment variable {name}: no such setting")
        section_type = typing.get_type_hints(Config)[section]
        if key not in {f.name for f in dataclasses.fields(section_type)}:
            raise ConfigError(f"environment variable {name}: no setting {section}.{key}")
        try:
            parsed = yaml.safe_load(value) if value != "" else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"environment variable {name}: cannot parse {value!r}") from exc
        target = raw.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"{section}: expected a mapping")
        target[key] = parsed


def _build(cls: type[Any], data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {_kind(data)}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(f"{_join(where, str(key))}: unknown setting")
    values: dict[str, Any] = {}
    for name in known:
        if name in data:
            values[name] = _coerce(hints[name], data[name], _join(where, name))
    try:
        return cls(**values)
    except TypeError as exc:  # a required field of a nested item is missing
        raise ConfigError(f"{where}: {exc}") from exc


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, where)
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{where}: expected a mapping of names, got {_kind(value)}")
        return {k: _coerce(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {_kind(value)}")
        return [_coerce(args[0], item, f"{where}[{i}]") for i, item in enumerate(value)]
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)  # type: ignore[arg-type]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {_kind(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {_kind(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {_kind(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {_kind(value)}")
        return value
    raise ConfigError(f"{where}: unsupported setting type {hint}")


def _validate(config: Config) -> None:
    def check(ok: bool, key: str, message: str) -> None:
        if not ok:
            raise ConfigError(f"{key}: {message}")

    s = config.server
    check(1 <= s.port <= 65535, "server.port", f"must be 1-65535, got {s.port}")
    check(s.max_body_bytes >= 1024, "server.max_body_bytes", "must be at least 1024")
    for i, server in enumerate(config.ice.servers):
        check(bool(server.urls), f"ice.servers[{i}].urls", "must list at least one URL")
        for url in server.urls:
            check(
                url.split(":", 1)[0] in ("stun", "stuns", "turn", "turns"),
                f"ice.servers[{i}].urls",
                f"{url!r} is not a stun:, stuns:, turn: or turns: URL",
            )
            if url.startswith("turn"):
                check(
                    server.username is not None and server.credential is not None,
                    f"ice.servers[{i}]",
                    "a TURN server needs username and credential",
                )
    for i, address in enumerate(config.ice.addresses):
        check(_is_ip(address), f"ice.addresses[{i}]", f"{address!r} is not an IP address")
    if config.ice.announced_address is not None:
        check(
            _is_ip(config.ice.announced_address),
            "ice.announced_address",
            f"{config.ice.announced_address!r} is not an IP address",
        )
    check(config.ice.connect_timeout_s > 0, "ice.connect_timeout_s", "must be positive")
    m = config.media
    check(bool(m.video_codecs), "media.video_codecs", "must list at least one codec")
    for codec in m.video_codecs:
        check(
            codec in VIDEO_CODECS, "media.video_codecs", f"{codec!r} is not one of {VIDEO_CODECS}"
        )
    for codec in m.audio_codecs:
        check(
            codec in AUDIO_CODECS, "media.audio_codecs", f"{codec!r} is not one of {AUDIO_CODECS}"
        )
    check(
        m.keyframe_request_interval_ms >= 0,
        "media.keyframe_request_interval_ms",
        "must not be negative",
    )
    check(m.viewer_backlog_bytes >= 1500, "media.viewer_backlog_bytes", "must be at least 1500")
    g = config.ingest
    check(20 <= g.feedback_interval_ms <= 500, "ingest.feedback_interval_ms", "must be 20-500")
    bounds = [("ingest", g.max_bitrate_kbps, g.min_bitrate_kbps)]
    for i, room in enumerate(g.rooms):
        check(bool(room.room), f"ingest.rooms[{i}].room", "must be a room name pattern")
        bounds.append((f"ingest.rooms[{i}]", room.max_bitrate_kbps, room.min_bitrate_kbps))
    for key, top, bottom in bounds:
        check(top >= 0, f"{key}.max_bitrate_kbps", "must not be negative (0: no maximum)")
        check(bottom >= 0, f"{key}.min_bitrate_kbps", "must not be negative (0: no minimum)")
        check(
            top == 0 or bottom <= top,
            f"{key}.min_bitrate_kbps",
            f"must not exceed max_bitrate_kbps ({top})",
        )
    check(config.rooms.max_subscribers >= 1, "rooms.max_subscribers", "must be at least 1")
    check(config.rooms.max_rooms >= 1, "rooms.max_rooms", "must be at least 1")
    check(config.rooms.max_participants >= 1, "rooms.max_participants", "must be at least 1")
    check(
        config.rooms.max_tracks_per_participant >= 1,
        "rooms.max_tracks_per_participant",
        "must be at least 1",
    )
    check(
        config.rooms.p2p_max_participants >= 2, "rooms.p2p_max_participants", "must be at least 2"
    )
    check(config.rooms.chat_max_bytes >= 1, "rooms.chat_max_bytes", "must be at least 1")
    check(config.rooms.chat_rate_per_s > 0, "rooms.chat_rate_per_s", "must be positive")
    check(config.rooms.chat_burst >= 1, "rooms.chat_burst", "must be at least 1")
    check(config.rooms.reconnect_grace_s >= 0, "rooms.reconnect_grace_s", "must not be negative")
    r = config.recording
    check(bool(r.directory.strip()), "recording.directory", "must not be empty")
    check(r.queue_frames >= 10, "recording.queue_frames", "must be at least 10")
    check(100 <= r.cluster_ms <= 5000, "recording.cluster_ms", "must be 100-5000")
    check(r.fsync_interval_s > 0, "recording.fsync_interval_s", "must be positive")
    _validate_processing(config.processing)
    check(
        config.log.level.lower() in ("debug", "info", "warning", "error"),
        "log.level",
        f"must be debug, info, warning or error, got {config.log.level!r}",
    )


def _validate_processing(p: ProcessingSettings) -> None:
    # Imported here: building pipelines loads processors (and plug-ins); the rest of the
    # configuration does not need them.
    from processors.registry import ProcessorConfigError, ProcessorRegistry

    def check(ok: bool, key: str, message: str) -> None:
        if not ok:
            raise ConfigError(f"processing.{key}: {message}")

    check(p.max_renditions >= 0, "max_renditions", "must not be negative (0: processing off)")
    check(p.video_bitrate_kbps >= 50, "video_bitrate_kbps", "must be at least 50")
    check(6 <= p.audio_bitrate_kbps <= 510, "audio_bitrate_kbps", "must be 6-510")
    check(1 <= p.encoder_threads <= 16, "encoder_threads", "must be 1-16")
    check(p.keyframe_interval_s >= 1, "keyframe_interval_s", "must be at least 1")
    check(p.queue_frames >= 2, "queue_frames", "must be at least 2")
    check(p.max_consecutive_failures >= 1, "max_consecutive_failures", "must be at least 1")
    registry = ProcessorRegistry()
    for name, spec in p.pipelines.items():
        check(
            PIPELINE_NAME.fullmatch(name) is not None,
            f"pipelines.{name}",
            "a pipeline name is 1-32 letters, digits, '-' or '_'",
        )
        try:
            registry.build(spec, name=name)
        except ProcessorConfigError as exc:
            raise ConfigError(f"processing.pipelines.{name}: {exc}") from exc


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _kind(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"
