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
from urllib.parse import urlsplit

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
    # coturn's REST API scheme (use-auth-secret): credentials minted per client from this
    # shared secret, valid for ttl_s seconds, instead of a static username/credential.
    secret: str | None = None
    ttl_s: int = 3600


@dataclass
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 65536
    cors_origins: list[str] = field(default_factory=list)
    trusted_proxies: list[str] = field(default_factory=list)
    drain_timeout_s: float = 10.0
    max_viewers: int = 0
    max_cpu: float = 0.0
    max_egress_mbps: float = 0.0
    workers: int = 1


@dataclass
class IceSettings:
    servers: list[IceServer] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    announced_address: str | None = None
    connect_timeout_s: float = 15.0
    transport_policy: str = "all"


@dataclass
class MediaSettings:
    video_codecs: list[str] = field(default_factory=lambda: ["VP8", "H264"])
    audio_codecs: list[str] = field(default_factory=lambda: ["opus"])
    keyframe_request_interval_ms: int = 500
    viewer_backlog_bytes: int = 262144
    max_simulcast_layers: int = 3
    viewer_transport_cc: bool = True
    adapt_layers: bool = True


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
    publisher_timeout_s: float = 3.0


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
    publisher_grace_s: float = 30.0


@dataclass
class RecordingSettings:
    directory: str = "recordings"
    auto_record: list[str] = field(default_factory=list)
    queue_frames: int = 300
    cluster_ms: int = 500
    fsync_interval_s: float = 1.0
    max_concurrent: int = 16
    max_file_bytes: int = 4 * 1024**3
    max_duration_s: float = 6 * 3600.0
    min_free_bytes: int = 1024**3
    retention_days: float = 0.0
    retention_total_bytes: int = 0
    retention_check_s: float = 600.0


# A server-made ladder's bounds (processing.ladders): each rung is a decoder's share, a
# scale and an encoder.
MAX_RUNGS = 4
MIN_RUNG_HEIGHT = 90
MAX_RUNG_HEIGHT = 2160


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
class LadderRung:
    height: int  # pixels; the width follows the track's aspect ratio
    bitrate_kbps: int


@dataclass
class Ladder:
    room: str  # a shell pattern (fnmatch) of room names
    rungs: list[LadderRung]


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
    assets_dir: str | None = None
    ladders: list[Ladder] = field(default_factory=list)


@dataclass
class LogSettings:
    level: str = "info"


@dataclass
class AuthKey:
    key: str  # a token's `iss` (LiveKit: the API key)
    secret: str  # its HS256 secret (LiveKit: the API secret)


@dataclass
class AuthSettings:
    enabled: bool = False
    allow_anonymous: bool = False
    keys: list[AuthKey] = field(default_factory=list)
    jwks: str | None = None
    jwks_refresh_s: float = 600.0
    audience: str | None = None
    leeway_s: float = 30.0
    max_token_bytes: int = 8192
    anonymous: dict[str, Any] | None = None
    default_pipelines: list[str] = field(default_factory=lambda: ["*"])
    duplicate_identity: str = "replace"
    signed_url_ttl_s: float = 3600.0
    url_signing_secret: str | None = None
    ws_auth_timeout_s: float = 10.0


@dataclass
class LimitSettings:
    sessions_per_ip_per_s: float = 5.0
    sessions_per_ip_burst: int = 20
    sessions_per_identity_per_s: float = 5.0
    sessions_per_identity_burst: int = 20
    max_pending_sessions: int = 200
    max_sockets_per_ip: int = 32
    ws_messages_per_s: float = 50.0
    ws_messages_burst: int = 200
    max_candidates_per_session: int = 64
    max_candidates_per_request: int = 32
    max_m_lines: int = 16
    max_watched_rooms: int = 16
    tracked_clients: int = 10000


