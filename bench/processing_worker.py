"""A rendition alone in a process of its own: the floor the gateway's worker thread is compared with.

``python -m bench.processing_worker --file IN.webm --pipeline '["grayscale"]' --seconds 15
--out OUT.json``

Runs what one gateway rendition runs per video frame, with the gateway's own classes: the
``Decoder`` (PyAV libvpx), the pipeline (``processors.registry.build_pipeline``), the
``VideoEncoder`` (libvpx realtime CBR) and the VP8 packetizer, on the pre-encoded 720p30
input, paced in real time (30 fps), in the main thread of an otherwise idle process: no
event loop, no network, no GIL shared with anything. CPU (utime+stime of the process) and
per-stage times over ``--seconds`` after ``--warmup`` seconds. That is what a rendition
would cost as a separate process (before any transfer of frames between processes), and
how long its stages take when nothing else runs in the process.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from gateway.media import tap
from gateway.processing.decoder import Decoder
from gateway.processing.encoder import VideoEncoder
from processors.base import FrameContext
from processors.registry import build_pipeline

from .media import FPS, read_file
from .stats import percentile

TICKS_PER_FRAME = 90000 // FPS


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "count": len(values),
        "avg_ms": sum(values) / len(values) if values else None,
        "p50_ms": percentile(values, 50),
        "p95_ms": percentile(values, 95),
    }


def run(
    file: Path, spec: list[Any], seconds: float, warmup: float, threads: int, bitrate: int
) -> dict[str, Any]:
    video = read_file(file)["video"]
    decoder = Decoder("VP8")
    pipeline = build_pipeline(spec, name="standalone")
    encoder = VideoEncoder("VP8", bitrate, threads, 300)
    packetize = tap.packetizer("VP8")
    timings: dict[str, list[float]] = {
        k: [] for k in ("decode", "process", "encode", "packetize", "total")
    }
    stages: dict[str, list[float]] = {}
    start = time.monotonic()
    window_start = start + warmup
    end = window_start + seconds
    cpu0: os.times_result | None = None
    late = 0
    index = 0
    while True:
        due = start + index / FPS
        now = time.monotonic()
        if now >= end:
            break
        if due > now:
            time.sleep(due - now)
        elif now - due > 1 / FPS:
            late += 1
        recording = time.monotonic() >= window_start
        if recording and cpu0 is None:
            cpu0 = os.times()
            frames0 = index
            wall0 = time.monotonic()
            for stage in pipeline.stages:
                stages[stage.name] = []
        packet = video.packets[index % len(video.packets)]
        timestamp = index * TICKS_PER_FRAME
        t0 = time.perf_counter()
        decoded = decoder.decode(packet.data, timestamp)
        t1 = time.perf_counter()
        for frame in decoded:
            context = FrameContext(
                pts=timestamp,
                time_base=decoder.time_base,
                wall_time=time.time(),
                track_id="standalone",
                frame_index=index,
            )
            before = {s.name: s.timer.count for s in pipeline.stages}
            output = pipeline.process(frame, context)
            t2 = time.perf_counter()
            packets = encoder.encode(output, timestamp, index == 0) if output is not None else []
            t3 = time.perf_counter()
            for encoded in packets:
                packetize(encoded.data)
            t4 = time.perf_counter()
            if recording:
                timings["decode"].append((t1 - t0) * 1000)
                timings["process"].append((t2 - t1) * 1000)
                timings["encode"].append((t3 - t2) * 1000)
                timings["packetize"].append((t4 - t3) * 1000)
                timings["total"].append((t4 - t0) * 1000)
                for stage in pipeline.stages:
                    if stage.timer.count > before[stage.name]:
                        stages[stage.name].append(stage.timer.last_ms)
        index += 1
    cpu1 = os.times()
    wall1 = time.monotonic()
    assert cpu0 is not None
    elapsed = wall1 - wall0
    cpu_s = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    return {
        "pipeline": spec,
        "encoder_threads": threads,
        "window_s": round(elapsed, 2),
        "fps": (index - frames0) / elapsed,
        "late_frames": late,
        "cpu_ms_per_s": cpu_s * 1000 / elapsed,
        "user_ms_per_s": (cpu1.user - cpu0.user) * 1000 / elapsed,
        "cpu_ms_per_frame": cpu_s * 1000 / max(index - frames0, 1),
        "timing": {k: _summary(v) for k, v in timings.items()},
        "stages": {k: _summary(v) for k, v in stages.items()},
        "conversion": pipeline.conversion.snapshot(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--file", required=True)
    parser.add_argument("--pipeline", required=True, help="JSON list of processors")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=1, help="encoder threads")
    parser.add_argument("--bitrate", type=int, default=1_500_000)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    result = run(
        Path(args.file),
        json.loads(args.pipeline),
        args.seconds,
        args.warmup,
        args.threads,
        args.bitrate,
    )
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
