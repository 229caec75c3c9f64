"""The cost of server-made layers (issue 13): one decode of a single-layer track, then per
rung a scale (swscale, area) and a VP8 CBR encode, beside passthrough and the processing
benchmark's ``gray`` rendition, all in one run of one gateway.

    .venv/bin/python -m bench.made_layers [--quick] [--rounds N] [--window S]

One gateway (ICE on 127.0.0.1, ``processing.ladders`` = rungs 360p @ 500 kbps and 180p @
150 kbps for every room, ``processing.pipelines`` = {gray: [grayscale]}, ``media.adapt_layers``
off so that every viewer stays on what it asked for), the processing benchmark's publisher
(``bench.publisher``: the pre-encoded 720p30 VP8 ~1.5 Mbps file, sent as-is) and non-decoding
viewers (``bench.loadgen``, one process; each viewer POSTs its own WHEP URL). Cases, each a
steady window after settling (and a warm-up once a rendition has started):

  passthrough-0   publisher only
  passthrough-1   1 viewer of the original (the baseline every "net" figure is taken from)
  passthrough-2   2 viewers of the original (the baseline of the two-rung case's 2 viewers)
  rung-1          1 viewer on ?layer=360p: the @ladder rendition, one rung
  rung-5          5 viewers on ?layer=360p: the same rung shared
  rungs-2         1 viewer on ?layer=360p and 1 on ?layer=180p: one decode, two rungs
  gray-1          1 viewer on ?pipeline=gray (the processing benchmark's rendition)

The sequence is run ``--rounds`` times (2; 1 with --quick) and each figure is the median over
rounds. Then, in this process with nothing else of ours running, the gateway's own Decoder,
Rung.scale and VideoEncoder on decoded frames of the same file: the scale's time apart (the
gateway times it inside each rung's encode call).

Writes bench/results/made_layers.md and bench/results/made_layers.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

import av

from gateway.processing.decoder import Decoder
from gateway.processing.encoder import VideoEncoder
from gateway.processing.rung import INTERPOLATION, LADDER, Rung

from .broadcast import OUT, RESULTS, ROOM, SYSCTLS, _git, run_header, wait_quiet
from .control import PYTHON, ROOT, Worker
from .media import FPS, ensure_input_file, read_file
from .processing import (
    PASSTHROUGH,
    Server,
    Settings,
    measure_row,
    processors_revision,
    thread_cpu,
)
from .report import _f
from .stats import percentile, read_sysctl

logger = logging.getLogger("bench")

# (height, kbps), largest first: what the example ladder has.
RUNGS: tuple[tuple[int, int], ...] = ((360, 500), (180, 150))
GRAY = "gray"
PIPELINES: dict[str, list[Any]] = {GRAY: ["grayscale"]}
BASELINE = "passthrough-1"


@dataclass(frozen=True)
class Case:
    key: str
    label: str
    pipeline: str  # PASSTHROUGH, LADDER or a configured pipeline
    queries: tuple[str, ...]  # the WHEP query of each viewer, in join order
    # The rung outputs the @ladder rendition must have (rids), for made-layer cases.
    layers: tuple[str, ...] = ()


def rid(height: int) -> str:
    return Rung(height, 0).rid


def cases(rungs: tuple[tuple[int, int], ...] = RUNGS) -> list[Case]:
    top, low = rid(rungs[0][0]), rid(rungs[1][0])
    on_top = f"?layer={top}"
    return [
        Case("passthrough-0", "passthrough, publisher only", PASSTHROUGH, ()),
        Case("passthrough-1", "passthrough, 1 viewer", PASSTHROUGH, ("",)),
        Case("passthrough-2", "passthrough, 2 viewers", PASSTHROUGH, ("", "")),
        Case("rung-1", f"one made rung ({top}), 1 viewer", LADDER, (on_top,), (top,)),
        Case("rung-5", f"one made rung ({top}), 5 viewers on it", LADDER, (on_top,) * 5, (top,)),
        Case(
            "rungs-2",
            f"two made rungs ({top} + {low}), 1 viewer each",
            LADDER,
            (on_top, f"?layer={low}"),
            (top, low),
        ),
        Case(f"{GRAY}-1", f"`{GRAY}` pipeline rendition, 1 viewer", GRAY, (f"?pipeline={GRAY}",)),
    ]


def layer_of(query: str) -> str:
    """What a viewer of ``query`` receives: "original", a rung's rid or a pipeline's name."""
    if not query:
        return "original"
    key, _, value = query.lstrip("?").partition("=")
    return value if key in ("layer", "pipeline") else query


class TapWorker(Worker):
    """A load generator whose last two ``snapshot`` replies are kept: per-viewer figures of
    the window processing.Server.measure took them for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.snapshots: list[dict[str, Any]] = []

    async def call(self, cmd: str, wait_s: float = 120.0, **args: Any) -> dict[str, Any]:
        reply = await super().call(cmd, wait_s, **args)
        if cmd == "snapshot":
            self.snapshots = [*self.snapshots[-1:], reply]
        return reply


