"""Negotiation decided on SDP text alone: what an offer publishes and receives, and what is
refused before the peer connection is touched."""

from __future__ import annotations

import pytest

from gateway.config import MediaSettings
from gateway.errors import GatewayError
from gateway.media.feed import ReceiverFeed
from gateway.media.publisher import Publisher
from gateway.rooms import negotiation
from gateway.signaling.sdp import parse_offer

from .test_publisher_takeover import receiver
from .test_sdp import aiortc_offer, loopback_only  # noqa: F401 (an autouse fixture)


def track(kind: str, codec: str) -> Publisher:
    return Publisher(kind, codec, ReceiverFeed(receiver(kind), codec, kind), 0.5)


async def test_a_publish_offer_publishes_camera_and_microphone() -> None:
    description = parse_offer(await aiortc_offer("sendonly"), want="send")
    sources = negotiation.published_sources(description)
    assert sorted(sources.values()) == ["camera", "microphone"]
    settings = MediaSettings()
    assert negotiation.planned_codecs(settings, description, sources) == [
        ("video", "VP8"),
        ("audio", "opus"),
    ]


async def test_a_watch_offer_publishes_nothing() -> None:
    description = parse_offer(await aiortc_offer("recvonly"), want="any")
    with pytest.raises(GatewayError) as refused:
        negotiation.published_sources(description)
    assert refused.value.code == "invalid-sdp"


async def test_a_viewer_gets_one_track_of_each_kind_and_the_pipeline_of_its_kind() -> None:
    description = parse_offer(await aiortc_offer("recvonly"), want="recv")
    video, audio = track("video", "VP8"), track("audio", "opus")
    subscribe, pipelines = negotiation.received_tracks(description, [audio, video], "gray", "video")
    assert {t.kind for t in subscribe.values()} == {"video", "audio"}
    (mid,) = pipelines
    assert subscribe[mid] is video and pipelines[mid] == "gray"
    with pytest.raises(GatewayError) as refused:
        negotiation.received_tracks(description, [audio], "gray", "video")
    assert refused.value.code == "nothing-to-process"
    with pytest.raises(GatewayError) as refused:
        negotiation.received_tracks(description, [], None, None)
    assert refused.value.code == "nothing-to-receive"


async def test_an_offer_is_refused_before_anything_changes() -> None:
    watch = parse_offer(await aiortc_offer("recvonly"), want="recv")
    media = [m for m in watch.media if m.kind in negotiation.DEFAULT_SOURCE]
    video_mid = next(m.rtp.muxId for m in media if m.kind == "video")
    audio_mid = next(m.rtp.muxId for m in media if m.kind == "audio")
    settings = MediaSettings()

    def check(subscribe: dict[str, Publisher], pipelines: dict[str, str] | None = None) -> str:
        with pytest.raises(GatewayError) as refused:
            negotiation.check_offer(
                media, {}, subscribe, watch, pipelines or {}, (), settings, lambda _: "video"
            )
        return refused.value.code

    assert check({video_mid: track("audio", "opus")}) == "wrong-kind"
    # A track in a codec the m-line does not offer cannot be received on it.
    assert check({audio_mid: track("audio", "PCMX")}) == "unsupported-codec"
    assert check({audio_mid: track("audio", "opus")}, {audio_mid: "gray"}) == "wrong-kind"
    # What fits passes.
    negotiation.check_offer(
        media, {}, {video_mid: track("video", "VP8")}, watch, {}, (), settings, lambda _: "video"
    )
    publish = parse_offer(await aiortc_offer("sendonly"), want="send")
    only_h264 = MediaSettings(video_codecs=["H264"], audio_codecs=["PCMX"])
    with pytest.raises(GatewayError) as refused:
        negotiation.check_offer(
            publish.media,
            negotiation.published_sources(publish),
            {},
            publish,
            {},
            (),
            only_h264,
            lambda _: "video",
        )
    assert refused.value.code == "unsupported-codec" and "audio" in refused.value.message
