"""Processor registry: built-ins by name, plug-ins by entry point or import path, pipeline specs.

A pipeline spec is a list whose items are a processor name (``"grayscale"``), a mapping with a
``name`` key and parameters (``{"name": "blur", "radius": 5}``), or a one-key mapping of name to
parameters (``{"blur": {"radius": 5}}``). A name is a built-in, a processor registered with
:meth:`ProcessorRegistry.register`, an entry point of the group ``webrtc_gateway.processors``,
or an import path ``"package.module:ClassName"``.

A processor class whose ``uses_assets`` is true (the watermark) is constructed with the
registry's :class:`~processors.assets.Assets` as ``assets=``: the one directory it may read
files from. A registry without one gives processors no files at all.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias

from processors.assets import Assets
from processors.base import (
    AudioProcessor,
    ParamError,
    Processor,
    VideoProcessor,
    video_processor,
)
from processors.blur import Blur
from processors.edges import Edges
from processors.gain import Gain
from processors.grayscale import Grayscale
from processors.mute import Mute
from processors.overlay import Overlay, Timestamp
from processors.pipeline import Pipeline, PipelineEvent
from processors.pixelate import Pixelate
from processors.resize import Resize
from processors.rotate import Rotate
from processors.watermark import Watermark

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "webrtc_gateway.processors"

BUILTINS: tuple[type[Processor], ...] = (
    Grayscale,
    Blur,
    Edges,
    Rotate,
    Resize,
    Overlay,
    Timestamp,
    Watermark,
    Pixelate,
    Gain,
    Mute,
)

SpecItem: TypeAlias = str | Mapping[str, Any]
PipelineSpec: TypeAlias = Sequence[SpecItem]


class ProcessorConfigError(ValueError):
    """A pipeline spec names an unknown processor or gives it a bad parameter.

    ``pipeline``, ``index`` (0-based item), ``processor`` and ``param`` say where, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        pipeline: str = "",
        index: int | None = None,
        processor: str = "",
        param: str = "",
    ) -> None:
        where = []
        if pipeline:
            where.append(f"pipeline {pipeline!r}")
        if index is not None:
            where.append(f"item {index + 1}")
        if processor:
            where.append(f"({processor})")
        prefix = " ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.pipeline = pipeline
        self.index = index
        self.processor = processor
        self.param = param


class ProcessorRegistry:
    """Names to processor classes. Not global: the gateway owns one (and tests their own)."""

    def __init__(
        self, *, builtins: bool = True, entry_points: bool = True, assets: Assets | None = None
    ) -> None:
        self.assets = assets if assets is not None else Assets(None)
        self._classes: dict[str, type[Processor]] = {}
        self._entry_points: dict[str, importlib.metadata.EntryPoint] | None = (
            None if entry_points else {}
        )
        if builtins:
            for cls in BUILTINS:
                self.register(cls)

    def register(self, cls: type[Processor], name: str | None = None) -> None:
        """Make ``cls`` available under ``name`` (default: its own ``name``)."""
        key = name or cls.name
        if not key:
            raise ProcessorConfigError(f"processor class {cls.__qualname__} has no name")
        self._classes[key] = cls

    def names(self) -> list[str]:
        """Every processor name known without importing plug-ins."""
        return sorted({*self._classes, *self._plugins()})

    def describe(self) -> list[dict[str, Any]]:
        """Built-in and registered processors with their parameters (plug-ins load on use)."""
        return [self._classes[name].describe() for name in sorted(self._classes)]

    def resolve(self, name: str) -> type[Processor]:
        """The processor class for a name, an entry point or an import path."""
        if name in self._classes:
            return self._classes[name]
        entry_point = self._plugins().get(name)
        if entry_point is not None:
            try:
                loaded = entry_point.load()
            except Exception as error:
                raise ProcessorConfigError(
                    f"entry point {entry_point.value!r} of {ENTRY_POINT_GROUP!r} failed to "
                    f"load: {type(error).__name__}: {error}",
                    processor=name,
                ) from error
            cls = _as_processor_class(loaded, name, f"entry point {entry_point.value!r}")
            self._classes[name] = cls  # load each plug-in once
            return cls
        if ":" in name:
            return _import(name)
        known = ", ".join(self.names())
        raise ProcessorConfigError(
            f"unknown processor {name!r} (known: {known}; or use 'package.module:ClassName')",
            processor=name,
        )

    def create(
        self,
        item: SpecItem,
        *,
        pipeline: str = "",
        index: int | None = None,
        deferred: bool = False,
    ) -> Processor:
        """One processor from one spec item, its parameters validated.

        ``deferred``: built where no file may be read (the event loop); processors using
        assets check their names now and read the files later, in their worker thread.
        """
        name, params = _parse_item(item, pipeline, index)
        try:
            cls = self.resolve(name)
        except ProcessorConfigError as error:
            raise ProcessorConfigError(
                str(error).split(": ", 1)[-1], pipeline=pipeline, index=index, processor=name
            ) from None
        if getattr(cls, "uses_assets", False):
            params["assets"] = self.assets.deferred() if deferred else self.assets
        try:
            return cls(**params)
        except ParamError as error:
            raise ProcessorConfigError(
                str(error), pipeline=pipeline, index=index, processor=name, param=error.param
            ) from None

    def build(
        self,
        spec: PipelineSpec,
        *,
        name: str = "",
        max_consecutive_failures: int | None = None,
        on_event: Callable[[PipelineEvent], None] | None = None,
        deferred: bool = False,
    ) -> Pipeline:
        """A Pipeline from a spec; every item is checked, the first error raised names it.

        ``deferred``: see :meth:`create` (the gateway builds renditions' pipelines so).
        """
        if isinstance(spec, str | bytes) or not isinstance(spec, Sequence):
            raise ProcessorConfigError(
                f"a pipeline is a list of processors, got {type(spec).__name__}", pipeline=name
            )
        processors = [
            self.create(item, pipeline=name, index=i, deferred=deferred)
            for i, item in enumerate(spec)
        ]
        kinds = {p.kind for p in processors}
        if len(kinds) > 1:
            raise ProcessorConfigError("mixes video and audio processors", pipeline=name)
        options: dict[str, Any] = {"name": name, "on_event": on_event}
        if max_consecutive_failures is not None:
            options["max_consecutive_failures"] = max_consecutive_failures
        return Pipeline(processors, **options)

    def _plugins(self) -> dict[str, importlib.metadata.EntryPoint]:
        if self._entry_points is None:
            found: dict[str, importlib.metadata.EntryPoint] = {}
            for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
                if entry_point.name in self._classes:
                    # Built-ins keep their meaning whatever gets installed next to them.
                    logger.warning(
                        "plug-in %r (%s) ignored: the name is taken",
                        entry_point.name,
                        entry_point.value,
                    )
                    continue
                found[entry_point.name] = entry_point
            self._entry_points = found
        return self._entry_points


