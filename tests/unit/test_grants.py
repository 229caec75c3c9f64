"""Grants: LiveKit's ``video`` grant parsed strictly, rooms and patterns, sources, pipelines."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.auth.grants import (
    ALL,
    MAX_LIST,
    NONE,
    GrantError,
    Grants,
    grant_fields,
    parse_grants,
)

# --- parse_grants: strictness ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("video", "detail"),
    [
        ({"roomjoin": True}, "unknown grant 'roomjoin'"),
        ({"room_join": True}, "unknown grant 'room_join'"),
        ({"canPublish": True, "superuser": True}, "unknown grant 'superuser'"),
        ({"roomJoin": "true"}, "'roomJoin' must be true or false"),
        ({"roomJoin": 1}, "'roomJoin' must be true or false"),
        ({"admin": None}, "'admin' must be true or false"),
        ({"canPublish": 0}, "'canPublish' must be true or false"),
        ({"room": 5}, "'room' must be a string of at most 256 characters"),
        ({"room": ["demo"]}, "'room' must be a string"),
        ({"room": "r" * 257}, "at most 256 characters"),
        ({"canPublishSources": "camera"}, "'canPublishSources' must be a list"),
        ({"canPublishSources": [1]}, "'canPublishSources' must be a list"),
        ({"canPublishSources": [""]}, "'canPublishSources' must be a list"),
        ({"canPublishSources": ["webcam"]}, "unknown source(s) ['webcam']"),
        ({"canPublishSources": ["camera"] * (MAX_LIST + 1)}, f"at most {MAX_LIST} names"),
        ({"pipelines": "gray"}, "'pipelines' must be a list"),
        ({"pipelines": ["p" * 65]}, "'pipelines' must be a list"),
        ({"pipelines": [None]}, "'pipelines' must be a list"),
        ({"pipelines": ["gray"] * (MAX_LIST + 1)}, f"at most {MAX_LIST} names"),
        ("room=demo", "must be an object"),
        (["roomJoin"], "must be an object"),
        (True, "must be an object"),
    ],
)
def test_parse_grants_refuses(video: Any, detail: str) -> None:
    with pytest.raises(GrantError) as info:
        parse_grants(video)
    assert detail in str(info.value)


def test_grant_error_is_a_value_error() -> None:
    assert issubclass(GrantError, ValueError)


def test_longest_values_are_accepted() -> None:
    grants = parse_grants(
        {"room": "r" * 256, "pipelines": ["p" * 64] * MAX_LIST, "canPublishSources": ["camera"]}
    )
    assert grants.room == "r" * 256
    assert grants.pipelines == ("p" * 64,) * MAX_LIST
    assert grants.sources == ("camera",)


def test_livekit_keys_we_do_not_use_are_ignored() -> None:
    grants = parse_grants(
        {"roomJoin": True, "destinationRoom": "x", "agent": True, "canSubscribeMetrics": True}
    )
    assert grants == Grants(room_join=True)


def test_every_boolean_key_maps_to_its_field() -> None:
    pairs = {
        "roomJoin": "room_join",
        "roomList": "room_list",
        "roomRecord": "room_record",
        "roomAdmin": "room_admin",
        "roomCreate": "room_create",
        "hidden": "hidden",
        "recorder": "recorder",
        "canUpdateOwnMetadata": "can_update_metadata",
        "ingressAdmin": "ingress_admin",
        "admin": "admin",
    }
    for claim, name in pairs.items():
        grants = parse_grants({claim: True})
        assert getattr(grants, name) is True, claim
        others = [n for n in pairs.values() if n != name]
        assert not any(getattr(grants, n) for n in others), claim


def test_sources_are_mapped_to_ours() -> None:
    grants = parse_grants(
        {"canPublishSources": ["camera", "microphone", "screen_share", "screen_share_audio"]}
    )
    assert grants.sources == ("camera", "microphone", "screen", "screen-audio")
    assert parse_grants({"canPublishSources": ["screen", "screen-audio"]}).sources == (
        "screen",
        "screen-audio",
    )
    assert parse_grants({"canPublishSources": []}).sources == ()


# --- defaults -------------------------------------------------------------------------------


def test_lenient_defaults_allow_what_a_token_leaves_out() -> None:
    grants = parse_grants({"room": "demo"})
    assert (grants.can_publish, grants.can_subscribe, grants.can_publish_data) == (True,) * 3
    assert not (grants.room_join or grants.room_admin or grants.room_record or grants.admin)
    assert grants.sources is None and grants.pipelines is None


def test_strict_defaults_allow_only_what_is_written() -> None:
    grants = parse_grants({"room": "demo", "canSubscribe": True}, lenient_defaults=False)
    assert (grants.can_publish, grants.can_subscribe, grants.can_publish_data) == (
        False,
        True,
        False,
    )
    assert parse_grants({}, lenient_defaults=False) == NONE


def test_explicit_false_wins_over_the_lenient_default() -> None:
    grants = parse_grants({"canPublish": False, "canPublishData": False})
    assert (grants.can_publish, grants.can_subscribe, grants.can_publish_data) == (
        False,
        True,
        False,
    )


def test_no_grant_at_all_allows_nothing() -> None:
    assert parse_grants(None) == NONE
    assert parse_grants(None, lenient_defaults=True) == NONE
    assert not (NONE.can_publish or NONE.can_subscribe or NONE.can_publish_data)
    assert not NONE.covers("demo")


def test_an_empty_grant_is_livekit_s_defaults() -> None:
    assert parse_grants({}) == Grants()


# --- covers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "room", "covered"),
    [
        ("demo", "demo", True),
        ("demo", "demo2", False),
        ("demo", "Demo", False),
        ("demo", "de", False),
        ("a*", "abc", True),
        ("a*", "a", True),
        ("a*", "b", False),
        ("a*", "ba", False),
        ("class-?", "class-1", True),
        ("class-?", "class-12", False),
        ("[ab]c", "bc", True),
        ("[ab]c", "cc", False),
        ("*", "anything", True),
    ],
)
def test_covers_exact_names_and_patterns(pattern: str, room: str, covered: bool) -> None:
    assert Grants(room=pattern).covers(room) is covered


def test_no_room_covers_nothing_unless_admin() -> None:
    assert not Grants().covers("demo")
    assert not Grants(room="").covers("")
    assert Grants(admin=True).covers("demo")
    assert Grants(room="other", admin=True).covers("demo")
    assert ALL.covers("any-room")


# --- sources and pipelines ------------------------------------------------------------------


def test_may_publish_source() -> None:
    everything = parse_grants({})
    assert everything.may_publish_source("camera")
    assert everything.may_publish_source("whatever")  # None: every source
    screen_only = parse_grants({"canPublishSources": ["screen_share"]})
    assert screen_only.may_publish_source("screen")
    assert screen_only.may_publish_source("screen_share")
    assert not screen_only.may_publish_source("camera")
    assert not screen_only.may_publish_source("screen-audio")
    assert not screen_only.may_publish_source("screen_share_audio")
    assert not screen_only.may_publish_source("webcam")
    nothing = parse_grants({"canPublishSources": []})
    assert not nothing.may_publish_source("camera")


def test_may_use_pipeline_defaults_to_the_configured_list() -> None:
    unset = parse_grants({})
    assert unset.may_use_pipeline("gray", ("*",))
    assert unset.may_use_pipeline("gray", ("gray", "edges"))
    assert not unset.may_use_pipeline("blur", ("gray", "edges"))
    assert not unset.may_use_pipeline("gray", ())


def test_may_use_pipeline_from_the_grant() -> None:
    listed = parse_grants({"pipelines": ["gray", "small-*"]})
    assert listed.may_use_pipeline("gray", ())
    assert listed.may_use_pipeline("small-640", ())
    assert not listed.may_use_pipeline("grayer", ("*",))  # the grant wins over the default
    assert not listed.may_use_pipeline("edges", ("*",))
    assert not parse_grants({"pipelines": []}).may_use_pipeline("gray", ("*",))


# --- describe -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "grants",
    [
        ALL,
        NONE,
        Grants(),
        Grants(room="class-*", room_join=True, can_publish=False, sources=("camera", "screen")),
        Grants(room="demo", room_record=True, pipelines=("gray",), hidden=True),
    ],
)
def test_describe_round_trips(grants: Grants) -> None:
    described = grants.describe()
    assert parse_grants(described) == grants
    assert parse_grants(described, lenient_defaults=False) == grants  # every boolean written


def test_describe_spells_claims_as_tokens_do() -> None:
    described = Grants(room="demo", room_join=True, sources=("screen",)).describe()
    assert described["room"] == "demo"
    assert described["roomJoin"] is True
    assert described["canPublish"] is True
    assert described["canPublishSources"] == ["screen"]
    assert "pipelines" not in described
    assert "room" not in Grants().describe()


def test_grant_fields_lists_every_field() -> None:
    assert grant_fields()[:2] == ["room", "room_join"]
    assert {"sources", "pipelines", "admin"} <= set(grant_fields())
    assert len(grant_fields()) == 16
