"""The workers benchmark: one broadcast in one gateway process, then over two workers.

    .venv/bin/python -m bench.workers                      # default run (N = 0,20,60), ~2-4 min
    .venv/bin/python -m bench.workers --quick              # smoke run (N = 0,4; 4 s windows), ~1 min
    .venv/bin/python -m bench.workers --viewers 0,40,120 --window 12

One run, the broadcast benchmark's publisher (bench/publisher.py: pre-encoded 720p30 VP8 +
Opus, no encode) and its non-decoding load generators (bench/loadgen.py), against:

  one      `server.workers: 1`, today's one gateway process
  workers  `server.workers: 2`: the front on its port, two worker gateway processes on
           loopback ports and the private redis-server the front starts (children of the
           front), each worker capped at `server.max_viewers` = half the largest N, so that
           the largest N spills onto the second worker (served there through a relay from the
           room's home worker, on the same front URL)

Both gateway configs are bench/broadcast.py's (host-only ICE 127.0.0.1, drain_timeout_s 0,
log level warning, limits.sessions_per_ip_per_s/burst 1000: every viewer comes from
127.0.0.1). The publisher and the load generators point at the front's URL in case 2.
Per window (after a settle time): utime+stime of every gateway process (the one process; the
front, each worker, redis) from /proc/PID/stat as CPU-ms per second, per viewer-second net
of the same case's N=0 window, the busiest single process, the viewers each worker serves
(front's /api/cluster: nodes[].load.viewers, which counts a relay at the home), viewer
fps/loss and publisher -> viewer latency (bench/loadgen.py). Writes bench/results/workers.md
and bench/results/workers.json (or --md/--json). Every process started is stopped by its PID
(the front stops its workers and redis on SIGTERM; the run checks that none is left).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from . import broadcast
from .broadcast import (
    OTHER_LOAD_LIMIT,
    Settings,
    Target,
    measure_row,
    raise_udp_buffers,
    restore_udp_buffers,
    run_header,
    wait_others_quiet,
    wait_quiet,
)
from .control import PYTHON, ROOT
from .media import ensure_input_file
from .relay import _f, _pct, node_stats, uncommitted_count
from .stats import CpuSample, cpu_ms_per_s, cpu_sample, percentile

logger = logging.getLogger("bench")

RESULTS = broadcast.RESULTS
OUT = broadcast.OUT


def gateway_config(workers: int, max_viewers: int) -> str:
    """bench/broadcast.py's gateway config, with server.workers (and a per-worker cap)."""
    server = "server:\n  drain_timeout_s: 0\n"
    if workers != 1:
        server += f"  workers: {workers}\n  max_viewers: {max_viewers}\n"
    return (
        server + "ice:\n  addresses: [127.0.0.1]\n"
        "rooms:\n  max_subscribers: 2000\n"
        "log:\n  level: warning\n"
        # Every viewer comes from 127.0.0.1: no per-address admission limit (5/s, bursts of
        # 20, would turn away a step of more than 20 viewers).
        "limits:\n  sessions_per_ip_per_s: 1000\n  sessions_per_ip_burst: 1000\n"
    )


def _stat(pid: int) -> tuple[int, str]:
    """(ppid, comm) of a process."""
    text = Path(f"/proc/{pid}/stat").read_text()
    comm = text[text.index("(") + 1 : text.rindex(")")]
    return int(text.rsplit(")", 1)[1].split()[1]), comm