def _parse_item(item: SpecItem, pipeline: str, index: int | None) -> tuple[str, dict[str, Any]]:
    if isinstance(item, str):
        return item, {}
    if not isinstance(item, Mapping):
        raise ProcessorConfigError(
            f"expected a processor name or a mapping, got {item!r}", pipeline=pipeline, index=index
        )
    if "name" in item:
        params = {str(k): v for k, v in item.items() if k != "name"}
        name = item["name"]
    elif len(item) == 1:
        ((name, params),) = item.items()
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise ProcessorConfigError(
                f"expected {{name: PROCESSOR, PARAM: value}} or {{PROCESSOR: {{PARAM: value}}}}, "
                f"got {dict(item)!r}",
                pipeline=pipeline,
                index=index,
            )
        params = {str(k): v for k, v in params.items()}
    else:
        raise ProcessorConfigError(
            "a mapping item needs a 'name' key (e.g. {name: blur, radius: 5})",
            pipeline=pipeline,
            index=index,
        )
    if not isinstance(name, str) or not name:
        raise ProcessorConfigError(
            f"a processor name must be a string, got {name!r}", pipeline=pipeline, index=index
        )
    return name, params


def _import(path: str) -> type[Processor]:
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ProcessorConfigError(
            f"cannot import module {module_name!r}: {error}", processor=path
        ) from None
    try:
        loaded = getattr(module, attribute)
    except AttributeError:
        raise ProcessorConfigError(
            f"module {module_name!r} has no attribute {attribute!r}", processor=path
        ) from None
    return _as_processor_class(loaded, path, f"import path {path!r}")


def _as_processor_class(loaded: object, name: str, origin: str) -> type[Processor]:
    if isinstance(loaded, type) and issubclass(loaded, VideoProcessor | AudioProcessor):
        return loaded
    if callable(loaded) and not isinstance(loaded, type):
        # A bare function (image, ctx) -> image | None: a yuv420p video processor.
        return video_processor(name)(loaded)
    raise ProcessorConfigError(
        f"{origin} is not a VideoProcessor or AudioProcessor subclass, nor a function",
        processor=name,
    )


def build_pipeline(spec: PipelineSpec, *, name: str = "", **options: Any) -> Pipeline:
    """Shortcut: a pipeline from a spec with a fresh default registry."""
    return ProcessorRegistry().build(spec, name=name, **options)
