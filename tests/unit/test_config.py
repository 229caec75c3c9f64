"""Settings: defaults, config.yaml, GATEWAY_* overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import Config, ConfigError, IceServer, load

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str | None = None, **environ: str) -> str:
    path = write(tmp_path, text) if text is not None else None
    with pytest.raises(ConfigError) as info:
        load(path, environ=environ)
    return str(info.value)


def test_defaults_without_a_file() -> None:
    config = load(None, environ={})
    assert config == Config()
    assert config.server.host == "127.0.0.1"
    assert config.server.port == 8080
    assert config.ice.servers == []
    assert config.media.video_codecs == ["VP8", "H264"]
    assert config.media.keyframe_request_interval_ms == 500


def test_shipped_config_yaml_equals_the_defaults() -> None:
    assert load(REPO / "config.yaml", environ={}) == Config()


def test_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    assert load(write(tmp_path, "# nothing\n"), environ={}) == Config()


def test_file_values_override_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
server: {port: 9443, cors_origins: ["https://a.example"]}
ice:
  servers:
    - urls: ["stun:stun.example.org:3478"]
    - urls: ["turn:turn.example.org:3478?transport=udp"]
      username: gw
      credential: secret
  addresses: [10.0.0.5, "::1"]
  announced_address: 203.0.113.7
  connect_timeout_s: 5
media: {video_codecs: [H264], keyframe_request_interval_ms: 0}
log: {level: DEBUG}
""",
    )
    config = load(path, environ={})
    assert config.server.port == 9443
    assert config.server.host == "127.0.0.1"  # untouched keys keep their defaults
    assert config.server.cors_origins == ["https://a.example"]
    assert config.ice.servers == [
        IceServer(urls=["stun:stun.example.org:3478"]),
        IceServer(
            urls=["turn:turn.example.org:3478?transport=udp"], username="gw", credential="secret"
        ),
    ]
    assert config.ice.addresses == ["10.0.0.5", "::1"]
    assert config.ice.announced_address == "203.0.113.7"
    assert config.ice.connect_timeout_s == 5.0
    assert isinstance(config.ice.connect_timeout_s, float)
    assert config.media.video_codecs == ["H264"]
    assert config.media.audio_codecs == ["opus"]
    assert config.media.keyframe_request_interval_ms == 0
    assert config.log.level == "DEBUG"


# --- environment overrides ------------------------------------------------------------------


def test_env_overrides_the_port() -> None:
    assert load(None, environ={"GATEWAY_SERVER_PORT": "9000"}).server.port == 9000


def test_env_list_value_is_read_as_yaml() -> None:
    config = load(None, environ={"GATEWAY_ICE_ADDRESSES": "[127.0.0.1]"})
    assert config.ice.addresses == ["127.0.0.1"]


def test_env_key_with_underscores() -> None:
    config = load(None, environ={"GATEWAY_SERVER_MAX_BODY_BYTES": "2048"})
    assert config.server.max_body_bytes == 2048


def test_env_wins_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "server: {port: 7000, host: 0.0.0.0}\n")
    config = load(path, environ={"GATEWAY_SERVER_PORT": "7001"})
    assert config.server.port == 7001
    assert config.server.host == "0.0.0.0"


def test_env_null_clears_an_optional_setting(tmp_path: Path) -> None:
    path = write(tmp_path, "ice: {announced_address: 203.0.113.7}\n")
    assert (
        load(path, environ={"GATEWAY_ICE_ANNOUNCED_ADDRESS": "null"}).ice.announced_address is None
    )
    assert load(path, environ={"GATEWAY_ICE_ANNOUNCED_ADDRESS": ""}).ice.announced_address is None


def test_env_ice_servers_as_yaml_flow() -> None:
    value = "[{urls: ['turn:t.example:3478'], username: u, credential: c}]"
    config = load(None, environ={"GATEWAY_ICE_SERVERS": value})
    assert config.ice.servers == [IceServer(["turn:t.example:3478"], "u", "c")]


