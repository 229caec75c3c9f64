"""The broadcast benchmark: one publisher, N viewers, the gateway beside the naive pattern.

    .venv/bin/python -m bench.broadcast [--viewers 1,5,10,20,...] [--quick]

Phases (each can be skipped):
  gateway  the gateway forwarding a pre-encoded 720p30 VP8 ~1.5 Mbps + Opus file to N
           viewers (no encode anywhere, viewers do not decode): CPU, RSS, fps, loss, latency
  naive    the same publisher, viewers and window against aiortc's MediaRelay pattern
           (decode once, encode per viewer), N = 1..4
  live     a live encoder answering PLI: time to first frame, and the latency the gateway
           adds beside a direct peer connection
  profile  py-spy on the gateway (and the naive server) at a high N

Writes bench/results/broadcast.md and bench/results/broadcast.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import json
import logging
import os
import platform
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp

from . import control, profile, report
from .control import PYTHON, ROOT, Process, Worker
from .media import FPS, ensure_input_file
from .stats import (
    cpu_ms_per_s,
    cpu_sample,
    diff,
    machine_cpu_ticks,
    machine_info,
    percentile,
    read_sysctl,
    rss_bytes,
    udp_counters,
    user_ms_per_s,
    write_sysctl,
)

logger = logging.getLogger("bench")

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
OUT = BENCH / "out"
ROOM = "bench"
# A window with more than this many cores busy with other work is measured again.
OTHER_LOAD_LIMIT = 0.3
UDP_BUFFER_BYTES = 4 * 1024 * 1024
SYSCTLS = (
    "net.core.rmem_default",
    "net.core.wmem_default",
    "net.core.rmem_max",
    "net.core.wmem_max",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Settings:
    viewers: list[int]
    naive_viewers: list[int]
    window_s: float
    settle_s: float
    loadgen_procs: int
    profile_s: float
    profile_at: list[int]
    live_sequential: int
    live_spacing_s: float
    live_burst: int
    live_latency_s: float
    phases: list[str]
    degrade_fps_ratio: float = 0.95
    degrade_loss: float = 0.01
    degrade_latency_ms: float = 100.0
    run_dir: Path = field(default_factory=lambda: OUT)
    # Seconds this run may spend waiting for other work on the machine (shared budget).
    quiet_budget_s: list[float] = field(default_factory=lambda: [240.0])


class Target:
    """The server under test (gateway or naive) with its publisher and load generators."""

    def __init__(self, kind: str, settings: Settings, input_file: Path) -> None:
        self.kind = kind
        self.name = kind  # names its processes and logs
        self.settings = settings
        self.input_file = input_file
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.server: Process | None = None
        self.publisher: Worker | None = None
        self.loadgens: list[Worker] = []
        self.viewers = 0
        self.http: aiohttp.ClientSession | None = None
        self.log_dir = settings.run_dir / "logs"

    @property
    def url(self) -> str:
        """What the load generators' viewers POST their WHEP offers to."""
        return f"{self.base}/whep/{ROOM}"

    def loadgen_name(self, index: int) -> str:
        return f"{self.name}-loadgen{index}"

    def server_args(self) -> list[str]:
        """The command line of the server under test (writing its config file if any)."""
        if self.kind == "gateway":
            config = self.settings.run_dir / "gateway-bench.yaml"
            config.write_text(
                "server:\n  drain_timeout_s: 0\nice:\n  addresses: [127.0.0.1]\nrooms:\n  max_subscribers: 2000\nlog:\n  level: warning\n"
                # Every viewer comes from 127.0.0.1: the per-address session rate (5/s,
                # bursts of 20) would refuse a step of more than 20 viewers.
                "limits:\n  sessions_per_ip_per_s: 1000\n  sessions_per_ip_burst: 1000\n"
            )
            return [PYTHON, "-m", "gateway", "--config", str(config), "--port", str(self.port)]
        return [PYTHON, "-m", "bench.naive_server", "--port", str(self.port)]

    async def start(self) -> None:
        self.http = aiohttp.ClientSession()
        self.server = await Process.start(self.name, self.server_args(), self.log_dir)
        await self._wait_healthy()
        self.publisher = await Worker.start(
            f"{self.name}-publisher",
            [
                PYTHON,
                "-m",
                "bench.publisher",
                "--base",
                self.base,
                "--room",
                ROOM,
                "--file",
                str(self.input_file),
            ],
            self.log_dir,
        )
        await self.publisher.wait_ready(60)
        deadline = time.monotonic() + 30
        while True:
            snap = await self.publisher.call("snapshot")
            if snap["state"] == "connected" and snap["video_frames"] > 2 * FPS:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: the publisher did not start sending: {snap}")
            await asyncio.sleep(0.2)

    async def _wait_healthy(self) -> None:
        assert self.http is not None and self.server is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.server.proc.returncode is not None:
                raise RuntimeError(f"{self.kind} exited:\n{self.server.tail()}")
            try:
                async with self.http.get(f"{self.base}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{self.kind} did not answer /healthz")

    async def set_viewers(self, count: int) -> dict[str, Any]:
        """Adds viewers (spread over the load-generator processes) until there are ``count``."""
        while len(self.loadgens) < self.settings.loadgen_procs:
            worker = await Worker.start(
                self.loadgen_name(len(self.loadgens)),
                [PYTHON, "-m", "bench.loadgen", "--url", self.url],
                self.log_dir,
            )
            await worker.wait_ready(60)
            self.loadgens.append(worker)
        add = count - self.viewers
        started = time.monotonic()
        failures: list[str] = []
        if add > 0:
            shares = [add // len(self.loadgens)] * len(self.loadgens)
            for i in range(add % len(self.loadgens)):
                shares[i] += 1
            replies = await asyncio.gather(
                *(
                    w.call("add", wait_s=60 + 2 * n, count=n, concurrency=4)
                    for w, n in zip(self.loadgens, shares, strict=True)
                    if n > 0
                )
            )
            for reply in replies:
                failures.extend(reply["failures"])
            self.viewers = count
        # Wait until every viewer has its first keyframe (the file has one every 2.5 s).
        deadline = time.monotonic() + 30 + 0.3 * max(add, 0)
        status: dict[str, int] = {}
        while time.monotonic() < deadline:
            statuses = await asyncio.gather(*(w.call("status") for w in self.loadgens))
            status = {
                key: sum(int(s[key]) for s in statuses)
                for key in ("viewers", "connected", "receiving", "failed")
            }
            if status["receiving"] + status["failed"] >= status["viewers"]:
                break
            await asyncio.sleep(0.5)
        return {"join_s": round(time.monotonic() - started, 2), "failures": failures[:5], **status}

    def pids(self) -> dict[str, list[int]]:
        assert self.server is not None and self.publisher is not None
        return {
            "server": [self.server.pid],
            "publisher": [self.publisher.pid],
            "loadgen": [w.pid for w in self.loadgens],
        }

    async def api_stats(self) -> dict[str, Any]:
        if self.kind != "gateway":
            return {}
        assert self.http is not None
        async with self.http.get(f"{self.base}/api/stats") as response:
            body: dict[str, Any] = await response.json()
        for room in body.get("rooms", []):
            if room.get("room") == ROOM:
                return {t["kind"]: t for t in room.get("tracks", [])} | {
                    "threads": body.get("threads")
                }
        return {"threads": body.get("threads")}

    async def measure(self, window_s: float) -> dict[str, Any]:
        """One steady-state window at the current number of viewers."""
        assert self.publisher is not None
        await asyncio.sleep(self.settings.settle_s)
        pids = self.pids()
        await asyncio.gather(
            self.publisher.call("record", on=True, clear=True),
            *(w.call("record", on=True, clear=True) for w in self.loadgens),
        )
        rtp0 = await asyncio.gather(*(w.call("rtp") for w in self.loadgens))
        api0 = await self.api_stats()
        udp0, ticks0 = udp_counters(), machine_cpu_ticks()
        t0 = time.monotonic()
        cpu0 = {name: [cpu_sample(p, t0) for p in ps] for name, ps in pids.items()}
        pub0, *views0 = await asyncio.gather(
            self.publisher.call("snapshot"), *(w.call("snapshot") for w in self.loadgens)
        )
        await asyncio.sleep(window_s)
        t1 = time.monotonic()
        cpu1 = {name: [cpu_sample(p, t1) for p in ps] for name, ps in pids.items()}
        pub1, *views1 = await asyncio.gather(
            self.publisher.call("snapshot"), *(w.call("snapshot") for w in self.loadgens)
        )
        udp1, ticks1 = udp_counters(), machine_cpu_ticks()
        rss = {name: sum(rss_bytes(p) for p in ps) for name, ps in pids.items()}
        api1 = await self.api_stats()
        rtp1 = await asyncio.gather(*(w.call("rtp") for w in self.loadgens))
        await asyncio.gather(
            self.publisher.call("record", on=False),
            *(w.call("record", on=False) for w in self.loadgens),
        )
        statuses = await asyncio.gather(*(w.call("status") for w in self.loadgens))
        states: dict[str, int] = {}
        for status in statuses:
            for state, count in status["states"].items():
                states[state] = states.get(state, 0) + count
        sent = (await self.publisher.call("sends"))["sent"]
        latencies: list[float] = []
        # Per-viewer p50 latency of the viewers that joined first / last (each load
        # generator's viewers are in join order): does the fan-out order show?
        early: list[float] = []
        late: list[float] = []
        for w in self.loadgens:
            reply = await w.call("latency", sent=sent)
            latencies.extend(reply["latencies_ms"])
            p50s = reply["viewer_p50s_ms"]
            quarter = max(1, len(p50s) // 4)
            if len(p50s) >= 4:
                early.extend(p50s[:quarter])
                late.extend(p50s[-quarter:])

        cpu = {
            name: sum(cpu_ms_per_s(a, b) for a, b in zip(cpu0[name], cpu1[name], strict=True))
            for name in pids
        }
        pub_dt = pub1["t"] - pub0["t"]
        pub_frames = pub1["video_frames"] - pub0["video_frames"]
        pub_fps = pub_frames / pub_dt
        viewers: list[dict[str, float]] = []
        for snap0, snap1 in zip(views0, views1, strict=True):
            dt = snap1["t"] - snap0["t"]
            for a, b in zip(snap0["viewers"], snap1["viewers"], strict=True):
                frames = b["video_frames"] - a["video_frames"]
                gaps = b["video_gap_frames"] - a["video_gap_frames"]
                viewers.append(
                    {
                        "fps": frames / dt,
                        "audio_fps": (b["audio_frames"] - a["audio_frames"]) / dt,
                        "kbps": (b["video_bytes"] - a["video_bytes"]) * 8 / dt / 1000,
                        "loss": gaps / max(frames + gaps, 1),
                        "discontinuities": b["video_discontinuities"] - a["video_discontinuities"],
                    }
                )
        rtp_received = rtp_lost = 0
        for r0, r1 in zip(rtp0, rtp1, strict=True):
            for a, b in zip(r0["viewers"], r1["viewers"], strict=True):
                rtp_received += b["rtp_received"] - a["rtp_received"]
                rtp_lost += b["rtp_lost"] - a["rtp_lost"]
        busy = (ticks1[0] - ticks0[0]) / max(ticks1[1] - ticks0[1], 1)
        fps = [v["fps"] for v in viewers]
        losses = [v["loss"] for v in viewers]
        row: dict[str, Any] = {
            "viewers": self.viewers,
            "window_s": round(t1 - t0, 2),
            "server_cpu_ms_per_s": cpu["server"],
            "server_user_ms_per_s": user_ms_per_s(cpu0["server"][0], cpu1["server"][0]),
            "publisher_cpu_ms_per_s": cpu["publisher"],
            "loadgen_cpu_ms_per_s": cpu["loadgen"],
            "machine_busy_cores": busy * (os.cpu_count() or 1),
            # Busy cores not accounted for by our processes: other work on the machine.
            "other_load_cores": max(
                0.0,
                busy * (os.cpu_count() or 1)
                - (cpu["server"] + cpu["publisher"] + cpu["loadgen"]) / 1000,
            ),
            "server_rss_bytes": rss["server"],
            "loadgen_rss_bytes": rss["loadgen"],
            "server_threads": sum(s.threads for s in cpu1["server"]),
            "publisher_fps": pub_fps,
            "publisher_video_kbps": (pub1["video_bytes"] - pub0["video_bytes"]) * 8 / pub_dt / 1000,
            "viewer_fps_p50": percentile(fps, 50),
            "viewer_fps_min": min(fps) if fps else None,
            "viewer_fps_ratio_p50": (percentile(fps, 50) or 0) / pub_fps if fps else None,
            "viewer_audio_fps_p50": percentile([v["audio_fps"] for v in viewers], 50),
            "viewer_kbps_p50": percentile([v["kbps"] for v in viewers], 50),
            "viewer_loss_mean": sum(losses) / len(losses) if losses else None,
            "viewer_loss_max": max(losses) if losses else None,
            "viewer_discontinuities": sum(v["discontinuities"] for v in viewers),
            "rtp_packets_received": rtp_received,
            "rtp_packets_lost": rtp_lost,
            "rtp_loss": rtp_lost / max(rtp_received + rtp_lost, 1),
            "latency_samples": len(latencies),
            "latency_p50_ms": percentile(latencies, 50),
            "latency_p95_ms": percentile(latencies, 95),
            "latency_p99_ms": percentile(latencies, 99),
            "latency_p50_first_joined_quarter_ms": percentile(early, 50),
            "latency_p50_last_joined_quarter_ms": percentile(late, 50),
            "udp": diff(udp1, udp0),
            "viewer_states": states,
        }
        if api1:
            # Every counter of the gateway's /api/stats video and audio tracks, as window deltas.
            row["gateway"] = {
                f"{kind}_{key}" if kind != "video" else key: value - api0.get(kind, {}).get(key, 0)
                for kind in ("video", "audio")
                for key, value in api1.get(kind, {}).items()
                if isinstance(value, int) and not isinstance(value, bool) and key != "subscribers"
            } | {
                "subscribers": api1.get("video", {}).get("subscribers"),
                "threads": api1.get("threads"),
            }
        return row

    async def stop(self) -> None:
        for worker in self.loadgens:
            try:
                await asyncio.wait_for(worker.call("close_all", wait_s=60), 60)
            except Exception:
                pass
        for proc in [*self.loadgens, self.publisher, self.server]:
            if proc is not None:
                await proc.stop()
        if self.http is not None:
            await self.http.close()


def degraded(row: dict[str, Any], settings: Settings) -> str | None:
    """Why viewers are no longer served well at this N (None while they are)."""
    ratio = row.get("viewer_fps_ratio_p50")
    if ratio is not None and ratio < settings.degrade_fps_ratio:
        return f"viewer fps p50 {row['viewer_fps_p50']:.1f} < {settings.degrade_fps_ratio:.0%} of the publisher's"
    if row.get("viewer_fps_min") is not None and row["viewer_fps_min"] < 0.8 * row["publisher_fps"]:
        return f"slowest viewer at {row['viewer_fps_min']:.1f} fps"
    if (row.get("viewer_loss_mean") or 0) > settings.degrade_loss:
        return f"mean frame loss {row['viewer_loss_mean']:.1%}"
    if (row.get("latency_p50_ms") or 0) > settings.degrade_latency_ms:
        return f"viewers fall behind: publisher->viewer latency p50 {row['latency_p50_ms']:.0f} ms"
    return None


async def measure_row(
    target: Target, n: int, join: dict[str, Any], baseline: dict[str, Any], settings: Settings
) -> dict[str, Any]:
    row = await target.measure(settings.window_s)
    row["join"] = join
    row["server_cpu_ms_per_viewer_s"] = (
        row["server_cpu_ms_per_s"] - baseline["server_cpu_ms_per_s"]
    ) / n
    row["server_cpu_ms_per_viewer_s_raw"] = row["server_cpu_ms_per_s"] / n
    row["server_rss_per_viewer_bytes"] = (
        row["server_rss_bytes"] - baseline["server_rss_bytes"]
    ) / n
    row["loadgen_cpu_ms_per_viewer_s"] = row["loadgen_cpu_ms_per_s"] / n
    reason = degraded(row, settings)
    lost = n - row["viewer_states"].get("connected", 0)
    if lost > 0:
        detail = ", ".join(f"{k} {v}" for k, v in sorted(row["viewer_states"].items()))
        reason = f"{lost} of {n} viewers not connected at the window's end ({detail})" + (
            f"; {reason}" if reason else ""
        )
    if join["receiving"] < n:
        reason = reason or f"only {join['receiving']} of {n} viewers received video"
    row["degraded"] = reason
    return row


async def run_target(
    kind: str, counts: list[int], settings: Settings, input_file: Path
) -> dict[str, Any]:
    target = Target(kind, settings, input_file)
    result: dict[str, Any] = {"rows": [], "profiles": {}, "stopped_because": None}
    profile_done: set[int] = set()
    try:
        await target.start()
        logger.info("%s: publisher live; idle window with 0 viewers", kind)
        baseline = await target.measure(settings.window_s)
        result["baseline"] = baseline
        logger.info(
            "%s: N=0  server %.1f CPU-ms/s  RSS %.1f MB",
            kind,
            baseline["server_cpu_ms_per_s"],
            baseline["server_rss_bytes"] / 1e6,
        )
        if (
            kind == "gateway"
            and "profile" in settings.phases
            and 0 in settings.profile_at
            and target.server is not None
        ):
            logger.info("%s: profiling the server with py-spy at N=0", kind)
            result["profiles"]["0"] = await profile.record(
                target.server.pid, settings.profile_s, settings.run_dir / f"pyspy-{kind}-0.txt"
            )
        for n in counts:
            join = await target.set_viewers(n)
            if join["receiving"] < n:
                logger.warning(
                    "%s: only %d of %d viewers receiving (%s)", kind, join["receiving"], n, join
                )
            row = await measure_row(target, n, join, baseline, settings)
            attempts: list[dict[str, Any]] = []
            for _ in range(2):
                busy_elsewhere = row["other_load_cores"] > OTHER_LOAD_LIMIT
                if not busy_elsewhere and not (row["degraded"] and kind == "gateway"):
                    break
                # The machine is shared: other work in the window, or a degraded window, is
                # measured again (after the other work calms down) before it counts.
                logger.info(
                    "%s: N=%d measuring again (%s)",
                    kind,
                    n,
                    f"other work {row['other_load_cores']:.2f} cores"
                    if busy_elsewhere
                    else f"degraded: {row['degraded']}",
                )
                if busy_elsewhere:
                    await wait_others_quiet(target, settings)
                attempts.append({k: v for k, v in row.items() if k != "udp"})
                row = await measure_row(target, n, join, baseline, settings)
            if attempts:
                row["earlier_attempts"] = attempts
            reason = row["degraded"]
            result["rows"].append(row)
            logger.info(
                "%s: N=%d  server %.0f CPU-ms/s (%.2f per viewer-s)  loadgen %.0f  fps p50 %.1f min %.1f  loss %.2f%%  lat p50 %s ms  busy %.2f cores%s",
                kind, n, row["server_cpu_ms_per_s"], row["server_cpu_ms_per_viewer_s"], row["loadgen_cpu_ms_per_s"],
                row["viewer_fps_p50"] or 0, row["viewer_fps_min"] or 0, 100 * (row["viewer_loss_mean"] or 0),
                _fmt(row["latency_p50_ms"]), row["machine_busy_cores"], f"  DEGRADED: {reason}" if reason else "",
            )  # fmt: skip
            last = n == counts[-1] or (reason is not None and kind == "gateway")
            want_profile = "profile" in settings.phases and (
                last or (kind == "gateway" and n in settings.profile_at)
            )
            if want_profile and n not in profile_done and target.server is not None:
                profile_done.add(n)
                logger.info(
                    "%s: profiling the server with py-spy for %.0f s at N=%d",
                    kind,
                    settings.profile_s,
                    n,
                )
                result["profiles"][str(n)] = await profile.record(
                    target.server.pid,
                    settings.profile_s,
                    settings.run_dir / f"pyspy-{kind}-{n}.txt",
                )
            if reason is not None and kind == "gateway":
                result["stopped_because"] = f"N={n}: {reason}"
                break
    except Exception as exc:
        logger.exception("%s phase failed", kind)
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        await target.stop()
    return result


async def run_live(settings: Settings) -> dict[str, Any]:
    port = free_port()
    config = settings.run_dir / "gateway-live.yaml"
    config.write_text(
        "server:\n  drain_timeout_s: 0\nice:\n  addresses: [127.0.0.1]\nlog:\n  level: warning\n"
        "limits:\n  sessions_per_ip_per_s: 1000\n  sessions_per_ip_burst: 1000\n"
    )
    server = await Process.start(
        "gateway-live",
        [PYTHON, "-m", "gateway", "--config", str(config), "--port", str(port)],
        settings.run_dir / "logs",
    )
    out = settings.run_dir / "live.json"
    out.unlink(missing_ok=True)
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(150):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.2)
        live = await Process.start(
            "live",
            [
                PYTHON, "-m", "bench.live", "--base", f"http://127.0.0.1:{port}", "--out", str(out),
                "--sequential", str(settings.live_sequential), "--spacing", str(settings.live_spacing_s),
                "--burst", str(settings.live_burst), "--latency-seconds", str(settings.live_latency_s),
            ],
            settings.run_dir / "logs",
        )  # fmt: skip
        budget = (
            90 + settings.live_sequential * (settings.live_spacing_s + 1) + settings.live_latency_s
        )
        # Machine-wide CPU over the phase, so that other work on the machine shows.
        t0, ticks0 = time.monotonic(), machine_cpu_ticks()
        gw0 = cpu_sample(server.pid, t0)
        live0 = cpu_sample(live.pid, t0)
        live1 = live0
        deadline = t0 + budget
        while live.proc.returncode is None and time.monotonic() < deadline:
            try:
                live1 = cpu_sample(live.pid, time.monotonic())
            except (OSError, IndexError):
                pass
            try:
                await asyncio.wait_for(live.proc.wait(), 0.5)
            except TimeoutError:
                pass
        if live.proc.returncode is None:
            await live.stop()
            return {"error": f"the live phase did not finish within {budget:.0f} s"}
        t1, ticks1 = time.monotonic(), machine_cpu_ticks()
        gw1 = cpu_sample(server.pid, t1)
        if live.proc.returncode != 0 or not out.exists():
            return {"error": f"the live phase failed:\n{live.tail()}"}
        result: dict[str, Any] = json.loads(out.read_text())
        busy = (ticks1[0] - ticks0[0]) / max(ticks1[1] - ticks0[1], 1) * (os.cpu_count() or 1)
        ours = (
            cpu_ms_per_s(gw0, gw1) * (gw1.wall - gw0.wall) + (live1.cpu_s - live0.cpu_s) * 1000
        ) / (1000 * max(t1 - t0, 1e-9))
        result["machine"] = {
            "duration_s": round(t1 - t0, 1),
            "busy_cores": round(busy, 2),
            "gateway_cpu_ms_per_s": round(cpu_ms_per_s(gw0, gw1), 1),
            "other_load_cores": round(max(0.0, busy - ours), 2),
        }
        return result
    finally:
        await server.stop()


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("aiortc", "av", "aiohttp", "aioice", "pylibsrtp", "numpy", "py-spy"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    try:
        import av

        found["libvpx/ffmpeg"] = str(av.library_versions.get("libavcodec"))
    except Exception:
        pass
    return found


def run_header(module: str, gateway_rev: str | None = None) -> dict[str, Any]:
    """What every result file starts with: the reproducing command, date, machine, versions
    and the code measured."""
    return {
        "command": " ".join([f".venv/bin/python -m {module}", *map(shlex.quote, sys.argv[1:])]),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": versions(),
        "git": git_revision(gateway_rev),
    }


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def git_revision(rev: str | None = None) -> dict[str, Any]:
    """Which gateway code was measured: the revision, uncommitted files, a hash of gateway/."""
    top = control.WORKDIR[0]
    digest = hashlib.sha256()
    for path in sorted((top / "gateway").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(top)).encode())
            digest.update(path.read_bytes())
    info: dict[str, Any] = {"gateway_sha256": digest.hexdigest()[:16]}
    try:
        if rev is not None:
            info["head"] = _git("rev-parse", "--short", rev) + f" (snapshot of {rev})"
            info["uncommitted"] = []
        else:
            info["head"] = _git("rev-parse", "--short", "HEAD")
            info["uncommitted"] = _git("status", "--porcelain", "--", "gateway").splitlines()
    except Exception:
        info["head"] = "unknown"
    return info


def snapshot_gateway(rev: str, run_dir: Path) -> Path:
    """Exports gateway/ at ``rev`` beside a link to bench/: the children run there, so
    edits to the work tree during a run change nothing."""
    src = run_dir / "src"
    src.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "archive", rev, "gateway"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    (src / "bench").symlink_to(BENCH, target_is_directory=True)
    return src


def raise_udp_buffers() -> dict[str, Any]:
    """Raise the default UDP socket buffers (DESIGN.md: defaults overflowed under load)."""
    original = {name: read_sysctl(name) for name in SYSCTLS}
    applied = True
    for name in SYSCTLS:
        if (original[name] or 0) < UDP_BUFFER_BYTES:
            applied = write_sysctl(name, UDP_BUFFER_BYTES) and applied
    return {"original": original, "set_to": UDP_BUFFER_BYTES, "applied": applied}


def restore_udp_buffers(saved: dict[str, Any]) -> None:
    for name, value in saved["original"].items():
        if value is not None:
            write_sysctl(name, value)


def parse_counts(text: str) -> list[int]:
    return sorted({int(x) for x in text.split(",") if x.strip()})


def build_settings(args: argparse.Namespace) -> Settings:
    quick = args.quick
    viewers = (
        parse_counts(args.viewers)
        if args.viewers
        else ([1, 5, 10] if quick else [1, 5, 10, 20, 40, 60, 80, 100, 120, 150, 200])
    )
    naive = (
        parse_counts(args.naive_viewers)
        if args.naive_viewers
        else ([1, 2] if quick else [1, 2, 3, 4])
    )
    phases = [p for p in ("gateway", "naive", "live", "profile") if p not in args.skip]
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Settings(
        viewers=viewers,
        naive_viewers=naive,
        window_s=args.window or (5.0 if quick else 12.0),
        settle_s=args.settle if args.settle is not None else (2.0 if quick else 3.0),
        loadgen_procs=args.loadgen_procs,
        profile_s=args.profile_seconds or (5.0 if quick else 10.0),
        profile_at=parse_counts(args.profile_at)
        if args.profile_at
        else ([0, viewers[-1]] if quick else [0, 80]),
        live_sequential=5 if quick else 20,
        live_spacing_s=0.8,
        live_burst=5 if quick else 10,
        live_latency_s=5.0 if quick else 15.0,
        phases=phases,
        run_dir=OUT / f"run-{stamp}",
    )


async def wait_others_quiet(target: Target, settings: Settings) -> None:
    """Waits, within the run's budget, until work other than ours calms down."""
    pids = [p for ps in target.pids().values() for p in ps]
    while settings.quiet_budget_s[0] > 0:
        t0, ticks0 = time.monotonic(), machine_cpu_ticks()
        cpu0 = [cpu_sample(p, t0) for p in pids]
        await asyncio.sleep(3.0)
        t1, ticks1 = time.monotonic(), machine_cpu_ticks()
        cpu1 = [cpu_sample(p, t1) for p in pids]
        settings.quiet_budget_s[0] -= t1 - t0
        busy = (ticks1[0] - ticks0[0]) / max(ticks1[1] - ticks0[1], 1) * (os.cpu_count() or 1)
        ours = sum(cpu_ms_per_s(a, b) for a, b in zip(cpu0, cpu1, strict=True)) / 1000
        if busy - ours <= OTHER_LOAD_LIMIT:
            return
        logger.info("other work on the machine: %.2f cores; waiting", busy - ours)


async def wait_quiet(limit_s: float, quiet_cores: float = 0.3) -> float:
    """Waits (up to ``limit_s``) for the machine to be nearly idle; returns the busy cores."""
    deadline = time.monotonic() + limit_s
    while True:
        before = machine_cpu_ticks()
        await asyncio.sleep(2.0)
        after = machine_cpu_ticks()
        busy = (after[0] - before[0]) / max(after[1] - before[1], 1) * (os.cpu_count() or 1)
        if busy <= quiet_cores or time.monotonic() >= deadline:
            logger.info("machine busy %.2f cores (other work) before this phase", busy)
            return round(busy, 2)
        logger.info("machine busy %.2f cores (other work): waiting for it to calm down", busy)
        await asyncio.sleep(3.0)


async def main_async(args: argparse.Namespace) -> int:
    settings = build_settings(args)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    if args.gateway_rev:
        control.WORKDIR[0] = snapshot_gateway(args.gateway_rev, settings.run_dir)
    started = time.monotonic()
    results: dict[str, Any] = {
        **run_header("bench.broadcast", args.gateway_rev),
        "settings": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in settings.__dict__.items()
        },
    }
    logger.info("run directory %s", settings.run_dir)
    results["machine"]["other_load_before_cores"] = await wait_quiet(args.wait_quiet)
    input_file = ensure_input_file()
    results["input_file"] = {
        "path": str(input_file.relative_to(ROOT)),
        "bytes": input_file.stat().st_size,
    }
    udp = raise_udp_buffers()
    results["udp_buffers"] = udp
    logger.info("UDP buffers: %s", udp)
    try:
        if "gateway" in settings.phases:
            results["gateway"] = await run_target("gateway", settings.viewers, settings, input_file)
        if "naive" in settings.phases:
            await wait_quiet(min(60.0, settings.quiet_budget_s[0]))
            results["naive"] = await run_target(
                "naive", settings.naive_viewers, settings, input_file
            )
        if "live" in settings.phases:
            await wait_quiet(min(60.0, settings.quiet_budget_s[0]))
            logger.info("live phase: time to first frame and added latency")
            live = await run_live(settings)
            other = live.get("machine", {}).get("other_load_cores", 0.0)
            if other > OTHER_LOAD_LIMIT and settings.quiet_budget_s[0] > 0:
                logger.info("live phase: other work %.2f cores during it; once more", other)
                started = time.monotonic()
                await wait_quiet(min(60.0, settings.quiet_budget_s[0]))
                settings.quiet_budget_s[0] -= time.monotonic() - started
                again = await run_live(settings)
                if again.get("machine", {}).get("other_load_cores", 9.0) < other:
                    again["earlier_attempt"] = live
                    live = again
            results["live"] = live
    finally:
        restore_udp_buffers(udp)
    results["duration_s"] = round(time.monotonic() - started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out_json = Path(args.json) if args.json else RESULTS / "broadcast.json"
    out_md = Path(args.md) if args.md else RESULTS / "broadcast.md"
    out_json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    # Every run keeps its own copy beside its logs (bench/out/ is git-ignored).
    (settings.run_dir / "broadcast.json").write_text(
        json.dumps(results, indent=2, default=str) + "\n"
    )
    out_md.write_text(report.markdown(results))
    logger.info("wrote %s and %s (%.0f s)", out_md, out_json, results["duration_s"])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.broadcast",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--viewers", help="comma-separated N for the gateway (default 1,5,10,20,40,...,200)"
    )
    parser.add_argument(
        "--naive-viewers", help="comma-separated N for the naive baseline (default 1,2,3,4)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a short smoke run (few N, 5 s windows)"
    )
    parser.add_argument("--window", type=float, help="measurement window in seconds (default 12)")
    parser.add_argument(
        "--settle", type=float, help="seconds to wait after viewers join (default 3)"
    )
    parser.add_argument("--loadgen-procs", type=int, default=2, help="viewer processes (default 2)")
    parser.add_argument(
        "--profile-at",
        help="comma-separated N to profile the gateway at, besides the last N (default 0,80)",
    )
    parser.add_argument("--profile-seconds", type=float, help="py-spy duration (default 10)")
    parser.add_argument(
        "--skip", action="append", default=[], choices=["gateway", "naive", "live", "profile"]
    )
    parser.add_argument(
        "--gateway-rev",
        help="measure the gateway (and tap) of this git revision, exported to the run "
        "directory, instead of the work tree (which may be edited during the run)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=60.0,
        help="wait up to this many seconds for other work on the machine to calm down (default 60)",
    )
    parser.add_argument("--json", help="output JSON path (default bench/results/broadcast.json)")
    parser.add_argument(
        "--render", metavar="JSON", help="only re-render the Markdown of a results JSON"
    )
    parser.add_argument("--md", help="output Markdown path (default bench/results/broadcast.md)")
    args = parser.parse_args(argv)
    if args.render:
        results = json.loads(Path(args.render).read_text())
        out_md = Path(args.md) if args.md else RESULTS / "broadcast.md"
        out_md.write_text(report.markdown(results))
        print(f"wrote {out_md}")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
