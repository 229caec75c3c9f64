"""Worker: publishes the pre-encoded file over WHIP (no encoding), paced in real time.

``python -m bench.publisher --base http://127.0.0.1:PORT --room bench --file IN.webm``
then JSON-lines commands on stdin (see bench/control.py): ``snapshot``, ``record``,
``sends``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from .control import serve, setup_worker_logging
from .media import PacketFileTrack, read_file
from .peers import loopback_only, whip_publish


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--room", default="bench")
    parser.add_argument("--file", required=True)
    args = parser.parse_args()
    setup_worker_logging("publisher")
    loopback_only()
    streams = read_file(Path(args.file))
    clock: list[float | None] = [None]
    video = PacketFileTrack(streams["video"], clock)
    audio = PacketFileTrack(streams["audio"], clock)
    async with aiohttp.ClientSession() as http:
        pc, location = await whip_publish(http, args.base, args.room, [video, audio])

        async def snapshot(_: dict[str, Any]) -> dict[str, Any]:
            return {
                "t": time.monotonic(),
                "state": pc.connectionState,
                "video_frames": video.log.frames,
                "video_keyframes": video.log.keyframes,
                "video_bytes": video.log.bytes,
                "audio_frames": audio.log.frames,
            }

        async def record(message: dict[str, Any]) -> dict[str, Any]:
            video.log.recording = bool(message.get("on"))
            if message.get("clear"):
                video.log.sent.clear()
            return {}

        async def sends(_: dict[str, Any]) -> dict[str, Any]:
            return {"sent": video.log.sent}

        try:
            await serve({"snapshot": snapshot, "record": record, "sends": sends})
        finally:
            video.stop()
            audio.stop()
            try:
                async with http.delete(args.base + location, timeout=aiohttp.ClientTimeout(5)):
                    pass
            except Exception:
                pass
            await pc.close()


if __name__ == "__main__":
    asyncio.run(main())
