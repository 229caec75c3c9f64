"""Ingest bitrate: a Chromium 1280x720 publisher's send bitrate over time, on loopback, with
the gateway's transport-cc feedback and with aiortc's default (REMB only), in one run.

    .venv/bin/python -m bench.ingest   # ~5 min: writes bench/results/ingest.{md,json}
    .venv/bin/python -m bench.ingest --rounds 1 --hints detail

Each phase starts its own gateway (``python -m gateway``, ICE on 127.0.0.1), its own headless
Chromium publishing the fake camera over WHIP, and one WHEP viewer (an aiortc peer that counts
the forwarded frames without decoding them), then samples the publisher's getStats every
0.25 s: outbound-rtp ``targetBitrate`` (what the encoder is asked for), the bitrate actually
sent, frame size and rate, ``qualityLimitationReason``, and the candidate pair's
``availableOutgoingBitrate`` (the browser's bandwidth estimate); and the gateway's
/api/stats once a second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

import aiohttp
from playwright.async_api import Page, async_playwright

from tests.e2e.conftest import CHROMIUM, CHROMIUM_FLAGS
from tests.e2e.test_ingest_bitrate import HEIGHT, WIDTH, write_clip

from .broadcast import free_port, git_revision, versions
from .control import Process
from .peers import TappedViewer, loopback_only
from .stats import cpu_ms_per_s, cpu_sample

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
RESULTS = ROOT / "bench" / "results"
logger = logging.getLogger("bench.ingest")

TARGET_BPS = 1_500_000
TARGET_WITHIN_S = 10.0

# What each mode changes in the gateway's settings (config.yaml's ingest section).
MODES: dict[str, dict[str, Any]] = {
    "transport-cc": {},  # the defaults: transport-cc feedback, 3000 kbps maximum
    "aiortc-default": {"transport_cc": False, "max_bitrate_kbps": 0},
}

# Publishes the camera over WHIP from the page; samples getStats every 500 ms into
# window.ingest.samples, t in seconds since the peer connection was connected.
PUBLISH = """
async ({width, height, hint}) => {
  const stream = await navigator.mediaDevices.getUserMedia({
    video: {width: {exact: width}, height: {exact: height}}, audio: true,
  });
  if (hint) stream.getVideoTracks()[0].contentHint = hint;
  const pc = new RTCPeerConnection({iceServers: []});
  const state = (window.ingest = {pc, answer: null, samples: [], connectedAt: null});
  pc.addEventListener("connectionstatechange", () => {
    if (pc.connectionState === "connected" && state.connectedAt === null) {
      state.connectedAt = performance.now();
    }
  });
  for (const track of stream.getTracks()) pc.addTransceiver(track, {direction: "sendonly"});
  await pc.setLocalDescription(await pc.createOffer());
  if (pc.iceGatheringState !== "complete") {
    await new Promise((resolve) => pc.addEventListener("icegatheringstatechange",
      () => pc.iceGatheringState === "complete" && resolve()));
  }
  const response = await fetch("/whip/ingest", {
    method: "POST", headers: {"Content-Type": "application/sdp"}, body: pc.localDescription.sdp,
  });
  const answer = await response.text();
  if (response.status !== 201) throw new Error(`WHIP ${response.status}: ${answer}`);
  state.answer = answer;
  await pc.setRemoteDescription({type: "answer", sdp: answer});
  let previous = null;
  const sample = async () => {
    if (state.connectedAt === null) return;
    const report = await pc.getStats();
    let out = null, transport = null;
    for (const s of report.values()) {
      if (s.type === "outbound-rtp" && s.kind === "video") out = s;
      if (s.type === "transport") transport = s;
    }
    const pair = transport ? report.get(transport.selectedCandidatePairId) : null;
    if (!out) return;
    const now = {t: (performance.now() - state.connectedAt) / 1000, bytes: out.bytesSent,
                 stamp: out.timestamp};
    state.samples.push({
      t: now.t,
      target_bps: out.targetBitrate ?? null,
      sent_bps: previous ? (now.bytes - previous.bytes) * 8000 / (now.stamp - previous.stamp) : null,
      width: out.frameWidth ?? null,
      height: out.frameHeight ?? null,
      fps: out.framesPerSecond ?? null,
      limitation: out.qualityLimitationReason ?? null,
      available_bps: pair?.availableOutgoingBitrate ?? null,
    });
    previous = now;
  };
  state.timer = setInterval(() => sample().catch((e) => console.warn(e)), 250);
  return answer;
}
"""


async def wait_http(base: str, http: aiohttp.ClientSession, limit_s: float = 30.0) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        try:
            async with http.get(f"{base}/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the gateway did not come up")
        await asyncio.sleep(0.2)


async def video_track_stats(http: aiohttp.ClientSession, base: str) -> dict[str, Any] | None:
    async with http.get(f"{base}/api/stats") as response:
        body = await response.json()
    for room in body.get("rooms", []):
        for track in room.get("tracks", []):
            if track.get("kind") == "video":
                return dict(track)
    return None


async def run_phase(
    mode: str, hint: str, round_no: int, clip: Path, args: argparse.Namespace, run_dir: Path
) -> dict[str, Any]:
    """One gateway, one Chromium publisher, one viewer, ``args.seconds`` of samples."""
    port = free_port()
    name = f"gateway-{mode}-{hint or 'none'}-{round_no}"
    config = run_dir / f"{name}.yaml"
    ingest = {"transport_cc": True, **MODES[mode]}
    config.write_text(
        json.dumps(
            {
                "server": {"host": "127.0.0.1", "port": port},
                "ice": {"addresses": ["127.0.0.1"]},
                "ingest": ingest,
                "log": {"level": "warning"},
            }
        )
    )
    gateway = await Process.start(
        name,
        [str(ROOT / ".venv/bin/python"), "-m", "gateway", "--config", str(config)],
        run_dir,
    )
    base = f"http://127.0.0.1:{port}"
    viewer = TappedViewer()
    gateway_stats: list[dict[str, Any]] = []
    try:
        async with aiohttp.ClientSession() as http, async_playwright() as playwright:
            await wait_http(base, http)
            browser = await playwright.chromium.launch(
                executable_path=str(CHROMIUM),
                headless=True,
                args=[*CHROMIUM_FLAGS, f"--use-file-for-fake-video-capture={clip}"],
            )
            try:
                page: Page = await browser.new_page()
                await page.goto(f"{base}/")
                answer = await page.evaluate(
                    PUBLISH, {"width": WIDTH, "height": HEIGHT, "hint": hint}
                )
                await page.wait_for_function(
                    "window.ingest.connectedAt !== null", polling=100, timeout=30_000
                )
                await viewer.whep(http, f"{base}/whep/ingest")
                cpu_start = cpu_sample(gateway.pid, time.monotonic())
                started = time.monotonic()
                while time.monotonic() - started < args.seconds + 0.6:
                    await asyncio.sleep(1.0)
                    track = await video_track_stats(http, base)
                    if track is not None:
                        ingest_stats = track.get("ingest") or {}
                        gateway_stats.append(
                            {"t": round(time.monotonic() - started, 2), **ingest_stats}
                        )
                cpu_end = cpu_sample(gateway.pid, time.monotonic())
                samples = await page.evaluate("window.ingest.samples")
            finally:
                await browser.close()
    finally:
        await viewer.close()
        await gateway.stop()
    samples = [s for s in samples if s["t"] <= args.seconds + 0.25]
    return {
        "mode": mode,
        "hint": hint or "none",
        "round": round_no,
        "settings": ingest,
        "answer_has_transport_cc": "transport-cc" in answer,
        "samples": samples,
        "gateway": gateway_stats,
        "viewer_frames": viewer.counters.video_frames,
        "gateway_cpu_ms_per_s": round(cpu_ms_per_s(cpu_start, cpu_end), 1),
        "summary": summarize(samples),
    }


def summarize(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The headline numbers of one phase."""
    targets = [(s["t"], s["target_bps"] or 0) for s in samples]
    reached = next((t for t, bps in targets if bps >= TARGET_BPS), None)

    def between(lo: float, hi: float, key: str) -> list[float]:
        return [s[key] for s in samples if lo <= s["t"] <= hi and s.get(key) is not None]

    full = [s for s in samples if s["t"] >= 1.0]
    at_full = [s for s in full if s.get("width") == WIDTH and s.get("height") == HEIGHT]
    return {
        "reached_1_5_mbps_at_s": reached,
        "target_at_10s_bps": next((bps for t, bps in targets if t >= TARGET_WITHIN_S), None),
        "target_median_10_20s_bps": _median(between(10, 20, "target_bps")),
        "sent_median_10_20s_bps": _median(between(10, 20, "sent_bps")),
        "available_median_10_20s_bps": _median(between(10, 20, "available_bps")),
        "fps_median_10_20s": _median(between(10, 20, "fps")),
        "share_at_1280x720": round(len(at_full) / len(full), 3) if full else None,
        "resolutions": sorted({f"{s.get('width')}x{s.get('height')}" for s in full}),
        "limitations": sorted({str(s.get("limitation")) for s in full}),
    }