@dataclass
class ClusterSettings:
    redis_url: str = ""  # "": no cluster, one gateway as before
    node_id: str = ""  # "": made up at start (host name and a random suffix)
    advertise_url: str = ""  # how other nodes and redirected clients reach this one
    heartbeat_s: float = 2.0
    node_ttl_s: float = 6.0
    relay: bool = True
    relay_linger_s: float = 5.0
    max_relays: int = 0
    key_prefix: str = "gw:"
    pipe_dir: str = ""  # "": no frame pipe; a directory shared by this machine's nodes


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
    auth: AuthSettings = field(default_factory=AuthSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)


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
    check(0 <= s.drain_timeout_s <= 3600, "server.drain_timeout_s", "must be 0-3600")
    check(s.max_viewers >= 0, "server.max_viewers", "must not be negative (0: no cap)")
    check(0 <= s.workers <= 256, "server.workers", "must be 0 (one per core) to 256")
    check(0 <= s.max_cpu <= 64, "server.max_cpu", "must be 0 (no cap) to 64 (cores)")
    check(
        0 <= s.max_egress_mbps <= 400_000,
        "server.max_egress_mbps",
        "must be 0 (no cap) to 400000",
    )
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
                    server.secret is not None
                    or (server.username is not None and server.credential is not None),
                    f"ice.servers[{i}]",
                    "a TURN server needs a secret (REST credentials) or username and credential",
                )
        if server.secret is not None:
            check(len(server.secret) >= 16, f"ice.servers[{i}].secret", "must be 16+ characters")
            check(
                server.username is None and server.credential is None,
                f"ice.servers[{i}]",
                "give either secret or username and credential, not both",
            )
        check(60 <= server.ttl_s <= 7 * 86400, f"ice.servers[{i}].ttl_s", "must be 60-604800")
    for i, address in enumerate(config.ice.addresses):
        check(_is_ip(address), f"ice.addresses[{i}]", f"{address!r} is not an IP address")
    if config.ice.announced_address is not None:
        check(
            _is_ip(config.ice.announced_address),
            "ice.announced_address",
            f"{config.ice.announced_address!r} is not an IP address",
        )
    check(config.ice.connect_timeout_s > 0, "ice.connect_timeout_s", "must be positive")
    check(
        config.ice.transport_policy in ("all", "relay"),
        "ice.transport_policy",
        f"must be all or relay, got {config.ice.transport_policy!r}",
    )
    if config.ice.transport_policy == "relay":
        # Relay-only with nothing to relay through: every session would time out.
        check(
            any(
                url.startswith(("turn:", "turns:"))
                for server in config.ice.servers
                for url in server.urls
            ),
            "ice.transport_policy",
            "relay needs a turn: server in ice.servers",
        )
    for i, proxy in enumerate(s.trusted_proxies):
        check(_is_network(proxy), f"server.trusted_proxies[{i}]", f"{proxy!r} is not an IP network")
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
    check(
        0 <= m.max_simulcast_layers <= 4,
        "media.max_simulcast_layers",
        "must be 0-4 (0 or 1: simulcast offers are received as one stream)",
    )
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
    check(
        0 <= config.rooms.publisher_grace_s <= 3600,
        "rooms.publisher_grace_s",
        "must be 0 (off) to 3600",
    )
    check(
        config.ingest.publisher_timeout_s == 0 or 1 <= config.ingest.publisher_timeout_s <= 300,
        "ingest.publisher_timeout_s",
        "must be 0 (off) or 1-300",
    )
    r = config.recording
    check(bool(r.directory.strip()), "recording.directory", "must not be empty")
    check(r.queue_frames >= 10, "recording.queue_frames", "must be at least 10")
    check(100 <= r.cluster_ms <= 5000, "recording.cluster_ms", "must be 100-5000")
    check(r.fsync_interval_s > 0, "recording.fsync_interval_s", "must be positive")
    check(r.max_concurrent >= 1, "recording.max_concurrent", "must be at least 1")
    check(r.max_file_bytes >= 0, "recording.max_file_bytes", "must not be negative (0: no cap)")
    check(r.max_duration_s >= 0, "recording.max_duration_s", "must not be negative (0: no cap)")
    check(r.min_free_bytes >= 0, "recording.min_free_bytes", "must not be negative")
    check(r.retention_days >= 0, "recording.retention_days", "must not be negative (0: keep)")
    check(
        r.retention_total_bytes >= 0,
        "recording.retention_total_bytes",
        "must not be negative (0: no cap)",
    )
    check(r.retention_check_s >= 1, "recording.retention_check_s", "must be at least 1")
    _validate_auth(config)
    _validate_limits(config.limits)
    _validate_cluster(config.cluster, config.server.workers)
    _validate_processing(config.processing)
    check(
        config.log.level.lower() in ("debug", "info", "warning", "error"),
        "log.level",
        f"must be debug, info, warning or error, got {config.log.level!r}",
    )


def _validate_auth(config: Config) -> None:
    # Imported here: the grant parser lives with the access policy.
    from .auth.grants import GrantError, parse_grants

    a = config.auth

    def check(ok: bool, key: str, message: str) -> None:
        if not ok:
            raise ConfigError(f"auth.{key}: {message}")

    seen: set[str] = set()
    for i, key in enumerate(a.keys):
        check(bool(key.key.strip()), f"keys[{i}].key", "must not be empty")
        check(key.key not in seen, f"keys[{i}].key", f"{key.key!r} is listed twice")
        seen.add(key.key)
        # HS256 with a short secret can be brute-forced offline from one token.
        check(len(key.secret) >= 32, f"keys[{i}].secret", "must be at least 32 characters")
    if a.enabled:
        check(bool(a.keys) or a.jwks is not None, "enabled", "needs keys or a jwks source")
        check(
            "*" not in config.server.cors_origins,
            "enabled",
            "with auth on, server.cors_origins must list origins, not '*'",
        )
    if a.jwks is not None:
        check(bool(a.jwks.strip()), "jwks", "must be a file path or an https:// URL")
        if "://" in a.jwks:
            # The host as a client will read it: "http://127.0.0.1.example" is not loopback.
            url = urlsplit(a.jwks)
            check(
                url.scheme == "https"
                or (url.scheme == "http" and is_loopback_host(url.hostname or "")),
                "jwks",
                "a JWKS URL must be https:// (or http on loopback)",
            )
    check(a.jwks_refresh_s >= 10, "jwks_refresh_s", "must be at least 10")
    check(0 <= a.leeway_s <= 300, "leeway_s", "must be 0-300")
    check(512 <= a.max_token_bytes <= 65536, "max_token_bytes", "must be 512-65536")
    check(
        a.duplicate_identity in ("replace", "refuse"),
        "duplicate_identity",
        f"must be replace or refuse, got {a.duplicate_identity!r}",
    )
    check(10 <= a.signed_url_ttl_s <= 86400, "signed_url_ttl_s", "must be 10-86400")
    if a.url_signing_secret is not None:
        check(len(a.url_signing_secret) >= 32, "url_signing_secret", "must be 32+ characters")
    check(a.ws_auth_timeout_s > 0, "ws_auth_timeout_s", "must be positive")
    for i, name in enumerate(a.default_pipelines):
        check(bool(name), f"default_pipelines[{i}]", "must not be empty")
    if a.anonymous is not None:
        try:
            parse_grants(a.anonymous, lenient_defaults=False)
        except GrantError as exc:
            raise ConfigError(f"auth.anonymous: {exc}") from exc


NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _validate_cluster(c: ClusterSettings, workers: int = 1) -> None:
    def check(ok: bool, key: str, message: str) -> None:
        if not ok:
            raise ConfigError(f"cluster.{key}: {message}")

    check(
        not c.pipe_dir or (c.pipe_dir.startswith("/") and len(c.pipe_dir) <= 80),
        "pipe_dir",
        "an absolute directory path of at most 80 characters (it holds Unix sockets)",
    )
    if not c.redis_url:
        return
    check(
        urlsplit(c.redis_url).scheme in ("redis", "rediss", "unix"),
        "redis_url",
        "must be a redis://, rediss:// or unix:// URL",
    )
    url = urlsplit(c.advertise_url)
    check(
        workers != 1  # each worker advertises its own loopback URL
        or (url.scheme in ("http", "https") and bool(url.hostname) and url.path in ("", "/")),
        "advertise_url",
        "a cluster node needs the http(s)://host:port other nodes reach it at",
    )
    check(
        not c.node_id or bool(NODE_ID.fullmatch(c.node_id)), "node_id", "1-64 of A-Z a-z 0-9 _ . -"
    )
    check(0.2 <= c.heartbeat_s <= 60, "heartbeat_s", "must be 0.2-60")
    check(c.node_ttl_s >= 2 * c.heartbeat_s, "node_ttl_s", "must be at least twice heartbeat_s")
    check(0 <= c.relay_linger_s <= 600, "relay_linger_s", "must be 0-600")
    check(c.max_relays >= 0, "max_relays", "must not be negative (0: no cap)")
    check(
        bool(re.fullmatch(r"[A-Za-z0-9:_.-]{1,32}", c.key_prefix)),
        "key_prefix",
        "1-32 plain characters",
    )


def _validate_limits(limits: LimitSettings) -> None:
    for item in dataclasses.fields(limits):
        value = getattr(limits, item.name)
        if value <= 0:
            raise ConfigError(f"limits.{item.name}: must be positive, got {value}")


def check_exposure(config: Config) -> None:
    """Refuse to serve a network without authentication unless that is explicitly wanted."""
    if config.auth.enabled or config.auth.allow_anonymous or is_loopback_host(config.server.host):
        return
    raise ConfigError(
        f"server.host: {config.server.host} serves the network with auth off, so anyone "
        "reaching it may publish, watch, record and delete; turn auth on (auth.enabled, "
        "auth.keys) or set auth.allow_anonymous: true"
    )


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _validate_processing(p: ProcessingSettings) -> None:
    # Imported here: building pipelines loads processors (and plug-ins); the rest of the
    # configuration does not need them.
    from processors.assets import Assets
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
    if p.assets_dir is not None:
        check(bool(p.assets_dir.strip()), "assets_dir", "must be a directory path or null")
    for i, ladder in enumerate(p.ladders):
        where = f"ladders[{i}]"
        check(bool(ladder.room), f"{where}.room", "must be a room name pattern")
        check(
            1 <= len(ladder.rungs) <= MAX_RUNGS, f"{where}.rungs", f"must have 1-{MAX_RUNGS} rungs"
        )
        heights = [rung.height for rung in ladder.rungs]
        check(len(set(heights)) == len(heights), f"{where}.rungs", "two rungs of one height")
        for j, rung in enumerate(ladder.rungs):
            check(
                MIN_RUNG_HEIGHT <= rung.height <= MAX_RUNG_HEIGHT and rung.height % 2 == 0,
                f"{where}.rungs[{j}].height",
                f"must be even, {MIN_RUNG_HEIGHT}-{MAX_RUNG_HEIGHT}",
            )
            check(
                50 <= rung.bitrate_kbps <= 20000,
                f"{where}.rungs[{j}].bitrate_kbps",
                "must be 50-20000",
            )
    # Not deferred: a watermark's image is read and decoded now, so a bad one stops the start.
    registry = ProcessorRegistry(assets=Assets(p.assets_dir))
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


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


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
