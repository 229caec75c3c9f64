"""What an offer asks for and may have, decided from its SDP and the settings alone."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from aiortc import RTCRtpSender
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from aiortc.sdp import MediaDescription, SessionDescription

from ..config import MediaSettings
from ..errors import GatewayError, bad_request
from ..media.publisher import Publisher
from ..processing.renditions import Renditions
from ..signaling import sdp

# mediasoup keeps this apart too (ortc.ts): pure functions of SDP and capabilities, which the
# Session (peer connection, transceivers, tracks) applies. Unit-testable on SDP text alone.

SENDING = ("sendonly", "sendrecv")
RECEIVING = ("recvonly", "sendrecv")
DEFAULT_SOURCE = {"video": "camera", "audio": "microphone"}


@dataclass
class Negotiation:
    """What one offer/answer changed."""

    answer: str
    published: list[Publisher] = field(default_factory=list)
    unpublished: list[Publisher] = field(default_factory=list)


def capabilities(kind: str, codec: str, rtx: bool) -> list[RTCRtpCodecCapability]:
    """Every variant of ``codec`` aiortc supports, plus RTX if wanted."""
    caps = RTCRtpSender.getCapabilities(kind).codecs
    wanted = [c for c in caps if c.name.lower() == codec.lower()]
    return wanted + [c for c in caps if rtx and c.name.lower() == "rtx"]


def direction(m: MediaDescription) -> str:
    """The client's direction for an m-line; a rejected one (port 0) is inactive."""
    return "inactive" if m.port == 0 else (m.direction or "sendrecv")


def published_sources(description: SessionDescription) -> dict[str, str]:
    """What a one-purpose publish (WHIP) offer publishes: mid -> source (camera for video,
    microphone for audio)."""
    publish = {
        m.rtp.muxId: DEFAULT_SOURCE[m.kind]
        for m in description.media
        if m.kind in DEFAULT_SOURCE and direction(m) in SENDING
    }
    if not publish:
        raise bad_request("the offer publishes no audio or video", "invalid-sdp")
    return publish


def received_tracks(
    description: SessionDescription,
    tracks: list[Publisher],
    pipeline: str | None,
    processed: str | None,
) -> tuple[dict[str, Publisher], dict[str, str]]:
    """A one-purpose viewer (WHEP): per receiving m-line, the first of ``tracks`` of its
    kind (mid -> track), and the mids of ``processed`` kind received through ``pipeline``."""
    available = list(tracks)
    subscribe: dict[str, Publisher] = {}
    pipelines: dict[str, str] = {}
    for m in description.media:
        if m.kind in DEFAULT_SOURCE and direction(m) in RECEIVING:
            track = next((p for p in available if p.kind == m.kind), None)
            if track is not None:
                available.remove(track)
                subscribe[m.rtp.muxId] = track
                if pipeline and m.kind == processed:
                    pipelines[m.rtp.muxId] = pipeline
    if not subscribe:
        raise GatewayError(
            422, "nothing-to-receive", "the offer asks for no kind of media the room publishes"
        )
    if pipeline and not pipelines:
        raise GatewayError(
            422,
            "nothing-to-process",
            f"pipeline {pipeline!r} processes {processed}: the offer receives no such track",
        )
    return subscribe, pipelines


def publish_codec(media: MediaSettings, m: MediaDescription) -> str | None:
    """The codec a published m-line gets: the first accepted one it offers."""
    accepted = media.video_codecs if m.kind == "video" else media.audio_codecs
    offered = [c.name.lower() for c in m.rtp.codecs]
    return next((c for c in accepted if c.lower() in offered), None)


def planned_codecs(
    media: MediaSettings, description: SessionDescription, mids: Mapping[str, str]
) -> list[tuple[str, str]]:
    """(kind, codec) of each m-line in ``mids``, as the answer will publish it."""
    planned = []
    for m in description.media:
        if m.rtp.muxId in mids and m.kind in DEFAULT_SOURCE:
            codec = publish_codec(media, m)
            if codec is not None:
                planned.append((m.kind, codec))
    return planned


def check_offer(
    media: list[MediaDescription],
    publish: Mapping[str, str],
    subscribe: Mapping[str, Publisher],
    description: SessionDescription,
    pipelines: Mapping[str, str],
    known: Collection[str],
    settings: MediaSettings,
    pipeline_kind: Callable[[str], str],
) -> None:
    """Refuse the whole offer before anything changes: codecs in common for new published
    m-lines (``known``: mids already negotiated), and for each received track the m-line's
    kind and a codec it takes (as published, or what ``pipeline_kind``'s pipeline encodes)."""
    for m in media:
        mid = m.rtp.muxId
        offered = [c.name.lower() for c in m.rtp.codecs]
        if mid in publish and mid not in known and direction(m) in SENDING:
            accepted = settings.video_codecs if m.kind == "video" else settings.audio_codecs
            if not any(c.lower() in offered for c in accepted):
                raise GatewayError(
                    422,
                    "unsupported-codec",
                    f"no {m.kind} codec in common: the offer has "
                    f"{sdp.offered_codecs(description, m.kind)}, the gateway accepts {accepted}",
                )
        track = subscribe.get(mid)
        if track is not None and direction(m) in RECEIVING:
            if track.kind != m.kind:
                raise bad_request(
                    f"m-line {mid} is {m.kind}, track {track.id} is {track.kind}", "wrong-kind"
                )
            pipeline = pipelines.get(mid)
            if pipeline:
                kind = pipeline_kind(pipeline)
                if kind != track.kind:
                    raise bad_request(
                        f"pipeline {pipeline!r} processes {kind}, m-line {mid} is {m.kind}",
                        "wrong-kind",
                    )
                if Renditions.codec_for(track.kind, track.codec, offered) is None:
                    raise GatewayError(
                        422,
                        "unsupported-codec",
                        f"m-line {mid} accepts no codec the gateway encodes "
                        f"(it offers {sdp.offered_codecs(description, m.kind)})",
                    )
            elif track.codec.lower() not in offered:
                raise GatewayError(
                    422,
                    "unsupported-codec",
                    f"track {track.id} is {track.codec}, which m-line {mid} does not accept "
                    f"(it offers {sdp.offered_codecs(description, m.kind)})",
                )


def layer_of(track: Publisher, layer: str) -> Publisher:
    """A video track's simulcast layer ``layer`` (a rid); other kinds are as published."""
    if track.kind != "video":
        return track
    chosen = track.layers.get(layer)
    if chosen is None:
        raise GatewayError(
            404,
            "unknown-layer",
            f"track {track.id} has no simulcast layer {layer[:32]!r}"
            + (f" (it has {', '.join(sorted(track.layers))})" if track.layers else ""),
        )
    return chosen
