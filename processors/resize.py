"""resize: scale the picture to a given size (nearest neighbour, numpy index arrays)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from processors.base import (
    FrameContext,
    Param,
    ParamError,
    PixelFormat,
    Rgb,
    VideoProcessor,
    YuvPlanes,
    chroma_size,
)


class Resize(VideoProcessor):
    """Scale to ``width`` x ``height`` by nearest neighbour (fast; fine for previews and
    thumbnails; a smoothing pass such as ``blur`` before a large downscale avoids aliasing).

    Parameters:
        width (int, 0 or 2..7680, even, default 640): output width; 0 follows the aspect ratio.
        height (int, 0 or 2..4320, even, default 0): output height; 0 follows the aspect ratio.

    Sizes are even because H264 encoders need even yuv420p sizes; a size computed from the
    aspect ratio is rounded down to even.
    """

    name = "resize"
    pixel_formats: ClassVar[tuple[PixelFormat, ...]] = (PixelFormat.YUV420P, PixelFormat.RGB24)
    schema = (
        Param("width", int, 640, 0, 7680, doc="output width, 0 = keep aspect ratio"),
        Param("height", int, 0, 0, 4320, doc="output height, 0 = keep aspect ratio"),
    )

    def check(self, params: Mapping[str, Any]) -> None:
        for key in ("width", "height"):
            if params[key] % 2 or params[key] == 1:
                raise ParamError(key, f"must be even, got {params[key]}")
        if params["width"] == 0 and params["height"] == 0:
            raise ParamError("width", "width and height cannot both be 0")

    def process_yuv(self, image: YuvPlanes, ctx: FrameContext) -> YuvPlanes:
        width, height = _output_size(image.width, image.height, ctx)
        cw, ch = chroma_size(width, height)
        return YuvPlanes(
            _scale(image.y, width, height),
            _scale(image.u, cw, ch),
            _scale(image.v, cw, ch),
        )

    def process_rgb(self, image: Rgb, ctx: FrameContext) -> Rgb:
        width, height = _output_size(image.shape[1], image.shape[0], ctx)
        return _scale(image, width, height)


def _output_size(width: int, height: int, ctx: FrameContext) -> tuple[int, int]:
    out_w, out_h = int(ctx.params["width"]), int(ctx.params["height"])
    if out_w == 0:
        out_w = max(2, round(width * out_h / height) // 2 * 2)
    elif out_h == 0:
        out_h = max(2, round(height * out_w / width) // 2 * 2)
    return out_w, out_h


@lru_cache(maxsize=32)
def _indices(source: int, target: int) -> NDArray[np.intp]:
    # The source pixel whose centre is nearest each target pixel's centre.
    centres = (np.arange(target) + 0.5) * source / target
    return np.minimum(centres.astype(np.intp), source - 1)


def _scale(array: NDArray[np.uint8], width: int, height: int) -> NDArray[np.uint8]:
    rows = _indices(array.shape[0], height)
    cols = _indices(array.shape[1], width)
    return array[rows[:, None], cols[None, :]]
