"""watermark: alpha-blend an image asset (PNG with transparency) into a corner of the picture."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import av
import numpy as np
from numpy.typing import NDArray

from processors.assets import AssetError, Assets
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

MAX_SIDE = 4096
MAX_PIXELS = 1920 * 1080
"""A decoded mark costs ~31 bytes a pixel (float planes, blended every frame): 64 MB here."""

# The codec is chosen from the file's first bytes, so no FFmpeg demuxer (which could open
# further URLs: playlists, concat lists) ever reads the file.
_DECODERS = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "mjpeg"))


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


def load_mark(data: bytes) -> Mark:
    """Decode a PNG or JPEG image (its bytes), at most MAX_SIDE a side and MAX_PIXELS in all."""
    codec = next((name for magic, name in _DECODERS if data.startswith(magic)), None)
    if codec is None:
        raise ValueError("not a PNG or JPEG image")
    decoder = av.CodecContext.create(codec, "r")
    assert isinstance(decoder, av.VideoCodecContext)
    # The decoder refuses a larger picture before allocating it (a small file can claim a
    # huge one).
    decoder.options = {"max_pixels": str(MAX_PIXELS)}
    try:
        decoded = [*decoder.decode(av.Packet(data)), *decoder.decode(None)]
    except av.FFmpegError:
        raise ValueError(
            f"not a decodable {codec.upper()} image of at most {MAX_PIXELS} pixels"
        ) from None
    if not decoded:
        raise ValueError(f"not a decodable {codec.upper()} image")
    frame = decoded[0]
    if frame.width > MAX_SIDE or frame.height > MAX_SIDE:
        raise ValueError(f"the image is {frame.width}x{frame.height}, more than {MAX_SIDE} a side")
    # PyAV decodes PNG with alpha already: no image library needed.
    rgba = frame.to_ndarray(format="rgba").astype(np.float32)
    rgb = rgba[..., :3]
    alpha = rgba[..., 3] / 255.0
    yuv = yuv_from_rgb(rgb)
    return Mark(rgb, alpha, yuv, chroma_mean(yuv[..., 1:]), chroma_mean(alpha))


class Watermark(VideoProcessor):
    """Blend an image (its alpha channel, times ``opacity``) into a corner of the picture.

    Parameters:
        path (str, required): an asset name (processors/assets.py): a PNG (which keeps its
            transparency) or JPEG file inside ``processing.assets_dir``, at most 4096 pixels
            a side and 1920x1080 in all. Read and decoded when the parameter is set, so a bad
            one is refused up front; built with deferred assets (on the event loop), only the
            name is checked then, and the file is read at the first frame, in the worker.
        position (str, top-left/top-right/bottom-left/bottom-right, default bottom-right).
        margin (int, 0..4096, default 16): pixels from the frame edges.
        opacity (float, 0..1, default 1.0): multiplies the image's own alpha.

    The image is drawn at its own size and clipped to the frame.
    """

    name = "watermark"
    uses_assets: ClassVar[bool] = True
    """The registry passes its :class:`Assets` as ``assets=``."""
    pixel_formats: ClassVar[tuple[PixelFormat, ...]] = (PixelFormat.YUV420P, PixelFormat.RGB24)
    schema = (
        Param("path", str, maximum=1024, doc="asset name of a PNG (with alpha) or JPEG image"),
        Param("position", str, "bottom-right", choices=POSITIONS, doc="corner"),
        Param("margin", int, 16, 0, 4096, doc="pixels from the edges"),
        Param("opacity", float, 1.0, 0.0, 1.0, doc="multiplies the image's alpha"),
    )

    def __init__(self, *, assets: Assets | None = None, **params: Any) -> None:
        # Set before the base class validates (check() uses them).
        self._assets = assets if assets is not None else Assets(None)
        self._read_in_check = self._assets.eager
        self._marks: dict[str, Mark] = {}
        self._marks_lock = threading.Lock()
        super().__init__(**params)
        # Updates read at once: whoever calls update() does it off the event loop.
        self._read_in_check = True

    def check(self, params: Mapping[str, Any]) -> None:
        try:
            name = self._assets.check_name(params["path"])
        except AssetError as error:
            raise ParamError("path", str(error)) from None
        if not self._read_in_check:
            return
        try:
            mark = self._load(name)
        except AssetError as error:
            raise ParamError("path", str(error)) from None
        with self._marks_lock:
            # Only the current image is worth keeping (an update replaces it).
            self._marks = {name: mark}

    def _load(self, name: str) -> Mark:
        data = self._assets.read(name)
        try:
            return load_mark(data)
        except ValueError as error:
            raise AssetError(f"asset {name!r}: {error}") from None

    def _mark(self, name: str) -> Mark:
        with self._marks_lock:
            mark = self._marks.get(name)
        if mark is None:
            # A deferred build's first frame, or an update raced this frame: load it here,
            # in the worker thread, once (a failure is the stage's, counted by the pipeline).
            mark = self._load(name)
            with self._marks_lock:
                self._marks[name] = mark
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
