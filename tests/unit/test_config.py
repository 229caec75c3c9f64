"""Settings: defaults, config.yaml, GATEWAY_* overrides, and errors that name the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gateway.config import (
    AuthKey,
    Config,
    ConfigError,
    IceServer,
    LimitSettings,
    check_exposure,
    load,
)

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
        (
            "processing: {ladders: [{room: '*', rungs: []}]}\n",
            "processing.ladders[0].rungs",
            "1-4 rungs",
        ),
        (
            "processing: {ladders: [{room: '*', rungs: [{height: 181, bitrate_kbps: 100}]}]}\n",
            "processing.ladders[0].rungs[0].height",
            "even",
        ),
        (
            "processing: {ladders: [{room: '*', rungs: [{height: 180, bitrate_kbps: 5}]}]}\n",
            "processing.ladders[0].rungs[0].bitrate_kbps",
            "50-20000",
        ),
        (
            "processing: {ladders: [{room: '*', rungs: [{height: 180}]}]}\n",
            "processing.ladders[0].rungs[0]",
            "bitrate_kbps",
        ),
        (
            "processing: {ladders: [{room: '', rungs: [{height: 180, bitrate_kbps: 99}]}]}\n",
            "processing.ladders[0].room",
            "pattern",
        ),
        (
            "processing: {ladders: [{room: a, rungs: [{height: 180, bitrate_kbps: 99},"
            " {height: 180, bitrate_kbps: 80}]}]}\n",
            "processing.ladders[0].rungs",
            "two rungs of one height",
        ),
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


# --- auth, limits and the other security settings -------------------------------------------

SECRET32 = "k" * 32


def auth_yaml(**settings: str) -> str:
    body = ", ".join(f"{key}: {value}" for key, value in settings.items())
    return f"auth: {{{body}}}\n"


def test_auth_keys_and_grants_from_yaml(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
auth:
  enabled: true
  keys: [{{key: APIgateway1, secret: "{SECRET32}"}}, {{key: second, secret: "{"z" * 40}"}}]
  audience: gw
  anonymous: {{room: "public-*", roomJoin: true, canSubscribe: true}}
  default_pipelines: [gray, "small*"]
  duplicate_identity: refuse
limits: {{max_m_lines: 4, sessions_per_ip_per_s: 0.5}}
""",
    )
    config = load(path, environ={})
    assert config.auth.enabled
    assert config.auth.keys == [AuthKey("APIgateway1", SECRET32), AuthKey("second", "z" * 40)]
    assert config.auth.audience == "gw"
    assert config.auth.anonymous == {"room": "public-*", "roomJoin": True, "canSubscribe": True}
    assert config.auth.default_pipelines == ["gray", "small*"]
    assert config.auth.duplicate_identity == "refuse"
    assert config.limits.max_m_lines == 4
    assert config.limits.sessions_per_ip_per_s == 0.5