def children(parent: int) -> list[dict[str, Any]]:
    """The front's children: its worker gateways (cmdline ``-m gateway``, with their config's
    node id and port) and its private redis-server."""
    found: list[dict[str, Any]] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            ppid, comm = _stat(pid)
            if ppid != parent:
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        if any(args[i : i + 2] == ["-m", "gateway"] for i in range(len(args))):
            info: dict[str, Any] = {"kind": "worker", "pid": pid, "cmdline": args}
            if "--config" in args:
                with contextlib.suppress(Exception):
                    config = yaml.safe_load(Path(args[args.index("--config") + 1]).read_text())
                    info["node_id"] = config["cluster"]["node_id"]
                    info["port"] = config["server"]["port"]
            found.append(info)
        elif comm.startswith("redis-server"):
            found.append({"kind": "redis", "pid": pid, "cmdline": args})
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Gateway(Target):
    """The gateway under test (one process, or a front with its workers), its publisher and
    load generators. ``extra`` names the front's children: w0, w1, ..., redis."""

    def __init__(
        self, case: str, workers: int, max_viewers: int, settings: Settings, input_file: Path
    ) -> None:
        super().__init__("gateway", settings, input_file)
        self.name = case
        self.workers = workers
        self.max_viewers = max_viewers
        self.extra: dict[str, int] = {}
        self.worker_info: dict[str, dict[str, Any]] = {}  # w0 -> {pid, node_id, port}
        # Viewers per load generator before the first step past the cap, and after its one
        # viewer past the cap: which of them the home serves, which the other worker.
        self.home_counts: list[int] = []
        self.relayed_from: list[int] = []

    def server_args(self) -> list[str]:
        config = self.settings.run_dir / f"{self.name}.yaml"
        config.write_text(gateway_config(self.workers, self.max_viewers))
        return [PYTHON, "-m", "gateway", "--config", str(config), "--port", str(self.port)]

    async def _wait_healthy(self) -> None:
        """Target.start's wait for /healthz; with workers, also for the front's /readyz to
        list every worker (in the directory: the publisher's WHIP then picks a home among
        them), and the front's children found."""
        await super()._wait_healthy()
        if self.workers == 1:
            return
        assert self.http is not None and self.server is not None
        deadline = time.monotonic() + 30
        ready: Any = None
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, ValueError):
                async with self.http.get(f"{self.base}/readyz") as response:
                    ready = await response.json()
                if len(ready.get("workers_ready", [])) == self.workers:
                    break
            await asyncio.sleep(0.2)
        else:
            raise RuntimeError(f"{self.name}: workers not ready: {ready}")
        found = children(self.server.pid)
        workers = sorted(
            (c for c in found if c["kind"] == "worker"), key=lambda c: str(c.get("node_id"))
        )
        redis = [c for c in found if c["kind"] == "redis"]
        if len(workers) != self.workers or len(redis) != 1:
            raise RuntimeError(f"{self.name}: the front's children: {found}")
        for i, child in enumerate(workers):
            self.extra[f"w{i}"] = child["pid"]
            self.worker_info[f"w{i}"] = {
                k: child.get(k) for k in ("pid", "node_id", "port", "cmdline")
            }
        self.extra["redis"] = redis[0]["pid"]
        logger.info("%s: front %d, children %s", self.name, self.server.pid, self.extra)

    def pids(self) -> dict[str, list[int]]:
        # The children too, so that wait_others_quiet does not count them as other work.
        return super().pids() | {name: [pid] for name, pid in self.extra.items()}

    async def drop_viewers(self) -> None:
        for worker in self.loadgens:
            try:
                await worker.call("close_all", wait_s=60)
            except Exception as exc:
                logger.warning("%s: close_all: %s", worker.name, exc)
            await worker.stop()
        self.loadgens = []
        self.viewers = 0


async def cluster_loads(target: Gateway) -> dict[str, Any]:
    """Per worker (w0, w1, ...): the front's /api/cluster view (load.viewers, rooms) and the
    worker's own /api/stats (room subscribers, relays made)."""
    assert target.http is not None
    by_node = {info.get("node_id"): name for name, info in target.worker_info.items()}
    out: dict[str, Any] = {}
    try:
        async with target.http.get(f"{target.base}/api/cluster") as response:
            described = await response.json()
    except Exception as exc:
        return {"error": str(exc)}
    for node in described.get("nodes", []):
        name = by_node.get(node.get("id"), node.get("id"))
        out[name] = {
            "node_id": node.get("id"),
            "viewers": (node.get("load") or {}).get("viewers"),
            "rooms": node.get("rooms"),
            "home": broadcast.ROOM in (node.get("rooms") or []),
        }
    for name, info in target.worker_info.items():
        stats = await node_stats(target.http, f"http://127.0.0.1:{info.get('port')}")
        entry = out.setdefault(name, {})
        entry["room_subscribers"] = stats.get("room_subscribers")
        entry["relays"] = (stats.get("cluster") or {}).get("relays")
    return out


async def loadgen_counts(target: Gateway) -> list[int]:
    """Viewers per load generator (each one's viewers are in join order)."""
    statuses = await asyncio.gather(*(w.call("status") for w in target.loadgens))
    return [int(s["viewers"]) for s in statuses]


