"""Pipeline: one conversion per frame, RGB only when needed, timings, failures, live params."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av
import numpy as np
import pytest

from processors import frames
from processors.base import (
    AudioProcessor,
    FrameContext,
    Param,
    ParamError,
    Pcm,
    PixelFormat,
    Rgb,
    VideoProcessor,
    YuvPlanes,
)
from processors.gain import Gain
from processors.grayscale import Grayscale
from processors.mute import Mute
from processors.pipeline import Pipeline, PipelineError, PipelineEvent
from processors.resize import Resize


def video_frame(
    width: int = 32, height: int = 16, y: int = 100, u: int = 60, v: int = 200
) -> av.VideoFrame:
    frame = frames.frame_from_planes(YuvPlanes.filled(width, height, y=y, u=u, v=v))
    frame.pts = 3000
    frame.time_base = Fraction(1, 90000)
    return frame


def planes(frame: av.VideoFrame) -> YuvPlanes:
    return frames.planes_from_frame(frame)


class Probe(VideoProcessor):
    """Records the format it sees and adds ``delta`` to the luma."""

    name = "probe"
    schema = (Param("delta", int, 1, -255, 255),)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.seen: list[str] = []

    def process_yuv(self, image: YuvPlanes, ctx: FrameContext) -> YuvPlanes:
        self.seen.append("yuv")
        y = np.clip(image.y.astype(int) + ctx.params["delta"], 0, 255).astype(np.uint8)
        return YuvPlanes(y, image.u, image.v)


class RgbProbe(VideoProcessor):
    """Needs RGB; inverts the red channel."""

    name = "rgbprobe"
    pixel_formats = (PixelFormat.RGB24,)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.seen: list[str] = []

    def process_rgb(self, image: Rgb, ctx: FrameContext) -> Rgb:
        self.seen.append("rgb")
        out = image.copy()
        out[..., 0] = 255 - out[..., 0]
        return out


class Failing(VideoProcessor):
    """Scribbles on its input when it can, then raises (until told to stop)."""

    name = "failing"

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.fail = True

    def process_yuv(self, image: YuvPlanes, ctx: FrameContext) -> YuvPlanes:
        if self.fail:
            image.y[0, 0] = 0  # read-only: raises ValueError, so the input stays intact
            raise AssertionError("not reached")
        return YuvPlanes(np.zeros_like(image.y), image.u, image.v)


def counting(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count the pipeline's calls of the conversion functions in processors.frames (calls they
    make to each other are not counted: a mid-pipeline conversion counts once)."""
    counts: dict[str, int] = {}
    depth = [0]
    for name in (
        "planes_from_frame",
        "frame_from_planes",
        "rgb_from_frame",
        "frame_from_rgb",
        "rgb_from_planes",
        "planes_from_rgb",
    ):
        original: Callable[..., Any] = getattr(frames, name)

        def wrapper(*args: Any, _name: str = name, _original: Callable[..., Any] = original) -> Any:
            if depth[0] == 0:
                counts[_name] = counts.get(_name, 0) + 1
            depth[0] += 1
            try:
                return _original(*args)
            finally:
                depth[0] -= 1

        monkeypatch.setattr(frames, name, wrapper)
    return counts


def test_conversion_once_per_frame_for_the_whole_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    probes = [Probe(), Probe(), Probe()]
    pipeline = Pipeline(probes)
    inputs = [video_frame() for _ in range(4)]
    counts = counting(monkeypatch)
    outputs = [pipeline.process(f, FrameContext(frame_index=i)) for i, f in enumerate(inputs)]
    assert counts == {"planes_from_frame": 4, "frame_from_planes": 4}
    assert all((planes(out).y == 103).all() for out in outputs)
    assert all(p.seen == ["yuv"] * 4 for p in probes)
    assert [s.name for s in pipeline.stages] == ["probe", "probe#2", "probe#3"]


def test_rgb_path_only_when_a_stage_needs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    rgb_probe = RgbProbe()
    pipeline = Pipeline([Grayscale(), rgb_probe, Resize(width=16)])
    assert pipeline.formats() == [PixelFormat.RGB24] * 3  # all take RGB: one conversion each way
    frame = video_frame()
    counts = counting(monkeypatch)
    out = pipeline.process(frame, FrameContext())
    assert counts == {"rgb_from_frame": 1, "frame_from_rgb": 1}
    assert rgb_probe.seen == ["rgb"]
    assert (out.width, out.height, out.format.name) == (16, 8, "yuv420p")


