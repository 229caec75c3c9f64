"""The access policy: who may do what, for every action, with auth off and on."""

from __future__ import annotations

import time
from typing import Any

import pytest

from gateway.auth.grants import Grants, parse_grants
from gateway.auth.minting import mint
from gateway.auth.principal import ANONYMOUS, LOCAL, OPEN, Caller, Principal
from gateway.config import AuthKey, AuthSettings
from gateway.errors import GatewayError
from gateway.rooms.policy import ACTIONS, AccessPolicy, Request

KEY, SECRET = "testkey", "x" * 32
ROOM_ACTIONS = [a for a in ACTIONS if a not in ("list", "stats", "info")]


def secure(**changes: Any) -> AccessPolicy:
    values: dict[str, Any] = {"enabled": True, "keys": [AuthKey(KEY, SECRET)], **changes}
    return AccessPolicy(AuthSettings(**values))


def who(video: dict[str, Any] | None, identity: str = "alice", **fields: Any) -> Principal:
    """A principal with the grants a token with this ``video`` claim would give."""
    return Principal(identity, parse_grants(video), **fields)


def outcome(policy: AccessPolicy, request: Request) -> int:
    """200 when allowed, else the refusal's status."""
    try:
        policy.check(request)
    except GatewayError as exc:
        assert exc.status in (401, 403)
        assert exc.code in ("forbidden", "token-expired")
        return exc.status
    return 200


# --- auth off -------------------------------------------------------------------------------


async def test_auth_off_everyone_is_the_open_principal() -> None:
    policy = AccessPolicy()
    assert not policy.enabled
    assert await policy.authenticate(None) is OPEN
    assert await policy.authenticate("") is OPEN
    # Not even looked at: a garbage token cannot lock anyone out of a local gateway.
    assert await policy.authenticate("not.a.token") is OPEN
    assert LOCAL == Caller(OPEN, None)


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("transport", ["whip", "whep", "ws", "http"])
def test_auth_off_allows_everything(action: str, transport: str) -> None:
    policy = AccessPolicy()
    request = Request(action, "any-room", transport, source="screen", pipeline="x", owner="bob")
    assert outcome(policy, request) == 200
    assert policy.refused == 0


# --- authenticate ---------------------------------------------------------------------------


async def test_auth_on_without_a_token_needs_one() -> None:
    policy = secure()
    for missing in (None, ""):
        with pytest.raises(GatewayError) as info:
            await policy.authenticate(missing)
        assert (info.value.status, info.value.code) == (401, "token-required")


async def test_auth_on_verifies_the_token() -> None:
    policy = secure()
    token = mint(KEY, SECRET, "alice", {"room": "demo", "roomJoin": True})
    principal = await policy.authenticate(token)
    assert (principal.identity, principal.grants.room, principal.authenticated) == (
        "alice",
        "demo",
        True,
    )
    with pytest.raises(GatewayError) as info:
        await policy.authenticate(mint(KEY, "y" * 32, "alice", {}))
    assert (info.value.status, info.value.code) == (401, "invalid-token")
    assert policy.verifier.refused == 1


async def test_anonymous_grants_apply_without_a_token() -> None:
    policy = secure(anonymous={"room": "lobby", "roomJoin": True, "canSubscribe": True})
    principal = await policy.authenticate(None)
    assert principal.identity == ANONYMOUS
    assert principal.anonymous and not principal.authenticated
    # Only what config.yaml writes: no LiveKit defaults for anonymous clients.
    assert not principal.grants.can_publish and not principal.grants.can_publish_data
    assert outcome(policy, Request("subscribe", "lobby", "whep", principal)) == 200
    assert outcome(policy, Request("join", "lobby", "ws", principal)) == 200
    assert outcome(policy, Request("publish", "lobby", "whip", principal)) == 403
    assert outcome(policy, Request("data", "lobby", "ws", principal)) == 403
    assert outcome(policy, Request("subscribe", "vip", "whep", principal)) == 403
    assert outcome(policy, Request("list", None, "http", principal)) == 403
    # A token still counts for more than the anonymous grants.
    token = mint(KEY, SECRET, "alice", {"room": "vip", "roomJoin": True})
    assert (await policy.authenticate(token)).identity == "alice"


# --- the table ------------------------------------------------------------------------------

