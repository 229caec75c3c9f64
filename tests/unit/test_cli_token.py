"""`webrtc-gateway token`: tokens minted from config.yaml's keys, as the gateway reads them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest

from gateway import cli_token
from gateway.__main__ import main as gateway_main
from gateway.auth.tokens import TokenVerifier
from gateway.config import load

KEY, SECRET = "APIcli", "c" * 40


@pytest.fixture(autouse=True)
def no_gateway_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command reads GATEWAY_* variables too; the test's own environment must not count."""
    for name in list(os.environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"auth:\n  keys:\n    - {{key: {KEY}, secret: '{SECRET}'}}\n"
        f"    - {{key: other, secret: '{'o' * 32}'}}\n"
    )
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    code = cli_token.main(list(argv))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def decoded(token: str, secret: str = SECRET, **options: Any) -> dict[str, Any]:
    return jwt.decode(token, secret, algorithms=["HS256"], **options)


def test_token_for_a_publisher_of_a_room_pattern(
    capsys: pytest.CaptureFixture[str], config_file: Path
) -> None:
    code, out, err = run(
        capsys,
        *("--config", str(config_file), "--identity", "alice", "--room", "a*"),
        *("--publish", "--ttl", "1h"),
    )
    assert (code, err) == (0, "")
    (token,) = out
    claims = decoded(token)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert (claims["iss"], claims["sub"]) == (KEY, "alice")
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["nbf"] == claims["iat"]
    assert "name" not in claims and "aud" not in claims
    assert claims["video"] == {
        "room": "a*",
        "roomJoin": True,
        "canPublish": True,
        "canSubscribe": False,
        "canPublishData": False,
        "roomRecord": False,
        "roomAdmin": False,
        "roomList": False,
    }


async def test_the_gateway_accepts_what_the_command_mints(
    capsys: pytest.CaptureFixture[str], config_file: Path
) -> None:
    code, (token,), _ = run(
        capsys,
        *("--config", str(config_file), "--identity", "bob", "--name", "Bob B"),
        *("--room", "class-*", "--subscribe", "--data", "--sources", "camera,screen_share"),
        *("--pipelines", "gray, edges"),
    )
    assert code == 0
    settings = load(config_file, environ={}).auth
    principal = await TokenVerifier(settings).verify(token)
    assert (principal.identity, principal.name, principal.key) == ("bob", "Bob B", KEY)
    grants = principal.grants
    assert grants.covers("class-7") and not grants.covers("staff")
    assert grants.room_join and grants.can_subscribe and grants.can_publish_data
    assert not grants.can_publish  # written as false: not LiveKit's lenient default
    assert grants.sources == ("camera", "screen")
    assert grants.pipelines == ("gray", "edges")
    assert decoded(token)["video"]["canPublishSources"] == ["camera", "screen_share"]


@pytest.mark.parametrize(
    ("ttl", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("7d", 604800)]
)
def test_ttl_units(
    capsys: pytest.CaptureFixture[str], config_file: Path, ttl: str, seconds: int
) -> None:
    code, (token,), _ = run(capsys, "--config", str(config_file), "--identity", "a", "--ttl", ttl)
    assert code == 0
    claims = decoded(token)
    assert claims["exp"] - claims["iat"] == seconds


def test_default_ttl_is_an_hour(capsys: pytest.CaptureFixture[str], config_file: Path) -> None:
    _, (token,), _ = run(capsys, "--config", str(config_file), "--identity", "a", "--list")
    claims = decoded(token)
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["video"]["roomList"] is True
    assert claims["video"]["roomJoin"] is False
    assert "room" not in claims["video"]


def test_admin_record_and_room_admin_grants(
    capsys: pytest.CaptureFixture[str], config_file: Path
) -> None:
    _, (token,), _ = run(
        capsys,
        *("--config", str(config_file), "--identity", "ops", "--room", "demo"),
        *("--record", "--room-admin", "--admin"),
    )
    video = decoded(token)["video"]
    assert (video["admin"], video["roomRecord"], video["roomAdmin"]) == (True, True, True)
    assert video["roomJoin"] is False  # none of publish/subscribe/data asked for


def test_key_chooses_the_signing_key(capsys: pytest.CaptureFixture[str], config_file: Path) -> None:
    _, (token,), _ = run(capsys, "--config", str(config_file), "--identity", "a", "--key", "other")
    assert decoded(token, "o" * 32)["iss"] == "other"
    with pytest.raises(jwt.InvalidSignatureError):
        decoded(token)


def test_audience_from_the_config(capsys: pytest.CaptureFixture[str], config_file: Path) -> None:
    config_file.write_text(config_file.read_text() + "  audience: gw-eu\n")
    _, (token,), _ = run(capsys, "--config", str(config_file), "--identity", "a")
    assert decoded(token, audience="gw-eu")["aud"] == "gw-eu"