async def latency_groups(target: Gateway) -> dict[str, Any]:
    """Per-viewer latency p50s of the last window, in two groups by join order: the viewers
    that joined while the home had room (on the home worker) and those that joined after the
    one viewer past the cap (on the other worker, relayed)."""
    assert target.publisher is not None
    sent = (await target.publisher.call("sends"))["sent"]
    home: list[float] = []
    relayed: list[float] = []
    for i, worker in enumerate(target.loadgens):
        p50s = (await worker.call("latency", sent=sent))["viewer_p50s_ms"]
        cut_home = target.home_counts[i] if i < len(target.home_counts) else 0
        cut_relayed = target.relayed_from[i] if i < len(target.relayed_from) else len(p50s)
        home.extend(p50s[:cut_home])
        relayed.extend(p50s[cut_relayed:])
    return {
        group: {
            "viewers": len(values),
            "viewer_p50_median_ms": percentile(values, 50),
            "viewer_p50_p95_ms": percentile(values, 95),
            "viewer_p50_max_ms": max(values) if values else None,
        }
        for group, values in (("home", home), ("relayed", relayed))
    }


def _sample(pids: dict[str, int]) -> dict[str, CpuSample]:
    now = time.monotonic()
    return {name: cpu_sample(pid, now) for name, pid in pids.items()}


async def measure(
    target: Gateway,
    n: int,
    join: dict[str, Any],
    baseline: dict[str, Any],
    settings: Settings,
    settle_s: float,
) -> dict[str, Any]:
    """broadcast's window (the server or front, publisher, loadgens, latency), with the
    front's children sampled around it (a few ms of commands wider than the front's)."""
    await asyncio.sleep(settle_s)
    extra0 = _sample(target.extra)
    if n == 0:
        row = await target.measure(settings.window_s)
        row["join"] = join
        row["degraded"] = None
    else:
        row = await measure_row(target, n, join, baseline, settings)
    extra1 = _sample(target.extra)
    procs = {"front" if target.workers != 1 else "gateway": row["server_cpu_ms_per_s"]}
    for name in target.extra:
        procs[name] = cpu_ms_per_s(extra0[name], extra1[name])
    row["procs_cpu_ms_per_s"] = procs
    row["gateway_total_cpu_ms_per_s"] = sum(procs.values())
    busiest = max(procs, key=lambda k: procs[k])
    row["busiest_process"] = busiest
    row["busiest_cpu_ms_per_s"] = procs[busiest]
    extra = sum(v for k, v in procs.items() if k not in ("front", "gateway"))
    row["other_load_cores"] = max(0.0, row["other_load_cores"] - extra / 1000)
    if n > 0:
        base = baseline["gateway_total_cpu_ms_per_s"]
        row["gateway_total_cpu_ms_per_viewer_s"] = (row["gateway_total_cpu_ms_per_s"] - base) / n
    if target.workers != 1:
        row["workers"] = await cluster_loads(target)
        if n > 0 and target.relayed_from:
            row["latency_by_worker"] = await latency_groups(target)
    row.pop("udp", None)
    return row


