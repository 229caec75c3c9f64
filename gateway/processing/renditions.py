"""The gateway's named pipelines and live renditions: one per (track, pipeline), with an
encoder per codec its viewers take."""

from __future__ import annotations

import asyncio
import fnmatch
import logging
from collections.abc import Callable, Mapping
from typing import Any

from processors.assets import Assets
from processors.base import ParamError
from processors.pipeline import Pipeline, PipelineError, PipelineEvent
from processors.registry import ProcessorConfigError, ProcessorRegistry

from ..config import Config
from ..errors import GatewayError, bad_request, not_found
from ..media.publisher import Publisher
from .encoder import ENCODERS
from .output import RenditionOutput
from .rendition import Rendition, RenditionSettings
from .rung import LADDER, Rung

logger = logging.getLogger(__name__)

# What a rendition can be encoded to, per kind, in order of preference.
ENCODABLE = {"video": ("VP8", "H264"), "audio": ("opus",)}
# Parameter updates validated at once, each in a thread of the default executor (a watermark
# reads and decodes its image): a burst of them must not take every thread the gateway's
# other file work uses.
CONCURRENT_UPDATES = 2


class Renditions:
    """Creates a rendition on its first viewer and forgets it when it closes (last viewer)."""

    def __init__(self, config: Config, registry: ProcessorRegistry | None = None) -> None:
        self._settings = config.processing
        self._processors = registry or ProcessorRegistry(assets=Assets(self._settings.assets_dir))
        self._rendition_settings = RenditionSettings(
            video_bitrate=self._settings.video_bitrate_kbps * 1000,
            audio_bitrate=self._settings.audio_bitrate_kbps * 1000,
            encoder_threads=self._settings.encoder_threads,
            keyframe_interval_frames=max(1, round(self._settings.keyframe_interval_s * 30)),
            queue_frames=self._settings.queue_frames,
            keyframe_request_interval_s=config.media.keyframe_request_interval_ms / 1000,
        )
        # Built once at start (config.load already refused bad ones, files read) to learn
        # their kinds.
        self._kinds: dict[str, str] = {
            name: str(self._build(name).kind) for name in self._settings.pipelines
        }
        self._live: dict[str, Rendition] = {}
        # (room name, rendition, event): the registry tells the room's listeners.
        self.on_event: Callable[[str, Rendition, PipelineEvent], None] | None = None
        self.created = 0
        self._updates: asyncio.Semaphore | None = None  # made on the loop, at first use

    def _build(self, name: str) -> Pipeline:
        # On the event loop: deferred, so processors read their files (a watermark's image)
        # in the rendition's worker thread, not here.
        return self._processors.build(
            self._settings.pipelines[name],
            name=name,
            max_consecutive_failures=self._settings.max_consecutive_failures,
            deferred=True,
        )

    # -- names ----------------------------------------------------------------------------

    def kind(self, pipeline: str) -> str:
        """The kind of track ``pipeline`` processes; raises unknown-pipeline."""
        kind = self._kinds.get(pipeline)
        if kind is None:
            known = ", ".join(sorted(self._kinds)) or "none"
            raise bad_request(
                f"unknown pipeline {pipeline!r} (configured: {known})", "unknown-pipeline"
            )
        return kind

    def describe(self) -> list[dict[str, Any]]:
        return [
            {"name": name, "kind": kind, "processors": self._settings.pipelines[name]}
            for name, kind in sorted(self._kinds.items())
        ]

    @staticmethod
    def codec_for(kind: str, source_codec: str, offered: list[str]) -> str | None:
        """The codec to encode a rendition in for a viewer offering ``offered``: the
        track's own if the viewer takes it, else the first encodable one it offers."""
        lowered = [c.lower() for c in offered]
        if source_codec.lower() in lowered and source_codec in ENCODERS:
            return source_codec
        return next((c for c in ENCODABLE[kind] if c.lower() in lowered), None)

    # -- live renditions ------------------------------------------------------------------

    def ladder(self, room: str) -> tuple[Rung, ...]:
        """The rungs the gateway makes for single-layer video in ``room`` (the first
        ``processing.ladders`` entry whose pattern matches), largest first."""
        for ladder in self._settings.ladders:
            if fnmatch.fnmatchcase(room, ladder.room):
                rungs = (Rung(r.height, r.bitrate_kbps * 1000) for r in ladder.rungs)
                return tuple(sorted(rungs, key=lambda rung: -rung.height))
        return ()

    def acquire(
        self,
        source: Publisher,
        pipeline: str,
        codec: str,
        room: str,
        rung: Rung | None = None,
    ) -> RenditionOutput:
        """The output of (source, pipeline) in ``codec``, created if needed: one decode and
        one pipeline per (source, pipeline), one encoder per codec. With ``rung`` (and the
        LADDER pipeline): a made layer, one encoder per rung and codec after the same one
        decode. The caller subscribes to it at once (an output without viewers closes
        itself)."""
        kind = "video" if pipeline == LADDER else self.kind(pipeline)
        if kind != source.kind:
            raise bad_request(
                f"pipeline {pipeline!r} processes {kind}, track {source.id} is {source.kind}",
                "wrong-kind",
            )
        if source.closed:
            raise not_found(f"track {source.id} has ended", "unknown-track")
        rendition = self._live.get(f"{source.id}.{pipeline}")
        if rendition is not None and not rendition.closed:
            existing = next(
                (o for o in rendition.outputs if o.codec == codec and o.rung == rung), None
            )
            if existing is not None and not existing.closed:
                return existing
        # Each encoder is most of a rendition's cost: the limit counts them.
        if self.encoders >= self._settings.max_renditions:
            raise GatewayError(
                503,
                "too-many-renditions",
                f"the gateway processes at most {self._settings.max_renditions} renditions",
            )
        if rendition is None or rendition.closed:
            rendition = Rendition(
                source,
                pipeline,
                Pipeline([], name=LADDER) if pipeline == LADDER else self._build(pipeline),
                self._rendition_settings,
                room,
                self._closed,
            )
            rendition.on_event = self._event
            self._live[rendition.id] = rendition
            self.created += 1
            logger.info("rendition %s started (room %s)", rendition.id, room)
        return rendition.output(codec, rung)

    @property
    def encoders(self) -> int:
        return sum(len(r.outputs) for r in self._live.values())

    def _closed(self, rendition: Rendition) -> None:
        if self._live.get(rendition.id) is rendition:
            del self._live[rendition.id]
            logger.info("rendition %s stopped", rendition.id)

    def _event(self, rendition: Rendition, event: PipelineEvent) -> None:
        if self.on_event is not None:
            self.on_event(rendition.room, rendition, event)

    def get(self, rendition_id: str) -> Rendition:
        rendition = self._live.get(rendition_id)
        if rendition is None:
            raise not_found(f"no rendition {rendition_id!r}", "unknown-rendition")
        return rendition

    def made(self, source: Publisher) -> list[RenditionOutput]:
        """The made layers of ``source`` that run now (processing/ladder.py)."""
        rendition = self._live.get(f"{source.id}.{LADDER}")
        if rendition is None or rendition.closed:
            return []
        return [o for o in rendition.outputs if o.rung is not None and not o.closed]

    @property
    def live(self) -> list[Rendition]:
        return list(self._live.values())

    async def update(
        self, rendition_id: str, stage: str, params: Mapping[str, Any], enable: bool = False
    ) -> dict[str, Any]:
        """Change a live rendition's stage parameters (from its next frame); ``enable``
        turns a stage disabled after failures back on."""
        rendition = self.get(rendition_id)
        try:
            current = rendition.pipeline.stage(stage)
        except PipelineError as exc:
            raise not_found(str(exc), "unknown-stage") from exc
        applied: dict[str, Any] = {}
        if params:
            if self._updates is None:
                self._updates = asyncio.Semaphore(CONCURRENT_UPDATES)
            try:
                async with self._updates:
                    # Validation may read a file (a watermark's image): never on the loop.
                    changed = await asyncio.to_thread(rendition.pipeline.update, stage, **params)
            except (ParamError, ProcessorConfigError) as exc:
                raise bad_request(str(exc), "invalid-params") from exc
            applied = dict(changed)
        if enable:
            rendition.pipeline.enable(stage)
        return {
            "rendition": rendition.id,
            "stage": stage,
            "params": applied or dict(current.processor.params),
            "disabled": current.disabled,
        }

    def close(self) -> None:
        for rendition in self.live:
            rendition.close()

    def stats(self) -> dict[str, Any]:
        return {
            "live": len(self._live),
            "encoders": self.encoders,
            "created": self.created,
            "renditions": [r.stats() for r in self._live.values()],
        }
