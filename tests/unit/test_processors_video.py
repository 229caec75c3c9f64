"""Built-in video processors on known arrays: what each one does to the pixels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

import processors.blur as blur_module
from processors.assets import Assets
from processors.base import FrameContext, ParamError, Processor, VideoProcessor, YuvPlanes
from processors.blur import Blur
from processors.edges import Edges
from processors.filters import box_blur
from processors.grayscale import Grayscale
from processors.overlay import Overlay, Timestamp
from processors.pixelate import Pixelate
from processors.resize import Resize
from processors.rotate import Rotate
from processors.watermark import Watermark


def run(processor: Processor, image: Any, **context: Any) -> Any:
    """Call a processor the way the pipeline does: read-only input, the params snapshot."""
    assert isinstance(processor, VideoProcessor)
    arrays = (image.y, image.u, image.v) if isinstance(image, YuvPlanes) else (image,)
    for array in arrays:
        array.flags.writeable = False
    return processor.process(image, FrameContext(params=processor.params, **context))


def colourful(width: int = 64, height: int = 48) -> YuvPlanes:
    rng = np.random.default_rng(7)
    cw, ch = (width + 1) // 2, (height + 1) // 2
    return YuvPlanes(
        rng.integers(16, 236, (height, width), dtype=np.uint8),
        rng.integers(16, 241, (ch, cw), dtype=np.uint8),
        rng.integers(16, 241, (ch, cw), dtype=np.uint8),
    )


def step_edge(width: int = 64, height: int = 32) -> YuvPlanes:
    """Dark left half, bright right half."""
    image = YuvPlanes.filled(width, height, y=50)
    y = image.y.copy()
    y[:, width // 2 :] = 200
    return YuvPlanes(y, image.u, image.v)


def test_grayscale_sets_chroma_to_128_and_keeps_luma() -> None:
    image = colourful()
    out = run(Grayscale(), image)
    assert np.array_equal(out.y, image.y)
    assert (out.u == 128).all() and (out.v == 128).all()


def test_grayscale_half_strength_halves_the_colour() -> None:
    image = YuvPlanes.filled(8, 8, y=100, u=200, v=28)
    out = run(Grayscale(strength=0.5), image)
    assert (out.u == 164).all() and (out.v == 78).all()


def test_grayscale_rgb_makes_channels_equal() -> None:
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 255
    out = run(Grayscale(), rgb)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert (out[..., 0] == 76).all()  # 0.299 * 255


def test_blur_smooths_a_step_edge_and_keeps_the_mean() -> None:
    image = step_edge()
    out = run(Blur(radius=3, passes=2), image)
    row = out.y[10].astype(int)
    # Monotonic ramp across the edge instead of a jump; far from it, unchanged.
    assert 50 < row[31] < 200 and 50 < row[32] < 200
    assert (np.diff(row) >= 0).all()
    assert row[0] == 50 and row[-1] == 200
    assert abs(out.y.mean() - image.y.mean()) < 0.5
    assert out.y.shape == image.y.shape and out.u.shape == image.u.shape


@pytest.mark.parametrize("size", [(33, 17), (161, 91), (1280, 720)], ids=str)
@pytest.mark.parametrize(("radius", "passes"), [(5, 2), (1, 1), (64, 3)])
def test_blur_leaves_a_uniform_image_uniform(
    size: tuple[int, int], radius: int, passes: int
) -> None:
    # 33x17 takes the numpy fallback (under 64x32), the others FFmpeg's gblur.
    image = YuvPlanes.filled(*size, y=77, u=90, v=160)
    out = run(Blur(radius=radius, passes=passes), image)
    assert (out.y == 77).all() and (out.u == 90).all() and (out.v == 160).all()


def wide_step_edge(width: int = 256, height: int = 64) -> YuvPlanes:
    """Black left half, white right half (limited range), grey chroma."""
    image = YuvPlanes.filled(width, height, y=16)
    y = image.y.copy()
    y[:, width // 2 :] = 235
    return YuvPlanes(y, image.u, image.v)


def ramp_width(row: np.ndarray, low: int = 16, high: int = 235) -> int:
    """Pixels strictly between 10% and 90% of the way from ``low`` to ``high``."""
    row = row.astype(float)
    return int(
        np.count_nonzero((row > low + 0.1 * (high - low)) & (row < high - 0.1 * (high - low)))
    )


def test_blur_edge_ramp_is_about_the_radius_wide_in_full_resolution_pixels() -> None:
    widths = []
    for radius in (2, 4, 8, 16, 32):
        row = run(Blur(radius=radius), wide_step_edge()).y[32]
        assert (np.diff(row.astype(int)) >= 0).all()  # gradual, no ringing
        width = ramp_width(row)
        # A gaussian's 10-90% rise is 2.56 sigma; sigma(radius, 2 passes) ~ 0.8 * radius.
        assert 1.5 * radius <= width <= 2.5 * radius + 2, (radius, width)
        widths.append(width)
    assert widths == sorted(set(widths))  # strictly wider with the radius


def test_blur_more_passes_spread_wider_like_more_box_passes() -> None:
    widths = [ramp_width(run(Blur(radius=8, passes=p), wide_step_edge()).y[32]) for p in (1, 2, 3)]
    assert widths[0] < widths[1] < widths[2]


def test_blur_has_the_spread_of_the_box_blur_it_replaces() -> None:
    image = wide_step_edge()
    for radius in (4, 16):
        ours = run(Blur(radius=radius, passes=2), image).y[32].astype(int)
        box = box_blur(image.y, radius, 2)[32].astype(int)
        assert np.abs(ours - box).max() <= 12, radius


def test_blur_replicates_the_edges() -> None:
    """Blurring equals blurring the picture extended by copies of its edge pixels, then
    cropping: a bright object touching the border stays as bright as it would beyond it."""
    rng = np.random.default_rng(3)
    image = YuvPlanes(
        rng.integers(16, 236, (96, 160), dtype=np.uint8),
        rng.integers(16, 241, (48, 80), dtype=np.uint8),
        rng.integers(16, 241, (48, 80), dtype=np.uint8),
    )
    pad = 64
    extended = YuvPlanes(
        np.pad(image.y, pad, mode="edge"),
        np.pad(image.u, pad // 2, mode="edge"),
        np.pad(image.v, pad // 2, mode="edge"),
    )
    for radius in (4, 16, 32):
        out = run(Blur(radius=radius), image)
        reference = run(Blur(radius=radius), extended)
        c = pad // 2
        for got, want in (
            (out.y, reference.y[pad:-pad, pad:-pad]),
            (out.u, reference.u[c:-c, c:-c]),
            (out.v, reference.v[c:-c, c:-c]),
        ):
            assert np.abs(got.astype(int) - want).max() <= 2, radius


def test_blur_blurs_chroma_with_the_same_extent() -> None:
    image = YuvPlanes.filled(256, 64, y=100, u=60, v=200)
    u = image.u.copy()
    u[:, 64:] = 200
    v = image.v.copy()
    v[:, 64:] = 60
    out = run(Blur(radius=8), YuvPlanes(image.y, u, v))
    assert (out.y == 100).all()
    u_row, v_row = out.u[16].astype(int), out.v[16].astype(int)
    assert (np.diff(u_row) >= 0).all() and (np.diff(v_row) <= 0).all()
    # Half-resolution planes: the ramp is about half as many chroma pixels as luma pixels.
    luma_width = ramp_width(run(Blur(radius=8), wide_step_edge()).y[32])
    assert abs(2 * ramp_width(u_row, 60, 200) - luma_width) <= 4
    assert abs(2 * ramp_width(v_row[::-1], 60, 200) - luma_width) <= 4


def test_blur_keeps_shape_dtype_and_mean_and_is_deterministic() -> None:
    image = colourful(161, 91)
    blur = Blur()
    first = run(blur, image)
    second = run(blur, image)
    first.check()
    for got, again, source in zip(
        (first.y, first.u, first.v),
        (second.y, second.u, second.v),
        (image.y, image.u, image.v),
        strict=True,
    ):
        assert got.dtype == np.uint8 and got.shape == source.shape
        assert np.array_equal(got, again)
        assert got.std() < source.std() / 3  # noise is smoothed away
        assert abs(got.mean() - source.mean()) < 0.5  # rounded, not truncated: no darkening


def test_blur_follows_parameter_and_frame_size_changes() -> None:
    blur = Blur(radius=2)
    narrow = ramp_width(run(blur, wide_step_edge()).y[32])
    blur.update(radius=16)
    wide = ramp_width(run(blur, wide_step_edge()).y[32])
    assert wide > 4 * narrow
    assert run(blur, wide_step_edge(320, 96)).y.shape == (96, 320)
    assert ramp_width(run(blur, wide_step_edge()).y[32]) == wide


def test_blur_without_gblur_falls_back_to_the_numpy_box_blur(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(blur_module, "GBLUR_AVAILABLE", False)
    image = wide_step_edge()
    out = run(Blur(radius=4, passes=2), image)
    assert np.array_equal(out.y, box_blur(image.y, 4, 2))
    assert (out.u == 128).all()


def test_edges_detect_a_vertical_edge() -> None:
    out = run(Edges(), step_edge())
    assert out.y[:, 31:33].min() > 100  # at the edge
    assert out.y[:, :29].max() == 0 and out.y[:, 35:].max() == 0  # flat areas
    assert (out.u == 128).all()


def test_edges_threshold_and_invert() -> None:
    out = run(Edges(threshold=255, invert=True), step_edge())
    assert (out.y == 255).all()  # every magnitude is below 255: all black, inverted to white


def marked(width: int = 8, height: int = 6) -> YuvPlanes:
    """A black image with one white luma pixel at the top-left corner."""
    image = YuvPlanes.filled(width, height)
    y = image.y.copy()
    y[0, 0] = 255
    return YuvPlanes(y, image.u, image.v)


@pytest.mark.parametrize(
    ("angle", "flip", "shape", "where"),
    [
        (90, "none", (8, 6), (0, 5)),  # clockwise: top-left goes to top-right
        (180, "none", (6, 8), (5, 7)),
        (270, "none", (8, 6), (7, 0)),
        (0, "horizontal", (6, 8), (0, 7)),
        (0, "vertical", (6, 8), (5, 0)),
        (90, "horizontal", (8, 6), (0, 0)),
    ],
)
def test_rotate_and_flip_move_the_marked_pixel(
    angle: int, flip: str, shape: tuple[int, int], where: tuple[int, int]
) -> None:
    out = run(Rotate(angle=angle, flip=flip), marked())
    assert out.y.shape == shape
    assert out.u.shape == ((shape[0] + 1) // 2, (shape[1] + 1) // 2)
    assert list(zip(*np.nonzero(out.y == 255), strict=True)) == [where]


def test_resize_gives_the_requested_size() -> None:
    out = run(Resize(width=32, height=20), colourful(64, 48))
    assert out.y.shape == (20, 32) and out.u.shape == (10, 16) and out.v.shape == (10, 16)


def test_resize_keeps_the_aspect_ratio_when_one_side_is_zero() -> None:
    out = run(Resize(width=32, height=0), colourful(64, 48))
    assert out.y.shape == (24, 32)


def test_resize_nearest_neighbour_keeps_values() -> None:
    out = run(Resize(width=128, height=96), step_edge(64, 48))
    assert set(np.unique(out.y)) == {50, 200}
    assert (out.y[:, :64] == 50).all() and (out.y[:, 64:] == 200).all()


def test_resize_refuses_odd_sizes() -> None:
    with pytest.raises(ParamError, match="width"):
        Resize(width=33)


def overlay_area(out: YuvPlanes, before: YuvPlanes) -> np.ndarray:
    return np.argwhere(out.y != before.y)


def test_overlay_changes_pixels_only_in_the_text_area() -> None:
    image = YuvPlanes.filled(200, 100, y=120)
    out = run(Overlay(text="12", position="top-left", margin=8, scale=2), image, frame_index=1)
    changed = overlay_area(out, image)
    assert changed.size > 0
    rows, cols = changed[:, 0], changed[:, 1]
    # Text 7 dots tall plus a dot of box padding each side, 2 px per dot, 8 px margin.
    assert rows.min() >= 8 and rows.max() < 8 + 9 * 2
    assert cols.min() >= 8 and cols.max() < 8 + (2 * 6 - 1 + 2) * 2
    assert (out.y == 235).any()  # white ink in limited range


def test_overlay_draws_different_pixels_for_different_frame_numbers() -> None:
    image = YuvPlanes.filled(200, 100, y=120)
    processor = Overlay(text="{frame}")
    first = run(processor, image, frame_index=17)
    second = run(processor, image, frame_index=18)
    again = run(processor, image, frame_index=17)
    assert not np.array_equal(first.y, second.y)
    assert np.array_equal(first.y, again.y)


def test_timestamp_shows_the_wall_clock() -> None:
    image = YuvPlanes.filled(400, 100, y=120)
    processor = Timestamp(position="bottom-right")
    one = run(processor, image, wall_time=1_700_000_000.0)
    other = run(processor, image, wall_time=1_700_000_001.5)
    assert not np.array_equal(one.y, other.y)
    changed = overlay_area(one, image)
    # "HH:MM:SS.mmm": 12 glyphs of 6 dots (+ box), 3 px per dot, 8 px from the bottom-right.
    assert changed[:, 0].min() > 50 and changed[:, 1].min() > 150
    assert changed[:, 0].max() < 92 and changed[:, 1].max() < 392


def test_overlay_without_box_draws_only_ink_in_colour() -> None:
    image = YuvPlanes.filled(100, 40, y=120)
    out = run(Overlay(text="8", box=False, colour="yellow", scale=2), image)
    assert set(np.unique(out.y)) == {120, 210}
    assert out.u.min() < 128  # yellow has low U


def write_png(path: Path, rgba: np.ndarray) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = rgba.shape[1], rgba.shape[0], "rgba"
        for packet in stream.encode(av.VideoFrame.from_ndarray(rgba, format="rgba")):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_watermark_blends_with_its_alpha(tmp_path: Path) -> None:
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = 255  # white
    rgba[:, :4, 3] = 255  # left half opaque
    rgba[:, 4:, 3] = 0  # right half transparent
    write_png(tmp_path / "mark.png", rgba)
    assets = Assets(tmp_path)
    image = YuvPlanes.filled(32, 32, y=16)
    out = run(Watermark(assets=assets, path="mark.png", position="top-left", margin=4), image)
    assert (out.y[4:12, 4:8] == 235).all()  # opaque white
    assert (out.y[4:12, 8:12] == 16).all()  # transparent: untouched
    assert (out.y[12:, :] == 16).all() and (out.y[:, 12:] == 16).all()
    half = Watermark(assets=assets, path="mark.png", position="top-left", margin=4, opacity=0.5)
    assert (run(half, image).y[4:12, 4:8] == 126).all()  # (16 + 235) / 2


def test_watermark_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ParamError, match=r"path.*no asset 'missing.png'"):
        Watermark(assets=Assets(tmp_path), path="missing.png")


def test_pixelate_makes_blocks_uniform_inside_the_rectangle_only() -> None:
    image = colourful(64, 64)
    out = run(Pixelate(x=0.25, y=0.25, width=0.5, height=0.5, block=8), image)
    for top in range(16, 48, 8):
        for left in range(16, 48, 8):
            tile = out.y[top : top + 8, left : left + 8]
            assert (tile == tile[0, 0]).all()
            assert abs(int(tile[0, 0]) - image.y[top : top + 8, left : left + 8].mean()) <= 0.5
    outside = np.ones((64, 64), bool)
    outside[16:48, 16:48] = False
    assert np.array_equal(out.y[outside], image.y[outside])
    chroma_outside = np.ones((32, 32), bool)
    chroma_outside[8:24, 8:24] = False
    assert np.array_equal(out.u[chroma_outside], image.u[chroma_outside])
    assert (out.u[8:12, 8:12] == out.u[8, 8]).all()


@pytest.mark.parametrize(
    "processor",
    [Grayscale(), Blur(), Edges(), Rotate(), Resize(width=32), Overlay(), Pixelate()],
    ids=lambda p: p.name,
)
def test_video_processors_keep_odd_sizes_consistent(processor: Processor) -> None:
    out = run(processor, colourful(33, 17))
    out.check()


@pytest.mark.parametrize(
    "processor",
    [Grayscale(), Rotate(angle=180), Resize(width=16), Overlay(), Pixelate()],
    ids=lambda p: p.name,
)
def test_rgb_capable_processors_return_rgb(processor: Processor) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    out = run(processor, rgb)
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    assert not np.array_equal(out, rgb) or processor.name == "none"
