"""The encoded-frame tap on aiortc's receiver, and the take-over of its sender.

These run real aiortc peer connections on loopback: they pin what gateway/media/tap.py
assumes about aiortc's private internals.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import aioice.ice
import av
import pytest
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    VideoStreamTrack,
)
from aiortc.clock import current_ntp_time
from aiortc.codecs import depayload
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import VpxPayloadDescriptor
from aiortc.rtp import RtpPacket

from gateway.media import tap
from gateway.media.assembler import FrameAssembler
from gateway.media.frames import EncodedFrame, OutgoingFrame
from gateway.media.nack import NackScheduler
from gateway.media.sender_slot import IdleTrack
from gateway.media.subscriber import Subscriber
from gateway.signaling.ice import restrict_host_addresses

from .helpers import CODECS, SSRC, VideoSender, numbered_picture, picture_number, rtp


@pytest.fixture(autouse=True)
def loopback_only() -> Iterator[None]:
    saved = aioice.ice.get_host_addresses
    restrict_host_addresses(["127.0.0.1"])
    yield
    aioice.ice.get_host_addresses = saved


async def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)


@dataclass
class Link:
    """A sending and a receiving peer connection, the receiver tapped."""

    sender_pc: RTCPeerConnection
    receiver_pc: RTCPeerConnection
    sender: RTCRtpSender
    receiver: RTCRtpReceiver | None = None
    frames: list[EncodedFrame] = field(default_factory=list)
    sink_calls: int = 0
    assembler: FrameAssembler | None = None


def only(codec: str) -> list[object]:
    return [
        c
        for c in RTCRtpSender.getCapabilities("video").codecs
        if c.name in (codec, "rtx")
        and c.parameters.get("packetization-mode", "1") == "1"
        and c.parameters.get("profile-level-id", "42e01f") == "42e01f"
    ]


LinkFactory = Callable[..., Awaitable[Link]]
Sink = Callable[[Link, list[EncodedFrame]], None]


def keep(link: Link, frames: list[EncodedFrame]) -> None:
    link.frames.extend(frames)


@pytest.fixture
async def links() -> AsyncIterator[LinkFactory]:
    """Makes sender -> receiver links whose receiver is tapped; closes them afterwards."""
    created: list[Link] = []

    async def make(
        codec: str = "VP8",
        sink: Sink = keep,
        track: MediaStreamTrack | None = None,
        prepare: Callable[[RTCRtpSender], None] | None = None,
    ) -> Link:
        sender_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        receiver_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        transceiver = sender_pc.addTransceiver(track or VideoStreamTrack(), direction="sendonly")
        transceiver.setCodecPreferences(only(codec))
        link = Link(sender_pc, receiver_pc, transceiver.sender)
        created.append(link)
        if prepare is not None:
            prepare(transceiver.sender)

        def on_frames(frames: list[EncodedFrame]) -> None:
            link.sink_calls += 1
            sink(link, frames)

        @receiver_pc.on("track")
        def on_track(track: object) -> None:
            for t in receiver_pc.getTransceivers():
                if t.receiver.track is track:
                    link.receiver = t.receiver
                    link.assembler = FrameAssembler(codec, "video")
                    tap.tap_receiver(t.receiver, link.assembler, on_frames)

        await sender_pc.setLocalDescription(await sender_pc.createOffer())
        await receiver_pc.setRemoteDescription(sender_pc.localDescription)
        assert link.receiver is not None, "no track event during setRemoteDescription"
        await receiver_pc.setLocalDescription(await receiver_pc.createAnswer())
        await sender_pc.setRemoteDescription(receiver_pc.localDescription)
        return link

    yield make
    for link in created:
        await link.sender_pc.close()
        await link.receiver_pc.close()


def decode_all(codec: str, frames: list[EncodedFrame]) -> list[av.VideoFrame]:
    decoder = av.CodecContext.create(codec.lower(), "r")
    pictures: list[av.VideoFrame] = []
    for frame in frames:
        pictures.extend(decoder.decode(av.Packet(frame.data)))  # type: ignore[arg-type]
    pictures.extend(decoder.decode(None))  # type: ignore[arg-type]
    return pictures


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_complete_frames_reach_the_sink_and_nothing_is_decoded(
    links: LinkFactory, codec: str
) -> None:
    link = await links(codec)
    await wait_for(lambda: len(link.frames) >= 20)
    assert link.receiver is not None
    assert tap.frames_decoded(link.receiver) == 0
    assert tap.tap_errors(link.receiver) == 0
    frames = list(link.frames)
    assert len({f.ssrc for f in frames}) == 1
    timestamps = [f.timestamp for f in frames]
    assert timestamps == sorted(set(timestamps)), "frames out of order or repeated"
    assert not any(f.discontinuity for f in frames)
    assert frames[0].keyframe, "the stream did not start at aiortc's first keyframe"
    pictures = decode_all(codec, frames)
    assert len(pictures) == len(frames)
    assert {(p.width, p.height) for p in pictures} == {(640, 480)}


async def test_send_pli_makes_the_sender_produce_a_keyframe(links: LinkFactory) -> None:
    link = await links("VP8")
    plis: list[float] = []
    original = link.sender._send_keyframe

    def counting() -> None:
        plis.append(time.monotonic())
        original()

    link.sender._send_keyframe = counting  # type: ignore[method-assign]
    await wait_for(lambda: len(link.frames) >= 10)
    assert link.receiver is not None
    assert plis == [], "the tapped receiver sent a PLI by itself"
    last_before = link.frames[-1].timestamp
    await tap.send_pli(link.receiver, link.frames[0].ssrc)
    await wait_for(lambda: len(plis) == 1)
    await wait_for(lambda: any(f.keyframe and f.timestamp > last_before for f in link.frames))
    assert tap.frames_decoded(link.receiver) == 0


class Viewer:
    """A Subscriber on the sending side, its sender taken over with attach_sender."""

    def __init__(self) -> None:
        self.keyframe_requests = 0
        self.subscriber = Subscriber("video", 1 << 20, self._request)
        self.track = IdleTrack("video")  # what aiortc's sender holds
        self.starts = 0
        self.writes = 0
        self.lose: set[int] = set()  # indices of writes to the socket to lose

    def _request(self) -> None:
        self.keyframe_requests += 1

    def _start(self, output: tap.RtpOutput) -> None:
        self.starts += 1
        self.output = output
        write = output.resend

        def lossy(protected: bytes) -> None:
            self.writes += 1
            if self.writes - 1 not in self.lose:
                write(protected)

        output.resend = lossy  # type: ignore[method-assign]
        self.subscriber.start(output)

    def attach(self, sender: RTCRtpSender) -> None:
        tap.attach_sender(
            sender, self._start, self.subscriber.on_keyframe_request, self.subscriber.on_nack
        )


def encoded_frames(codec: str, count: int) -> list[OutgoingFrame]:
    """Pictures numbered 0..count-1, encoded by PyAV and packetized by tap.packetizer."""
    encoder = av.CodecContext.create("libvpx" if codec == "VP8" else "libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 320, 240, "yuv420p"
    encoder.time_base = fractions.Fraction(1, 90000)
    if codec == "H264":
        encoder.options = {"tune": "zerolatency"}
        encoder.profile = "Baseline"
    packetize = tap.packetizer(codec)
    packets = []
    for n in range(count):
        packets.extend(encoder.encode(numbered_picture(n)))
    packets.extend(encoder.encode(None))
    assert len(packets) == count
    return [
        OutgoingFrame(
            data=bytes(p),
            payloads=packetize(bytes(p)),
            timestamp=n * 3000,
            keyframe=p.is_keyframe,
            size=p.size,
            ntp_time=current_ntp_time(),
        )
        for n, p in enumerate(packets)
    ]


async def push_paced(viewer: Viewer, frames: list[OutgoingFrame]) -> None:
    for frame in frames:
        viewer.subscriber.push(frame)
        await asyncio.sleep(0.002)


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_attached_sender_delivers_forwarded_frames(links: LinkFactory, codec: str) -> None:
    viewer = Viewer()
    link = await links(codec, track=viewer.track, prepare=viewer.attach)
    await wait_for(lambda: viewer.starts == 1)
    assert viewer.keyframe_requests == 1  # a video viewer starts by asking for a keyframe
    assert viewer.output.backlog() == 0
    frames = encoded_frames(codec, 30)
    await push_paced(viewer, frames)
    await wait_for(lambda: len(link.frames) == 30)
    assert link.receiver is not None
    assert [f.timestamp - link.frames[0].timestamp for f in link.frames] == [
        n * 3000 for n in range(30)
    ]
    assert link.frames[0].ssrc == viewer.output.ssrc == link.sender._ssrc
    pictures = decode_all(codec, link.frames)
    assert [picture_number(p) for p in pictures] == list(range(30))
    assert {(p.width, p.height) for p in pictures} == {(320, 240)}
    assert viewer.subscriber.frames_sent == 30
    # aiortc's own sender statistics (and RTCP sender reports) see what was written.
    stats = [s for s in (await link.sender.getStats()).values() if s.type == "outbound-rtp"]
    assert [(s.packetsSent, s.bytesSent) for s in stats] == [
        (viewer.subscriber.packets_sent, viewer.subscriber.bytes_sent)
    ]
    assert tap.frames_decoded(link.receiver) == 0


async def test_attached_sender_routes_a_viewers_pli_and_nack(links: LinkFactory) -> None:
    viewer = Viewer()
    link = await links("VP8", track=viewer.track, prepare=viewer.attach)
    await wait_for(lambda: viewer.starts == 1)
    await push_paced(viewer, encoded_frames("VP8", 3))
    await wait_for(lambda: len(link.frames) == 3)
    assert link.receiver is not None and link.assembler is not None
    ssrc = link.frames[0].ssrc
    await tap.send_pli(link.receiver, ssrc)
    await wait_for(lambda: viewer.subscriber.keyframe_requests == 1)
    assert viewer.keyframe_requests == 2
    await tap.send_pli(link.receiver, ssrc)
    await wait_for(lambda: viewer.subscriber.keyframe_requests == 2)
    assert viewer.subscriber.retransmissions == 0


async def test_attached_sender_answers_nacks_for_lost_packets(links: LinkFactory) -> None:
    viewer = Viewer()
    link = await links("VP8", track=viewer.track, prepare=viewer.attach)
    await wait_for(lambda: viewer.starts == 1)
    frames = encoded_frames("VP8", 10)
    assert len(frames[0].payloads) > 6
    # Lose a packet in the middle of the keyframe and the first packet of frame 5.
    viewer.lose = {3, sum(len(f.payloads) for f in frames[:5])}
    await push_paced(viewer, frames)
    # aiortc's receiver NACKs the gaps; the subscriber resends from its history.
    await wait_for(lambda: len(link.frames) == 10)
    assert viewer.subscriber.retransmissions == 2
    assert not any(f.discontinuity for f in link.frames)
    assert [picture_number(p) for p in decode_all("VP8", link.frames)] == list(range(10))


async def test_a_failing_sink_does_not_break_the_transport(links: LinkFactory) -> None:
    def flaky(link: Link, frames: list[EncodedFrame]) -> None:
        if link.sink_calls % 3 == 0:
            raise RuntimeError("sink failure")
        link.frames.extend(frames)

    link = await links("VP8", sink=flaky)
    await wait_for(lambda: link.sink_calls >= 15)
    assert link.receiver is not None
    errors = tap.tap_errors(link.receiver)
    assert errors >= 4
    calls = link.sink_calls
    await wait_for(lambda: link.sink_calls >= calls + 6)
    assert tap.tap_errors(link.receiver) > errors
    assert link.receiver_pc.connectionState == "connected"
    assert link.sender_pc.connectionState == "connected"
    assert tap.frames_decoded(link.receiver) == 0


# --- without a network ----------------------------------------------------------------------


class FakeReceiver:
    """Just the private attributes tap_receiver replaces."""

    def __init__(self) -> None:
        import queue

        self._RTCRtpReceiver__jitter_buffer = object()
        self._RTCRtpReceiver__decoder_queue: queue.Queue[object] = queue.Queue()


def with_data(packet: RtpPacket) -> RtpPacket:
    packet._data = depayload(CODECS["VP8"], packet.payload)  # type: ignore[attr-defined]
    return packet


def test_tap_buffer_passes_complete_frames_and_returns_nothing_to_aiortc() -> None:
    receiver = FakeReceiver()
    got: list[EncodedFrame] = []
    tap.tap_receiver(receiver, FrameAssembler("VP8", "video"), got.extend)  # type: ignore[arg-type]
    buffer = receiver._RTCRtpReceiver__jitter_buffer
    packets = VideoSender().frame(3, keyframe=True)
    results = [buffer.add(with_data(p)) for p in packets]  # type: ignore[attr-defined]
    assert results == [(False, None)] * 3
    assert len(got) == 1 and got[0].keyframe and got[0].ssrc == SSRC
    assert tap.tap_errors(receiver) == 0  # type: ignore[arg-type]


def test_tap_buffer_swallows_and_counts_sink_errors() -> None:
    receiver = FakeReceiver()

    def broken(frames: list[EncodedFrame]) -> None:
        raise ValueError("boom")

    tap.tap_receiver(receiver, FrameAssembler("VP8", "video"), broken)  # type: ignore[arg-type]
    buffer = receiver._RTCRtpReceiver__jitter_buffer
    sender = VideoSender()
    for packet in sender.frame(1, keyframe=True) + sender.frame(1):
        assert buffer.add(with_data(packet)) == (False, None)  # type: ignore[attr-defined]
    assert tap.tap_errors(receiver) == 2  # type: ignore[arg-type]


def test_tap_buffer_survives_a_packet_without_data() -> None:
    receiver = FakeReceiver()
    got: list[EncodedFrame] = []
    tap.tap_receiver(receiver, FrameAssembler("VP8", "video"), got.extend)  # type: ignore[arg-type]
    buffer = receiver._RTCRtpReceiver__jitter_buffer
    (packet,) = VideoSender().frame(1, keyframe=True)
    assert buffer.add(packet) == (False, None)  # type: ignore[attr-defined]
    assert tap.tap_errors(receiver) == 0  # type: ignore[arg-type]


def test_counting_queue_counts_frames_not_the_stop_sentinel() -> None:
    receiver = FakeReceiver()
    tap.tap_receiver(receiver, FrameAssembler("VP8", "video"), lambda frames: None)  # type: ignore[arg-type]
    counter = receiver._RTCRtpReceiver__decoder_queue
    counter.put(("codec", "frame"))  # type: ignore[attr-defined]
    counter.put(None)  # type: ignore[attr-defined]
    assert tap.frames_decoded(receiver) == 1  # type: ignore[arg-type]
    assert counter.get() == ("codec", "frame")  # type: ignore[attr-defined]
    assert counter.get() is None  # type: ignore[attr-defined]


def test_untapped_receiver_reports_zero() -> None:
    receiver = FakeReceiver()
    assert tap.frames_decoded(receiver) == 0  # type: ignore[arg-type]
    assert tap.tap_errors(receiver) == 0  # type: ignore[arg-type]


def test_tap_refuses_a_receiver_without_the_expected_internals() -> None:
    with pytest.raises(RuntimeError, match="aiortc internals changed"):
        tap.tap_receiver(object(), FrameAssembler("VP8", "video"), lambda frames: None)  # type: ignore[arg-type]


def test_attach_refuses_a_sender_without_the_expected_internals() -> None:
    with pytest.raises(RuntimeError, match="aiortc internals changed: RTCRtpSender has no"):
        tap.attach_sender(object(), lambda o: None, lambda: None, lambda s: None)  # type: ignore[arg-type]


def test_vp8_packetizer_splits_frames_with_descriptors() -> None:
    packetize = tap.packetizer("VP8")
    data = bytes(range(256)) * 20  # 5120 bytes: several packets
    first = packetize(data)
    second = packetize(data)
    assert len(first) == 4  # 1296 bytes of frame per packet
    assert all(len(p) <= 1300 for p in first)
    descriptors = [VpxPayloadDescriptor.parse(p)[0] for p in first]
    assert [d.partition_start for d in descriptors] == [1, 0, 0, 0]
    assert {d.partition_id for d in descriptors} == {0}
    assert b"".join(depayload(CODECS["VP8"], p) for p in first) == data
    picture_ids = (
        {VpxPayloadDescriptor.parse(p)[0].picture_id for p in first},
        {VpxPayloadDescriptor.parse(p)[0].picture_id for p in second},
    )
    assert picture_ids == ({0}, {1})


def test_h264_packetizer_round_trips_nal_units() -> None:
    packetize = tap.packetizer("H264")
    (frame,) = [f for f in encoded_frames("H264", 1)]
    # Rebuild the Annex B access unit from the payloads, as a receiver does.
    data = b"".join(depayload(CODECS["H264"], p) for p in frame.payloads)
    units = list(H264Encoder._split_bitstream(data))
    assert [u[0] & 0x1F for u in units][:2] == [7, 8]  # SPS, PPS first
    assert 5 in [u[0] & 0x1F for u in units]
    assert all(len(p) <= 1300 for p in frame.payloads)
    big = b"\x00\x00\x00\x01\x65" + bytes(range(1, 256)) * 12
    payloads = packetize(big)
    assert len(payloads) > 1 and all(p[0] & 0x1F == 28 for p in payloads)  # FU-A
    assert b"".join(depayload(CODECS["H264"], p) for p in payloads) == big


def test_audio_packetizer_is_one_payload_per_frame() -> None:
    assert tap.packetizer("opus")(b"\xfc\x01\x02") == [b"\xfc\x01\x02"]


def test_packetized_vp8_reassembles_to_the_same_frame() -> None:
    frames = encoded_frames("VP8", 3)
    assembler = FrameAssembler("VP8", "video")
    out: list[EncodedFrame] = []
    seq = 65534
    for frame in frames:
        for i, payload in enumerate(frame.payloads):
            packet = rtp(seq, frame.timestamp, payload, i == len(frame.payloads) - 1)
            out.extend(assembler.add(packet, depayload(CODECS["VP8"], payload), 0))
            seq += 1
    assert [f.keyframe for f in out] == [True, False, False]
    assert [picture_number(p) for p in decode_all("VP8", out)] == [0, 1, 2]


def test_aiortc_still_has_the_internals_the_tap_uses() -> None:
    assert callable(getattr(RTCRtpReceiver, "_send_rtcp_pli", None))
    assert callable(getattr(RTCRtpSender, "_send_keyframe", None))
    assert callable(getattr(RTCRtpSender, "_retransmit", None))
    assert callable(getattr(RTCRtpReceiver, "_handle_rtp_packet", None))


async def test_selected_pair_names_the_nominated_candidates(links: LinkFactory) -> None:
    link = await links()
    assert link.receiver is not None
    await wait_for(lambda: tap.selected_pair(link.receiver_pc) is not None)
    receiving = tap.selected_pair(link.receiver_pc)
    sending = tap.selected_pair(link.sender_pc)
    assert receiving is not None and sending is not None
    assert receiving["local"]["type"] == receiving["remote"]["type"] == "host"
    assert receiving["local"]["address"].startswith("127.0.0.1:")
    # Both ends of one path: each side's local address is the other's remote.
    assert receiving["local"]["address"] == sending["remote"]["address"]
    assert receiving["remote"]["address"] == sending["local"]["address"]


async def test_selected_pair_is_none_before_ice() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    try:
        assert tap.selected_pair(pc) is None
    finally:
        await pc.close()


async def test_nack_scheduler_asks_again_for_a_lost_retransmission(links: LinkFactory) -> None:
    """A packet lost twice (the original and its first retransmission) still arrives:
    the receiver NACKs it again ~40 ms later without waiting for new loss (aiortc's own
    generator would not, and the assembler would give the frame up)."""
    viewer = Viewer()
    link = await links("VP8", track=viewer.track, prepare=viewer.attach)
    assert link.receiver is not None
    scheduler = NackScheduler()
    tap.replace_nack_generator(link.receiver, scheduler)
    nacks = tap.count_nacks(link.receiver)
    await wait_for(lambda: viewer.starts == 1)
    frames = encoded_frames("VP8", 40)
    write = viewer.output.resend
    lost_seq: list[int] = []
    drops = 0

    def lose_twice(protected: bytes) -> None:
        nonlocal drops
        seq = int.from_bytes(protected[2:4], "big")  # the RTP header is not encrypted
        if not lost_seq and viewer.subscriber.packets_sent == 3:
            lost_seq.append(seq)  # the keyframe's fourth packet
        if lost_seq and seq == lost_seq[0] and drops < 2:
            drops += 1
            return
        write(protected)

    viewer.output.resend = lose_twice  # type: ignore[method-assign]
    for frame in frames:
        viewer.subscriber.push(frame)
        await asyncio.sleep(0.01)  # packets keep arriving: they carry the retries
    await wait_for(lambda: len(link.frames) == 40)
    assert drops == 2 and viewer.subscriber.retransmissions >= 2
    assert scheduler.retries >= 1 and nacks.sequence_numbers >= 2
    assert not any(f.discontinuity for f in link.frames)
    assert [picture_number(p) for p in decode_all("VP8", link.frames)] == list(range(40))
    assert tap.retransmissions_received(link.receiver) == 0  # resent on the media SSRC


def test_nack_scheduler_needs_aiortcs_video_nack_generator() -> None:
    class NoGenerator:
        pass

    with pytest.raises(RuntimeError, match="internals changed"):
        tap.replace_nack_generator(NoGenerator(), NackScheduler())  # type: ignore[arg-type]
