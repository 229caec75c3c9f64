"""An aiortc WHIP publisher as its own process, for tests that kill it (``kill -9``).

    python -m tests.support.publisher_process --base URL --room ROOM [--token T] [--first N]
        [--width W --height H] [--noise] [--bitrate BPS]

Publishes frames (320x240) at 30 fps numbered from N (0), with a band of noise if asked
(a camera's bitrate), and a tone,
at a fixed VP8 bitrate if asked (aiortc's encoder otherwise follows the receiver's REMB,
which grows slowly and with the machine's load), then prints one JSON
line with the session's Location, and afterwards a line ``{"sent": M}`` every 100 ms (the
number of the next frame for the encoder), until it is killed.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import aiohttp
from aiortc.codecs import vpx

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


def pin_vp8_bitrate(bitrate: int) -> None:
    """Every aiortc VP8 encoder of this process at ``bitrate``, whatever REMB says."""

    def pinned(_encoder: vpx.Vp8Encoder) -> int:
        return bitrate

    def ignored(_encoder: vpx.Vp8Encoder, _bitrate: int) -> None:
        pass

    vpx.Vp8Encoder.target_bitrate = property(pinned, ignored)  # type: ignore[assignment,method-assign]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--room", required=True)
    parser.add_argument("--token")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--noise", action="store_true")
    parser.add_argument("--bitrate", type=int)
    args = parser.parse_args()
    if args.bitrate:
        pin_vp8_bitrate(args.bitrate)
    size = (args.width, args.height)
    asyncio.run(publish(args.base, args.room, args.token, args.first, size, args.noise))


if __name__ == "__main__":
    main()