async def run_case(
    target: Gateway,
    counts: list[int],
    settings: Settings,
    settle_s: float,
    spill_at_once: bool = False,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    baseline: dict[str, Any] = {}
    for n in counts:
        join: dict[str, Any] = {}
        if n > 0:
            cap = target.max_viewers
            pids = {k: v[0] for k, v in target.pids().items() if k not in ("publisher", "loadgen")}
            before = _sample(pids)
            if target.workers != 1 and not spill_at_once and target.viewers <= cap < n - 1:
                # One viewer past the cap first: it alone makes the second worker's relay.
                # Concurrent first viewers at a worker without the relay yet race in
                # gateway/cluster/relays.py (Relays.copy: both miss _pulling, both pull;
                # one gets 409 room-busy, the other 500 KeyError): --spill-at-once shows it.
                if target.loadgens:
                    target.home_counts = await loadgen_counts(target)
                first = await target.set_viewers(cap + 1)
                target.relayed_from = await loadgen_counts(target)
                join = await target.set_viewers(n)
                join["first_past_cap"] = first
            else:
                join = await target.set_viewers(n)
            after = _sample(pids)
            added = max(n - (rows[-1]["viewers"] if rows else 0), 1)
            join["cpu_ms"] = {k: (after[k].cpu_s - before[k].cpu_s) * 1000 for k in pids}
            join["cpu_ms_per_added_viewer"] = {k: v / added for k, v in join["cpu_ms"].items()}
            if join["receiving"] < n:
                logger.warning(
                    "%s: only %d of %d viewers receiving (%s)", target.name, join["receiving"], n, join
                )  # fmt: skip
        row = await measure(target, n, join, baseline, settings, settle_s)
        attempts: list[dict[str, Any]] = []
        for _ in range(2):
            busy = row["other_load_cores"] > OTHER_LOAD_LIMIT
            if (not busy and not row["degraded"]) or settings.quiet_budget_s[0] <= 0:
                break
            logger.info(
                "%s N=%d: measuring again (%s)",
                target.name,
                n,
                f"other work {row['other_load_cores']:.2f} cores" if busy else row["degraded"],
            )
            if busy:
                await wait_others_quiet(target, settings)  # spends the budget itself
            else:
                settings.quiet_budget_s[0] -= settings.window_s
            attempts.append(row)
            row = await measure(target, n, join, baseline, settings, 1.0)
        if attempts:
            row["earlier_attempts"] = [
                {
                    k: a.get(k)
                    for k in ("gateway_total_cpu_ms_per_s", "procs_cpu_ms_per_s", "other_load_cores", "degraded")
                }
                for a in attempts
            ]  # fmt: skip
        row["case"] = target.name
        if n == 0:
            baseline = row
        rows.append(row)
        split = ""
        if row.get("workers"):
            split = " viewers " + ", ".join(
                f"{k} {v.get('viewers')}{' (home)' if v.get('home') else ''}"
                for k, v in sorted(row["workers"].items())
            )
        logger.info(
            "%s N=%d: %s total %.1f CPU-ms/s,%s fps p50 %s, loss %s, latency p50/p95 %s/%s ms, other %.2f cores%s",
            target.name, n, ", ".join(f"{k} {v:.1f}" for k, v in row["procs_cpu_ms_per_s"].items()),
            row["gateway_total_cpu_ms_per_s"], split, _f(row.get("viewer_fps_p50")),
            _f(row.get("viewer_loss_mean"), 4), _f(row.get("latency_p50_ms")), _f(row.get("latency_p95_ms")),
            row["other_load_cores"], f"  DEGRADED: {row['degraded']}" if row.get("degraded") else "",
        )  # fmt: skip
    return rows


async def stop_case(target: Gateway) -> dict[str, Any]:
    """Stops the load generators, the publisher and the server by PID (the front stops its
    workers and redis on SIGTERM); checks that none of the front's children is left, and
    kills (by PID) any that is."""
    assert_children = dict(target.extra)
    if target.server is not None and target.server.proc.returncode is None:
        # drain_timeout_s is 0: the front's SIGTERM stops its workers at once.
        server, target.server = target.server, None
        await Target.stop(target)
        await server.stop(wait_s=30)
        target.server = server
    else:
        await Target.stop(target)
    left = {name: pid for name, pid in assert_children.items() if alive(pid)}
    for pid in left.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    code = target.server.proc.returncode if target.server is not None else None
    return {"front_exit_code": code, "children_left_after_stop": left}


def _net(rows: list[dict[str, Any]], key: str) -> dict[int, float]:
    base = rows[0]["procs_cpu_ms_per_s"].get(key, 0.0)
    return {r["viewers"]: r["procs_cpu_ms_per_s"].get(key, 0.0) - base for r in rows[1:]}


def summarize(one: list[dict[str, Any]], two: list[dict[str, Any]]) -> dict[str, Any]:
    by_n = {r["viewers"]: r for r in one}
    per_n: list[dict[str, Any]] = []
    base_one = one[0]["gateway_total_cpu_ms_per_s"]
    base_two = two[0]["gateway_total_cpu_ms_per_s"]
    for row in two[1:]:
        n = row["viewers"]
        o = by_n.get(n)
        workers = row.get("workers") or {}
        entry: dict[str, Any] = {
            "viewers": n,
            "one_per_viewer_s": None if o is None else (o["gateway_total_cpu_ms_per_s"] - base_one) / n,
            "workers_total_per_viewer_s": (row["gateway_total_cpu_ms_per_s"] - base_two) / n,
            "one_net_ms_per_s": None if o is None else o["gateway_total_cpu_ms_per_s"] - base_one,
            "workers_total_net_ms_per_s": row["gateway_total_cpu_ms_per_s"] - base_two,
            "one_busiest_ms_per_s": None if o is None else o["busiest_cpu_ms_per_s"],
            "workers_busiest": row["busiest_process"],
            "workers_busiest_ms_per_s": row["busiest_cpu_ms_per_s"],
            "procs_net_ms_per_s": {
                k: row["procs_cpu_ms_per_s"][k] - two[0]["procs_cpu_ms_per_s"].get(k, 0.0)
                for k in row["procs_cpu_ms_per_s"]
            },
            "per_worker": {},
        }  # fmt: skip
        for name, w in sorted(workers.items()):
            if not name.startswith("w"):
                continue
            net = entry["procs_net_ms_per_s"].get(name)
            viewers = w.get("viewers") or 0
            # A WebRTC relay at the home counts as one of its viewers (load.viewers); a relay
            # over the frame pipe (the workers' own) does not. Per served viewer:
            relays_in = sum(
                1
                for other, ow in workers.items()
                if other != name
                and ow.get("viewers")
                and w.get("home")
                and not ow.get("home")
                and _webrtc_relays(ow)
            )
            served = viewers - relays_in
            entry["per_worker"][name] = {
                "home": w.get("home"),
                "viewers_load": viewers,
                "viewers_served": served,
                "net_ms_per_s": net,
                "per_viewer_s": None if not served or net is None else net / served,
            }
        for key in ("latency_p50_ms", "latency_p95_ms"):
            entry[f"one_{key}"] = None if o is None else o.get(key)
            entry[f"workers_{key}"] = row.get(key)
            if o is not None and o.get(key) is not None and row.get(key) is not None:
                entry[f"added_{key}"] = row[key] - o[key]
        entry["workers_latency_p50_first_joined_quarter_ms"] = row.get(
            "latency_p50_first_joined_quarter_ms"
        )
        entry["workers_latency_p50_last_joined_quarter_ms"] = row.get(
            "latency_p50_last_joined_quarter_ms"
        )
        per_n.append(entry)
    return {
        "one_idle_ms_per_s": base_one,
        "workers_idle_ms_per_s": base_two,
        "workers_idle_procs_ms_per_s": two[0]["procs_cpu_ms_per_s"],
        "front_net_ms_per_s": _net(two, "front"),
        "redis_net_ms_per_s": _net(two, "redis"),
        "per_n": per_n,
    }


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    git = results["git"]
    load = ", ".join(f"{x:.2f}" for x in m["loadavg_at_start"])
    st = results["settings"]
    lines = [
        "# Workers: one broadcast over several processes (bench/workers.py)",
        "",
        f"- Command: `{results['command']}`",
        f"- Date: {results['date']}, took {results.get('duration_s', '-')} s",
        f"- Code measured: git {git.get('head')}, uncommitted changes: {results.get('uncommitted_count')}"
        f" (`git status --porcelain | wc -l`), gateway/ sha256 {git.get('gateway_sha256')}",
        f"- Machine: {m['nproc']} cores ({m['cpu_model']}), load average at start {load}; "
        f"other work before the run {m.get('other_load_before_cores', '-')} cores; shared with other work (noisy).",
        "- Setup: bench/broadcast.py's gateway config (host-only ICE on 127.0.0.1, drain_timeout_s 0, log level "
        "warning, limits.sessions_per_ip_per_s/burst 1000 since every viewer comes from 127.0.0.1). "
        "**one**: `server.workers: 1`. **workers**: `server.workers: 2`, per-worker "
        f"`server.max_viewers: {results.get('max_viewers')}` (half the largest N): the front on the port, two "
        "worker gateways on loopback ports and the front's private redis-server (its children). "
        "bench/publisher.py (pre-encoded 720p30 VP8 ~1.5 Mbps + Opus, no encode) WHIPs to the server (the front), "
        f"{st['loadgen_procs']} bench/loadgen.py processes of non-decoding aiortc viewers WHEP to it. "
        f"Window {st['window_s']} s after a {results['settle_s']} s settle.",
        "- Joining: "
        + (
            "a step's viewers are added all at once (`--spill-at-once`), also past the cap."
            if results.get("spill_at_once")
            else "a step that crosses the cap first adds one viewer past it (which makes the second "
            "worker's relay alone), then the rest: concurrent first viewers at a worker that has no relay "
            "yet race in gateway/cluster/relays.py `Relays.copy` (see bench/README.md; `--spill-at-once` shows it)."
        ),
        "",
    ]
    if results.get("error"):
        lines += [f"**The run failed:** `{results['error']}`", ""]
    for case, stop in (results.get("stops") or {}).items():
        if stop.get("children_left_after_stop"):
            lines += [
                f"**{case}: children left after the front stopped (killed by PID):** `{stop}`",
                "",
            ]
    s = results.get("summary")
    if s:
        idle = s["workers_idle_procs_ms_per_s"]
        lines += [
            "## Headline",
            "",
            f"Idle (publisher, no viewer): one process {_f(s['one_idle_ms_per_s'])} CPU-ms/s; workers "
            f"{_f(s['workers_idle_ms_per_s'])} in all ("
            + ", ".join(f"{k} {_f(v)}" for k, v in idle.items())
            + ").",
            "",
            "| N | one: CPU-ms per viewer-s (net) | workers, all processes: per viewer-s (net) | one: net CPU-ms/s | workers: net CPU-ms/s (front / each worker / redis) | viewers per worker (load.viewers; served) | per worker: CPU-ms per served viewer-s (net) | busiest process CPU-ms/s: one / workers | latency p50 one / workers / added ms | p95 one / workers / added ms | workers p50, first / last joined quarter ms |",
            "|---:|---:|---:|---:|---|---|---|---:|---:|---:|---:|",
        ]
        for e in s["per_n"]:
            pn = e["procs_net_ms_per_s"]
            pw = e["per_worker"]
            lines.append(
                f"| {e['viewers']} | {_f(e['one_per_viewer_s'], 2)} | {_f(e['workers_total_per_viewer_s'], 2)} | "
                f"{_f(e['one_net_ms_per_s'])} | {_f(e['workers_total_net_ms_per_s'])} ("
                + " / ".join(f"{k} {_f(v)}" for k, v in pn.items())
                + ") | "
                + ", ".join(
                    f"{k}{' (home)' if w['home'] else ''} {w['viewers_load']}; {w['viewers_served']}"
                    for k, w in pw.items()
                )
                + " | "
                + ", ".join(f"{k} {_f(w['per_viewer_s'], 2)}" for k, w in pw.items())
                + f" | {_f(e['one_busiest_ms_per_s'])} / {_f(e['workers_busiest_ms_per_s'])} ({e['workers_busiest']}) | "
                f"{_f(e['one_latency_p50_ms'])} / {_f(e['workers_latency_p50_ms'])} / {_f(e.get('added_latency_p50_ms'))} | "
                f"{_f(e['one_latency_p95_ms'])} / {_f(e['workers_latency_p95_ms'])} / {_f(e.get('added_latency_p95_ms'))} | "
                f"{_f(e['workers_latency_p50_first_joined_quarter_ms'])} / {_f(e['workers_latency_p50_last_joined_quarter_ms'])} |"
            )  # fmt: skip
        lines.append("")
        lines += [
            "## Joining, and latency by worker",
            "",
            "CPU-ms per added viewer of each process over the step's joins (signaling, ICE, DTLS; the front's "
            "cost is here, none in a steady window), and the per-viewer latency p50s of the workers window in "
            "two groups by join order: viewers that joined while the home had room, viewers that joined after "
            "the one viewer past the cap (all on the other worker, relayed).",
            "",
            "| N | one: CPU-ms per added viewer | workers: CPU-ms per added viewer (front / each worker / redis) | home viewers: median / p95 / max of per-viewer p50 ms | relayed viewers: median / p95 / max ms |",
            "|---:|---:|---|---:|---:|",
        ]
        one_by_n = {r["viewers"]: r for r in results.get("one", [])}
        for row in results.get("workers", [])[1:]:
            o = one_by_n.get(row["viewers"]) or {}
            oj = (o.get("join") or {}).get("cpu_ms_per_added_viewer") or {}
            wj = (row.get("join") or {}).get("cpu_ms_per_added_viewer") or {}
            groups = row.get("latency_by_worker") or {}

            def grp(name: str, groups: dict[str, Any] = groups) -> str:
                g = groups.get(name)
                if not g or not g.get("viewers"):
                    return "-"
                return (
                    f"{_f(g['viewer_p50_median_ms'])} / {_f(g['viewer_p50_p95_ms'])} / "
                    f"{_f(g['viewer_p50_max_ms'])} ({g['viewers']} viewers)"
                )

            lines.append(
                f"| {row['viewers']} | {_f(oj.get('server'), 2)} | "
                + " / ".join(f"{'front' if k == 'server' else k} {_f(v, 2)}" for k, v in wj.items())
                + f" | {grp('home')} | {grp('relayed')} |"
            )
        lines.append("")
    lines += [
        "## Every window",
        "",
        "| case | N | CPU-ms/s per process | total | busiest | viewers per worker (load.viewers; room subscribers; relays made) | viewer fps p50 / min (publisher) | frame loss mean / max | RTP loss | latency p50 / p95 ms (samples) | loadgen CPU-ms/s | busy / other cores | note |",
        "|---|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in [*results.get("one", []), *results.get("workers", [])]:
        note = row.get("degraded") or ""
        if row["other_load_cores"] > OTHER_LOAD_LIMIT:
            busy_note = f"other work {row['other_load_cores']:.2f} cores: noisy"
            note = f"{note}; {busy_note}" if note else busy_note
        if row.get("earlier_attempts"):
            note = (note + f" (measured {len(row['earlier_attempts']) + 1} times)").strip()
        split = ", ".join(
            f"{k}{' (home)' if w.get('home') else ''} {_f(w.get('viewers'))}; {_f(w.get('room_subscribers'))}; "
            f"{(w.get('relays') or {}).get('made', '-')}"
            for k, w in sorted((row.get("workers") or {}).items())
        ) or "-"  # fmt: skip
        lines.append(
            f"| {row['case']} | {row['viewers']} | "
            + ", ".join(f"{k} {_f(v)}" for k, v in row["procs_cpu_ms_per_s"].items())
            + f" | {_f(row['gateway_total_cpu_ms_per_s'])} | {_f(row['busiest_cpu_ms_per_s'])} ({row['busiest_process']}) | {split} | "
            f"{_f(row.get('viewer_fps_p50'))} / {_f(row.get('viewer_fps_min'))} ({_f(row.get('publisher_fps'))}) | "
            f"{_pct(row.get('viewer_loss_mean'))} / {_pct(row.get('viewer_loss_max'))} | {_pct(row.get('rtp_loss'))} | "
            f"{_f(row.get('latency_p50_ms'))} / {_f(row.get('latency_p95_ms'))} ({row.get('latency_samples', 0)}) | "
            f"{_f(row.get('loadgen_cpu_ms_per_s'))} | {_f(row['machine_busy_cores'], 2)} / {_f(row['other_load_cores'], 2)} | {note} |"
        )  # fmt: skip
    lines += [
        "",
        "CPU is utime+stime of each whole process (all threads) from /proc/PID/stat over the window, as CPU-ms "
        "per second. The one process's and the front's window is bench/broadcast.py's (Target.measure); the "
        "workers' and redis's are sampled around it (the same window plus the few commands before and after). "
        "Worker PIDs are the front's children whose cmdline has `-m gateway` (w0, w1 in node-id order), redis the "
        "child named redis-server. *Net* subtracts the same case's N=0 window. *Viewers per worker* is the front's "
        "`/api/cluster` nodes[].load.viewers (heartbeats, every 2 s). The other worker pulls the room from the "
        "home over the frame pipe (the front gives its workers a shared cluster.pipe_dir; relays made/piped in "
        "the JSON), not as a WebRTC viewer, so the home's load.viewers and room subscribers do not count that "
        "relay, and *served* is load.viewers (a WebRTC relay, if one was made, is subtracted). *Busiest* is the single process with the most CPU: one "
        "process cannot go past one core. Latency is the publisher handing a frame to aiortc -> the viewer's tap "
        "completing it, matched by frame content (bench/loadgen.py), over all viewers; *added* is workers minus "
        "one at the same N; the first / last joined quarter of each load generator's viewers are the home's / "
        "(when it spills) mostly the relayed worker's. A window with more than 0.3 cores of other work, or "
        "degraded viewers, is measured again (budget-limited). Everything runs on the same cores: the load "
        "generators cost more than the gateway.",
        "",
    ]
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> int:
    # SIGTERM ends the run through its finally: every started process is stopped by PID.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    quick = args.quick
    counts = broadcast.parse_counts(args.viewers) if args.viewers else ([4] if quick else [20, 60])
    counts = [0, *[n for n in counts if n > 0]]
    max_viewers = args.max_viewers or max(1, counts[-1] // 2)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    settle_s = args.settle if args.settle is not None else (2.0 if quick else 3.0)
    settings = Settings(
        viewers=counts,
        naive_viewers=[],
        window_s=args.window or (4.0 if quick else 10.0),
        settle_s=0.0,  # the settle is ours, before the children's window starts (see measure)
        loadgen_procs=args.loadgen_procs,
        profile_s=0.0,
        profile_at=[],
        live_sequential=0,
        live_spacing_s=0.0,
        live_burst=0,
        live_latency_s=0.0,
        phases=["gateway"],
        run_dir=OUT / f"workers-{stamp}",
        quiet_budget_s=[args.quiet_budget],
    )
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: dict[str, Any] = {
        **run_header("bench.workers"),
        "uncommitted_count": uncommitted_count(),
        "settings": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in settings.__dict__.items()
        },
        "settle_s": settle_s,
        "max_viewers": max_viewers,
        "spill_at_once": args.spill_at_once,
        "stops": {},
    }
    logger.info("run directory %s", settings.run_dir)
    results["machine"]["other_load_before_cores"] = await wait_quiet(args.wait_quiet)
    input_file = ensure_input_file()
    udp = raise_udp_buffers()
    results["udp_buffers"] = udp
    try:
        for case, workers in (("one", 1), ("workers", 2)):
            target = Gateway(case, workers, max_viewers, settings, input_file)
            try:
                await target.start()
                results.setdefault("pids", {})[case] = target.pids()
                results.setdefault("worker_info", {})[case] = target.worker_info
                results[case] = await run_case(
                    target, counts, settings, settle_s, args.spill_at_once
                )
            finally:
                results["stops"][case] = await stop_case(target)
                logger.info("%s stopped: %s", case, results["stops"][case])
        results["summary"] = summarize(results["one"], results["workers"])
    except Exception as exc:
        logger.exception("the run failed")
        results["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        restore_udp_buffers(udp)
    results["duration_s"] = round(time.monotonic() - started, 1)
    out_json = Path(args.json) if args.json else RESULTS / "workers.json"
    out_md = Path(args.md) if args.md else RESULTS / "workers.md"
    out_json.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, default=str) + "\n"
    out_json.write_text(text)
    (settings.run_dir / "workers.json").write_text(text)
    out_md.write_text(markdown(results))
    logger.info("wrote %s and %s (%.0f s)", out_md, out_json, results["duration_s"])
    return 1 if results.get("error") else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.workers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--viewers", help="comma-separated N (default 0,20,60; N=0 is always measured)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: N = 0,4, 4 s windows")
    parser.add_argument(
        "--max-viewers",
        type=int,
        help="per-worker server.max_viewers (default: half the largest N)",
    )
    parser.add_argument(
        "--spill-at-once",
        action="store_true",
        help="add a step's viewers past the cap all at once (default: one first, which makes "
        "the second worker's relay alone; concurrent first viewers there race)",
    )
    parser.add_argument("--window", type=float, help="measurement window in seconds (default 10)")
    parser.add_argument("--settle", type=float, help="seconds after viewers join (default 3)")
    parser.add_argument("--loadgen-procs", type=int, default=2, help="viewer processes (default 2)")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=20.0,
        help="seconds to wait for a quiet machine first (default 20)",
    )
    parser.add_argument(
        "--quiet-budget",
        type=float,
        default=60.0,
        help="seconds the run may spend re-measuring windows with other work (default 60)",
    )
    parser.add_argument("--json", help="output JSON (default bench/results/workers.json)")
    parser.add_argument("--md", help="output Markdown (default bench/results/workers.md)")
    parser.add_argument(
        "--render", metavar="JSON", help="only re-render the Markdown of a results JSON"
    )
    args = parser.parse_args(argv)
    if args.render:
        out_md = Path(args.md) if args.md else RESULTS / "workers.md"
        results = json.loads(Path(args.render).read_text())
        if results.get("one") and results.get("workers"):
            results["summary"] = summarize(results["one"], results["workers"])
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


def _webrtc_relays(worker: dict[str, Any]) -> int:
    """Relays a worker made over WebRTC (a viewer of the home), not over the frame pipe."""
    relays = worker.get("relays") or {}
    return max(0, int(relays.get("made") or 0) - int(relays.get("piped") or 0))
