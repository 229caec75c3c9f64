"""Renders the broadcast benchmark's results as Markdown."""

from __future__ import annotations

from statistics import median
from typing import Any

TARGET_CPU_PER_VIEWER = 5.0
TARGET_RATIO = 40.0
TARGET_TTFF_P50 = 200.0
TARGET_ADDED_LATENCY = 5.0


def _f(value: Any, digits: int = 1, suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}{suffix}"
    return f"{value}{suffix}"


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e6:.2f}"


def _pct(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def per_frame(row: dict[str, Any], baseline: dict[str, Any]) -> float | None:
    """Server CPU-ms (net of the idle baseline) per video frame delivered to a viewer."""
    fps = row.get("viewer_fps_p50")
    if not fps:
        return None
    delivered = float(fps) * int(row["viewers"])
    net = float(row["server_cpu_ms_per_s"]) - float(baseline["server_cpu_ms_per_s"])
    return net / delivered


def sustained(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if not r.get("degraded")]


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """The numbers the issue asks for, derived from the rows."""
    out: dict[str, Any] = {}
    gw = results.get("gateway", {})
    naive = results.get("naive", {})
    rows = gw.get("rows", [])
    ok = sustained(rows)
    if ok:
        best = ok[-1]
        out["max_sustained_n"] = best["viewers"]
        steady = [r for r in ok if r["viewers"] >= 10] or ok
        out["gw_cpu_per_viewer"] = median(r["server_cpu_ms_per_viewer_s"] for r in steady)
        out["gw_cpu_per_viewer_raw"] = median(r["server_cpu_ms_per_viewer_s_raw"] for r in steady)
        out["gw_cpu_per_viewer_at_max"] = best["server_cpu_ms_per_viewer_s"]
        out["gw_rss_per_viewer"] = median(r["server_rss_per_viewer_bytes"] for r in steady)
        out["gw_per_frame"] = median(
            x for x in (per_frame(r, gw["baseline"]) for r in steady) if x is not None
        )
        out["gw_rows_used"] = [r["viewers"] for r in steady]
    if rows and rows[-1].get("degraded"):
        out["first_degraded"] = f"N={rows[-1]['viewers']}: {rows[-1]['degraded']}"
    nrows = naive.get("rows", [])
    if nrows:
        out["naive_cpu_per_viewer"] = median(r["server_cpu_ms_per_viewer_s"] for r in nrows)
        out["naive_per_frame"] = median(
            x for x in (per_frame(r, naive["baseline"]) for r in nrows) if x is not None
        )
        out["naive_max_fps_ok_n"] = max(
            (r["viewers"] for r in nrows if not r.get("degraded")), default=0
        )
        if out.get("gw_cpu_per_viewer"):
            out["ratio_per_viewer_s"] = out["naive_cpu_per_viewer"] / out["gw_cpu_per_viewer"]
        if out.get("gw_per_frame"):
            out["ratio_per_frame"] = out["naive_per_frame"] / out["gw_per_frame"]
    live = results.get("live", {})
    if "sequential" in live:
        out["ttff_p50"] = live["sequential"]["from_connected"]["p50_ms"]
        out["ttff_p95"] = live["sequential"]["from_connected"]["p95_ms"]
    if "burst" in live:
        out["ttff_burst_p50"] = live["burst"]["from_connected"]["p50_ms"]
        out["ttff_burst_p95"] = live["burst"]["from_connected"]["p95_ms"]
    if "latency" in live:
        out["added_p50"] = live["latency"]["added_per_frame"]["p50_ms"]
        out["added_p95"] = live["latency"]["added_per_frame"]["p95_ms"]
    return out


def _check(value: float | None, target: float, higher_is_better: bool = False) -> str:
    if value is None:
        return "not measured"
    ok = value >= target if higher_is_better else value <= target
    return "met" if ok else "**missed**"


def _rows_table(rows: list[dict[str, Any]], baseline: dict[str, Any]) -> list[str]:
    lines = [
        "| N | server CPU-ms/s | CPU-ms per viewer-s (net / raw) | CPU-ms per delivered frame | "
        "server RSS MB | RSS/viewer MB | viewer fps p50 / min | frame loss mean / max | RTP loss "
        "| pub->viewer latency p50 / p95 ms (p50 of first / last joined quarter) | loadgen CPU-ms/s | machine busy / other work (cores) | note |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        f"| 0 | {_f(baseline['server_cpu_ms_per_s'])} | - | - | {_mb(baseline['server_rss_bytes'])} | - "
        f"| - | - | - | - | {_f(baseline['loadgen_cpu_ms_per_s'])} "
        f"| {_f(baseline['machine_busy_cores'], 2)} / {_f(max(0.0, baseline.get('other_load_cores') or 0.0), 2)} "
        f"| idle with publisher (publisher {_f(baseline['publisher_fps'])} fps, {_f(baseline['publisher_video_kbps'], 0)} kbps) |",
    ]
    for r in rows:
        gw = r.get("gateway", {})
        notes = []
        if r.get("degraded"):
            notes.append(f"degraded: {r['degraded']}")
        drops = gw.get("drops", 0) + gw.get("audio_drops", 0)
        if drops:
            notes.append(f"{drops} frames dropped by the gateway (slow viewer)")
        if r["udp"].get("RcvbufErrors"):
            notes.append(f"{r['udp']['RcvbufErrors']} UDP rcvbuf drops")
        if r["join"].get("failed"):
            notes.append(f"{r['join']['failed']} viewers failed")
        lines.append(
            f"| {r['viewers']} | {_f(r['server_cpu_ms_per_s'])} "
            f"| {_f(r['server_cpu_ms_per_viewer_s'], 2)} / {_f(r['server_cpu_ms_per_viewer_s_raw'], 2)} "
            f"| {_f(per_frame(r, baseline), 3)} "
            f"| {_mb(r['server_rss_bytes'])} | {_mb(r['server_rss_per_viewer_bytes'])} "
            f"| {_f(r['viewer_fps_p50'])} / {_f(r['viewer_fps_min'])} "
            f"| {_pct(r['viewer_loss_mean'])} / {_pct(r['viewer_loss_max'])} | {_pct(r['rtp_loss'])} "
            f"| {_f(r['latency_p50_ms'])} / {_f(r['latency_p95_ms'])} "
            f"({_f(r.get('latency_p50_first_joined_quarter_ms'))} / {_f(r.get('latency_p50_last_joined_quarter_ms'))}) "
            f"| {_f(r['loadgen_cpu_ms_per_s'])} "
            f"| {_f(r['machine_busy_cores'], 2)} / {_f(max(0.0, r.get('other_load_cores') or 0.0), 2)} | {'; '.join(notes)} |"
        )
    return lines


def _profile(name: str, data: dict[str, Any]) -> list[str]:
    if "error" in data:
        return [f"- {name}: no profile ({data['error']})"]
    lines = [
        f"**{name}**: {data['samples']} non-idle thread samples, {data['active_fraction']:.2f} per "
        f"sampling tick (raw stacks: `{data.get('raw_file', '')}`).",
        "",
        "| where (leaf frame's library) | % of busy samples |",
        "|---|---:|",
    ]
    lines += [f"| {a['function']} | {a['percent']} |" for a in data["by_area_self"][:10]]
    lines += ["", "| top functions, self time | % |", "|---|---:|"]
    lines += [f"| `{a['function']}` | {a['percent']} |" for a in data["top_self"][:15]]
    lines += ["", "| top functions, inclusive | % |", "|---|---:|"]
    lines += [f"| `{a['function']}` | {a['percent']} |" for a in data["top_inclusive"][:20]]
    return [*lines, ""]


def _ttff(name: str, data: dict[str, Any]) -> str:
    c, i, r = data["from_connected"], data["from_ice_connected"], data["from_request"]
    up, enc, down = (
        data.get("connected_to_pli_at_publisher", {}),
        data.get("pli_to_keyframe_encoded", {}),
        data.get("keyframe_encoded_to_viewer", {}),
    )
    return (
        f"| {name} | {c['n']} (missing {data['missing']}) "
        f"| {_f(c['p50_ms'])} / {_f(c['p95_ms'])} / {_f(c['max_ms'])} "
        f"| {_f(i['p50_ms'])} / {_f(i['p95_ms'])} | {_f(r['p50_ms'])} / {_f(r['p95_ms'])} "
        f"| {_f(up.get('p50_ms'))} / {_f(enc.get('p50_ms'))} / {_f(down.get('p50_ms'))} "
        f"| {data['gateway_keyframe_requests_upstream']} / {data['gateway_keyframe_requests_coalesced']} |"
    )


def limits(results: dict[str, Any]) -> list[str]:
    """What bounded N in this run, read off the rows."""
    gw = results.get("gateway", {})
    rows = gw.get("rows", [])
    if not rows or "baseline" not in gw:
        return []
    base = gw["baseline"]["server_cpu_ms_per_s"]
    ok = sustained(rows)
    out: list[str] = []
    if ok:
        best = ok[-1]
        n = best["viewers"]
        out.append(
            f"- At N={n} (the largest sustained) the gateway used {best['server_cpu_ms_per_s']:.0f} "
            f"CPU-ms/s ({best['server_cpu_ms_per_s'] / 10:.0f}% of one core; its forwarding is one "
            f"Python thread), the viewers' load generator {best['loadgen_cpu_ms_per_s']:.0f} CPU-ms/s, "
            f"the publisher {best['publisher_cpu_ms_per_s']:.0f}, other work on the machine "
            f"{max(0.0, best.get('other_load_cores', 0)):.2f} cores; the machine was {best['machine_busy_cores']:.2f} "
            f"of {results['machine']['nproc']} cores busy."
        )
        per_viewer = (
            median(r["server_cpu_ms_per_viewer_s"] for r in ok if r["viewers"] >= 10)
            if any(r["viewers"] >= 10 for r in ok)
            else best["server_cpu_ms_per_viewer_s"]
        )
        if per_viewer > 0:
            out.append(
                f"- Linear extrapolation of the gateway alone ({base:.0f} CPU-ms/s with the publisher, "
                f"+{per_viewer:.2f} per viewer): one core is saturated near N={(1000 - base) / per_viewer:.0f}. "
                f"The load generator costs {best['loadgen_cpu_ms_per_viewer_s']:.1f} CPU-ms per viewer-second, "
                "more than the gateway, and shares the same 2 cores: on this machine the viewers run out "
                "of CPU before the gateway does."
            )
    last = rows[-1]
    if last.get("degraded"):
        gwstats = last.get("gateway", {})
        causes = []
        if gwstats.get("upstream_gaps"):
            causes.append(
                f"{gwstats['upstream_gaps']} gap(s) in the publisher's stream at the gateway"
            )
        if gwstats.get("skipped_until_keyframe"):
            causes.append(
                f"{gwstats['skipped_until_keyframe']} frames skipped by viewers waiting for a keyframe"
            )
        drops = gwstats.get("drops", 0)
        if drops:
            causes.append(f"{drops} frames dropped by the gateway's per-viewer bound")
        if last["udp"].get("RcvbufErrors"):
            causes.append(f"{last['udp']['RcvbufErrors']} datagrams dropped by full socket buffers")
        out.append(
            f"- At N={last['viewers']} viewers degraded ({last['degraded']}); gateway "
            f"{last['server_cpu_ms_per_s']:.0f} CPU-ms/s, load generator {last['loadgen_cpu_ms_per_s']:.0f}, "
            f"other work {max(0.0, last.get('other_load_cores', 0)):.2f} cores, machine {last['machine_busy_cores']:.2f} "
            f"cores busy" + (f"; {', '.join(causes)}." if causes else ".")
        )
    return out


def markdown(results: dict[str, Any]) -> str:
    h = headline(results)
    m = results["machine"]
    v = results["versions"]
    git = results.get("git", {})
    lines = [
        "# Broadcast benchmark",
        "",
        "Generated by `bench/broadcast.py` (see bench/README.md for what is measured and how).",
        "",
        f"- Command: `{results['command']}`",
        f"- Date: {results['date']}, took {results.get('duration_s', '?')} s",
        f"- Code measured: git {git.get('head')}, gateway/ sha256 {git.get('gateway_sha256')}"
        + (
            f", uncommitted: {', '.join(git.get('uncommitted', []))}"
            if git.get("uncommitted")
            else ""
        ),
        f"- Machine: {m['nproc']} cores ({m['cpu_model']}), {m['memory_gb']} GiB, kernel {m['kernel']}, "
        f"load average at start {', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}. Shared with other work: noisy.",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- UDP socket buffers: net.core.{{r,w}}mem_default/max raised to {results['udp_buffers']['set_to']} "
        f"for the run (applied: {results['udp_buffers']['applied']}), restored afterwards to {results['udp_buffers']['original']}.",
        f"- Input: `{results['input_file']['path']}` ({results['input_file']['bytes']} bytes), 720p30 VP8 "
        "~1.5 Mbps, keyframe every 2.5 s, + Opus; sent as-is (no encode), looped with rebased timestamps.",
        "",
        "## Headline",
        "",
        "| metric | result | target |",
        "|---|---|---|",
        f"| gateway CPU-ms per viewer-second (net of idle; median over sustained N>=10: {h.get('gw_rows_used')}) "
        f"| {_f(h.get('gw_cpu_per_viewer'), 2)} (raw {_f(h.get('gw_cpu_per_viewer_raw'), 2)}; at max N {_f(h.get('gw_cpu_per_viewer_at_max'), 2)}) "
        f"| <= {TARGET_CPU_PER_VIEWER} ({_check(h.get('gw_cpu_per_viewer'), TARGET_CPU_PER_VIEWER)}) |",
        f"| naive aiortc (MediaRelay, encode per viewer) CPU-ms per viewer-second | {_f(h.get('naive_cpu_per_viewer'), 1)} | |",
        f"| ratio naive / gateway, per viewer-second | {_f(h.get('ratio_per_viewer_s'), 0, 'x')} "
        f"| >= {TARGET_RATIO:.0f}x ({_check(h.get('ratio_per_viewer_s'), TARGET_RATIO, True)}) |",
        f"| ratio naive / gateway, per delivered frame (fair when the naive server drops frames) "
        f"| {_f(h.get('ratio_per_frame'), 0, 'x')} ({_f(h.get('naive_per_frame'), 2)} vs {_f(h.get('gw_per_frame'), 3)} CPU-ms/frame) | |",
        f"| gateway RSS per viewer | {_mb(h.get('gw_rss_per_viewer'))} MB | |",
        f"| max N sustained (fps p50 >= 95% of sent, slowest >= 80%, loss <= 1%, latency p50 <= 100 ms) "
        f"| {h.get('max_sustained_n', '-')} "
        f"| {h.get('first_degraded', 'no degradation within the N tried')} |",
        f"| time to first keyframe after connected, viewers one at a time, p50 / p95 "
        f"| {_f(h.get('ttff_p50'))} / {_f(h.get('ttff_p95'))} ms | p50 <= {TARGET_TTFF_P50:.0f} ms ({_check(h.get('ttff_p50'), TARGET_TTFF_P50)}) |",
        f"| same, burst of viewers joining together, p50 / p95 | {_f(h.get('ttff_burst_p50'))} / {_f(h.get('ttff_burst_p95'))} ms | |",
        f"| latency added by the gateway (per frame vs direct peer connection), p50 / p95 "
        f"| {_f(h.get('added_p50'), 2)} / {_f(h.get('added_p95'), 2)} ms | <= {TARGET_ADDED_LATENCY:.0f} ms ({_check(h.get('added_p50'), TARGET_ADDED_LATENCY)}) |",
        "",
    ]
    for kind, title in (
        ("gateway", "Gateway: pre-encoded file to N viewers (packet path)"),
        ("naive", "Naive baseline: aiortc MediaRelay, one decode, one encode per viewer"),
    ):
        data = results.get(kind)
        if not data:
            continue
        lines += [f"## {title}", ""]
        if data.get("error"):
            lines += [f"Phase error: `{data['error']}`", ""]
        if "baseline" in data:
            lines += _rows_table(data["rows"], data["baseline"])
            lines.append("")
        if data.get("stopped_because"):
            lines += [f"Stopped adding viewers at {data['stopped_because']}.", ""]
    lines += [
        "Columns: CPU is utime+stime of the whole process (all threads) from /proc/PID/stat over the "
        "window; *net* subtracts the N=0 window (publisher connected, no viewer); RSS is VmRSS at the "
        "window's end, per viewer net of N=0. Frame loss is from gaps in each viewer's RTP timestamps "
        "(frames never completed); RTP loss is from aiortc's receiver counters on the media SSRC "
        "(the gateway retransmits NACKed packets on that SSRC, so it is loss left after recovery; "
        "aiortc's sender in the naive server retransmits over RTX, so there it is loss before "
        "recovery). CPU per delivered frame counts video frames (audio CPU included). "
        "Latency is the publisher handing a frame to aiortc -> the viewer's tap completing it, "
        "matched by frame content, across processes on one clock (includes both aiortc stacks and the "
        "load generator's own scheduling delay). The load generator (viewers, no decoding) runs in "
        "separate processes on the same 2 cores and costs more per viewer than the gateway.",
        "",
    ]
    limit_lines = limits(results)
    if limit_lines:
        lines += ["## What limits N here", "", *limit_lines, ""]
    live = results.get("live")
    if live:
        lines += ["## Live encoder: time to first frame and added latency", ""]
        if live.get("error"):
            lines += [f"Phase error: `{live['error']}`", ""]
        if "machine" in live:
            m = live["machine"]
            lines += [
                f"During this phase ({m['duration_s']} s) the machine was {m['busy_cores']} cores busy, "
                f"{m['other_load_cores']} of them other work; the gateway used {m['gateway_cpu_ms_per_s']} CPU-ms/s.",
                "",
            ]
        if "sequential" in live:
            lines += [
                "A live VP8 encoder (synthetic 720p30, ~1.5 Mbps, keyframe on PLI/FIR) publishes over WHIP; "
                f"{live['sequential_viewers']} viewers join one at a time {live['spacing_s']} s apart "
                f"(more than the 500 ms PLI coalescing), then {live['burst_viewers']} join together.",
                "",
                "| join pattern | viewers | first keyframe after *connected* p50 / p95 / max ms "
                "| after ICE connected p50 / p95 ms | after WHEP POST p50 / p95 ms "
                "| p50 split: connected -> PLI at publisher / PLI -> keyframe encoded / -> viewer, ms "
                "| gateway PLIs sent / coalesced |",
                "|---|---:|---:|---:|---:|---:|---:|",
                _ttff("one at a time", live["sequential"]),
            ]
            if "burst" in live:
                lines.append(_ttff("burst", live["burst"]))
            lines.append("")
        if "latency" in live:
            lat = live["latency"]
            lines += [
                f"Latency, {live['latency_window_s']:.0f} s, the same encoded frames sent at the same time "
                "through the gateway and over a direct aiortc peer connection (one process, one clock; "
                "publisher hands a frame to aiortc -> viewer's tap completes it):",
                "",
                "| path | frames | p50 ms | p95 ms | max ms |",
                "|---|---:|---:|---:|---:|",
            ]
            for key, name in (
                ("through_gateway", "publisher -> gateway -> viewer"),
                ("direct", "publisher -> viewer (direct)"),
                ("added_per_frame", "added by the gateway (per frame)"),
            ):
                s = lat[key]
                lines.append(
                    f"| {name} | {s['n']} | {_f(s['p50_ms'], 2)} | {_f(s['p95_ms'], 2)} | {_f(s['max_ms'], 2)} |"
                )
            enc = live.get("encoder", {})
            lines += [
                "",
                f"Encoder: {enc.get('frames')} frames, {enc.get('keyframes')} keyframes for "
                f"{enc.get('keyframe_requests')} requests, encode p50 {_f(enc.get('encode_ms_p50'))} ms / p95 "
                f"{_f(enc.get('encode_ms_p95'))} ms.",
                "",
            ]
    profiles = [
        (k, n, p)
        for k in ("gateway", "naive")
        for n, p in results.get(k, {}).get("profiles", {}).items()
    ]
    if profiles:
        lines += ["## Where the time goes (py-spy)", ""]
        for kind, n, data in profiles:
            lines += _profile(f"{kind} at N={n}", data)
    return "\n".join(lines) + "\n"
