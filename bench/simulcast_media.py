"""Simulcast media for the benchmark: pre-encoded VP8 layers, and an RTP writer that sends
them as a browser does (one SSRC per layer, the rid header extension, no a=ssrc in SDP).

aiortc cannot send simulcast: one RTCRtpSender, one SSRC, one encoder. So the publisher
(bench/simulcast_publisher.py) negotiates one send-only video m-line with aiortc, rewrites
the offer before POSTing it (rid lines, the rid extension, no a=ssrc), and writes every
layer's RTP itself through the peer connection's DTLS transport (SRTP is set up for any
outbound SSRC). Each layer is a file encoded once with PyAV and cached in bench/out/:

- a normal stream (keyframe every 2.5 s, like the broadcast benchmark's input), and
- an all-intra encode of the same pictures at the same bitrate, from which a keyframe of
  the current picture is taken when the gateway asks for one (PLI/FIR for that layer's
  SSRC), so that layer switches wait one frame, not a GOP, as with a live encoder. The
  following delta frames reference the normal stream's picture, not that keyframe: nothing
  here decodes, so nothing notices.

Pure helpers (SDP rewriting, RTCP keyframe-request parsing) are unit-tested in
tests/unit/test_bench_simulcast.py.
"""

from __future__ import annotations

import fractions
import random
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import av

from .media import FPS, HEIGHT, OUT_DIR, WIDTH, SyntheticSource, frame_key

RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
RID_EXTENSION_ID = 10
SECONDS = 10
GOP = 75  # 2.5 s, as bench/media.py's input
VIDEO_CLOCK = 90000
PACKET_MAX = 1200 - 28  # aiortc's RTP payload budget (codecs/base.py), minus our headers


@dataclass(frozen=True)
class LayerSpec:
    rid: str
    width: int
    height: int
    bitrate: int