def test_auth_secret_of_32_characters_is_the_shortest(tmp_path: Path) -> None:
    ok = load(write(tmp_path, auth_yaml(keys=f"[{{key: k, secret: '{'s' * 32}'}}]")), environ={})
    assert ok.auth.keys[0].secret == "s" * 32
    message = error_of(tmp_path, auth_yaml(keys=f"[{{key: k, secret: '{'s' * 31}'}}]"))
    assert message == "auth.keys[0].secret: must be at least 32 characters"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            auth_yaml(keys=f"[{{key: a, secret: '{SECRET32}'}}, {{key: b, secret: short}}]"),
            "auth.keys[1].secret: must be at least 32 characters",
        ),
        (
            auth_yaml(keys=f"[{{key: a, secret: '{SECRET32}'}}, {{key: a, secret: '{SECRET32}'}}]"),
            "auth.keys[1].key: 'a' is listed twice",
        ),
        (auth_yaml(keys=f"[{{key: ' ', secret: '{SECRET32}'}}]"), "auth.keys[0].key: must not"),
        (auth_yaml(keys="[{key: a}]"), "auth.keys[0]: "),
        (auth_yaml(enabled="true"), "auth.enabled: needs keys or a jwks source"),
        (auth_yaml(enabled="yes please"), "auth.enabled: expected true or false"),
        (
            "server: {cors_origins: ['*']}\n"
            + auth_yaml(enabled="true", keys=f"[{{key: a, secret: '{SECRET32}'}}]"),
            "auth.enabled: with auth on, server.cors_origins must list origins, not '*'",
        ),
        (auth_yaml(duplicate_identity="kick"), "auth.duplicate_identity: must be replace or"),
        (auth_yaml(jwks="''"), "auth.jwks: must be a file path or an https:// URL"),
        (auth_yaml(jwks="http://idp.example/jwks"), "auth.jwks: a JWKS URL must be https://"),
        (auth_yaml(jwks_refresh_s="9"), "auth.jwks_refresh_s: must be at least 10"),
        (auth_yaml(leeway_s="-1"), "auth.leeway_s: must be 0-300"),
        (auth_yaml(leeway_s="301"), "auth.leeway_s: must be 0-300"),
        (auth_yaml(max_token_bytes="511"), "auth.max_token_bytes: must be 512-65536"),
        (auth_yaml(max_token_bytes="65537"), "auth.max_token_bytes: must be 512-65536"),
        (auth_yaml(signed_url_ttl_s="9"), "auth.signed_url_ttl_s: must be 10-86400"),
        (auth_yaml(signed_url_ttl_s="86401"), "auth.signed_url_ttl_s: must be 10-86400"),
        (auth_yaml(url_signing_secret="short"), "auth.url_signing_secret: must be 32+"),
        (auth_yaml(ws_auth_timeout_s="0"), "auth.ws_auth_timeout_s: must be positive"),
        (auth_yaml(default_pipelines="['']"), "auth.default_pipelines[0]: must not be empty"),
        (
            auth_yaml(anonymous="{roomJoin: 'yes'}"),
            "auth.anonymous: grant 'roomJoin' must be true or false",
        ),
        (auth_yaml(anonymous="{canWatch: true}"), "auth.anonymous: unknown grant 'canWatch'"),
        (auth_yaml(anonymous="[roomJoin]"), "auth.anonymous: expected a mapping"),
        (auth_yaml(tokens="[]"), "auth.tokens: unknown setting"),
    ],
)
def test_bad_auth_settings_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    assert error_of(tmp_path, text).startswith(expected)


@pytest.mark.parametrize("value", ["replace", "refuse"])
def test_duplicate_identity_values(tmp_path: Path, value: str) -> None:
    assert (
        load(
            write(tmp_path, auth_yaml(duplicate_identity=value)), environ={}
        ).auth.duplicate_identity
        == value
    )


def test_cors_wildcard_is_allowed_with_auth_off(tmp_path: Path) -> None:
    config = load(write(tmp_path, "server: {cors_origins: ['*']}\n"), environ={})
    assert config.server.cors_origins == ["*"]


def test_auth_on_with_only_a_jwks(tmp_path: Path) -> None:
    config = load(write(tmp_path, auth_yaml(enabled="true", jwks="/etc/idp/jwks.json")), environ={})
    assert (config.auth.enabled, config.auth.keys, config.auth.jwks) == (
        True,
        [],
        "/etc/idp/jwks.json",
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://idp.example/.well-known/jwks.json",
        "http://127.0.0.1:9000/jwks",
        "http://localhost:9000/jwks",
        "http://[::1]:9000/jwks",
    ],
)
def test_jwks_urls_that_are_accepted(tmp_path: Path, url: str) -> None:
    assert load(write(tmp_path, auth_yaml(jwks=f"'{url}'")), environ={}).auth.jwks == url


