"""The processing benchmark: renditions (decode + pipeline + encode once) beside passthrough and
the naive aiortc pattern (transform and encode per viewer), in one run.

    .venv/bin/python -m bench.processing [--viewers 1,5,20] [--quick]

Phases (each can be skipped):
  gateway     one gateway, one publisher of the pre-encoded 720p30 VP8 file, N viewers
              (not decoding) without a pipeline (passthrough baseline, N = 0 too), then
              through ``?pipeline=gray`` ([grayscale]) and ``?pipeline=privacy`` ([blur,
              timestamp]): all of a pipeline's viewers share one rendition
  naive       the same publisher and viewers against bench/naive_processing.py: aiortc's
              pattern, the pipeline run and the frame encoded once per viewer
  threads     a second gateway with ``processing.encoder_threads: 2``, each pipeline at N = 1
  standalone  the rendition's decode + pipeline + encode alone in a process of its own
              (bench/processing_worker.py): the floor of the worker thread's costs

Writes bench/results/processing.md and bench/results/processing.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

from . import control
from .broadcast import (
    OTHER_LOAD_LIMIT,
    OUT,
    RESULTS,
    ROOM,
    SYSCTLS,
    Target,
    _git,
    run_header,
    wait_others_quiet,
    wait_quiet,
)
from .control import PYTHON, ROOT, Process
from .media import FPS, ensure_input_file
from .stats import (
    cpu_ms_per_s,
    cpu_sample,
    machine_cpu_ticks,
    percentile,
    read_sysctl,
    rss_bytes,
    user_ms_per_s,
)

logger = logging.getLogger("bench")

# The pipelines measured, as configured in the gateway (and given to the naive server).
PIPELINES: dict[str, list[Any]] = {"gray": ["grayscale"], "privacy": ["blur", "timestamp"]}
PASSTHROUGH = "passthrough"
# Targets (the issue): [grayscale] at a full 30 fps for at most 0.6 core, each added viewer
# costing what a passthrough viewer costs, added latency p95 at most 50 ms.
TARGET_RENDITION_CORES = 0.6
TARGET_LATENCY_P95_MS = 50.0
TARGET_FPS_RATIO = 0.95
# "What a passthrough viewer costs", with the noise of two slopes over a shared machine.
VIEWER_COST_TOLERANCE = 1.25
VIEWER_COST_SLACK_MS = 1.0


@dataclass
class Settings:
    viewers: list[int]
    naive_viewers: list[int]
    pipelines: list[str]
    window_s: float
    settle_s: float
    warmup_s: float
    loadgen_procs: int
    phases: list[str]
    thread_counts: list[int]
    run_dir: Path = field(default_factory=lambda: OUT)
    # Seconds this run may spend waiting for other work on the machine (shared budget).
    quiet_budget_s: list[float] = field(default_factory=lambda: [60.0])


def thread_cpu(pid: int) -> dict[int, float]:
    """utime+stime (s) of every living thread of ``pid``."""
    result: dict[int, float] = {}
    for name in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{name}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        result[int(name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return result


def _timer(snapshots: list[dict[str, Any]], key: str) -> dict[str, float | None]:
    """Aggregates one Timer over the polls of a window. Each poll's p50/p95 covers the
    timer's last 128 samples (~4 s at 30 fps) and the window is polled about that often:
    the window's figure is the median of the polls' (and the worst p95)."""
    p50 = [s[key]["p50_ms"] for s in snapshots if s.get(key, {}).get("count")]
    p95 = [s[key]["p95_ms"] for s in snapshots if s.get(key, {}).get("count")]
    return {
        "p50_ms": median(p50) if p50 else None,
        "p95_ms": median(p95) if p95 else None,
        "p95_max_ms": max(p95) if p95 else None,
    }


class Server(Target):
    """The gateway (or the naive server) with its publisher and its viewers of one mode."""

    def __init__(
        self, kind: str, settings: Settings, input_file: Path, encoder_threads: int = 1
    ) -> None:
        super().__init__(kind, settings, input_file)  # type: ignore[arg-type]
        self.encoder_threads = encoder_threads
        self.mode = PASSTHROUGH
        self.threads_before: set[int] = set()
        self.name = kind if encoder_threads == 1 else f"{kind}-threads{encoder_threads}"

    def server_args(self) -> list[str]:
        if self.kind == "gateway":
            config = self.settings.run_dir / f"{self.name}.yaml"
            config.write_text(
                json.dumps(
                    {
                        "ice": {"addresses": ["127.0.0.1"]},
                        "rooms": {"max_subscribers": 2000},
                        "log": {"level": "warning"},
                        "processing": {
                            "pipelines": PIPELINES,
                            "encoder_threads": self.encoder_threads,
                        },
                    },
                    indent=2,
                )
                + "\n"
            )  # JSON is YAML
            return [PYTHON, "-m", "gateway", "--config", str(config), "--port", str(self.port)]
        return [
            PYTHON, "-m", "bench.naive_processing", "--port", str(self.port),
            "--pipelines", json.dumps(PIPELINES),
        ]  # fmt: skip

    def loadgen_name(self, index: int) -> str:
        return f"{self.name}-{self.mode}-loadgen{index}"

    @property
    def url(self) -> str:
        query = "" if self.mode == PASSTHROUGH else f"?pipeline={self.mode}"
        return f"{self.base}/whep/{ROOM}{query}"

    async def set_mode(self, mode: str) -> None:
        """Closes every viewer (their rendition with them) and stops their processes."""
        for worker in self.loadgens:
            try:
                await asyncio.wait_for(worker.call("close_all", wait_s=60), 60)
            except Exception:
                pass
            await worker.stop()
        self.loadgens = []
        self.viewers = 0
        self.mode = mode
        if self.kind == "gateway":
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if not (await self.renditions()).get("live"):
                    break
                await asyncio.sleep(0.3)
        assert self.server is not None
        await asyncio.sleep(1.0)
        self.threads_before = set(thread_cpu(self.server.pid))

    async def renditions(self) -> dict[str, Any]:
        assert self.http is not None
        path = "/api/renditions" if self.kind == "gateway" else "/api/naive"
        async with self.http.get(self.base + path) as response:
            body: dict[str, Any] = await response.json()
        return body

    def rendition(self, body: dict[str, Any]) -> dict[str, Any] | None:
        for r in body.get("renditions", []):
            if r["pipeline"] == self.mode and r["kind"] == "video":
                found: dict[str, Any] = r
                return found
        return None

    async def _poll(self, until: float, every: float, out: list[dict[str, Any]]) -> None:
        while True:
            await asyncio.sleep(max(0.0, min(every, until - time.monotonic())))
            try:
                out.append(await self.renditions())
            except Exception as exc:
                logger.warning("polling the server's stats failed: %s", exc)
            if time.monotonic() >= until - 0.05:
                return

    async def measure(self, window_s: float) -> dict[str, Any]:
        assert self.publisher is not None and self.server is not None
        await asyncio.sleep(self.settings.settle_s)
        pids = self.pids()
        server_pid = self.server.pid
        api0 = await self.renditions() if self.mode != PASSTHROUGH else {}
        ticks0 = machine_cpu_ticks()
        t0 = time.monotonic()
        cpu0 = {name: [cpu_sample(p, t0) for p in ps] for name, ps in pids.items()}
        threads0 = thread_cpu(server_pid)
        pub0, *views0 = await asyncio.gather(
            self.publisher.call("snapshot"), *(w.call("snapshot") for w in self.loadgens)
        )
        polls: list[dict[str, Any]] = []
        if self.mode != PASSTHROUGH:
            # Timers keep their last 128 samples (~4.3 s at 30 fps): poll about that often.
            every = window_s / max(1, round(window_s / 4.0))
            await self._poll(t0 + window_s, every, polls)
        else:
            await asyncio.sleep(window_s)
        t1 = time.monotonic()
        cpu1 = {name: [cpu_sample(p, t1) for p in ps] for name, ps in pids.items()}
        threads1 = thread_cpu(server_pid)
        pub1, *views1 = await asyncio.gather(
            self.publisher.call("snapshot"), *(w.call("snapshot") for w in self.loadgens)
        )
        ticks1 = machine_cpu_ticks()
        rss = rss_bytes(server_pid)
        api1 = polls[-1] if polls else {}
        statuses = await asyncio.gather(*(w.call("status") for w in self.loadgens))
        states: dict[str, int] = {}
        for status in statuses:
            for state, count in status["states"].items():
                states[state] = states.get(state, 0) + count

        dt = t1 - t0
        cpu = {
            name: sum(cpu_ms_per_s(a, b) for a, b in zip(cpu0[name], cpu1[name], strict=True))
            for name in pids
        }

        def threads_ms(tids: set[int]) -> float:
            return sum(threads1[t] - threads0.get(t, 0.0) for t in tids) * 1000 / dt

        living = set(threads1)
        loop_tids = {server_pid}
        new_tids = living - self.threads_before - loop_tids
        other_tids = living - new_tids - loop_tids
        pub_fps = (pub1["video_frames"] - pub0["video_frames"]) / (pub1["t"] - pub0["t"])
        viewers: list[dict[str, float]] = []
        for snap0, snap1 in zip(views0, views1, strict=True):
            vdt = snap1["t"] - snap0["t"]
            for a, b in zip(snap0["viewers"], snap1["viewers"], strict=True):
                frames = b["video_frames"] - a["video_frames"]
                gaps = b["video_gap_frames"] - a["video_gap_frames"]
                viewers.append(
                    {
                        "fps": frames / vdt,
                        "kbps": (b["video_bytes"] - a["video_bytes"]) * 8 / vdt / 1000,
                        "missing": gaps / max(frames + gaps, 1),
                    }
                )
        busy = (ticks1[0] - ticks0[0]) / max(ticks1[1] - ticks0[1], 1) * (os.cpu_count() or 1)
        fps = [v["fps"] for v in viewers]
        row: dict[str, Any] = {
            "mode": self.mode,
            "viewers": self.viewers,
            "window_s": round(dt, 2),
            "server_cpu_ms_per_s": cpu["server"],
            "server_user_ms_per_s": user_ms_per_s(cpu0["server"][0], cpu1["server"][0]),
            # The main thread runs the event loop (gateway and naive server alike).
            "loop_thread_ms_per_s": threads_ms(loop_tids),
            # Threads that appeared since this mode's first viewer: the rendition's worker
            # (and any codec threads); in the naive server aiortc's encoder executor threads.
            "new_threads_ms_per_s": threads_ms(new_tids),
            "new_threads": len(new_tids),
            "other_threads_ms_per_s": threads_ms(other_tids),
            "server_threads": len(living),
            "server_rss_bytes": rss,
            "publisher_cpu_ms_per_s": cpu["publisher"],
            "loadgen_cpu_ms_per_s": cpu["loadgen"],
            "machine_busy_cores": busy,
            "other_load_cores": max(
                0.0, busy - (cpu["server"] + cpu["publisher"] + cpu["loadgen"]) / 1000
            ),
            "publisher_fps": pub_fps,
            "viewer_fps_p50": percentile(fps, 50),
            "viewer_fps_min": min(fps) if fps else None,
            "viewer_kbps_p50": percentile([v["kbps"] for v in viewers], 50),
            "viewer_missing_mean": sum(v["missing"] for v in viewers) / len(viewers)
            if viewers
            else None,
            "viewer_states": states,
        }
        if self.kind == "gateway" and self.mode != PASSTHROUGH:
            row["rendition"] = self._rendition_row(api0, api1, polls, dt)
        elif self.kind == "naive" and self.mode != PASSTHROUGH:
            row["naive"] = self._naive_row(polls)
        return row

    def _rendition_row(
        self,
        api0: dict[str, Any],
        api1: dict[str, Any],
        polls: list[dict[str, Any]],
        dt: float,
    ) -> dict[str, Any] | None:
        r0, r1 = self.rendition(api0), self.rendition(api1)
        if r0 is None or r1 is None:
            return None
        if r0["id"] != r1["id"]:
            logger.warning("the rendition changed during the window")
        snaps = [r for r in (self.rendition(p) for p in polls) if r is not None]
        timing = [s["timing"] for s in snaps]
        stages: dict[str, Any] = {}
        for stage in r1["pipeline_stats"]["stages"]:
            name = stage["name"]
            per_poll = [
                {"t": st["timing"]}
                for s in snaps
                for st in s["pipeline_stats"]["stages"]
                if st["name"] == name
            ]
            stages[name] = _timer(per_poll, "t") | {
                "failures": stage["failures"],
                "disabled": stage["disabled"],
            }
        conversion = _timer([{"t": s["pipeline_stats"]["conversion"]} for s in snaps], "t")

        def rate(key: str) -> float:
            return (r1[key] - r0[key]) / dt

        return {
            "id": r1["id"],
            "subscribers": r1["subscribers"],
            "fps_in": rate("frames_in"),
            "fps_decoded": rate("frames_decoded"),
            "fps_processed": rate("frames_processed"),
            "fps_encoded": rate("frames_encoded"),
            "fps_out": rate("frames_out"),
            "keyframes_encoded": r1["keyframes_encoded"] - r0["keyframes_encoded"],
            "drops": {k: v - r0["drops"].get(k, 0) for k, v in r1["drops"].items()},
            "keyframe_requests": {
                k: v - r0["keyframe_requests"].get(k, 0) for k, v in r1["keyframe_requests"].items()
            },
            "decoder_opens": r1["decoder_opens"],
            "encoder_opens": r1["encoder_opens"],
            "latency": _timer(timing, "latency"),
            "decode": _timer(timing, "decode"),
            "process": _timer(timing, "process"),
            "encode": _timer(timing, "encode"),
            "conversion": conversion,
            "stages": stages,
            "polls": len(snaps),
        }

    def _naive_row(self, polls: list[dict[str, Any]]) -> dict[str, Any]:
        p50s: list[float] = []
        p95s: list[float] = []
        for poll in polls:
            for viewer in poll.get("viewers", []):
                if viewer["process"]["count"]:
                    p50s.append(viewer["process"]["p50_ms"])
                    p95s.append(viewer["process"]["p95_ms"])
        return {
            "process_p50_ms": median(p50s) if p50s else None,
            "process_p95_ms": median(p95s) if p95s else None,
            "transforms": len(polls[-1].get("viewers", [])) if polls else 0,
        }


async def measure_row(server: Server, n: int, join: dict[str, Any]) -> dict[str, Any]:
    """One window; measured again (once, after other work calms down) if the machine was busy
    with other work or the viewers did not all connect."""
    row = await server.measure(server.settings.window_s)
    row["join"] = join
    if row["other_load_cores"] > OTHER_LOAD_LIMIT and server.settings.quiet_budget_s[0] > 0:
        logger.info(
            "%s %s N=%d: other work %.2f cores; measuring again",
            server.name,
            server.mode,
            n,
            row["other_load_cores"],
        )
        await wait_others_quiet(server, server.settings)  # type: ignore[arg-type]
        again = await server.measure(server.settings.window_s)
        again["join"] = join
        if again["other_load_cores"] < row["other_load_cores"]:
            again["earlier_attempt"] = {
                k: row[k] for k in ("server_cpu_ms_per_s", "other_load_cores")
            }
            row = again
    rendition = row.get("rendition") or {}
    logger.info(
        "%s %s N=%d: server %.0f ms/s (loop %.0f, new threads %.0f)  viewers %.1f fps (min %.1f)%s  other %.2f cores",
        server.name, server.mode, n, row["server_cpu_ms_per_s"], row["loop_thread_ms_per_s"],
        row["new_threads_ms_per_s"], row["viewer_fps_p50"] or 0, row["viewer_fps_min"] or 0,
        (
            f"  rendition out {rendition['fps_out']:.1f} fps, latency p50/p95 "
            f"{_f(rendition['latency']['p50_ms'])}/{_f(rendition['latency']['p95_ms'])} ms, "
            f"encode p50 {_f(rendition['encode']['p50_ms'])} ms, "
            f"latest-wins drops {rendition['drops'].get('latest_wins')}"
            if rendition
            else ""
        ),
        row["other_load_cores"],
    )  # fmt: skip
    return row


async def run_server(
    kind: str,
    modes: list[tuple[str, list[int]]],
    settings: Settings,
    input_file: Path,
    encoder_threads: int = 1,
) -> dict[str, Any]:
    """One server: for each (mode, counts), viewers added up to each N and measured."""
    server = Server(kind, settings, input_file, encoder_threads)
    result: dict[str, Any] = {"encoder_threads": encoder_threads, "modes": {}}
    try:
        await server.start()
        for mode, counts in modes:
            await server.set_mode(mode)
            rows: list[dict[str, Any]] = []
            result["modes"][mode] = rows
            if 0 in counts:
                logger.info("%s: publisher only (N=0)", server.name)
                rows.append(await measure_row(server, 0, {}))
            first = True
            for n in (c for c in counts if c > 0):
                join = await server.set_viewers(n)
                if join["receiving"] < n:
                    logger.warning(
                        "%s %s: only %d of %d viewers receiving", kind, mode, join["receiving"], n
                    )
                if first and mode != PASSTHROUGH:
                    await asyncio.sleep(settings.warmup_s)  # the rendition's first seconds
                first = False
                rows.append(await measure_row(server, n, join))
    except Exception as exc:
        logger.exception("%s phase failed", server.name)
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        await server.stop()
    return result


async def run_standalone(settings: Settings, input_file: Path) -> dict[str, Any]:
    """Each pipeline alone in a process (1 encoder thread), and the first one with the
    other encoder thread counts measured by the threads phase."""
    runs = [(name, 1) for name in settings.pipelines]
    if "threads" in settings.phases:
        runs += [(settings.pipelines[0], count) for count in settings.thread_counts]
    results: dict[str, Any] = {}
    for name, count in runs:
        key = name if count == 1 else f"{name}-threads{count}"
        out = settings.run_dir / f"standalone-{key}.json"
        process = await Process.start(
            f"standalone-{key}",
            [
                PYTHON, "-m", "bench.processing_worker", "--file", str(input_file),
                "--pipeline", json.dumps(PIPELINES[name]), "--seconds", str(settings.window_s),
                "--warmup", "3", "--threads", str(count), "--out", str(out),
            ],
            settings.run_dir / "logs",
        )  # fmt: skip
        ticks0 = machine_cpu_ticks()
        code = await asyncio.wait_for(process.proc.wait(), settings.window_s + 60)
        ticks1 = machine_cpu_ticks()
        if code != 0 or not out.exists():
            results[key] = {"error": f"exit {code}: {process.tail()}"}
            continue
        result = json.loads(out.read_text())
        busy = (ticks1[0] - ticks0[0]) / max(ticks1[1] - ticks0[1], 1) * (os.cpu_count() or 1)
        result["machine_busy_cores"] = busy
        # Approximate: the machine over the whole run (start-up and warm-up included).
        result["other_load_cores_approx"] = max(0.0, busy - result["cpu_ms_per_s"] / 1000)
        results[key] = result
        logger.info(
            "standalone %s: %.0f ms/s, %.1f fps, encode p50 / p95 %.1f / %.1f ms, other work ~%.2f cores",
            key,
            result["cpu_ms_per_s"],
            result["fps"],
            result["timing"]["encode"]["p50_ms"],
            result["timing"]["encode"]["p95_ms"],
            result["other_load_cores_approx"],
        )
    return results


# -- analysis -------------------------------------------------------------------------------


def _rows(result: dict[str, Any] | None, mode: str) -> dict[int, dict[str, Any]]:
    if not result:
        return {}
    return {r["viewers"]: r for r in result.get("modes", {}).get(mode, [])}


def _viewer_side(row: dict[str, Any]) -> float:
    """Gateway CPU without the rendition's own threads (decode, process, encode): what
    depends on N. Those threads do the same work whatever N is, and their CPU varies from
    window to window with the content (+-10%), more than N viewers cost."""
    return float(row["server_cpu_ms_per_s"] - row["new_threads_ms_per_s"])


def _slope(rows: dict[int, dict[str, Any]], key: Any = None) -> float | None:
    """CPU-ms/s per viewer added between the smallest and the largest N > 0."""
    counts = sorted(n for n in rows if n > 0)
    if len(counts) < 2:
        return None
    lo, hi = counts[0], counts[-1]

    def value(row: dict[str, Any]) -> float:
        return float(row["server_cpu_ms_per_s"]) if key is None else float(key(row))

    return (value(rows[hi]) - value(rows[lo])) / (hi - lo)


def analyse(results: dict[str, Any]) -> dict[str, Any]:
    gateway = results.get("gateway")
    passthrough = _rows(gateway, PASSTHROUGH)
    summary: dict[str, Any] = {"passthrough": {}, "pipelines": {}}
    idle = passthrough.get(0)
    pt = summary["passthrough"]
    pt["slope_ms_per_viewer_s"] = _slope(passthrough)
    pt["slope_viewer_side_ms_per_viewer_s"] = _slope(passthrough, _viewer_side)
    if idle:
        pt["idle_cpu_ms_per_s"] = idle["server_cpu_ms_per_s"]
        pt["net_ms_per_viewer_s"] = {
            n: (r["server_cpu_ms_per_s"] - idle["server_cpu_ms_per_s"]) / n
            for n, r in passthrough.items()
            if n > 0
        }
    naive_result = results.get("naive")
    naive_idle = _rows(naive_result, PASSTHROUGH).get(0)
    for name in results["settings"]["pipelines"]:
        rows = _rows(gateway, name)
        s: dict[str, Any] = {}
        summary["pipelines"][name] = s
        counts = sorted(rows)
        if not counts:
            continue
        first, last = rows[counts[0]], rows[counts[-1]]
        base = passthrough.get(counts[0])
        if base:
            s["rendition_ms_per_s"] = first["server_cpu_ms_per_s"] - base["server_cpu_ms_per_s"]
            s["rendition_cores"] = s["rendition_ms_per_s"] / 1000
        s["rendition_threads_ms_per_s"] = median(r["new_threads_ms_per_s"] for r in rows.values())
        s["net_of_passthrough_ms_per_s"] = {
            n: r["server_cpu_ms_per_s"] - passthrough[n]["server_cpu_ms_per_s"]
            for n, r in rows.items()
            if n in passthrough
        }
        s["slope_ms_per_viewer_s"] = _slope(rows)
        s["slope_viewer_side_ms_per_viewer_s"] = _slope(rows, _viewer_side)
        rend = [r["rendition"] for r in rows.values() if r.get("rendition")]
        if rend:
            s["fps_out_min"] = min(x["fps_out"] for x in rend)
            s["latency_p50_ms_max"] = max(x["latency"]["p50_ms"] or 0 for x in rend)
            s["latency_p95_ms_max"] = max(x["latency"]["p95_ms"] or 0 for x in rend)
            s["latency_p95_worst_poll_ms"] = max(x["latency"]["p95_max_ms"] or 0 for x in rend)
            s["latest_wins_drops"] = sum(x["drops"].get("latest_wins", 0) for x in rend)
        s["viewer_fps_min"] = min(r["viewer_fps_min"] or 0 for r in rows.values())
        s["publisher_fps"] = median(r["publisher_fps"] for r in rows.values())
        if first.get("rendition") and last.get("rendition"):
            s["encode_p50_ms"] = {
                counts[0]: first["rendition"]["encode"]["p50_ms"],
                counts[-1]: last["rendition"]["encode"]["p50_ms"],
            }
        if counts[-1] in passthrough:
            s["loop_thread_ms_per_s"] = {
                "passthrough": passthrough[counts[-1]]["loop_thread_ms_per_s"],
                name: last["loop_thread_ms_per_s"],
                "viewers": counts[-1],
            }
        # The naive pattern, same pipeline.
        naive = _rows(naive_result, name)
        if naive and naive_idle:
            per_viewer = {
                n: (r["server_cpu_ms_per_s"] - naive_idle["server_cpu_ms_per_s"]) / n
                for n, r in naive.items()
            }
            s["naive_ms_per_viewer_s"] = per_viewer
            s["naive_ms_per_viewer_s_median"] = median(per_viewer.values())
            s["naive_fps_min"] = {n: r["viewer_fps_min"] for n, r in naive.items()}
            slope = s.get("slope_viewer_side_ms_per_viewer_s")
            if slope and slope > 0:
                s["ratio_naive_per_viewer_vs_added_viewer"] = (
                    s["naive_ms_per_viewer_s_median"] / slope
                )
            # Whole-server cost at the naive's largest N vs the gateway's (interpolated).
            k = max(naive)
            low = max((n for n in rows if n <= k), default=None)
            high = min((n for n in rows if n >= k), default=None)
            if low is not None and high is not None:
                a, b = rows[low]["server_cpu_ms_per_s"], rows[high]["server_cpu_ms_per_s"]
                gw = a if high == low else a + (b - a) * (k - low) / (high - low)
                s["at_naive_max_n"] = {
                    "viewers": k,
                    "naive_ms_per_s": naive[k]["server_cpu_ms_per_s"],
                    "gateway_ms_per_s": gw,
                    "ratio": naive[k]["server_cpu_ms_per_s"] / gw,
                }
    threads = results.get("threads") or {}
    for name, s in summary["pipelines"].items():
        row = _rows(threads, name).get(1)
        if row and row.get("rendition"):
            s["encoder_threads_2"] = {
                "server_ms_per_s": row["server_cpu_ms_per_s"],
                "rendition_threads_ms_per_s": row["new_threads_ms_per_s"],
                "encode_p50_ms": row["rendition"]["encode"]["p50_ms"],
                "latency_p50_ms": row["rendition"]["latency"]["p50_ms"],
                "latency_p95_ms": row["rendition"]["latency"]["p95_ms"],
                "fps_out": row["rendition"]["fps_out"],
            }
    summary["targets"] = targets(summary)
    return summary


def targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    pt_slope = summary["passthrough"].get("slope_viewer_side_ms_per_viewer_s")
    for name, s in summary["pipelines"].items():
        if "rendition_cores" not in s:
            continue
        if name == "gray":
            fps = s.get("fps_out_min")
            wanted = TARGET_FPS_RATIO * (s.get("publisher_fps") or FPS)
            found.append(
                {
                    "pipeline": name,
                    "target": f"full 30 fps (rendition out and slowest viewer >= {wanted:.1f} fps, every N)",
                    "value": f"out {_f(fps)} fps, slowest viewer {_f(s.get('viewer_fps_min'))} fps",
                    "met": fps is not None
                    and fps >= wanted
                    and (s.get("viewer_fps_min") or 0) >= wanted,
                }
            )
            found.append(
                {
                    "pipeline": name,
                    "target": f"rendition CPU <= {TARGET_RENDITION_CORES} core (N=1, net of passthrough N=1)",
                    "value": f"{s['rendition_cores']:.2f} core (its threads alone: "
                    f"{s['rendition_threads_ms_per_s'] / 1000:.2f})",
                    "met": s["rendition_cores"] <= TARGET_RENDITION_CORES,
                }
            )
        slope = s.get("slope_viewer_side_ms_per_viewer_s")
        if slope is not None and pt_slope is not None:
            limit = VIEWER_COST_TOLERANCE * pt_slope + VIEWER_COST_SLACK_MS
            found.append(
                {
                    "pipeline": name,
                    "target": "each added viewer costs what a passthrough viewer costs "
                    f"(slope N=1..max <= {VIEWER_COST_TOLERANCE}x passthrough's + "
                    f"{VIEWER_COST_SLACK_MS:.0f} ms/s, for noise)",
                    "value": f"{slope:.2f} vs passthrough {pt_slope:.2f} CPU-ms per viewer-s "
                    "(gateway without the rendition's threads; whole gateway: "
                    f"{_f(s.get('slope_ms_per_viewer_s'), 2)})",
                    "met": slope <= limit,
                }
            )
        p95 = s.get("latency_p95_ms_max")
        if p95 is not None:
            found.append(
                {
                    "pipeline": name,
                    "target": f"added latency p95 <= {TARGET_LATENCY_P95_MS:.0f} ms (frame in -> packets out, every N)",
                    "value": f"p95 {p95:.1f} ms (worst ~4 s poll {s['latency_p95_worst_poll_ms']:.1f}), "
                    f"p50 {s['latency_p50_ms_max']:.1f} ms",
                    "met": p95 <= TARGET_LATENCY_P95_MS,
                }
            )
    return found


# -- report ---------------------------------------------------------------------------------


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _ms(t: dict[str, Any] | None) -> str:
    if not t:
        return "-"
    return f"{_f(t.get('p50_ms'))} / {_f(t.get('p95_ms'))}"


def _passthrough_table(rows: list[dict[str, Any]]) -> list[str]:
    idle = next((r for r in rows if r["viewers"] == 0), None)
    lines = [
        "| N | gateway CPU-ms/s | per viewer-s (net of N=0 / raw) | loop thread ms/s | other threads ms/s | viewer fps p50 / min | loadgen CPU-ms/s | machine busy / other work (cores) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        n = r["viewers"]
        per = (
            f"{(r['server_cpu_ms_per_s'] - idle['server_cpu_ms_per_s']) / n:.2f} / {r['server_cpu_ms_per_s'] / n:.2f}"
            if n and idle
            else "-"
        )
        lines.append(
            f"| {n} | {r['server_cpu_ms_per_s']:.1f} | {per} | {r['loop_thread_ms_per_s']:.1f} | "
            f"{r['other_threads_ms_per_s'] + r['new_threads_ms_per_s']:.1f} | "
            f"{_f(r['viewer_fps_p50'])} / {_f(r['viewer_fps_min'])} | {r['loadgen_cpu_ms_per_s']:.0f} | "
            f"{r['machine_busy_cores']:.2f} / {r['other_load_cores']:.2f} |"
        )
    return lines


def _pipeline_table(
    rows: list[dict[str, Any]], passthrough: dict[int, dict[str, Any]]
) -> list[str]:
    lines = [
        "| N | gateway CPU-ms/s | net of passthrough at same N | rendition thread(s) ms/s (count) | gateway without them | loop thread ms/s (passthrough) | fps in / out (rendition) | viewer fps p50 / min | frames missing at viewers | latency p50 / p95 ms (worst poll p95) | decode / process / encode p50 ms | encode p95 ms | drops latest-wins / overflow / other | machine busy / other work |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        n = r["viewers"]
        x = r.get("rendition") or {}
        base = passthrough.get(n)
        net = f"{r['server_cpu_ms_per_s'] - base['server_cpu_ms_per_s']:.1f}" if base else "-"
        loop_pt = f" ({base['loop_thread_ms_per_s']:.1f})" if base else ""
        drops = x.get("drops", {})
        other = sum(v for k, v in drops.items() if k not in ("latest_wins", "queue_overflow"))
        lat = x.get("latency", {})
        lines.append(
            f"| {n} | {r['server_cpu_ms_per_s']:.1f} | {net} | {r['new_threads_ms_per_s']:.1f} "
            f"({r['new_threads']}) | {_viewer_side(r):.1f} | {r['loop_thread_ms_per_s']:.1f}{loop_pt} | "
            f"{_f(x.get('fps_in'))} / {_f(x.get('fps_out'))} | "
            f"{_f(r['viewer_fps_p50'])} / {_f(r['viewer_fps_min'])} | "
            f"{_f(100 * (r['viewer_missing_mean'] or 0), 2)}% | "
            f"{_f(lat.get('p50_ms'))} / {_f(lat.get('p95_ms'))} ({_f(lat.get('p95_max_ms'))}) | "
            f"{_f(x.get('decode', {}).get('p50_ms'), 2)} / {_f(x.get('process', {}).get('p50_ms'), 2)} / "
            f"{_f(x.get('encode', {}).get('p50_ms'), 2)} | {_f(x.get('encode', {}).get('p95_ms'), 2)} | "
            f"{drops.get('latest_wins', '-')} / {drops.get('queue_overflow', '-')} / {other if drops else '-'} | "
            f"{r['machine_busy_cores']:.2f} / {r['other_load_cores']:.2f} |"
        )
    return lines


def _stages(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for r in rows:
        x = r.get("rendition")
        if not x:
            continue
        parts = [f"{k} {_ms(v)}" for k, v in x["stages"].items()]
        parts.append(f"av frame <-> arrays {_ms(x['conversion'])}")
        lines.append(
            f"- N={r['viewers']}: decode {_ms(x['decode'])}; process {_ms(x['process'])} "
            f"({'; '.join(parts)}); encode {_ms(x['encode'])} ms (p50 / p95)"
        )
    return lines


def _naive_table(rows: list[dict[str, Any]], idle: dict[str, Any] | None) -> list[str]:
    lines = [
        "| N | server CPU-ms/s | per viewer-s (net of N=0 / raw) | loop thread ms/s | other threads ms/s (decoder, encoder executor) | viewer fps p50 / min | pipeline per viewer p50 / p95 ms | machine busy / other work |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        n = r["viewers"]
        per = (
            f"{(r['server_cpu_ms_per_s'] - idle['server_cpu_ms_per_s']) / n:.1f} / {r['server_cpu_ms_per_s'] / n:.1f}"
            if n and idle
            else "-"
        )
        x = r.get("naive") or {}
        lines.append(
            f"| {n} | {r['server_cpu_ms_per_s']:.1f} | {per} | {r['loop_thread_ms_per_s']:.1f} | "
            f"{r['other_threads_ms_per_s'] + r['new_threads_ms_per_s']:.1f} | "
            f"{_f(r['viewer_fps_p50'])} / {_f(r['viewer_fps_min'])} | "
            f"{_f(x.get('process_p50_ms'), 2)} / {_f(x.get('process_p95_ms'), 2)} | "
            f"{r['machine_busy_cores']:.2f} / {r['other_load_cores']:.2f} |"
        )
    return lines


def markdown(results: dict[str, Any]) -> str:
    s = results["summary"]
    m = results["machine"]
    git = results["git"]
    out = [
        "# Processing benchmark: renditions vs passthrough vs the naive aiortc pattern",
        "",
        "Generated by `bench/processing.py` (see bench/README.md for what is measured and how).",
        "",
        f"- Command: `{results['command']}`",
        f"- Date: {results['date']}, took {results.get('duration_s', '-')} s",
        f"- Code measured: git {git.get('head')}, gateway/ sha256 {git.get('gateway_sha256')}"
        f" (uncommitted in gateway/: {git.get('uncommitted') or 'none'}); processors/ sha256 "
        f"{results['processors'].get('sha256')} (uncommitted: {results['processors'].get('uncommitted') or 'none'})",
        f"- Machine: {m['nproc']} cores ({m['cpu_model']}), {m['memory_gb']} GiB, kernel {m['kernel']}, "
        f"load average at start {', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}; other work "
        f"before the run {m.get('other_load_before_cores')} cores. Shared with other work: noisy.",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()),
        f"- Input: `{results['input_file']['path']}`: 720p30 VP8 ~1.5 Mbps (keyframe every 2.5 s) + "
        "Opus, sent as-is by `bench.publisher`; viewers (`bench.loadgen`, 2 processes) never decode.",
        f"- Windows of {results['settings']['window_s']} s after {results['settings']['settle_s']} s "
        f"settling ({results['settings']['warmup_s']} s more warm-up after a rendition starts). "
        f"Pipelines: {', '.join(f'`{k}` {PIPELINES[k]}' for k in results['settings']['pipelines'])}. "
        "Rendition encoder: the gateway's defaults (libvpx VP8 realtime, cpu-used 8, CBR 1500 kbps, "
        "1 thread).",
        f"- UDP socket buffers (sysctl, not changed): {results.get('udp_buffers')}",
        "",
        "## Targets",
        "",
        "| pipeline | target | measured | |",
        "|---|---|---|---|",
    ]
    for t in s.get("targets", []):
        out.append(
            f"| {t['pipeline']} | {t['target']} | {t['value']} | {'met' if t['met'] else '**not met**'} |"
        )
    out += ["", "## Headline", ""]
    pt = s["passthrough"]
    out.append(
        f"- Passthrough viewer: {_f(pt.get('slope_ms_per_viewer_s'), 2)} CPU-ms per viewer-second "
        "(slope N=1..max); net of the publisher-only gateway: "
        + ", ".join(f"N={n}: {v:.2f}" for n, v in (pt.get("net_ms_per_viewer_s") or {}).items())
        + f" (idle with publisher: {_f(pt.get('idle_cpu_ms_per_s'))} ms/s)."
    )
    for name, p in s["pipelines"].items():
        if "rendition_cores" not in p:
            out.append(f"- `{name}`: not measured")
            continue
        line = (
            f"- `{name}` {PIPELINES[name]}: rendition **{p['rendition_cores']:.2f} core** "
            f"(gateway N=1 minus passthrough N=1; its threads alone, median over N "
            f"{p['rendition_threads_ms_per_s'] / 1000:.2f}); per added viewer "
            f"**{_f(p.get('slope_viewer_side_ms_per_viewer_s'), 2)}** CPU-ms/s vs passthrough "
            f"{_f(pt.get('slope_viewer_side_ms_per_viewer_s'), 2)} (without the rendition's threads; "
            f"whole gateway {_f(p.get('slope_ms_per_viewer_s'), 2)} vs "
            f"{_f(pt.get('slope_ms_per_viewer_s'), 2)}); rendition out >= {_f(p.get('fps_out_min'))} fps, "
            f"slowest viewer {_f(p.get('viewer_fps_min'))} fps; latency p50 <= "
            f"{_f(p.get('latency_p50_ms_max'))} ms, p95 <= {_f(p.get('latency_p95_ms_max'))} ms; "
            f"{p.get('latest_wins_drops', 0)} latest-wins drops."
        )
        if "naive_ms_per_viewer_s_median" in p:
            line += (
                f" Naive: **{p['naive_ms_per_viewer_s_median']:.0f}** CPU-ms per viewer-s "
                f"(median over N, net of its N=0)"
            )
            if "ratio_naive_per_viewer_vs_added_viewer" in p:
                line += f", **{p['ratio_naive_per_viewer_vs_added_viewer']:.0f}x** a rendition's added viewer"
            a = p.get("at_naive_max_n")
            if a:
                line += (
                    f"; whole server at N={a['viewers']}: naive {a['naive_ms_per_s']:.0f} vs gateway "
                    f"{a['gateway_ms_per_s']:.0f} ms/s ({a['ratio']:.1f}x)"
                )
            fps = p.get("naive_fps_min") or {}
            line += "; naive slowest viewer fps " + ", ".join(
                f"N={n}: {_f(v)}" for n, v in fps.items()
            )
            line += "."
        out.append(line)
    out.append("")
    out.append("- Conclusion: " + conclusion(results))
    gateway = results.get("gateway") or {}
    passthrough = _rows(gateway, PASSTHROUGH)
    out += [
        "",
        "## Passthrough baseline (same gateway, same run)",
        "",
        *_passthrough_table(gateway.get("modes", {}).get(PASSTHROUGH, [])),
    ]
    for name in results["settings"]["pipelines"]:
        rows = gateway.get("modes", {}).get(name, [])
        out += [
            "",
            f"## Gateway, `?pipeline={name}` {PIPELINES[name]}: one rendition for all N viewers",
            "",
            *_pipeline_table(rows, passthrough),
            "",
            "Per-stage times (p50 / p95 ms, median of the window's polls):",
            "",
            *_stages(rows),
        ]
    if gateway.get("error"):
        out += ["", f"Gateway phase error: {gateway['error']}"]
    naive = results.get("naive") or {}
    if naive:
        idle = _rows(naive, PASSTHROUGH).get(0)
        out += [
            "",
            "## Naive baseline: aiortc, pipeline + encode per viewer (bench/naive_processing.py)",
            "",
            "aiortc decodes the publisher once; each viewer's transform track runs the same "
            "pipeline on the event loop and its RTCRtpSender encodes VP8 (and Opus: aiortc "
            "re-encodes audio too) for that viewer alone. Relay proxies unbuffered (latest frame wins).",
            "",
        ]
        if idle:
            out += ["Publisher only (N=0): the one decode, and the blackhole consuming it:", ""]
            out += _naive_table([idle], None)
        for name in results["settings"]["pipelines"]:
            rows = naive.get("modes", {}).get(name, [])
            if rows:
                out += ["", f"`{name}`:", "", *_naive_table(rows, idle)]
        if naive.get("error"):
            out += ["", f"Naive phase error: {naive['error']}"]
    out += ["", "## Thread design: the worker next to the event loop", ""]
    out += threads_section(results)
    out += [
        "",
        "Columns: CPU is utime+stime from /proc (whole process; per thread from "
        "/proc/PID/task/TID/stat: the loop is the main thread, the rendition's threads are those "
        "that appeared since its mode's first viewer). Rendition CPU = gateway at N=1 with the "
        "pipeline minus gateway at N=1 passthrough (same run); per added viewer = (CPU(N=max) - "
        "CPU(N=1)) / (max - 1), of the gateway without the rendition's threads (they do the same "
        "work whatever N; their CPU varies by +-10% between windows with the content, more than "
        "the viewers cost) and of the whole gateway. fps in/out and latency come from GET /api/renditions: latency is "
        "frame into the rendition -> packets handed to the viewers, on the gateway's clock; its "
        "p50/p95 (and the stage times) are over the timer's last 128 frames, polled every ~4 s "
        "during the window: the table gives the median of the polls (and the worst poll's p95). "
        "Viewer fps counts complete VP8 frames at each viewer (no decoding); 'frames missing' are "
        "gaps in their RTP timestamps (frames the rendition dropped, latest wins, or lost). Audio "
        "is passed through untouched in every gateway mode.",
    ]
    return "\n".join(out) + "\n"


def threads_section(results: dict[str, Any]) -> list[str]:
    s = results["summary"]
    standalone = results.get("standalone") or {}
    lines = [
        "The same decode + pipeline + encode alone in a process of its own "
        "(bench/processing_worker.py: main thread, no event loop, no network, paced at 30 fps), "
        "beside the gateway's worker thread at each N. CPU: the process, or the rendition's "
        "threads in the gateway. Latency alone = decode to packetized (no hop back to a loop).",
        "",
        "| pipeline | where | CPU-ms/s | fps out | decode p50 ms | process p50 ms | encode p50 / p95 ms | latency p50 / p95 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    gateway = results.get("gateway") or {}
    threads = results.get("threads") or {}
    for name in results["settings"]["pipelines"]:
        for key, sa in standalone.items():
            if key.split("-threads")[0] != name or "timing" not in sa:
                continue
            t = sa["timing"]
            lines.append(
                f"| {name} | alone in a process, encoder_threads {sa['encoder_threads']} | "
                f"{sa['cpu_ms_per_s']:.0f} | {sa['fps']:.1f} | {_f(t['decode']['p50_ms'], 2)} | "
                f"{_f(t['process']['p50_ms'], 2)} | {_f(t['encode']['p50_ms'], 2)} / "
                f"{_f(t['encode']['p95_ms'], 2)} | {_f(t['total']['p50_ms'])} / {_f(t['total']['p95_ms'])} |"
            )
        for label, rows in (
            ("gateway thread", _rows(gateway, name)),
            (
                f"gateway thread, encoder_threads {threads.get('encoder_threads')}",
                _rows(threads, name),
            ),
        ):
            for n, r in sorted(rows.items()):
                x = r.get("rendition")
                if not x:
                    continue
                lines.append(
                    f"| {name} | {label}, N={n} | {r['new_threads_ms_per_s']:.0f} | "
                    f"{x['fps_out']:.1f} | {_f(x['decode']['p50_ms'], 2)} | {_f(x['process']['p50_ms'], 2)} | "
                    f"{_f(x['encode']['p50_ms'], 2)} / {_f(x['encode']['p95_ms'], 2)} | "
                    f"{_ms(x['latency'])} |"
                )
    lines.append("")
    for name, p in s["pipelines"].items():
        loop = p.get("loop_thread_ms_per_s")
        if loop:
            lines.append(
                f"- `{name}`: the event-loop thread at N={loop['viewers']} used {loop[name]:.0f} ms/s "
                f"with the rendition vs {loop['passthrough']:.0f} ms/s passthrough "
                f"({loop[name] - loop['passthrough']:+.0f} ms/s). The loop's part of a rendition is "
                "handing it the source's frames and taking its encoded frames back, 30/s each way; "
                "the fan-out to the viewers is the same as passthrough's."
            )
    return lines


def _thread_findings(results: dict[str, Any]) -> list[str]:
    s = results["summary"]
    standalone = results.get("standalone") or {}
    found: list[str] = []
    for name, p in s["pipelines"].items():
        rows = _rows(results.get("gateway"), name)
        sa = standalone.get(name)
        counts = sorted(n for n, r in rows.items() if r.get("rendition"))
        if not counts or not sa or "timing" not in sa:
            continue
        lo, hi = rows[counts[0]], rows[counts[-1]]
        alone = sa["timing"]["encode"]["p50_ms"]
        enc_lo, enc_hi = lo["rendition"]["encode"]["p50_ms"], hi["rendition"]["encode"]["p50_ms"]
        slowed = enc_hi is not None and enc_hi > 1.15 * alone + 0.5
        found.append(
            f"`{name}`: encode p50 {_f(enc_lo)} ms at N={counts[0]}, {_f(enc_hi)} ms at "
            f"N={counts[-1]} next to the busiest loop, {_f(alone)} ms alone in a process; worker "
            f"thread {p['rendition_threads_ms_per_s']:.0f} ms/s vs {sa['cpu_ms_per_s']:.0f} alone: "
            + (
                "the loop slows the worker"
                if slowed
                else "sharing the process (GIL, loop) costs the worker nothing measurable"
            )
        )
    threads = results.get("threads") or {}
    for name, p in s["pipelines"].items():
        two = p.get("encoder_threads_2")
        one = _rows(results.get("gateway"), name).get(1)
        if not two or not one or not one.get("rendition"):
            continue
        worse = two["fps_out"] < TARGET_FPS_RATIO * one["publisher_fps"] or (
            two["rendition_threads_ms_per_s"] > 1.2 * one["new_threads_ms_per_s"]
        )
        found.append(
            f"`{name}` with encoder_threads {threads.get('encoder_threads')}: "
            f"{two['rendition_threads_ms_per_s']:.0f} ms/s, {two['fps_out']:.1f} fps out, encode "
            f"p50 {_f(two['encode_p50_ms'])} ms, latency p95 {_f(two['latency_p95_ms'])} ms (1 thread: "
            f"{one['new_threads_ms_per_s']:.0f} ms/s, {one['rendition']['fps_out']:.1f} fps, "
            f"{_f(one['rendition']['latency']['p95_ms'])} ms): "
            + ("worse, keep 1 on this machine" if worse else "no worse")
        )
    return found


def conclusion(results: dict[str, Any]) -> str:
    s = results["summary"]
    t = s.get("targets", [])
    if not t:
        return "not enough measured for a conclusion."
    failed = [x for x in t if not x["met"]]
    parts = []
    if not failed:
        parts.append("the thread design meets every target measured")
    else:
        parts.append(
            "targets not met: "
            + "; ".join(
                f"{x['pipeline']}: {x['target'].split(' (')[0]} ({x['value']})" for x in failed
            )
        )
    starving = []
    for name in s["pipelines"]:
        rows = _rows(results.get("gateway"), name)
        for n, r in rows.items():
            x = r.get("rendition") or {}
            if x and x["fps_out"] < TARGET_FPS_RATIO * r["publisher_fps"]:
                starving.append(f"{name} N={n} out {x['fps_out']:.1f} fps")
    if starving:
        parts.append("the rendition falls short of the input rate at " + ", ".join(starving))
    else:
        parts.append(
            "no rendition fell behind the input rate at any N (the loop does not starve it)"
        )
    parts += _thread_findings(results)
    return "; ".join(parts) + "."


# -- main -----------------------------------------------------------------------------------


def processors_revision() -> dict[str, Any]:
    top = control.WORKDIR[0]
    digest = hashlib.sha256()
    for path in sorted((top / "processors").rglob("*.py")):
        digest.update(str(path.relative_to(top)).encode())
        digest.update(path.read_bytes())
    try:
        uncommitted = _git("status", "--porcelain", "--", "processors").splitlines()
    except Exception:
        uncommitted = ["unknown"]
    return {"sha256": digest.hexdigest()[:16], "uncommitted": uncommitted}


def parse_counts(text: str) -> list[int]:
    return sorted({int(x) for x in text.split(",") if x.strip()})


def build_settings(args: argparse.Namespace) -> Settings:
    quick = args.quick
    viewers = parse_counts(args.viewers) if args.viewers else ([1, 5] if quick else [1, 5, 20])
    naive = (
        parse_counts(args.naive_viewers)
        if args.naive_viewers
        else ([1, 2] if quick else [1, 2, 3, 4])
    )
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Settings(
        viewers=[n for n in viewers if n > 0],
        naive_viewers=[n for n in naive if n > 0],
        pipelines=[p for p in args.pipelines.split(",") if p],
        window_s=args.window or (6.0 if quick else 15.0),
        settle_s=args.settle if args.settle is not None else (2.0 if quick else 3.0),
        warmup_s=args.warmup if args.warmup is not None else (2.0 if quick else 4.0),
        loadgen_procs=args.loadgen_procs,
        phases=[p for p in ("gateway", "naive", "threads", "standalone") if p not in args.skip],
        thread_counts=[2],
        run_dir=OUT / f"processing-{stamp}",
    )


async def between_phases(settings: Settings) -> None:
    """A short wait for other work to calm down, out of the run's budget."""
    started = time.monotonic()
    await wait_quiet(max(0.0, min(15.0, settings.quiet_budget_s[0])))
    settings.quiet_budget_s[0] -= time.monotonic() - started


