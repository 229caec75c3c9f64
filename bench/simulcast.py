"""The simulcast benchmark: what forwarding simulcast with per-viewer layer switching costs
beside plain forwarding, and how a viewer's layer follows a bandwidth drop.

    .venv/bin/python -m bench.simulcast            # full run, ~8-10 min (root for part 2)
    .venv/bin/python -m bench.simulcast --quick    # smoke run, ~3 min
    .venv/bin/python -m bench.simulcast --skip bandwidth --viewers 0,10,40,80

Part 1 (``cpu``), on 127.0.0.1, three cases in one run, each its own gateway process:

  plain                one pre-encoded 720p30 VP8 stream (~1.5 Mbps, the top layer's file)
                       sent over WHIP as one stream; N viewers
  simulcast-top        the same publisher sending three layers q/h/f (320x180 150 kbps,
                       640x360 500 kbps, 1280x720 1.5 Mbps) as simulcast (rid extension, one
                       SSRC each); N viewers on the default (best, f) layer, no switching
  simulcast-switching  the same simulcast publisher; viewer i asks ?layer=q/h/f (i % 3) and
                       every other viewer is switched to the next layer every
                       ``--switch-period`` s (PUT /api/sessions/ID/layer, staggered)

The publisher (bench/simulcast_publisher.py) writes RTP itself over an aiortc peer
connection (aiortc cannot send simulcast) and answers PLI/FIR with a keyframe of the
current picture (bench/simulcast_media.py). Viewers are bench/loadgen.py's non-decoding
aiortc viewers. Per N, bench/broadcast.py's ``Target.measure`` window: gateway CPU from
/proc/PID/stat, viewer fps/loss, publisher -> viewer latency; net CPU-ms per viewer-second
= (CPU(N) - CPU(0)) / N within each case, and per forwarded RTP packet.

Part 2 (``bandwidth``, root): bench/simulcast_bw.py.

Writes bench/results/simulcast.md and bench/results/simulcast.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from . import simulcast_bw
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
from .control import PYTHON, Process, Worker
from .media import FPS
from .simulcast_media import LAYERS, ensure_layers

logger = logging.getLogger("bench")

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
OUT = BENCH / "out"
ROOM = "bench"
RIDS = [spec.rid for spec in LAYERS]


@dataclass(frozen=True)
class Case:
    name: str
    mode: str  # publisher: "plain" or "simulcast"
    spread: bool  # viewers ask ?layer= q/h/f in turn
    switching: bool  # every other viewer switches layer every switch period


CASES = (
    Case("plain", "plain", False, False),
    Case("simulcast-top", "simulcast", False, False),
    Case("simulcast-switching", "simulcast", True, True),
)


@dataclass
class ViewerPlan:
    session: str
    layer: str | None
    switching: bool


def initial_layer(index: int, spread: bool) -> str | None:
    """Viewer ``index``'s ?layer= (None: the track's best layer)."""
    return RIDS[index % len(RIDS)] if spread else None


def next_layer(layer: str | None) -> str:
    """The layer a switching viewer goes to next: q -> h -> f -> q."""
    if layer not in RIDS:
        return RIDS[0]
    return RIDS[(RIDS.index(layer) + 1) % len(RIDS)]


def gateway_config() -> str:
    """bench/broadcast.py's gateway config (host-only ICE on 127.0.0.1, every viewer from
    127.0.0.1 so no per-address admission limit); simulcast settings are the defaults
    (media.max_simulcast_layers 3, media.adapt_layers true)."""
    return (
        "server:\n  drain_timeout_s: 0\nice:\n  addresses: [127.0.0.1]\n"
        "rooms:\n  max_subscribers: 2000\nlog:\n  level: warning\n"
        "limits:\n  sessions_per_ip_per_s: 1000\n  sessions_per_ip_burst: 1000\n"
    )


class SimTarget(Target):
    """A gateway, the (simulcast or plain) publisher and the load generators of one case."""

    def __init__(self, case: Case, settings: Settings, switch_period_s: float) -> None:
        super().__init__("gateway", settings, Path("unused"))
        self.case = case
        self.name = case.name
        self.switch_period_s = switch_period_s
        self.plan: list[ViewerPlan] = []
        self.switch_log: list[dict[str, Any]] = []

    def server_args(self) -> list[str]:
        config = self.settings.run_dir / f"gateway-{self.name}.yaml"
        config.write_text(gateway_config())
        return [PYTHON, "-m", "gateway", "--config", str(config), "--port", str(self.port)]

    async def start(self) -> None:
        self.http = aiohttp.ClientSession()
        self.server = await Process.start(self.name, self.server_args(), self.log_dir)
        await self._wait_healthy()
        args = ["-m", "bench.simulcast_publisher", "--base", self.base, "--room", ROOM]
        self.publisher = await Worker.start(
            f"{self.name}-publisher", [PYTHON, *args, "--mode", self.case.mode], self.log_dir
        )
        await self.publisher.wait_ready(120)
        deadline = time.monotonic() + 30
        while True:
            snap = await self.publisher.call("snapshot")
            layers = await self.room_layers()
            flowing = {rid for rid, info in layers.items() if info.get("flowing")}
            want = set(RIDS) if self.case.mode == "simulcast" else set()
            if snap["state"] == "connected" and snap["video_frames"] > 2 * FPS and want <= flowing:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: the publisher did not start: {snap} {layers}")
            await asyncio.sleep(0.3)

    async def room_layers(self) -> dict[str, dict[str, Any]]:
        assert self.http is not None
        async with self.http.get(f"{self.base}/api/rooms/{ROOM}") as response:
            if response.status != 200:
                return {}
            body = await response.json()
        return {
            str(layer["rid"]): layer
            for track in body.get("tracks", [])
            if track.get("kind") == "video"
            for layer in track.get("layers") or []
        }

    async def set_viewers(self, count: int) -> dict[str, Any]:
        """Target.set_viewers, with each new viewer's URL chosen by the case (?layer=)."""
        while len(self.loadgens) < self.settings.loadgen_procs:
            worker = await Worker.start(
                self.loadgen_name(len(self.loadgens)),
                [PYTHON, "-m", "bench.loadgen", "--url", self.url],
                self.log_dir,
            )
            await worker.wait_ready(60)
            self.loadgens.append(worker)
        started = time.monotonic()
        failures: list[str] = []
        new = list(range(self.viewers, count))
        if new:
            calls = []
            for j, worker in enumerate(self.loadgens):
                mine = [i for i in new if i % len(self.loadgens) == j]
                if not mine:
                    continue
                urls = [
                    self.url + (f"?layer={layer}" if layer else "")
                    for layer in (initial_layer(i, self.case.spread) for i in mine)
                ]
                calls.append(
                    worker.call("add", wait_s=60 + 2 * len(mine), count=len(mine), urls=urls)
                )
            for reply in await asyncio.gather(*calls):
                failures.extend(reply["failures"])
            self.viewers = count
        deadline = time.monotonic() + 30 + 0.3 * len(new)
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
        # Which session is which viewer, and which of them switch (every other one).
        self.plan = []
        index = 0
        for worker in self.loadgens:
            reply = await worker.call("sessions")
            for location, url in zip(reply["locations"], reply["urls"], strict=True):
                layer = url.split("?layer=")[1] if "?layer=" in url else None
                self.plan.append(
                    ViewerPlan(
                        location.rsplit("/", 1)[-1], layer, self.case.switching and index % 2 == 0
                    )
                )
                index += 1
        return {"join_s": round(time.monotonic() - started, 2), "failures": failures[:5], **status}

    async def viewer_layers(self) -> dict[str, int]:
        """How many viewers receive each layer now (GET /api/sessions/ID of every viewer;
        "best": the track's followed layer; "switching" while a switch waits)."""
        assert self.http is not None
        counts: dict[str, int] = {}

        async def one(plan: ViewerPlan) -> None:
            assert self.http is not None
            try:
                async with self.http.get(f"{self.base}/api/sessions/{plan.session}") as response:
                    body = await response.json()
                video = next(
                    (v for v in body.get("receiving", {}).values() if v.get("codec") == "VP8"), {}
                )
                key = "switching" if "switching_to" in video else str(video.get("layer") or "best")
            except (aiohttp.ClientError, ValueError):
                key = "unknown"
            counts[key] = counts.get(key, 0) + 1

        await asyncio.gather(*(one(p) for p in self.plan))
        return dict(sorted(counts.items()))

    async def switch_forever(self) -> None:
        """Every switching viewer to its next layer once per switch period, staggered."""
        assert self.http is not None
        switchers = [p for p in self.plan if p.switching]
        if not switchers:
            return
        gap = self.switch_period_s / len(switchers)
        while True:
            for plan in switchers:
                layer = next_layer(plan.layer)
                t0 = time.monotonic()
                try:
                    async with self.http.put(
                        f"{self.base}/api/sessions/{plan.session}/layer", json={"layer": layer}
                    ) as response:
                        ok = response.status == 200
                        if ok:
                            plan.layer = layer
                        else:
                            logger.warning("switch: %s %s", response.status, await response.text())
                except aiohttp.ClientError as exc:
                    ok = False
                    logger.warning("switch: %s", exc)
                self.switch_log.append(
                    {"t": t0, "ok": ok, "ms": round((time.monotonic() - t0) * 1000, 2)}
                )
                await asyncio.sleep(gap)


