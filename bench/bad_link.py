"""Benchmark: a good viewer's frame rate with and without viewers behind a slow link (root).

Network namespaces (tests/support/netns.py): the gateway, the publisher (aiortc, 640x480
30 fps VP8 with a band of noise: ~1.7 Mbps) and one good viewer share a namespace (no
limit); ``--slow`` viewers sit in another, behind a veth whose gateway end has a
``tc tbf`` rate limit (``--rate``, default 300 kbit). Each run is one room for
``--seconds``; the baseline (0 slow viewers) is measured in the same invocation,
interleaved with the others, ``--repeats`` times. All receivers are aiortc processes that
decode (tests/support/netns_peer.py), so a figure is what aiortc's receiver shows.

    .venv/bin/python -m bench.bad_link            # ~3 min: writes bench/results/bad_link.{md,json}
    .venv/bin/python -m bench.bad_link --slow 0,1 --repeats 1 --seconds 8   # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import itertools
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from tests.support.gateway_process import start_gateway_process
from tests.support.nat_world import PeerProcess
from tests.support.netns import Namespace, network
from tests.support.tokens import KEY, SECRET, token

GATEWAY_IP, SLOW_IP = "192.0.2.1", "192.0.2.2"
BASE = f"http://{GATEWAY_IP}:8080"
FREEZE_S = 0.2
RESULTS = Path(__file__).parent / "results"


def frame_rate(arrival: list[float]) -> tuple[float, int]:
    """Frames per second between the first and last frame, and gaps over FREEZE_S."""
    if len(arrival) < 2:
        return 0.0, 0
    span = arrival[-1] - arrival[0]
    gaps = sum(1 for a, b in itertools.pairwise(arrival) if b - a > FREEZE_S)
    return (len(arrival) - 1) / span, gaps


async def one_run(
    sfu: Namespace, slow_ns: Namespace, room: str, slow: int, seconds: float
) -> dict[str, Any]:
    access = token("bench", room=room, canPublish=True, canSubscribe=True)
    operator = token("operator", admin=True)
    source = await PeerProcess.start(
        sfu, "--base", BASE, "--room", room, "--token", access, "--publish", "--watch",
        "--busy", "--width", "640", "--height", "480", "--seconds", str(seconds),
    )  # fmt: skip
    slow_peers: list[PeerProcess] = []
    try:
        await source.until("published")
        await source.until("watching")
        watch = ["--base", BASE, "--room", room, "--token", access, "--watch"]
        for _ in range(slow):
            peer = await PeerProcess.start(
                slow_ns, *watch, "--seconds", str(seconds - 3), "--timeout", str(seconds)
            )
            slow_peers.append(peer)
        for peer in slow_peers:
            await peer.until("watching")
        # The counters while everyone is still connected (the room ends with its publisher).
        await asyncio.sleep(seconds / 2)
        stats = await sfu.fetch_json(f"{BASE}/api/stats", operator)
        slow_results = [await peer.until("result", timeout=seconds + 60) for peer in slow_peers]
        result = await source.until("result", timeout=seconds + 60)
    finally:
        for peer in (source, *slow_peers):
            await peer.close()
    tracks = [
        t for r in stats["rooms"] if r["room"] == room for t in r["tracks"] if t["kind"] == "video"
    ]
    if len(tracks) != 1:
        raise RuntimeError(f"no video track of {room} in {stats['rooms']}; source: {result}")
    track = tracks[0]
    fps, freezes = frame_rate(result["arrival"])
    sent_since_first = result["frames_sent"] - result["numbers"][0] if result["numbers"] else 0
    slow_fps = [frame_rate(r["arrival"])[0] for r in slow_results]
    return {
        "slow_viewers": slow,
        "bitrate_in_kbps": track["bitrate_in_bps"] / 1000,
        "good_fps": fps,
        "good_freezes": freezes,
        "good_delivered": len(result["numbers"]) / max(sent_since_first, 1),
        "slow_fps": statistics.mean(slow_fps) if slow_fps else None,
        "slow_frames": [len(r["numbers"]) for r in slow_results],
        "drops": track["drops"],
        "skipped_until_keyframe": track["skipped_until_keyframe"],
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slow", default="0,1,3", help="slow viewers per run, comma-separated")
    parser.add_argument("--rate", default="300kbit")
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path, default=RESULTS / "bad_link.json")
    parser.add_argument("--md", type=Path, default=RESULTS / "bad_link.md")
    args = parser.parse_args()
    counts = [int(x) for x in args.slow.split(",")]
    runs: list[dict[str, Any]] = []
    config = (
        f"ice:\n  addresses: [{GATEWAY_IP}]\nauth:\n  enabled: true\n"
        f'  keys: [{{key: {KEY}, secret: "{SECRET}"}}]\nlog:\n  level: warning\n'
    )
    with network("gwB1b") as net, tempfile.TemporaryDirectory() as directory:
        sfu, slow_ns = net.namespace("sfu"), net.namespace("slow")
        sfu_if, _ = net.link(sfu, f"{GATEWAY_IP}/24", slow_ns, f"{SLOW_IP}/24", "bs")
        gateway = await start_gateway_process(
            config, Path(directory), host=GATEWAY_IP, port=8080, wrapper=sfu.command()
        )
        try:
            for repeat in range(args.repeats):
                for slow in counts:
                    # A fresh token bucket: the last run's queue (seconds of it) is dropped.
                    sfu.remove_rate_limit(sfu_if)
                    sfu.rate_limit(sfu_if, args.rate)
                    run = await one_run(sfu, slow_ns, f"bench-{repeat}-{slow}", slow, args.seconds)
                    print(json.dumps(run), flush=True)
                    runs.append(run)
        finally:
            await gateway.close()
    write_report(args, counts, runs)


def write_report(args: argparse.Namespace, counts: list[int], runs: list[dict[str, Any]]) -> None:
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"rate": args.rate, "runs": runs}, indent=1) + "\n")
    when = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    lines = [
        "# A good viewer beside viewers on a slow link (bench/bad_link.py)",
        "",
        f"`.venv/bin/python -m bench.bad_link` on {when}, {os.cpu_count()} CPUs; medians of "
        f"{args.repeats} runs of {args.seconds:.0f} s per row, rows interleaved. Slow viewers "
        f"are behind `tc tbf rate {args.rate}` (gateway to viewer); the stream is aiortc VP8 "
        "640x480 30 fps. Receivers are aiortc (decoding). The row with 0 slow viewers is the "
        "baseline of the same run.",
        "",
        "| slow viewers | stream kbps | good viewer fps | good viewer freezes > 200 ms "
        "| good viewer frames delivered | slow viewer fps | track backlog drops "
        "| frames skipped until keyframe |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for slow in counts:
        rows = [r for r in runs if r["slow_viewers"] == slow]

        def median(key: str, rows: list[dict[str, Any]] = rows) -> float:
            values = [r[key] for r in rows if r[key] is not None]
            return statistics.median(values) if values else float("nan")

        slow_fps = "-" if slow == 0 else f"{median('slow_fps'):.1f}"
        lines.append(
            f"| {slow} | {median('bitrate_in_kbps'):.0f} | {median('good_fps'):.1f} "
            f"| {median('good_freezes'):.0f} | {100 * median('good_delivered'):.1f}% "
            f"| {slow_fps} | {median('drops'):.0f} | {median('skipped_until_keyframe'):.0f} |"
        )
    args.md.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
