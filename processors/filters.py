"""Vectorised numpy building blocks shared by the built-in processors (box blur, block means)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from processors.base import Plane


def box_blur_axis(plane: NDArray[np.int32], radius: int, axis: int) -> NDArray[np.int32]:
    """A moving average of width 2*radius+1 along one axis, edges replicated (via cumsum)."""
    if radius <= 0:
        return plane
    pad = [(0, 0), (0, 0)]
    pad[axis] = (radius + 1, radius)
    # Replicating the edge keeps a uniform border uniform; the extra leading sample makes
    # the cumulative-sum difference below include the first window whole.
    padded = np.pad(plane, pad, mode="edge")
    sums = np.cumsum(padded, axis=axis, dtype=np.int32)
    size = 2 * radius + 1
    length = plane.shape[axis]
    upper: list[slice] = [slice(None), slice(None)]
    lower: list[slice] = [slice(None), slice(None)]
    upper[axis] = slice(size, size + length)
    lower[axis] = slice(0, length)
    window_sums = sums[tuple(upper)] - sums[tuple(lower)]
    return (window_sums + size // 2) // size


def box_blur(plane: Plane, radius: int, passes: int) -> Plane:
    """Separable box blur; three passes approximate a gaussian of sigma ~ radius.

    ~27 ms for a 720p frame with 2 passes: ``processors.blur`` uses FFmpeg's gblur instead and
    this only for frames too small for gblur or an FFmpeg built without it.
    """
    work = plane.astype(np.int32)
    for _ in range(passes):
        work = box_blur_axis(box_blur_axis(work, radius, 0), radius, 1)
    return work.astype(np.uint8)


def block_means(region: Plane, block: int) -> Plane:
    """Each block x block tile (from the top-left; partial tiles at the edges) set to its mean."""
    height, width = region.shape[:2]
    rows = -(-height // block)
    cols = -(-width // block)
    padded = np.pad(
        region.astype(np.float32),
        [(0, rows * block - height), (0, cols * block - width)] + [(0, 0)] * (region.ndim - 2),
        mode="edge",
    )
    # Edge padding makes partial tiles average their real pixels with copies of their edge: a
    # slight bias for privacy, and no per-tile Python loop.
    shape = (rows, block, cols, block, *region.shape[2:])
    means = padded.reshape(shape).mean(axis=(1, 3))
    full = np.repeat(np.repeat(means, block, axis=0), block, axis=1)
    out: Plane = np.rint(full[:height, :width]).astype(np.uint8)
    return out


def yuv_from_rgb(rgb: NDArray[np.float32]) -> NDArray[np.float32]:
    """BT.601 limited-range Y, U, V (last axis) from R, G, B in 0..255: what libswscale uses
    by default for rgb24 -> yuv420p, so colours drawn in either format match."""
    matrix = np.array(
        [[0.257, 0.504, 0.098], [-0.148, -0.291, 0.439], [0.439, -0.368, -0.071]], np.float32
    )
    out: NDArray[np.float32] = rgb @ matrix.T + np.array([16.0, 128.0, 128.0], np.float32)
    return out


def chroma_mean(plane: NDArray[np.float32]) -> NDArray[np.float32]:
    """Average 2x2 tiles (first two axes), an odd last row/column averaging with its copy."""
    height, width = plane.shape[:2]
    pad = [(0, height % 2), (0, width % 2)] + [(0, 0)] * (plane.ndim - 2)
    padded = np.pad(plane, pad, mode="edge")
    shape = (padded.shape[0] // 2, 2, padded.shape[1] // 2, 2, *plane.shape[2:])
    out: NDArray[np.float32] = padded.reshape(shape).mean(axis=(1, 3))
    return out
