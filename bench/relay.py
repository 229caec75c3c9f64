"""The relay benchmark: viewers on another cluster node, beside viewers on the home node.

    .venv/bin/python -m bench.relay                        # default run, ~4-5 min
    .venv/bin/python -m bench.relay --quick                # smoke run (N = 1,5; 4 s windows), ~2 min
    .venv/bin/python -m bench.relay --viewers 1,10,40,80 --window 12

One run, one redis-server, two gateway nodes (A and B, cluster mode, 127.0.0.1, host-only ICE),
the broadcast benchmark's publisher (bench/publisher.py: pre-encoded 720p30 VP8 + Opus, WHIP to
A, so the room is homed on A) and its non-decoding load generators (bench/loadgen.py):

  direct   N viewers WHEP at A (N = 0 first: the baseline A(direct, 0))
  relayed  N viewers WHEP at B: B makes one relay (a WHEP viewer of A) and fans it out

Per window (after a settle time): utime+stime of A and B (and redis) from /proc/PID/stat as
CPU-ms per second, per viewer-second net of N=0, the relay leg's cost at A =
A(relayed, N) - A(direct, 0), viewer fps/loss, and publisher -> viewer latency matched by
frame content (bench/loadgen.py) direct vs relayed. Writes bench/results/relay.md and
bench/results/relay.json (or --md/--json). Every process started is stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
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


def node_config(node: str, port: int, redis_url: str) -> str:
    """bench/broadcast.py's gateway config plus the cluster section."""
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
        f"  node_ttl_s: {NODE_TTL_S}\n"
    )


class NodeB(Process):
    """Node B: where the relayed viewers go; it relays the room from A."""

    base_url = ""


class NodeA(Target):
    """Node A (the room's home, where the publisher WHIPs) with the publisher and the load
    generators, whose viewers go to ``viewer_base``: A (direct) or B (relayed)."""

    def __init__(self, settings: Settings, input_file: Path, redis_url: str) -> None:
        super().__init__("gateway", settings, input_file)
        self.name = "node-a"
        self.redis_url = redis_url
        self.viewer_base = self.base
        self.extra_pids: dict[str, list[int]] = {}

    @property
    def url(self) -> str:
        return f"{self.viewer_base}/whep/{ROOM}"

    def server_args(self) -> list[str]:
        config = self.settings.run_dir / "node-a.yaml"
        config.write_text(node_config("a", self.port, self.redis_url))
        return [PYTHON, "-m", "gateway", "--config", str(config), "--port", str(self.port)]

    def pids(self) -> dict[str, list[int]]:
        # B and redis too, so that wait_others_quiet does not count them as other work.
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
    b: NodeB,
    redis_pid: int,
    n: int,
    join: dict[str, Any],
    baseline: dict[str, Any],
    settings: Settings,
    settle_s: float,
) -> dict[str, Any]:
    """broadcast's window (A, publisher, loadgens, latency), with B and redis sampled around
    it (their window includes the few ms of commands before and after A's)."""
    assert target.http is not None
    await asyncio.sleep(settle_s)
    t0 = time.monotonic()
    b0, r0 = cpu_sample(b.pid, t0), cpu_sample(redis_pid, t0)
    if n == 0:
        row = await target.measure(settings.window_s)
        row["join"] = join
        row["degraded"] = None
    else:
        row = await measure_row(target, n, join, baseline, settings)
    t1 = time.monotonic()
    b1, r1 = cpu_sample(b.pid, t1), cpu_sample(redis_pid, t1)
    row["node_b_cpu_ms_per_s"] = cpu_ms_per_s(b0, b1)
    row["redis_cpu_ms_per_s"] = cpu_ms_per_s(r0, r1)
    row["node_b_window_s"] = round(t1 - t0, 2)
    ours = (
        row["server_cpu_ms_per_s"]
        + row["publisher_cpu_ms_per_s"]
        + row["loadgen_cpu_ms_per_s"]
        + row["node_b_cpu_ms_per_s"]
        + row["redis_cpu_ms_per_s"]
    ) / 1000
    row["other_load_cores"] = max(0.0, row["machine_busy_cores"] - ours)
    row["node_a"] = await node_stats(target.http, target.base)
    row["node_b"] = await node_stats(target.http, b.base_url)
    row.pop("udp", None)
    return row


