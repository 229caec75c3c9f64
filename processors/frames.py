"""Conversions between decoded av frames and the arrays processors see.

The pipeline calls these through this module (``frames.planes_from_frame(...)``), once per frame
per pipeline at most in each direction; tests count them by patching this module.
"""

from __future__ import annotations

from typing import Any

import av
import numpy as np

from processors.base import Pcm, Plane, Rgb, YuvPlanes

YUV420P = "yuv420p"


def _plane_view(plane: Any) -> Plane:
    # A zero-copy, read-only view of one plane without its line padding. Read-only because the
    # decoded frame may be shared by several renditions; processors build new arrays instead.
    array = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(plane.height, plane.line_size)
    view = array[:, : plane.width]
    view.flags.writeable = False
    return view


def planes_from_frame(frame: av.VideoFrame) -> YuvPlanes:
    """The frame's yuv420p planes, as views (no copy) when it already is yuv420p."""
    if frame.format.name != YUV420P:
        # E.g. yuvj420p from some H264 streams: one conversion, then views of its planes.
        frame = frame.reformat(format=YUV420P)
    y, u, v = (_plane_view(plane) for plane in frame.planes)
    return YuvPlanes(y, u, v)


def frame_from_planes(image: YuvPlanes) -> av.VideoFrame:
    """A new yuv420p frame holding a copy of the planes."""
    frame = av.VideoFrame(image.width, image.height, YUV420P)
    for plane, source in zip(frame.planes, (image.y, image.u, image.v), strict=True):
        target = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(
            plane.height, plane.line_size
        )
        target[:, : plane.width] = source
    return frame


def rgb_from_frame(frame: av.VideoFrame) -> Rgb:
    """The frame as an (height, width, 3) rgb24 array (a colour conversion by libswscale)."""
    rgb = frame.to_ndarray(format="rgb24")
    assert rgb.dtype == np.uint8  # rgb24 is always uint8; the stubs type every format at once
    return rgb  # type: ignore[return-value]


def frame_from_rgb(image: Rgb) -> av.VideoFrame:
    """A new yuv420p frame from rgb24 (the encoders take yuv420p)."""
    rgb = np.ascontiguousarray(image)
    frame: av.VideoFrame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=YUV420P)
    return frame


def rgb_from_planes(image: YuvPlanes) -> Rgb:
    """yuv420p planes to rgb24 (only between stages that want different formats)."""
    return rgb_from_frame(frame_from_planes(image))


def planes_from_rgb(image: Rgb) -> YuvPlanes:
    """rgb24 to yuv420p planes (only between stages that want different formats)."""
    return planes_from_frame(frame_from_rgb(image))


AUDIO_FORMATS = {"s16": np.int16, "s16p": np.int16, "flt": np.float32, "fltp": np.float32}


def pcm_from_frame(frame: av.AudioFrame) -> Pcm:
    """The frame's samples as (channels, samples), int16 or float32, read-only."""
    format_name = frame.format.name
    if format_name not in AUDIO_FORMATS:
        raise ValueError(f"unsupported audio sample format {format_name!r}")
    samples: Pcm = frame.to_ndarray()
    if not frame.format.is_planar:
        # Packed (interleaved) audio comes as (1, samples * channels).
        channels = len(frame.layout.channels)
        samples = samples.reshape(-1, channels).T
    samples.flags.writeable = False
    return samples


def frame_from_pcm(samples: Pcm, like: av.AudioFrame) -> av.AudioFrame:
    """A new audio frame with ``like``'s format, layout and rate holding ``samples``."""
    format_name = like.format.name
    data = samples.astype(AUDIO_FORMATS[format_name], copy=False)
    if not like.format.is_planar:
        data = data.T.reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(data), format=format_name, layout=like.layout.name
    )
    frame.sample_rate = like.sample_rate
    return frame