def _median(values: list[float]) -> float | None:
    return round(median(values), 1) if values else None


def _kbps(bps: float | None) -> str:
    return "-" if bps is None else f"{bps / 1000:.0f}"


def render(results: dict[str, Any]) -> str:
    """Markdown: the headline numbers of every phase, then each hint's first round over time."""
    lines = [
        "# Ingest bitrate: Chromium 1280x720 publisher, transport-cc feedback vs aiortc's default",
        "",
        f"Command: `{results['command']}`  ",
        f"Date: {results['date']}; machine: {results['machine']['cpus']} CPUs "
        f"({results['machine']['kernel']}); {results['chromium']}; "
        f"gateway revision {results['revision'].get('head')} "
        f"(gateway/ sha256 {results['revision'].get('gateway_sha256')}).  ",
        f"Phases of {results['seconds']:.0f} s each, the two modes alternating, in one run. "
        "Target: >= 1.5 Mbps targetBitrate within 10 s at 1280x720, resolution held.",
        "",
        "| content hint | mode | round | reached 1.5 Mbps at | target at 10 s (kbps) "
        "| target, 10-20 s median (kbps) | sent, 10-20 s (kbps) "
        "| browser estimate, 10-20 s (kbps) | fps, 10-20 s | time at 1280x720 "
        "| quality limitation | gateway CPU (ms/s) | viewer frames |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for phase in results["phases"]:
        s = phase["summary"]
        reached = s["reached_1_5_mbps_at_s"]
        lines.append(
            f"| {phase['hint']} | {phase['mode']} | {phase['round']} | "
            f"{'never' if reached is None else f'{reached:.1f} s'} | "
            f"{_kbps(s['target_at_10s_bps'])} | {_kbps(s['target_median_10_20s_bps'])} | "
            f"{_kbps(s['sent_median_10_20s_bps'])} | {_kbps(s['available_median_10_20s_bps'])} | "
            f"{s['fps_median_10_20s'] if s['fps_median_10_20s'] is not None else '-'} | "
            f"{100 * (s['share_at_1280x720'] or 0):.0f}% | {', '.join(s['limitations'])} | "
            f"{phase['gateway_cpu_ms_per_s']} | {phase['viewer_frames']} |"
        )
    for hint in dict.fromkeys(p["hint"] for p in results["phases"]):
        lines += timeline(results, hint)
    lines += [
        "",
        "`target` is the publisher's outbound-rtp `targetBitrate` (the bitrate its encoder is "
        "asked for), `sent` its `bytesSent` rate, `browser estimate` the candidate pair's "
        "`availableOutgoingBitrate`, `time at 1280x720` the share of samples after the first "
        "second whose frames were sent at full size. transport-cc is the gateway's default "
        "(`ingest.transport_cc: true`, `max_bitrate_kbps: 3000`); aiortc-default is "
        "`ingest.transport_cc: false` with no bitrate bound: aiortc's receiver answers "
        "without transport-cc and sends REMB from its abs-send-time estimate. Content hint "
        "`detail` makes Chromium keep the resolution and trade frame rate; with none, "
        "Chromium chooses (see bench/README.md). The gateway's `/api/stats` ingest numbers, "
        "per second, are in the JSON.",
        "",
    ]
    return "\n".join(lines)


def timeline(results: dict[str, Any], hint: str) -> list[str]:
    """Per second of round 1 with this content hint: each mode's target/sent, size, fps."""
    first = {p["mode"]: p for p in results["phases"] if p["round"] == 1 and p["hint"] == hint}
    modes = list(first)
    lines = ["", f"## Over time: round 1, content hint {hint}", ""]
    header = "| t (s) | " + " | ".join(f"{m}: target / sent kbps, size, fps" for m in modes)
    lines += [header + " |", "|---" * (len(modes) + 1) + "|"]
    for second in range(1, int(results["seconds"]) + 1):
        cells = []
        for mode in modes:
            near = [s for s in first[mode]["samples"] if abs(s["t"] - second) <= 0.13]
            if not near:
                cells.append("-")
                continue
            s = near[0]
            cells.append(
                f"{_kbps(s['target_bps'])} / {_kbps(s['sent_bps'])}, "
                f"{s['width']}x{s['height']}, {s['fps'] or '-'}"
            )
        lines.append(f"| {second} | " + " | ".join(cells) + " |")
    return lines


def chromium_version() -> str:
    try:
        out = subprocess.run(
            [str(CHROMIUM), "--version"], capture_output=True, text=True, timeout=30
        ).stdout
        return out.strip().splitlines()[-1] if out.strip() else "unknown"
    except Exception:
        return "unknown"


async def run_all(args: argparse.Namespace, clip: Path, run_dir: Path) -> dict[str, Any]:
    loopback_only()
    phases = []
    for hint in args.hints.split(","):
        for round_no in range(1, args.rounds + 1):
            for mode in args.modes.split(","):
                logger.info("content hint %s, round %d: %s", hint, round_no, mode)
                phase = await run_phase(
                    mode, "" if hint == "none" else hint, round_no, clip, args, run_dir
                )
                logger.info("  %s", phase["summary"])
                phases.append(phase)
    return {
        "command": args.command,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release()},
        "chromium": chromium_version(),
        "versions": versions(),
        "revision": git_revision(),
        "seconds": args.seconds,
        "phases": phases,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="phases per mode and hint")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of a phase")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument(
        "--hints",
        default="detail,none",
        help="the camera track's contentHint, per series (none: no hint)",
    )
    parser.add_argument("--json", default=str(RESULTS / "ingest.json"))
    parser.add_argument("--md", default=str(RESULTS / "ingest.md"))
    args = parser.parse_args(argv)
    args.command = " ".join(["python -m bench.ingest", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("aioice").setLevel(logging.WARNING)
    run_dir = OUT / f"ingest-{datetime.now():%Y%m%d-%H%M%S}"
    run_dir.mkdir(parents=True, exist_ok=True)
    clip = OUT / f"ingest_camera_{WIDTH}x{HEIGHT}.y4m"
    if not clip.exists():
        write_clip(clip)
    results = asyncio.run(run_all(args, clip, run_dir))
    Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    Path(args.md).write_text(render(results))
    print(render(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