def test_unrelated_env_vars_are_ignored() -> None:
    assert load(None, environ={"PATH": "/bin", "GATEWAYX": "1", "HOME": "/"}) == Config()


def test_process_environment_is_read_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_ROOMS_MAX_ROOMS", "3")
    assert load(None).rooms.max_rooms == 3


# --- errors name the key --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "detail"),
    [
        ("server: {prot: 80}\n", "server.prot", "unknown setting"),
        ("serve: {port: 80}\n", "serve", "unknown setting"),
        ("server: {port: '80'}\n", "server.port", "expected an integer"),
        ("server: {port: 8.5}\n", "server.port", "expected an integer"),
        ("server: {port: true}\n", "server.port", "expected an integer"),
        ("server: {port: 0}\n", "server.port", "1-65535"),
        ("server: {port: 65536}\n", "server.port", "1-65535"),
        ("server: {max_body_bytes: 10}\n", "server.max_body_bytes", "at least 1024"),
        ("server: {host: 8080}\n", "server.host", "expected a string"),
        ("server: {cors_origins: '*'}\n", "server.cors_origins", "expected a list"),
        ("server: [1, 2]\n", "server", "expected a mapping"),
        ("server:\n", "server", "expected a mapping"),
        ("ice: {addresses: [10.0.0.300]}\n", "ice.addresses[0]", "not an IP address"),
        ("ice: {addresses: [127.0.0.1, eth0]}\n", "ice.addresses[1]", "not an IP address"),
        ("ice: {announced_address: example.com}\n", "ice.announced_address", "not an IP"),
        ("ice: {connect_timeout_s: 0}\n", "ice.connect_timeout_s", "positive"),
        ("ice: {connect_timeout_s: soon}\n", "ice.connect_timeout_s", "expected a number"),
        ("ice: {servers: [{urls: []}]}\n", "ice.servers[0].urls", "at least one URL"),
        ("ice: {servers: [{urls: [http://x]}]}\n", "ice.servers[0].urls", "not a stun:"),
        ("ice: {servers: [{urls: [stun:x], port: 1}]}\n", "ice.servers[0].port", "unknown"),
        ("ice: {servers: [{username: u}]}\n", "ice.servers[0]", "urls"),
        ("ice: {servers: [{urls: 'stun:x'}]}\n", "ice.servers[0].urls", "expected a list"),
        ("ice: {servers: [{urls: [turn:t]}]}\n", "ice.servers[0]", "username and credential"),
        (
            "ice: {servers: [{urls: [stun:s]}, {urls: [turns:t], username: u}]}\n",
            "ice.servers[1]",
            "username and credential",
        ),
        ("media: {video_codecs: [VP9]}\n", "media.video_codecs", "'VP9' is not one of"),
        ("media: {video_codecs: [vp8]}\n", "media.video_codecs", "'vp8' is not one of"),
        ("media: {video_codecs: []}\n", "media.video_codecs", "at least one codec"),
        ("media: {audio_codecs: [PCMU]}\n", "media.audio_codecs", "'PCMU' is not one of"),
        (
            "media: {keyframe_request_interval_ms: -1}\n",
            "media.keyframe_request_interval_ms",
            "negative",
        ),
        ("media: {viewer_backlog_bytes: 1000}\n", "media.viewer_backlog_bytes", "at least 1500"),
        ("media: {video_queue_frames: 10}\n", "media.video_queue_frames", "unknown setting"),
        ("rooms: {max_subscribers: 0}\n", "rooms.max_subscribers", "at least 1"),
        ("rooms: {max_rooms: -5}\n", "rooms.max_rooms", "at least 1"),
        ("log: {level: verbose}\n", "log.level", "debug, info, warning or error"),
    ],
)
def test_bad_value_names_the_key(tmp_path: Path, text: str, key: str, detail: str) -> None:
    message = error_of(tmp_path, text)
    assert message.startswith(f"{key}:") or message.startswith(f"{key} "), message
    assert detail in message


