"""The front's summed stats: numbers added, rooms joined and tagged, flags kept."""

from __future__ import annotations

from typing import Any

from gateway.workers.stats import merge


def worker(sessions: int, room: str, drops: int, relays: int) -> dict[str, Any]:
    return {
        "rooms": [{"room": room, "subscribers": 2}],
        "loss": {"nacks_sent": drops, "frames_unrepaired": 1},
        "sessions": sessions,
        "cluster": {"node": "ignored", "relays": {"made": relays}},
        "limits": {"refused": {"viewers": drops}, "rate": 2.5},
        "auth": {"enabled": True, "tokens_verified": sessions},
    }


def test_every_worker_is_summed_into_one_document() -> None:
    merged = merge([(0, "w0", worker(3, "a", 1, 0)), (1, "w1", worker(4, "b", 2, 1))])
    assert merged["sessions"] == 7
    assert merged["loss"] == {"nacks_sent": 3, "frames_unrepaired": 2}
    assert merged["limits"] == {"refused": {"viewers": 3}, "rate": 5.0}
    assert merged["auth"] == {"enabled": True, "tokens_verified": 7}  # a flag is not summed
    assert [(r["room"], r["node"]) for r in merged["rooms"]] == [("a", "w0"), ("b", "w1")]
    assert merged["cluster"] == {
        "workers": [
            {"worker": 0, "node": "w0", "relays": {"made": 0}},
            {"worker": 1, "node": "w1", "relays": {"made": 1}},
        ]
    }


def test_no_worker_answering_is_an_empty_document() -> None:
    assert merge([]) == {"cluster": {"workers": []}}


def test_a_key_only_one_worker_has_is_kept() -> None:
    merged = merge([(0, "w0", {"sessions": 1}), (1, "w1", {"sessions": 1, "new": {"x": 1}})])
    assert merged == {
        "sessions": 2,
        "new": {"x": 1},
        "cluster": {"workers": [{"worker": 0, "node": "w0"}, {"worker": 1, "node": "w1"}]},
    }
