"""blur: soften the whole picture (a gaussian blur: FFmpeg's gblur through a PyAV filter graph)."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import av
import av.filter
import numpy as np

from processors.base import FrameContext, Param, Plane, VideoProcessor, YuvPlanes
from processors.filters import box_blur

YUV420P = "yuv420p"

# Why FFmpeg's gblur (1280x720, one thread, ms per frame at radius 4 / 16 / 32, 2 passes):
# - the numpy cumsum box blur this replaces: 26 / 27 / 29, far over the ~6 ms that a
#   [blur, timestamp] pipeline may take beside a VP8 encoder on 2 cores at 30 fps;
# - numpy at reduced resolution (block-mean downscale, box blur, libswscale bilinear upscale):
#   15-24 / 4-7 / 4-6, since at radius 4 the half-size chroma cannot shrink further, and it
#   aliases (a moving edge shimmers on the fixed downscale grid);
# - FFmpeg avgblur once per pass: ~1 per pass with the very same box passes, but each instance
#   holds a 32 MB lookup table (34 MB resident, 13 ms to build), truncates (the picture loses
#   half a level per pass) and caps its radius at a quarter of the frame's smaller side;
# - FFmpeg gblur, a recursive gaussian whose cost does not depend on the radius: 1.9 / 1.9 /
#   2.1, including filling the frame and its edge margin (below); ~8 MB (two float planes),
#   a graph built in 0.1 ms. Chosen.
# gblur runs passes+1 steps: with fewer than 3 its kernel is peaky (a sharp core in a wide
# halo) rather than gaussian; each step costs ~0.4 ms at 720p.
GBLUR_AVAILABLE = "gblur" in av.filter.filters_available
"""False only with an FFmpeg built without gblur: blur then falls back to numpy (~27 ms at 720p)."""
GBLUR_MIN_WIDTH, GBLUR_MIN_HEIGHT = 64, 32
"""Smaller frames take the numpy box blur (well under a millisecond at that size). FFmpeg 8's
gblur SIMD code mishandles narrow planes: wrong output for planes at most as wide as its block
of rows (4 SSE, 8 AVX2, 16 AVX-512) or 1 row high, heap corruption for 1-pixel-wide frames.
Above this size (chroma 32x16) it matches gblur's plain C code at every SIMD level."""


def blur_sigma(radius: int, passes: int) -> float:
    """The gaussian sigma (pixels) as wide as ``passes`` box filters of width 2*radius+1.

    One box of width n has variance (n*n - 1) / 12, i.e. radius*(radius+1)/3, and variances add.
    """
    return math.sqrt(passes * radius * (radius + 1) / 3)


def _plane_array(plane: Any) -> Plane:
    """A zero-copy view of one plane of an av.VideoFrame, without its line padding."""
    array = np.frombuffer(memoryview(plane), dtype=np.uint8)
    view: Plane = array.reshape(plane.height, plane.line_size)[:, : plane.width]
    return view


def _fill_replicated(target: Plane, source: Plane, margin: int) -> None:
    """Copy ``source`` into the middle of ``target``, its edge pixels repeated over ``margin``."""
    height, width = source.shape
    target[margin : margin + height, margin : margin + width] = source
    target[:margin, margin : margin + width] = source[:1]
    target[margin + height :, margin : margin + width] = source[-1:]
    target[:, :margin] = target[:, margin : margin + 1]
    target[:, margin + width :] = target[:, margin + width - 1 : margin + width]


