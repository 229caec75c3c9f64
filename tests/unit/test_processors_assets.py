"""Asset names: only regular files inside the assets directory, and the watermark reading them."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import av
import numpy as np
import pytest

from processors.assets import MAX_NAME_CHARS, AssetError, Assets
from processors.base import FrameContext, ParamError, YuvPlanes
from processors.registry import ProcessorConfigError, ProcessorRegistry
from processors.watermark import MAX_PIXELS, Watermark

REFUSED_FORMS = [
    "http://127.0.0.1:9/mark.png",
    "https://example.com/mark.png",
    "file:///etc/passwd",
    "file:mark.png",
    "concat:mark.png|mark.png",
    "subfile,,start,0,end,100,,:mark.png",
    "pipe:0",
    "data:image/png;base64,iVBORw0KGgo=",
    "tcp://127.0.0.1:9",
    "C:mark.png",
    "/etc/passwd",
    "/tmp",
    "../mark.png",
    "logos/../../mark.png",
    "logos/..",
    "./mark.png",
    "logos//mark.png",
    "logos/",
    "",
    "mark\x00.png",
    "mark\n.png",
    "logos\\mark.png",
    "x" * (MAX_NAME_CHARS + 1),
]


def write_png(path: Path, rgba: np.ndarray) -> None:
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = rgba.shape[1], rgba.shape[0], "rgba"
        for packet in stream.encode(av.VideoFrame.from_ndarray(rgba, format="rgba")):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def white_square(path: Path, size: int = 8) -> Path:
    rgba = np.full((size, size, 4), 255, np.uint8)
    write_png(path, rgba)
    return path


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """An assets directory with files in it, and a directory beside it with a secret."""
    assets = tmp_path / "assets"
    (assets / "logos").mkdir(parents=True)
    white_square(assets / "mark.png")
    white_square(assets / "logos" / "brand.png")
    outside = tmp_path / "outside"
    outside.mkdir()
    white_square(outside / "secret.png")
    return assets, outside


@pytest.mark.parametrize("name", REFUSED_FORMS)
def test_urls_protocols_absolute_paths_and_dot_dot_are_refused_by_form(
    layout: tuple[Path, Path], name: str
) -> None:
    assets, _ = layout
    with pytest.raises(AssetError, match=r"not an asset name|at most"):
        Assets.check_name(name)
    with pytest.raises(AssetError, match=r"not an asset name|at most"):
        Assets(assets).read(name)


def test_a_name_that_is_not_a_string_is_refused() -> None:
    for value in (None, 5, b"mark.png"):
        with pytest.raises(AssetError, match="not an asset name"):
            Assets.check_name(value)


def test_names_inside_the_directory_are_read(layout: tuple[Path, Path]) -> None:
    assets, _ = layout
    resolver = Assets(assets)
    assert resolver.read("mark.png") == (assets / "mark.png").read_bytes()
    assert resolver.read("logos/brand.png") == (assets / "logos" / "brand.png").read_bytes()
    assert resolver.path("logos/brand.png") == (assets / "logos" / "brand.png").resolve()


def test_a_symlink_inside_the_directory_is_followed(layout: tuple[Path, Path]) -> None:
    assets, _ = layout
    (assets / "current.png").symlink_to("logos/brand.png")
    (assets / "latest").symlink_to(assets / "logos")  # absolute target, still inside
    resolver = Assets(assets)
    expected = (assets / "logos" / "brand.png").read_bytes()
    assert resolver.read("current.png") == expected
    assert resolver.read("latest/brand.png") == expected


def test_a_symlink_out_of_the_directory_reads_as_missing(layout: tuple[Path, Path]) -> None:
    assets, outside = layout
    (assets / "escape.png").symlink_to(outside / "secret.png")
    (assets / "up").symlink_to("..")
    (assets / "dangling.png").symlink_to(outside / "nothing.png")
    resolver = Assets(assets)
    messages = {}
    for name in ("escape.png", "up/outside/secret.png", "dangling.png", "absent.png", "up"):
        with pytest.raises(AssetError) as refused:
            resolver.read(name)
        messages[name] = str(refused.value).replace(repr(name), "NAME")
    # Existing outside, missing outside, missing inside: one message, nothing to tell apart.
    assert set(messages.values()) == {"no asset NAME in the assets directory"}, messages


def test_the_assets_directory_itself_behind_a_symlink_is_fine(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    white_square(real / "mark.png")
    (tmp_path / "link").symlink_to(real)
    assert Assets(tmp_path / "link").read("mark.png") == (real / "mark.png").read_bytes()


def test_no_assets_directory_means_no_files(layout: tuple[Path, Path]) -> None:
    with pytest.raises(AssetError, match=r"processing.assets_dir is not set"):
        Assets(None).read("mark.png")
    with pytest.raises(AssetError, match="does not exist"):
        Assets(layout[0] / "nowhere").read("mark.png")


def test_a_fifo_is_refused_without_waiting_for_a_writer(layout: tuple[Path, Path]) -> None:
    assets, _ = layout
    os.mkfifo(assets / "slow.png")
    outcome: list[BaseException | bytes] = []

    def read() -> None:
        try:
            outcome.append(Assets(assets).read("slow.png"))
        except BaseException as error:
            outcome.append(error)

    # Nobody ever writes the FIFO: opening it for reading would block for ever.
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=10)
    assert not reader.is_alive(), "reading a FIFO blocked"
    (error,) = outcome
    assert isinstance(error, AssetError) and "not a regular file" in str(error)


def test_a_directory_and_a_too_large_file_are_refused(layout: tuple[Path, Path]) -> None:
    assets, _ = layout
    with pytest.raises(AssetError, match="'logos' is not a regular file"):
        Assets(assets).read("logos")
    big = assets / "big.png"
    with big.open("wb") as file:
        file.truncate(1025)  # sparse: nothing is written, nothing should be read
    with pytest.raises(AssetError, match="larger than 1024 bytes"):
        Assets(assets, max_bytes=1024).read("big.png")
    assert Assets(assets, max_bytes=1025).read("big.png") == b"\0" * 1025


# -- the watermark reads only assets -------------------------------------------------------


def mark_params(name: str) -> dict[str, object]:
    return {"path": name, "position": "top-left", "margin": 0}


def test_the_watermark_refuses_what_the_resolver_refuses(layout: tuple[Path, Path]) -> None:
    assets, outside = layout
    (assets / "escape.png").symlink_to(outside / "secret.png")
    resolver = Assets(assets)
    for name in ("http://127.0.0.1:9/mark.png", str(outside / "secret.png"), "../outside/x"):
        with pytest.raises(ParamError, match=r"'path'.*not an asset name"):
            Watermark(assets=resolver, **mark_params(name))
    for name in ("escape.png", "absent.png"):
        with pytest.raises(ParamError, match=f"'path'.*no asset '{name}' in the assets dir"):
            Watermark(assets=resolver, **mark_params(name))
    with pytest.raises(ParamError, match="assets_dir is not set"):
        Watermark(**mark_params("mark.png"))  # no Assets at all: no files


def test_the_watermark_refuses_files_that_are_not_small_images(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("#EXTM3U\nhttp://127.0.0.1:9/segment.ts\n")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    width = MAX_PIXELS // 1000 + 1
    write_png(tmp_path / "huge.png", np.zeros((1000, width, 4), np.uint8))
    write_png(tmp_path / "tall.png", np.zeros((4097, 2, 4), np.uint8))
    resolver = Assets(tmp_path)
    expected = {
        "notes.png": "not a PNG or JPEG image",
        "broken.png": "not a decodable PNG image",
        "huge.png": f"at most {MAX_PIXELS} pixels",
        "tall.png": "4097, more than 4096 a side",
    }
    for name, message in expected.items():
        with pytest.raises(ParamError, match=message):
            Watermark(assets=resolver, **mark_params(name))


def test_a_jpeg_asset_is_drawn(tmp_path: Path) -> None:
    with av.open(str(tmp_path / "mark.jpg"), "w", format="image2") as container:
        stream = container.add_stream("mjpeg")
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuvj420p"
        white = np.full((16, 16, 3), 255, np.uint8)
        frame = av.VideoFrame.from_ndarray(white, format="rgb24").reformat(format="yuvj420p")
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    processor = Watermark(assets=Assets(tmp_path), **mark_params("mark.jpg"))
    out = processor.process(YuvPlanes.filled(32, 32), FrameContext(params=processor.params))
    assert isinstance(out, YuvPlanes)
    assert out.y[:16, :16].min() >= 230 and (out.y[16:, :] == 16).all()


def test_an_update_reads_the_new_asset_and_a_refused_one_changes_nothing(
    layout: tuple[Path, Path],
) -> None:
    assets, _ = layout
    processor = Watermark(assets=Assets(assets), **mark_params("mark.png"))
    assert processor.update(path="logos/brand.png")["path"] == "logos/brand.png"
    with pytest.raises(ParamError, match="no asset"):
        processor.update(path="absent.png")
    assert processor.params["path"] == "logos/brand.png"


def test_a_deferred_build_checks_the_name_and_reads_at_the_first_frame(
    layout: tuple[Path, Path],
) -> None:
    assets, _ = layout
    deferred = Assets(assets).deferred()
    with pytest.raises(ParamError, match="not an asset name"):
        Watermark(assets=deferred, **mark_params("http://127.0.0.1:9/x.png"))
    # Built on the event loop: the file is not read yet, so a later one is found then.
    late = Watermark(assets=deferred, **mark_params("late.png"))
    white_square(assets / "late.png")
    out = late.process(YuvPlanes.filled(16, 16), FrameContext(params=late.params))
    assert isinstance(out, YuvPlanes) and (out.y[:8, :8] == 235).all()
    # A name that is still missing then fails the frame (the pipeline counts it).
    missing = Watermark(assets=deferred, **mark_params("absent.png"))
    with pytest.raises(AssetError, match=r"no asset 'absent.png'"):
        missing.process(YuvPlanes.filled(16, 16), FrameContext(params=missing.params))
    # Updates are validated in full, deferred or not (their caller runs them off the loop).
    with pytest.raises(ParamError, match=r"no asset 'absent.png'"):
        late.update(path="absent.png")


def test_the_registry_gives_its_assets_to_the_processors_that_use_them(
    layout: tuple[Path, Path],
) -> None:
    assets, _ = layout
    spec = [{"watermark": {"path": "mark.png"}}, "grayscale"]
    pipeline = ProcessorRegistry(assets=Assets(assets)).build(spec, name="branded")
    assert [s.name for s in pipeline.stages] == ["watermark", "grayscale"]
    with pytest.raises(ProcessorConfigError, match=r"branded.*assets_dir is not set"):
        ProcessorRegistry().build(spec, name="branded")
    with pytest.raises(ProcessorConfigError, match=r"no asset 'absent.png'"):
        ProcessorRegistry(assets=Assets(assets)).build([{"watermark": {"path": "absent.png"}}])
    # Deferred (how the gateway builds renditions on its loop): names only.
    ProcessorRegistry(assets=Assets(assets)).build(
        [{"watermark": {"path": "absent.png"}}], deferred=True
    )
    with pytest.raises(ProcessorConfigError, match="not an asset name"):
        ProcessorRegistry(assets=Assets(assets)).build(
            [{"watermark": {"path": "file:///etc/passwd"}}], deferred=True
        )
