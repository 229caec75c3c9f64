"""Failover: how long viewers wait when a room's publisher is lost and comes back.

    .venv/bin/python -m bench.failover            # ~1 min: writes bench/results/failover.{md,json}
    .venv/bin/python -m bench.failover --repeats 1 --viewers 2    # smoke run, ~15 s

A real gateway process (``python -m gateway``, tests/support/gateway_process.py) on
127.0.0.1, ICE host-only on loopback, ``ingest.publisher_timeout_s: 3``,
``rooms.publisher_grace_s: 30``, ``server.drain_timeout_s: 0``. Publishers are
tests/support/publisher_process.py processes (aiortc WHIP, 320x240 30 fps VP8 frames with
their number as a barcode, and a tone) that the bench kills with SIGKILL; the ``--viewers``
WHEP viewers (default 4) are aiortc peers in the bench process that decode every frame and
read its number. Each repeat (``--repeats``, default 5) uses a fresh room and measures:

1. **Publisher loss -> viewers told**: SIGKILL of the publisher process -> a WebSocket
   watcher of the room receives ``publisher-paused`` (the gateway finds the publisher
   silent after the timeout, polled every timeout/4 <= 0.5 s). Beside it, in another room,
   an in-process publisher (watched by one viewer) that ends with a WHIP DELETE ->
   ``publisher-paused``: the signaling path alone.
2. **Publisher reconnect -> viewers' first new frame**: a new publisher process (frames
   numbered from 3000) WHIP-POSTs into the paused room; time from starting its process,
   and from its WHIP answer (the line with its Location), to the first decoded frame
   >= 3000 at each viewer; the freeze each viewer saw (last old frame -> first new one);
   and how many viewers got there on the peer connection they already had (each viewer
   makes exactly one and never another; counted as resumed on it when it stayed
   "connected" throughout, kept its inbound video SSRC, and the gateway still counts the
   same viewers in the room).
3. **Baselines, same run**: what a viewer would do otherwise, a brand-new WHEP viewer
   joining after the takeover: its POST -> first decoded frame (ICE, DTLS, keyframe). And a
   room with no failover: the first publisher's process start (and its WHIP answer) -> the
   first decoded frame at viewers that join right after that answer.

Every process it starts (the gateway, the publishers) is remembered and killed by PID at
the end. Timings are on one monotonic clock, in the bench process; a shared machine
makes them noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from tests.support.gateway_process import GatewayProcess, start_gateway_process
from tests.support.killable_publisher import PublisherProcess
from tests.support.media import NumberedVideoTrack, ToneTrack, read_frame_number
from tests.support.peers import Viewer, wait_for, whep_watch, whip_publish
from tests.support.signaling import WsClient

from .broadcast import versions
from .stats import machine_info, percentile

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
RESULTS = ROOT / "bench" / "results"
SECOND = 3000  # the returning publisher's first frame number
TIMEOUT_S = 3.0
GRACE_S = 30.0
logger = logging.getLogger("bench.failover")

CONFIG = f"""\
server:
  drain_timeout_s: 0
ice:
  addresses: [127.0.0.1]
ingest:
  publisher_timeout_s: {TIMEOUT_S:g}
rooms:
  publisher_grace_s: {GRACE_S:g}
limits:
  sessions_per_ip_per_s: 100
  sessions_per_ip_burst: 200
log:
  level: warning