def test_unknown_env_section_is_an_error() -> None:
    with pytest.raises(ConfigError, match="GATEWAY_FOO: no such setting"):
        load(None, environ={"GATEWAY_FOO": "1"})


def test_unknown_env_key_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"GATEWAY_SERVER_PROT: no setting server\.prot"):
        load(None, environ={"GATEWAY_SERVER_PROT": "1"})


def test_env_section_without_key_is_an_error() -> None:
    with pytest.raises(ConfigError, match="GATEWAY_SERVER: no such setting"):
        load(None, environ={"GATEWAY_SERVER": "1"})


def test_env_bad_value_names_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"^server\.port: must be 1-65535, got 70000"):
        load(None, environ={"GATEWAY_SERVER_PORT": "70000"})
    with pytest.raises(ConfigError, match=r"^server\.port: expected an integer"):
        load(None, environ={"GATEWAY_SERVER_PORT": "eighty"})
    with pytest.raises(ConfigError, match=r"^ice\.addresses\[0\]: '999\.1\.1\.1' is not an IP"):
        load(None, environ={"GATEWAY_ICE_ADDRESSES": "[999.1.1.1]"})


def test_env_unparseable_yaml_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="GATEWAY_ICE_ADDRESSES: cannot parse"):
        load(None, environ={"GATEWAY_ICE_ADDRESSES": "[127.0.0.1"})


def test_env_into_a_section_that_is_not_a_mapping(tmp_path: Path) -> None:
    message = error_of(tmp_path, "server: 3\n", GATEWAY_SERVER_PORT="9000")
    assert message.startswith("server:")


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    message = error_of(tmp_path, "server: {port: 80\n")
    assert "config.yaml is not valid YAML" in message


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    message = error_of(tmp_path, "- server\n- ice\n")
    assert "the top level must be a mapping" in message
    assert "config.yaml" in message


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError, match=r"cannot read config file .*absent\.yaml"):
        load(path, environ={})


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_processing_pipelines_from_yaml(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "processing:\n  pipelines:\n    soft: [{blur: {radius: 8}}, timestamp]\n"
        "  video_bitrate_kbps: 800\n",
    )
    config = load(path, environ={})
    assert config.processing.pipelines == {"soft": [{"blur": {"radius": 8}}, "timestamp"]}
    assert config.processing.video_bitrate_kbps == 800


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("processing:\n  pipelines:\n    x: [nope]\n", "processing.pipelines.x"),
        ("processing:\n  pipelines:\n    x: [nope]\n", "unknown processor 'nope'"),
        ("processing:\n  pipelines:\n    x: [{blur: {radius: 999}}]\n", "radius"),
        ("processing:\n  pipelines:\n    x: [grayscale, gain]\n", "mixes video and audio"),
        ("processing:\n  pipelines:\n    x: grayscale\n", "a pipeline is a list"),
        ("processing:\n  pipelines:\n    'bad name': [grayscale]\n", "pipeline name"),
        ("processing:\n  pipelines: [gray]\n", "processing.pipelines: expected a mapping"),
        ("processing:\n  pipelines:\n    x: ['no.such.module:Thing']\n", "cannot import"),
        ("processing:\n  encoder_threads: 0\n", "processing.encoder_threads"),
        ("processing:\n  queue_frames: 1\n", "processing.queue_frames"),
    ],
)
def test_bad_pipelines_are_refused_at_load(tmp_path: Path, yaml_text: str, expected: str) -> None:
    assert expected in error_of(tmp_path, yaml_text)


def test_pipelines_from_the_environment() -> None:
    config = load(None, environ={"GATEWAY_PROCESSING_PIPELINES": "{only: [edges]}"})
    assert config.processing.pipelines == {"only": ["edges"]}