class GaussianBlurGraph:
    """A configured filter graph for one frame size and parameter set: yuv420p in and out.

    Luma gets sigma ``blur_sigma(radius, passes)``, chroma (half resolution) half of it, so the
    blur has the same extent in full-resolution pixels on every plane. gblur's own border
    handling is only exact for flat borders (a bright object touching the edge comes out up to
    ~30 levels too dark at radius 16), so the frame is filtered with a margin of replicated
    edge pixels (sigma wide: 1.02x the pixels at radius 4, 1.3x at 64) and the middle returned.
    Not thread-safe: one frame at a time (as a pipeline stage calls it).
    """

    def __init__(self, width: int, height: int, radius: int, passes: int) -> None:
        self.key = (width, height, radius, passes)
        sigma = blur_sigma(radius, passes)
        # Even, so that the chroma margin is exactly half of it.
        self.chroma_margin = math.ceil(sigma / 2)
        self.margin = 2 * self.chroma_margin
        graph = av.filter.Graph()
        # One thread: the pipeline's worker runs beside an encoder on a small machine, and
        # FFmpeg's slice threads would add a thread pool per graph. Must precede add().
        graph.threads = 1
        source = graph.add_buffer(
            width=width + 2 * self.margin,
            height=height + 2 * self.margin,
            format=av.VideoFormat(YUV420P),
            time_base=Fraction(1, 90000),
        )
        steps = passes + 1
        luma = graph.add("gblur", f"sigma={sigma:.6f}:steps={steps}:planes=1")
        chroma = graph.add("gblur", f"sigma={sigma / 2:.6f}:steps={steps}:planes=6")
        sink = graph.add("buffersink")
        graph.link_nodes(source, luma, chroma, sink)
        graph.configure()
        self._graph = graph
        # Reused for every frame: a fresh 1.4 MB frame costs ~0.45 ms of page faults at 720p.
        self._input = av.VideoFrame(width + 2 * self.margin, height + 2 * self.margin, YUV420P)

    def run(self, image: YuvPlanes) -> YuvPlanes:
        if (image.width, image.height) != self.key[:2]:
            raise ValueError(f"this graph blurs {self.key[0]}x{self.key[1]} frames")
        margins = (self.margin, self.chroma_margin, self.chroma_margin)
        planes = (image.y, image.u, image.v)
        frame = self._input
        # A no-op unless FFmpeg still holds a reference to the previous frame (then a copy).
        frame.make_writable()
        for target, source, margin in zip(frame.planes, planes, margins, strict=True):
            _fill_replicated(_plane_array(target), source, margin)
        # Both calls release the GIL while FFmpeg works; the pull returns a new frame.
        self._graph.push(frame)
        out = self._graph.pull()
        if not isinstance(out, av.VideoFrame) or out.format.name != YUV420P:
            raise RuntimeError(f"blur filter graph returned {out!r}")
        y, u, v = (
            # Views of the filtered frame (they keep it alive): no copy back.
            _plane_array(target)[margin : margin + rows, margin : margin + columns]
            for target, margin, (rows, columns) in zip(
                out.planes, margins, (plane.shape for plane in planes), strict=True
            )
        )
        return YuvPlanes(y, u, v)


class Blur(VideoProcessor):
    """Blur the picture with a gaussian (FFmpeg's gblur, in C; cost independent of the radius).

    Parameters:
        radius (int, 1..64, default 4): the blur's extent in luma (full-resolution) pixels, as
            for the box filter it replaces: sigma = sqrt(passes * radius * (radius + 1) / 3),
            the spread of ``passes`` box filters of width 2*radius+1, so a hard edge becomes a
            ramp about 2*radius+1 pixels wide. Chroma gets the same extent.
        passes (int, 1..3, default 2): kept from the box blur: sets the spread as above, and
            gblur runs passes+1 steps (more steps: closer to a true gaussian, ~0.4 ms each at
            720p).

    Edges are replicated and results rounded: a uniform picture stays exactly uniform.

    Cost at 1280x720 on one thread: ~2 ms per frame with 2 passes at any radius (1 pass
    ~1.5 ms, 3 passes 2.3-3 ms). FFmpeg filters with the GIL released; only filling the input
    frame (numpy copies, ~0.1 ms) holds it. The output planes are views of the filtered frame.
    Frames narrower than 64 or lower than 32 pixels, or an FFmpeg without gblur, take the former
    numpy box blur (``processors.filters.box_blur``: the same spread; ~27 ms at 720p, in numpy
    calls).
    """

    name = "blur"
    schema = (
        Param("radius", int, 4, 1, 64, doc="extent in luma pixels on each side"),
        Param("passes", int, 2, 1, 3, doc="spread of that many box passes; passes+1 gblur steps"),
    )

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        # The graph for the latest frame size and parameters; a change rebuilds it (~0.1 ms).
        self._graph: GaussianBlurGraph | None = None

    def process_yuv(self, image: YuvPlanes, ctx: FrameContext) -> YuvPlanes:
        radius = int(ctx.params["radius"])
        passes = int(ctx.params["passes"])
        if not GBLUR_AVAILABLE or image.width < GBLUR_MIN_WIDTH or image.height < GBLUR_MIN_HEIGHT:
            chroma_radius = radius // 2
            return YuvPlanes(
                box_blur(image.y, radius, passes),
                box_blur(image.u, chroma_radius, passes),
                box_blur(image.v, chroma_radius, passes),
            )
        key = (image.width, image.height, radius, passes)
        graph = self._graph
        if graph is None or graph.key != key:
            graph = self._graph = GaussianBlurGraph(*key)
        try:
            return graph.run(image)
        except BaseException:
            # A frame may be left inside the graph; the next call must not pull it out.
            self._graph = None
            raise
