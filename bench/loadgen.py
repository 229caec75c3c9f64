"""Worker: many WHEP viewers in one process, receiving without decoding.

``python -m bench.loadgen --url http://127.0.0.1:PORT/whep/ROOM`` then JSON-lines commands
on stdin (see bench/control.py): ``add`` (optionally one URL per viewer), ``status``,
``sessions``, ``snapshot``, ``rtp``, ``record``, ``latency``, ``ttff``, ``close_all``.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import time
from typing import Any

import aiohttp

from .control import serve, setup_worker_logging
from .peers import TappedViewer, loopback_only
from .stats import percentile


def match_latencies(sent: list[list[float]], arrivals: list[tuple[int, float]]) -> list[float]:
    """Arrival minus the latest send of the same frame content (the file loops), in ms."""
    by_key: dict[int, list[float]] = {}
    for key, t in sent:
        by_key.setdefault(int(key), []).append(t)
    for times in by_key.values():
        times.sort()
    result: list[float] = []
    for key, t in arrivals:
        sends = by_key.get(key)
        if not sends:
            continue
        i = bisect.bisect_right(sends, t) - 1
        if i >= 0:
            result.append((t - sends[i]) * 1000)
    return result


class LoadGenerator:
    def __init__(self, url: str) -> None:
        self.url = url
        self.viewers: list[TappedViewer] = []
        self.viewer_urls: list[str] = []  # the URL each viewer POSTed to
        self.http: aiohttp.ClientSession | None = None

    async def add(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self.http is not None
        count = int(message["count"])
        # Optional: one WHEP URL per new viewer (e.g. ?layer=RID), else --url for all.
        urls = list(message.get("urls") or [self.url] * count)
        semaphore = asyncio.Semaphore(int(message.get("concurrency", 4)))
        failures: list[str] = []

        async def one(url: str) -> None:
            async with semaphore:
                viewer = TappedViewer()
                self.viewers.append(viewer)
                self.viewer_urls.append(url)
                try:
                    await viewer.whep(self.http, url)  # type: ignore[arg-type]
                except Exception as exc:
                    failures.append(str(exc)[:200])

        await asyncio.gather(*(one(url) for url in urls[:count]))
        return {"viewers": len(self.viewers), "failures": failures}

    async def status(self, _: dict[str, Any]) -> dict[str, Any]:
        c = [v.counters for v in self.viewers]
        states: dict[str, int] = {}
        for v in self.viewers:
            state = str(v.pc.connectionState)
            states[state] = states.get(state, 0) + 1
        return {
            "viewers": len(c),
            "states": states,
            "connected": sum(x.connected_at is not None for x in c),
            "receiving": sum(x.first_keyframe_at is not None for x in c),
            "failed": sum(x.failed is not None for x in c),
            "errors": sorted({x.failed for x in c if x.failed})[:5],
        }

    async def sessions(self, _: dict[str, Any]) -> dict[str, Any]:
        """Each viewer's WHEP Location (its session id is the last part), in join order."""
        return {
            "locations": [v.location for v in self.viewers],
            "urls": self.viewer_urls[: len(self.viewers)],
        }

    async def snapshot(self, _: dict[str, Any]) -> dict[str, Any]:
        return {"t": time.monotonic(), "viewers": [v.counters.snapshot() for v in self.viewers]}

    async def rtp(self, _: dict[str, Any]) -> dict[str, Any]:
        stats = [await v.rtp_stats() for v in self.viewers]
        skipped = sum(a.frames_skipped for v in self.viewers for a in v.assemblers if a.is_video)
        return {"viewers": stats, "assembler_frames_skipped": skipped}

    async def record(self, message: dict[str, Any]) -> dict[str, Any]:
        for viewer in self.viewers:
            viewer.counters.recording = bool(message.get("on"))
            if message.get("clear"):
                viewer.counters.arrivals.clear()
        return {}

    async def latency(self, message: dict[str, Any]) -> dict[str, Any]:
        all_ms: list[float] = []
        per_viewer_p50: list[float] = []
        for viewer in self.viewers:
            ms = match_latencies(message["sent"], viewer.counters.arrivals)
            if ms:
                all_ms.extend(ms)
                per_viewer_p50.append(percentile(ms, 50) or 0.0)
        return {
            "samples": len(all_ms),
            "latencies_ms": [round(x, 3) for x in all_ms],
            "viewer_p50s_ms": [round(x, 3) for x in per_viewer_p50],
            "p50_ms": percentile(all_ms, 50),
            "p95_ms": percentile(all_ms, 95),
            "p99_ms": percentile(all_ms, 99),
            "max_ms": max(all_ms) if all_ms else None,
            "worst_viewer_p50_ms": max(per_viewer_p50) if per_viewer_p50 else None,
        }

    async def ttff(self, _: dict[str, Any]) -> dict[str, Any]:
        rows = []
        for v in self.viewers:
            c = v.counters
            rows.append(
                {
                    "created": c.created_at,
                    "ice_connected": c.ice_connected_at,
                    "connected": c.connected_at,
                    "first_keyframe": c.first_keyframe_at,
                }
            )
        return {"viewers": rows}

    async def close_all(self, _: dict[str, Any]) -> dict[str, Any]:
        viewers, self.viewers = self.viewers, []
        self.viewer_urls = []
        assert self.http is not None
        for viewer in viewers:
            if viewer.location.startswith("/"):
                base = self.url.split("/whep/")[0]
                try:
                    async with self.http.delete(
                        base + viewer.location, timeout=aiohttp.ClientTimeout(5)
                    ):
                        pass
                except Exception:
                    pass
        await asyncio.gather(*(v.close() for v in viewers))
        return {"closed": len(viewers)}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True, help="the WHEP endpoint")
    args = parser.parse_args()
    setup_worker_logging("loadgen")
    loopback_only()
    generator = LoadGenerator(args.url)
    async with aiohttp.ClientSession() as http:
        generator.http = http
        try:
            await serve(
                {
                    "add": generator.add,
                    "status": generator.status,
                    "snapshot": generator.snapshot,
                    "sessions": generator.sessions,
                    "rtp": generator.rtp,
                    "record": generator.record,
                    "latency": generator.latency,
                    "ttff": generator.ttff,
                    "close_all": generator.close_all,
                }
            )
        finally:
            await asyncio.gather(*(v.close() for v in generator.viewers))


if __name__ == "__main__":
    asyncio.run(main())
