"""The rooms benchmark: P publishers and S subscribers each receiving every publisher.

    .venv/bin/python -m bench.rooms [--quick] [--configs 1x40@360,4x10@360,8x8@360,4x10@720]

Every configuration runs against a fresh gateway (``python -m gateway``, ICE on 127.0.0.1).
Publishers (one worker process) join a room over the WebSocket and each publish one
pre-encoded VP8 video track (packets of a file paced in real time, no encoding); subscribers
(``--sub-procs`` worker processes) join and subscribe to every publisher's track in one offer,
and count frames per track without decoding (bench/rooms_worker.py). ``1xN`` is the broadcast
baseline: one publisher, N subscribers, the same stream, the same code path.

Per configuration: the idle gateway (RSS, CPU), a window with the publishers only, then the
measured window (``--window``, 10 s) with everyone: gateway CPU (utime+stime from /proc) per
stream-second, RSS per session, delivered fps per stream, and the load generators' CPU.
Writes bench/results/rooms.md and bench/results/rooms.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import fractions
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import av

from .broadcast import SYSCTLS, free_port, run_header, wait_quiet
from .control import PYTHON, ROOT, Process, Worker
from .media import OUT_DIR, SyntheticSource, ensure_input_file
from .stats import (
    cpu_ms_per_s,
    cpu_sample,
    diff,
    machine_cpu_ticks,
    percentile,
    read_sysctl,
    rss_bytes,
    udp_counters,
)

logger = logging.getLogger("bench")

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
ROOM = "rooms"
FPS = 30
KEYFRAME_INTERVAL = 75  # 2.5 s, like the broadcast benchmark's file


@dataclass
class Config:
    publishers: int
    subscribers: int
    height: int

    @property
    def name(self) -> str:
        return f"{self.publishers}x{self.subscribers}@{self.height}p"

    @property
    def broadcast(self) -> bool:
        return self.publishers == 1


def parse_configs(text: str) -> list[Config]:
    configs = []
    for item in text.split(","):
        shape, _, height = item.strip().partition("@")
        p, s = shape.split("x")
        configs.append(Config(int(p), int(s), int(height or 360)))
    return configs


def ensure_360p_file() -> Path:
    """A 640x360 30 fps VP8 ~600 kbps WebM (video only), made once with PyAV."""
    path = OUT_DIR / "input_360p30_vp8_10s.webm"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.webm")
    source = SyntheticSource(640, 360)
    bitrate = 600_000
    with av.open(str(tmp), "w", format="webm") as container:
        video = container.add_stream("libvpx", rate=FPS)
        assert isinstance(video, av.VideoStream)
        video.width, video.height, video.pix_fmt = 640, 360, "yuv420p"
        video.bit_rate = bitrate
        video.codec_context.gop_size = KEYFRAME_INTERVAL
        video.codec_context.qmin, video.codec_context.qmax = 2, 56
        video.codec_context.options = {
            "deadline": "realtime",
            "cpu-used": "4",
            "lag-in-frames": "0",
            "bufsize": str(bitrate),
            "minrate": str(bitrate),
            "maxrate": str(bitrate),
            "keyint_min": str(KEYFRAME_INTERVAL),
        }
        for number in range(10 * FPS):
            frame = source.frame(number)
            frame.pts = number
            frame.time_base = fractions.Fraction(1, FPS)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
    tmp.rename(path)
    return path


def input_file(height: int) -> Path:
    return ensure_360p_file() if height == 360 else ensure_input_file()


def udp_buffer_settings() -> dict[str, int | None]:
    """Recorded, not changed: another benchmark running at the same time may be raising
    and restoring them (bench/broadcast.py does), and the loads here are small."""
    return {name: read_sysctl(name) for name in SYSCTLS}


def machine_busy_cores(before: tuple[int, int], after: tuple[int, int]) -> float:
    return (after[0] - before[0]) / max(after[1] - before[1], 1) * (os.cpu_count() or 1)


class Run:
    """One configuration: its gateway, publisher worker and subscriber workers."""

    def __init__(self, config: Config, args: argparse.Namespace, run_dir: Path) -> None:
        self.config = config
        self.args = args
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_dir = run_dir / config.name
        self.gateway: Process | None = None
        self.pubs: Worker | None = None
        self.subs: list[Worker] = []
        self.tracks: list[str] = []

    async def start_gateway(self, http: aiohttp.ClientSession) -> None:
        env = {"GATEWAY_ICE_ADDRESSES": "[127.0.0.1]", "GATEWAY_LOG_LEVEL": "warning"}
        self.gateway = await Process.start(
            "gateway", [PYTHON, "-m", "gateway", "--port", str(self.port)], self.log_dir, env
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.gateway.proc.returncode is not None:
                raise RuntimeError(f"gateway exited:\n{self.gateway.tail()}")
            try:
                async with http.get(f"{self.base}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        raise RuntimeError("gateway did not answer /healthz")

    def worker_args(self, role: str) -> list[str]:
        args = [PYTHON, "-m", "bench.rooms_worker", "--base", self.base, "--room", ROOM]
        args += ["--role", role]
        if role == "publisher":
            args += ["--file", str(input_file(self.config.height))]
        return args

    async def start_publishers(self) -> dict[str, Any]:
        self.pubs = await Worker.start("publishers", self.worker_args("publisher"), self.log_dir)
        await self.pubs.wait_ready(60)
        names = [f"pub{i}" for i in range(self.config.publishers)]
        reply = await self.pubs.call("add", wait_s=120, names=names, concurrency=4)
        self.tracks = reply["tracks"]
        if len(self.tracks) != self.config.publishers:
            raise RuntimeError(f"publishers: {reply}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = await self.pubs.call("status")
            if status["connected"] == self.config.publishers and status["sent_frames"] > (
                FPS * self.config.publishers
            ):
                return status
            await asyncio.sleep(0.3)
        raise RuntimeError(f"publishers did not start sending: {status}")

    async def start_subscribers(self) -> dict[str, Any]:
        procs = min(self.args.sub_procs, self.config.subscribers)
        for i in range(procs):
            worker = await Worker.start(
                f"subscribers{i}", self.worker_args("subscriber"), self.log_dir
            )
            await worker.wait_ready(60)
            self.subs.append(worker)
        names = [f"sub{i}" for i in range(self.config.subscribers)]
        started = time.monotonic()
        replies = await asyncio.gather(
            *(
                w.call("add", wait_s=180, names=names[i::procs], tracks=self.tracks, concurrency=4)
                for i, w in enumerate(self.subs)
            )
        )
        failures = [f for r in replies for f in r["failures"]]
        expected = self.config.publishers * self.config.subscribers
        deadline = time.monotonic() + 30
        total: dict[str, int] = {}
        while time.monotonic() < deadline:
            statuses = await asyncio.gather(*(w.call("status") for w in self.subs))
            total = {
                k: sum(int(s[k]) for s in statuses)
                for k in ("peers", "connected", "failed", "streams", "receiving")
            }
            if total["receiving"] >= expected or total["failed"]:
                break
            await asyncio.sleep(0.5)
        return {"join_s": round(time.monotonic() - started, 2), "failures": failures[:5], **total}

    def pids(self) -> dict[str, list[int]]:
        assert self.gateway is not None
        return {
            "gateway": [self.gateway.pid],
            "publishers": [self.pubs.pid] if self.pubs else [],
            "subscribers": [w.pid for w in self.subs],
        }

    async def window(self, seconds: float) -> dict[str, Any]:
        """CPU of every process we started, the machine, UDP counters and frame counts."""
        workers = ([self.pubs] if self.pubs else []) + self.subs
        pids = self.pids()
        snaps0 = await asyncio.gather(*(w.call("snapshot") for w in workers))
        t0 = time.monotonic()
        cpu0 = {k: [cpu_sample(p, t0) for p in v] for k, v in pids.items()}
        ticks0, udp0 = machine_cpu_ticks(), udp_counters()
        await asyncio.sleep(seconds)
        snaps1 = await asyncio.gather(*(w.call("snapshot") for w in workers))
        t1 = time.monotonic()
        cpu1 = {k: [cpu_sample(p, t1) for p in v] for k, v in pids.items()}
        ticks1, udp1 = machine_cpu_ticks(), udp_counters()
        assert self.gateway is not None
        cpu = {
            k: sum(cpu_ms_per_s(a, b) for a, b in zip(cpu0[k], cpu1[k], strict=True)) for k in pids
        }
        busy = machine_busy_cores(ticks0, ticks1)
        fps: list[float] = []
        sent_fps: list[float] = []
        gaps = frames = 0
        rx_bytes = 0
        for s0, s1 in zip(snaps0, snaps1, strict=True):
            dt = s1["t"] - s0["t"]
            for a, b in zip(s0["streams"], s1["streams"], strict=True):
                fps.append((b[0] - a[0]) / dt)
                frames += b[0] - a[0]
                gaps += b[1] - a[1]
                rx_bytes += b[2] - a[2]
            for a, b in zip(s0["sent"], s1["sent"], strict=True):
                sent_fps.append((b[0] - a[0]) / dt)
        return {
            "seconds": round(t1 - t0, 2),
            "cpu_ms_per_s": {k: round(v, 1) for k, v in cpu.items()},
            "rss_bytes": rss_bytes(self.gateway.pid),
            "threads": cpu1["gateway"][0].threads,
            "machine_busy_cores": round(busy, 2),
            "other_work_cores": round(max(0.0, busy - sum(cpu.values()) / 1000), 2),
            "udp": {
                k: v for k, v in diff(udp1, udp0).items() if k in ("RcvbufErrors", "SndbufErrors")
            },
            "streams": len(fps),
            "fps_p50": percentile(fps, 50),
            "fps_min": min(fps) if fps else None,
            "sent_fps_p50": percentile(sent_fps, 50),
            "frames": frames,
            "frame_loss": gaps / max(frames + gaps, 1),
            "rx_kbps_per_stream": rx_bytes * 8 / 1000 / max(t1 - t0, 1e-9) / max(len(fps), 1),
        }

    async def stop(self) -> None:
        for worker in [*self.subs, *([self.pubs] if self.pubs else [])]:
            try:
                await worker.call("close_all", wait_s=30)
            except Exception:
                pass
            await worker.stop()
        if self.gateway is not None:
            await self.gateway.stop()


async def run_config(config: Config, args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    run = Run(config, args, run_dir)
    result: dict[str, Any] = {"config": config.name, **config.__dict__}
    async with aiohttp.ClientSession() as http:
        try:
            await run.start_gateway(http)
            await asyncio.sleep(2)
            result["idle"] = await run.window(3)
            result["publishers_join"] = await run.start_publishers()
            await asyncio.sleep(2)
            result["publishers_only"] = await run.window(min(5.0, args.window))
            result["subscribers_join"] = await run.start_subscribers()
            await asyncio.sleep(args.settle)
            result["window"] = await run.window(args.window)
            async with http.get(f"{run.base}/api/stats") as response:
                result["api_stats"] = await response.json()
            result["pids"] = run.pids()
        except Exception as exc:
            logger.exception("%s failed", config.name)
            result["error"] = f"{type(exc).__name__}: {exc}"[:500]
        finally:
            await run.stop()
    if "window" in result:
        result["summary"] = summarize(config, result)
        logger.info("%s: %s", config.name, result["summary"])
    return result


def summarize(config: Config, result: dict[str, Any]) -> dict[str, Any]:
    p, s = config.publishers, config.subscribers
    w, idle, pubs = result["window"], result["idle"], result["publishers_only"]
    gw = w["cpu_ms_per_s"]["gateway"]
    forwarded = p * s
    return {
        "forwarded_streams": forwarded,
        "gateway_cpu_ms_per_s": gw,
        "gateway_cores": round(gw / 1000, 3),
        # The brief's figure: every stream the gateway handles (P*S out + P in).
        "cpu_ms_per_stream_s": round(gw / (forwarded + p), 3),
        # Net of the publishers-only window: the cost of forwarding alone.
        "net_cpu_ms_per_forwarded_stream_s": round(
            (gw - pubs["cpu_ms_per_s"]["gateway"]) / forwarded, 3
        ),
        "publishers_only_cpu_ms_per_s": pubs["cpu_ms_per_s"]["gateway"],
        "idle_cpu_ms_per_s": idle["cpu_ms_per_s"]["gateway"],
        "rss_mb": round(w["rss_bytes"] / 2**20, 1),
        "idle_rss_mb": round(idle["rss_bytes"] / 2**20, 1),
        "rss_mb_per_session": round((w["rss_bytes"] - idle["rss_bytes"]) / 2**20 / (p + s), 2),
        # A subscriber session here carries P m-lines: memory per stream (P*S out + P in).
        "rss_mb_per_stream": round(
            (w["rss_bytes"] - idle["rss_bytes"]) / 2**20 / (forwarded + p), 2
        ),
        # Gateway CPU with the publishers only, per ingested stream (idle subtracted).
        "ingest_cpu_ms_per_stream_s": round(
            (pubs["cpu_ms_per_s"]["gateway"] - idle["cpu_ms_per_s"]["gateway"]) / p, 1
        ),
        "fps_p50": round(w["fps_p50"] or 0, 1),
        "fps_min": round(w["fps_min"] or 0, 1),
        "sent_fps_p50": round(w["sent_fps_p50"] or 0, 1),
        "frame_loss": w["frame_loss"],
        "rx_kbps_per_stream": round(w["rx_kbps_per_stream"]),
        "streams_counted": w["streams"],
        "publishers_cpu_ms_per_s": w["cpu_ms_per_s"]["publishers"],
        "subscribers_cpu_ms_per_s": w["cpu_ms_per_s"]["subscribers"],
        "machine_busy_cores": w["machine_busy_cores"],
        "other_work_cores": w["other_work_cores"],
        "rcvbuf_errors": w["udp"].get("RcvbufErrors", 0),
    }


def _f(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    m, v = results["machine"], results["versions"]
    lines = [
        "# Rooms benchmark",
        "",
        "Generated by `bench/rooms.py` (see bench/README.md, section Rooms).",
        "",
        f"- Command: `{results['command']}`",
        f"- Date: {results['date']}, took {results['duration_s']} s",
        f"- Code measured: git {results['git'].get('head')}, gateway/ sha256 "
        f"{results['git'].get('gateway_sha256')}, uncommitted in gateway/: "
        f"{len(results['git'].get('uncommitted', []))} files",
        f"- Machine: {m['nproc']} cores ({m['cpu_model']}), {m['memory_gb']} GiB, kernel "
        f"{m['kernel']}, load average at start {', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}; "
        "shared with the load generators (and possibly other work): noisy.",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- UDP socket buffers (sysctl): {results['udp_buffers']}",
        "- Inputs: 360p: `bench/out/input_360p30_vp8_10s.webm` (640x360 30 fps VP8 ~600 kbps, "
        "keyframe every 2.5 s, synthetic motion); 720p: `bench/out/input_720p30_vp8_opus_10s.webm` "
        "(the broadcast benchmark's 1280x720 30 fps VP8 ~1.5 Mbps, video only). Sent as-is (no "
        "encode), looped with rebased timestamps; every publisher has its own clock.",
        f"- Window {results['settings']['window']} s after {results['settings']['settle']} s "
        "settle; one fresh gateway per configuration. Video only, no audio.",
        "",
        "PxS = P publishers, S subscribers each receiving every publisher: P x S forwarded "
        "streams plus P ingested. 1xN is the broadcast baseline (same stream, same room code "
        "path). CPU = utime+stime of the gateway PID (all threads) from /proc, in CPU-ms per "
        "second (1000 = one core).",
        "",
        "| config | fwd streams | gateway CPU-ms/s | CPU-ms per stream-s (P*S+P) | net CPU-ms per "
        "fwd stream-s | ingest CPU-ms per stream-s (pubs only) | gateway RSS MB (idle) | "
        "RSS/session MB | RSS/stream MB | fps p50 / min (sent) | "
        "frame loss | kbps/stream | publishers / subscribers CPU-ms/s | machine busy / other "
        "(cores) | RcvbufErrors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["configs"]:
        s = r.get("summary")
        if s is None:
            lines.append(f"| {r['config']} | failed: {r.get('error', '?')} |" + " |" * 13)
            continue
        lines.append(
            f"| {r['config']}{' (broadcast)' if r['publishers'] == 1 else ''} "
            f"| {s['forwarded_streams']} | {_f(s['gateway_cpu_ms_per_s'])} "
            f"| {_f(s['cpu_ms_per_stream_s'], 2)} | {_f(s['net_cpu_ms_per_forwarded_stream_s'], 2)} "
            f"| {_f(s['ingest_cpu_ms_per_stream_s'])} "
            f"| {_f(s['rss_mb'])} ({_f(s['idle_rss_mb'])}) | {_f(s['rss_mb_per_session'], 2)} "
            f"| {_f(s['rss_mb_per_stream'], 2)} "
            f"| {_f(s['fps_p50'])} / {_f(s['fps_min'])} ({_f(s['sent_fps_p50'])}) "
            f"| {s['frame_loss'] * 100:.2f}% | {s['rx_kbps_per_stream']} "
            f"| {_f(s['publishers_cpu_ms_per_s'])} / {_f(s['subscribers_cpu_ms_per_s'])} "
            f"| {_f(s['machine_busy_cores'], 2)} / {_f(s['other_work_cores'], 2)} "
            f"| {s['rcvbuf_errors']} |"
        )
    lines += ["", "## Notes", ""]
    lines += [f"- {note}" for note in results.get("notes", [])]
    lines += [
        "- Net CPU per forwarded stream-second = (gateway CPU with everyone - gateway CPU with "
        "the publishers only, over a separate shorter window) / (P x S): it leaves out ingest, "
        "which differs between a room (P ingested streams) and a broadcast (one).",
        "- RSS per session = (RSS at the end of the window - RSS of the idle gateway) / (P + S); "
        "a subscriber session here carries P m-lines, a publisher one.",
        "- A subscriber session in a room carries P streams on one transport (one ICE/DTLS "
        "connection, one socket), a broadcast viewer one: per-session costs are shared by P "
        "streams in a room, which is why net CPU per forwarded stream can come out lower in "
        "8x8 than in 1x40.",
        "- Noise: one 10 s window per configuration (the publishers-only window is 5 s) on a "
        "shared 2-core machine; two runs of the same code differed by up to ~0.35 CPU-ms per "
        "forwarded stream-second. Compare rooms and broadcast within one run.",
        "- Memory scales with streams (m-lines), not sessions: ~0.8-1.1 MB per stream. An "
        "estimate, not measured here: each forwarding Subscriber keeps 512 protected packets "
        "for NACK (gateway/media/subscriber.py HISTORY), ~1.2 KB each, about 0.6 MB once full; "
        "a fixed packet count is ~9 s of a 600 kbps stream but ~3.5 s at 1.5 Mbps.",
        "- fps is per forwarded stream (subscriber x publisher), frames complete at the "
        "subscriber's tap; loss = frames missing from gaps in RTP timestamps.",
        "- The load generators (aiortc peers receiving: SRTP, jitter buffers, RTCP) run on the "
        "same 2 cores and cost more CPU than the gateway; their CPU is in the table. When "
        "machine busy approaches 2 cores, the numbers measure the machine, not the gateway.",
        "",
    ]
    return "\n".join(lines)


def notes(results: dict[str, Any]) -> list[str]:
    found: list[str] = []
    rows = {r["config"]: r["summary"] for r in results["configs"] if "summary" in r}
    broadcast = [(k, s) for k, s in rows.items() if k.startswith("1x")]
    for name, s in rows.items():
        if name.startswith("1x"):
            continue
        base = next((b for k, b in broadcast if k.endswith(name.split("@")[1])), None)
        if base is not None:
            found.append(
                f"{name}: {s['cpu_ms_per_stream_s']:.2f} CPU-ms per stream-second vs "
                f"{base['cpu_ms_per_stream_s']:.2f} for the broadcast at the same resolution "
                f"(net per forwarded stream {s['net_cpu_ms_per_forwarded_stream_s']:.2f} vs "
                f"{base['net_cpu_ms_per_forwarded_stream_s']:.2f})."
            )
        if s["fps_min"] < 0.8 * s["sent_fps_p50"] or s["frame_loss"] > 0.01:
            found.append(
                f"{name}: degraded (slowest stream {s['fps_min']} fps, loss "
                f"{s['frame_loss'] * 100:.2f}%); machine busy {s['machine_busy_cores']} cores."
            )
    if rows:
        busiest = max(rows.items(), key=lambda kv: kv[1]["machine_busy_cores"])
        b = busiest[1]
        loadgen = b["publishers_cpu_ms_per_s"] + b["subscribers_cpu_ms_per_s"]
        saturated = b["machine_busy_cores"] > 0.8 * (results["machine"]["nproc"] or 1)
        found.append(
            f"Limits: the busiest configuration ({busiest[0]}) kept the machine "
            f"{b['machine_busy_cores']:.2f} of {results['machine']['nproc']} cores busy: gateway "
            f"{b['gateway_cpu_ms_per_s']:.0f} CPU-ms/s, load generators {loadgen:.0f} CPU-ms/s "
            "(the aiortc subscribers alone "
            f"{b['subscribers_cpu_ms_per_s'] / max(b['gateway_cpu_ms_per_s'], 1):.1f}x the "
            f"gateway), other work {b['other_work_cores']:.2f}. "
            + (
                "The machine was saturated: the numbers are bounded by the shared cores."
                if saturated
                else "Nothing saturated at these sizes; in larger rooms the load generators, "
                "which cost more than the gateway per stream, run out of CPU first."
            )
        )
        ingest = [f"{k}: {s['ingest_cpu_ms_per_stream_s']:.1f}" for k, s in rows.items()]
        found.append(
            "Ingest (gateway CPU with the publishers only, idle subtracted, per publisher): "
            + ", ".join(ingest)
            + " CPU-ms/s; it includes the fixed cost of a live room (one publisher), so it falls "
            "with P. A received stream costs several times a forwarded one."
        )
    for r in results["configs"]:
        if "error" in r:
            found.append(f"{r['config']}: failed: {r['error']}")
    return found


def rewrite(args: argparse.Namespace) -> int:
    """Recompute the summaries, notes and Markdown from a recorded JSON (no measurement)."""
    out_json = Path(args.json) if args.json else RESULTS / "rooms.json"
    out_md = Path(args.md) if args.md else RESULTS / "rooms.md"
    results = json.loads(out_json.read_text())
    for row in results["configs"]:
        if "window" in row:
            config = Config(row["publishers"], row["subscribers"], row["height"])
            row["summary"] = summarize(config, row)
    results["notes"] = notes(results)
    out_json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    out_md.write_text(markdown(results))
    logger.info("rewrote %s and %s", out_md, out_json)
    return 0


async def main_async(args: argparse.Namespace) -> int:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = OUT_DIR / f"rooms-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    configs = parse_configs(args.configs or ("1x10@360,2x5@360" if args.quick else DEFAULT))
    started = time.monotonic()
    results: dict[str, Any] = {
        **run_header("bench.rooms"),
        "settings": {
            "window": args.window,
            "settle": args.settle,
            "sub_procs": args.sub_procs,
            "configs": [c.name for c in configs],
        },
        "run_dir": str(run_dir.relative_to(ROOT)),
        "configs": [],
    }
    for height in sorted({c.height for c in configs}):
        input_file(height)
    results["udp_buffers"] = udp_buffer_settings()
    for config in configs:
        other = await wait_quiet(args.wait_quiet)
        logger.info("%s (other work before: %.2f cores)", config.name, other)
        row = await run_config(config, args, run_dir)
        row["other_work_before_cores"] = other
        results["configs"].append(row)
    results["duration_s"] = round(time.monotonic() - started, 1)
    results["notes"] = notes(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out_json = Path(args.json) if args.json else RESULTS / "rooms.json"
    out_md = Path(args.md) if args.md else RESULTS / "rooms.md"
    text = json.dumps(results, indent=2, default=str) + "\n"
    out_json.write_text(text)
    (run_dir / "rooms.json").write_text(text)
    out_md.write_text(markdown(results))
    logger.info("wrote %s and %s (%.0f s)", out_md, out_json, results["duration_s"])
    return 0 if all("summary" in r for r in results["configs"]) else 1


DEFAULT = "1x40@360,4x10@360,8x8@360,1x40@720,4x10@720,8x8@720"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.rooms",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="one small room and its baseline")
    parser.add_argument("--configs", help=f"PxS@height,... (default {DEFAULT})")
    parser.add_argument("--window", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--sub-procs", type=int, default=2, help="subscriber processes")
    parser.add_argument("--wait-quiet", type=float, default=30.0)
    parser.add_argument("--json")
    parser.add_argument("--md")
    parser.add_argument(
        "--rewrite", action="store_true", help="only redo the report from the recorded JSON"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.rewrite:
        return rewrite(args)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
