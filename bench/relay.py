"""The relay benchmark: viewers on other cluster nodes, beside viewers on the home node.

    .venv/bin/python -m bench.relay                        # default run, ~6-7 min
    .venv/bin/python -m bench.relay --quick                # smoke run (N = 1,5; 4 s windows), ~3 min
    .venv/bin/python -m bench.relay --viewers 1,10,40,80 --window 12

One run, one redis-server, three gateway nodes (A, B and C, cluster mode, 127.0.0.1, host-only
ICE), the broadcast benchmark's publisher (bench/publisher.py: pre-encoded 720p30 VP8 + Opus,
WHIP to A, so the room is homed on A) and its non-decoding load generators (bench/loadgen.py).
A and C share a `cluster.pipe_dir` (a temporary directory); B has none:

  direct   N viewers WHEP at A (N = 0 first: the baseline A(direct, 0))
  relayed  N viewers WHEP at B: B makes one relay over WebRTC (a WHEP viewer of A:
           DTLS/SRTP/RTP, gateway/cluster/relay.py) and fans it out
  piped    N viewers WHEP at C: C makes one relay over the frame pipe (A's Unix socket in the
           shared pipe_dir: each encoded frame written once, keyframe requests back,
           gateway/cluster/pipe_relay.py) and fans it out

The run checks (and prints) from /api/stats that C's relay was piped (cluster.relays.piped
== 1) and B's was not (made >= 1, piped 0); it fails otherwise.

Per window (after a settle time): utime+stime of A, B, C (and redis) from /proc/PID/stat as
CPU-ms per second, per viewer-second net of the phase's N=0 window, the source's cost of the
relay leg = A(mode, N) - A(direct, 0), the edge node's fixed and per-viewer cost, viewer
fps/loss, and publisher -> viewer latency matched by frame content (bench/loadgen.py) direct
vs relayed vs piped. Writes bench/results/relay.md and bench/results/relay.json (or
--md/--json). Every process started is stopped by its PID; the pipe directory is removed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from . import broadcast
from .broadcast import (
    OTHER_LOAD_LIMIT,
    ROOM,
    Settings,
    Target,
    free_port,
    measure_row,
    raise_udp_buffers,
    restore_udp_buffers,
    run_header,
    wait_others_quiet,
    wait_quiet,
)
from .control import PYTHON, ROOT, Process
from .media import ensure_input_file
from .stats import cpu_ms_per_s, cpu_sample

logger = logging.getLogger("bench")

RESULTS = broadcast.RESULTS
OUT = broadcast.OUT
HEARTBEAT_S = 2.0
NODE_TTL_S = 6.0
# The relay modes: the edge node whose viewers they are, and how it pulls the room from A.
MODES = {"relayed": ("b", "WebRTC"), "piped": ("c", "frame pipe")}


def node_config(node: str, port: int, redis_url: str, pipe_dir: str = "") -> str:
    """bench/broadcast.py's gateway config plus the cluster section (and its pipe_dir, if
    any: nodes sharing one relay each other's rooms over the frame pipe)."""
    return (
        "server:\n  drain_timeout_s: 0\n"
        "ice:\n  addresses: [127.0.0.1]\n"
        "rooms:\n  max_subscribers: 2000\n"
        "log:\n  level: warning\n"
        # The load generators' viewers all come from 127.0.0.1: no per-address admission
        # limit (5 new sessions/s, bursts of 20, would turn away a jump from 10 to 40 viewers).
        "limits:\n  sessions_per_ip_per_s: 1000\n  sessions_per_ip_burst: 1000\n"
        "cluster:\n"
        f"  redis_url: {redis_url}\n"
        f"  node_id: {node}\n"
        f"  advertise_url: http://127.0.0.1:{port}\n"
        f"  heartbeat_s: {HEARTBEAT_S}\n"
        f"  node_ttl_s: {NODE_TTL_S}\n" + (f"  pipe_dir: {pipe_dir}\n" if pipe_dir else "")
    )


class EdgeNode(Process):
    """Node B or C: where the relayed (B, WebRTC) or piped (C, frame pipe) viewers go; it
    relays the room from A."""

    base_url = ""


class NodeA(Target):
    """Node A (the room's home, where the publisher WHIPs) with the publisher and the load
    generators, whose viewers go to ``viewer_base``: A (direct), B (relayed) or C (piped)."""

    def __init__(self, settings: Settings, input_file: Path, redis_url: str, pipe_dir: str) -> None:
        super().__init__("gateway", settings, input_file)
        self.name = "node-a"
        self.redis_url = redis_url
        self.pipe_dir = pipe_dir
        self.viewer_base = self.base
        self.extra_pids: dict[str, list[int]] = {}

    @property
    def url(self) -> str:
        return f"{self.viewer_base}/whep/{ROOM}"

    def server_args(self) -> list[str]:
        config = self.settings.run_dir / "node-a.yaml"
        config.write_text(node_config("a", self.port, self.redis_url, self.pipe_dir))
        return [PYTHON, "-m", "gateway", "--config", str(config), "--port", str(self.port)]

    def pids(self) -> dict[str, list[int]]:
        # B, C and redis too, so that wait_others_quiet does not count them as other work.
        return super().pids() | self.extra_pids

    async def drop_viewers(self) -> None:
        for worker in self.loadgens:
            try:
                await worker.call("close_all", wait_s=60)
            except Exception as exc:
                logger.warning("%s: close_all: %s", worker.name, exc)
            await worker.stop()
        self.loadgens = []
        self.viewers = 0


