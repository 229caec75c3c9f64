"""Loss: Chromium viewers through the gateway beside a direct Chromium-to-Chromium connection,
at 0/2/5/10% random UDP loss, in one run.

    .venv/bin/python -m bench.loss                      # ~3 min: writes bench/results/loss.{md,json}
    .venv/bin/python -m bench.loss --losses 0,5 --window 8   # smoke run

Everything runs inside one lo-only network namespace (``lossbench-x``, tests/e2e/loss_world.py,
deleted at the end): the gateway (``python -m gateway``), and one headless Chromium with three
pages: a WHIP publisher of the fake camera (640x480 30 fps VP8, contentHint "motion"), a WHEP
viewer, and the baseline, the same camera sent from one peer connection to another in one page
straight over lo. An iptables ``statistic`` rule drops the given share of every UDP datagram:
the gateway's path has two lossy legs (publisher -> gateway, gateway -> viewer), the direct one
leg. For each loss rate, after a settle time, both viewers are measured over the same window:
presented frames (requestVideoFrameCallback) as fps, the longest gap, freezes (gaps > 200 ms),
and residual loss from the viewer's inbound-rtp (packetsLost after NACK/RTX over packets
expected); beside them the publishers' sent fps and the gateway's loss counters (/api/stats).
Then ``--leg-losses`` (default 10%) on one gateway leg at a time (datagrams to and from the
gateway's port of the publisher's, then the viewer's, peer connection), to see which leg costs
what.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.rooms.registry import LOSS_TOTALS
from tests.e2e.conftest import CAMERA_FPS, CAMERA_FRAMES, CAMERA_HEIGHT, CAMERA_WIDTH, write_y4m
from tests.e2e.loss_world import LossWorld, loss_world, measure, residual_loss, rtp_stats

from .broadcast import git_revision, versions
from .stats import machine_info

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
RESULTS = ROOT / "bench" / "results"
# Not "gwB2...": the test removes leftovers of its own prefix, and must not take ours.
PREFIX = "lossbench"
logger = logging.getLogger("bench.loss")

# The gateway's per-track loss counters (Publisher.stats) reported per window.
GATEWAY_COUNTERS = (*LOSS_TOTALS, "keyframe_requests_upstream", "frames_received")


def video_track(stats: dict[str, Any]) -> dict[str, Any]:
    for room in stats["rooms"]:
        for track in room["tracks"]:
            if track["kind"] == "video":
                return dict(track)
    return {}


async def sent_frames(page: Any, peer: str) -> float:
    return (await rtp_stats(page, peer, "outbound-rtp")).get("framesSent", 0.0)


async def measure_rate(world: LossWorld, pages: dict[str, Any], window_s: float) -> dict[str, Any]:
    before_gw = video_track(await world.gateway_stats(pages["viewer"]))
    sent_before = {
        "gateway": await sent_frames(pages["publisher"], "publisher"),
        "direct": await sent_frames(pages["direct"], "directSender"),
    }
    dropped_before = world.dropped()
    viewer, direct = await asyncio.gather(
        measure(pages["viewer"], "viewer", "viewer", window_s),
        measure(pages["direct"], "direct", "direct", window_s),
    )
    dropped = world.dropped() - dropped_before
    after_gw = video_track(await world.gateway_stats(pages["viewer"]))
    sent = {
        "gateway": await sent_frames(pages["publisher"], "publisher") - sent_before["gateway"],
        "direct": await sent_frames(pages["direct"], "directSender") - sent_before["direct"],
    }
    gateway = {k: after_gw.get(k, 0) - before_gw.get(k, 0) for k in GATEWAY_COUNTERS}
    return {
        "loss": world.loss_probability,
        "datagrams_dropped": dropped,
        "gateway": {
            **viewer.describe(),
            "sent_fps": round(sent["gateway"] / viewer.seconds, 1),
            "counters": gateway,
            "publisher_resolution": after_gw.get("resolution"),
        },
        "direct": {**direct.describe(), "sent_fps": round(sent["direct"] / direct.seconds, 1)},
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    OUT.mkdir(parents=True, exist_ok=True)
    camera = OUT / f"loss-camera-{CAMERA_WIDTH}x{CAMERA_HEIGHT}.y4m"
    if not camera.exists():
        write_y4m(camera, CAMERA_WIDTH, CAMERA_HEIGHT, CAMERA_FPS, CAMERA_FRAMES)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="loss-", dir=OUT) as directory:
        async with loss_world(PREFIX, Path(directory), camera) as world:
            context = await world.browser.new_context()
            pages = {"publisher": await world.publish(context, "bench")}
            pages["viewer"] = await world.watch(context, "bench")
            pages["direct"] = await world.direct(context)
            await asyncio.sleep(args.warmup)
            legs = {
                "publisher": await world.gateway_port(pages["publisher"], "publisher"),
                "viewer": await world.gateway_port(pages["viewer"], "viewer"),
            }
            runs: list[tuple[float, str, int | None]] = [(p, "both", None) for p in args.losses]
            runs += [(p, leg, legs[leg]) for p in args.leg_losses for leg in legs]
            for probability, leg, port in runs:
                world.loss(probability, port)
                await asyncio.sleep(args.settle)
                row = await measure_rate(world, pages, args.window)
                row["leg"] = leg
                logger.info("%s", json.dumps(row))
                rows.append(row)
            world.loss(0)
            await context.close()
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.loss", *sys.argv[1:]]),
        "window_s": args.window,
        "settle_s": args.settle,
        "camera": f"{CAMERA_WIDTH}x{CAMERA_HEIGHT} {CAMERA_FPS} fps y4m, VP8, contentHint motion",
        "git": git_revision(),
        "versions": versions(),
        "machine": machine_info(),
        "rows": rows,
    }


def label(row: dict[str, Any]) -> str:
    """The loss rate, and which leg it was on when not on every datagram."""
    leg = row.get("leg", "both")
    rate = f"{row['loss'] * 100:.0f}%"
    return rate if leg == "both" else f"{rate}, {leg} leg only"


def render(result: dict[str, Any]) -> str:
    lines = [
        "# Loss: Chromium viewer through the gateway vs direct Chromium-to-Chromium",
        "",
        f"Run of {result['when']}, `{result['command']}` (as root: it makes a network namespace).",
        f"Camera {result['camera']}; each row: {result['settle_s']} s settle after the loss "
        f"changes, then a {result['window_s']} s window measured on both viewers at once.",
        "The gateway's path crosses the lossy lo twice (publisher -> gateway -> viewer), the "
        "direct one once. fps presented = frames shown (requestVideoFrameCallback) per "
        "second, decoded = inbound-rtp framesDecoded per second; "
        "freezes = gaps > 200 ms; residual loss = what NACK and retransmission did not repair, "
        "from the viewer's inbound-rtp over the window: packetsLost (minus "
        "retransmittedPacketsReceived: a direct peer resends on its RTX SSRC, which "
        "packetsLost ignores; the gateway resends on the media SSRC) over packetsReceived + "
        "packetsLost; sent = the sending browser's framesSent per second. Rows \"publisher leg "
        'only" / "viewer leg only" drop datagrams to and from the gateway\'s port of that '
        "peer connection only (the direct connection then loses nothing).",
        "",
        "| loss | path | viewer fps presented | decoded | sent fps | max gap ms | freezes (ms) | "
        "residual loss | viewer NACKs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        for path in ("gateway", "direct"):
            r = row[path]
            r["residual_loss"] = round(residual_loss(r["inbound"]), 5)
            if path == "direct" and row.get("leg", "both") != "both":
                continue  # the direct connection's figures for all its traffic: see above
            lines.append(
                f"| {label(row)} | {path} | {r['fps']} | "
                f"{r.get('decoded_fps', '')} | {r['sent_fps']} | "
                f"{r['max_gap_ms']} | {r['freezes']} ({r['freeze_ms']}) | "
                f"{r['residual_loss'] * 100:.2f}% | {r['nackCount']:.0f} |"
            )
    lines += [
        "",
        "Gateway counters over each window (/api/stats, the video track): NACKed sequence "
        "numbers sent to the publisher (retries included, of which retries), RTX packets "
        "received (Chromium's padding probes ride on RTX too), frames given up on (unrepaired) and upstream gaps, viewer NACKs received "
        "and packets resent from the history, PLIs sent upstream; datagrams the iptables rule "
        "dropped (all pages together).",
        "",
        "| loss | dropped | nacks_sent | retries | rtx_received | unrepaired | gaps | "
        "nacks_received | resent | PLIs up | frames in |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        c = row["gateway"]["counters"]
        lines.append(
            f"| {label(row)} | {row['datagrams_dropped']} | {c['nacks_sent']} | "
            f"{c.get('nack_retries', '')} | "
            f"{c['retransmissions_received']} | {c['frames_unrepaired']} | "
            f"{c['upstream_gaps']} | {c['nacks_received']} | {c['retransmissions_sent']} | "
            f"{c['keyframe_requests_upstream']} | {c['frames_received']} |"
        )
    git = result["git"]
    lines += [
        "",
        f"Gateway at git {git.get('head', '?')}"
        + (f" (uncommitted: {len(git['uncommitted'])} files)" if git.get("uncommitted") else "")
        + f"; machine: {result['machine'].get('nproc')} cores.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--losses", default="0,2,5,10", help="loss percentages, comma-separated")
    parser.add_argument(
        "--leg-losses", default="10", help="loss percentages on one gateway leg at a time"
    )
    parser.add_argument("--window", type=float, default=15.0, help="seconds measured per rate")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after a change")
    parser.add_argument("--warmup", type=float, default=8.0, help="seconds before the first")
    parser.add_argument("--json", type=Path, default=RESULTS / "loss.json")
    parser.add_argument("--md", type=Path, default=RESULTS / "loss.md")
    parser.add_argument("--render", type=Path, help="redo the Markdown from this JSON only")
    args = parser.parse_args()
    args.losses = [float(x) / 100 for x in args.losses.split(",")]
    args.leg_losses = [float(x) / 100 for x in args.leg_losses.split(",") if x]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.render:
        result = json.loads(args.render.read_text())
    else:
        started = time.monotonic()
        result = asyncio.run(run(args))
        result["duration_s"] = round(time.monotonic() - started)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    args.md.write_text(render(result))
    print(render(result))


if __name__ == "__main__":
    main()
