"""An aiortc WHIP publisher as its own process, for tests that kill it (``kill -9``).

    python -m tests.support.publisher_process --base URL --room ROOM [--token T] [--first N]
        [--width W --height H] [--noise]

Publishes frames (320x240) at 30 fps numbered from N (0), with a band of noise if asked
(a camera's bitrate), and a tone, then prints one JSON
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


async def publish(
    base: str, room: str, token: str | None, first: int, size: tuple[int, int], noise: bool
) -> None:
    video = NumberedVideoTrack(*size, fps=30, first=first, noise=noise)
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
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--noise", action="store_true")
    args = parser.parse_args()
    size = (args.width, args.height)
    asyncio.run(publish(args.base, args.room, args.token, args.first, size, args.noise))


if __name__ == "__main__":
    main()