# Smallest first, as Chromium lists quarter, half and full encodings.
LAYERS = (
    LayerSpec("q", WIDTH // 4, HEIGHT // 4, 150_000),
    LayerSpec("h", WIDTH // 2, HEIGHT // 2, 500_000),
    LayerSpec("f", WIDTH, HEIGHT, 1_500_000),
)


def _encoder(spec: LayerSpec, gop: int) -> av.VideoCodecContext:
    codec = av.CodecContext.create("libvpx", "w")
    assert isinstance(codec, av.VideoCodecContext)
    codec.width, codec.height = spec.width, spec.height
    codec.pix_fmt = "yuv420p"
    codec.time_base = fractions.Fraction(1, FPS)
    codec.framerate = fractions.Fraction(FPS, 1)
    codec.bit_rate = spec.bitrate
    codec.gop_size = gop
    codec.qmin, codec.qmax = 2, 56
    codec.thread_count = 2
    codec.options = {
        "deadline": "realtime",
        "cpu-used": "8",
        "lag-in-frames": "0",
        "bufsize": str(spec.bitrate),
        "minrate": str(spec.bitrate),
        "maxrate": str(spec.bitrate),
        "undershoot-pct": "100",
        "overshoot-pct": "15",
        "keyint_min": str(gop),
    }
    return codec


@dataclass
class LayerFrames:
    """One layer, in memory: per frame number the normal frame and a keyframe of it."""

    spec: LayerSpec
    frames: list[tuple[bytes, bool]]  # (data, keyframe)
    intra: list[bytes]

    @property
    def kbps(self) -> float:
        return sum(len(d) for d, _ in self.frames) * 8 / (len(self.frames) / FPS) / 1000


def _path(spec: LayerSpec, kind: str) -> Path:
    return OUT_DIR / f"simulcast_{spec.rid}_{spec.width}x{spec.height}_{kind}_{SECONDS}s.ivf"


def _write_ivf(path: Path, spec: LayerSpec, frames: list[bytes], keys: list[bool]) -> None:
    """Frames in an IVF file (VP8's own container: header, then size + pts + frame)."""
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as out:
        out.write(
            b"DKIF"
            + struct.pack("<HH4sHHIIII", 0, 32, b"VP80", spec.width, spec.height, FPS, 1, 0, 0)
        )
        for index, (data, key) in enumerate(zip(frames, keys, strict=True)):
            # The pts' top bit marks a keyframe (our own convention; IVF has no flag).
            out.write(struct.pack("<IQ", len(data), index | (int(key) << 63)) + data)
    tmp.rename(path)


def _read_ivf(path: Path) -> list[tuple[bytes, bool]]:
    data = path.read_bytes()
    pos = 32
    frames: list[tuple[bytes, bool]] = []
    while pos < len(data):
        size, pts = struct.unpack_from("<IQ", data, pos)
        pos += 12
        frames.append((data[pos : pos + size], bool(pts >> 63)))
        pos += size
    return frames


def ensure_layers() -> list[LayerFrames]:
    """Every layer, encoded (once, cached in bench/out/) from the broadcast benchmark's
    synthetic 720p source, scaled down for the smaller layers."""
    missing = [s for s in LAYERS if not (_path(s, "gop").exists() and _path(s, "intra").exists())]
    if missing:
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        source = SyntheticSource()
        for spec in missing:
            for kind, gop in (("gop", GOP), ("intra", 1)):
                codec = _encoder(spec, gop)
                datas: list[bytes] = []
                keys: list[bool] = []
                for number in range(SECONDS * FPS):
                    frame = source.frame(number)
                    if (spec.width, spec.height) != (WIDTH, HEIGHT):
                        frame = frame.reformat(spec.width, spec.height)
                    frame.pts = number
                    frame.time_base = fractions.Fraction(1, FPS)
                    if gop == 1 or number == 0:
                        frame.pict_type = av.video.frame.PictureType.I
                    packets = list(codec.encode(frame))
                    for packet in packets:
                        datas.append(bytes(packet))
                        keys.append(bool(packet.is_keyframe))
                for packet in codec.encode(None):
                    datas.append(bytes(packet))
                    keys.append(bool(packet.is_keyframe))
                if len(datas) != SECONDS * FPS:
                    raise RuntimeError(f"layer {spec.rid}: {len(datas)} frames encoded")
                _write_ivf(_path(spec, kind), spec, datas, keys)
    layers = []
    for spec in LAYERS:
        frames = _read_ivf(_path(spec, "gop"))
        intra = [d for d, _ in _read_ivf(_path(spec, "intra"))]
        layers.append(LayerFrames(spec, frames, intra))
    return layers


def simulcast_offer(sdp: str, rids: list[str] | None) -> str:
    """aiortc's offer as a browser's simulcast offer: the video section without a=ssrc and
    a=ssrc-group lines (Chromium signals no SSRC for simulcast), with the rid header
    extension at RID_EXTENSION_ID and, for ``rids``, their a=rid and a=simulcast lines.
    ``rids`` None: one stream (no rids, no rid extension), SSRCs still unsignalled."""
    out: list[str] = []
    section = ""
    for line in sdp.splitlines():
        if line.startswith("m="):
            section = line.split()[0][2:]
        if section == "video" and line.startswith(("a=ssrc:", "a=ssrc-group:")):
            continue
        out.append(line)
        if section == "video" and line.startswith("a=mid:") and rids:
            out.append(f"a=extmap:{RID_EXTENSION_ID} {RID_URI}")
            out.extend(f"a=rid:{rid} send" for rid in rids)
            out.append("a=simulcast:send " + ";".join(rids))
    return "\r\n".join(out) + "\r\n"


def extension_ids(sdp: str, kind: str = "video") -> dict[str, int]:
    """uri -> id of the a=extmap lines in the ``kind`` section(s) of ``sdp``."""
    found: dict[str, int] = {}
    section = ""
    for line in sdp.splitlines():
        if line.startswith("m="):
            section = line.split()[0][2:]
        elif section == kind and line.startswith("a=extmap:"):
            number, uri = line[len("a=extmap:") :].split()[:2]
            found[uri] = int(number.split("/")[0])
    return found


def keyframe_requests(data: bytes) -> list[tuple[str, int]]:
    """The keyframe requests in one compound RTCP datagram: ("pli", media SSRC) and
    ("fir", SSRC) per FIR entry; anything else (or a truncated packet) is skipped."""
    found: list[tuple[str, int]] = []
    pos = 0
    while pos + 4 <= len(data):
        first, packet_type, length = struct.unpack_from("!BBH", data, pos)
        end = pos + 4 * (length + 1)
        if first >> 6 != 2 or end > len(data):
            break
        fmt = first & 0x1F
        if packet_type == 206 and fmt == 1 and end - pos >= 12:
            found.append(("pli", struct.unpack_from("!I", data, pos + 8)[0]))
        elif packet_type == 206 and fmt == 4:
            for entry in range(pos + 12, end - 7, 8):
                found.append(("fir", struct.unpack_from("!I", data, entry)[0]))
        pos = end
    return found


def vp8_payloads(frame: bytes, picture_id: int) -> list[bytes]:
    """RFC 7741 payloads of one frame: descriptor X=1 S on the first, I with a 15-bit
    picture ID (as aiortc's packetizer writes them)."""
    payloads = []
    for offset in range(0, len(frame), PACKET_MAX):
        start = 0x10 if offset == 0 else 0x00
        descriptor = bytes([0x80 | start, 0x80, 0x80 | (picture_id >> 8) & 0x7F, picture_id & 0xFF])
        payloads.append(descriptor + frame[offset : offset + PACKET_MAX])
    return payloads


def rtp_packet(
    payload_type: int,
    marker: bool,
    sequence: int,
    timestamp: int,
    ssrc: int,
    extensions: list[tuple[int, bytes]],
    payload: bytes,
) -> bytes:
    """One RTP packet with one-byte header extensions (RFC 8285)."""
    ext = b"".join(
        bytes([(number << 4) | (len(value) - 1)]) + value for number, value in extensions
    )
    ext += b"\x00" * (-len(ext) % 4)
    header = struct.pack(
        "!BBHII",
        0x90 if ext else 0x80,
        (0x80 if marker else 0) | payload_type,
        sequence & 0xFFFF,
        timestamp & 0xFFFFFFFF,
        ssrc,
    )
    if ext:
        header += struct.pack("!HH", 0xBEDE, len(ext) // 4) + ext
    return header + payload


def abs_send_time() -> bytes:
    """24-bit 6.18 fixed-point seconds (the abs-send-time extension's value)."""
    value = int(time.time() * (1 << 18)) & 0xFFFFFF
    return value.to_bytes(3, "big")


@dataclass
class LayerSender:
    """The RTP state of one layer: its own SSRC, sequence, timestamp origin, picture IDs
    (each layer counts its own, as a browser's encoders do)."""

    layer: LayerFrames
    rid: str | None  # None: no rid extension (a plain stream)
    ssrc: int = field(default_factory=lambda: random.randint(1, 0xFFFFFFFF))
    sequence: int = field(default_factory=lambda: random.randint(0, 0xFFFF))
    timestamp_origin: int = field(default_factory=lambda: random.randint(0, 0xFFFFFFFF))
    picture_id: int = field(default_factory=lambda: random.randint(0, 0x7FFF))
    want_keyframe: bool = False
    frames: int = 0
    keyframes: int = 0
    keyframes_on_request: int = 0
    requests: int = 0
    bytes: int = 0
    packets: int = 0

    def packets_for(
        self, number: int, payload_type: int, ids: dict[str, int], mid: str
    ) -> tuple[list[bytes], bytes, bool]:
        """Frame ``number`` (of the looping file) as RTP packets; the frame and whether
        it is a keyframe."""
        index = number % len(self.layer.frames)
        data, key = self.layer.frames[index]
        if self.want_keyframe and not key:
            data, key = self.layer.intra[index], True
            self.keyframes_on_request += 1
        self.want_keyframe = False
        timestamp = self.timestamp_origin + number * (VIDEO_CLOCK // FPS)
        payloads = vp8_payloads(data, self.picture_id)
        self.picture_id = (self.picture_id + 1) & 0x7FFF
        out = []
        for i, payload in enumerate(payloads):
            extensions = [(ids[MID_URI], mid.encode())] if MID_URI in ids else []
            if ABS_SEND_TIME_URI in ids:
                extensions.append((ids[ABS_SEND_TIME_URI], abs_send_time()))
            if self.rid is not None:
                extensions.append((RID_EXTENSION_ID, self.rid.encode()))
            out.append(
                rtp_packet(
                    payload_type,
                    i == len(payloads) - 1,
                    self.sequence,
                    timestamp,
                    self.ssrc,
                    extensions,
                    payload,
                )
            )
            self.sequence = (self.sequence + 1) & 0xFFFF
        self.frames += 1
        self.keyframes += key
        self.bytes += len(data)
        self.packets += len(out)
        return out, data, key


__all__ = [
    "LAYERS",
    "LayerFrames",
    "LayerSender",
    "LayerSpec",
    "ensure_layers",
    "extension_ids",
    "frame_key",
    "keyframe_requests",
    "simulcast_offer",
]