async def wait_healthy(http: aiohttp.ClientSession, base: str, proc: Process) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.proc.returncode is not None:
            raise RuntimeError(f"{proc.name} exited:\n{proc.tail()}")
        try:
            async with http.get(f"{base}/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{proc.name} did not answer /healthz")


async def node_stats(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    """The node's cluster counters and its copy of the room (subscribers, video counters)."""
    try:
        async with http.get(f"{base}/api/stats") as response:
            body: dict[str, Any] = await response.json()
    except Exception as exc:
        return {"error": str(exc)}
    room = next((r for r in body.get("rooms", []) if r.get("room") == ROOM), None)
    video = next((t for t in (room or {}).get("tracks", []) if t.get("kind") == "video"), {})
    return {
        "cluster": body.get("cluster"),
        "room_subscribers": None if room is None else room.get("subscribers"),
        "video": {k: v for k, v in video.items() if isinstance(v, int | float | str)},
    }


async def wait_subscribers(
    http: aiohttp.ClientSession, base: str, count: int, limit_s: float
) -> int | None:
    """Waits until the node's room has ``count`` subscribers (the last value seen)."""
    deadline = time.monotonic() + limit_s
    seen = None
    while time.monotonic() < deadline:
        seen = (await node_stats(http, base)).get("room_subscribers") or 0
        if seen == count:
            return seen
        await asyncio.sleep(0.5)
    return seen


async def measure(
    target: NodeA,
    edges: dict[str, EdgeNode],
    redis_pid: int,
    n: int,
    join: dict[str, Any],
    baseline: dict[str, Any],
    settings: Settings,
    settle_s: float,
) -> dict[str, Any]:
    """broadcast's window (A, publisher, loadgens, latency), with B, C and redis sampled
    around it (their window includes the few ms of commands before and after A's)."""
    assert target.http is not None
    await asyncio.sleep(settle_s)
    pids = {name: edge.pid for name, edge in edges.items()} | {"redis": redis_pid}
    t0 = time.monotonic()
    before = {name: cpu_sample(pid, t0) for name, pid in pids.items()}
    if n == 0:
        row = await target.measure(settings.window_s)
        row["join"] = join
        row["degraded"] = None
    else:
        row = await measure_row(target, n, join, baseline, settings)
    t1 = time.monotonic()
    after = {name: cpu_sample(pid, t1) for name, pid in pids.items()}
    for name in edges:
        row[f"node_{name}_cpu_ms_per_s"] = cpu_ms_per_s(before[name], after[name])
    row["redis_cpu_ms_per_s"] = cpu_ms_per_s(before["redis"], after["redis"])
    row["node_b_window_s"] = round(t1 - t0, 2)  # B's, C's and redis's window
    ours = (
        row["server_cpu_ms_per_s"]
        + row["publisher_cpu_ms_per_s"]
        + row["loadgen_cpu_ms_per_s"]
        + sum(row[f"node_{name}_cpu_ms_per_s"] for name in edges)
        + row["redis_cpu_ms_per_s"]
    ) / 1000
    row["other_load_cores"] = max(0.0, row["machine_busy_cores"] - ours)
    row["node_a"] = await node_stats(target.http, target.base)
    for name, edge in edges.items():
        row[f"node_{name}"] = await node_stats(target.http, edge.base_url)
    row.pop("udp", None)
    return row


async def run_phase(
    phase: str,
    target: NodeA,
    edges: dict[str, EdgeNode],
    redis_pid: int,
    counts: list[int],
    baseline: dict[str, Any] | None,
    settings: Settings,
    settle_s: float,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for n in [0, *counts]:
        join: dict[str, Any] = {}
        if n > 0:
            join = await target.set_viewers(n)
            if join["receiving"] < n:
                logger.warning(
                    "%s: only %d of %d viewers receiving (%s)", phase, join["receiving"], n, join
                )
        base = baseline or {}
        row = await measure(target, edges, redis_pid, n, join, base, settings, settle_s)
        attempts: list[dict[str, Any]] = []
        for _ in range(2):
            busy = row["other_load_cores"] > OTHER_LOAD_LIMIT
            if not busy and not row["degraded"]:
                break
            if settings.quiet_budget_s[0] <= 0:
                break
            logger.info(
                "%s N=%d: measuring again (%s)",
                phase,
                n,
                f"other work {row['other_load_cores']:.2f} cores" if busy else row["degraded"],
            )
            if busy:
                await wait_others_quiet(target, settings)  # spends the budget itself
            else:
                settings.quiet_budget_s[0] -= settings.window_s
            attempts.append(row)
            row = await measure(target, edges, redis_pid, n, join, base, settings, 1.0)
        if attempts:
            row["earlier_attempts"] = [
                {
                    k: a.get(k)
                    for k in (
                        "server_cpu_ms_per_s",
                        "node_b_cpu_ms_per_s",
                        "node_c_cpu_ms_per_s",
                        "other_load_cores",
                        "degraded",
                    )
                }
                for a in attempts
            ]
        row["phase"] = phase
        if n == 0 and baseline is None:
            baseline = row
        rows.append(row)
        logger.info(
            "%s N=%d: A %.1f CPU-ms/s, B %.1f, C %.1f, redis %.1f, fps p50 %s, loss %s, latency p50 %s ms, other %.2f cores%s",
            phase, n, row["server_cpu_ms_per_s"], row["node_b_cpu_ms_per_s"], row["node_c_cpu_ms_per_s"],
            row["redis_cpu_ms_per_s"], _f(row.get("viewer_fps_p50")), _f(row.get("viewer_loss_mean"), 4),
            _f(row.get("latency_p50_ms")), row["other_load_cores"],
            f"  DEGRADED: {row['degraded']}" if row.get("degraded") else "",
        )  # fmt: skip
    return rows


def relays_of(stats: dict[str, Any] | None) -> dict[str, Any]:
    """``cluster.relays`` of a node_stats() answer ({} if none)."""
    return ((stats or {}).get("cluster") or {}).get("relays") or {}


def pipe_of(stats: dict[str, Any] | None) -> dict[str, Any]:
    """``cluster.pipe`` of a node_stats() answer (the source's frame pipe; {} if none)."""
    return ((stats or {}).get("cluster") or {}).get("pipe") or {}


def pipe_check(a: dict[str, Any], b: dict[str, Any], c: dict[str, Any]) -> dict[str, Any]:
    """Whether C's relay went over the frame pipe and B's over WebRTC (from /api/stats)."""
    rb, rc, pa = relays_of(b), relays_of(c), pipe_of(a)
    problems = []
    if rc.get("piped") != 1:
        problems.append(f"C: cluster.relays.piped is {rc.get('piped')}, not 1")
    if rb.get("piped") != 0:
        problems.append(f"B: cluster.relays.piped is {rb.get('piped')}, not 0")
    if not (rb.get("made") or 0) >= 1:
        problems.append(f"B made {rb.get('made')} relays, not >= 1")
    if not (pa.get("frames_sent") or 0) > 0:
        problems.append(f"A's frame pipe sent {pa.get('frames_sent')} frames")
    return {
        "ok": not problems,
        "problems": problems,
        "c_relays": rc,
        "b_relays": rb,
        "a_pipe": pa,
    }


def fit(points: list[tuple[int, float]]) -> dict[str, float] | None:
    """Least squares y = fixed + per_viewer * N over the points (N >= 1)."""
    if len(points) < 2:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    return {"fixed_ms_per_s": my - slope * mx, "per_viewer_ms_per_s": slope}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def mode_summary(
    direct: list[dict[str, Any]], rows: list[dict[str, Any]], edge: str, transport: str
) -> dict[str, Any] | None:
    """One relay mode (relayed: B over WebRTC, piped: C over the frame pipe) against direct."""
    if not rows:
        return None
    key = f"node_{edge}_cpu_ms_per_s"
    a0 = direct[0]["server_cpu_ms_per_s"]
    own_a0 = rows[0]["server_cpu_ms_per_s"]
    e0 = rows[0].get(key)
    by_n = {r["viewers"]: r for r in direct}
    per_n: list[dict[str, Any]] = []
    for row in rows[1:]:
        n = row["viewers"]
        d = by_n.get(n) or {}
        edge_net = _sub(row.get(key), e0)
        per_n.append(
            {
                "viewers": n,
                "a_ms_per_s": row["server_cpu_ms_per_s"],
                "direct_a_ms_per_s": d.get("server_cpu_ms_per_s"),
                "direct_a_per_viewer_s": None if not d else (d["server_cpu_ms_per_s"] - a0) / n,
                "a_per_viewer_s": (row["server_cpu_ms_per_s"] - a0) / n,
                "leg_at_a_ms_per_s": row["server_cpu_ms_per_s"] - a0,
                "leg_vs_own_0_ms_per_s": row["server_cpu_ms_per_s"] - own_a0,
                "edge_ms_per_s": row.get(key),
                "edge_net_ms_per_s": edge_net,
                "edge_per_viewer_s": None if edge_net is None else edge_net / n,
                "fps_p50": row.get("viewer_fps_p50"),
                "fps_min": row.get("viewer_fps_min"),
                "direct_fps_p50": d.get("viewer_fps_p50"),
                "loss_mean": row.get("viewer_loss_mean"),
                "direct_loss_mean": d.get("viewer_loss_mean"),
                "latency_p50_direct_ms": d.get("latency_p50_ms"),
                "latency_p95_direct_ms": d.get("latency_p95_ms"),
                "latency_p50_ms": row.get("latency_p50_ms"),
                "latency_p95_ms": row.get("latency_p95_ms"),
                "latency_p50_added_ms": _sub(row.get("latency_p50_ms"), d.get("latency_p50_ms")),
                "latency_p95_added_ms": _sub(row.get("latency_p95_ms"), d.get("latency_p95_ms")),
            }
        )
    return {
        "edge": edge.upper(),
        "transport": transport,
        "a_0_ms_per_s": own_a0,
        "edge_0_ms_per_s": e0,
        "edge_idle_during_direct_ms_per_s": direct[0].get(key),
        "edge_fit": fit([(r["viewers"], r[key] - e0) for r in rows[1:] if e0 is not None]),
        "a_fit": fit([(r["viewers"], r["server_cpu_ms_per_s"] - a0) for r in rows[1:]]),
        "leg_at_a_mean_ms_per_s": _mean([e["leg_at_a_ms_per_s"] for e in per_n]),
        "leg_vs_own_0_mean_ms_per_s": _mean([e["leg_vs_own_0_ms_per_s"] for e in per_n]),
        "per_n": per_n,
    }


def summarize(
    direct: list[dict[str, Any]],
    relayed: list[dict[str, Any]],
    piped: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Per mode (``modes``), plus the relayed (WebRTC) figures under the names
    bench/scale_model.py reads."""
    a0 = direct[0]["server_cpu_ms_per_s"]
    modes = {
        "relayed": mode_summary(direct, relayed, *MODES["relayed"]),
        "piped": mode_summary(direct, piped or [], *MODES["piped"]),
    }
    r = modes["relayed"] or {}
    return {
        "a_direct_0_ms_per_s": a0,
        "a_relayed_0_ms_per_s": r.get("a_0_ms_per_s"),
        "b_idle_during_direct_ms_per_s": direct[0].get("node_b_cpu_ms_per_s"),
        "b_idle_relayed_0_ms_per_s": r.get("edge_0_ms_per_s"),
        "direct_a_fit": fit([(r["viewers"], r["server_cpu_ms_per_s"] - a0) for r in direct[1:]]),
        "relayed_b_fit": r.get("edge_fit"),
        "relayed_a_fit": r.get("a_fit"),
        "relay_leg_at_a_mean_ms_per_s": r.get("leg_at_a_mean_ms_per_s"),
        "relay_leg_vs_relayed_0_mean_ms_per_s": r.get("leg_vs_own_0_mean_ms_per_s"),
        "modes": modes,
    }


def _baseline_note(s: dict[str, Any]) -> list[str]:
    """Says so when A's idle windows disagree by more than a relay leg's size."""
    idle = {"direct": s["a_direct_0_ms_per_s"]} | {
        name: mode["a_0_ms_per_s"] for name, mode in s["modes"].items() if mode
    }
    if max(idle.values()) - min(idle.values()) < 5:
        return []
    listed = ", ".join(f"A({name},0) {value:.1f}" for name, value in idle.items())
    return [
        f"A's idle windows (publisher, no viewer) differ in this run: {listed} CPU-ms/s (other "
        "work on the machine, see the *other cores* column below, or the last phase's relay "
        "still closing): a relay leg's cost is of that order, so the leg is also given against "
        "each phase's own idle window; the per-viewer slopes (fits) do not depend on them.",
        "",
    ]


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _headline(s: dict[str, Any]) -> list[str]:
    df = s["direct_a_fit"] or {}
    modes = [(name, s["modes"].get(name)) for name in MODES]
    direct_last: dict[str, Any] = {}
    for _, mode in modes:
        if mode and mode["per_n"]:
            direct_last = mode["per_n"][-1]

    def cells(get: Any, digits: int = 1) -> str:
        return " | ".join(_f(get(mode), digits) if mode else "-" for _, mode in modes)

    def last(mode: dict[str, Any], key: str) -> Any:
        return mode["per_n"][-1].get(key) if mode["per_n"] else None

    def slope(fitted: dict[str, float] | None) -> float | None:
        return fitted and fitted["per_viewer_ms_per_s"]

    def intercept(fitted: dict[str, float] | None) -> float | None:
        return fitted and fitted["fixed_ms_per_s"]

    n_last = _f(direct_last.get("viewers"))
    return [
        "## Headline",
        "",
        "| metric | direct (viewers at A) | relayed (viewers at B, WebRTC relay) | piped (viewers at C, frame pipe) |",
        "|---|---:|---:|---:|",
        f"| **source's cost of the relay leg** = A(mode,N) - A(direct,0), mean over N, CPU-ms/s (A(direct,0) = {_f(s['a_direct_0_ms_per_s'])}) | - | "
        + cells(lambda m: m["leg_at_a_mean_ms_per_s"])
        + " |",
        "| the same against the phase's own idle window, A(mode,N) - A(mode,0), mean over N | - | "
        + cells(lambda m: m["leg_vs_own_0_mean_ms_per_s"])
        + " |",
        f"| A's idle window of the phase, A(mode,0), CPU-ms/s | {_f(s['a_direct_0_ms_per_s'])} | "
        + cells(lambda m: m["a_0_ms_per_s"])
        + " |",
        f"| A: CPU-ms/s per viewer-second (fit slope, net of A(direct,0); ~0 when the viewers are at an edge: one relay whatever N) | {_f(slope(df), 2)} | "
        + cells(lambda m: slope(m["a_fit"]), 2)
        + " |",
        "| edge: fixed cost of receiving the relay (fit intercept, net of the edge's N=0 window), CPU-ms/s | - | "
        + cells(lambda m: intercept(m["edge_fit"]))
        + " |",
        f"| per-viewer cost where the viewers are: CPU-ms per viewer-second (fit slope; A for direct, the edge for the others) | {_f(slope(df), 2)} | "
        + cells(lambda m: slope(m["edge_fit"]), 2)
        + " |",
        f"| publisher -> viewer latency p50 / p95 at N = {n_last}, ms | {_f(direct_last.get('latency_p50_direct_ms'))} / {_f(direct_last.get('latency_p95_direct_ms'))} | "
        + " | ".join(
            f"{_f(last(m, 'latency_p50_ms'))} / {_f(last(m, 'latency_p95_ms'))}" if m else "-"
            for _, m in modes
        )
        + " |",
        f"| added by the hop (mode - direct) p50 / p95 at N = {n_last}, ms | - | "
        + " | ".join(
            f"{_f(last(m, 'latency_p50_added_ms'))} / {_f(last(m, 'latency_p95_added_ms'))}"
            if m
            else "-"
            for _, m in modes
        )
        + " |",
        "",
    ]


def _per_n(s: dict[str, Any]) -> list[str]:
    lines = [
        "## Per N",
        "",
        "Direct rows: A serves the N viewers. Relayed/piped rows: the edge (B/C) serves them from one relay "
        "of A; *leg at A* = A(mode,N) - A(direct,0) (in brackets: - A(mode,0)); *edge net* = edge(N) - "
        "edge(mode,0); *added* = mode - direct latency at the same N.",
        "",
        "| N | mode | A CPU-ms/s | leg at A, CPU-ms/s | A per viewer-s (net) | edge net CPU-ms/s | edge per viewer-s (net) | viewer fps p50 / min | frame loss mean | latency p50 / p95 ms | added p50 / p95 ms |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    entries: dict[int, list[tuple[str, dict[str, Any]]]] = {}
    for name, mode in s["modes"].items():
        for e in (mode or {}).get("per_n", []):
            entries.setdefault(e["viewers"], []).append((name, e))
    for n, group in sorted(entries.items()):
        d = group[0][1]
        lines.append(
            f"| {n} | direct (A) | {_f(d['direct_a_ms_per_s'])} | - | {_f(d['direct_a_per_viewer_s'], 2)} | - | - | "
            f"{_f(d['direct_fps_p50'])} / - | {_pct(d['direct_loss_mean'])} | "
            f"{_f(d['latency_p50_direct_ms'])} / {_f(d['latency_p95_direct_ms'])} | - |"
        )
        for name, e in group:
            mode = s["modes"][name]
            lines.append(
                f"| {n} | {name} ({mode['edge']}, {mode['transport']}) | {_f(e['a_ms_per_s'])} | "
                f"{_f(e['leg_at_a_ms_per_s'])} ({_f(e['leg_vs_own_0_ms_per_s'])}) | {_f(e['a_per_viewer_s'], 2)} | "
                f"{_f(e['edge_net_ms_per_s'])} | {_f(e['edge_per_viewer_s'], 2)} | "
                f"{_f(e['fps_p50'])} / {_f(e['fps_min'])} | {_pct(e['loss_mean'])} | "
                f"{_f(e['latency_p50_ms'])} / {_f(e['latency_p95_ms'])} | "
                f"{_f(e['latency_p50_added_ms'])} / {_f(e['latency_p95_added_ms'])} |"
            )
    lines.append("")
    return lines


def _pipe_check_lines(check: dict[str, Any] | None) -> list[str]:
    if not check:
        return []
    rb, rc, pa = check["b_relays"], check["c_relays"], check["a_pipe"]
    verdict = "**passed**" if check["ok"] else "**FAILED**: " + "; ".join(check["problems"])
    return [
        "## Transport check",
        "",
        f"After the piped phase, from `/api/stats`: C `cluster.relays` made {rc.get('made')}, piped "
        f"{rc.get('piped')}, failed {rc.get('failed')}; B made {rb.get('made')}, piped {rb.get('piped')}, "
        f"failed {rb.get('failed')}; A `cluster.pipe` links {pa.get('links')}, served {pa.get('served')}, "
        f"frames_sent {pa.get('frames_sent')}, dropped {pa.get('dropped')}. C's relay over the frame pipe "
        f"and B's over WebRTC: {verdict}.",
        "",
    ]


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    git = results["git"]
    load = ", ".join(f"{x:.2f}" for x in m["loadavg_at_start"])
    lines = [
        "# Relay: viewers on other cluster nodes, over WebRTC and over the frame pipe (bench/relay.py)",
        "",
        f"- Command: `{results['command']}`",
        f"- Date: {results['date']}, took {results.get('duration_s', '-')} s",
        f"- Code measured: git {git.get('head')}, uncommitted changes: {results.get('uncommitted_count')}"
        f" (`git status --porcelain` lines), gateway/ sha256 {git.get('gateway_sha256')}",
        f"- Machine: {m['nproc']} cores ({m['cpu_model']}), load average at start {load}; "
        f"other work before the run {m.get('other_load_before_cores', '-')} cores; shared with other work (noisy).",
        "- Setup: one redis-server, gateway nodes A, B and C (cluster mode: heartbeat_s "
        f"{HEARTBEAT_S}, node_ttl_s {NODE_TTL_S}, relay on, host-only ICE on 127.0.0.1, drain_timeout_s 0, "
        "log level warning, limits.sessions_per_ip_per_s/burst 1000 since every viewer comes from 127.0.0.1). "
        "A and C share one `cluster.pipe_dir` (a fresh temporary directory); B has none. bench/publisher.py "
        "(pre-encoded 720p30 VP8 ~1.5 Mbps + Opus, no encode) WHIPs to A, so the room is homed on A; "
        f"{results['settings']['loadgen_procs']} bench/loadgen.py processes of non-decoding aiortc viewers "
        "WHEP, one phase after the other, to:",
        "  - **direct**: A;",
        "  - **relayed**: B, which pulls the room from A over **WebRTC** (B's one relay is a WHEP viewer of A: "
        "ICE, DTLS, SRTP, RTP, gateway/cluster/relay.py) and fans it out;",
        "  - **piped**: C, which pulls the room from A over the **frame pipe** (A's Unix socket in the shared "
        "pipe_dir: each encoded frame written once, keyframe requests back, no DTLS/SRTP/RTP; "
        "gateway/cluster/pipe_relay.py, pipe_server.py) and fans it out.",
        f"- Each phase measures N = 0 (publisher, no viewer) then the N below; window {results['settings']['window_s']} s "
        f"after a {results['settle_s']} s settle. The source's cost of the relay leg is A(mode,N) - A(direct,0), "
        "the same baseline for both modes.",
        "",
    ]
    if results.get("error"):
        lines += [f"**The run failed:** `{results['error']}`", ""]
    s = results.get("summary")
    if s and "modes" in s:
        lines += [*_headline(s), *_baseline_note(s), *_pipe_check_lines(results.get("pipe_check"))]
        lines += _per_n(s)
    elif results.get("pipe_check"):
        lines += _pipe_check_lines(results["pipe_check"])
    lines += [
        "## Every window",
        "",
        "| phase | N | A CPU-ms/s | B CPU-ms/s | C CPU-ms/s | redis | A subscribers | edge subscribers | edge relays made/piped/failed | A pipe links / frames sent / dropped (window) | viewer fps p50 / min (publisher) | frame loss mean / max | RTP loss | latency p50 / p95 ms (samples) | loadgen CPU-ms/s | busy / other cores | note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    previous_sent: int | None = None
    for row in [*results.get("direct", []), *results.get("relayed", []), *results.get("piped", [])]:
        edge = MODES[row["phase"]][0] if row["phase"] in MODES else None
        edge_stats = row.get(f"node_{edge}") if edge else None
        relays = relays_of(edge_stats)
        pipe = pipe_of(row.get("node_a"))
        sent = pipe.get("frames_sent")
        window_sent = None if sent is None or previous_sent is None else sent - previous_sent
        previous_sent = sent
        note = row.get("degraded") or ""
        if row["other_load_cores"] > OTHER_LOAD_LIMIT:
            busy_note = f"other work {row['other_load_cores']:.2f} cores: noisy"
            if row["machine_busy_cores"] > 0.9 * (m["nproc"] or 1):
                busy_note += ", machine saturated"
            note = f"{note}; {busy_note}" if note else busy_note
        if row.get("earlier_attempts"):
            note = (note + f" (measured {len(row['earlier_attempts']) + 1} times)").strip()
        relay_cell = (
            f"{relays.get('made', '-')}/{relays.get('piped', '-')}/{relays.get('failed', '-')}"
            if edge
            else "-"
        )
        pipe_cell = (
            f"{pipe.get('links', '-')} / {_f(window_sent)} / {pipe.get('dropped', '-')}"
            if pipe
            else "-"
        )
        lines.append(
            f"| {row['phase']} | {row['viewers']} | {_f(row['server_cpu_ms_per_s'])} | {_f(row.get('node_b_cpu_ms_per_s'))} | "
            f"{_f(row.get('node_c_cpu_ms_per_s'))} | {_f(row['redis_cpu_ms_per_s'])} | {_f((row.get('node_a') or {}).get('room_subscribers'))} | "
            f"{_f((edge_stats or {}).get('room_subscribers'))} | {relay_cell} | {pipe_cell} | "
            f"{_f(row.get('viewer_fps_p50'))} / {_f(row.get('viewer_fps_min'))} ({_f(row.get('publisher_fps'))}) | "
            f"{_pct(row.get('viewer_loss_mean'))} / {_pct(row.get('viewer_loss_max'))} | {_pct(row.get('rtp_loss'))} | "
            f"{_f(row.get('latency_p50_ms'))} / {_f(row.get('latency_p95_ms'))} ({row.get('latency_samples', 0)}) | "
            f"{_f(row.get('loadgen_cpu_ms_per_s'))} | {_f(row['machine_busy_cores'], 2)} / {_f(row['other_load_cores'], 2)} | {note} |"
        )
    lines += [
        "",
        "CPU is utime+stime of the whole process (all threads) from /proc/PID/stat over the window, as CPU-ms "
        "per second. A's window is bench/broadcast.py's (Target.measure); B's, C's and redis's are sampled around "
        "it (the same window plus the few commands before and after it). *Net* subtracts the N=0 window of the "
        "same run: A(direct, 0) for A, the edge's N=0 window of its own phase (up, in the cluster, no relay) for "
        "B and C. The fits are least squares CPU(N) - CPU(0) = fixed + per_viewer * N over N>=1. *A subscribers* "
        "counts B's WebRTC relay (a WHEP viewer of A) but not C's pipe link (A pipe links); *frames sent* is "
        "the growth of A's `cluster.pipe.frames_sent` since the previous row (video and audio). Latency is the "
        "publisher handing a frame to aiortc -> the viewer's tap completing it, matched by frame content "
        "(bench/loadgen.py), on one monotonic clock; *added* is mode minus direct at the same N (the hop "
        "through B or C, plus the edge's own forwarding). Frame loss is from gaps in each viewer's RTP "
        "timestamps; RTP loss from aiortc's receiver counters. A window with more than 0.3 cores of other "
        "work, or degraded viewers, is measured again (budget-limited). Everything runs on the same 2 cores: "
        "the load generators cost more than the gateways.",
        "",
    ]
    return "\n".join(lines)


def uncommitted_count() -> int | None:
    try:
        out = subprocess.run(
            ["git", "--no-optional-locks", "status", "--porcelain"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except Exception:
        return None
    return len(out.splitlines())


async def main_async(args: argparse.Namespace) -> int:
    from tests.support.redis_server import start_redis

    # SIGTERM ends the run through its finally: every started process is stopped by PID.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    quick = args.quick
    counts = (
        broadcast.parse_counts(args.viewers) if args.viewers else ([1, 5] if quick else [1, 10, 40])
    )
    counts = [n for n in counts if n > 0]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    settle_s = args.settle if args.settle is not None else (2.0 if quick else 3.0)
    settings = Settings(
        viewers=counts,
        naive_viewers=[],
        window_s=args.window or (4.0 if quick else 10.0),
        settle_s=0.0,  # the settle is ours, before B's window starts (see measure)
        loadgen_procs=args.loadgen_procs,
        profile_s=0.0,
        profile_at=[],
        live_sequential=0,
        live_spacing_s=0.0,
        live_burst=0,
        live_latency_s=0.0,
        phases=["gateway"],
        run_dir=OUT / f"relay-{stamp}",
        quiet_budget_s=[args.quiet_budget],
    )
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    log_dir = settings.run_dir / "logs"
    started = time.monotonic()
    results: dict[str, Any] = {
        **run_header("bench.relay"),
        "uncommitted_count": uncommitted_count(),
        "settings": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in settings.__dict__.items()
        },
        "settle_s": settle_s,
    }
    logger.info("run directory %s", settings.run_dir)
    results["machine"]["other_load_before_cores"] = await wait_quiet(args.wait_quiet)
    input_file = ensure_input_file()
    udp = raise_udp_buffers()
    results["udp_buffers"] = udp
    # A and C share it (C pulls the room from A over the frame pipe); B has none (WebRTC).
    pipe_dir = tempfile.mkdtemp(prefix="gw-pipes-")
    results["pipe_dir"] = pipe_dir
    redis = None
    edges: dict[str, EdgeNode] = {}
    target: NodeA | None = None
    try:
        redis_dir = settings.run_dir / "redis"
        redis_dir.mkdir(exist_ok=True)
        redis = await start_redis(redis_dir)
        results["redis_pid"] = redis.process.pid
        target = NodeA(settings, input_file, redis.url, pipe_dir)
        for name, edge_pipe_dir in (("b", ""), ("c", pipe_dir)):
            port = free_port()
            config = settings.run_dir / f"node-{name}.yaml"
            config.write_text(node_config(name, port, redis.url, edge_pipe_dir))
            edge = await EdgeNode.start(
                f"node-{name}",
                [PYTHON, "-m", "gateway", "--config", str(config), "--port", str(port)],
                log_dir,
            )
            edges[name] = edge  # before anything can fail: the finally stops it
            edge.base_url = f"http://127.0.0.1:{port}"
        target.extra_pids = {f"node_{name}": [e.pid] for name, e in edges.items()} | {
            "redis": [redis.process.pid]
        }
        async with aiohttp.ClientSession() as http:
            for edge in edges.values():
                await wait_healthy(http, edge.base_url, edge)
        await target.start()  # node A, then the publisher WHIPs to A: the room is homed there
        results["pids"] = target.pids()
        logger.info("pids %s, pipe_dir %s", results["pids"], pipe_dir)
        assert target.http is not None
        redis_pid = redis.process.pid
        direct = await run_phase(
            "direct", target, edges, redis_pid, counts, None, settings, settle_s
        )
        results["direct"] = direct
        for phase, (edge_name, _) in MODES.items():
            await target.drop_viewers()
            # No viewer (nor B's lingering WebRTC relay, a subscriber of A) left at A.
            await wait_subscribers(target.http, target.base, 0, 15 + 2 * settle_s)
            edge = edges[edge_name]
            target.viewer_base = edge.base_url
            target.name = phase
            results[phase] = await run_phase(
                phase, target, edges, redis_pid, counts, direct[0], settings, settle_s
            )
            if phase == "piped":
                check = pipe_check(
                    await node_stats(target.http, target.base),
                    await node_stats(target.http, edges["b"].base_url),
                    await node_stats(target.http, edges["c"].base_url),
                )
                results["pipe_check"] = check
                print(
                    f"pipe check: C relays {check['c_relays']}, B relays {check['b_relays']}, "
                    f"A pipe {check['a_pipe']}: {'OK' if check['ok'] else 'FAILED'}",
                    flush=True,
                )
        results["summary"] = summarize(direct, results["relayed"], results["piped"])
        check = results["pipe_check"]
        if not check["ok"]:
            raise RuntimeError("transport check failed: " + "; ".join(check["problems"]))
    except Exception as exc:
        logger.exception("the run failed")
        results["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if target is not None:
            await target.stop()  # load generators, publisher, node A (by PID)
        for edge in edges.values():
            await edge.stop()  # B and C, by PID
        if redis is not None:
            await redis.stop()
        restore_udp_buffers(udp)
        shutil.rmtree(pipe_dir, ignore_errors=True)  # ours, made above
    results["duration_s"] = round(time.monotonic() - started, 1)
    out_json = Path(args.json) if args.json else RESULTS / "relay.json"
    out_md = Path(args.md) if args.md else RESULTS / "relay.md"
    out_json.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, default=str) + "\n"
    out_json.write_text(text)
    (settings.run_dir / "relay.json").write_text(text)
    out_md.write_text(markdown(results))
    logger.info("wrote %s and %s (%.0f s)", out_md, out_json, results["duration_s"])
    return 1 if results.get("error") else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.relay",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--viewers", help="comma-separated N >= 1 (default 1,10,40; N=0 is always measured)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: N = 1,5, 4 s windows")
    parser.add_argument("--window", type=float, help="measurement window in seconds (default 10)")
    parser.add_argument("--settle", type=float, help="seconds after viewers join (default 3)")
    parser.add_argument("--loadgen-procs", type=int, default=2, help="viewer processes (default 2)")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=30.0,
        help="seconds to wait for a quiet machine first (default 30)",
    )
    parser.add_argument(
        "--quiet-budget",
        type=float,
        default=90.0,
        help="seconds the run may spend re-measuring windows with other work (default 90)",
    )
    parser.add_argument("--json", help="output JSON (default bench/results/relay.json)")
    parser.add_argument("--md", help="output Markdown (default bench/results/relay.md)")
    parser.add_argument(
        "--render", metavar="JSON", help="only re-render the Markdown of a results JSON"
    )
    args = parser.parse_args(argv)
    if args.render:
        out_md = Path(args.md) if args.md else RESULTS / "relay.md"
        results = json.loads(Path(args.render).read_text())
        if results.get("direct") and results.get("relayed"):
            results["summary"] = summarize(
                results["direct"], results["relayed"], results.get("piped")
            )
        out_md.write_text(markdown(results))
        print(f"wrote {out_md}")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
