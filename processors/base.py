"""The processor contract: images, context, parameter schema and the Processor base classes.

A **video processor** receives one decoded frame as numpy arrays and returns new arrays (or
``None`` to drop the frame). By default it sees the frame as :class:`YuvPlanes` (``yuv420p``:
full-size luma ``y``, quarter-size chroma ``u`` and ``v``), because that is what the decoders
produce and the encoders consume: measured at 720p, getting yuv420p planes from an
``av.VideoFrame`` costs ~0.05 ms, getting rgb24 ~0.3 ms, and rebuilding a yuv420p frame from rgb
~3.5 ms, more than most processors themselves. A processor that really needs RGB declares it in
:attr:`VideoProcessor.pixel_formats`; the pipeline then converts once per frame for the whole
pipeline, not once per processor.

An **audio processor** receives PCM as an array of shape ``(channels, samples)``, ``int16`` or
``float32`` as the decoder produced it, with the sample rate in the context.

Processors must not modify their input arrays: the pipeline hands them read-only arrays (often
zero-copy views of the decoded frame, which other renditions may share) and, when a processor
raises, passes its unmodified input on to the next stage.
"""

from __future__ import annotations

import enum
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from types import MappingProxyType
from typing import Any, ClassVar, Literal, TypeAlias

import numpy as np
from numpy.typing import NDArray

Plane: TypeAlias = NDArray[np.uint8]
Rgb: TypeAlias = NDArray[np.uint8]
"""An RGB image: shape (height, width, 3), uint8."""
Pcm: TypeAlias = NDArray[Any]
"""PCM samples: shape (channels, samples), int16 or float32."""
MediaKind: TypeAlias = Literal["video", "audio"]
ParamType: TypeAlias = type[int] | type[float] | type[str] | type[bool]


class PixelFormat(enum.StrEnum):
    """How a video processor sees a frame."""

    YUV420P = "yuv420p"
    """:class:`YuvPlanes`: no conversion from or to the codecs' own format."""
    RGB24 = "rgb24"
    """An (height, width, 3) uint8 array: a colour conversion in and out of the pipeline."""


def chroma_size(width: int, height: int) -> tuple[int, int]:
    """The (width, height) of a yuv420p chroma plane: half, rounded up (as FFmpeg does)."""
    return (width + 1) // 2, (height + 1) // 2


@dataclass(frozen=True, slots=True)
class YuvPlanes:
    """A yuv420p image as three uint8 planes: ``y`` (h, w), ``u`` and ``v`` (ceil(h/2), ceil(w/2))."""

    y: Plane
    u: Plane
    v: Plane

    @property
    def width(self) -> int:
        return int(self.y.shape[1])

    @property
    def height(self) -> int:
        return int(self.y.shape[0])

    @classmethod
    def filled(cls, width: int, height: int, y: int = 16, u: int = 128, v: int = 128) -> YuvPlanes:
        """A uniform image (default: black in limited range)."""
        cw, ch = chroma_size(width, height)
        return cls(
            np.full((height, width), y, np.uint8),
            np.full((ch, cw), u, np.uint8),
            np.full((ch, cw), v, np.uint8),
        )

    def check(self) -> None:
        """Raise ValueError unless the planes are uint8, 2-D and of consistent sizes."""
        for plane_name, plane in (("y", self.y), ("u", self.u), ("v", self.v)):
            if not isinstance(plane, np.ndarray) or plane.dtype != np.uint8 or plane.ndim != 2:
                raise ValueError(f"plane {plane_name} must be a 2-D uint8 array")
        if self.width < 1 or self.height < 1:
            raise ValueError("an image must be at least 1x1")
        cw, ch = chroma_size(self.width, self.height)
        if self.u.shape != (ch, cw) or self.v.shape != (ch, cw):
            raise ValueError(
                f"chroma planes must be {cw}x{ch} for a {self.width}x{self.height} image, "
                f"got u {self.u.shape[1]}x{self.u.shape[0]}, v {self.v.shape[1]}x{self.v.shape[0]}"
            )


