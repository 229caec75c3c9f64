"""Registry: built-in names, import paths, entry points, pipeline specs and their errors."""

from __future__ import annotations

import importlib.metadata
import re
from typing import Any

import numpy as np
import pytest

from processors import registry as registry_module
from processors.base import FrameContext, Param, ParamError, VideoProcessor, YuvPlanes
from processors.blur import Blur
from processors.registry import (
    ENTRY_POINT_GROUP,
    ProcessorConfigError,
    ProcessorRegistry,
    build_pipeline,
)

HERE = __name__


class Doubler(VideoProcessor):
    """A third-party-style processor: doubles the luma (saturating)."""

    name = "doubler"
    schema = (Param("factor", int, 2, 1, 4),)

    def process_yuv(self, image: YuvPlanes, ctx: FrameContext) -> YuvPlanes:
        y = np.minimum(image.y.astype(int) * ctx.params["factor"], 255).astype(np.uint8)
        return YuvPlanes(y, image.u, image.v)


def invert(image: YuvPlanes, ctx: FrameContext) -> YuvPlanes:
    """A bare function processor."""
    return YuvPlanes(255 - image.y, image.u, image.v)


NOT_A_PROCESSOR = 42


def fake_entry_points(monkeypatch: pytest.MonkeyPatch, *entries: tuple[str, str]) -> None:
    found = [importlib.metadata.EntryPoint(n, v, ENTRY_POINT_GROUP) for n, v in entries]

    def entry_points(**selection: Any) -> list[importlib.metadata.EntryPoint]:
        assert selection == {"group": ENTRY_POINT_GROUP}
        return found

    monkeypatch.setattr(registry_module.importlib.metadata, "entry_points", entry_points)


def test_builtin_names() -> None:
    names = ProcessorRegistry(entry_points=False).names()
    for name in (
        "grayscale", "blur", "edges", "rotate", "resize", "overlay", "timestamp",
        "watermark", "pixelate", "gain", "mute",
    ):  # fmt: skip
        assert name in names
    described = {d["name"]: d for d in ProcessorRegistry(entry_points=False).describe()}
    assert {"name": "radius", "type": "int", "default": 4, "minimum": 1, "maximum": 64} == {
        k: v for k, v in described["blur"]["params"][0].items() if k != "doc"
    }


def test_build_from_a_spec_with_all_item_forms() -> None:
    pipeline = ProcessorRegistry(entry_points=False).build(
        ["grayscale", {"name": "blur", "radius": 5}, {"timestamp": {"scale": 2}}, {"blur": None}],
        name="privacy",
    )
    assert [s.name for s in pipeline.stages] == ["grayscale", "blur", "timestamp", "blur#2"]
    assert pipeline.stage("blur").processor.params["radius"] == 5
    assert pipeline.stage("timestamp").processor.params["scale"] == 2
    assert pipeline.name == "privacy"


def test_import_path_class_and_function() -> None:
    registry = ProcessorRegistry(entry_points=False)
    processor = registry.create({"name": f"{HERE}:Doubler", "factor": 3})
    assert isinstance(processor, Doubler) and processor.params["factor"] == 3
    function = registry.create(f"{HERE}:invert")
    image = YuvPlanes.filled(4, 4, y=10)
    out = function.process(image, FrameContext())  # type: ignore[attr-defined]
    assert (out.y == 245).all()


def test_entry_point_plug_in(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, ("doubler", f"{HERE}:Doubler"))
    registry = ProcessorRegistry()
    assert "doubler" in registry.names()
    pipeline = registry.build([{"name": "doubler", "factor": 4}])
    assert isinstance(pipeline.stages[0].processor, Doubler)


def test_entry_point_cannot_shadow_a_builtin(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, ("blur", f"{HERE}:Doubler"))
    assert isinstance(ProcessorRegistry().create("blur"), Blur)


def test_broken_entry_point_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, ("ghost", "no_such_package_xyz.mod:Thing"))
    with pytest.raises(
        ProcessorConfigError, match=re.escape("entry point 'no_such_package_xyz.mod:Thing'")
    ):
        ProcessorRegistry().create("ghost")


def test_unknown_name_is_refused_with_the_item_named() -> None:
    with pytest.raises(ProcessorConfigError) as caught:
        ProcessorRegistry(entry_points=False).build(["grayscale", "sepia"], name="old")
    message = str(caught.value)
    assert "pipeline 'old' item 2 (sepia)" in message and "unknown processor 'sepia'" in message
    assert "grayscale" in message  # lists what exists
    assert isinstance(caught.value, ValueError) and caught.value.index == 1


def test_bad_parameter_is_refused_with_item_and_parameter_named() -> None:
    with pytest.raises(ProcessorConfigError) as caught:
        build_pipeline(["grayscale", {"name": "blur", "radius": 500}], name="soft")
    assert caught.value.param == "radius" and caught.value.processor == "blur"
    assert (
        str(caught.value)
        == "pipeline 'soft' item 2 (blur): parameter 'radius': must be <= 64, got 500"
    )


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ([{"name": "blur", "sigma": 1}], "'sigma': unknown parameter"),
        ([{"name": "blur", "radius": "5"}], "'radius': must be int, got '5'"),
        ([{"name": "grayscale", "strength": True}], "'strength': must be float"),
        ([{"name": "rotate", "angle": 45}], "'angle': must be one of 0, 90, 180, 270"),
        ([{"radius": 5}], re.escape("item 1: expected {name: PROCESSOR, PARAM: value} or")),
        ([{"radius": 5, "passes": 2}], "item 1: a mapping item needs a 'name' key"),
        ([{"blur": [5]}], re.escape("got {'blur': [5]}")),
        ([7], "expected a processor name or a mapping"),
        ("grayscale", "a pipeline is a list"),
        (["grayscale", "mute"], "mixes video and audio"),
        (["watermark"], "'path': is required"),
        ([f"{HERE}:Missing"], "has no attribute 'Missing'"),
        ([f"{HERE}:NOT_A_PROCESSOR"], "is not a VideoProcessor"),
        (["no_such_module_xyz:Thing"], "cannot import module 'no_such_module_xyz'"),
    ],
)
def test_config_errors(spec: Any, match: str) -> None:
    with pytest.raises(ProcessorConfigError, match=match):
        ProcessorRegistry(entry_points=False).build(spec, name="x")


def test_param_validation_accepts_int_for_float_and_keeps_defaults() -> None:
    blur = Blur(radius=2)
    assert blur.params == {"radius": 2, "passes": 2}
    assert ProcessorRegistry(entry_points=False).create({"grayscale": {"strength": 0}}).params == {
        "strength": 0.0
    }
    with pytest.raises(ParamError):
        blur.update(radius=0)
    assert blur.params["radius"] == 2
