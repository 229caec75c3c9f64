"""blur: soften the whole picture (separable box filter, gaussian-like with several passes)."""

from __future__ import annotations

from processors.base import FrameContext, Param, VideoProcessor, YuvPlanes
from processors.filters import box_blur


class Blur(VideoProcessor):
    """Blur the picture with a separable box filter (numpy cumsum: cost independent of radius).

    Parameters:
        radius (int, 1..64, default 4): luma pixels on each side of the averaging window;
            chroma (half resolution) uses half of it.
        passes (int, 1..3, default 2): box passes; 2-3 look like a gaussian blur.
    """

    name = "blur"
    schema = (
        Param("radius", int, 4, 1, 64, doc="luma pixels on each side of the window"),
        Param("passes", int, 2, 1, 3, doc="box passes (2-3 approximate a gaussian)"),
    )

    def process_yuv(self, image: YuvPlanes, ctx: FrameContext) -> YuvPlanes:
        radius = int(ctx.params["radius"])
        passes = int(ctx.params["passes"])
        chroma_radius = radius // 2
        return YuvPlanes(
            box_blur(image.y, radius, passes),
            box_blur(image.u, chroma_radius, passes),
            box_blur(image.v, chroma_radius, passes),
        )
