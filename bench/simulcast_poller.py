"""Worker, run inside the gateway's network namespace: samples a viewer session's layer
selection (GET /api/sessions/ID) at a fixed rate, and fetches JSON for the controller
(which cannot reach the namespace's addresses).

``ip netns exec NS python -m bench.simulcast_poller --base http://192.0.2.1:8080`` then
JSON-lines commands (bench/control.py): ``get`` {path}, ``start`` {session, interval_s},
``stop`` (returns the samples: wall-clock time, target, layer, switching_to, paused,
the link estimate).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from typing import Any

import aiohttp

from .control import serve, setup_worker_logging


def sample_of(body: dict[str, Any], t: float) -> dict[str, Any]:
    """The video m-line's selection in one GET /api/sessions/ID answer."""
    video = next((v for v in body.get("receiving", {}).values() if "selection" in v), {})
    selection = video.get("selection", {})
    link = body.get("link", {})
    return {
        "t": t,
        "target": selection.get("target"),
        "layer": video.get("layer"),
        "switching": "switching_to" in video,  # waiting for the new layer's keyframe
        "switching_to": video.get("switching_to"),
        "paused": selection.get("paused"),
        "switches": selection.get("switches"),
        "estimate_bps": link.get("estimate_bps", link.get("bps")),
        "received_bps": link.get("received_bps"),
        "loss": link.get("loss"),
        "queue_ms": link.get("queue_ms"),
        "cuts": link.get("cuts"),
        "overuses": link.get("overuses"),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    args = parser.parse_args()
    setup_worker_logging("poller")
    samples: list[dict[str, Any]] = []
    errors: list[str] = []
    task: list[asyncio.Task[None]] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(5)) as http:

        async def get(message: dict[str, Any]) -> dict[str, Any]:
            async with http.get(args.base + message["path"]) as response:
                return {"status": response.status, "body": await response.json()}

        async def run(session: str, interval: float) -> None:
            url = f"{args.base}/api/sessions/{session}"
            next_at = time.monotonic()
            while True:
                t = time.time()
                try:
                    async with http.get(url) as response:
                        samples.append(sample_of(await response.json(), t))
                except Exception as exc:
                    errors.append(f"{t:.2f}: {type(exc).__name__}: {exc}"[:200])
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

        async def start(message: dict[str, Any]) -> dict[str, Any]:
            samples.clear()
            errors.clear()
            task.append(
                asyncio.ensure_future(run(message["session"], float(message["interval_s"])))
            )
            return {}

        async def stop(_: dict[str, Any]) -> dict[str, Any]:
            while task:
                running = task.pop()
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
            return {"samples": list(samples), "errors": errors[:10]}

        await serve({"get": get, "start": start, "stop": stop})


if __name__ == "__main__":
    asyncio.run(main())
