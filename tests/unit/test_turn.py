"""TURN REST credentials (coturn's use-auth-secret) and which clients get which ICE servers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time

import pytest

from gateway.auth.grants import Grants
from gateway.auth.principal import ANONYMOUS, OPEN, Principal
from gateway.config import IceServer, IceSettings
from gateway.signaling.ice import client_ice_servers, link_headers, rtc_configuration
from gateway.signaling.turn import rest_credentials

SECRET = "turn-shared-secret-0123"


def expected_password(secret: str, username: str) -> str:
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


# --- rest_credentials -----------------------------------------------------------------------


def test_username_is_expiry_and_identity() -> None:
    username, password = rest_credentials(SECRET, "alice", 3600, now=1_700_000_000)
    assert username == "1700003600:alice"
    assert password == expected_password(SECRET, "1700003600:alice")


def test_known_answer() -> None:
    # Computed once by hand: base64(HMAC-SHA1("secret", "1000:user")).
    digest = hmac.new(b"secret", b"1000:user", hashlib.sha1).digest()
    assert rest_credentials("secret", "user", 400, now=600) == (
        "1000:user",
        base64.b64encode(digest).decode(),
    )
    assert len(base64.b64decode(rest_credentials("secret", "user", 400, now=600)[1])) == 20


def test_fractional_times_are_whole_seconds() -> None:
    assert rest_credentials(SECRET, "a", 60, now=1000.9)[0] == "1060:a"
    assert rest_credentials(SECRET, "a", 60.7, now=1000)[0] == "1060:a"  # type: ignore[arg-type]


def test_expiry_follows_the_clock_by_default() -> None:
    before = int(time.time())
    username, _ = rest_credentials(SECRET, "alice", 600)
    after = int(time.time())
    expiry = int(username.split(":", 1)[0])
    assert before + 600 <= expiry <= after + 600


def test_other_secret_other_password() -> None:
    assert (
        rest_credentials(SECRET, "alice", 60, now=0)[1]
        != rest_credentials(SECRET + "x", "alice", 60, now=0)[1]
    )


@pytest.mark.parametrize(
    ("identity", "label"),
    [
        ("bob smith", "bob_smith"),
        ("a:b", "a_b"),  # coturn reads the expiry up to the first ':'
        ('x"; credential="y', "x___credential__y"),  # cannot break out of a Link header
        ("zoë", "zo_"),
        ("user@example.org", "user@example.org"),
        ("a.b-c_d", "a.b-c_d"),
        ("", "client"),
    ],
)
def test_unsafe_identity_characters_are_replaced(identity: str, label: str) -> None:
    username, password = rest_credentials(SECRET, identity, 60, now=1000)
    assert username == f"1060:{label}"
    assert password == expected_password(SECRET, username)


def test_identity_label_is_bounded() -> None:
    username, _ = rest_credentials(SECRET, "i" * 500, 60, now=1000)
    assert username == "1060:" + "i" * 64


# --- who gets which ICE servers -------------------------------------------------------------

STUN = IceServer(urls=["stun:stun.example.org:3478"])
REST_TURN = IceServer(
    urls=["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"],
    secret=SECRET,
    ttl_s=600,
)
STATIC_TURN = IceServer(urls=["turn:static.example.org:3478"], username="gw", credential="pw")
SETTINGS = IceSettings(servers=[STUN, REST_TURN, STATIC_TURN])

ALICE = Principal("alice", Grants(room="demo", room_join=True))
ANONYMOUS_VIEWER = Principal(ANONYMOUS, Grants(room="lobby", room_join=True), anonymous=True)


def check_rest_username(username: object, identity: str, ttl_s: int) -> None:
    assert isinstance(username, str)
    match = re.fullmatch(r"(\d+):(.+)", username)
    assert match is not None, username
    assert match.group(2) == identity
    assert abs(int(match.group(1)) - (time.time() + ttl_s)) < 5


def test_authenticated_client_gets_turn_credentials_of_its_own() -> None:
    servers = client_ice_servers(SETTINGS, ALICE)
    assert [s["urls"] for s in servers] == [STUN.urls, REST_TURN.urls, STATIC_TURN.urls]
    assert servers[0] == {"urls": STUN.urls}
    rest = servers[1]
    check_rest_username(rest["username"], "alice", 600)
    assert rest["credential"] == expected_password(SECRET, str(rest["username"]))
    assert servers[2] == {"urls": STATIC_TURN.urls, "username": "gw", "credential": "pw"}


def test_anonymous_client_gets_only_stun() -> None:
    assert client_ice_servers(SETTINGS, ANONYMOUS_VIEWER) == [{"urls": STUN.urls}]
    assert link_headers(SETTINGS, ANONYMOUS_VIEWER) == [
        '<stun:stun.example.org:3478>; rel="ice-server"'
    ]


def test_auth_off_everyone_gets_turn() -> None:
    servers = client_ice_servers(SETTINGS, OPEN)
    assert len(servers) == 3
    check_rest_username(servers[1]["username"], ANONYMOUS, 600)


def test_link_headers_carry_each_client_s_credentials() -> None:
    headers = link_headers(SETTINGS, ALICE)
    assert len(headers) == 4  # one per URL
    assert headers[0] == '<stun:stun.example.org:3478>; rel="ice-server"'
    pattern = re.compile(
        r'<(?P<url>[^>]+)>; rel="ice-server"; username="(?P<user>[^"]+)"; '
        r'credential="(?P<cred>[^"]+)"; credential-type="password"'
    )
    rest = [pattern.fullmatch(h) for h in headers[1:3]]
    assert all(m is not None for m in rest)
    assert [m.group("url") for m in rest if m] == REST_TURN.urls
    for m in rest:
        assert m is not None
        check_rest_username(m.group("user"), "alice", 600)
        assert m.group("cred") == expected_password(SECRET, m.group("user"))
    assert headers[3] == (
        '<turn:static.example.org:3478>; rel="ice-server"; username="gw"; '
        'credential="pw"; credential-type="password"'
    )


def test_an_identity_cannot_inject_into_the_link_header() -> None:
    sneaky = Principal('x", <turn:evil>; rel="ice-server', Grants())
    rest = link_headers(IceSettings(servers=[REST_TURN]), sneaky)[0]
    assert rest.count('"') == 8  # rel, username, credential, credential-type: nothing more
    assert "<turn:evil>" not in rest


def test_the_gateway_s_own_allocations_use_its_label() -> None:
    servers = rtc_configuration(SETTINGS).iceServers
    assert servers is not None
    (stun, rest, static) = servers
    assert (stun.username, stun.credential) == (None, None)
    check_rest_username(rest.username, "gateway", 600)
    assert rest.credential == expected_password(SECRET, str(rest.username))
    assert (static.username, static.credential) == ("gw", "pw")
