"""The WebSocket protocol's client messages."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.errors import GatewayError
from gateway.signaling.messages import PROTOCOL_VERSION, Message, ProtocolError, error, parse


def text(**fields: Any) -> str:
    return json.dumps(fields)


def refused(raw: str) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse(raw)
    assert info.value.status == 400
    return info.value


# --- valid messages -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "checks"),
    [
        ({"type": "publish", "room": "cam", "sdp": "v=0\r\n"}, {"room": "cam", "sdp": "v=0\r\n"}),
        ({"type": "subscribe", "room": "cam", "sdp": "v=0\r\n"}, {"room": "cam"}),
        ({"type": "leave", "session": "s1"}, {"session": "s1"}),
        ({"type": "watch", "room": "lobby"}, {"room": "lobby"}),
        ({"type": "unwatch", "room": "lobby"}, {"room": "lobby"}),
        ({"type": "ping"}, {}),
        (
            {"type": "subscribe", "room": "cam", "sdp": "v=0\r\n", "pipeline": "gray"},
            {"pipeline": "gray"},
        ),
        ({"type": "pipeline", "pipeline": None}, {"pipeline": None}),
        ({"type": "pipeline", "session": "s", "mid": "0", "pipeline": "gray"}, {"mid": "0"}),
        (
            {"type": "pipeline-update", "rendition": "r", "stage": "blur", "params": {"radius": 2}},
            {"stage": "blur"},
        ),
        (
            {
                "type": "offer",
                "sdp": "v=0\r\n",
                "subscribe": {"1": "t"},
                "pipelines": {"1": "gray"},
            },
            {"pipelines": {"1": "gray"}},
        ),
    ],
)
def test_each_message_type_parses(fields: dict[str, Any], checks: dict[str, Any]) -> None:
    message = parse(json.dumps(fields))
    assert isinstance(message, Message)
    assert message.type == fields["type"]
    assert message.request_id is None
    for key, value in checks.items():
        assert message[key] == value
        assert message.get(key) == value
    assert message.fields == fields


def test_candidate_message_with_a_candidate() -> None:
    candidate = {
        "candidate": "candidate:1 1 udp 1 10.0.0.1 5000 typ host",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
    }
    message = parse(text(type="candidate", session="s1", candidate=candidate, id=7))
    assert message.type == "candidate"
    assert message["session"] == "s1"
    assert message["candidate"] == candidate
    assert message.request_id == 7


@pytest.mark.parametrize(
    "candidate",
    [
        None,
        {"candidate": ""},
        {"candidate": "candidate:x", "sdpMid": None, "sdpMLineIndex": None},
        {"candidate": "candidate:x", "sdpMLineIndex": 2},
        {"candidate": "candidate:x", "sdpMid": "audio", "usernameFragment": "abcd"},
    ],
)
def test_candidate_shapes_accepted(candidate: Any) -> None:
    message = parse(text(type="candidate", session="s1", candidate=candidate))
    assert message.get("candidate") == candidate


def test_candidate_message_without_a_candidate_means_end_of_candidates() -> None:
    message = parse(text(type="candidate", session="s1"))
    assert message.get("candidate") is None
    assert message.get("missing", "default") == "default"


@pytest.mark.parametrize("request_id", ["abc", 0, 42])
def test_request_id_is_kept(request_id: Any) -> None:
    assert parse(text(type="ping", id=request_id)).request_id == request_id


def test_extra_fields_are_kept() -> None:
    message = parse(text(type="watch", room="r", extra=[1, 2]))
    assert message["extra"] == [1, 2]


# --- invalid messages -----------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["", "{", "not json", "{'type': 'ping'}", "[" * 100000])
def test_invalid_json(raw: str) -> None:
    assert refused(raw).code == "invalid-json"


@pytest.mark.parametrize("raw", ["[]", "1", '"ping"', "null", "true", '[{"type": "ping"}]'])
def test_message_must_be_an_object(raw: str) -> None:
    error_ = refused(raw)
    assert error_.code == "invalid-message"
    assert "JSON object" in error_.message


@pytest.mark.parametrize("request_id", [1.5, [1], {"a": 1}, True, False])
def test_request_id_must_be_string_or_integer(request_id: Any) -> None:
    error_ = refused(text(type="ping", id=request_id))
    assert error_.code == "invalid-message"
    assert error_.request_id is None


@pytest.mark.parametrize("fields", [{}, {"type": 5}, {"type": None}, {"type": ["ping"]}])
def test_type_must_be_a_string(fields: dict[str, Any]) -> None:
    error_ = refused(json.dumps({**fields, "id": "r1"}))
    assert error_.code == "invalid-message"
    assert error_.request_id == "r1"


def test_unknown_type_lists_the_known_ones() -> None:
    error_ = refused(text(type="publishh", id=3))
    assert error_.code == "unknown-type"
    assert error_.request_id == 3
    assert "'publishh'" in error_.message
    for known in ("candidate", "leave", "ping", "publish", "subscribe", "unwatch", "watch"):
        assert known in error_.message


@pytest.mark.parametrize(
    ("fields", "missing"),
    [
        ({"type": "publish", "sdp": "v=0"}, "room"),
        ({"type": "publish", "room": "cam"}, "sdp"),
        ({"type": "publish", "room": 5, "sdp": "v=0"}, "room"),
        ({"type": "publish", "room": "cam", "sdp": None}, "sdp"),
        ({"type": "subscribe", "room": "cam", "sdp": {"type": "offer"}}, "sdp"),
        ({"type": "candidate"}, "session"),
        ({"type": "candidate", "session": 12}, "session"),
        ({"type": "leave"}, "session"),
        ({"type": "watch", "room": ["a"]}, "room"),
        ({"type": "unwatch"}, "room"),
    ],
)
def test_missing_or_mistyped_fields(fields: dict[str, Any], missing: str) -> None:
    error_ = refused(json.dumps({**fields, "id": "req-9"}))
    assert error_.code == "invalid-message"
    assert f"'{missing}'" in error_.message
    assert f"'{fields['type']}'" in error_.message
    assert error_.request_id == "req-9"


@pytest.mark.parametrize(
    "candidate",
    [
        "candidate:1 1 udp 1 10.0.0.1 5000 typ host",
        5,
        [],
        {},
        {"candidate": None},
        {"candidate": 5},
        {"candidate": "candidate:x", "sdpMid": 0},
        {"candidate": "candidate:x", "sdpMLineIndex": "0"},
        {"candidate": "candidate:x", "sdpMLineIndex": 0.5},
        {"candidate": "candidate:x", "sdpMLineIndex": True},
    ],
)
def test_bad_candidate_shapes(candidate: Any) -> None:
    error_ = refused(text(type="candidate", session="s1", candidate=candidate, id="c1"))
    assert error_.code == "invalid-candidate"
    assert error_.request_id == "c1"


def test_protocol_error_is_a_gateway_error() -> None:
    error_ = refused("{")
    assert isinstance(error_, GatewayError)
    assert error_.request_id is None


# --- error replies --------------------------------------------------------------------------


def test_error_reply_echoes_the_request_id() -> None:
    exc = GatewayError(404, "room-not-found", "no room 'x'")
    assert error(exc, "r7") == {
        "type": "error",
        "code": "room-not-found",
        "message": "no room 'x'",
        "id": "r7",
    }
    assert error(exc, 0)["id"] == 0


def test_error_reply_without_request_id_has_no_id() -> None:
    reply = error(ProtocolError("invalid-json", "bad"))
    assert reply == {"type": "error", "code": "invalid-json", "message": "bad"}


def test_error_reply_for_a_refused_message_round_trips() -> None:
    error_ = refused(text(type="nope", id="q"))
    reply = json.loads(json.dumps(error(error_, error_.request_id)))
    assert reply["id"] == "q" and reply["code"] == "unknown-type"


def test_protocol_version() -> None:
    assert PROTOCOL_VERSION == 2


@pytest.mark.parametrize(
    "fields",
    [
        {"type": "subscribe", "room": "cam", "sdp": "v=0", "pipeline": 3},
        {"type": "pipeline", "pipeline": ["gray"]},
        {"type": "pipeline", "pipeline": "gray", "mid": 0},
        {"type": "pipeline-update", "rendition": "r"},
        {"type": "pipeline-update", "rendition": "r", "stage": "s", "params": [1]},
        {"type": "pipeline-update", "rendition": "r", "stage": "s", "enable": "yes"},
        {"type": "offer", "sdp": "v=0", "pipelines": {"1": None}},
        {"type": "record-start", "room": "r", "pipeline": 5},
    ],
)
def test_malformed_processing_messages_are_refused(fields: dict[str, Any]) -> None:
    assert refused(json.dumps(fields)).code == "invalid-message"
