"""Live-encoder phase: time to first frame and the latency the gateway adds.

One process holds a live VP8 encoder (synthetic 720p30, encoded once, keyframe on PLI/FIR),
its WHIP publisher to the gateway, the viewers, and a direct aiortc publisher -> viewer
pair without the gateway fed by the same encoder (same frames, same moment, same process).

``python -m bench.live --base http://127.0.0.1:PORT --out RESULT.json``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription

from .control import setup_worker_logging
from .loadgen import match_latencies
from .media import LiveEncoder, LiveVideoTrack
from .peers import (
    TappedViewer,
    loopback_only,
    new_peer,
    prefer,
    route_keyframe_requests,
    whip_publish,
)
from .stats import percentile

ROOM = "live"


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50_ms": percentile(values, 50),
        "p95_ms": percentile(values, 95),
        "min_ms": min(values) if values else None,
        "max_ms": max(values) if values else None,
    }


def _first_after(times: list[float], after: float | None) -> float | None:
    if after is None:
        return None
    return next((t for t in times if t >= after), None)


def ttff_row(viewer: TappedViewer, encoder: LiveEncoder) -> dict[str, float | None]:
    """Time to first frame, and where it went: the PLI's way up, the encoder, the way down."""
    c = viewer.counters

    def ms(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else (a - b) * 1000

    # The gateway starts the viewer's sender (and asks for a keyframe) when its own
    # DTLS is up, which can be a little before the viewer sees "connected".
    pli = _first_after(encoder.request_times, c.ice_connected_at)
    keyframe = _first_after(encoder.keyframe_times, pli)
    return {
        "from_connected_ms": ms(c.first_keyframe_at, c.connected_at),
        "from_ice_connected_ms": ms(c.first_keyframe_at, c.ice_connected_at),
        "from_request_ms": ms(c.first_keyframe_at, c.created_at),
        "connect_ms": ms(c.connected_at, c.created_at),
        "connected_to_pli_at_publisher_ms": ms(pli, c.connected_at),
        "pli_to_keyframe_encoded_ms": ms(keyframe, pli),
        "keyframe_encoded_to_viewer_ms": ms(c.first_keyframe_at, keyframe),
    }


def ttff_summary(rows: list[dict[str, float | None]]) -> dict[str, Any]:
    def values(key: str) -> list[float]:
        return [v for r in rows if (v := r[key]) is not None]

    keys = [
        "from_connected_ms",
        "from_ice_connected_ms",
        "from_request_ms",
        "connect_ms",
        "connected_to_pli_at_publisher_ms",
        "pli_to_keyframe_encoded_ms",
        "keyframe_encoded_to_viewer_ms",
    ]
    return {
        "viewers": rows,
        "missing": sum(r["from_connected_ms"] is None for r in rows),
        **{key.removesuffix("_ms"): summary(values(key)) for key in keys},
    }


async def wait_keyframe(viewers: list[TappedViewer], wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if all(v.counters.first_keyframe_at is not None or v.counters.failed for v in viewers):
            return
        await asyncio.sleep(0.005)


async def stats(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with http.get(f"{base}/api/stats") as response:
        body: dict[str, Any] = await response.json()
        return body


def video_track_stats(body: dict[str, Any]) -> dict[str, Any]:
    for room in body.get("rooms", []):
        for track in room.get("tracks", []):
            if track.get("kind") == "video":
                return dict(track)
    return {}


async def direct_pair(
    track: LiveVideoTrack, encoder: LiveEncoder
) -> tuple[RTCPeerConnection, TappedViewer]:
    """A publisher peer connected straight to a tapped viewer: no gateway in between."""
    pc = new_peer()
    transceiver = pc.addTransceiver(track, direction="sendonly")
    prefer(transceiver, "video", "VP8")
    route_keyframe_requests(transceiver.sender, encoder.request_keyframe)
    viewer = TappedViewer()
    await pc.setLocalDescription(await pc.createOffer())
    await viewer.pc.setRemoteDescription(pc.localDescription)
    await viewer.pc.setLocalDescription(await viewer.pc.createAnswer())
    await pc.setRemoteDescription(
        RTCSessionDescription(sdp=viewer.pc.localDescription.sdp, type="answer")
    )
    return pc, viewer


async def run(
    base: str, sequential: int, spacing: float, burst: int, latency_s: float
) -> dict[str, Any]:
    encoder = LiveEncoder()
    result: dict[str, Any] = {
        "sequential_viewers": sequential,
        "spacing_s": spacing,
        "burst_viewers": burst,
        "latency_window_s": latency_s,
    }
    closers: list[Any] = []
    async with aiohttp.ClientSession() as http:
        try:
            gw_track = encoder.track()
            pub_pc, _ = await whip_publish(http, base, ROOM, [gw_track])
            closers.append(pub_pc.close)
            for transceiver in pub_pc.getTransceivers():
                route_keyframe_requests(transceiver.sender, encoder.request_keyframe)
            deadline = time.monotonic() + 20
            while video_track_stats(await stats(http, base)).get("frames_received", 0) < 30:
                if time.monotonic() > deadline:
                    raise RuntimeError("the live publisher's video never reached the gateway")
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)
            before = video_track_stats(await stats(http, base))

            # 1. Viewers joining one at a time, further apart than the PLI coalescing interval.
            url = f"{base}/whep/{ROOM}"
            seq: list[TappedViewer] = []
            for _ in range(sequential):
                viewer = TappedViewer()
                seq.append(viewer)
                closers.append(viewer.close)
                started = time.monotonic()
                await viewer.whep(http, url)
                await wait_keyframe([viewer], 5.0)
                await asyncio.sleep(max(0.0, spacing - (time.monotonic() - started)))
            mid = video_track_stats(await stats(http, base))
            result["sequential"] = {
                **ttff_summary([ttff_row(v, encoder) for v in seq]),
                "gateway_keyframe_requests_upstream": mid.get("keyframe_requests_upstream", 0)
                - before.get("keyframe_requests_upstream", 0),
                "gateway_keyframe_requests_coalesced": mid.get("keyframe_requests_coalesced", 0)
                - before.get("keyframe_requests_coalesced", 0),
            }
            await asyncio.gather(*(v.close() for v in seq))
            await asyncio.sleep(1.5)

            # 2. A burst: viewers joining together.
            before = video_track_stats(await stats(http, base))
            group = [TappedViewer() for _ in range(burst)]
            closers.extend(v.close for v in group)
            await asyncio.gather(*(v.whep(http, url) for v in group))
            await wait_keyframe(group, 10.0)
            after = video_track_stats(await stats(http, base))
            result["burst"] = {
                **ttff_summary([ttff_row(v, encoder) for v in group]),
                "gateway_keyframe_requests_upstream": after.get("keyframe_requests_upstream", 0)
                - before.get("keyframe_requests_upstream", 0),
                "gateway_keyframe_requests_coalesced": after.get("keyframe_requests_coalesced", 0)
                - before.get("keyframe_requests_coalesced", 0),
            }
            await asyncio.gather(*(v.close() for v in group))
            await asyncio.sleep(1.0)

            # 3. Latency: the same encoded frames through the gateway and straight across.
            gw_viewer = TappedViewer()
            closers.append(gw_viewer.close)
            await gw_viewer.whep(http, url)
            direct_track = encoder.track()
            direct_pc, direct_viewer = await direct_pair(direct_track, encoder)
            closers.extend([direct_pc.close, direct_viewer.close])
            await wait_keyframe([gw_viewer, direct_viewer], 10.0)
            await asyncio.sleep(1.0)
            for log in (gw_track.log, direct_track.log):
                log.sent.clear()
                log.recording = True
            for v in (gw_viewer, direct_viewer):
                v.counters.arrivals.clear()
                v.counters.recording = True
            await asyncio.sleep(latency_s)
            for v in (gw_viewer, direct_viewer):
                v.counters.recording = False
            gw_track.log.recording = direct_track.log.recording = False
            gw_ms = match_latencies(
                [[k, t] for k, t in gw_track.log.sent], gw_viewer.counters.arrivals
            )
            direct_ms = match_latencies(
                [[k, t] for k, t in direct_track.log.sent], direct_viewer.counters.arrivals
            )
            gw_by_key = _latency_by_key(gw_track.log.sent, gw_viewer.counters.arrivals)
            direct_by_key = _latency_by_key(direct_track.log.sent, direct_viewer.counters.arrivals)
            added = [gw_by_key[k] - direct_by_key[k] for k in gw_by_key if k in direct_by_key]
            result["latency"] = {
                "through_gateway": summary(gw_ms),
                "direct": summary(direct_ms),
                "added_per_frame": summary(added),
                "frames_sent": len(gw_track.log.sent),
                "gateway_viewer_gap_frames": gw_viewer.counters.video_gap_frames,
                "direct_viewer_gap_frames": direct_viewer.counters.video_gap_frames,
            }
            result["encoder"] = {
                "frames": encoder.frames,
                "keyframes": encoder.keyframes,
                "keyframe_requests": encoder.keyframe_requests,
                "frames_skipped": encoder.frames_skipped,
                "encode_ms_p50": percentile(encoder.encode_ms, 50),
                "encode_ms_p95": percentile(encoder.encode_ms, 95),
            }
            result["gateway_video_track"] = video_track_stats(await stats(http, base))
        finally:
            encoder.close()
            for close in reversed(closers):
                try:
                    await asyncio.wait_for(close(), 5)
                except Exception:
                    pass
    return result


def _latency_by_key(
    sent: list[tuple[int, float]], arrivals: list[tuple[int, float]]
) -> dict[int, float]:
    """Frame key -> arrival minus send, in ms (live frames never repeat within a run)."""
    sent_at = dict(sent)
    return {key: (t - sent_at[key]) * 1000 for key, t in arrivals if key in sent_at}


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--sequential", type=int, default=20)
    parser.add_argument("--spacing", type=float, default=0.8)
    parser.add_argument("--burst", type=int, default=10)
    parser.add_argument("--latency-seconds", type=float, default=15.0)
    args = parser.parse_args()
    setup_worker_logging("live")
    loopback_only()
    result = await run(args.base, args.sequential, args.spacing, args.burst, args.latency_seconds)
    write_json(Path(args.out), result)


if __name__ == "__main__":
    asyncio.run(main())