async def measure(
    target: SimTarget, n: int, join: dict[str, Any], baseline: dict[str, Any], settings: Settings
) -> dict[str, Any]:
    """One window (Target.measure via broadcast.measure_row) with the switcher running."""
    switcher = asyncio.ensure_future(target.switch_forever())
    layers0 = await target.room_layers()
    target.switch_log.clear()
    pub0 = await target.publisher.call("layers") if target.publisher else {}
    try:
        row = await measure_row(target, n, join, baseline, settings)
    finally:
        switcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await switcher
    pub1 = await target.publisher.call("layers") if target.publisher else {}
    layers1 = await target.room_layers()
    in_window = [s for s in target.switch_log if s["t"] >= time.monotonic() - row["window_s"] - 1]
    window = row["window_s"]
    packets = row["rtp_packets_received"] / window
    net = row["server_cpu_ms_per_s"] - baseline["server_cpu_ms_per_s"]
    row |= {
        "switches_requested": len(target.switch_log),
        "switches_ok": sum(s["ok"] for s in target.switch_log),
        "switches_per_s_in_window": round(len(in_window) / window, 2),
        "switch_put_ms_p50": sorted(s["ms"] for s in target.switch_log)[len(target.switch_log) // 2]
        if target.switch_log
        else None,
        "forwarded_packets_per_s": round(packets, 1),
        "net_us_per_forwarded_packet": round(net * 1000 / packets, 2) if packets else None,
        "layer_viewers": await target.viewer_layers(),
        "layer_kbps": {
            rid: round(info.get("bitrate_bps", 0) / 1000) for rid, info in layers1.items()
        },
        "layer_frames_delta": {
            rid: info.get("frames", 0) - layers0.get(rid, {}).get("frames", 0)
            for rid, info in layers1.items()
        },
        "publisher_layers_delta": {
            rid: {
                k: v - pub0.get("layers", {}).get(rid, {}).get(k, 0)
                for k, v in info.items()
                if k != "ssrc"
            }
            for rid, info in pub1.get("layers", {}).items()
        },
    }
    return row


async def run_case(case: Case, settings: Settings, switch_period_s: float) -> dict[str, Any]:
    target = SimTarget(case, settings, switch_period_s)
    result: dict[str, Any] = {"case": case.__dict__, "rows": []}
    try:
        await target.start()
        await wait_others_quiet(target, settings)
        baseline = await target.measure(settings.window_s)
        baseline["layer_kbps"] = {
            rid: round(info.get("bitrate_bps", 0) / 1000)
            for rid, info in (await target.room_layers()).items()
        }
        result["baseline"] = baseline
        logger.info("%s: N=0 gateway %.1f CPU-ms/s", case.name, baseline["server_cpu_ms_per_s"])
        for n in settings.viewers:
            if n == 0:
                continue
            join = await target.set_viewers(n)
            row = await measure(target, n, join, baseline, settings)
            if row["other_load_cores"] > OTHER_LOAD_LIMIT and settings.quiet_budget_s[0] > 0:
                logger.info("%s: N=%d measuring again (other work %.2f cores)", case.name, n,
                            row["other_load_cores"])  # fmt: skip
                await wait_others_quiet(target, settings)
                first = {k: v for k, v in row.items() if k != "udp"}
                row = await measure(target, n, join, baseline, settings)
                row["earlier_attempts"] = [first]
            result["rows"].append(row)
            logger.info(
                "%s: N=%d gateway %.0f CPU-ms/s, %.2f per viewer-s, %.2f us/packet, fps p50 %.1f "
                "min %.1f, switches/s %.2f, layers %s, other work %.2f",
                case.name, n, row["server_cpu_ms_per_s"], row["server_cpu_ms_per_viewer_s"],
                row["net_us_per_forwarded_packet"] or 0, row["viewer_fps_p50"] or 0,
                row["viewer_fps_min"] or 0, row["switches_per_s_in_window"], row["layer_viewers"],
                row["other_load_cores"],
            )  # fmt: skip
    except Exception as exc:
        logger.exception("%s failed", case.name)
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        await target.stop()
    return result


def cpu_summary(cases: dict[str, Any]) -> dict[str, Any]:
    """Per N: each case's net CPU-ms per viewer-second and µs per forwarded packet, and
    the ratios simulcast / plain."""
    out: dict[str, Any] = {}
    plain = {r["viewers"]: r for r in cases.get("plain", {}).get("rows", [])}
    for name, data in cases.items():
        for row in data.get("rows", []):
            n = row["viewers"]
            entry = out.setdefault(str(n), {})
            entry[name] = {
                "cpu_ms_per_viewer_s": round(row["server_cpu_ms_per_viewer_s"], 3),
                "us_per_packet": row["net_us_per_forwarded_packet"],
            }
            base = plain.get(n)
            if base and name != "plain" and base["server_cpu_ms_per_viewer_s"] > 0:
                entry[name]["ratio_per_viewer_s"] = round(
                    row["server_cpu_ms_per_viewer_s"] / base["server_cpu_ms_per_viewer_s"], 2
                )
                if base["net_us_per_forwarded_packet"] and row["net_us_per_forwarded_packet"]:
                    entry[name]["ratio_per_packet"] = round(
                        row["net_us_per_forwarded_packet"] / base["net_us_per_forwarded_packet"],
                        2,
                    )
    return out


def _f(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(results: dict[str, Any]) -> str:
    m, git = results["machine"], results.get("git", {})
    lines = [
        "# Simulcast benchmark",
        "",
        "Generated by `bench/simulcast.py` (bench/README.md, *Simulcast*, says what is measured).",
        "",
        f"- Command: `{results['command']}`",
        f"- Date: {results['date']}, took {results.get('duration_s', '?')} s",
        f"- Code measured: git {git.get('head')}, gateway/ sha256 {git.get('gateway_sha256')}"
        + (f", uncommitted: {', '.join(git['uncommitted'])}" if git.get("uncommitted") else ""),
        f"- Machine: {m['nproc']} cores ({m['cpu_model']}), {m['memory_gb']} GiB, kernel "
        f"{m['kernel']}, load average at start "
        f"{', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}, other work before the run "
        f"{m.get('other_load_before_cores')} cores. Shared with other work: noisy.",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()),
    ]
    udp = results.get("udp_buffers")
    if udp:
        lines.append(
            f"- UDP socket buffers raised to {udp['set_to']} for the run (applied: "
            f"{udp['applied']}), restored to {udp['original']}."
        )
    cpu = results.get("cpu")
    if cpu:
        s = cpu["settings"]
        lines += [
            "",
            "## 1. Gateway CPU per viewer: simulcast with layer switching beside plain forwarding",
            "",
            f"Windows of {s['window_s']} s after {s['settle_s']} s settling; "
            f"{s['loadgen_procs']} load-generator processes of non-decoding aiortc viewers; "
            f"switching viewers switch every {s['switch_period_s']} s. Layers (pre-encoded, "
            "keyframe every 2.5 s and on PLI): "
            + ", ".join(
                f"{x['rid']} {x['width']}x{x['height']} {x['kbps']:.0f} kbps" for x in cpu["layers"]
            )
            + "; the plain publisher sends the f file alone.",
            "",
            "| case | N | gateway CPU-ms/s | net CPU-ms per viewer-s | net µs per forwarded "
            "packet | forwarded packets/s | viewer fps p50 / min | viewer kbps p50 | latency "
            "p50 / p95 ms | layer switches/s | viewers per layer (end) | other work (cores) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
        ]
        for name, data in cpu["cases"].items():
            if data.get("error"):
                lines.append(f"| {name} | error: `{data['error']}` |||||||||||")
            base = data.get("baseline")
            if base:
                lines.append(
                    f"| {name} | 0 | {_f(base['server_cpu_ms_per_s'], 1)} | - | - | - | - | - "
                    f"| - | - | publisher {_f(base['publisher_video_kbps'], 0)} kbps "
                    f"{base.get('layer_kbps') or ''} | {_f(base['other_load_cores'])} |"
                )
            for r in data.get("rows", []):
                lines.append(
                    f"| {name} | {r['viewers']} | {_f(r['server_cpu_ms_per_s'], 1)} "
                    f"| {_f(r['server_cpu_ms_per_viewer_s'])} "
                    f"| {_f(r['net_us_per_forwarded_packet'], 1)} "
                    f"| {_f(r['forwarded_packets_per_s'], 0)} "
                    f"| {_f(r['viewer_fps_p50'], 1)} / {_f(r['viewer_fps_min'], 1)} "
                    f"| {_f(r['viewer_kbps_p50'], 0)} "
                    f"| {_f(r['latency_p50_ms'], 1)} / {_f(r['latency_p95_ms'], 1)} "
                    f"| {_f(r['switches_per_s_in_window'])} | {r.get('layer_viewers') or ''} "
                    f"| {_f(r['other_load_cores'])} |"
                )
        lines += ["", "Ratios to *plain* at the same N (net per viewer-second; per packet):", ""]
        lines += ["| N | case | CPU-ms per viewer-s | ratio | µs per packet | ratio |",
                  "|---:|---|---:|---:|---:|---:|"]  # fmt: skip
        for n, entry in cpu["summary"].items():
            for name, v in entry.items():
                lines.append(
                    f"| {n} | {name} | {_f(v['cpu_ms_per_viewer_s'])} "
                    f"| {_f(v.get('ratio_per_viewer_s'))} | {_f(v['us_per_packet'], 1)} "
                    f"| {_f(v.get('ratio_per_packet'))} |"
                )
    bw = results.get("bandwidth")
    if bw:
        lines += [
            "",
            "## 2. Bandwidth drop: time to the viewer's switch, freezes, climb back",
            "",
            f"Chromium publisher (h 320x240 capped 150 kbps, f 640x480 capped 700 kbps, audio) "
            f"and a Chromium viewer behind tc tbf ({bw['tbf']}) on the gateway's veth end; "
            f"{bw['repeats']} drops per case, each held {bw['hold_s']} s; selection sampled "
            f"every {bw['poll_interval_s']} s; freezes = gaps between presented frames "
            f"(requestVideoFrameCallback) over {bw['freeze_gap_s']} s.",
            "",
        ]
        for name in ("adaptive", "fixed"):
            data = bw.get(name, {})
            if data.get("error"):
                lines += [f"- {name}: error `{data['error']}`", ""]
                continue
            if not data:
                continue
            lines.append(
                f"**{name}** (`media.adapt_layers: {str(data['adapt_layers']).lower()}`): layer "
                f"wire rates {data.get('layer_wire_bps')} bps, audio {data.get('audio_bps')} bps, "
                f"limit {data.get('limit_kbps')} kbit."
            )
            lines += [
                "",
                "| repeat | target changed s | switch done s | longest gap while limited s "
                "| freeze total s (count) | fps while limited | video paused s | lift -> target top s "
                "| lift -> on top s | longest gap after lift s | targets seen |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
            ]
            for r in data["repeats"]:
                lim = r["limited"]
                lines.append(
                    f"| {r['index']} | {_f(r['target_changed_s'])} | {_f(r['switched_s'])} "
                    f"| {_f(lim['longest_gap_s'])} | {_f(lim['freeze_total_s'])} "
                    f"({lim['freezes']}) | {_f(lim['fps'], 1)} "
                    f"| {_f(r['paused_samples'] * bw['poll_interval_s'], 1)} "
                    f"| {_f(r['climb_target_s'])} "
                    f"| {_f(r['climb_done_s'])} | {_f(r['after_lift']['longest_gap_s'])} "
                    f"| {', '.join(r['targets_seen'])} |"
                )
            sm = dict(data["summary"])
            sm["paused_s"] = simulcast_bw.summary(
                [r["paused_samples"] * bw["poll_interval_s"] for r in data["repeats"]]
            )
            lines.append(
                "| **median / max** | "
                + " | ".join(
                    f"{_f(sm[k]['median'])} / {_f(sm[k]['max'])}"
                    for k in (
                        "target_changed_s",
                        "switched_s",
                        "longest_gap_s",
                        "freeze_total_s",
                        "fps_limited",
                        "paused_s",
                        "climb_target_s",
                        "climb_done_s",
                        "after_lift_longest_gap_s",
                    )
                )
                + " | |"
            )
            lines.append("")
    notes = results.get("notes")
    if notes:
        lines += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(lines) + "\n"


def build_settings(args: argparse.Namespace, run_dir: Path) -> Settings:
    quick = args.quick
    viewers = (
        sorted({int(x) for x in args.viewers.split(",")})
        if args.viewers
        else ([0, 5] if quick else [0, 10, 40])
    )
    return Settings(
        viewers=viewers,
        naive_viewers=[],
        window_s=args.window or (4.0 if quick else 10.0),
        settle_s=args.settle if args.settle is not None else (2.0 if quick else 3.0),
        loadgen_procs=args.loadgen_procs or (1 if quick else 2),
        profile_s=0,
        profile_at=[],
        live_sequential=0,
        live_spacing_s=0,
        live_burst=0,
        live_latency_s=0,
        phases=["gateway"],
        run_dir=run_dir,
        quiet_budget_s=[30.0 if quick else 60.0],
    )


async def main_async(args: argparse.Namespace) -> int:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = OUT / f"simulcast-{stamp}"
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    settings = build_settings(args, run_dir)
    started = time.monotonic()
    results: dict[str, Any] = {**run_header("bench.simulcast")}
    logger.info("run directory %s", run_dir)
    results["machine"]["other_load_before_cores"] = await wait_quiet(args.wait_quiet)
    layers = ensure_layers()
    udp = raise_udp_buffers()
    results["udp_buffers"] = udp
    try:
        if "cpu" not in args.skip:
            cases: dict[str, Any] = {}
            for case in CASES:
                cases[case.name] = await run_case(case, settings, args.switch_period)
            results["cpu"] = {
                "settings": {
                    "viewers": settings.viewers,
                    "window_s": settings.window_s,
                    "settle_s": settings.settle_s,
                    "loadgen_procs": settings.loadgen_procs,
                    "switch_period_s": args.switch_period,
                },
                "layers": [
                    {
                        "rid": x.spec.rid,
                        "width": x.spec.width,
                        "height": x.spec.height,
                        "kbps": round(x.kbps, 1),
                    }
                    for x in layers
                ],
                "cases": cases,
                "summary": cpu_summary(cases),
            }
        if "bandwidth" not in args.skip:
            if os.geteuid() != 0:
                results["bandwidth"] = {"error": "needs root (network namespaces, tc)"}
            else:
                repeats = args.repeats or (1 if args.quick else 3)
                hold = args.hold or (8.0 if args.quick else 10.0)
                results["bandwidth"] = await simulcast_bw.run(
                    repeats, hold, 40.0, 4.0 if args.quick else 10.0, run_dir / "logs"
                )
    finally:
        restore_udp_buffers(udp)
    results["duration_s"] = round(time.monotonic() - started, 1)
    results["notes"] = NOTES
    json_path = Path(args.json) if args.json else RESULTS / "simulcast.json"
    md_path = Path(args.md) if args.md else RESULTS / "simulcast.md"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    md_path.write_text(markdown(results))
    logger.info("wrote %s and %s (%.0f s)", md_path, json_path, results["duration_s"])
    return 0


NOTES = [
    "Part 1's publisher is an aiortc peer writing pre-encoded layers as RTP itself, not a "
    "browser: on 2 shared cores a Chromium encoding three layers would take a large, varying "
    "share of the CPU measured beside the gateway, and its layers' bitrates move by half "
    "within seconds (docs/architecture.md); the files give every case the same packets.",
    "Net CPU per viewer-second is each case's CPU(N) - CPU(0) over N, so the publisher's "
    "ingest (three layers for simulcast, one for plain) is subtracted; it includes everything "
    "a viewer costs: forwarding, the per-viewer layer selection tick, NACK/RTCP handling, the "
    "switch requests' HTTP handling, and the keyframes switches ask for (forwarded to every "
    "viewer of that layer). Per forwarded packet divides by the RTP packets the viewers received.",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--viewers", help="comma-separated N (0 is always measured)")
    parser.add_argument("--window", type=float)
    parser.add_argument("--settle", type=float)
    parser.add_argument("--loadgen-procs", type=int)
    parser.add_argument("--switch-period", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, help="bandwidth drops per case")
    parser.add_argument("--hold", type=float, help="seconds each drop is held")
    parser.add_argument("--skip", action="append", default=[], choices=["cpu", "bandwidth"])
    parser.add_argument("--wait-quiet", type=float, default=30.0)
    parser.add_argument("--json")
    parser.add_argument("--md")
    parser.add_argument("--render", help="re-render the Markdown of a results JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    if args.render:
        results = json.loads(Path(args.render).read_text())
        (Path(args.md) if args.md else RESULTS / "simulcast.md").write_text(markdown(results))
        return 0
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