class LadderGateway(Server):
    """The processing benchmark's gateway Server with a ladder, and viewers of mixed URLs."""

    def __init__(self, settings: Settings, input_file: Path, rungs: tuple[tuple[int, int], ...]):
        super().__init__("gateway", settings, input_file)
        self.name = "made"
        self.rungs = rungs
        self.queries: list[str] = []  # of the viewers connected now, in join order

    def config(self) -> dict[str, Any]:
        return {
            "server": {"drain_timeout_s": 0},
            "ice": {"addresses": ["127.0.0.1"]},
            "rooms": {"max_subscribers": 2000},
            "log": {"level": "warning"},
            "limits": {"sessions_per_ip_per_s": 1000, "sessions_per_ip_burst": 1000},
            # Viewers stay on the layer they asked for: what is measured is the cost of
            # making it, not the selection's choices (an aiortc viewer's estimate comes
            # from its receiver reports and could step a passthrough viewer down).
            "media": {"adapt_layers": False},
            "processing": {
                "pipelines": PIPELINES,
                "encoder_threads": 1,
                "ladders": [
                    {
                        "room": "*",
                        "rungs": [{"height": h, "bitrate_kbps": k} for h, k in self.rungs],
                    }
                ],
            },
        }

    def server_args(self) -> list[str]:
        path = self.settings.run_dir / "gateway-made-layers.yaml"
        path.write_text(json.dumps(self.config(), indent=2) + "\n")  # JSON is YAML
        return [PYTHON, "-m", "gateway", "--config", str(path), "--port", str(self.port)]

    @property
    def url(self) -> str:
        return f"{self.base}/whep/{ROOM}"

    async def close_viewers(self) -> None:
        """Closes every viewer (their rendition with them) and waits for it to stop."""
        for worker in self.loadgens:
            await worker.call("close_all", wait_s=60)
        self.viewers = 0
        self.queries = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if not (await self.renditions()).get("live"):
                break
            await asyncio.sleep(0.3)
        await asyncio.sleep(1.0)
        assert self.server is not None
        self.threads_before = set(thread_cpu(self.server.pid))

    async def add_viewers(self, queries: list[str]) -> dict[str, Any]:
        """Adds one viewer per query (one load-generator process, kept across cases) and
        waits until every viewer has its first keyframe."""
        if not self.loadgens:
            started_worker = await TapWorker.start(
                f"{self.name}-loadgen0", [PYTHON, "-m", "bench.loadgen", "--url", self.url],
                self.log_dir,
            )  # fmt: skip
            await started_worker.wait_ready(60)
            self.loadgens.append(started_worker)
        (worker,) = self.loadgens
        started = time.monotonic()
        failures: list[str] = []
        if queries:
            reply = await worker.call(
                "add",
                wait_s=60 + 2 * len(queries),
                count=len(queries),
                urls=[self.url + q for q in queries],
                concurrency=4,
            )
            failures = reply["failures"]
            self.queries += queries
            self.viewers = len(self.queries)
        deadline = time.monotonic() + 30
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = await worker.call("status")
            if status["receiving"] + status["failed"] >= status["viewers"]:
                break
            await asyncio.sleep(0.5)
        return {
            "join_s": round(time.monotonic() - started, 2),
            "failures": failures[:5],
            **{k: status.get(k) for k in ("viewers", "connected", "receiving", "failed")},
            "errors": status.get("errors", []),
        }

    async def wait_outputs(self, case: Case, wait_s: float = 20.0) -> dict[str, Any] | None:
        """Until the case's rendition has the expected outputs and they send frames; None
        then, else what was seen instead (the rendition list and the track's stats)."""
        deadline = time.monotonic() + wait_s
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            body = await self.renditions()
            found = self.rendition(body)
            if case.pipeline == PASSTHROUGH:
                if not body.get("live"):
                    return None
            elif found is not None:
                layers = sorted(o["layer"] for o in found["outputs"] if o["layer"])
                flowing = all(o["frames_out"] > 0 for o in found["outputs"])
                if layers == sorted(case.layers) and flowing and found["outputs"]:
                    return None
            await asyncio.sleep(0.5)
        return {"renditions": body, "track": await self.api_stats()}

    def _rendition_row(
        self,
        api0: dict[str, Any],
        api1: dict[str, Any],
        polls: list[dict[str, Any]],
        dt: float,
    ) -> dict[str, Any] | None:
        row = super()._rendition_row(api0, api1, polls, dt)
        r0, r1 = self.rendition(api0), self.rendition(api1)
        if row is None or r0 is None or r1 is None:
            return row
        snaps = [r for r in (self.rendition(p) for p in polls) if r is not None]
        row["decode_window"] = timer_window(r0["timing"]["decode"], r1["timing"]["decode"], dt)
        row["encode_window"] = timer_window(r0["timing"]["encode"], r1["timing"]["encode"], dt)
        row["outputs"] = output_rows(r0, r1, snaps, dt)
        return row

    async def measure(self, window_s: float) -> dict[str, Any]:
        assert self.server is not None
        pid = self.server.pid
        threads0, t0 = thread_cpu(pid), time.monotonic()
        row = await super().measure(window_s)
        threads1, t1 = thread_cpu(pid), time.monotonic()
        # Each new thread's CPU apart (over settling + window): the rendition's worker, and
        # any thread a codec or the loop's executor started.
        row["new_threads_each_ms_per_s"] = sorted(
            (
                round((threads1[t] - threads0.get(t, 0.0)) * 1000 / (t1 - t0), 1)
                for t in set(threads1) - self.threads_before - {pid}
            ),
            reverse=True,
        )
        row["by_layer"] = {}
        for worker in self.loadgens:
            if isinstance(worker, TapWorker) and len(worker.snapshots) == 2:
                snap0, snap1 = worker.snapshots
                row["by_layer"] = viewers_by_layer(snap0, snap1, self.queries)
        return row


def timer_window(t0: dict[str, Any], t1: dict[str, Any], dt: float) -> dict[str, Any]:
    """A gateway Timer (count, total_ms) over a window: mean ms per call, calls/s, ms/s."""
    count = t1["count"] - t0["count"]
    total = t1["total_ms"] - t0["total_ms"]
    return {
        "calls": count,
        "mean_ms": total / count if count > 0 else None,
        "per_s": count / dt,
        "ms_per_s": total / dt,
    }


def output_rows(
    r0: dict[str, Any], r1: dict[str, Any], snaps: list[dict[str, Any]], dt: float
) -> dict[str, dict[str, Any]]:
    """Each output (a rung, or the pipeline's codec) of a rendition over a window."""
    result: dict[str, dict[str, Any]] = {}
    for o1 in r1["outputs"]:
        key = o1["layer"] or o1["codec"]
        same = [o for o in r0["outputs"] if (o["layer"] or o["codec"]) == key]
        if not same:
            continue
        o0 = same[0]
        p50 = [
            o["timing"]["encode"]["p50_ms"]
            for s in snaps
            for o in s["outputs"]
            if (o["layer"] or o["codec"]) == key and o["timing"]["encode"]["count"]
        ]
        p95 = [
            o["timing"]["encode"]["p95_ms"]
            for s in snaps
            for o in s["outputs"]
            if (o["layer"] or o["codec"]) == key and o["timing"]["encode"]["count"]
        ]
        result[key] = {
            "layer": o1["layer"],
            "codec": o1["codec"],
            "resolution": o1["resolution"],
            "subscribers": o1["subscribers"],
            "fps_encoded": (o1["frames_encoded"] - o0["frames_encoded"]) / dt,
            "fps_out": (o1["frames_out"] - o0["frames_out"]) / dt,
            "keyframes_encoded": o1["keyframes_encoded"] - o0["keyframes_encoded"],
            "encoder_opens": o1["encoder_opens"],
            "encode_errors": o1["encode_errors"] - o0["encode_errors"],
            # Scale (for a rung) + encode, per frame: the output's encode call.
            "encode": timer_window(o0["timing"]["encode"], o1["timing"]["encode"], dt),
            "encode_p50_ms": median(p50) if p50 else None,
            "encode_p95_ms": median(p95) if p95 else None,
            "latency_p50_ms": o1["timing"]["latency"]["p50_ms"],
        }
    return result