def test_mixed_formats_convert_only_at_the_boundary(monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = Pipeline([Probe(), Probe(), RgbProbe(), Grayscale()])
    assert pipeline.formats() == [PixelFormat.YUV420P] * 2 + [PixelFormat.RGB24] * 2
    frame = video_frame()
    counts = counting(monkeypatch)
    pipeline.process(frame, FrameContext())
    assert counts == {"planes_from_frame": 1, "rgb_from_planes": 1, "frame_from_rgb": 1}


def test_output_keeps_timing_and_the_input_frame_is_untouched() -> None:
    frame = video_frame()
    out = Pipeline([Grayscale()]).process(frame, FrameContext())
    assert out is not frame and out.pts == 3000 and out.time_base == Fraction(1, 90000)
    assert (planes(out).u == 128).all() and (planes(frame).u == 60).all()


def test_stage_and_conversion_timings_are_recorded() -> None:
    ticks = iter(range(1000))
    # A fake clock advancing 1 s per reading: durations are exact, nothing depends on real time.
    pipeline = Pipeline([Probe(), Probe()], clock=lambda: float(next(ticks)))
    for _ in range(3):
        pipeline.process(video_frame(), FrameContext())
    snapshot = pipeline.snapshot()
    for stage in snapshot["stages"]:
        assert stage["timing"]["count"] == 3 and stage["timing"]["last_ms"] == 1000.0
        assert stage["timing"]["p95_ms"] == 1000.0 and stage["calls"] == 3
        assert stage["timing"]["p50_ms"] == 1000.0 and stage["timing"]["total_ms"] == 3000.0
    assert snapshot["conversion"]["last_ms"] == 2000.0  # in and out
    assert snapshot["total"]["count"] == 3
    assert snapshot["frames_in"] == snapshot["frames_out"] == 3


def test_a_raising_processor_passes_frames_then_is_disabled() -> None:
    events: list[PipelineEvent] = []
    failing = Failing()
    pipeline = Pipeline(
        [Probe(delta=5), failing, Probe(delta=1)],
        name="p",
        max_consecutive_failures=3,
        on_event=events.append,
    )
    for _ in range(2):
        out = pipeline.process(video_frame(), FrameContext())
        # The failing stage is skipped with its input intact: 100 + 5 + 1.
        assert (planes(out).y == 106).all()
    stage = pipeline.stage("failing")
    assert stage.failures == 2 and not stage.disabled and events == []
    assert "read-only" in stage.last_error
    pipeline.process(video_frame(), FrameContext())
    assert stage.disabled and len(events) == 1
    assert events[0].kind == "processor_disabled" and events[0].stage == "failing"
    assert events[0].pipeline == "p" and "3 consecutive" in events[0].message
    failing.fail = False
    out = pipeline.process(video_frame(), FrameContext())  # disabled: not even called
    assert (planes(out).y == 106).all() and stage.calls == 3
    pipeline.enable("failing")
    out = pipeline.process(video_frame(), FrameContext())
    assert (planes(out).y == 1).all()


def test_a_success_resets_the_failure_streak() -> None:
    failing = Failing()
    pipeline = Pipeline([failing], max_consecutive_failures=2)
    pipeline.process(video_frame(), FrameContext())
    failing.fail = False
    pipeline.process(video_frame(), FrameContext())
    failing.fail = True
    pipeline.process(video_frame(), FrameContext())
    stage = pipeline.stage("failing")
    assert stage.failures == 2 and stage.consecutive_failures == 1 and not stage.disabled


def test_a_malformed_result_counts_as_a_failure() -> None:
    class Broken(VideoProcessor):
        name = "broken"

        def process_yuv(self, image: YuvPlanes, ctx: FrameContext) -> YuvPlanes:
            return YuvPlanes(image.y, image.u[:1], image.v)

    pipeline = Pipeline([Broken()])
    out = pipeline.process(video_frame(), FrameContext())
    assert out.width == 32 and pipeline.stage("broken").failures == 1
    assert "chroma" in pipeline.stage("broken").last_error


def test_an_event_callback_that_raises_does_not_stop_the_pipeline() -> None:
    def explode(event: PipelineEvent) -> None:
        raise RuntimeError("callback bug")

    pipeline = Pipeline([Failing()], max_consecutive_failures=1, on_event=explode)
    assert pipeline.process(video_frame(), FrameContext()) is not None
    assert pipeline.stage("failing").disabled


def test_returning_none_drops_the_frame() -> None:
    class DropOdd(VideoProcessor):
        name = "dropodd"

        def process_yuv(self, image: YuvPlanes, ctx: FrameContext) -> YuvPlanes | None:
            return None if ctx.frame_index % 2 else image

    after = Probe()
    pipeline = Pipeline([DropOdd(), after])
    results = [pipeline.process(video_frame(), FrameContext(frame_index=i)) for i in range(4)]
    assert [r is None for r in results] == [False, True, False, True]
    assert pipeline.frames_dropped == 2 and pipeline.frames_out == 2
    assert after.seen == ["yuv", "yuv"] and pipeline.stage("dropodd").drops == 2


def test_live_parameter_update_is_visible_in_the_output() -> None:
    pipeline = Pipeline([Probe(delta=1)])
    assert (planes(pipeline.process(video_frame(), FrameContext())).y == 101).all()
    pipeline.update("probe", delta=-50)
    assert (planes(pipeline.process(video_frame(), FrameContext())).y == 50).all()
    assert pipeline.snapshot()["stages"][0]["params"] == {"delta": -50}


def test_invalid_update_is_refused_and_changes_nothing() -> None:
    pipeline = Pipeline([Grayscale(strength=0.5)])
    with pytest.raises(ParamError, match="strength"):
        pipeline.update("grayscale", strength=2.0)
    with pytest.raises(ParamError, match="'radius': unknown parameter"):
        pipeline.update("grayscale", radius=1)
    with pytest.raises(PipelineError, match="no stage 'blur'"):
        pipeline.update("blur", radius=1)
    assert pipeline.stage("grayscale").processor.params == {"strength": 0.5}


def test_no_enabled_stage_returns_the_frame_itself() -> None:
    frame = video_frame()
    assert Pipeline([]).process(frame, FrameContext()) is frame


def test_video_and_audio_processors_cannot_mix() -> None:
    with pytest.raises(PipelineError, match="mixes"):
        Pipeline([Grayscale(), Mute()])


def audio_frame(samples: np.ndarray, format_name: str) -> av.AudioFrame:
    data = samples.T.reshape(1, -1) if format_name in ("s16", "flt") else samples
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(data), format=format_name, layout="stereo"
    )
    frame.sample_rate = 48000
    frame.pts = 960
    frame.time_base = Fraction(1, 48000)
    return frame


