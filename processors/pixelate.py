"""pixelate: hide a rectangle of the picture behind large uniform blocks (privacy)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from processors.base import (
    FrameContext,
    Param,
    ParamError,
    PixelFormat,
    Plane,
    Rgb,
    VideoProcessor,
    YuvPlanes,
)
from processors.filters import block_means


class Pixelate(VideoProcessor):
    """Pixelate a rectangle: every ``block`` x ``block`` tile inside it becomes its mean colour.

    Parameters:
        x, y (float, 0..1, default 0.25): top-left corner, as fractions of the frame width and
            height.
        width, height (float, 0..1, default 0.5): size, as fractions of the frame; the
            rectangle is clipped to the frame.
        block (int, 2..256, default 16): tile size in luma pixels.

    Fractions, not pixels, because a publisher's resolution changes mid-stream (browsers scale
    down under congestion): the same region stays covered. Tiles start at the rectangle's
    top-left corner, which is rounded to even pixels so luma and chroma tiles line up.
    """

    name = "pixelate"
    pixel_formats: ClassVar[tuple[PixelFormat, ...]] = (PixelFormat.YUV420P, PixelFormat.RGB24)
    schema = (
        Param("x", float, 0.25, 0.0, 1.0, doc="left edge, fraction of the width"),
        Param("y", float, 0.25, 0.0, 1.0, doc="top edge, fraction of the height"),
        Param("width", float, 0.5, 0.0, 1.0, doc="fraction of the frame width"),
        Param("height", float, 0.5, 0.0, 1.0, doc="fraction of the frame height"),
        Param("block", int, 16, 2, 256, doc="tile size in luma pixels"),
    )

    def check(self, params: Mapping[str, Any]) -> None:
        if params["block"] % 2:
            raise ParamError(
                "block", f"must be even (chroma tiles are half), got {params['block']}"
            )

    def process_yuv(self, image: YuvPlanes, ctx: FrameContext) -> YuvPlanes:
        x0, y0, x1, y1 = _rectangle(image.width, image.height, ctx)
        block = int(ctx.params["block"])
        if x1 <= x0 or y1 <= y0:
            return image
        half = (x0 // 2, y0 // 2, (x1 + 1) // 2, (y1 + 1) // 2)
        return YuvPlanes(
            _pixelate(image.y, (x0, y0, x1, y1), block),
            _pixelate(image.u, half, block // 2),
            _pixelate(image.v, half, block // 2),
        )

    def process_rgb(self, image: Rgb, ctx: FrameContext) -> Rgb:
        x0, y0, x1, y1 = _rectangle(image.shape[1], image.shape[0], ctx)
        if x1 <= x0 or y1 <= y0:
            return image
        return _pixelate(image, (x0, y0, x1, y1), int(ctx.params["block"]))


def _rectangle(width: int, height: int, ctx: FrameContext) -> tuple[int, int, int, int]:
    p = ctx.params
    x0 = round(p["x"] * width) // 2 * 2
    y0 = round(p["y"] * height) // 2 * 2
    x1 = min(width, round((p["x"] + p["width"]) * width))
    y1 = min(height, round((p["y"] + p["height"]) * height))
    return x0, y0, x1, y1


def _pixelate(plane: Plane, rect: tuple[int, int, int, int], block: int) -> Plane:
    x0, y0, x1, y1 = rect
    out = plane.copy()
    out[y0:y1, x0:x1] = block_means(plane[y0:y1, x0:x1], block)
    return out
