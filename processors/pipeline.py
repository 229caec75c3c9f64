"""Pipeline: ordered processors run on one decoded frame, with conversions, timings and failures.

``Pipeline.process(frame, context)`` is synchronous and starts no thread: the rendition calls it
from its worker thread (latest frame wins there, so a slow pipeline drops frames instead of
adding latency).

Per frame, the pipeline converts the ``av.VideoFrame`` once into the pixel format its stages
share (yuv420p planes unless a stage needs RGB), runs the stages, and builds one output
``av.VideoFrame`` (yuv420p, the input's pts and time base). Mixed formats convert only where
adjacent stages disagree.

Failure policy: a processor that raises (or returns something malformed) is counted, and the
frame continues **unprocessed by that stage**: the next stage gets that stage's input, which is
intact because processors get read-only arrays. After ``max_consecutive_failures`` failures in a
row the stage is disabled (skipped from then on, until :meth:`Pipeline.enable`) and the
``on_event`` callback receives a ``processor_disabled`` event. A processor that returns ``None``
drops the frame: ``process`` returns ``None`` and later stages do not run.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import av
import numpy as np

from processors import frames
from processors.base import (
    AudioProcessor,
    FrameContext,
    MediaKind,
    Pcm,
    PixelFormat,
    Processor,
    VideoImage,
    VideoProcessor,
    YuvPlanes,
)

logger = logging.getLogger(__name__)

DEFAULT_MAX_CONSECUTIVE_FAILURES = 5
TIMING_WINDOW = 128
"""Samples kept per timer for the p95: about 4 s at 30 fps."""


class PipelineError(ValueError):
    """A pipeline is built or addressed wrongly (mixed kinds, unknown stage)."""


@dataclass(frozen=True, slots=True)
class PipelineEvent:
    """Something an operator should hear about, e.g. a processor disabled after failures."""

    kind: str
    pipeline: str
    stage: str
    message: str


class Timer:
    """Durations in ms: last, exponentially weighted average, p50 and p95 over the recent window."""

    EWMA_WEIGHT = 0.1

    def __init__(self) -> None:
        self.count = 0
        self.total_ms = 0.0  # since the start: rates over any interval, beyond the window
        self.last_ms = 0.0
        self.avg_ms = 0.0
        self._window: deque[float] = deque(maxlen=TIMING_WINDOW)
        self._lock = threading.Lock()

    def add(self, ms: float) -> None:
        with self._lock:
            self.avg_ms = (
                ms if self.count == 0 else self.avg_ms + self.EWMA_WEIGHT * (ms - self.avg_ms)
            )
            self.count += 1
            self.total_ms += ms
            self.last_ms = ms
            self._window.append(ms)

    def snapshot(self) -> dict[str, float]:
        # Called from another thread (stats): copy under the lock, compute outside it.
        with self._lock:
            window = list(self._window)
            count, total, last, avg = self.count, self.total_ms, self.last_ms, self.avg_ms
        p50, p95 = (float(v) for v in np.percentile(window, [50, 95])) if window else (0.0, 0.0)
        return {
            "count": count,
            "total_ms": total,
            "last_ms": last,
            "avg_ms": avg,
            "p50_ms": p50,
            "p95_ms": p95,
        }


class Stage:
    """One processor in a pipeline, with its counters."""

    def __init__(self, name: str, processor: Processor) -> None:
        self.name = name
        self.processor = processor
        self.timer = Timer()
        self.calls = 0
        self.failures = 0
        self.consecutive_failures = 0
        self.drops = 0
        self.disabled = False
        self.last_error = ""

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "processor": self.processor.name,
            "params": dict(self.processor.params),
            "calls": self.calls,
            "failures": self.failures,
            "consecutive_failures": self.consecutive_failures,
            "drops": self.drops,
            "disabled": self.disabled,
            "last_error": self.last_error,
            "timing": self.timer.snapshot(),
        }


class Pipeline:
    """An ordered list of processors of one kind (video or audio), run synchronously per frame."""

    def __init__(
        self,
        processors: Iterable[Processor],
        *,
        name: str = "",
        max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES,
        on_event: Callable[[PipelineEvent], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if max_consecutive_failures < 1:
            raise PipelineError("max_consecutive_failures must be at least 1")
        self.name = name
        self.max_consecutive_failures = max_consecutive_failures
        self.on_event = on_event
        self._clock = clock
        self.stages: list[Stage] = []
        seen: dict[str, int] = {}
        for processor in processors:
            # The same processor twice gets "blur", "blur#2": stable names for updates and stats.
            seen[processor.name] = seen.get(processor.name, 0) + 1
            count = seen[processor.name]
            stage_name = processor.name if count == 1 else f"{processor.name}#{count}"
            self.stages.append(Stage(stage_name, processor))
        kinds = {stage.processor.kind for stage in self.stages}
        if len(kinds) > 1:
            raise PipelineError(f"pipeline {name!r} mixes video and audio processors")
        self.kind: MediaKind = kinds.pop() if kinds else "video"
        self.frames_in = 0
        self.frames_out = 0
        self.frames_dropped = 0
        self.conversion = Timer()
        """Time spent converting between av frames and arrays (both directions), per frame."""
        self.total = Timer()

    # -- control (any thread) ---------------------------------------------------------------

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        known = ", ".join(s.name for s in self.stages) or "none"
        raise PipelineError(f"pipeline {self.name!r} has no stage {name!r} (stages: {known})")

    def update(self, stage_name: str, **params: Any) -> Mapping[str, Any]:
        """Change a stage's parameters from the next frame on (raises ParamError if refused)."""
        return self.stage(stage_name).processor.update(**params)

    def enable(self, stage_name: str) -> None:
        """Re-enable a stage disabled after failures; its failure streak starts over."""
        stage = self.stage(stage_name)
        stage.consecutive_failures = 0
        stage.disabled = False

    def snapshot(self) -> dict[str, Any]:
        """Counters and timings, JSON-ready (for /api/stats)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "frames_dropped": self.frames_dropped,
            "conversion": self.conversion.snapshot(),
            "total": self.total.snapshot(),
            "stages": [stage.snapshot() for stage in self.stages],
        }

    def formats(self) -> list[PixelFormat]:
        """The pixel format each enabled video stage will receive, in order."""
        return _plan([s for s in self.stages if not s.disabled])

    # -- the worker thread ------------------------------------------------------------------

    def process(self, frame: av.VideoFrame | av.AudioFrame, context: FrameContext) -> Any:
        """Run every enabled stage on ``frame``; the output frame, or None if a stage dropped it."""
        started = self._clock()
        self.frames_in += 1
        if isinstance(frame, av.AudioFrame):
            out: Any = self._process_audio(frame, context)
        else:
            out = self._process_video(frame, context)
        if out is None:
            self.frames_dropped += 1
        else:
            self.frames_out += 1
        self.total.add((self._clock() - started) * 1000.0)
        return out

    def _process_video(self, frame: av.VideoFrame, context: FrameContext) -> av.VideoFrame | None:
        stages = [s for s in self.stages if not s.disabled]
        if not stages:
            return frame  # nothing to do: no conversion at all
        plan = _plan(stages)
        conversion_ms = 0.0
        image: VideoImage | None = None
        current: PixelFormat | None = None
        for stage, wanted in zip(stages, plan, strict=True):
            if wanted is not current:
                started = self._clock()
                image = _convert(frame if image is None else image, wanted)
                conversion_ms += (self._clock() - started) * 1000.0
                current = wanted
            assert image is not None
            result = self._run(stage, image, context, _check_image)
            if result is _DROPPED:
                self.conversion.add(conversion_ms)
                return None
            image = result
        started = self._clock()
        if isinstance(image, YuvPlanes):
            out = frames.frame_from_planes(image)
        else:
            assert image is not None
            out = frames.frame_from_rgb(image)
        conversion_ms += (self._clock() - started) * 1000.0
        self.conversion.add(conversion_ms)
        _copy_timing(frame, out)
        return out

    def _process_audio(self, frame: av.AudioFrame, context: FrameContext) -> av.AudioFrame | None:
        stages = [s for s in self.stages if not s.disabled]
        if not stages:
            return frame
        context = dataclasses.replace(context, sample_rate=frame.sample_rate)
        samples = frames.pcm_from_frame(frame)

        def check(result: object, before: object) -> None:
            _check_pcm(result, before)

        for stage in stages:
            result = self._run(stage, samples, context, check)
            if result is _DROPPED:
                return None
            samples = result
        out = frames.frame_from_pcm(samples, like=frame)
        _copy_timing(frame, out)
        return out

    def _run(
        self,
        stage: Stage,
        data: Any,
        context: FrameContext,
        check: Callable[[object, object], None],
    ) -> Any:
        """One stage: its output; its input back if it failed; _DROPPED if it dropped."""
        processor = stage.processor
        # One parameter snapshot per frame: an update from another thread applies next frame.
        ctx = dataclasses.replace(context, params=processor.params)
        stage.calls += 1
        started = self._clock()
        try:
            result = processor.process(data, ctx)  # type: ignore[attr-defined]
            if result is not None:
                check(result, data)
        except Exception as error:
            stage.timer.add((self._clock() - started) * 1000.0)
            self._failed(stage, error)
            return data
        stage.timer.add((self._clock() - started) * 1000.0)
        stage.consecutive_failures = 0
        if result is None:
            stage.drops += 1
            return _DROPPED
        _freeze(result)
        return result

    def _failed(self, stage: Stage, error: Exception) -> None:
        stage.failures += 1
        stage.consecutive_failures += 1
        stage.last_error = f"{type(error).__name__}: {error}"
        logger.debug("pipeline %r stage %r failed: %s", self.name, stage.name, stage.last_error)
        if stage.consecutive_failures < self.max_consecutive_failures:
            return
        stage.disabled = True
        message = (
            f"disabled after {stage.consecutive_failures} consecutive failures; "
            f"last: {stage.last_error}"
        )
        logger.warning("pipeline %r stage %r %s", self.name, stage.name, message)
        if self.on_event is not None:
            try:
                self.on_event(PipelineEvent("processor_disabled", self.name, stage.name, message))
            except Exception:
                # The callback belongs to someone else; its bug must not stop the media.
                logger.exception("pipeline %r event callback failed", self.name)


_DROPPED: Any = object()


def _plan(stages: list[Stage]) -> list[PixelFormat]:
    accepted = [_pixel_formats(s.processor) for s in stages]
    for common in (PixelFormat.YUV420P, PixelFormat.RGB24):
        if all(common in formats for formats in accepted):
            return [common] * len(stages)
    # No single format suits every stage: keep the current one while the next stage takes it,
    # otherwise switch to that stage's preferred one (a conversion between those stages).
    plan: list[PixelFormat] = []
    for formats in accepted:
        plan.append(plan[-1] if plan and plan[-1] in formats else formats[0])
    return plan


def _pixel_formats(processor: Processor) -> tuple[PixelFormat, ...]:
    if isinstance(processor, VideoProcessor):
        return processor.pixel_formats
    return (PixelFormat.YUV420P,)


def _convert(source: av.VideoFrame | VideoImage, wanted: PixelFormat) -> VideoImage:
    if isinstance(source, av.VideoFrame):
        if wanted is PixelFormat.YUV420P:
            return frames.planes_from_frame(source)
        return frames.rgb_from_frame(source)
    if wanted is PixelFormat.YUV420P:
        return frames.planes_from_rgb(source)  # type: ignore[arg-type]
    return frames.rgb_from_planes(source)  # type: ignore[arg-type]


def _copy_timing(
    source: av.VideoFrame | av.AudioFrame, target: av.VideoFrame | av.AudioFrame
) -> None:
    target.pts = source.pts
    if source.time_base is not None:  # PyAV refuses None: an untimed frame stays untimed
        target.time_base = source.time_base


def _check_image(result: object, before: object) -> None:
    # A malformed result is a failure of that stage, not a crash of the encoder downstream.
    if isinstance(before, YuvPlanes):
        if not isinstance(result, YuvPlanes):
            raise TypeError(f"expected YuvPlanes, got {type(result).__name__}")
        result.check()
        return
    if not isinstance(result, np.ndarray):
        raise TypeError(f"expected an rgb24 array, got {type(result).__name__}")
    if result.dtype != np.uint8 or result.ndim != 3 or result.shape[2] != 3:
        raise ValueError(f"expected a (h, w, 3) uint8 array, got {result.dtype} {result.shape}")
    if result.shape[0] < 1 or result.shape[1] < 1:
        raise ValueError("an image must be at least 1x1")


def _check_pcm(result: object, before: object) -> None:
    assert isinstance(before, np.ndarray)
    if not isinstance(result, np.ndarray):
        raise TypeError(f"expected a PCM array, got {type(result).__name__}")
    if result.shape != before.shape or result.dtype != before.dtype:
        raise ValueError(
            f"expected PCM {before.dtype} {before.shape}, got {result.dtype} {result.shape}"
        )


def _freeze(result: YuvPlanes | Pcm) -> None:
    # The next stage must not modify what it receives either (see the failure policy).
    arrays = (result.y, result.u, result.v) if isinstance(result, YuvPlanes) else (result,)
    for array in arrays:
        array.flags.writeable = False


__all__ = [
    "DEFAULT_MAX_CONSECUTIVE_FAILURES",
    "AudioProcessor",
    "Pipeline",
    "PipelineError",
    "PipelineEvent",
    "Stage",
    "Timer",
    "VideoProcessor",
]