def viewers_by_layer(
    snap0: dict[str, Any], snap1: dict[str, Any], queries: list[str]
) -> dict[str, dict[str, Any]]:
    """Viewer fps and bitrate per received layer, from two loadgen snapshots (viewers in
    join order, as ``queries``)."""
    dt = snap1["t"] - snap0["t"]
    groups: dict[str, list[dict[str, float]]] = {}
    for query, a, b in zip(queries, snap0["viewers"], snap1["viewers"], strict=False):
        frames = b["video_frames"] - a["video_frames"]
        gaps = b["video_gap_frames"] - a["video_gap_frames"]
        groups.setdefault(layer_of(query), []).append(
            {
                "fps": frames / dt,
                "kbps": (b["video_bytes"] - a["video_bytes"]) * 8 / dt / 1000,
                "missing": gaps / max(frames + gaps, 1),
            }
        )
    return {
        layer: {
            "viewers": len(vs),
            "fps_p50": percentile([v["fps"] for v in vs], 50),
            "fps_min": min(v["fps"] for v in vs),
            "kbps_p50": percentile([v["kbps"] for v in vs], 50),
            "missing_mean": sum(v["missing"] for v in vs) / len(vs),
        }
        for layer, vs in groups.items()
    }


# -- the run --------------------------------------------------------------------------------


@dataclass
class Options:
    rounds: int
    window_s: float
    settle_s: float
    warmup_s: float
    only: list[str] = field(default_factory=list)


async def run_gateway(
    settings: Settings, options: Options, input_file: Path, rungs: tuple[tuple[int, int], ...]
) -> dict[str, Any]:
    gateway = LadderGateway(settings, input_file, rungs)
    result: dict[str, Any] = {"config": gateway.config(), "rounds": []}
    selected = [c for c in cases(rungs) if not options.only or c.key in options.only]
    try:
        await gateway.start()
        await gateway.close_viewers()
        for _ in range(options.rounds):
            rows: dict[str, Any] = {}
            result["rounds"].append(rows)
            for case in selected:
                rows[case.key] = await run_case(gateway, case, options)
    except Exception as exc:
        logger.exception("the gateway phase failed")
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        await gateway.stop()
    return result


async def run_case(gateway: LadderGateway, case: Case, options: Options) -> dict[str, Any]:
    """One case: its viewers (added to the previous case's when those are a prefix of its
    own, else from none), its outputs checked, one window measured."""
    have = gateway.queries
    incremental = (
        gateway.mode == case.pipeline
        and len(have) <= len(case.queries)
        and list(case.queries[: len(have)]) == have
    )
    if not incremental:
        await gateway.close_viewers()
    rendition_started = case.pipeline != PASSTHROUGH and not gateway.queries
    gateway.mode = case.pipeline
    join = await gateway.add_viewers(list(case.queries[len(gateway.queries) :]))
    if join["failures"] or join["failed"]:
        logger.warning("%s: viewers failed: %s %s", case.key, join["failures"], join["errors"])
    problem = await gateway.wait_outputs(case)
    if problem is not None:
        logger.warning("%s: the expected outputs did not appear: %s", case.key, problem)
    if rendition_started:
        await asyncio.sleep(options.warmup_s)  # the rendition's first seconds
    logger.info("%s: measuring (%d viewers)", case.key, gateway.viewers)
    row = await measure_row(gateway, gateway.viewers, join)
    row["case"] = case.key
    row["queries"] = list(gateway.queries)
    if problem is not None:
        row["problem"] = problem
    outputs = (row.get("rendition") or {}).get("outputs") or {}
    logger.info(
        "%s: gateway %.0f ms/s, new threads %.0f ms/s (%d); %s",
        case.key, row["server_cpu_ms_per_s"], row["new_threads_ms_per_s"], row["new_threads"],
        ", ".join(
            f"{k}: {o['fps_out']:.1f} fps, encode {_f(o['encode']['mean_ms'], 2)} ms"
            for k, o in outputs.items()
        ) or "no rendition",
    )  # fmt: skip
    return row


def standalone(input_file: Path, rungs: tuple[tuple[int, int], ...], frames: int) -> dict[str, Any]:
    """What the @ladder worker does per frame, with the gateway's own Decoder, Rung.scale and
    VideoEncoder, in this thread (nothing else of ours running), not paced: ``frames`` frames
    of the file (looped), each decoded once, then scaled and encoded for every rung; no frame
    is kept (as in the gateway). Wall time per call, CPU of this thread and of the process
    (swscale's own threads: Rung.scale leaves PyAV's ``threads`` at its default), and the
    same scale with ``threads=1`` beside it."""
    video = read_file(input_file)["video"]
    decoder = Decoder("VP8")
    encoders = {rung: VideoEncoder("VP8", rung.bitrate, 1, 300, exact=True) for rung in
                (Rung(h, k * 1000) for h, k in rungs)}  # fmt: skip
    timing: dict[str, _Timing] = {"decode": _Timing()}
    for rung in encoders:
        for stage in ("scale", "scale_1_thread", "encode"):
            timing[f"{stage} {rung.rid}"] = _Timing()
    source: tuple[int, int] | None = None
    step = 90000 // FPS
    threads_seen = 0
    for index in range(frames):
        packet = video.packets[index % len(video.packets)]
        with timing["decode"]:
            decoded = decoder.decode(packet.data, index * step)
        for frame in decoded:
            if not isinstance(frame, av.VideoFrame):
                continue
            source = (frame.width, frame.height)
            for rung, encoder in encoders.items():
                width, height = rung.size(frame.width, frame.height)
                with timing[f"scale_1_thread {rung.rid}"]:
                    frame.reformat(
                        width=width, height=height, format="yuv420p",
                        interpolation=INTERPOLATION, threads=1,
                    )  # fmt: skip
                with timing[f"scale {rung.rid}"]:
                    small = rung.scale(frame)
                threads_seen = max(threads_seen, len(os.listdir("/proc/self/task")))
                with timing[f"encode {rung.rid}"]:
                    encoder.encode(small, index * step, index == 0)
    result: dict[str, Any] = {
        "frames": frames,
        "source": list(source) if source else None,
        "decode": timing["decode"].summary(),
        "interpolation": INTERPOLATION,
        "process_threads_max": threads_seen,
        "rungs": {},
    }
    for rung in encoders:
        result["rungs"][rung.rid] = {
            "size": list(rung.size(*source)) if source else None,
            "bitrate_kbps": rung.bitrate // 1000,
            "scale": timing[f"scale {rung.rid}"].summary(),
            "scale_1_thread": timing[f"scale_1_thread {rung.rid}"].summary(),
            "encode": timing[f"encode {rung.rid}"].summary(),
        }
    return result


class _Timing:
    """Wall time of each call, and CPU of this thread and of the whole process."""

    def __init__(self) -> None:
        self.wall_ms: list[float] = []
        self.thread_s = 0.0
        self.process_s = 0.0

    def __enter__(self) -> None:
        self._t = (time.perf_counter(), time.thread_time(), time.process_time())

    def __exit__(self, *_: object) -> None:
        wall, thread, process = self._t
        self.wall_ms.append((time.perf_counter() - wall) * 1000)
        self.thread_s += time.thread_time() - thread
        self.process_s += time.process_time() - process

    def summary(self) -> dict[str, Any]:
        n = max(len(self.wall_ms), 1)
        return {
            "count": len(self.wall_ms),
            "mean_ms": sum(self.wall_ms) / n,
            "p50_ms": percentile(self.wall_ms, 50),
            "p95_ms": percentile(self.wall_ms, 95),
            "cpu_thread_mean_ms": self.thread_s * 1000 / n,
            # With swscale's helper threads (and anything else of this process: idle here).
            "cpu_mean_ms": self.process_s * 1000 / n,
        }