"""


@dataclass
class Watch:
    """One bench viewer: its only peer connection, every decoded video frame (arrival on
    the monotonic clock, number or None when unreadable) and its connection states."""

    viewer: Viewer
    frames: list[tuple[float, int | None]] = field(default_factory=list)
    states: list[tuple[float, str]] = field(default_factory=list)
    peer_connections: int = 1
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def count(self, predicate: Callable[[int], bool] = lambda n: True) -> int:
        return sum(1 for _, n in self.frames if n is not None and predicate(n))

    def first(self, predicate: Callable[[int], bool] = lambda n: True) -> float | None:
        return next((t for t, n in self.frames if n is not None and predicate(n)), None)

    def last(self, predicate: Callable[[int], bool]) -> float | None:
        return next((t for t, n in reversed(self.frames) if n is not None and predicate(n)), None)

    async def video_ssrc(self) -> int | None:
        report = await self.viewer.pc.getStats()
        for s in report.values():
            if s.type == "inbound-rtp" and s.kind == "video":
                return int(s.ssrc)
        return None

    async def close(self, http: aiohttp.ClientSession, base: str) -> None:
        for task in self.tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await self.viewer.close(http, base)


async def consume(track: MediaStreamTrack, frames: list[tuple[float, int | None]] | None) -> None:
    with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
        while True:
            frame = await track.recv()
            if frames is not None and isinstance(frame, av.VideoFrame):
                frames.append((time.monotonic(), read_frame_number(frame)))


async def watch(http: aiohttp.ClientSession, base: str, room: str) -> Watch:
    """A WHEP viewer that decodes (aiortc) and notes when each numbered frame arrives."""
    viewer = await whep_watch(http, base, room, read=False)
    watching = Watch(viewer)
    for receiver in viewer.pc.getReceivers():
        frames = watching.frames if receiver.track.kind == "video" else None
        watching.tasks.append(asyncio.ensure_future(consume(receiver.track, frames)))

    @viewer.pc.on("connectionstatechange")
    def on_state() -> None:
        watching.states.append((time.monotonic(), viewer.pc.connectionState))

    return watching


async def next_event(
    watcher: WsClient, *types: str, within_s: float
) -> tuple[dict[str, Any], float]:
    """The next message of ``types`` and when it was read (monotonic)."""
    message = await watcher.next(*types, timeout=within_s)
    return message, time.monotonic()


async def room_stats(http: aiohttp.ClientSession, base: str, room: str) -> dict[str, Any]:
    async with http.get(f"{base}/api/stats") as response:
        stats = await response.json()
    return next((r for r in stats["rooms"] if r["room"] == room), {})


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


async def measure_delete(http: aiohttp.ClientSession, base: str, room: str) -> float:
    """An in-process publisher that ends with a WHIP DELETE -> publisher-paused, in ms
    (with one viewer: a stream nobody watches is not kept)."""
    watcher = await WsClient.connect(http, base)
    publisher = None
    viewer: Viewer | None = None
    try:
        await watcher.send({"type": "watch", "room": room})
        tracks: list[MediaStreamTrack] = [NumberedVideoTrack(320, 240), ToneTrack()]
        publisher = await whip_publish(http, base, room, tracks)
        await watcher.next("publisher-joined", timeout=20)
        viewer = await whep_watch(http, base, room, read=False)
        pc = viewer.pc
        await wait_for(lambda: pc.connectionState == "connected", timeout=20)
        await asyncio.sleep(1.0)  # media flowed: only then is a stream kept
        deleted_at = time.monotonic()
        await publisher.close(http, base)
        publisher = None
        message, at = await next_event(watcher, "publisher-paused", "publisher-left", within_s=20)
        if message["type"] != "publisher-paused" or message.get("reason") != "deleted":
            raise RuntimeError(f"DELETE: expected publisher-paused (deleted), got {message}")
        return at - deleted_at
    finally:
        if publisher is not None:
            with contextlib.suppress(Exception):
                await publisher.close(http, base)
        if viewer is not None:
            with contextlib.suppress(Exception):
                await viewer.close(http, base)
        await watcher.close()


async def one_repeat(
    http: aiohttp.ClientSession,
    base: str,
    index: int,
    viewers: int,
    pause_s: float,
    processes: list[PublisherProcess],
) -> dict[str, Any]:
    room = f"failover-{index}"
    result: dict[str, Any] = {"room": room}
    watcher = await WsClient.connect(http, base)
    watches: list[Watch] = []
    try:
        await watcher.send({"type": "watch", "room": room})
        # Baseline: a room with no failover, viewers joining right after the WHIP answer.
        started = time.monotonic()
        first = await PublisherProcess.start(base, room)
        processes.append(first)
        answered = time.monotonic()
        watches += await asyncio.gather(*(watch(http, base, room) for _ in range(viewers)))
        await wait_for(lambda: all(w.count() >= 30 for w in watches), timeout=30)
        firsts = [w.first() for w in watches]
        result["first_publisher"] = {
            "from_process_start_ms": [ms(t - started) for t in firsts if t is not None],
            "from_whip_answer_ms": [ms(t - answered) for t in firsts if t is not None],
            "from_viewer_post_ms": [
                ms(t - w.viewer.started_at) for w, t in zip(watches, firsts, strict=True) if t
            ],
            "whip_answer_after_process_start_ms": ms(answered - started),
        }
        await watcher.next("publisher-joined", timeout=10)
        ssrc_before = [await w.video_ssrc() for w in watches]
        before = await room_stats(http, base, room)

        # 1. SIGKILL -> publisher-paused.
        killed_at = time.monotonic()
        await first.kill()
        paused, paused_at = await next_event(
            watcher, "publisher-paused", "publisher-left", within_s=GRACE_S
        )
        if paused["type"] != "publisher-paused":
            raise RuntimeError(f"after SIGKILL: expected publisher-paused, got {paused}")
        result["kill_to_paused_ms"] = ms(paused_at - killed_at)
        result["paused"] = paused
        during = await room_stats(http, base, room)
        await asyncio.sleep(pause_s)

        # 2. A new publisher process takes over the kept stream.
        frames_before = [len(w.frames) for w in watches]
        restarted = time.monotonic()
        second = await PublisherProcess.start(base, room, first=SECOND)
        processes.append(second)
        reanswered = time.monotonic()
        resumed, resumed_at = await next_event(
            watcher, "publisher-resumed", "publisher-left", "publisher-joined", within_s=20
        )
        result["resumed"] = resumed
        if resumed["type"] != "publisher-resumed":
            raise RuntimeError(f"after the new publisher: expected publisher-resumed: {resumed}")
        with contextlib.suppress(AssertionError):  # who did not resume is counted below
            await wait_for(lambda: all(w.count(lambda n: n >= SECOND) >= 15 for w in watches), 20)
        after = await room_stats(http, base, room)
        per_viewer: list[dict[str, Any]] = []
        for w, ssrc, count in zip(watches, ssrc_before, frames_before, strict=True):
            new = w.first(lambda n: n >= SECOND)
            # The last frame shown before the new publisher started: aiortc's jitter buffer
            # completes a frame only once the next one's packets come, so the old
            # publisher's last frame is decoded just before the new publisher's first.
            old = next((t for t, _ in reversed(w.frames) if t < restarted), None)
            bad_states = [s for t, s in w.states if t >= killed_at and s != "connected"]
            ssrc_after = await w.video_ssrc()
            # Frames of the old publisher after the new one's: out of order in the stream.
            late_old = sum(
                1 for t, n in w.frames[count:] if n is not None and n < SECOND and new and t > new
            )
            per_viewer.append(
                {
                    "resumed": new is not None,
                    "from_process_start_ms": ms(new - restarted) if new else None,
                    "from_whip_answer_ms": ms(new - reanswered) if new else None,
                    "from_resumed_message_ms": ms(new - resumed_at) if new else None,
                    "freeze_ms": ms(new - old) if new and old else None,
                    "old_frames_after_kill": sum(
                        1 for t, n in w.frames if t > killed_at and n is not None and n < SECOND
                    ),
                    "old_frames_after_new": late_old,
                    "old_frames_after_restart": sum(
                        1 for t, n in w.frames if t > restarted and n is not None and n < SECOND
                    ),
                    "unreadable_frames": sum(1 for _, n in w.frames if n is None),
                    "peer_connections": w.peer_connections,
                    "connection_state": w.viewer.pc.connectionState,
                    "states_since_kill": bad_states,
                    "ssrc_kept": ssrc is not None and ssrc == ssrc_after,
                }
            )
        same_room = before.get("subscribers") == after.get("subscribers") == viewers
        for v in per_viewer:
            v["same_peer_connection"] = bool(
                v["resumed"]
                and v["peer_connections"] == 1
                and v["connection_state"] == "connected"
                and not v["states_since_kill"]
                and v["ssrc_kept"]
                and same_room
            )
        result["viewers"] = per_viewer
        result["whip_answer_after_process_start_ms"] = ms(reanswered - restarted)
        result["resumed_message_after_process_start_ms"] = ms(resumed_at - restarted)
        result["gateway_room"] = {
            "subscribers_before": before.get("subscribers"),
            "subscribers_paused": during.get("subscribers"),
            "subscribers_after": after.get("subscribers"),
            "paused_while_kept": during.get("paused"),
            "takeovers": after.get("takeovers"),
        }

        # 3. Baseline: a brand-new viewer of the new publisher.
        fresh = await watch(http, base, room)
        try:
            await wait_for(lambda: fresh.count() >= 1, timeout=20)
            t = fresh.first()
            result["new_viewer_post_to_first_frame_ms"] = ms(
                None if t is None else t - fresh.viewer.started_at
            )
        finally:
            await fresh.close(http, base)

        # 1b. DELETE -> publisher-paused (another room: the signaling path alone).
        result["delete_to_paused_ms"] = ms(await measure_delete(http, base, f"{room}-delete"))
    finally:
        for w in watches:
            await w.close(http, base)
        await watcher.close()
        for publisher in processes:
            await publisher.kill()
    return result


def git_info() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout

    try:
        return {
            "head": git("rev-parse", "--short", "HEAD").strip(),
            "uncommitted": len(git("status", "--porcelain").splitlines()),
        }
    except (OSError, subprocess.CalledProcessError):
        return {"head": "unknown", "uncommitted": None}


def summary(values: list[float | None]) -> dict[str, Any]:
    present = [v for v in values if v is not None]
    return {
        "p50": None if not present else round(percentile(present, 50) or 0.0, 1),
        "max": max(present, default=None),
        "n": len(present),
    }


def metrics(repeats: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ok = [r for r in repeats if "viewers" in r]
    viewers = [v for r in ok for v in r["viewers"]]

    def pooled(key: str) -> list[float | None]:
        return [x for r in repeats for x in r.get("first_publisher", {}).get(key, [])]

    rows = [
        ("SIGKILL of the publisher -> watcher gets publisher-paused", "1", "kill",
         [r.get("kill_to_paused_ms") for r in repeats]),
        ("publisher DELETE -> watcher gets publisher-paused", "1", "delete",
         [r.get("delete_to_paused_ms") for r in repeats]),
        ("new publisher process start -> its WHIP answer (Location)", "2", "answer",
         [r.get("whip_answer_after_process_start_ms") for r in ok]),
        ("new publisher process start -> watcher gets publisher-resumed", "2", "resumed",
         [r.get("resumed_message_after_process_start_ms") for r in ok]),
        ("new publisher process start -> first new frame at a kept viewer", "2", "start",
         [v["from_process_start_ms"] for v in viewers]),
        ("new publisher's WHIP answer -> first new frame at a kept viewer", "2", "post",
         [v["from_whip_answer_ms"] for v in viewers]),
        ("publisher-resumed -> first new frame at a kept viewer", "2", "after-resumed",
         [v["from_resumed_message_ms"] for v in viewers]),
        ("freeze a kept viewer saw: last frame before the restart -> first new frame", "2", "freeze",
         [v["freeze_ms"] for v in viewers]),
        ("baseline: brand-new viewer after the takeover, WHEP POST -> first frame", "3",
         "fresh", [r.get("new_viewer_post_to_first_frame_ms") for r in ok]),
        ("baseline, no failover: first publisher process start -> first frame "
         "(viewers join right after its WHIP answer)", "3", "first-start",
         pooled("from_process_start_ms")),
        ("baseline, no failover: first publisher's WHIP answer -> first frame", "3",
         "first-post", pooled("from_whip_answer_ms")),
        ("baseline, no failover: viewer's WHEP POST -> first frame", "3", "first-viewer-post",
         pooled("from_viewer_post_ms")),
    ]  # fmt: skip
    return [{"metric": m, "part": p, "key": k, **summary(values)} for m, p, k, values in rows]


def render(result: dict[str, Any]) -> str:
    git = result["git"]
    viewers = [v for r in result["repeats"] for v in r.get("viewers", [])]
    kept = sum(1 for v in viewers if v["same_peer_connection"])
    errors = [r for r in result["repeats"] if "error" in r]
    late = sum(v.get("old_frames_after_restart", 0) for v in viewers)
    after_new = sum(v.get("old_frames_after_new", 0) for v in viewers)

    def cell(value: Any) -> str:
        return "-" if value is None else f"{value:.0f}" if isinstance(value, float) else str(value)

    lines = [
        "# Failover: publisher loss and reconnect (bench/failover.py)",
        "",
        f"- Command: `{result['command']}`",
        f"- Date: {result['date']}, took {result.get('duration_s', '?')} s",
        f"- Code measured: git {git['head']}, uncommitted changes: {git['uncommitted']} "
        "(`git status --porcelain` lines)",
        f"- Machine: {result['machine']['nproc']} cores ({result['machine']['cpu_model']}), "
        f"load average at start {', '.join(f'{x:.2f}' for x in result['machine']['loadavg_at_start'])}"
        "; shared with other work (noisy).",
        f"- Gateway process on 127.0.0.1, ICE host-only, `ingest.publisher_timeout_s: "
        f"{result['publisher_timeout_s']:g}`, `rooms.publisher_grace_s: {result['grace_s']:g}`; "
        f"{result['viewers']} aiortc WHEP viewers (decoding) in the bench process; "
        f"{result['repeats_asked']} repeats, one fresh room each; the new publisher starts "
        f"{result['pause_s']:g} s after publisher-paused. Publishers: "
        "tests/support/publisher_process.py (aiortc, 320x240 30 fps VP8 + Opus), killed with SIGKILL.",
        "",
        "| part | metric | p50 ms | max ms | n |",
        "|---|---|---:|---:|---:|",
    ]
    for row in result["metrics"]:
        lines.append(
            f"| {row['part']} | {row['metric']} | {cell(row['p50'])} | {cell(row['max'])} "
            f"| {row['n']} |"
        )
    lines += [
        f"| 2 | kept viewers that resumed on the peer connection they had (no new one) "
        f"| {kept} of {len(viewers)} | | {len(viewers)} |",
        "",
        'Kept viewers: the ones connected before the publisher was killed; "first new frame" '
        f"is the first decoded frame numbered >= {SECOND} (the new publisher's). A viewer "
        "counts as resumed on its peer connection when it decoded the new frames on the one "
        'peer connection it ever made, which stayed "connected" throughout, with the same '
        "inbound video SSRC, while the gateway counted the same viewers in the room. The WHIP "
        "answer is when the publisher process prints its Location (after it applied the "
        "answer); the gateway sends publisher-resumed when it answers that POST, before "
        "media flows. Times are on the bench process's monotonic clock. The freeze ends at "
        "the first new frame and starts at the last frame decoded before the new publisher "
        "started, so it is the detection (timeout + poll), the bench's wait "
        f"(`--pause` {result['pause_s']:g} s) and the new publisher's start together; "
        "aiortc's receiver completes a frame only when the next frame's packets "
        "arrive, so the old publisher's last frame is decoded just before the new "
        f"publisher's first ({late} such frame(s) over {len(viewers)} viewer-failovers), "
        f"and no old frame came after a new one ({after_new} did). Processes left running "
        f"at the end: {result.get('processes_left', '?')}.",
        "",
    ]
    if errors:
        lines += ["Repeats that failed:", ""]
        lines += [f"- {r['room']}: `{r['error']}`" for r in errors]
        lines.append("")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    header = {
        "command": " ".join(
            [".venv/bin/python -m bench.failover", *map(shlex.quote, sys.argv[1:])]
        ),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_info(),
        "machine": machine_info(),
        "versions": versions(),
        "publisher_timeout_s": TIMEOUT_S,
        "grace_s": GRACE_S,
        "viewers": args.viewers,
        "repeats_asked": args.repeats,
        "pause_s": args.pause,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    repeats: list[dict[str, Any]] = []
    processes: list[PublisherProcess] = []
    gateway: GatewayProcess | None = None
    with tempfile.TemporaryDirectory(prefix="failover-", dir=OUT) as directory:
        try:
            gateway = await start_gateway_process(CONFIG, Path(directory))
            async with aiohttp.ClientSession() as http:
                for index in range(args.repeats):
                    try:
                        row = await one_repeat(
                            http, gateway.base, index, args.viewers, args.pause, processes
                        )
                    except Exception as error:  # reported; the other repeats go on
                        logger.exception("repeat %d failed", index)
                        row = {"room": f"failover-{index}", "error": repr(error)}
                    logger.info("%s", json.dumps(row))
                    repeats.append(row)
        finally:
            for publisher in processes:
                await publisher.kill()
            if gateway is not None:
                await gateway.close()
                header["gateway_log_tail"] = gateway.log_text()[-2000:]
    pids = [p.process.pid for p in processes] + ([gateway.process.pid] if gateway else [])
    header["processes_left"] = [pid for pid in pids if alive(pid)]
    return {**header, "repeats": repeats, "metrics": metrics(repeats)}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--viewers", type=int, default=4, help="WHEP viewers per room")
    parser.add_argument("--repeats", type=int, default=5, help="rooms, one failover each")
    parser.add_argument(
        "--pause", type=float, default=1.0, help="seconds between publisher-paused and the restart"
    )
    parser.add_argument("--json", type=Path, default=RESULTS / "failover.json")
    parser.add_argument("--md", type=Path, default=RESULTS / "failover.md")
    parser.add_argument("--render", type=Path, help="redo the Markdown from this JSON only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.render:
        result = json.loads(args.render.read_text())
    else:
        started = time.monotonic()
        result = asyncio.run(run(args))
        result["duration_s"] = round(time.monotonic() - started)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    args.md.parent.mkdir(parents=True, exist_ok=True)
    args.md.write_text(render(result))
    print(render(result))


if __name__ == "__main__":
    main()
