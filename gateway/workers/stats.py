"""The front's /api/stats: every worker's own stats, summed into one of the same shape."""

from __future__ import annotations

from typing import Any


def merge(per_worker: list[tuple[int, str, dict[str, Any]]]) -> dict[str, Any]:
    """One stats document from (index, node id, stats) of each worker that answered.

    Counters and gauges (numbers) are summed, lists (rooms) joined with each entry tagged
    with its ``node``, flags and names taken from the first worker. A worker's cluster
    section is its own (its relays, its pipe), so those are listed per worker, not summed.
    """
    merged: dict[str, Any] = {}
    clusters: list[dict[str, Any]] = []
    for index, node, stats in per_worker:
        own = dict(stats)
        cluster = own.pop("cluster", None)
        clusters.append({**(cluster or {}), "worker": index, "node": node})
        for room in own.get("rooms", []):
            if isinstance(room, dict):
                room.setdefault("node", node)
        merged = _add(merged, own)
    merged["cluster"] = {"workers": clusters}
    return merged


def _add(total: Any, value: Any) -> Any:
    if isinstance(total, dict) and isinstance(value, dict):
        out = dict(total)
        for key, item in value.items():
            out[key] = _add(out[key], item) if key in out else item
        return out
    if isinstance(total, list) and isinstance(value, list):
        return [*total, *value]
    if _number(total) and _number(value):
        return total + value
    return total  # a flag, a name, or a shape that differs: the first worker's


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
