"""The made-layers benchmark's pure helpers (bench/made_layers.py): its cases, the window
figures read off the gateway's timers and the viewers' counters, and the derived costs."""

from __future__ import annotations

from typing import Any

import pytest

from bench.made_layers import (
    analyse,
    cases,
    combine,
    layer_of,
    output_rows,
    timer_window,
    viewers_by_layer,
)
from gateway.processing.rung import LADDER


def timer(count: int, total_ms: float, p50: float = 1.0) -> dict[str, float]:
    return {"count": count, "total_ms": total_ms, "p50_ms": p50, "p95_ms": 2 * p50}


def test_cases_ask_for_the_rungs_by_rid_and_one_viewer_each_for_two_rungs() -> None:
    by_key = {c.key: c for c in cases(((360, 500), (180, 150)))}
    assert by_key["passthrough-1"].queries == ("",)
    assert by_key["rung-1"].pipeline == LADDER
    assert by_key["rung-1"].queries == ("?layer=360p",)
    assert by_key["rung-5"].queries == ("?layer=360p",) * 5
    assert by_key["rungs-2"].queries == ("?layer=360p", "?layer=180p")
    assert by_key["rungs-2"].layers == ("360p", "180p")
    assert by_key["gray-1"].queries == ("?pipeline=gray",)
    assert [layer_of(q) for q in ("", "?layer=180p", "?pipeline=gray")] == [
        "original",
        "180p",
        "gray",
    ]


def test_a_timer_over_a_window_is_its_total_and_count_differences() -> None:
    window = timer_window(timer(100, 250.0), timer(400, 1150.0), dt=10.0)
    assert window == {"calls": 300, "mean_ms": 3.0, "per_s": 30.0, "ms_per_s": 90.0}
    assert timer_window(timer(5, 1.0), timer(5, 1.0), 1.0)["mean_ms"] is None


def output(layer: str | None, frames: int, count: int, total: float) -> dict[str, Any]:
    return {
        "layer": layer,
        "codec": "VP8",
        "resolution": [640, 360],
        "subscribers": 1,
        "frames_encoded": frames,
        "frames_out": frames,
        "keyframes_encoded": 1,
        "encoder_opens": 1,
        "encode_errors": 0,
        "timing": {"encode": timer(count, total, 4.0), "latency": {"p50_ms": 8.0}},
    }


def test_outputs_are_matched_by_layer_and_an_output_new_in_the_window_is_left_out() -> None:
    r0 = {"outputs": [output("360p", 100, 100, 400.0)]}
    r1 = {"outputs": [output("360p", 400, 400, 1600.0), output("180p", 50, 50, 100.0)]}
    rows = output_rows(r0, r1, [r1], dt=10.0)
    assert list(rows) == ["360p"]
    assert rows["360p"]["fps_out"] == 30.0
    assert rows["360p"]["encode"]["mean_ms"] == 4.0
    assert rows["360p"]["encode"]["ms_per_s"] == 120.0
    assert rows["360p"]["encode_p50_ms"] == 4.0


def viewer(frames: int, gaps: int, kbytes: int) -> dict[str, int]:
    return {"video_frames": frames, "video_gap_frames": gaps, "video_bytes": kbytes * 1000}


def test_viewers_are_grouped_by_the_layer_they_asked_for() -> None:
    snap0 = {"t": 0.0, "viewers": [viewer(0, 0, 0), viewer(0, 0, 0), viewer(0, 0, 0)]}
    snap1 = {"t": 10.0, "viewers": [viewer(300, 0, 625), viewer(290, 10, 600), viewer(300, 0, 190)]}
    groups = viewers_by_layer(snap0, snap1, ["?layer=360p", "?layer=360p", "?layer=180p"])
    assert groups["360p"]["viewers"] == 2
    assert groups["360p"]["fps_min"] == 29.0
    assert groups["360p"]["kbps_p50"] == pytest.approx(490.0)
    assert groups["360p"]["missing_mean"] == pytest.approx(10 / 300 / 2)
    assert groups["180p"]["kbps_p50"] == pytest.approx(152.0)


def test_combine_takes_the_median_over_rounds_and_the_spread_of_the_cpu_figures() -> None:
    combined = combine(
        [
            {"gateway_ms_per_s": 100.0, "rendition_thread_ms_per_s": 80.0, "x": None},
            {"gateway_ms_per_s": 110.0, "rendition_thread_ms_per_s": 84.0, "x": 3.0},
            {"gateway_ms_per_s": 130.0, "rendition_thread_ms_per_s": 90.0},
        ]
    )
    assert combined["gateway_ms_per_s"] == 110.0
    assert combined["spread:gateway_ms_per_s"] == 30.0
    assert combined["spread:rendition_thread_ms_per_s"] == 10.0
    assert combined["x"] == 3.0
    assert combined["rounds"] == 3