def test_url_prints_a_link_with_the_token(
    capsys: pytest.CaptureFixture[str], config_file: Path
) -> None:
    code, (token, link), _ = run(
        capsys,
        *("--config", str(config_file), "--identity", "alice", "--room", "demo"),
        *("--publish", "--url", "http://127.0.0.1:8080/room.html"),
    )
    assert code == 0
    parts = urlsplit(link)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "http://127.0.0.1:8080/room.html"
    assert parts.query.startswith("token=")
    assert parse_qs(parts.query) == {"token": [token], "room": ["demo"]}


def test_url_with_a_pattern_has_no_room_and_keeps_its_query(
    capsys: pytest.CaptureFixture[str], config_file: Path
) -> None:
    _, (token, link), _ = run(
        capsys,
        *("--config", str(config_file), "--identity", "alice", "--room", "a*"),
        *("--subscribe", "--url", "https://gw.example/watch.html?view=grid"),
    )
    assert link.startswith("https://gw.example/watch.html?view=grid&token=")
    assert parse_qs(urlsplit(link).query) == {"view": ["grid"], "token": [token]}


def test_the_gateway_command_dispatches_to_token(
    capsys: pytest.CaptureFixture[str], config_file: Path
) -> None:
    assert gateway_main(["token", "--config", str(config_file), "--identity", "carol"]) == 0
    (token,) = capsys.readouterr().out.splitlines()
    assert decoded(token)["sub"] == "carol"


# --- bad input ------------------------------------------------------------------------------


def test_no_keys_configured(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("auth: {enabled: false}\n")
    code, out, err = run(capsys, "--config", str(empty), "--identity", "a")
    assert (code, out) == (2, [])
    assert err == "token: auth.keys: no HS256 key configured to sign tokens with\n"
    # The embedded defaults have no key either.
    assert run(capsys, "--identity", "a")[0] == 2


def test_unknown_key(capsys: pytest.CaptureFixture[str], config_file: Path) -> None:
    code, out, err = run(capsys, "--config", str(config_file), "--identity", "a", "--key", "nope")
    assert (code, out) == (2, [])
    assert "no key 'nope'" in err and KEY in err


@pytest.mark.parametrize("ttl", ["forever", "0", "-5", "1w", "h", "1.5.5h", ""])
def test_bad_ttl(capsys: pytest.CaptureFixture[str], config_file: Path, ttl: str) -> None:
    with pytest.raises(SystemExit) as info:
        cli_token.main(["--config", str(config_file), "--identity", "a", "--ttl", ttl])
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "is not a duration like 30m, 1h or 7d" in err


@pytest.mark.parametrize("flag", ["--publish", "--subscribe", "--data", "--record", "--room-admin"])
def test_room_is_needed(capsys: pytest.CaptureFixture[str], config_file: Path, flag: str) -> None:
    code, out, err = run(capsys, "--config", str(config_file), "--identity", "a", flag)
    assert (code, out) == (2, [])
    assert "--room is needed" in err


def test_unknown_source(capsys: pytest.CaptureFixture[str], config_file: Path) -> None:
    code, out, err = run(
        capsys,
        *("--config", str(config_file), "--identity", "a", "--room", "r"),
        *("--publish", "--sources", "camera,webcam"),
    )
    assert (code, out) == (2, [])
    assert err.startswith("token: unknown source(s) ['webcam']")


def test_identity_is_required(capsys: pytest.CaptureFixture[str], config_file: Path) -> None:
    with pytest.raises(SystemExit) as info:
        cli_token.main(["--config", str(config_file)])
    assert info.value.code == 2
    assert "--identity" in capsys.readouterr().err


def test_missing_config_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "--config", str(tmp_path / "absent.yaml"), "--identity", "a")
    assert (code, out) == (2, [])
    assert err.startswith("token: cannot read config file")


def test_duration_parser() -> None:
    assert cli_token.duration(" 1.5h ") == 5400.0
    assert cli_token.duration("45") == 45.0


@pytest.mark.parametrize(("identity", "why"), [("anonymous", "is reserved"), ("a\nb", "printable")])
def test_identities_the_gateway_would_refuse(
    capsys: pytest.CaptureFixture[str], config_file: Path, identity: str, why: str
) -> None:
    code, out, err = run(capsys, "--config", str(config_file), "--identity", identity)
    assert (code, out) == (2, [])
    assert why in err


def test_a_ttl_under_a_second_is_refused(
    capsys: pytest.CaptureFixture[str], config_file: Path
) -> None:
    with pytest.raises(SystemExit) as info:
        cli_token.main(["--config", str(config_file), "--identity", "a", "--ttl", "0.4"])
    assert info.value.code == 2