@pytest.mark.parametrize(
    "url",
    [
        "http://idp.example/jwks",
        "http://127.0.0.1.idp.example/jwks",  # a public host whose name starts like loopback
        "http://localhost.idp.example/jwks",
        "http://127.0.0.1@idp.example/jwks",  # 127.0.0.1 is only the user name here
        "ftp://idp.example/jwks",
    ],
)
def test_plain_http_jwks_urls_off_loopback_are_refused(tmp_path: Path, url: str) -> None:
    message = error_of(tmp_path, auth_yaml(jwks=f"'{url}'"))
    assert message == "auth.jwks: a JWKS URL must be https:// (or http on loopback)"


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(LimitSettings)])
@pytest.mark.parametrize("value", ["0", "-1"])
def test_every_limit_must_be_positive(tmp_path: Path, name: str, value: str) -> None:
    message = error_of(tmp_path, f"limits: {{{name}: {value}}}\n")
    assert message.startswith(f"limits.{name}: must be positive, got {value}")


def test_limits_of_the_wrong_type_name_the_key(tmp_path: Path) -> None:
    assert error_of(tmp_path, "limits: {max_m_lines: 2.5}\n").startswith(
        "limits.max_m_lines: expected an integer"
    )
    assert error_of(tmp_path, "limits: {max_m_lines: 1}\n", GATEWAY_LIMITS_TRACKED_CLIENTS="0") == (
        "limits.tracked_clients: must be positive, got 0"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "ice: {servers: [{urls: [turn:t], secret: short}]}\n",
            "ice.servers[0].secret: must be 16+ characters",
        ),
        (
            "ice: {servers: [{urls: [turn:t], secret: 0123456789abcdef, username: u}]}\n",
            "ice.servers[0]: give either secret or username and credential, not both",
        ),
        (
            "ice: {servers: [{urls: [turn:t], secret: 0123456789abcdef, ttl_s: 59}]}\n",
            "ice.servers[0].ttl_s: must be 60-604800",
        ),
        (
            "ice: {servers: [{urls: [turn:t], secret: 0123456789abcdef, ttl_s: 604801}]}\n",
            "ice.servers[0].ttl_s: must be 60-604800",
        ),
        ("ice: {transport_policy: none}\n", "ice.transport_policy: must be all or relay"),
        ("server: {trusted_proxies: [10.0.0.0/33]}\n", "server.trusted_proxies[0]: '10.0.0.0/33'"),
        ("processing: {assets_dir: ' '}\n", "processing.assets_dir: must be a directory path"),
        ("recording: {max_file_bytes: -1}\n", "recording.max_file_bytes: must not be negative"),
        ("recording: {max_concurrent: 0}\n", "recording.max_concurrent: must be at least 1"),
    ],
)
def test_bad_ice_and_other_security_settings(tmp_path: Path, text: str, expected: str) -> None:
    assert error_of(tmp_path, text).startswith(expected)


def test_turn_with_a_shared_secret(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "ice:\n  transport_policy: relay\n  servers: [{urls: [turn:t:3478], secret: 0123456789abcdef, ttl_s: 600}]\n",
    )
    config = load(path, environ={})
    assert config.ice.servers == [IceServer(["turn:t:3478"], secret="0123456789abcdef", ttl_s=600)]
    assert config.ice.transport_policy == "relay"


# --- check_exposure -------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "gateway.example"])
def test_network_host_with_auth_off_is_refused(host: str) -> None:
    config = load(None, environ={"GATEWAY_SERVER_HOST": f"'{host}'"})
    with pytest.raises(ConfigError) as info:
        check_exposure(config)
    message = str(info.value)
    assert message.startswith(f"server.host: {host} serves the network with auth off")
    assert "auth.allow_anonymous" in message


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_host_with_auth_off_is_allowed(host: str) -> None:
    check_exposure(load(None, environ={"GATEWAY_SERVER_HOST": f"'{host}'"}))


def test_network_host_allowed_with_allow_anonymous_or_auth_on() -> None:
    check_exposure(
        load(
            None, environ={"GATEWAY_SERVER_HOST": "0.0.0.0", "GATEWAY_AUTH_ALLOW_ANONYMOUS": "true"}
        )
    )
    check_exposure(
        load(
            None,
            environ={
                "GATEWAY_SERVER_HOST": "0.0.0.0",
                "GATEWAY_AUTH_ENABLED": "true",
                "GATEWAY_AUTH_KEYS": f"[{{key: k, secret: '{SECRET32}'}}]",
            },
        )
    )


