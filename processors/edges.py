"""edges: an edge map of the picture (Sobel on the luma), in grey."""

from __future__ import annotations

import numpy as np

from processors.base import FrameContext, Param, VideoProcessor, YuvPlanes


class Edges(VideoProcessor):
    """Replace the picture by its edges: Sobel gradient magnitude of the luma, grey chroma.

    Parameters:
        threshold (int, 0..255, default 0): magnitudes below it become black.
        invert (bool, default False): dark edges on white instead of bright edges on black.
    """

    name = "edges"
    schema = (
        Param("threshold", int, 0, 0, 255, doc="magnitudes below it become black"),
        Param("invert", bool, False, doc="dark edges on white"),
    )

    def process_yuv(self, image: YuvPlanes, ctx: FrameContext) -> YuvPlanes:
        luma = np.pad(image.y.astype(np.int16), 1, mode="edge")
        # Sobel as sums of shifted slices: [1 2 1] smoothing across, [-1 0 1] difference along.
        rows = luma[:-2, :] + 2 * luma[1:-1, :] + luma[2:, :]
        gx = rows[:, 2:] - rows[:, :-2]
        cols = luma[:, :-2] + 2 * luma[:, 1:-1] + luma[:, 2:]
        gy = cols[2:, :] - cols[:-2, :]
        # |gx| + |gy| (the usual cheap L1 magnitude), scaled so a full 0->255 step reaches 255.
        magnitude = (np.abs(gx).astype(np.int32) + np.abs(gy)) // 4
        magnitude[magnitude < int(ctx.params["threshold"])] = 0
        edges = np.clip(magnitude, 0, 255).astype(np.uint8)
        if ctx.params["invert"]:
            edges = 255 - edges
        neutral = np.full(image.u.shape, 128, np.uint8)
        return YuvPlanes(edges, neutral, neutral)