VideoImage: TypeAlias = YuvPlanes | Rgb


@dataclass(frozen=True, slots=True)
class FrameContext:
    """What a processor knows about the frame besides its pixels or samples."""

    pts: int | None = None
    time_base: Fraction | None = None
    wall_time: float = 0.0
    """Seconds since the epoch when the frame was received (time.time())."""
    track_id: str = ""
    room: str = ""
    frame_index: int = 0
    """0 for the pipeline's first frame of this track, then +1 per frame."""
    sample_rate: int = 0
    """Audio only: samples per second."""
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """The processor's parameters for this frame (one consistent snapshot per frame)."""


class ParamError(ValueError):
    """A parameter value is unknown, of the wrong type or out of range."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"parameter {param!r}: {message}")
        self.param = param
        self.reason = message


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
"""The default of a parameter that has none: configuration must give it."""


@dataclass(frozen=True, slots=True)
class Param:
    """One declared parameter of a processor."""

    name: str
    type: ParamType
    default: Any = REQUIRED
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None
    doc: str = ""

    def validate(self, value: object) -> Any:
        """The value, checked and normalised (an int given for a float becomes a float)."""
        # Strict types: a config or API client that sends "5" for an int has a bug worth seeing;
        # bool is an int subclass in Python and must not pass as a number.
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) != (self.type is bool) or not isinstance(value, self.type):
            raise ParamError(self.name, f"must be {self.type.__name__}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ParamError(self.name, f"must be finite, got {value!r}")
        if self.choices is not None and value not in self.choices:
            choices = ", ".join(repr(c) for c in self.choices)
            raise ParamError(self.name, f"must be one of {choices}, got {value!r}")
        if isinstance(value, int | float) and not isinstance(value, bool):
            if self.minimum is not None and value < self.minimum:
                raise ParamError(self.name, f"must be >= {self.minimum}, got {value!r}")
            if self.maximum is not None and value > self.maximum:
                raise ParamError(self.name, f"must be <= {self.maximum}, got {value!r}")
        if isinstance(value, str) and self.maximum is not None and len(value) > self.maximum:
            raise ParamError(self.name, f"must be at most {self.maximum:g} characters long")
        return value

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description (for docs and APIs)."""
        out: dict[str, Any] = {"name": self.name, "type": self.type.__name__, "doc": self.doc}
        if self.default is not REQUIRED:
            out["default"] = self.default
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.choices is not None:
            out["choices"] = list(self.choices)
        return out


