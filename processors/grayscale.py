"""grayscale: remove colour, keeping brightness."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from processors.base import FrameContext, Param, PixelFormat, Rgb, VideoProcessor, YuvPlanes


class Grayscale(VideoProcessor):
    """Remove colour (all of it, or part of it with ``strength`` < 1).

    Parameters:
        strength (float, 0..1, default 1.0): 1 is fully grey, 0 leaves the colour alone.

    In yuv420p this only touches the two quarter-size chroma planes (luma passes through
    uncopied), which is why it is nearly free.
    """

    name = "grayscale"
    pixel_formats: ClassVar[tuple[PixelFormat, ...]] = (PixelFormat.YUV420P, PixelFormat.RGB24)
    schema = (Param("strength", float, 1.0, 0.0, 1.0, doc="1 = fully grey, 0 = unchanged"),)

    def process_yuv(self, image: YuvPlanes, ctx: FrameContext) -> YuvPlanes:
        strength = float(ctx.params["strength"])
        if strength >= 1.0:
            neutral = np.full(image.u.shape, 128, np.uint8)
            return YuvPlanes(image.y, neutral, neutral)
        keep = 1.0 - strength
        u = 128.0 + (image.u.astype(np.float32) - 128.0) * keep
        v = 128.0 + (image.v.astype(np.float32) - 128.0) * keep
        return YuvPlanes(image.y, np.rint(u).astype(np.uint8), np.rint(v).astype(np.uint8))

    def process_rgb(self, image: Rgb, ctx: FrameContext) -> Rgb:
        strength = float(ctx.params["strength"])
        rgb = image.astype(np.float32)
        # BT.601 luma, the weights the yuv420p path implicitly keeps.
        luma = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
        mixed = rgb + (luma[..., None] - rgb) * strength
        return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
