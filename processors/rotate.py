"""rotate: turn the picture by a quarter turn multiple and/or mirror it."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from processors.base import FrameContext, Param, PixelFormat, Rgb, VideoProcessor, YuvPlanes


class Rotate(VideoProcessor):
    """Rotate clockwise by 0, 90, 180 or 270 degrees, then flip.

    Parameters:
        angle (int, one of 0, 90, 180, 270, default 90): clockwise rotation; 90 and 270 swap
            width and height.
        flip (str, one of none, horizontal, vertical, default none): mirror after rotating;
            horizontal swaps left and right.

    The result is a view of the input (numpy strides, no copy); the output frame copies it.
    """

    name = "rotate"
    pixel_formats: ClassVar[tuple[PixelFormat, ...]] = (PixelFormat.YUV420P, PixelFormat.RGB24)
    schema = (
        Param("angle", int, 90, choices=(0, 90, 180, 270), doc="clockwise degrees"),
        Param(
            "flip", str, "none", choices=("none", "horizontal", "vertical"), doc="after rotating"
        ),
    )

    def process_yuv(self, image: YuvPlanes, ctx: FrameContext) -> YuvPlanes:
        y, u, v = (self._turn(plane, ctx) for plane in (image.y, image.u, image.v))
        return YuvPlanes(y, u, v)

    def process_rgb(self, image: Rgb, ctx: FrameContext) -> Rgb:
        return self._turn(image, ctx)

    @staticmethod
    def _turn(array: NDArray[np.uint8], ctx: FrameContext) -> NDArray[np.uint8]:
        # np.rot90 with positive k turns counter-clockwise: clockwise is negative k.
        out = np.rot90(array, k=-int(ctx.params["angle"]) // 90, axes=(0, 1))
        if ctx.params["flip"] == "horizontal":
            out = out[:, ::-1]
        elif ctx.params["flip"] == "vertical":
            out = out[::-1, :]
        return out