JOINER = {"room": "demo", "roomJoin": True}
CASES: list[tuple[str, dict[str, Any] | None, Request, int]] = [
    # admin: everything, every room, gateway-wide
    ("admin lists", {"admin": True}, Request("list", None, "http"), 200),
    ("admin stats", {"admin": True}, Request("stats", None, "http"), 200),
    ("admin records", {"admin": True}, Request("record", "x", "http"), 200),
    ("admin others' session", {"admin": True}, Request("session", "x", "whip", owner="bob"), 200),
    ("admin any action name", {"admin": True}, Request("frobnicate", "x", "http"), 200),
    # info: harmless, for anyone with any token
    ("info without grants", None, Request("info", None, "http"), 200),
    ("unknown action", JOINER, Request("frobnicate", "demo", "http"), 403),
    # list and stats
    ("list with roomList", {"roomList": True}, Request("list", None, "http"), 200),
    ("list without roomList", JOINER, Request("list", None, "http"), 403),
    ("stats with roomList", {"roomList": True}, Request("stats", None, "http"), 403),
    ("stats with roomAdmin", {"room": "*", "roomAdmin": True}, Request("stats", None, "http"), 403),
    # the room must be covered
    ("join own room", JOINER, Request("join", "demo", "ws"), 200),
    ("join another room", JOINER, Request("join", "demo2", "ws"), 403),
    ("join without a room", JOINER, Request("join", None, "ws"), 403),
    (
        "pattern covers",
        {"room": "class-*", "roomJoin": True},
        Request("join", "class-1", "ws"),
        200,
    ),
    ("pattern misses", {"room": "class-*", "roomJoin": True}, Request("join", "klass", "ws"), 403),
    ("no roomJoin", {"room": "demo"}, Request("join", "demo", "ws"), 403),
    ("watch needs roomJoin", {"room": "demo"}, Request("watch", "demo", "ws"), 403),
    ("watch", JOINER, Request("watch", "demo", "ws"), 200),
    # publish, subscribe, data: roomJoin plus LiveKit's can* grants
    ("publish", JOINER, Request("publish", "demo", "whip"), 200),
    ("publish refused", {**JOINER, "canPublish": False}, Request("publish", "demo", "whip"), 403),
    ("subscribe", JOINER, Request("subscribe", "demo", "whep"), 200),
    (
        "subscribe refused",
        {**JOINER, "canSubscribe": False},
        Request("subscribe", "demo", "whep"),
        403,
    ),
    ("data", JOINER, Request("data", "demo", "ws"), 200),
    ("data refused", {**JOINER, "canPublishData": False}, Request("data", "demo", "ws"), 403),
    ("publish without roomJoin", {"room": "demo"}, Request("publish", "demo", "whip"), 403),
    # publish sources
    (
        "camera allowed",
        {**JOINER, "canPublishSources": ["camera"]},
        Request("publish", "demo", "ws", source="camera"),
        200,
    ),
    (
        "screen refused",
        {**JOINER, "canPublishSources": ["camera"]},
        Request("publish", "demo", "ws", source="screen"),
        403,
    ),
    (
        "screen_share grant covers our screen",
        {**JOINER, "canPublishSources": ["screen_share"]},
        Request("publish", "demo", "ws", source="screen"),
        200,
    ),
    (
        "no source given",
        {**JOINER, "canPublishSources": ["camera"]},
        Request("publish", "demo", "whip"),
        200,
    ),
    ("any source by default", JOINER, Request("publish", "demo", "ws", source="screen"), 200),
    # pipelines (default_pipelines "*")
    ("pipeline by default", JOINER, Request("pipeline", "demo", "whep", pipeline="gray"), 200),
    (
        "pipeline listed",
        {**JOINER, "pipelines": ["gray"]},
        Request("pipeline", "demo", "whep", pipeline="gray"),
        200,
    ),
    (
        "pipeline not listed",
        {**JOINER, "pipelines": ["gray"]},
        Request("pipeline", "demo", "whep", pipeline="edges"),
        403,
    ),
    ("pipeline not named", JOINER, Request("pipeline", "demo", "whep"), 403),
    (
        "pipeline in another room",
        JOINER,
        Request("pipeline", "other", "whep", pipeline="gray"),
        403,
    ),
    # record: roomRecord on a covered room (roomJoin not needed)
    ("record", {"room": "demo", "roomRecord": True}, Request("record", "demo", "http"), 200),
    ("record without roomRecord", JOINER, Request("record", "demo", "http"), 403),
    (
        "record another room",
        {"room": "demo", "roomRecord": True},
        Request("record", "demo2", "http"),
        403,
    ),
    # control: roomAdmin
    ("control", {"room": "demo", "roomAdmin": True}, Request("control", "demo", "http"), 200),
    ("control as a joiner", JOINER, Request("control", "demo", "http"), 403),
    (
        "control with roomRecord",
        {"room": "demo", "roomRecord": True},
        Request("control", "demo", "http"),
        403,
    ),
    # room_admin joins and moderates without roomJoin
    (
        "room admin publishes",
        {"room": "demo", "roomAdmin": True},
        Request("publish", "demo", "whip"),
        200,
    ),
    (
        "room admin elsewhere",
        {"room": "demo", "roomAdmin": True},
        Request("publish", "other", "whip"),
        403,
    ),
    # sessions: their owner only (or a room admin)
    ("own session", JOINER, Request("session", "demo", "whip", owner="alice"), 200),
    ("another's session", JOINER, Request("session", "demo", "whip", owner="bob"), 403),
    ("session without owner", JOINER, Request("session", "demo", "whip"), 403),
    ("owner case matters", JOINER, Request("session", "demo", "whip", owner="Alice"), 403),
    (
        "room admin's others' session",
        {"room": "demo", "roomAdmin": True},
        Request("session", "demo", "whip", owner="bob"),
        200,
    ),
    (
        "own session in an uncovered room",
        JOINER,
        Request("session", "other", "whip", owner="alice"),
        403,
    ),
]


