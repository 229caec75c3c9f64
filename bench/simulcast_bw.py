"""Part 2 of bench/simulcast.py: a Chromium viewer behind a tc tbf rate limit, the limit
dropped below the simulcast top layer's wire rate and lifted again.

The world is tests/e2e/test_viewer_bandwidth.py's, with its helpers imported (root needed):

    <prefix>-sfu: the gateway 192.0.2.1 and a Chromium publishing simulcast h (1/2, capped
        150 kbps) and f (640x480, capped 700 kbps) with audio over WHIP (that test's PUBLISH
        script and layer caps), its fake camera the test's busy clip (noise band)
        |  veth; tbf on the gateway's end (gateway -> viewer), set and removed per repeat
    <prefix>-slow: a Chromium with the viewer (watch.html, WebSocket signaling) 192.0.2.2

A poller (bench/simulcast_poller.py) inside the gateway's namespace samples the viewer's
GET /api/sessions/ID at 10 Hz (the selection's target, the layer, a switch in progress);
the viewer page records the time of every presented frame (requestVideoFrameCallback, on
the wall clock), from which freezes are read. Per repeat: the limit set (time t0), held
``hold_s``, lifted; reported: t0 -> the target first leaves the top layer, -> the switch
done (layer h, no switch pending), the longest gap between presented frames and the sum
of gaps over 200 ms while limited, lift -> back on the top layer. Baseline, same run:
``media.adapt_layers: false`` (the viewer stays on the top layer), same limit and window.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.e2e.conftest import launch
from tests.e2e.pages import open_page, open_watcher, wait_js, watch_stats
from tests.e2e.test_viewer_bandwidth import (
    BASE,
    GATEWAY_IP,
    LAYER_CAPS,
    PUBLISH,
    ROOM,
    SECURE,
    SLOW_IP,
    TOP,
    chromium_in,
    write_busy_camera,
)
from tests.support.gateway_process import start_gateway_process
from tests.support.netns import network

from .control import PYTHON, Worker
from .media import OUT_DIR
from .stats import percentile

logger = logging.getLogger("bench")

FREEZE_GAP_S = 0.2
POLL_INTERVAL_S = 0.1
TBF = {"burst": "16kb", "latency": "300ms"}  # as the browser test

# Every presented frame's wall-clock time (ms), kept on window.frameTimes.
FRAME_TIMES = """() => {
  const video = document.getElementById("video");
  window.frameTimes = [];
  const tick = (now) => {
    window.frameTimes.push(performance.timeOrigin + now);
    if (window.frameTimes.length > 100000) window.frameTimes.splice(0, 50000);
    video.requestVideoFrameCallback(tick);
  };
  video.requestVideoFrameCallback(tick);
}"""


def busy_camera() -> Path:
    """The browser test's fake camera (a band of fresh noise in every frame, so that the
    layers need a few hundred kbps), written once to bench/out/."""
    path = OUT_DIR / f"camera-busy-{TOP[0]}x{TOP[1]}.y4m"
    if path.exists():
        return path
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    write_busy_camera(tmp)
    tmp.rename(path)
    return path


def gaps(times_ms: list[float], start: float, end: float) -> dict[str, Any]:
    """Presented-frame gaps within [start, end] (wall-clock seconds): the longest, the sum
    and count of those over FREEZE_GAP_S, and the frame rate. The time from ``start`` to the
    first frame after it counts as a gap too (a freeze that began before is cut at start)."""
    inside = [t / 1000 for t in times_ms if start <= t / 1000 <= end]
    points = [start, *inside, end]
    steps = [b - a for a, b in itertools.pairwise(points)]
    freezes = [s for s in steps if s > FREEZE_GAP_S]
    return {
        "longest_gap_s": round(max(steps), 3) if steps else None,
        "freeze_total_s": round(sum(freezes), 3),
        "freezes": len(freezes),
        "frames": len(inside),
        "fps": round(len(inside) / max(end - start, 1e-9), 2),
    }


def first_time(samples: list[dict[str, Any]], after: float, check: Any) -> float | None:
    """Seconds from ``after`` to the first sample at or after it that passes ``check``."""
    for sample in samples:
        if sample["t"] >= after and check(sample):
            return round(sample["t"] - after, 3)
    return None


def on_top(sample: dict[str, Any]) -> bool:
    return sample["target"] is None and sample["layer"] is None and not sample["switching"]


def summary(values: list[float | None]) -> dict[str, Any]:
    got = [v for v in values if v is not None]
    return {
        "median": round(percentile(got, 50) or 0, 3) if got else None,
        "max": round(max(got), 3) if got else None,
        "n": len(got),
        "missing": len(values) - len(got),
    }


async def _until(check: Any, what: str, within_s: float, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + within_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {within_s:.0f} s: {what}")
        await asyncio.sleep(interval)


async def run_case(
    adapt: bool, repeats: int, hold_s: float, climb_timeout_s: float, settle_s: float, log_dir: Path
) -> dict[str, Any]:
    """One gateway (``media.adapt_layers`` = ``adapt``), one publisher, one narrow viewer,
    ``repeats`` drops of the limit."""
    name = "adaptive" if adapt else "fixed"
    config = (
        f"ice:\n  addresses: [{GATEWAY_IP}]\nauth:\n  allow_anonymous: true\n"
        f"log:\n  level: warning\nmedia:\n  adapt_layers: {'true' if adapt else 'false'}\n"
    )
    result: dict[str, Any] = {"adapt_layers": adapt, "repeats": []}
    camera = busy_camera()
    workdir = Path(tempfile.mkdtemp(prefix=f"simbw-{name}-", dir=log_dir))
    with network("gwSB") as net:
        sfu, slow = net.namespace("sfu"), net.namespace("slow")
        sfu_if, _ = net.link(sfu, f"{GATEWAY_IP}/24", slow, f"{SLOW_IP}/24", "nl")
        gateway = await start_gateway_process(
            config, workdir, host=GATEWAY_IP, port=8080, wrapper=sfu.command()
        )
        result["gateway_pid"] = gateway.process.pid
        poller: Worker | None = None
        try:
            poller = await Worker.start(
                f"poller-{name}",
                sfu.command(PYTHON, "-m", "bench.simulcast_poller", "--base", BASE),
                log_dir,
            )
            await poller.wait_ready(30)

            async def get(path: str) -> Any:
                assert poller is not None
                reply = await poller.call("get", path=path)
                return reply["body"] if reply["status"] == 200 else None

            async def layer_rates() -> dict[str, dict[str, Any]]:
                room = await get(f"/api/rooms/{ROOM}")
                if not room:
                    return {}
                return {
                    str(layer["rid"]): layer
                    for t in room.get("tracks", [])
                    for layer in t.get("layers") or []
                }

            async def flowing() -> bool:
                found = await layer_rates()
                return {"f", "h"} <= {r for r, x in found.items() if x.get("bitrate_bps", 0) > 0}

            async with (
                launch(chromium_in(sfu, workdir), camera, SECURE) as near,
                launch(chromium_in(slow, workdir), camera, SECURE) as far,
            ):
                publisher = await open_page(await near.new_context(), BASE + "/", "publisher")
                await publisher.evaluate(
                    PUBLISH, {"room": ROOM, "caps": LAYER_CAPS, "width": TOP[0], "height": TOP[1]}
                )
                await _until(flowing, "both layers flowing", 30)
                viewer = await open_watcher(await far.new_context(), BASE, ROOM)
                await wait_js(viewer, f"window.watchStats.width === {TOP[0]}", timeout=30)
                session_id = (await watch_stats(viewer))["sessionId"]
                await viewer.evaluate(FRAME_TIMES)
                await asyncio.sleep(3)  # the layers' rate meters settle
                rates = {rid: layer["wire_bps"] for rid, layer in (await layer_rates()).items()}
                body = await get(f"/api/sessions/{session_id}")
                audio = body["link"]["audio_bps"] if body else 0
                limit_kbps = int(min(1.5 * (rates["h"] + audio), 0.9 * (rates["f"] + audio)) / 1000)
                result |= {"layer_wire_bps": rates, "audio_bps": audio, "limit_kbps": limit_kbps}
                logger.info(
                    "%s: layers %s, audio %s bps, limit %d kbit", name, rates, audio, limit_kbps
                )
                for index in range(repeats):
                    assert poller is not None
                    await poller.call("start", session=session_id, interval_s=POLL_INTERVAL_S)
                    await asyncio.sleep(1.0)
                    before = await watch_stats(viewer)
                    dropped = time.time()
                    sfu.rate_limit(sfu_if, f"{limit_kbps}kbit", **TBF)
                    await asyncio.sleep(hold_s)
                    limited_stats = await watch_stats(viewer)
                    lifted = time.time()
                    sfu.remove_rate_limit(sfu_if)
                    # Back on top (adaptive), or frames flowing again (fixed), then settled.
                    deadline = time.monotonic() + climb_timeout_s
                    back_at: float | None = None
                    while time.monotonic() < deadline:
                        await asyncio.sleep(0.5)
                        times: list[float] = await viewer.evaluate("window.frameTimes.slice(-20)")
                        recent = [t for t in times if t / 1000 > time.time() - 1.0]
                        if adapt:
                            samples = (await poller.call("stop"))["samples"]
                            await poller.call(
                                "start", session=session_id, interval_s=POLL_INTERVAL_S
                            )
                            result.setdefault("_samples", []).extend(samples)
                            if any(on_top(s) for s in samples if s["t"] > lifted):
                                back_at = time.time()
                                break
                        elif len(recent) >= 20:
                            back_at = time.time()
                            break
                    await asyncio.sleep(2.0)  # the after-lift window's end is in the past
                    samples = result.pop("_samples", []) + (await poller.call("stop"))["samples"]
                    after_stats = await watch_stats(viewer)
                    times_ms: list[float] = await viewer.evaluate("window.frameTimes")
                    repeat = {
                        "index": index,
                        "dropped_at": dropped,
                        "lifted_at": lifted,
                        "target_changed_s": first_time(
                            samples, dropped, lambda s: s["target"] is not None
                        ),
                        "switched_s": first_time(
                            samples,
                            dropped,
                            lambda s: s["layer"] is not None and not s["switching"],
                        ),
                        "paused_samples": sum(
                            bool(s["paused"]) for s in samples if dropped <= s["t"] <= lifted
                        ),
                        # Only a viewer that left the top layer climbs back.
                        "climb_target_s": first_time(samples, lifted, lambda s: s["target"] is None)
                        if adapt
                        else None,
                        "climb_done_s": first_time(samples, lifted, on_top) if adapt else None,
                        "limited": gaps(times_ms, dropped, lifted),
                        "after_lift": gaps(times_ms, lifted, (back_at or time.time()) + 2.0),
                        "targets_seen": sorted(
                            {str(s["target"]) for s in samples if s["t"] >= dropped}
                        ),
                        "frames_decoded": after_stats["framesDecoded"] - before["framesDecoded"],
                        "height_when_limited": limited_stats.get("height"),
                        "samples": len(samples),
                        # The link's trace from the drop to the lift: what the estimate did.
                        "trace": [
                            {**s, "t": round(s["t"] - dropped, 2)}
                            for s in samples
                            if dropped - 1 <= s["t"] <= lifted
                        ][::2],
                        "sample_interval_p50_s": percentile(
                            [b["t"] - a["t"] for a, b in itertools.pairwise(samples)],
                            50,
                        ),
                    }
                    result["repeats"].append(repeat)
                    logger.info(
                        "%s repeat %d: target %s s, switched %s s, longest gap %s s, "
                        "freeze total %s s, climb %s s",
                        name,
                        index,
                        repeat["target_changed_s"],
                        repeat["switched_s"],
                        repeat["limited"]["longest_gap_s"],
                        repeat["limited"]["freeze_total_s"],
                        repeat["climb_done_s"],
                    )
                    await asyncio.sleep(settle_s)
                final = await get(f"/api/sessions/{session_id}")
                result["final_session"] = {
                    "receiving": final.get("receiving") if final else None,
                    "link": final.get("link") if final else None,
                }
        finally:
            with contextlib.suppress(Exception):
                sfu.remove_rate_limit(sfu_if)
            if poller is not None:
                await poller.stop()
            await gateway.close()
    reps = result["repeats"]
    result["summary"] = {
        "target_changed_s": summary([r["target_changed_s"] for r in reps]),
        "switched_s": summary([r["switched_s"] for r in reps]),
        "longest_gap_s": summary([r["limited"]["longest_gap_s"] for r in reps]),
        "freeze_total_s": summary([r["limited"]["freeze_total_s"] for r in reps]),
        "fps_limited": summary([r["limited"]["fps"] for r in reps]),
        "climb_target_s": summary([r["climb_target_s"] for r in reps]),
        "climb_done_s": summary([r["climb_done_s"] for r in reps]),
        "after_lift_longest_gap_s": summary([r["after_lift"]["longest_gap_s"] for r in reps]),
    }
    return result


async def run(
    repeats: int, hold_s: float, climb_timeout_s: float, settle_s: float, log_dir: Path
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "repeats": repeats,
        "hold_s": hold_s,
        "settle_s": settle_s,
        "tbf": TBF,
        "freeze_gap_s": FREEZE_GAP_S,
        "poll_interval_s": POLL_INTERVAL_S,
    }
    for adapt in (True, False):
        name = "adaptive" if adapt else "fixed"
        started = time.monotonic()
        try:
            out[name] = await run_case(adapt, repeats, hold_s, climb_timeout_s, settle_s, log_dir)
        except Exception as exc:
            logger.exception("bandwidth case %s failed", name)
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
        out[name]["duration_s"] = round(time.monotonic() - started, 1)
    return out
