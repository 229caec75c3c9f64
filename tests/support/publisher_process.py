"""An aiortc WHIP publisher as its own process, for tests that kill it (``kill -9``).

    python -m tests.support.publisher_process --base URL --room ROOM [--token T]

Publishes numbered 320x240 frames at 30 fps and a tone, then prints one JSON line with the
session's Location, and afterwards a line ``{"sent": N}`` every 100 ms (frames handed to
the encoder so far), until it is killed.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import aiohttp

from tests.support.media import NumberedVideoTrack, ToneTrack
from tests.support.peers import whip_publish


async def publish(base: str, room: str, token: str | None) -> None:
    video = NumberedVideoTrack(320, 240, fps=30)
    async with aiohttp.ClientSession() as http:
        publisher = await whip_publish(http, base, room, [video, ToneTrack()], token=token)
        print(json.dumps({"location": publisher.location}), flush=True)
        while True:
            await asyncio.sleep(0.1)
            print(json.dumps({"sent": video.count}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--room", required=True)
    parser.add_argument("--token")
    args = parser.parse_args()
    asyncio.run(publish(args.base, args.room, args.token))


if __name__ == "__main__":
    main()
