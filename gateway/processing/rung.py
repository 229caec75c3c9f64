"""One rung of a server-made ladder: the picture height a track is scaled to, and the
bitrate that picture is encoded at."""

from __future__ import annotations

from dataclasses import dataclass

import av

# The scaler for made layers: swscale's area averaging, which a large downscale needs (a
# point or bilinear filter aliases fine detail into shimmer), at about the cost of bilinear.
INTERPOLATION = "AREA"
# The rendition that makes a track's lower layers (processing/ladder.py): no processor,
# under a name no configured pipeline can have.
LADDER = "@ladder"


@dataclass(frozen=True, slots=True)
class Rung:
    height: int
    bitrate: int  # bits per second, constant

    @property
    def rid(self) -> str:
        """The name viewers, stats and the selection know it by ("360p")."""
        return f"{self.height}p"

    def size(self, width: int, height: int) -> tuple[int, int]:
        """The rung's picture for a ``width`` x ``height`` source: its height, the width
        that keeps the aspect ratio, both even (what H264 and yuv420p need)."""
        scaled = max(2, round(width * self.height / max(height, 1) / 2) * 2)
        return scaled, self.height

    def scale(self, frame: av.VideoFrame) -> av.VideoFrame:
        """``frame`` at this rung's size, as yuv420p (a frame already that small passes)."""
        width, height = self.size(frame.width, frame.height)
        if (frame.width, frame.height) == (width, height) and frame.format.name == "yuv420p":
            return frame
        # One thread: swscale's own helpers cost 0.5 ms of CPU more per 720p frame than
        # they save (bench/results/made_layers.md), on top of the rendition's worker.
        return frame.reformat(
            width=width, height=height, format="yuv420p", interpolation=INTERPOLATION, threads=1
        )