async def main_async(args: argparse.Namespace) -> int:
    settings = build_settings(args)
    for name in settings.pipelines:
        if name not in PIPELINES:
            raise SystemExit(f"unknown pipeline {name!r} (known: {', '.join(PIPELINES)})")
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: dict[str, Any] = {
        **run_header("bench.processing"),
        "processors": processors_revision(),
        "pipelines": PIPELINES,
        "settings": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in settings.__dict__.items()
        },
        "udp_buffers": {name: read_sysctl(name) for name in SYSCTLS},
    }
    logger.info("run directory %s", settings.run_dir)
    results["machine"]["other_load_before_cores"] = await wait_quiet(args.wait_quiet)
    input_file = ensure_input_file()
    results["input_file"] = {
        "path": str(input_file.relative_to(ROOT)),
        "bytes": input_file.stat().st_size,
    }
    if "gateway" in settings.phases:
        modes = [(PASSTHROUGH, [0, *settings.viewers])]
        modes += [(name, settings.viewers) for name in settings.pipelines]
        results["gateway"] = await run_server("gateway", modes, settings, input_file)
    if "naive" in settings.phases:
        await between_phases(settings)
        modes = [(PASSTHROUGH, [0])] + [
            (name, settings.naive_viewers) for name in settings.pipelines
        ]
        results["naive"] = await run_server("naive", modes, settings, input_file)
    if "threads" in settings.phases:
        for count in settings.thread_counts:
            await between_phases(settings)
            modes = [(name, [1]) for name in settings.pipelines]
            results["threads"] = await run_server(
                "gateway", modes, settings, input_file, encoder_threads=count
            )
    if "standalone" in settings.phases:
        await between_phases(settings)
        results["standalone"] = await run_standalone(settings, input_file)
    results["duration_s"] = round(time.monotonic() - started, 1)
    results["summary"] = analyse(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out_json = Path(args.json) if args.json else RESULTS / "processing.json"
    out_md = Path(args.md) if args.md else RESULTS / "processing.md"
    text = json.dumps(results, indent=2, default=str) + "\n"
    out_json.write_text(text)
    (settings.run_dir / "processing.json").write_text(text)
    out_md.write_text(markdown(results))
    logger.info("wrote %s and %s (%.0f s)", out_md, out_json, results["duration_s"])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.processing",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--viewers", help="comma-separated N for the gateway (default 1,5,20)")
    parser.add_argument(
        "--naive-viewers", help="comma-separated N for the naive baseline (default 1,2,3,4)"
    )
    parser.add_argument(
        "--pipelines", default="gray,privacy", help="comma-separated (default gray,privacy)"
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--window", type=float, help="measurement window in seconds (default 15)")
    parser.add_argument("--settle", type=float, help="seconds after viewers join (default 3)")
    parser.add_argument(
        "--warmup", type=float, help="more seconds after a rendition starts (default 4)"
    )
    parser.add_argument("--loadgen-procs", type=int, default=2, help="viewer processes (default 2)")
    parser.add_argument(
        "--skip", action="append", default=[], choices=["gateway", "naive", "threads", "standalone"]
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=20.0,
        help="wait up to this many seconds for other work to calm down first (default 20)",
    )
    parser.add_argument("--json", help="output JSON (default bench/results/processing.json)")
    parser.add_argument("--md", help="output Markdown (default bench/results/processing.md)")
    parser.add_argument("--render", metavar="JSON", help="only re-render the Markdown of a JSON")
    args = parser.parse_args(argv)
    if args.render:
        results = json.loads(Path(args.render).read_text())
        results["summary"] = analyse(results)
        out_md = Path(args.md) if args.md else RESULTS / "processing.md"
        out_md.write_text(markdown(results))
        print(f"wrote {out_md}")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
