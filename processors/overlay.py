"""overlay and timestamp: draw text (wall clock, frame number, fixed text) on the picture."""

from __future__ import annotations

import time
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from processors.base import FrameContext, Param, PixelFormat, Rgb, VideoProcessor, YuvPlanes
from processors.filters import yuv_from_rgb
from processors.font import text_mask

COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "yellow": (255, 255, 0),
    "red": (255, 0, 0),
    "green": (0, 255, 0),
}
POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right")
BOX_DIM = 0.35
"""The background box keeps this share of the picture's brightness: legible on any scene."""


def render_text(template: str, ctx: FrameContext, timezone: str) -> str:
    """Fill the placeholders {time} (HH:MM:SS.mmm), {date}, {frame}, {pts}, {track}, {room}."""
    # Plain replacement rather than str.format: a template from configuration or an API call
    # must not reach attributes of the values ("{frame.__class__}").
    seconds = ctx.wall_time
    moment = time.gmtime(seconds) if timezone == "utc" else time.localtime(seconds)
    millis = int((seconds % 1) * 1000)
    fields = {
        "{time}": time.strftime("%H:%M:%S", moment) + f".{millis:03d}",
        "{date}": time.strftime("%Y-%m-%d", moment),
        "{frame}": str(ctx.frame_index),
        "{pts}": "" if ctx.pts is None else str(ctx.pts),
        "{track}": ctx.track_id,
        "{room}": ctx.room,
    }
    text = template
    for placeholder, value in fields.items():
        text = text.replace(placeholder, value)
    return text


class Overlay(VideoProcessor):
    """Draw a line of text in a corner, with placeholders filled per frame.

    Parameters:
        text (str, at most 100 characters, default "{frame}"): the text; placeholders
            {time} (wall clock, HH:MM:SS.mmm), {date}, {frame} (frame number), {pts}, {track},
            {room}. Lower case is drawn in capitals (a built-in 5x7 font, no dependency).
        position (str, top-left/top-right/bottom-left/bottom-right, default top-left).
        scale (int, 1..16, default 3): pixels per font dot (text is 7*scale pixels tall).
        margin (int, 0..1000, default 8): pixels from the frame edges.
        colour (str, white/black/yellow/red/green, default white).
        box (bool, default True): darken a box behind the text so it reads on any picture.
        timezone (str, utc/local, default utc): for {time} and {date}.
    """

    name = "overlay"
    pixel_formats: ClassVar[tuple[PixelFormat, ...]] = (PixelFormat.YUV420P, PixelFormat.RGB24)
    default_text: ClassVar[str] = "{frame}"
    schema = (
        Param("text", str, default_text, maximum=100, doc="text with {time} {date} {frame} ..."),
        Param("position", str, "top-left", choices=POSITIONS, doc="corner"),
        Param("scale", int, 3, 1, 16, doc="pixels per font dot"),
        Param("margin", int, 8, 0, 1000, doc="pixels from the edges"),
        Param("colour", str, "white", choices=tuple(COLOURS), doc="text colour"),
        Param("box", bool, True, doc="darken a box behind the text"),
        Param("timezone", str, "utc", choices=("utc", "local"), doc="for {time} and {date}"),
    )

    def process_yuv(self, image: YuvPlanes, ctx: FrameContext) -> YuvPlanes:
        placed = self._place(image.width, image.height, ctx)
        if placed is None:
            return image
        mask, box, x, y = placed
        colour = yuv_from_rgb(np.array(COLOURS[ctx.params["colour"]], np.float32))
        luma = image.y.copy()
        _draw(luma, mask, box, x, y, np.uint8(round(float(colour[0]))))
        # Chroma at half resolution: a chroma sample takes the text colour when any of its
        # four luma pixels is ink; the box leaves chroma alone (it only darkens).
        chroma_mask = _halve(mask)
        u, v = image.u.copy(), image.v.copy()
        for plane, value in ((u, colour[1]), (v, colour[2])):
            region = plane[
                y // 2 : y // 2 + chroma_mask.shape[0], x // 2 : x // 2 + chroma_mask.shape[1]
            ]
            region[chroma_mask[: region.shape[0], : region.shape[1]]] = np.uint8(
                round(float(value))
            )
        return YuvPlanes(luma, u, v)

    def process_rgb(self, image: Rgb, ctx: FrameContext) -> Rgb:
        placed = self._place(image.shape[1], image.shape[0], ctx)
        if placed is None:
            return image
        mask, box, x, y = placed
        out = image.copy()
        _draw(out, mask, box, x, y, np.array(COLOURS[ctx.params["colour"]], np.uint8))
        return out

    def _place(
        self, width: int, height: int, ctx: FrameContext
    ) -> tuple[NDArray[np.bool_], bool, int, int] | None:
        text = render_text(str(ctx.params["text"]), ctx, str(ctx.params["timezone"]))
        scale = int(ctx.params["scale"])
        mask = text_mask(text, scale)
        box = bool(ctx.params["box"])
        if box:
            # One dot of padding around the text.
            mask = np.pad(mask, scale)
        if mask.size == 0:
            return None
        margin = int(ctx.params["margin"])
        position = str(ctx.params["position"])
        x = margin if position.endswith("left") else width - margin - mask.shape[1]
        y = margin if position.startswith("top") else height - margin - mask.shape[0]
        # Even coordinates keep luma and chroma of the text aligned; clip to the frame.
        x, y = max(0, x) // 2 * 2, max(0, y) // 2 * 2
        mask = mask[: max(0, height - y), : max(0, width - x)]
        if mask.size == 0:
            return None
        return mask, box, x, y


def _draw(
    target: NDArray[np.uint8],
    mask: NDArray[np.bool_],
    box: bool,
    x: int,
    y: int,
    ink: np.uint8 | NDArray[np.uint8],
) -> None:
    region = target[y : y + mask.shape[0], x : x + mask.shape[1]]
    if box:
        region[...] = (region * BOX_DIM).astype(np.uint8)
    region[mask] = ink


def _halve(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    # The mask starts at even coordinates (see _place), so 2x2 tiles match chroma samples.
    padded = np.pad(mask, [(0, mask.shape[0] % 2), (0, mask.shape[1] % 2)])
    rows, cols = padded.shape[0] // 2, padded.shape[1] // 2
    halved: NDArray[np.bool_] = np.asarray(padded.reshape(rows, 2, cols, 2).any(axis=(1, 3)))
    return halved


class Timestamp(Overlay):
    """Draw the wall clock (UTC, HH:MM:SS.mmm) in a corner: an overlay whose text defaults to
    "{time}". Same parameters as ``overlay``."""

    name = "timestamp"
    default_text: ClassVar[str] = "{time}"
    schema = (
        Param("text", str, default_text, maximum=100, doc="text with {time} {date} {frame} ..."),
        *Overlay.schema[1:],
    )