def row(
    gateway: float,
    thread: float,
    viewers: int,
    outputs: dict[str, tuple[float, float]] | None = None,
    decode_ms_per_s: float = 0.0,
) -> dict[str, Any]:
    """A measured case as Server.measure writes it; outputs: rid -> (mean ms, ms/s)."""
    result: dict[str, Any] = {
        "server_cpu_ms_per_s": gateway,
        "loop_thread_ms_per_s": 50.0,
        "new_threads_ms_per_s": thread,
        "other_threads_ms_per_s": 0.0,
        "new_threads": 1 if thread else 0,
        "other_load_cores": 0.0,
        "publisher_fps": 30.0,
        "viewer_fps_p50": 30.0,
        "viewer_fps_min": 30.0,
        "viewer_kbps_p50": 500.0,
        "viewers": viewers,
    }
    if outputs is not None:
        result["rendition"] = {
            "fps_decoded": 30.0,
            "fps_out": 30.0 * len(outputs),
            "decode_window": {"mean_ms": decode_ms_per_s / 30, "ms_per_s": decode_ms_per_s},
            "decode": {"p50_ms": decode_ms_per_s / 30},
            "encode_window": {"ms_per_s": sum(v[1] for v in outputs.values())},
            "process": {"p50_ms": 0.0},
            "drops": {"latest_wins": 0},
            "outputs": {
                rid: {
                    "fps_out": 30.0,
                    "encode": {"mean_ms": mean, "ms_per_s": per_s},
                    "encode_p50_ms": mean,
                    "encode_p95_ms": mean,
                    "subscribers": viewers if rid == "360p" else 1,
                }
                for rid, (mean, per_s) in outputs.items()
            },
        }
    return result


def test_analyse_derives_the_net_costs_the_extra_rung_and_the_decode_share() -> None:
    results = {
        "rungs": [[360, 500], [180, 150]],
        "gateway": {
            "rounds": [
                {
                    "passthrough-0": row(40.0, 0.0, 0),
                    "passthrough-1": row(50.0, 0.0, 1),
                    "passthrough-2": row(54.0, 0.0, 2),
                    "rung-1": row(260.0, 200.0, 1, {"360p": (4.0, 120.0)}, 75.0),
                    "rung-5": row(280.0, 204.0, 5, {"360p": (4.0, 120.0)}, 75.0),
                    "rungs-2": row(
                        330.0, 260.0, 2, {"360p": (4.0, 120.0), "180p": (2.0, 60.0)}, 78.0
                    ),
                    "gray-1": row(380.0, 330.0, 1, {"VP8": (8.0, 240.0)}, 72.0),
                }
            ]
        },
    }
    summary = analyse(results)
    d = summary["derived"]
    assert summary["cases"]["rung-1"]["net_ms_per_s"] == 210.0
    assert d["passthrough_viewer_ms_per_s"] == 10.0
    assert d["passthrough_second_viewer_ms_per_s"] == 4.0
    assert d["one_rung"]["thread_ms_per_s"] == 200.0
    assert d["one_rung"]["scale_encode_mean_ms"] == 4.0
    assert d["one_rung"]["thread_minus_timers_ms_per_s"] == 5.0  # 200 - (75 + 120)
    assert d["two_rungs"]["net_of_passthrough_2_ms_per_s"] == 276.0
    assert d["extra_rung"]["gateway_ms_per_s"] == 70.0
    assert d["extra_rung"]["gateway_ms_per_s_without_second_viewer"] == 66.0
    assert d["extra_rung"]["thread_ms_per_s"] == 60.0
    assert d["extra_rung"]["scale_encode_ms_per_s"] == 60.0
    assert d["shared_rung"]["per_added_viewer_ms_per_s"] == 5.0
    assert d["shared_rung"]["outputs_subscribers"] == 5
    assert d["decode_share"]["decode_ms_per_s"] == 75.0
    assert d["decode_share"]["per_rung_with_2_rungs_ms_per_s"] == 39.0
    assert d["gray"]["net_ms_per_s"] == 330.0
    assert d["gray"]["encode_mean_ms"] == 8.0
