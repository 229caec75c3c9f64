"""watermark: alpha-blend an image file (PNG with transparency) into a corner of the picture."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import av
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
)
from processors.filters import chroma_mean, yuv_from_rgb
from processors.overlay import POSITIONS

Float = NDArray[np.float32]


@dataclass(frozen=True)
class Mark:
    """A decoded watermark, pre-converted once so each frame is only a blend."""

    rgb: Float
    alpha: Float
    """0..1, luma resolution."""
    yuv: Float
    """Y, U, V (last axis) at luma resolution; U and V are only read through ``chroma``."""
    chroma: Float
    """U, V (last axis) at chroma resolution."""
    chroma_alpha: Float

    @property
    def width(self) -> int:
        return int(self.alpha.shape[1])

    @property
    def height(self) -> int:
        return int(self.alpha.shape[0])


def load_mark(path: str) -> Mark:
    """Decode the first picture of an image file (PNG, JPEG, ... anything FFmpeg reads)."""
    # PyAV decodes PNG with alpha already: no image library needed.
    with av.open(path) as container:
        frame = next(container.decode(video=0))
        rgba = frame.to_ndarray(format="rgba").astype(np.float32)
    rgb = rgba[..., :3]
    alpha = rgba[..., 3] / 255.0
    yuv = yuv_from_rgb(rgb)
    return Mark(rgb, alpha, yuv, chroma_mean(yuv[..., 1:]), chroma_mean(alpha))


class Watermark(VideoProcessor):
    """Blend an image (its alpha channel, times ``opacity``) into a corner of the picture.

    Parameters:
        path (str, required): an image file readable by FFmpeg; PNG keeps its transparency.
            Checked (decoded) when the parameter is set, so a bad path is refused up front.
        position (str, top-left/top-right/bottom-left/bottom-right, default bottom-right).
        margin (int, 0..4096, default 16): pixels from the frame edges.
        opacity (float, 0..1, default 1.0): multiplies the image's own alpha.

    The image is drawn at its own size and clipped to the frame.
    """

    name = "watermark"
    pixel_formats: ClassVar[tuple[PixelFormat, ...]] = (PixelFormat.YUV420P, PixelFormat.RGB24)
    schema = (
        Param("path", str, maximum=4096, doc="image file (PNG with alpha)"),
        Param("position", str, "bottom-right", choices=POSITIONS, doc="corner"),
        Param("margin", int, 16, 0, 4096, doc="pixels from the edges"),
        Param("opacity", float, 1.0, 0.0, 1.0, doc="multiplies the image's alpha"),
    )

    def __init__(self, **params: Any) -> None:
        # Set before the base class validates (check() fills it).
        self._marks: dict[str, Mark] = {}
        self._marks_lock = threading.Lock()
        super().__init__(**params)

    def check(self, params: Mapping[str, Any]) -> None:
        path = str(params["path"])
        try:
            mark = load_mark(path)
        except (OSError, StopIteration, av.FFmpegError) as error:
            raise ParamError("path", f"cannot read an image from {path!r}: {error}") from None
        with self._marks_lock:
            # Only the current image is worth keeping (an update replaces it).
            self._marks = {path: mark}

    def _mark(self, path: str) -> Mark:
        with self._marks_lock:
            mark = self._marks.get(path)
        if mark is None:  # an update raced this frame: load it here, once
            mark = load_mark(path)
            with self._marks_lock:
                self._marks[path] = mark
        return mark

    def process_yuv(self, image: YuvPlanes, ctx: FrameContext) -> YuvPlanes:
        mark = self._mark(str(ctx.params["path"]))
        x, y, w, h = _place(image.width, image.height, mark, ctx)
        if w <= 0 or h <= 0:
            return image
        opacity = float(ctx.params["opacity"])
        luma = image.y.copy()
        _blend(luma[y : y + h, x : x + w], mark.yuv[:h, :w, 0], mark.alpha[:h, :w] * opacity)
        cx, cy = x // 2, y // 2
        cw, ch = (w + 1) // 2, (h + 1) // 2
        u, v = image.u.copy(), image.v.copy()
        for index, plane in enumerate((u, v)):
            region = plane[cy : cy + ch, cx : cx + cw]
            rh, rw = region.shape
            _blend(region, mark.chroma[:rh, :rw, index], mark.chroma_alpha[:rh, :rw] * opacity)
        return YuvPlanes(luma, u, v)

    def process_rgb(self, image: Rgb, ctx: FrameContext) -> Rgb:
        mark = self._mark(str(ctx.params["path"]))
        x, y, w, h = _place(image.shape[1], image.shape[0], mark, ctx)
        if w <= 0 or h <= 0:
            return image
        out = image.copy()
        alpha = (mark.alpha[:h, :w] * float(ctx.params["opacity"]))[..., None]
        _blend(out[y : y + h, x : x + w], mark.rgb[:h, :w], alpha)
        return out


def _place(width: int, height: int, mark: Mark, ctx: FrameContext) -> tuple[int, int, int, int]:
    margin = int(ctx.params["margin"])
    position = str(ctx.params["position"])
    x = margin if position.endswith("left") else width - margin - mark.width
    y = margin if position.startswith("top") else height - margin - mark.height
    # Even coordinates keep the chroma blend aligned with the luma blend.
    x, y = max(0, x) // 2 * 2, max(0, y) // 2 * 2
    return x, y, min(mark.width, width - x), min(mark.height, height - y)


def _blend(target: NDArray[np.uint8], source: Float, alpha: Float) -> None:
    mixed = target * (1.0 - alpha) + source * alpha
    target[...] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