# --- auth from the environment --------------------------------------------------------------


def test_auth_from_the_environment() -> None:
    config = load(
        None,
        environ={
            "GATEWAY_AUTH_ENABLED": "true",
            "GATEWAY_AUTH_KEYS": f"[{{key: env, secret: '{SECRET32}'}}]",
            "GATEWAY_AUTH_AUDIENCE": "gw",
            "GATEWAY_AUTH_ANONYMOUS": "{room: lobby, roomJoin: true}",
            "GATEWAY_AUTH_LEEWAY_S": "5",
            "GATEWAY_LIMITS_MAX_SOCKETS_PER_IP": "4",
        },
    )
    assert config.auth.enabled
    assert config.auth.keys == [AuthKey("env", SECRET32)]
    assert config.auth.audience == "gw"
    assert config.auth.anonymous == {"room": "lobby", "roomJoin": True}
    assert config.auth.leeway_s == 5.0
    assert config.limits.max_sockets_per_ip == 4


def test_auth_enabled_from_the_environment_still_needs_keys(tmp_path: Path) -> None:
    assert error_of(tmp_path, None, GATEWAY_AUTH_ENABLED="true") == (
        "auth.enabled: needs keys or a jwks source"
    )
    # A file's keys and the environment's switch combine.
    path = write(tmp_path, auth_yaml(keys=f"[{{key: k, secret: '{SECRET32}'}}]"))
    assert load(path, environ={"GATEWAY_AUTH_ENABLED": "true"}).auth.enabled
    assert error_of(tmp_path, None, GATEWAY_AUTH_ENABLED="maybe").startswith(
        "auth.enabled: expected true or false"
    )


CLUSTER = "cluster:\n  redis_url: redis://127.0.0.1:6379/0\n  advertise_url: http://10.0.0.5:8080\n"


def test_a_cluster_node_loads(tmp_path: Path) -> None:
    config = load(write(tmp_path, CLUSTER + "  node_id: edge-1\n"), environ={})
    assert config.cluster.node_id == "edge-1" and config.cluster.relay


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("  redis_url: http://127.0.0.1:6379\n", "cluster.redis_url"),
        ("  advertise_url: ''\n", "cluster.advertise_url"),
        ("  advertise_url: http://10.0.0.5:8080/gw\n", "cluster.advertise_url"),
        ("  node_id: 'a b'\n", "cluster.node_id"),
        ("  heartbeat_s: 0.1\n", "cluster.heartbeat_s"),
        ("  heartbeat_s: 5\n  node_ttl_s: 6\n", "cluster.node_ttl_s"),
        ("  relay_linger_s: -1\n", "cluster.relay_linger_s"),
        ("  key_prefix: 'a b'\n", "cluster.key_prefix"),
        ("  max_relays: -1\n", "cluster.max_relays"),
    ],
)
def test_cluster_settings_are_checked(tmp_path: Path, extra: str, key: str) -> None:
    text = CLUSTER  # a setting of ``extra`` replaces the same one of CLUSTER
    for line in extra.splitlines():
        name = line.split(":", 1)[0]
        text = "\n".join(x for x in text.splitlines() if x.split(":", 1)[0] != name) + "\n"
    assert error_of(tmp_path, text + extra).startswith(key)


def test_no_cluster_needs_no_redis(tmp_path: Path) -> None:
    assert load(write(tmp_path, "cluster:\n  advertise_url: nonsense\n"), environ={})


def test_a_negative_viewer_cap_is_refused(tmp_path: Path) -> None:
    assert error_of(tmp_path, "server:\n  max_viewers: -1\n").startswith("server.max_viewers")


def test_a_negative_egress_cap_is_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, "server:\n  max_egress_mbps: -1\n")
    assert message.startswith("server.max_egress_mbps")


def test_a_relative_or_long_pipe_dir_is_refused(tmp_path: Path) -> None:
    assert "pipe_dir" in error_of(tmp_path, "cluster:\n  pipe_dir: pipes\n")
    assert "pipe_dir" in error_of(tmp_path, f"cluster:\n  pipe_dir: /{'p' * 90}\n")