async def run_phase(
    phase: str,
    target: NodeA,
    b: NodeB,
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
        row = await measure(target, b, redis_pid, n, join, base, settings, settle_s)
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
            row = await measure(target, b, redis_pid, n, join, base, settings, 1.0)
        if attempts:
            row["earlier_attempts"] = [
                {
                    k: a.get(k)
                    for k in (
                        "server_cpu_ms_per_s",
                        "node_b_cpu_ms_per_s",
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
            "%s N=%d: A %.1f CPU-ms/s, B %.1f, redis %.1f, fps p50 %s, loss %s, latency p50 %s ms, other %.2f cores%s",
            phase, n, row["server_cpu_ms_per_s"], row["node_b_cpu_ms_per_s"], row["redis_cpu_ms_per_s"],
            _f(row.get("viewer_fps_p50")), _f(row.get("viewer_loss_mean"), 4), _f(row.get("latency_p50_ms")),
            row["other_load_cores"], f"  DEGRADED: {row['degraded']}" if row.get("degraded") else "",
        )  # fmt: skip
    return rows


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


def summarize(direct: list[dict[str, Any]], relayed: list[dict[str, Any]]) -> dict[str, Any]:
    a0 = direct[0]["server_cpu_ms_per_s"]
    b0_direct = direct[0]["node_b_cpu_ms_per_s"]
    b0 = relayed[0]["node_b_cpu_ms_per_s"]
    by_n = {r["viewers"]: r for r in direct}
    per_n: list[dict[str, Any]] = []
    for row in relayed[1:]:
        n = row["viewers"]
        d = by_n.get(n)
        entry: dict[str, Any] = {
            "viewers": n,
            "direct_a_per_viewer_s": None if d is None else (d["server_cpu_ms_per_s"] - a0) / n,
            "relayed_a_per_viewer_s": (row["server_cpu_ms_per_s"] - a0) / n,
            "relayed_b_per_viewer_s": (row["node_b_cpu_ms_per_s"] - b0) / n,
            "relay_leg_at_a_ms_per_s": row["server_cpu_ms_per_s"] - a0,
            "relay_leg_vs_relayed_0_ms_per_s": row["server_cpu_ms_per_s"]
            - relayed[0]["server_cpu_ms_per_s"],
            "relayed_b_net_ms_per_s": row["node_b_cpu_ms_per_s"] - b0,
            "latency_p50_direct_ms": None if d is None else d.get("latency_p50_ms"),
            "latency_p50_relayed_ms": row.get("latency_p50_ms"),
            "latency_p95_direct_ms": None if d is None else d.get("latency_p95_ms"),
            "latency_p95_relayed_ms": row.get("latency_p95_ms"),
        }
        if (
            d is not None
            and d.get("latency_p50_ms") is not None
            and row.get("latency_p50_ms") is not None
        ):
            entry["latency_p50_added_ms"] = row["latency_p50_ms"] - d["latency_p50_ms"]
            entry["latency_p95_added_ms"] = row["latency_p95_ms"] - d["latency_p95_ms"]
        per_n.append(entry)
    legs = [e["relay_leg_at_a_ms_per_s"] for e in per_n]
    return {
        "a_direct_0_ms_per_s": a0,
        "a_relayed_0_ms_per_s": relayed[0]["server_cpu_ms_per_s"],
        "b_idle_during_direct_ms_per_s": b0_direct,
        "b_idle_relayed_0_ms_per_s": b0,
        "direct_a_fit": fit([(r["viewers"], r["server_cpu_ms_per_s"] - a0) for r in direct[1:]]),
        "relayed_b_fit": fit([(r["viewers"], r["node_b_cpu_ms_per_s"] - b0) for r in relayed[1:]]),
        "relayed_a_fit": fit([(r["viewers"], r["server_cpu_ms_per_s"] - a0) for r in relayed[1:]]),
        "relay_leg_at_a_mean_ms_per_s": sum(legs) / len(legs) if legs else None,
        "relay_leg_vs_relayed_0_mean_ms_per_s": sum(
            e["relay_leg_vs_relayed_0_ms_per_s"] for e in per_n
        )
        / len(per_n)
        if per_n
        else None,
        "per_n": per_n,
    }


def _baseline_note(s: dict[str, Any]) -> list[str]:
    """Says so when A's two idle windows disagree by more than the relay leg's size."""
    drift = s["a_relayed_0_ms_per_s"] - s["a_direct_0_ms_per_s"]
    if abs(drift) < 5:
        return []
    return [
        f"A's two idle windows (publisher, no viewer) differ by {drift:+.1f} CPU-ms/s in this run "
        "(other work on the machine, see the last column below): the relay leg's cost is of that "
        "order, so both baselines are given; the per-viewer slopes (fits) do not depend on them.",
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


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    git = results["git"]
    load = ", ".join(f"{x:.2f}" for x in m["loadavg_at_start"])
    lines = [
        "# Relay: viewers on another cluster node (bench/relay.py)",
        "",
        f"- Command: `{results['command']}`",
        f"- Date: {results['date']}, took {results.get('duration_s', '-')} s",
        f"- Code measured: git {git.get('head')}, uncommitted changes: {results.get('uncommitted_count')}"
        f" (`git status --porcelain` lines), gateway/ sha256 {git.get('gateway_sha256')}",
        f"- Machine: {m['nproc']} cores ({m['cpu_model']}), load average at start {load}; "
        f"other work before the run {m.get('other_load_before_cores', '-')} cores; shared with other work (noisy).",
        "- Setup: one redis-server, gateway nodes A and B (cluster mode: heartbeat_s "
        f"{HEARTBEAT_S}, node_ttl_s {NODE_TTL_S}, relay on, host-only ICE on 127.0.0.1, drain_timeout_s 0, "
        "log level warning, limits.sessions_per_ip_per_s/burst 1000 since every viewer comes from 127.0.0.1); bench/publisher.py (pre-encoded 720p30 VP8 ~1.5 Mbps + Opus, no encode) WHIPs to A, "
        f"so the room is homed on A; {results['settings']['loadgen_procs']} bench/loadgen.py processes of "
        "non-decoding aiortc viewers WHEP to A (direct) or to B (relayed: B's one relay is a WHEP viewer of A). "
        f"Window {results['settings']['window_s']} s after a {results['settle_s']} s settle.",
        "",
    ]
    if results.get("error"):
        lines += [f"**The run failed:** `{results['error']}`", ""]
    s = results.get("summary")
    if s:
        df, bf, af = s["direct_a_fit"], s["relayed_b_fit"], s["relayed_a_fit"]
        lines += [
            "## Headline",
            "",
            "| metric | value |",
            "|---|---:|",
            f"| A, direct: CPU-ms per viewer-second (linear fit over N>=1, net of A(direct,0) = {_f(s['a_direct_0_ms_per_s'])}) | {_f(df and df['per_viewer_ms_per_s'], 2)} |",
            f"| B, relayed: CPU-ms per viewer-second (fit, net of B(0) = {_f(s['b_idle_relayed_0_ms_per_s'])}) | {_f(bf and bf['per_viewer_ms_per_s'], 2)} |",
            f"| B, relayed: fixed cost of receiving the relay (fit intercept), CPU-ms/s | {_f(bf and bf['fixed_ms_per_s'])} |",
            f"| A, relayed: CPU-ms/s per viewer at B (fit slope; ~0 if one relay whatever N) | {_f(af and af['per_viewer_ms_per_s'], 2)} |",
            f"| relay leg at A = A(relayed,N) - A(direct,0), mean over N, CPU-ms/s | {_f(s['relay_leg_at_a_mean_ms_per_s'])} |",
            f"| A(relayed, 0) (second idle window, no relay yet), CPU-ms/s | {_f(s['a_relayed_0_ms_per_s'])} |",
            f"| relay leg at A against that second idle window, A(relayed,N) - A(relayed,0), mean over N | {_f(s['relay_leg_vs_relayed_0_mean_ms_per_s'])} |",
            "",
            *_baseline_note(s),
            "## Per N",
            "",
            "| N | A direct per viewer-s (net) | A relayed per viewer-s (net) | relay leg at A, CPU-ms/s (vs A(relayed,0)) | B relayed net, CPU-ms/s | B relayed per viewer-s (net) | latency p50 direct / relayed / added ms | p95 direct / relayed / added ms |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for e in s["per_n"]:
            lines.append(
                f"| {e['viewers']} | {_f(e['direct_a_per_viewer_s'], 2)} | {_f(e['relayed_a_per_viewer_s'], 2)} | "
                f"{_f(e['relay_leg_at_a_ms_per_s'])} ({_f(e['relay_leg_vs_relayed_0_ms_per_s'])}) | {_f(e['relayed_b_net_ms_per_s'])} | {_f(e['relayed_b_per_viewer_s'], 2)} | "
                f"{_f(e['latency_p50_direct_ms'])} / {_f(e['latency_p50_relayed_ms'])} / {_f(e.get('latency_p50_added_ms'))} | "
                f"{_f(e['latency_p95_direct_ms'])} / {_f(e['latency_p95_relayed_ms'])} / {_f(e.get('latency_p95_added_ms'))} |"
            )
        lines.append("")
    lines += [
        "## Every window",
        "",
        "| phase | N | A CPU-ms/s | B CPU-ms/s | redis | A subscribers | B subscribers | B relays made/failed | viewer fps p50 / min (publisher) | frame loss mean / max | RTP loss | latency p50 / p95 ms (samples) | loadgen CPU-ms/s | busy / other cores | note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in [*results.get("direct", []), *results.get("relayed", [])]:
        relays = ((row.get("node_b") or {}).get("cluster") or {}).get("relays") or {}
        note = row.get("degraded") or ""
        if row["other_load_cores"] > OTHER_LOAD_LIMIT:
            busy_note = f"other work {row['other_load_cores']:.2f} cores: noisy"
            if row["machine_busy_cores"] > 0.9 * (m["nproc"] or 1):
                busy_note += ", machine saturated"
            note = f"{note}; {busy_note}" if note else busy_note
        if row.get("earlier_attempts"):
            note = (note + f" (measured {len(row['earlier_attempts']) + 1} times)").strip()
        lines.append(
            f"| {row['phase']} | {row['viewers']} | {_f(row['server_cpu_ms_per_s'])} | {_f(row['node_b_cpu_ms_per_s'])} | "
            f"{_f(row['redis_cpu_ms_per_s'])} | {_f((row.get('node_a') or {}).get('room_subscribers'))} | "
            f"{_f((row.get('node_b') or {}).get('room_subscribers'))} | {relays.get('made', '-')}/{relays.get('failed', '-')} | "
            f"{_f(row.get('viewer_fps_p50'))} / {_f(row.get('viewer_fps_min'))} ({_f(row.get('publisher_fps'))}) | "
            f"{_pct(row.get('viewer_loss_mean'))} / {_pct(row.get('viewer_loss_max'))} | {_pct(row.get('rtp_loss'))} | "
            f"{_f(row.get('latency_p50_ms'))} / {_f(row.get('latency_p95_ms'))} ({row.get('latency_samples', 0)}) | "
            f"{_f(row.get('loadgen_cpu_ms_per_s'))} | {_f(row['machine_busy_cores'], 2)} / {_f(row['other_load_cores'], 2)} | {note} |"
        )
    lines += [
        "",
        "CPU is utime+stime of the whole process (all threads) from /proc/PID/stat over the window, as CPU-ms "
        "per second. A's window is bench/broadcast.py's (Target.measure); B's and redis's are sampled around it "
        "(the same window plus the few commands before and after it). *Net* subtracts the N=0 window of the same "
        "run: A(direct, 0) for A, B's relayed N=0 window (B up, in the cluster, no relay) for B. The fits are "
        "least squares CPU(N) - CPU(0) = fixed + per_viewer * N over N>=1. Latency is the publisher handing a "
        "frame to aiortc -> the viewer's tap completing it, matched by frame content (bench/loadgen.py), on one "
        "monotonic clock; *added* is relayed minus direct at the same N (the hop through B, plus B's own "
        "forwarding). Frame loss is from gaps in each viewer's RTP timestamps; RTP loss from aiortc's receiver "
        "counters. A window with more than 0.3 cores of other work, or degraded viewers, is measured again "
        "(budget-limited). Everything runs on the same 2 cores: the load generators cost more than the gateways.",
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
    redis = None
    b: NodeB | None = None
    target: NodeA | None = None
    try:
        redis_dir = settings.run_dir / "redis"
        redis_dir.mkdir(exist_ok=True)
        redis = await start_redis(redis_dir)
        results["redis_pid"] = redis.process.pid
        target = NodeA(settings, input_file, redis.url)
        b_port = free_port()
        b_config = settings.run_dir / "node-b.yaml"
        b_config.write_text(node_config("b", b_port, redis.url))
        b = await NodeB.start(
            "node-b",
            [PYTHON, "-m", "gateway", "--config", str(b_config), "--port", str(b_port)],
            log_dir,
        )
        b.base_url = f"http://127.0.0.1:{b_port}"
        target.extra_pids = {"node_b": [b.pid], "redis": [redis.process.pid]}
        async with aiohttp.ClientSession() as http:
            await wait_healthy(http, b.base_url, b)
        await target.start()  # node A, then the publisher WHIPs to A: the room is homed there
        results["pids"] = target.pids()
        logger.info("pids %s", results["pids"])
        direct = await run_phase(
            "direct", target, b, redis.process.pid, counts, None, settings, settle_s
        )
        results["direct"] = direct
        await target.drop_viewers()
        assert target.http is not None
        await wait_subscribers(target.http, target.base, 0, 15)
        target.viewer_base = b.base_url
        target.name = "relayed"
        relayed = await run_phase(
            "relayed", target, b, redis.process.pid, counts, direct[0], settings, settle_s
        )
        results["relayed"] = relayed
        results["summary"] = summarize(direct, relayed)
    except Exception as exc:
        logger.exception("the run failed")
        results["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if target is not None:
            await target.stop()  # load generators, publisher, node A (by PID)
        if b is not None:
            await b.stop()
        if redis is not None:
            await redis.stop()
        restore_udp_buffers(udp)
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
            results["summary"] = summarize(results["direct"], results["relayed"])
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