@pytest.mark.parametrize("format_name", ["s16", "s16p", "flt", "fltp"])
def test_audio_pipeline_keeps_format_layout_and_timing(format_name: str) -> None:
    dtype = np.int16 if format_name.startswith("s16") else np.float32
    scale = 1000 if dtype == np.int16 else 0.1
    samples = (np.array([[1, 2, 3, 4], [-1, -2, -3, -4]]) * scale).astype(dtype)
    seen: list[int] = []

    class Probe(AudioProcessor):
        name = "audioprobe"

        def process(self, samples: Pcm, ctx: FrameContext) -> Pcm:
            seen.append(ctx.sample_rate)
            assert samples.shape == (2, 4)
            return samples

    out = Pipeline([Probe(), Gain(gain_db=6.0206)]).process(
        audio_frame(samples, format_name), FrameContext()
    )
    assert out.format.name == format_name and out.layout.name == "stereo"
    assert out.sample_rate == 48000 and out.pts == 960 and seen == [48000]
    assert np.allclose(frames.pcm_from_frame(out), samples.astype(np.float64) * 2, atol=1e-3)


def test_audio_mute_through_the_pipeline() -> None:
    samples = np.array([[5, 6], [7, 8]], np.int16)
    out = Pipeline([Mute()]).process(audio_frame(samples, "s16"), FrameContext())
    assert not frames.pcm_from_frame(out).any()


def test_untimed_frames_pass() -> None:
    frame = frames.frame_from_planes(YuvPlanes.filled(8, 8))
    out = Pipeline([Grayscale()]).process(frame, FrameContext())
    assert out.pts is None and out.width == 8
