"""Misbehaving processors for tests, loaded by import path like a third-party one."""

from __future__ import annotations

import time

from processors.base import FrameContext, Param, VideoProcessor, YuvPlanes


class Exploding(VideoProcessor):
    """Raises on every frame."""

    name = "exploding"

    def process_yuv(self, image: YuvPlanes, ctx: FrameContext) -> YuvPlanes:
        raise RuntimeError(f"boom at frame {ctx.frame_index}")


class Sluggish(VideoProcessor):
    """Takes ``delay_ms`` per frame (slower than real time), then passes the frame on."""

    name = "sluggish"
    schema = (Param("delay_ms", int, 150, 0, 2000, doc="time spent per frame"),)

    def process_yuv(self, image: YuvPlanes, ctx: FrameContext) -> YuvPlanes:
        time.sleep(int(ctx.params["delay_ms"]) / 1000)
        return image