# -- analysis (pure) ------------------------------------------------------------------------


def figures(row: dict[str, Any]) -> dict[str, Any]:
    """The scalar figures of one measured case (one round)."""
    rendition = row.get("rendition") or {}
    out: dict[str, Any] = {
        "gateway_ms_per_s": row["server_cpu_ms_per_s"],
        "loop_ms_per_s": row["loop_thread_ms_per_s"],
        "rendition_thread_ms_per_s": row["new_threads_ms_per_s"],
        # The process's CPU not in any thread alive at both ends of the window: threads
        # that started and ended within it (swscale's, for instance).
        "ended_threads_ms_per_s": row["server_cpu_ms_per_s"]
        - row["loop_thread_ms_per_s"]
        - row["new_threads_ms_per_s"]
        - row["other_threads_ms_per_s"],
        "new_threads": row["new_threads"],
        "other_load_cores": row["other_load_cores"],
        "publisher_fps": row["publisher_fps"],
        "viewer_fps_p50": row["viewer_fps_p50"],
        "viewer_fps_min": row["viewer_fps_min"],
        "viewer_kbps_p50": row["viewer_kbps_p50"],
        "viewers": row["viewers"],
    }
    if rendition:
        out |= {
            "fps_decoded": rendition["fps_decoded"],
            "fps_out": rendition["fps_out"],
            "decode_mean_ms": rendition["decode_window"]["mean_ms"],
            "decode_p50_ms": rendition["decode"]["p50_ms"],
            "decode_ms_per_s": rendition["decode_window"]["ms_per_s"],
            "encode_all_ms_per_s": rendition["encode_window"]["ms_per_s"],
            "latest_wins_drops": rendition["drops"].get("latest_wins", 0),
            "process_p50_ms": rendition["process"]["p50_ms"],
        }
    for key, o in (rendition.get("outputs") or {}).items():
        out[f"out:{key}:fps_out"] = o["fps_out"]
        out[f"out:{key}:encode_mean_ms"] = o["encode"]["mean_ms"]
        out[f"out:{key}:encode_p50_ms"] = o["encode_p50_ms"]
        out[f"out:{key}:encode_p95_ms"] = o["encode_p95_ms"]
        out[f"out:{key}:encode_ms_per_s"] = o["encode"]["ms_per_s"]
        out[f"out:{key}:subscribers"] = o["subscribers"]
    for layer, v in (row.get("by_layer") or {}).items():
        out[f"view:{layer}:fps_p50"] = v["fps_p50"]
        out[f"view:{layer}:fps_min"] = v["fps_min"]
        out[f"view:{layer}:kbps_p50"] = v["kbps_p50"]
        out[f"view:{layer}:viewers"] = v["viewers"]
    return out


