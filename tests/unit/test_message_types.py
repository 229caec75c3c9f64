"""The typed client messages: what the parser builds, and what it refuses with which error."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.signaling import messages
from gateway.signaling.messages import (
    TYPES,
    Auth,
    Candidate,
    CandidateInit,
    Chat,
    Join,
    Layer,
    Leave,
    Message,
    Mute,
    Offer,
    Ping,
    Pipeline,
    PipelineUpdate,
    ProtocolError,
    Publish,
    RecordStart,
    RecordStop,
    Resume,
    Signal,
    Subscribe,
    Unpublish,
    Unwatch,
    Watch,
    error,
    parse,
)
from gateway.signaling.websocket import _HANDLERS

CANDIDATE = "candidate:1 1 udp 2122260223 10.0.0.1 5000 typ host"

# One valid message of every type, and the message it gives (request ids: 7).
VALID: list[tuple[dict[str, Any], Message]] = [
    (
        {"type": "publish", "room": "cam", "sdp": "v=0"},
        Publish("cam", "v=0", None, request_id=7),
    ),
    (
        {"type": "subscribe", "room": "cam", "sdp": "v=0", "pipeline": "gray"},
        Subscribe("cam", "v=0", "gray", request_id=7),
    ),
    (
        {
            "type": "candidate",
            "session": "s1",
            "candidate": {"candidate": CANDIDATE, "sdpMid": "0", "sdpMLineIndex": 1},
        },
        Candidate("s1", CandidateInit(CANDIDATE, "0", 1), request_id=7),
    ),
    ({"type": "leave", "session": "s1"}, Leave("s1", request_id=7)),
    ({"type": "watch", "room": "lobby"}, Watch("lobby", request_id=7)),
    ({"type": "unwatch", "room": "lobby"}, Unwatch("lobby", request_id=7)),
    ({"type": "ping"}, Ping(request_id=7)),
    ({"type": "auth", "token": "t0k"}, Auth("t0k", request_id=7)),
    (
        {"type": "record-start", "room": "cam", "pipeline": "gray"},
        RecordStart("cam", "gray", request_id=7),
    ),
    ({"type": "record-stop", "room": "cam"}, RecordStop("cam", request_id=7)),
    (
        {"type": "join", "room": "r", "name": "Ann", "mode": "p2p"},
        Join("r", "Ann", "p2p", request_id=7),
    ),
    (
        {
            "type": "offer",
            "sdp": "v=0",
            "publish": {"0": "camera"},
            "subscribe": {"1": "t1"},
            "pipelines": {"1": "gray"},
        },
        Offer("v=0", {"0": "camera"}, {"1": "t1"}, {"1": "gray"}, request_id=7),
    ),
    ({"type": "unpublish", "track": "t1"}, Unpublish("t1", request_id=7)),
    ({"type": "mute", "track": "t1", "muted": True}, Mute("t1", True, request_id=7)),
    ({"type": "chat", "text": "hi", "to": "p2"}, Chat("hi", "p2", request_id=7)),
    ({"type": "resume", "session": "s1", "token": "rt"}, Resume("s1", "rt", request_id=7)),
    (
        {"type": "signal", "to": "p2", "data": {"sdp": "v=0", "n": [1]}},
        Signal("p2", {"sdp": "v=0", "n": [1]}, request_id=7),
    ),
    (
        {"type": "pipeline", "pipeline": "gray", "session": "s1", "mid": "1"},
        Pipeline("gray", "s1", "1", request_id=7),
    ),
    (
        {"type": "layer", "layer": "q", "session": "s1", "mid": "1"},
        Layer("q", None, None, "s1", "1", request_id=7),
    ),
    (
        {
            "type": "pipeline-update",
            "rendition": "r1",
            "stage": "blur",
            "params": {"radius": 2},
            "enable": True,
        },
        PipelineUpdate("r1", "blur", {"radius": 2}, True, request_id=7),
    ),
]


def parsed(**fields: Any) -> Message:
    return parse(json.dumps(fields))


def refused(**fields: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse(json.dumps(fields))
    return info.value


def test_every_type_has_a_valid_example_and_a_handler() -> None:
    assert sorted(fields["type"] for fields, _ in VALID) == sorted(TYPES)
    assert set(_HANDLERS) == set(TYPES.values())
    assert messages._SCHEMA == {kind: cls.required for kind, cls in TYPES.items()}


@pytest.mark.parametrize(("fields", "expected"), VALID, ids=[f["type"] for f, _ in VALID])
def test_each_type_gives_its_dataclass(fields: dict[str, Any], expected: Message) -> None:
    message = parse(json.dumps({**fields, "id": 7}))
    assert type(message) is type(expected)
    assert message == expected
    assert message.type == fields["type"] == type(expected).type
    assert message.request_id == 7
    assert message.fields == {**fields, "id": 7}


def test_messages_are_frozen() -> None:
    message = parsed(type="watch", room="lobby")
    assert isinstance(message, Watch)
    with pytest.raises(AttributeError):
        message.room = "other"  # type: ignore[misc]


# --- optional fields and their defaults ------------------------------------------------------


def test_optional_fields_default() -> None:
    assert parsed(type="publish", room="r", sdp="v=0") == Publish("r", "v=0", None)
    assert parsed(type="subscribe", room="r", sdp="v=0", pipeline=None) == Subscribe(
        "r", "v=0", None
    )
    assert parsed(type="record-start", room="r") == RecordStart("r", None)
    assert parsed(type="join", room="r", name="n") == Join("r", "n", None)
    assert parsed(type="offer", sdp="v=0") == Offer("v=0", {}, {}, {})
    assert parsed(type="chat", text="hi") == Chat("hi", None)
    assert parsed(type="signal", to="p") == Signal("p", None)
    assert parsed(type="pipeline") == Pipeline(None, None, None)
    assert parsed(type="pipeline-update", rendition="r", stage="s") == PipelineUpdate(
        "r", "s", {}, False
    )


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        (None, None),
        ({"candidate": ""}, CandidateInit("", None, None)),
        ({"candidate": "c", "sdpMid": None, "sdpMLineIndex": None}, CandidateInit("c")),
        ({"candidate": "c", "sdpMLineIndex": 0}, CandidateInit("c", None, 0)),
        # Fields the gateway does not use are dropped.
        ({"candidate": "c", "sdpMid": "a", "usernameFragment": "u"}, CandidateInit("c", "a")),
    ],
)
def test_candidate_shapes(candidate: Any, expected: CandidateInit | None) -> None:
    message = parsed(type="candidate", session="s", candidate=candidate)
    assert isinstance(message, Candidate)
    assert message.candidate == expected
    assert parsed(type="candidate", session="s") == Candidate("s", None)


def test_unknown_fields_are_ignored_but_kept_raw() -> None:
    message = parsed(type="watch", room="r", extra=[1, 2], id="q")
    assert message == Watch("r", request_id="q")
    assert message["extra"] == [1, 2]
    assert message.get("missing", "default") == "default"


def test_record_stop_takes_no_pipeline() -> None:
    # Only record-start names one: record-stop's is not even looked at.
    assert parsed(type="record-stop", room="r", pipeline=5) == RecordStop("r")


# --- envelope errors -------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["", "{", "{'type': 'ping'}", "[" * 100000])
def test_invalid_json(raw: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse(raw)
    assert info.value.code == "invalid-json"
    assert info.value.message.startswith("the message is not valid JSON: ")
    assert info.value.request_id is None


def test_a_huge_integer_is_invalid_json() -> None:
    with pytest.raises(ProtocolError) as info:
        parse('{"type": "ping", "id": ' + "9" * 5000 + "}")
    assert info.value.code == "invalid-json"


@pytest.mark.parametrize("raw", ["[]", "1", '"ping"', "null"])
def test_not_an_object(raw: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse(raw)
    assert (info.value.code, info.value.message) == (
        "invalid-message",
        "a message must be a JSON object",
    )


@pytest.mark.parametrize("request_id", [True, False, 1.5, [1], {"a": 1}])
def test_id_is_a_string_or_an_integer_not_a_bool(request_id: Any) -> None:
    exc = refused(type="ping", id=request_id)
    assert (exc.code, exc.message) == ("invalid-message", "'id' must be a string or an integer")
    assert exc.request_id is None


@pytest.mark.parametrize("request_id", [0, -3, "", "r1"])
def test_ids_kept(request_id: Any) -> None:
    assert parsed(type="ping", id=request_id).request_id == request_id
    assert parsed(type="ping", id=None).request_id is None


def test_id_is_checked_before_type() -> None:
    exc = refused(type=5, id=True)
    assert exc.message == "'id' must be a string or an integer"


@pytest.mark.parametrize("kind", [None, 5, True, ["ping"]])
def test_type_must_be_a_string(kind: Any) -> None:
    exc = refused(type=kind, id="r")
    assert (exc.code, exc.message, exc.request_id) == (
        "invalid-message",
        "a message needs a string 'type'",
        "r",
    )


def test_unknown_type_lists_the_known_ones_sorted() -> None:
    exc = refused(type="publishh", id=3)
    assert exc.code == "unknown-type"
    assert exc.request_id == 3
    assert exc.message == f"unknown message type 'publishh'; known: {sorted(TYPES)}"
    assert sorted(TYPES) == [
        "auth",
        "candidate",
        "chat",
        "join",
        "layer",
        "leave",
        "mute",
        "offer",
        "ping",
        "pipeline",
        "pipeline-update",
        "publish",
        "record-start",
        "record-stop",
        "resume",
        "signal",
        "subscribe",
        "unpublish",
        "unwatch",
        "watch",
    ]


# --- field errors ----------------------------------------------------------------------------

REQUIRED = [(kind, key) for kind, cls in TYPES.items() for key in cls.required]


@pytest.mark.parametrize(("kind", "key"), REQUIRED, ids=[f"{k}.{f}" for k, f in REQUIRED])
@pytest.mark.parametrize("value", ["missing", None, 5, [], {}, "flip"])
def test_required_fields(kind: str, key: str, value: Any) -> None:
    fields = next(dict(f) for f, _ in VALID if f["type"] == kind)
    expected = TYPES[kind].required[key]
    if value == "missing":
        del fields[key]
    elif value == "flip":  # a string where a bool goes, a bool where a string goes
        fields[key] = "yes" if expected is bool else True
    else:
        fields[key] = value
    exc = refused(**fields, id="x")
    wanted = "true or false" if expected is bool else "a string"
    assert (exc.code, exc.message, exc.request_id) == (
        "invalid-message",
        f"{kind!r} needs {wanted} {key!r}",
        "x",
    )


def test_required_fields_are_checked_in_order() -> None:
    assert refused(type="publish").message == "'publish' needs a string 'room'"
    assert refused(type="mute").message == "'mute' needs a string 'track'"
    assert refused(type="mute", track="t", muted=1).message == "'mute' needs true or false 'muted'"
    # ... and before the optional ones.
    exc = refused(type="subscribe", room="r", pipeline=5)
    assert exc.message == "'subscribe' needs a string 'sdp'"


@pytest.mark.parametrize("kind", ["publish", "subscribe", "record-start", "pipeline"])
@pytest.mark.parametrize("pipeline", [5, True, ["gray"], {}])
def test_pipeline_is_a_name_or_null(kind: str, pipeline: Any) -> None:
    fields = {**next(f for f, _ in VALID if f["type"] == kind), "pipeline": pipeline}
    exc = refused(**fields, id=1)
    assert (exc.code, exc.message, exc.request_id) == (
        "invalid-message",
        "'pipeline' must be a name or null",
        1,
    )


@pytest.mark.parametrize("key", ["session", "mid"])
@pytest.mark.parametrize("value", [0, True, ["s"]])
def test_pipeline_session_and_mid_are_strings(key: str, value: Any) -> None:
    exc = refused(type="pipeline", pipeline="gray", **{key: value})
    assert (exc.code, exc.message) == ("invalid-message", f"{key!r} must be a string")
    # The pipeline is checked first, then the session, then the mid.
    assert refused(type="pipeline", pipeline=1, **{key: value}).message == (
        "'pipeline' must be a name or null"
    )
    assert refused(type="pipeline", session=1, mid=1).message == "'session' must be a string"


def test_a_layer_by_tile_size() -> None:
    message = parse(json.dumps({"type": "layer", "max_width": 320, "max_height": 180, "id": 7}))
    assert message == Layer(None, 320, 180, request_id=7)
    capped = parse(json.dumps({"type": "layer", "max_fps": 15, "id": 8}))
    assert capped == Layer(max_fps=15.0, request_id=8)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"layer": 3}, "'layer' must be a string"),
        ({"mid": ["1"]}, "'mid' must be a string"),
        ({"max_width": "wide"}, "'max_width' must be 1-16384 pixels"),
        ({"max_height": 0}, "'max_height' must be 1-16384 pixels"),
        ({"max_width": True}, "'max_width' must be 1-16384 pixels"),
        ({"max_width": 100000}, "'max_width' must be 1-16384 pixels"),
        ({"max_fps": 0}, "'max_fps' must be a number, 1-240"),
        ({"max_fps": "15"}, "'max_fps' must be a number, 1-240"),
        ({"max_fps": True}, "'max_fps' must be a number, 1-240"),
        ({"max_fps": 1000}, "'max_fps' must be a number, 1-240"),
    ],
)
def test_layer_fields_are_checked(fields: dict[str, Any], message: str) -> None:
    exc = refused(type="layer", **fields)
    assert (exc.code, exc.message) == ("invalid-message", message)


@pytest.mark.parametrize(
    "extra",
    [{"params": [1]}, {"params": None}, {"params": "x"}, {"enable": "yes"}, {"enable": None}],
)
def test_pipeline_update_params_and_enable(extra: dict[str, Any]) -> None:
    exc = refused(type="pipeline-update", rendition="r", stage="s", **extra)
    assert (exc.code, exc.message) == (
        "invalid-message",
        "'pipeline-update' takes 'params' (an object) and 'enable' (true or false)",
    )


@pytest.mark.parametrize("key", ["publish", "subscribe", "pipelines"])
@pytest.mark.parametrize("mapping", [None, [], "0", {"0": None}, {"0": 1}, {"0": ["a"]}])
def test_offer_maps_mids_to_strings(key: str, mapping: Any) -> None:
    exc = refused(type="offer", sdp="v=0", id="o", **{key: mapping})
    assert (exc.code, exc.message, exc.request_id) == (
        "invalid-message",
        f"'offer' {key!r} must map mids to strings",
        "o",
    )


def test_offer_maps_are_checked_in_order() -> None:
    exc = refused(type="offer", sdp="v=0", pipelines=1, subscribe=1, publish=1)
    assert exc.message == "'offer' 'publish' must map mids to strings"
    exc = refused(type="offer", sdp="v=0", pipelines=1, subscribe=1)
    assert exc.message == "'offer' 'subscribe' must map mids to strings"


@pytest.mark.parametrize(
    "candidate",
    [
        CANDIDATE,
        5,
        [],
        {},
        {"candidate": None},
        {"candidate": 5},
        {"candidate": "c", "sdpMid": 0},
        {"candidate": "c", "sdpMLineIndex": "0"},
        {"candidate": "c", "sdpMLineIndex": 0.5},
        {"candidate": "c", "sdpMLineIndex": True},  # a bool is not an index
    ],
)
def test_bad_candidates(candidate: Any) -> None:
    exc = refused(type="candidate", session="s", candidate=candidate, id="c")
    assert (exc.code, exc.message, exc.request_id) == (
        "invalid-candidate",
        "'candidate' must be null or {candidate: string, sdpMid?: string, sdpMLineIndex?: int}",
        "c",
    )


def test_candidate_session_is_checked_first() -> None:
    assert refused(type="candidate", candidate=5).code == "invalid-message"


# Checks the socket handlers made on raw fields: the same code and message, from the parser.


@pytest.mark.parametrize("to", [5, True, ["p"], {"id": "p"}])
def test_chat_to_is_a_participant_id(to: Any) -> None:
    exc = refused(type="chat", text="hi", to=to, id=4)
    assert error(exc, exc.request_id) == {
        "type": "error",
        "code": "invalid-message",
        "message": "'to' must be a participant id",
        "id": 4,
    }
    assert exc.status == 400
    assert refused(type="chat", to=to).message == "'chat' needs a string 'text'"


@pytest.mark.parametrize("mode", [5, True, ["p2p"], {}])
def test_join_mode_is_a_string(mode: Any) -> None:
    exc = refused(type="join", room="r", name="n", mode=mode, id="j")
    assert error(exc, exc.request_id) == {
        "type": "error",
        "code": "invalid-message",
        "message": "'mode' must be a string",
        "id": "j",
    }
    assert exc.status == 400
