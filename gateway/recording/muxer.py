"""Writes encoded frames into a Matroska/WebM file with PyAV: no decoder, no encoder."""

from __future__ import annotations

import fractions
import os
from dataclasses import dataclass
from pathlib import Path

import av

MILLISECOND = fractions.Fraction(1, 1000)
# PyAV names of the codecs the gateway forwards, for mux-only streams.
_MUX_CODECS = {"VP8": "vp8", "H264": "h264"}


@dataclass
class TrackSpec:
    kind: str  # "audio" or "video"
    codec: str  # "VP8", "H264" or "opus", as the Publisher names it
    clock_rate: int


def container_format(tracks: list[TrackSpec]) -> tuple[str, str]:
    """(libavformat muxer, file extension): WebM when its codecs allow, else Matroska.

    WebM is the subset of Matroska browsers know by name (VP8/VP9/AV1 + Opus/Vorbis);
    H264 goes into Matroska proper: the same muxer, the same crash behaviour.
    """
    if all(t.codec in ("VP8", "opus") for t in tracks):
        return "webm", "webm"
    return "matroska", "mkv"


class Muxer:
    """One recording file. Not thread-safe: used by the recorder's worker thread only.

    Crash safety comes from Matroska's layout: the header goes first and every
    cluster (``cluster_ms`` of media at most) is complete once written; the segment
    size stays "unknown" until the trailer, which readers accept. A file cut after
    any cluster plays to that cluster's end. ``flush_packets`` hands each cluster to
    the kernel at once (a SIGKILL then loses nothing written); ``sync()`` fsyncs it.
    """

    def __init__(self, path: Path, tracks: list[TrackSpec], cluster_ms: int) -> None:
        self.path = path
        self.tracks = tracks
        self._format, _ = container_format(tracks)
        self._cluster_ms = cluster_ms
        self._container: av.container.OutputContainer | None = None
        self._streams: list[av.stream.Stream] = []
        self._fd: int | None = None

    @property
    def is_open(self) -> bool:
        return self._container is not None

    def open(self, video_size: tuple[int, int] | None) -> None:
        options = {
            # A cluster is written when it holds cluster_ms of media...
            "cluster_time_limit": str(self._cluster_ms),
            # ...and reaches the file at once, not when avio's buffer fills.
            "flush_packets": "1",
            # The interleaver waits for every track before writing; bound the wait,
            # or a silent track would hold video in memory for 10 s (its default).
            "max_interleave_delta": str(self._cluster_ms * 1000),
        }
        container = av.open(str(self.path), "w", format=self._format, options=options)
        try:
            for track in self.tracks:
                self._streams.append(self._add_stream(container, track, video_size))
        except Exception:
            container.close()
            raise
        self._container = container
        # fsync works on any descriptor of the file; libavformat keeps its own.
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)

    def _add_stream(
        self,
        container: av.container.OutputContainer,
        track: TrackSpec,
        video_size: tuple[int, int] | None,
    ) -> av.stream.Stream:
        if track.kind == "video":
            width, height = video_size or (0, 0)
            # No codec context: nothing is opened, the codec parameters are ours.
            # H264 extradata (avcC) is taken from the first keyframe's in-band SPS/PPS
            # by PyAV; Annex B packets are converted to length-prefixed by the muxer.
            stream = container.add_mux_stream(_MUX_CODECS[track.codec], width=width, height=height)
        else:
            # Opus in Matroska needs an OpusHead as CodecPrivate (Firefox, VLC refuse
            # the track without it), and PyAV sets extradata only through a codec
            # context: libopus is opened for its header and never fed a sample.
            stream = container.add_stream("libopus", rate=48000, layout="stereo")
        stream.time_base = MILLISECOND
        return stream

    def write(
        self, index: int, data: bytes, pts_ms: int, keyframe: bool, duration_ms: int = 0
    ) -> None:
        assert self._container is not None
        packet = av.Packet(data)
        packet.stream = self._streams[index]
        packet.time_base = MILLISECOND
        packet.pts = packet.dts = pts_ms
        packet.is_keyframe = keyframe
        if duration_ms:
            packet.duration = duration_ms
        self._container.mux(packet)

    def sync(self) -> int:
        """fsyncs what was written; returns the file's size."""
        if self._fd is None:
            return 0
        os.fsync(self._fd)
        return os.fstat(self._fd).st_size

    def close(self) -> None:
        """Writes the trailer (cues, duration): the file becomes seekable."""
        try:
            if self._container is not None:
                container, self._container = self._container, None
                container.close()
        finally:
            if self._fd is not None:
                fd, self._fd = self._fd, None
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