def combine(per_round: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over rounds of each figure (those a round lacks are left out of its median);
    ``spread:KEY`` = max - min for the CPU figures, when there are several rounds."""
    keys = {k for f in per_round for k in f}
    out: dict[str, Any] = {}
    for key in sorted(keys):
        values = [f[key] for f in per_round if f.get(key) is not None]
        out[key] = median(values) if values else None
        if key in ("gateway_ms_per_s", "rendition_thread_ms_per_s") and len(values) > 1:
            out[f"spread:{key}"] = max(values) - min(values)
    out["rounds"] = len(per_round)
    return out


def _get(c: dict[str, Any] | None, key: str) -> float | None:
    value = (c or {}).get(key)
    return None if value is None else float(value)


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def analyse(results: dict[str, Any]) -> dict[str, Any]:
    """Per case the medians over rounds, and the derived figures."""
    rounds = (results.get("gateway") or {}).get("rounds") or []
    keys = [k for r in rounds for k in r]
    per_case: dict[str, Any] = {}
    for key in dict.fromkeys(keys):
        per_case[key] = combine([figures(r[key]) for r in rounds if key in r])
    base = per_case.get(BASELINE)
    gw = "gateway_ms_per_s"
    thread = "rendition_thread_ms_per_s"
    for c in per_case.values():
        c["net_ms_per_s"] = _sub(_get(c, gw), _get(base, gw))
    rungs = results.get("rungs") or [list(r) for r in RUNGS]
    top, low = rid(rungs[0][0]), rid(rungs[1][0])
    one, five, two = per_case.get("rung-1"), per_case.get("rung-5"), per_case.get("rungs-2")
    pt0, pt2 = per_case.get("passthrough-0"), per_case.get("passthrough-2")
    gray = per_case.get(f"{GRAY}-1")
    derived: dict[str, Any] = {
        "passthrough_viewer_ms_per_s": _sub(_get(base, gw), _get(pt0, gw)),
        "passthrough_second_viewer_ms_per_s": _sub(_get(pt2, gw), _get(base, gw)),
        "one_rung": {
            "net_ms_per_s": _get(one, "net_ms_per_s"),
            "thread_ms_per_s": _get(one, thread),
            "decode_ms_per_s": _get(one, "decode_ms_per_s"),
            "decode_mean_ms": _get(one, "decode_mean_ms"),
            "scale_encode_ms_per_s": _get(one, f"out:{top}:encode_ms_per_s"),
            "scale_encode_mean_ms": _get(one, f"out:{top}:encode_mean_ms"),
        },
        "two_rungs": {
            "net_ms_per_s": _get(two, "net_ms_per_s"),
            "net_of_passthrough_2_ms_per_s": _sub(_get(two, gw), _get(pt2, gw)),
            "thread_ms_per_s": _get(two, thread),
            "decode_ms_per_s": _get(two, "decode_ms_per_s"),
            "decode_mean_ms": _get(two, "decode_mean_ms"),
            f"scale_encode_{top}_ms_per_s": _get(two, f"out:{top}:encode_ms_per_s"),
            f"scale_encode_{low}_ms_per_s": _get(two, f"out:{low}:encode_ms_per_s"),
            f"scale_encode_{low}_mean_ms": _get(two, f"out:{low}:encode_mean_ms"),
        },
        # The "cost per extra rung": the two-rung case minus the one-rung case.
        "extra_rung": {
            "gateway_ms_per_s": _sub(_get(two, gw), _get(one, gw)),
            "gateway_ms_per_s_without_second_viewer": _sub(
                _sub(_get(two, gw), _get(one, gw)),
                _sub(_get(pt2, gw), _get(base, gw)),
            ),
            "thread_ms_per_s": _sub(_get(two, thread), _get(one, thread)),
            "scale_encode_ms_per_s": _get(two, f"out:{low}:encode_ms_per_s"),
        },
        "shared_rung": {
            "viewers": _get(five, "viewers"),
            "outputs_subscribers": _get(five, f"out:{top}:subscribers"),
            "per_added_viewer_ms_per_s": (
                None
                if five is None or one is None
                else (float(five[gw]) - float(one[gw])) / max(float(five["viewers"]) - 1, 1)
            ),
            "thread_ms_per_s": _get(five, thread),
            "thread_ms_per_s_one_viewer": _get(one, thread),
        },
        GRAY: {
            "net_ms_per_s": _get(gray, "net_ms_per_s"),
            "thread_ms_per_s": _get(gray, thread),
            "decode_mean_ms": _get(gray, "decode_mean_ms"),
            "process_p50_ms": _get(gray, "process_p50_ms"),
            "encode_mean_ms": _get(gray, "out:VP8:encode_mean_ms"),
            "encode_ms_per_s": _get(gray, "out:VP8:encode_ms_per_s"),
        },
    }
    decode = _get(one, "decode_ms_per_s")
    if decode is not None:
        derived["decode_share"] = {
            "decode_ms_per_s": decode,
            "per_rung_with_2_rungs_ms_per_s": (_get(two, "decode_ms_per_s") or decode) / 2,
            "share_of_one_rung_thread": decode / (_get(one, thread) or float("nan")),
        }
    for name, c in (("one_rung", one), ("two_rungs", two), (GRAY, gray)):
        # The worker thread's CPU minus the time its decode and encode timers measured. The
        # timers are wall time (perf_counter): on a busy machine they include preemption
        # and waits for the GIL, so this can be negative; on an idle one it is the mailbox,
        # the Python around the codec calls, the pipeline (gray) and packetizing.
        derived[name]["thread_minus_timers_ms_per_s"] = _sub(
            _get(c, thread),
            (_get(c, "decode_ms_per_s") or 0.0) + (_get(c, "encode_all_ms_per_s") or 0.0),
        )
    sa = results.get("standalone") or {}
    if sa.get("rungs"):
        # The same stages' CPU alone (the benchmark process, not paced), at 30 fps.
        floor = {"decode_ms_per_s": sa["decode"]["cpu_mean_ms"] * FPS}
        for name, r in sa["rungs"].items():
            floor[f"scale_{name}_ms_per_s"] = r["scale"]["cpu_mean_ms"] * FPS
            floor[f"encode_{name}_ms_per_s"] = r["encode"]["cpu_mean_ms"] * FPS
            if r.get("scale_1_thread"):
                floor[f"scale_1_thread_{name}_ms_per_s"] = r["scale_1_thread"]["cpu_mean_ms"] * FPS
        floor["one_rung_ms_per_s"] = (
            floor["decode_ms_per_s"]
            + floor[f"scale_{top}_ms_per_s"]
            + floor[f"encode_{top}_ms_per_s"]
        )
        if low in sa["rungs"]:
            floor["extra_rung_ms_per_s"] = (
                floor[f"scale_{low}_ms_per_s"] + floor[f"encode_{low}_ms_per_s"]
            )
        derived["standalone_cpu"] = floor
    return {"cases": per_case, "derived": derived}


# -- Markdown -------------------------------------------------------------------------------


def _ms(value: float | None, digits: int = 0) -> str:
    return _f(value, digits)


def _signed(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:+.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    s = results["summary"]
    d = s["derived"]
    m = results["machine"]
    git = results["git"]
    settings = results["settings"]
    rungs = results["rungs"]
    top, low = rid(rungs[0][0]), rid(rungs[1][0])
    rung_text = ", ".join(f"{rid(h)} @ {k} kbps" for h, k in rungs)
    out = [
        "# Server-made layers: the cost of a rung beside passthrough and a pipeline rendition",
        "",
        'Generated by `bench/made_layers.py` (see bench/README.md, "Server-made layers").',
        "",
        f"- Command: `{results['command']}`",
        f"- Date: {results['date']}, took {results.get('duration_s', '-')} s",
        f"- Code measured: git {git.get('head')}, gateway/ sha256 {git.get('gateway_sha256')} "
        f"(uncommitted in gateway/: {git.get('uncommitted') or 'none'}); processors/ sha256 "
        f"{results['processors'].get('sha256')} (uncommitted: {results['processors'].get('uncommitted') or 'none'})",
        f"- Machine: {m['nproc']} cores ({m['cpu_model']}), {m['memory_gb']} GiB, kernel {m['kernel']}, "
        f"load average at start {', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}; other work "
        f"before the run {m.get('other_load_before_cores')} cores. Shared with other work: noisy.",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()),
        f"- Input: `{results['input_file']['path']}`: 720p30 VP8 ~1.5 Mbps (keyframe every 2.5 s) + "
        "Opus, sent as-is by `bench.publisher`; viewers (`bench.loadgen`, 1 process) never decode.",
        f"- One gateway: ladder {rung_text} (room `*`), pipeline `{GRAY}` {PIPELINES[GRAY]}, "
        "`media.adapt_layers: false` (viewers stay on what they asked for), encoder threads 1. "
        f"Windows of {settings['window_s']} s after {settings['settle_s']} s settling "
        f"({settings['warmup_s']} s more once a rendition started); {settings['rounds']} round(s) "
        "of the whole sequence, figures are medians over rounds (spread = max - min).",
        "",
        "## Headline",
        "",
    ]
    one, two, extra, share = d["one_rung"], d["two_rungs"], d["extra_rung"], d.get("decode_share")
    c1, c2 = s["cases"].get("rung-1") or {}, s["cases"].get("rungs-2") or {}
    gray = d[GRAY]
    out += [
        f"- **One made rung ({top})**: gateway **{_signed(one['net_ms_per_s'])} ms/s** net of "
        f"passthrough with 1 viewer; its worker thread **{_ms(one['thread_ms_per_s'])} ms/s** of CPU. "
        f"Its timers (wall time): decode {_f(one['decode_mean_ms'], 2)} ms/frame "
        f"({_ms(one['decode_ms_per_s'])} ms/s), scale + encode {_f(one['scale_encode_mean_ms'], 2)} "
        f"ms/frame ({_ms(one['scale_encode_ms_per_s'])} ms/s).",
        f"- **Two rungs ({top} + {low})**: gateway {_signed(two['net_ms_per_s'])} ms/s net of "
        f"passthrough 1 viewer ({_signed(two['net_of_passthrough_2_ms_per_s'])} net of passthrough "
        f"with its 2 viewers); thread {_ms(two['thread_ms_per_s'])} ms/s, one decode "
        f"{_ms(two['decode_ms_per_s'])} ms/s.",
        f"- **Cost per extra rung ({low}, two rungs minus one)**: gateway "
        f"{_signed(extra['gateway_ms_per_s'])} ms/s ({_signed(extra['gateway_ms_per_s_without_second_viewer'])} "
        f"without the second viewer's forwarding, from passthrough 2 - 1), thread "
        f"{_signed(extra['thread_ms_per_s'])} ms/s; its scale + encode calls "
        f"{_ms(extra['scale_encode_ms_per_s'])} ms/s.",
    ]
    if share:
        floor = d.get("standalone_cpu") or {}
        alone = floor.get("decode_ms_per_s")
        out.append(
            f"- **Decode share**: one decode per track, whatever the rungs ({_f(c1.get('fps_decoded'))} "
            f"frames/s decoded with one rung, {_f(c2.get('fps_decoded'))} with two): "
            f"{_ms(share['decode_ms_per_s'])} ms/s by the gateway's timer (wall time, "
            f"{share['share_of_one_rung_thread']:.0%} of the one-rung thread's CPU)"
            + (
                f"; {_ms(alone)} ms/s of CPU alone, {alone / floor['one_rung_ms_per_s']:.0%} of a "
                f"{top} rung's decode + scale + encode; with two rungs {_ms(alone / 2)} ms/s each."
                if alone
                else "."
            )
        )
    shared = d["shared_rung"]
    if shared.get("viewers"):
        out.append(
            f"- **Shared rung**: {int(shared['viewers'])} viewers on {top}: one output with "
            f"{_f(shared['outputs_subscribers'], 0)} subscribers, thread "
            f"{_ms(shared['thread_ms_per_s'])} ms/s (1 viewer: {_ms(shared['thread_ms_per_s_one_viewer'])}); "
            f"{_f(shared['per_added_viewer_ms_per_s'], 1)} ms/s of gateway per added viewer "
            f"(a passthrough viewer: {_f(d['passthrough_viewer_ms_per_s'], 1)} ms/s net of publisher-only, "
            f"the second one {_f(d['passthrough_second_viewer_ms_per_s'], 1)})"
            + (
                f"; the 5-viewer case's gateway CPU varied by {_ms(spread)} ms/s between rounds, "
                "more than 4 viewers cost: the sharing shows in the one output and the flat "
                "thread, not in that difference."
                if (spread := s["cases"].get("rung-5", {}).get("spread:gateway_ms_per_s"))
                and spread > 20
                else "."
            )
        )
    out.append(
        f"- **`{GRAY}` rendition** (this run): gateway {_signed(gray['net_ms_per_s'])} ms/s net of "
        f"passthrough 1 viewer, thread {_ms(gray['thread_ms_per_s'])} ms/s (decode "
        f"{_f(gray['decode_mean_ms'], 2)}, grayscale p50 {_f(gray['process_p50_ms'], 2)}, 720p "
        f"encode {_f(gray['encode_mean_ms'], 2)} ms/frame)."
        + _processing_reference(results.get("processing_reference"))
    )
    out += ["", "## Cases", ""]
    out += cases_table(results)
    out += ["", "## Per stage (from GET /api/renditions, window means)", ""]
    out += stages_table(results)
    out += ["", "## Scale apart: the gateway's classes alone in the benchmark process", ""]
    out += standalone_table(results)
    out += ["", "## Findings", ""]
    out += [f"- {x}" for x in findings(results)]
    problems = [
        (k, r["problem"])
        for rnd in results.get("gateway", {}).get("rounds", [])
        for k, r in rnd.items()
        if r.get("problem")
    ]
    if problems or results.get("gateway", {}).get("error"):
        out += ["", "## Problems seen", ""]
        if results["gateway"].get("error"):
            out.append(f"- gateway phase: {results['gateway']['error']}")
        for key, problem in problems:
            out.append(f"- {key}: expected outputs not seen: `{json.dumps(problem)[:600]}`")
    out += [
        "",
        "Columns: CPU is utime+stime from /proc (whole gateway process; the rendition thread = "
        "the threads that appeared since the case's first viewer joined, i.e. the rendition's "
        "worker `rendition-<track>.@ladder` or `.gray`). Net = the case minus passthrough with 1 "
        "viewer, same gateway, same round. Per-stage times come from the gateway's timers "
        "(total_ms and count at the window's ends: mean ms per call; ms/s = time spent per "
        "second); a rung's encode call includes its scale (RenditionOutput.encode). Viewer fps "
        "and kbps: complete VP8 frames and bytes at each viewer (no decoding), by the layer it "
        "asked for. The decode also runs on frames the encoders then skip (latest wins), which "
        "are counted.",
    ]
    return "\n".join(out) + "\n"


def _processing_reference(ref: dict[str, Any] | None) -> str:
    if not ref:
        return ""
    return (
        f" The processing benchmark's stored figure ({ref['date']}, git {ref['head']}): "
        f"{_ms(ref['rendition_ms_per_s'])} ms/s net, threads {_ms(ref['threads_ms_per_s'])} ms/s."
    )


def cases_table(results: dict[str, Any]) -> list[str]:
    c = results["summary"]["cases"]
    lines = [
        "| case | viewers | gateway ms/s (spread) | net of passthrough-1 | rendition worker thread ms/s (spread) | loop thread ms/s | threads ended in the window ms/s | frames out fps | viewers: layer x N: fps p50/min, kbps | other work (cores) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    rungs = tuple((int(h), int(k)) for h, k in results["rungs"])
    labels = {case.key: case.label for case in cases(rungs)}
    for key, x in c.items():
        views = sorted(
            k.split(":")[1] for k in x if k.startswith("view:") and k.endswith(":viewers")
        )
        viewer_text = (
            "; ".join(
                f"{layer} x{int(x[f'view:{layer}:viewers'])}: {_f(x[f'view:{layer}:fps_p50'])}/"
                f"{_f(x[f'view:{layer}:fps_min'])} fps, {_ms(x[f'view:{layer}:kbps_p50'])} kbps"
                for layer in views
            )
            or "-"
        )
        spread = x.get("spread:gateway_ms_per_s")
        thread_spread = x.get("spread:rendition_thread_ms_per_s")
        lines.append(
            f"| {labels.get(key, key)} | {int(x['viewers'])} | {_ms(x['gateway_ms_per_s'])}"
            + (f" ({_ms(spread)})" if spread is not None else "")
            + f" | {_signed(x['net_ms_per_s'])} | {_ms(x['rendition_thread_ms_per_s'])}"
            + (f" ({_ms(thread_spread)})" if thread_spread is not None else "")
            + f" | {_ms(x['loop_ms_per_s'])} | {_ms(x.get('ended_threads_ms_per_s'))} | "
            f"{_f(x.get('fps_out'))} | {viewer_text} | {_f(x['other_load_cores'], 2)} |"
        )
    return lines


def stages_table(results: dict[str, Any]) -> list[str]:
    c = results["summary"]["cases"]
    lines = [
        "| case | fps decoded | decode ms/frame (p50) | decode ms/s | output | fps out | scale+encode ms/frame (p50 / p95) | scale+encode ms/s | drops (latest wins) |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for key, x in c.items():
        outs = sorted(
            {k.split(":")[1] for k in x if k.startswith("out:")},
            key=lambda o: -int(o[:-1]) if o.endswith("p") and o[:-1].isdigit() else 0,
        )
        for i, o in enumerate(outs):
            head = (
                f"| {key} | {_f(x.get('fps_decoded'))} | {_f(x.get('decode_mean_ms'), 2)} "
                f"({_f(x.get('decode_p50_ms'), 2)}) | {_ms(x.get('decode_ms_per_s'))}"
                if i == 0
                else "| | | |"
            )
            lines.append(
                f"{head} | {o if o != 'VP8' else 'VP8 720p (gray)'} | {_f(x.get(f'out:{o}:fps_out'))} | "
                f"{_f(x.get(f'out:{o}:encode_mean_ms'), 2)} ({_f(x.get(f'out:{o}:encode_p50_ms'), 2)} / "
                f"{_f(x.get(f'out:{o}:encode_p95_ms'), 2)}) | {_ms(x.get(f'out:{o}:encode_ms_per_s'))} | "
                + (f"{_f(x.get('latest_wins_drops'), 0)} |" if i == 0 else " |")
            )
    return lines


def standalone_table(results: dict[str, Any]) -> list[str]:
    sa = results.get("standalone") or {}
    if not sa.get("rungs"):
        return [f"Not measured{': ' + sa['error'] if sa.get('error') else ''}."]
    w, h = sa["source"]
    lines = [
        f"{sa['frames']} frames of the input ({w}x{h}), each decoded then scaled and encoded for "
        "every rung as the @ladder worker does, none kept, not paced, in the controller's thread "
        "(the gateway stopped): `Decoder` (libvpx, 1 thread), `Rung.scale` "
        f'(`frame.reformat(w, h, format="yuv420p", interpolation="{sa["interpolation"]}")`, '
        "PyAV's `threads` left at its default, as the gateway calls it) and the same call with "
        "`threads=1`, `VideoEncoder` (libvpx VP8 realtime, cpu-used 8, CBR at the rung's "
        "bitrate). Wall ms per call; CPU per frame of the calling thread and of the whole "
        "process (swscale's own threads included; the process had up to "
        f"{sa.get('process_threads_max', '-')} threads).",
        "",
        "| stage | picture | wall ms mean (p50 / p95) | CPU ms/frame: thread / process | process CPU at 30 fps, ms/s |",
        "|---|---|---:|---:|---:|",
    ]

    def line(name: str, picture: str, t: dict[str, Any]) -> str:
        return (
            f"| {name} | {picture} | {_f(t['mean_ms'], 2)} ({_f(t['p50_ms'], 2)} / "
            f"{_f(t['p95_ms'], 2)}) | {_f(t.get('cpu_thread_mean_ms'), 2)} / "
            f"{_f(t['cpu_mean_ms'], 2)} | {_ms(t['cpu_mean_ms'] * FPS)} |"
        )

    lines.append(line("decode", f"{w}x{h}", sa["decode"]))
    for name, r in sa["rungs"].items():
        size = f"{r['size'][0]}x{r['size'][1]}"
        lines.append(line(f"scale {name} (`Rung.scale`)", size, r["scale"]))
        if r.get("scale_1_thread"):
            lines.append(line(f"scale {name}, `threads=1`", size, r["scale_1_thread"]))
        lines.append(line(f"encode {name}", f"{size}, {r['bitrate_kbps']} kbps", r["encode"]))
    return lines


def findings(results: dict[str, Any]) -> list[str]:
    s = results["summary"]
    c, d = s["cases"], s["derived"]
    rungs = results["rungs"]
    top, low = rid(rungs[0][0]), rid(rungs[1][0])
    found: list[str] = []
    one, two, gray = c.get("rung-1"), c.get("rungs-2"), c.get(f"{GRAY}-1")
    if (
        one
        and gray
        and one.get("rendition_thread_ms_per_s")
        and gray.get("rendition_thread_ms_per_s")
    ):
        ratio = one["rendition_thread_ms_per_s"] / gray["rendition_thread_ms_per_s"]
        found.append(
            f"A made {top} rung costs {ratio:.0%} of the `{GRAY}` rendition's worker thread "
            f"({_ms(one['rendition_thread_ms_per_s'])} vs {_ms(gray['rendition_thread_ms_per_s'])} ms/s): "
            f"same decode, but a {top} encode instead of a 720p one, and no pipeline."
        )
    if one and two and one.get("fps_decoded") and two.get("fps_decoded"):
        found.append(
            f"One decoder for the track: {_f(one['fps_decoded'])} frames/s decoded with one rung, "
            f"{_f(two['fps_decoded'])} with two (decode timer {_f(one.get('decode_mean_ms'), 2)} and "
            f"{_f(two.get('decode_mean_ms'), 2)} ms/frame); the second rung adds a scale and an "
            "encode, not a decode."
        )
    extra = d["extra_rung"]
    floor = d.get("standalone_cpu") or {}
    if extra.get("thread_ms_per_s") is not None and extra.get("scale_encode_ms_per_s") is not None:
        found.append(
            f"The second rung ({low}) adds {_signed(extra['thread_ms_per_s'])} ms/s to the worker "
            f"thread (its scale + encode timer: {_ms(extra['scale_encode_ms_per_s'])} ms/s of wall "
            f"time; alone, {_ms(floor.get('extra_rung_ms_per_s'))} ms/s of CPU) and "
            f"{_signed(extra['gateway_ms_per_s'])} ms/s to the gateway, one more viewer's forwarding "
            "included"
            + (
                ": a further rung costs less than the first, whose price includes the decode."
                if extra["thread_ms_per_s"] < (one or {}).get("rendition_thread_ms_per_s", 0)
                else "."
            )
        )
    if floor and one:
        found.append(
            f"Alone (the benchmark process, not paced), a {top} rung's stages cost "
            f"{_ms(floor['one_rung_ms_per_s'])} ms/s of CPU at 30 fps: decode "
            f"{_ms(floor['decode_ms_per_s'])}, scale {_ms(floor[f'scale_{top}_ms_per_s'])}, encode "
            f"{_ms(floor[f'encode_{top}_ms_per_s'])}. In the gateway its worker thread used "
            f"{_ms(one.get('rendition_thread_ms_per_s'))} ms/s"
            + (
                ": the rest is the Python around the codec calls, the mailbox and packetizing, "
                "and sharing the process with the loop."
                if (one.get("rendition_thread_ms_per_s") or 0) > floor["one_rung_ms_per_s"]
                else " (no more than alone: the loop costs the worker nothing measurable)."
            )
        )
        scale = floor[f"scale_{top}_ms_per_s"]
        found.append(
            f"Scale (swscale area, 1280x720 -> {top}) is "
            f"{scale / (scale + floor[f'encode_{top}_ms_per_s']):.0%} of a rung's scale + encode "
            "CPU alone; the gateway times both in one call (RenditionOutput.encode)."
        )
    sa = results.get("standalone") or {}
    r = (sa.get("rungs") or {}).get(top) or {}
    if (
        r.get("scale_1_thread")
        and r["scale"]["cpu_mean_ms"] > 1.2 * r["scale_1_thread"]["cpu_mean_ms"]
    ):
        ended = one.get("ended_threads_ms_per_s") if one else None
        base = c.get(BASELINE, {}).get("ended_threads_ms_per_s")
        found.append(
            "`Rung.scale` leaves PyAV's `reformat(threads=...)` at its default: swscale runs "
            f"helper threads (the benchmark process grew to {sa.get('process_threads_max')} "
            f"threads), and a {top} scale took {_f(r['scale']['cpu_mean_ms'], 2)} ms of process CPU "
            f"({_f(r['scale']['mean_ms'], 2)} ms wall) per frame, against "
            f"{_f(r['scale_1_thread']['cpu_mean_ms'], 2)} ms ({_f(r['scale_1_thread']['mean_ms'], 2)} "
            "ms wall) with `threads=1`, on this 2-core machine. In the gateway, CPU of threads that "
            f"ended within the window: {_ms(ended)} ms/s with one rung, {_ms(base)} passthrough "
            "(those threads are outside the worker thread's figure, inside the gateway's). "
            "Not changed here (gateway code): worth `threads=1` in Rung.scale."
        )
    timers = d["one_rung"].get("thread_minus_timers_ms_per_s")
    if timers is not None and timers < -10:
        found.append(
            f"The gateway's stage timers are wall time: they added up to {-timers:.0f} ms/s more "
            "than the one-rung worker thread's CPU, i.e. they include time the thread was "
            "preempted or waited for the GIL. The thread's CPU is the cost; the timers give the "
            "split and the latency."
        )
    fps = [
        (k, x.get(f"view:{layer}:fps_min"))
        for k, x in c.items()
        for layer in {key.split(":")[1] for key in x if key.startswith("view:")}
    ]
    slow = [f"{k} {_f(v)}" for k, v in fps if v is not None and v < 0.95 * FPS]
    found.append(
        "Every viewer got >= 95% of 30 fps in every case."
        if not slow
        else "Viewers below 95% of 30 fps: " + ", ".join(slow) + "."
    )
    noisy = [k for k, x in c.items() if (x.get("other_load_cores") or 0) > 0.3]
    if noisy:
        found.append(
            "Other work on the machine was above 0.3 cores during: " + ", ".join(noisy) + " "
            "(the whole-gateway figures of those cases are the least certain)."
        )
    return found


# -- main -----------------------------------------------------------------------------------


def processing_reference() -> dict[str, Any] | None:
    """The stored processing benchmark's gray figures, to quote beside this run's."""
    path = RESULTS / "processing.json"
    try:
        data = json.loads(path.read_text())
        gray = data["summary"]["pipelines"][GRAY]
        return {
            "date": data["date"],
            "head": data["git"]["head"],
            "rendition_ms_per_s": gray.get("rendition_ms_per_s"),
            "threads_ms_per_s": gray.get("rendition_threads_ms_per_s"),
        }
    except (OSError, KeyError, ValueError):
        return None


async def main_async(args: argparse.Namespace) -> int:
    quick = args.quick
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    options = Options(
        rounds=args.rounds or (1 if quick else 2),
        window_s=args.window or (6.0 if quick else 12.0),
        settle_s=args.settle if args.settle is not None else (2.0 if quick else 3.0),
        warmup_s=args.warmup if args.warmup is not None else (2.0 if quick else 3.0),
        only=[k for k in (args.cases or "").split(",") if k],
    )
    settings = Settings(
        viewers=[],
        naive_viewers=[],
        pipelines=[GRAY],
        window_s=options.window_s,
        settle_s=options.settle_s,
        warmup_s=options.warmup_s,
        loadgen_procs=1,
        phases=["gateway"],
        thread_counts=[],
        run_dir=OUT / f"made-layers-{stamp}",
        quiet_budget_s=[
            args.quiet_budget if args.quiet_budget is not None else (15.0 if quick else 40.0)
        ],
    )
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: dict[str, Any] = {
        **_header(),
        "processors": processors_revision(),
        "rungs": [list(r) for r in RUNGS],
        "pipelines": PIPELINES,
        "settings": {
            "rounds": options.rounds,
            "window_s": options.window_s,
            "settle_s": options.settle_s,
            "warmup_s": options.warmup_s,
            "cases": options.only or [c.key for c in cases()],
            "run_dir": str(settings.run_dir),
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
    results["gateway"] = await run_gateway(settings, options, input_file, RUNGS)
    try:
        results["standalone"] = await asyncio.to_thread(
            standalone, input_file, RUNGS, 90 if quick else 300
        )
    except Exception as exc:
        logger.exception("the standalone timing failed")
        results["standalone"] = {"error": f"{type(exc).__name__}: {exc}"}
    results["processing_reference"] = processing_reference()
    results["duration_s"] = round(time.monotonic() - started, 1)
    results["summary"] = analyse(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out_json = Path(args.json) if args.json else RESULTS / "made_layers.json"
    out_md = Path(args.md) if args.md else RESULTS / "made_layers.md"
    text = json.dumps(results, indent=2, default=str) + "\n"
    out_json.write_text(text)
    (settings.run_dir / "made_layers.json").write_text(text)
    out_md.write_text(markdown(results))
    logger.info("wrote %s and %s (%.0f s)", out_md, out_json, results["duration_s"])
    return 0


def _header() -> dict[str, Any]:
    header = run_header("bench.made_layers")
    header["git"]["uncommitted_all"] = _uncommitted()
    return header


def _uncommitted() -> list[str]:
    try:
        return _git("status", "--porcelain").splitlines()
    except Exception:
        return ["unknown"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.made_layers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a short run (~3 min)")
    parser.add_argument("--rounds", type=int, help="rounds of the sequence (default 2; quick 1)")
    parser.add_argument("--window", type=float, help="seconds per window (default 12; quick 6)")
    parser.add_argument("--settle", type=float, help="seconds after viewers join (default 3)")
    parser.add_argument("--warmup", type=float, help="more seconds once a rendition started")
    parser.add_argument("--cases", help="comma-separated case keys to run (default all)")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=20.0,
        help="wait up to this many seconds for other work to calm down first (default 20)",
    )
    parser.add_argument(
        "--quiet-budget",
        type=float,
        default=None,
        help="seconds the run may spend waiting to re-measure windows disturbed by other "
        "work (default 40; quick 15)",
    )
    parser.add_argument("--json", help="output JSON (default bench/results/made_layers.json)")
    parser.add_argument("--md", help="output Markdown (default bench/results/made_layers.md)")
    parser.add_argument("--render", metavar="JSON", help="only re-render the Markdown of a JSON")
    args = parser.parse_args(argv)
    if args.render:
        results = json.loads(Path(args.render).read_text())
        results["summary"] = analyse(results)
        out_md = Path(args.md) if args.md else RESULTS / "made_layers.md"
        out_md.write_text(markdown(results))
        print(f"wrote {out_md}")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
