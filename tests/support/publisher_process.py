"""An aiortc WHIP publisher as its own process, for tests that kill it (``kill -9``).

    python -m tests.support.publisher_process --base URL --room ROOM [--token T] [--first N]

Publishes 320x240 frames at 30 fps numbered from N (0) and a tone, then prints one JSON
line with the session's Location, and afterwards a line ``{"sent": M}`` every 100 ms (the
number of the next frame for the encoder), until it is killed.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import aiohttp

from tests.support.media import NumberedVideoTrack, ToneTrack
from tests.support.peers import whip_publish


async def publish(base: str, room: str, token: str | None, first: int) -> None:
    video = NumberedVideoTrack(320, 240, fps=30, first=first)
    async with aiohttp.ClientSession() as http:
        publisher = await whip_publish(http, base, room, [video, ToneTrack()], token=token)
        print(json.dumps({"location": publisher.location}), flush=True)
        while True:
            await asyncio.sleep(0.1)
            print(json.dumps({"sent": first + video.count}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--room", required=True)
    parser.add_argument("--token")
    parser.add_argument("--first", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(publish(args.base, args.room, args.token, args.first))


if __name__ == "__main__":
    main()