class Processor:
    """Base of every processor: a name, a parameter schema and thread-safe parameter updates.

    Parameters are validated against :attr:`schema` at construction and on every
    :meth:`update`. The current values are an immutable mapping replaced as a whole, so the
    pipeline's worker thread takes one consistent snapshot per frame while another thread
    (the event loop, an API call) updates them: a change applies from the next frame on.
    """

    name: ClassVar[str] = ""
    kind: ClassVar[MediaKind]
    schema: ClassVar[tuple[Param, ...]] = ()

    def __init__(self, **params: Any) -> None:
        self._lock = threading.Lock()
        self._params: Mapping[str, Any] = MappingProxyType(self._validated({}, params))

    @property
    def params(self) -> Mapping[str, Any]:
        """The current parameter values (an immutable snapshot)."""
        return self._params

    def update(self, **changes: Any) -> Mapping[str, Any]:
        """Change some parameters; all are validated first, so a refused update changes nothing."""
        with self._lock:
            self._params = MappingProxyType(self._validated(self._params, changes))
            return self._params

    def check(self, params: Mapping[str, Any]) -> None:
        """Hook: checks across parameters, or of resources they name; raise ParamError.

        Runs on the caller's thread, before the values are used; must not change what
        :meth:`process` sees except through caches keyed by the parameter values.
        """

    def _validated(self, current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
        declared = {p.name: p for p in self.schema}
        for key in changes:
            if key not in declared:
                known = ", ".join(declared) or "none"
                raise ParamError(key, f"unknown parameter (known: {known})")
        values: dict[str, Any] = {}
        for param in self.schema:
            if param.name in changes:
                values[param.name] = param.validate(changes[param.name])
            elif param.name in current:
                values[param.name] = current[param.name]
            elif param.default is REQUIRED:
                raise ParamError(param.name, "is required")
            else:
                values[param.name] = param.default
        self.check(values)
        return values

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """A JSON-ready description of the processor and its parameters."""
        out: dict[str, Any] = {
            "name": cls.name,
            "kind": cls.kind,
            "doc": (cls.__doc__ or "").strip().split("\n")[0],
            "params": [p.describe() for p in cls.schema],
        }
        if issubclass(cls, VideoProcessor):
            out["pixel_formats"] = [str(f) for f in cls.pixel_formats]
        return out


class VideoProcessor(Processor):
    """A video processor: override ``process_yuv`` and/or ``process_rgb`` and list them in
    :attr:`pixel_formats`, most preferred first.

    Each returns a new image in the same pixel format (any size: resize and rotate change it),
    or ``None`` to drop the frame. Never modify the input arrays (they are read-only).
    """

    kind: ClassVar[MediaKind] = "video"
    pixel_formats: ClassVar[tuple[PixelFormat, ...]] = (PixelFormat.YUV420P,)

    def process(self, image: VideoImage, ctx: FrameContext) -> VideoImage | None:
        """Dispatch on the image's format (the pipeline only passes a declared one)."""
        if isinstance(image, YuvPlanes):
            return self.process_yuv(image, ctx)
        return self.process_rgb(image, ctx)

    def process_yuv(self, image: YuvPlanes, ctx: FrameContext) -> YuvPlanes | None:
        raise NotImplementedError(f"{type(self).__name__} does not process yuv420p")

    def process_rgb(self, image: Rgb, ctx: FrameContext) -> Rgb | None:
        raise NotImplementedError(f"{type(self).__name__} does not process rgb24")


class AudioProcessor(Processor):
    """An audio processor: PCM (channels, samples) in, the same shape and dtype out, or None."""

    kind: ClassVar[MediaKind] = "audio"

    def process(self, samples: Pcm, ctx: FrameContext) -> Pcm | None:
        raise NotImplementedError


VideoFunction: TypeAlias = Callable[[Any, FrameContext], Any]
AudioFunction: TypeAlias = Callable[[Pcm, FrameContext], Pcm | None]


def video_processor(
    name: str,
    *,
    pixel_format: PixelFormat = PixelFormat.YUV420P,
    schema: tuple[Param, ...] = (),
) -> Callable[[VideoFunction], type[VideoProcessor]]:
    """Turn a function ``(image, ctx) -> image | None`` into a VideoProcessor class."""

    def wrap(function: VideoFunction) -> type[VideoProcessor]:
        def call(self: VideoProcessor, image: Any, ctx: FrameContext) -> Any:
            return function(image, ctx)

        method = "process_yuv" if pixel_format is PixelFormat.YUV420P else "process_rgb"
        namespace: dict[str, Any] = {
            "name": name,
            "pixel_formats": (pixel_format,),
            "schema": schema,
            method: call,
            "__doc__": function.__doc__,
            "__module__": function.__module__,
        }
        return type(function.__name__, (VideoProcessor,), namespace)

    return wrap


def audio_processor(
    name: str, *, schema: tuple[Param, ...] = ()
) -> Callable[[AudioFunction], type[AudioProcessor]]:
    """Turn a function ``(samples, ctx) -> samples | None`` into an AudioProcessor class."""

    def wrap(function: AudioFunction) -> type[AudioProcessor]:
        def call(self: AudioProcessor, samples: Pcm, ctx: FrameContext) -> Pcm | None:
            return function(samples, ctx)

        namespace: dict[str, Any] = {
            "name": name,
            "schema": schema,
            "process": call,
            "__doc__": function.__doc__,
            "__module__": function.__module__,
        }
        return type(function.__name__, (AudioProcessor,), namespace)

    return wrap