@pytest.mark.parametrize(
    ("video", "request_", "status"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_policy_table(video: dict[str, Any] | None, request_: Request, status: int) -> None:
    policy = secure()
    request_.principal = who(video)
    assert outcome(policy, request_) == status
    assert policy.refused == (0 if status == 200 else 1)


def test_refusals_say_who_and_what() -> None:
    policy = secure()
    with pytest.raises(GatewayError) as info:
        policy.check(Request("join", "vip", "ws", who(JOINER)))
    assert info.value.message == "alice has no grant for room 'vip'"
    viewer = who({**JOINER, "canPublish": False}, ANONYMOUS, anonymous=True)
    with pytest.raises(GatewayError) as info:
        policy.check(Request("publish", "demo", "ws", viewer))
    assert info.value.message == "an anonymous client may not publish in room 'demo'"
    with pytest.raises(GatewayError) as info:
        camera = who({**JOINER, "canPublishSources": ["camera"]})
        policy.check(Request("publish", "demo", "ws", camera, source="screen_share_audio"))
    assert info.value.message == "alice may not publish a 'screen_share_audio' track"


def test_anonymous_clients_share_one_identity_for_sessions() -> None:
    """What an anonymous client creates is protected by its unguessable id, not identity."""
    policy = secure(anonymous=JOINER)
    anonymous = Principal(ANONYMOUS, parse_grants(JOINER, lenient_defaults=False), anonymous=True)
    assert outcome(policy, Request("session", "demo", "whip", anonymous, owner=ANONYMOUS)) == 200
    assert outcome(policy, Request("session", "demo", "whip", anonymous, owner="alice")) == 403


def test_default_pipelines_narrow_what_an_unlisted_grant_may_use() -> None:
    policy = secure(default_pipelines=["gray", "clock"])
    principal = who(JOINER)
    assert outcome(policy, Request("pipeline", "demo", "whep", principal, pipeline="gray")) == 200
    assert outcome(policy, Request("pipeline", "demo", "whep", principal, pipeline="edges")) == 403
    # A grant's own list wins over the default.
    listed = who({**JOINER, "pipelines": ["edges"]})
    assert outcome(policy, Request("pipeline", "demo", "whep", listed, pipeline="edges")) == 200
    assert outcome(policy, Request("pipeline", "demo", "whep", listed, pipeline="gray")) == 403


# --- expiry ---------------------------------------------------------------------------------


@pytest.mark.parametrize("video", [JOINER, {"admin": True}])
def test_expired_principal_is_refused_with_401(video: dict[str, Any]) -> None:
    """A token that expires during a long session stops working, even an admin's."""
    policy = secure(leeway_s=30)
    expired = who(video, expires_at=time.time() - 60)
    with pytest.raises(GatewayError) as info:
        policy.check(Request("join", "demo", "ws", expired))
    assert (info.value.status, info.value.code) == (401, "token-expired")
    assert policy.refused == 1
    within_leeway = who(video, expires_at=time.time() - 5)
    policy.check(Request("join", "demo", "ws", within_leeway))
    assert policy.refused == 1


def test_principal_expiry_boundaries() -> None:
    principal = Principal("alice", Grants(), expires_at=1000.0)
    assert not principal.expired(now=1000.0)
    assert principal.expired(now=1000.5)
    assert not principal.expired(leeway_s=30, now=1030.0)
    assert principal.expired(leeway_s=30, now=1030.5)
    assert not Principal("alice", Grants()).expired(now=1e12)  # no exp: never


def test_refused_counter_counts_each_refusal() -> None:
    policy = secure()
    principal = who(JOINER)
    for room in ("a", "b", "c"):
        with pytest.raises(GatewayError):
            policy.check(Request("join", room, "ws", principal))
    policy.check(Request("join", "demo", "ws", principal))
    assert policy.refused == 3
