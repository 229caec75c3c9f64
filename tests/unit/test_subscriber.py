"""Subscriber: one viewer's egress, writing shared RTP payloads with its own RTP header."""

from __future__ import annotations

from aiortc.rtp import RtpPacket

from gateway.media.frames import OutgoingFrame, vp8_picture_id
from gateway.media.send_log import SendLog
from gateway.media.subscriber import HISTORY, Subscriber

BACKLOG = 10_000


class FakeOutput:
    """Stands in for tap.RtpOutput: records what the subscriber writes."""

    def __init__(self, ssrc: int = 0x11223344, payload_type: int = 96) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.sent: list[bytes] = []
        self.resent: list[bytes] = []
        self.reports: list[tuple[int, int, int, int]] = []
        self.backlog_bytes = 0
        self.connected = True
        self.send_log: SendLog | None = None
        self.transport_cc_id = 0
        self.round_trip_s: float | None = None

    def send(self, packet: bytes) -> bytes | None:
        if not self.connected:
            return None
        self.sent.append(packet)
        return b"SRTP" + packet

    def resend(self, protected: bytes) -> None:
        self.resent.append(protected)

    def backlog(self) -> int:
        return self.backlog_bytes

    def report(self, ntp_time: int, rtp_timestamp: int, packets: int, octets: int) -> None:
        self.reports.append((ntp_time, rtp_timestamp, packets, octets))

    def packets(self) -> list[RtpPacket]:
        return [RtpPacket.parse(p) for p in self.sent]


class Requests:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def frame(
    timestamp: int, keyframe: bool = False, packets: int = 1, name: str = "f", ntp: int = 7
) -> OutgoingFrame:
    payloads = [f"{name}{timestamp}.{i}".encode() for i in range(packets)]
    return OutgoingFrame(
        b"".join(payloads), payloads, timestamp, keyframe, sum(map(len, payloads)), ntp
    )


def started(kind: str = "video", **kwargs: object) -> tuple[Subscriber, FakeOutput, Requests]:
    requests = Requests()
    subscriber = Subscriber(kind, BACKLOG, requests, **kwargs)  # type: ignore[arg-type]
    output = FakeOutput()
    subscriber.start(output)  # type: ignore[arg-type]
    return subscriber, output, requests


# --- starting -------------------------------------------------------------------------------


async def test_push_before_start_is_ignored() -> None:
    requests = Requests()
    subscriber = Subscriber("video", BACKLOG, requests)
    subscriber.push(frame(0, keyframe=True))
    assert subscriber.frames_sent == 0
    assert subscriber.skipped_until_keyframe == 0
    assert requests.count == 0
    output = FakeOutput()
    subscriber.start(output)  # type: ignore[arg-type]
    assert output.sent == []
    assert subscriber.connected_at is not None


async def test_video_start_requests_a_keyframe_and_skips_deltas_until_it() -> None:
    subscriber, output, requests = started("video")
    assert requests.count == 1
    assert subscriber.keyframe_requests == 0  # counts the viewer's own PLI/FIR
    subscriber.push(frame(0))
    subscriber.push(frame(3000))
    assert output.sent == []
    assert subscriber.skipped_until_keyframe == 2
    subscriber.push(frame(6000, keyframe=True))
    subscriber.push(frame(9000))
    assert [p.payload for p in output.packets()] == [b"f6000.0", b"f9000.0"]
    assert subscriber.frames_sent == 2
    assert requests.count == 1
    ttff = subscriber.time_to_first_frame_ms
    assert ttff is not None and ttff >= 0


async def test_audio_start_needs_no_keyframe() -> None:
    subscriber, output, requests = started("audio")
    assert requests.count == 0
    subscriber.push(frame(0, keyframe=False))
    assert len(output.sent) == 1
    assert subscriber.skipped_until_keyframe == 0


# --- the RTP it writes ----------------------------------------------------------------------


async def test_video_packets_carry_the_viewers_header() -> None:
    subscriber, output, _ = started("video")
    subscriber.push(frame(0, keyframe=True, packets=3))
    subscriber.push(frame(3000, packets=2))
    packets = output.packets()
    assert [p.version for p in packets] == [2] * 5
    assert {p.ssrc for p in packets} == {0x11223344}
    assert {p.payload_type for p in packets} == {96}
    assert [p.marker for p in packets] == [0, 0, 1, 0, 1]
    assert [p.payload for p in packets] == [
        b"f0.0",
        b"f0.1",
        b"f0.2",
        b"f3000.0",
        b"f3000.1",
    ]
    first = packets[0].sequence_number
    assert [p.sequence_number for p in packets] == [(first + i) & 0xFFFF for i in range(5)]
    origin = packets[0].timestamp
    assert [p.timestamp for p in packets] == [origin] * 3 + [(origin + 3000) & 0xFFFFFFFF] * 2
    assert subscriber.packets_sent == 5
    assert subscriber.bytes_sent == sum(len(p.payload) for p in packets)
    assert subscriber.frames_sent == 2


async def test_audio_marker_only_on_the_first_packet() -> None:
    subscriber, output, _ = started("audio")
    for n in range(3):
        subscriber.push(frame(960 * n))
    assert [p.marker for p in output.packets()] == [1, 0, 0]


async def test_sequence_and_timestamp_wrap() -> None:
    subscriber, output, _ = started("video")
    subscriber._sequence = 0xFFFE
    subscriber._timestamp_origin = 0xFFFFFF00
    subscriber.push(frame(0x80, keyframe=True, packets=4))
    packets = output.packets()
    assert [p.sequence_number for p in packets] == [0xFFFE, 0xFFFF, 0, 1]
    assert {p.timestamp for p in packets} == {0xFFFFFF80}
    subscriber.push(frame(0x180))
    assert output.packets()[-1].timestamp == 0x80
    assert output.packets()[-1].sequence_number == 2


async def test_two_viewers_get_their_own_sequence_and_timestamp_origin() -> None:
    one, out_one, _ = started("video")
    two, out_two, _ = started("video")
    shared = frame(0, keyframe=True, packets=2)
    one.push(shared)
    two.push(shared)
    assert [p.payload for p in out_one.packets()] == [p.payload for p in out_two.packets()]
    headers = {(p.sequence_number, p.timestamp) for p in out_one.packets() + out_two.packets()}
    assert len(headers) == 4  # random origins: collisions are ~2**-48


async def test_each_frame_feeds_the_sender_report() -> None:
    subscriber, output, _ = started("video")
    subscriber.push(frame(0, keyframe=True, packets=2, ntp=111))
    subscriber.push(frame(3000, ntp=222))
    packets = output.packets()
    assert output.reports == [
        (111, packets[0].timestamp, 2, len(packets[0].payload) + len(packets[1].payload)),
        (222, packets[2].timestamp, 3, subscriber.bytes_sent),
    ]


async def test_nothing_is_counted_when_the_transport_is_down() -> None:
    subscriber, output, _ = started("audio")
    output.connected = False
    subscriber.push(frame(0))
    assert (subscriber.frames_sent, subscriber.packets_sent, subscriber.bytes_sent) == (0, 0, 0)
    assert output.reports == []


# --- back-pressure --------------------------------------------------------------------------


async def test_video_over_backlog_is_dropped_until_the_next_keyframe() -> None:
    subscriber, output, requests = started("video")
    subscriber.push(frame(0, keyframe=True))
    output.backlog_bytes = BACKLOG  # at the bound: still sent
    subscriber.push(frame(3000))
    assert len(output.sent) == 2
    output.backlog_bytes = BACKLOG + 1
    subscriber.push(frame(6000))
    assert subscriber.dropped_backlog == 1
    assert requests.count == 2
    output.backlog_bytes = 0
    subscriber.push(frame(9000))
    assert subscriber.skipped_until_keyframe == 1
    assert len(output.sent) == 2
    subscriber.push(frame(12000, keyframe=True))
    subscriber.push(frame(15000))
    assert [p.payload for p in output.packets()[2:]] == [b"f12000.0", b"f15000.0"]
    assert subscriber.stats()["dropped_backlog"] == 1


async def test_audio_over_backlog_drops_frames_and_asks_nothing() -> None:
    subscriber, output, requests = started("audio")
    output.backlog_bytes = BACKLOG + 1
    subscriber.push(frame(0))
    subscriber.push(frame(960))
    assert subscriber.dropped_backlog == 2
    output.backlog_bytes = 0
    subscriber.push(frame(1920))
    assert [p.payload for p in output.packets()] == [b"f1920.0"]
    assert requests.count == 0


async def test_upstream_loss_makes_video_wait_for_a_keyframe() -> None:
    subscriber, output, _ = started("video")
    subscriber.push(frame(0, keyframe=True))
    subscriber.frames_lost_upstream()
    subscriber.push(frame(3000))
    assert subscriber.skipped_until_keyframe == 1
    subscriber.push(frame(6000, keyframe=True))
    assert len(output.sent) == 2


async def test_upstream_loss_does_not_touch_audio() -> None:
    subscriber, output, _ = started("audio")
    subscriber.frames_lost_upstream()
    subscriber.push(frame(0))
    assert len(output.sent) == 1


# --- RTCP from the viewer -------------------------------------------------------------------


async def test_nack_resends_the_protected_packet() -> None:
    subscriber, output, _ = started("video")
    subscriber.push(frame(0, keyframe=True, packets=3))
    seqs = [p.sequence_number for p in output.packets()]
    subscriber.on_nack(seqs[1])
    assert output.resent == [b"SRTP" + output.sent[1]]
    assert subscriber.retransmissions == 1
    subscriber.on_nack((seqs[2] + 1) & 0xFFFF)  # never sent
    subscriber.on_nack((seqs[0] + HISTORY) & 0xFFFF)  # same slot, other packet
    assert subscriber.retransmissions == 1
    assert subscriber.nacks == 3  # every NACKed packet counts, answered or not


async def test_nack_for_a_packet_older_than_the_history_is_ignored() -> None:
    subscriber, output, _ = started("audio")
    subscriber.push(frame(0))
    first = output.packets()[0].sequence_number
    for n in range(1, HISTORY + 1):
        subscriber.push(frame(960 * n))
    subscriber.on_nack(first)
    assert output.resent == []
    subscriber.on_nack((first + 1) & 0xFFFF)
    assert output.resent == [b"SRTP" + output.sent[1]]


async def test_nack_before_start_is_ignored() -> None:
    subscriber = Subscriber("video", BACKLOG, Requests())
    subscriber.on_nack(1)
    assert subscriber.retransmissions == 0


async def test_viewer_keyframe_request_is_forwarded_and_counted() -> None:
    requests = Requests()
    subscriber = Subscriber("video", BACKLOG, requests)
    subscriber.on_keyframe_request()
    subscriber.on_keyframe_request()
    assert requests.count == 2
    assert subscriber.keyframe_requests == 2
    assert subscriber.stats()["keyframe_requests"] == 2


# --- stopping -------------------------------------------------------------------------------


async def test_stop_is_idempotent_and_ends_writing() -> None:
    stopped: list[Subscriber] = []
    subscriber, output, _ = started("video", on_stop=stopped.append)
    subscriber.stop()
    subscriber.stop()
    assert stopped == [subscriber] and subscriber.stopped
    subscriber.push(frame(0, keyframe=True))
    assert output.sent == []


# --- taking over a transceiver ---------------------------------------------------------------


async def test_continuing_subscriber_keeps_sequence_and_moves_time_forward() -> None:
    first, output, _ = started("video")
    first.push(frame(90000, keyframe=True))
    last = output.sent[-1]
    second = Subscriber("video", 1 << 20, lambda: None)
    second.continue_from(first)
    second.start(output)  # type: ignore[arg-type]
    # The new track's clock is unrelated (it started long ago): no jump back or far ahead.
    second.push(frame(5_000_000, keyframe=True))
    before, after = RtpPacket.parse(last), output.packets()[-1]
    assert after.sequence_number == (before.sequence_number + 1) & 0xFFFF
    assert after.timestamp == (before.timestamp + 3000) & 0xFFFFFFFF
    second.push(frame(5_003_000))
    assert output.packets()[-1].timestamp == (before.timestamp + 6000) & 0xFFFFFFFF


async def test_stats() -> None:
    subscriber, _, _ = started("video")
    subscriber.push(frame(0))
    subscriber.push(frame(3000, keyframe=True, packets=2))
    stats = subscriber.stats()
    ttff = stats.pop("time_to_first_frame_ms")
    assert ttff is not None and ttff >= 0
    assert stats == {
        "kind": "video",
        "frames_sent": 1,
        "packets_sent": 2,
        "bytes_sent": len(b"f3000.0") + len(b"f3000.1"),
        "dropped_backlog": 0,
        "skipped_until_keyframe": 1,
        "keyframe_requests": 0,
        "nacks": 0,
        "retransmissions": 0,
        "resends_skipped": 0,
        "padding_bytes": 0,
        "temporal_drops": 0,
        "paused_frames": 0,
    }


async def test_stats_before_start() -> None:
    subscriber = Subscriber("audio", BACKLOG, Requests())
    assert subscriber.stats()["time_to_first_frame_ms"] is None
    assert subscriber.stats()["frames_sent"] == 0


# --- transport-cc and pausing ---------------------------------------------------------------


async def test_transport_cc_numbers_every_packet_across_the_transport() -> None:
    log = SendLog(clock=lambda: 5.0)
    video, video_out, _ = started("video")
    audio, audio_out, _ = started("audio")
    for output in (video_out, audio_out):
        output.send_log, output.transport_cc_id = log, 3
    video.push(frame(0, keyframe=True, packets=2))
    audio.push(frame(960, packets=1))
    video.push(frame(3000, packets=1))
    numbers = []
    for raw in video_out.sent + audio_out.sent:
        assert raw[0] == 0x90  # the X bit
        assert raw[12:16] == b"\xbe\xde\x00\x01"
        assert raw[16] == 3 << 4 | 1
        numbers.append(int.from_bytes(raw[17:19], "big"))
    assert sorted(numbers) == [0, 1, 2, 3]
    # The payload is intact after the extension.
    assert video_out.sent[0][20:] == b"f0.0"
    assert log.packets == 4


async def test_paused_video_sends_nothing_and_resumes_at_a_keyframe() -> None:
    subscriber, output, requests = started("video")
    subscriber.push(frame(0, keyframe=True))
    subscriber.pause()
    subscriber.push(frame(3000))
    subscriber.push(frame(6000, keyframe=True))
    assert subscriber.paused_frames == 2
    assert len(output.sent) == 1
    asked = requests.count
    subscriber.resume()
    assert requests.count == asked + 1  # a keyframe, to resume on
    subscriber.push(frame(9000))
    subscriber.push(frame(12000, keyframe=True))
    assert [p.timestamp - output.packets()[0].timestamp for p in output.packets()] == [0, 12000]


async def test_a_packet_is_resent_at_most_once_per_round_trip() -> None:
    subscriber, output, _ = started("video")
    subscriber.push(frame(0, keyframe=True))
    sequence = output.packets()[0].sequence_number
    output.round_trip_s = 60.0  # clamped to MAX_RESEND_S
    subscriber.on_nack(sequence)
    subscriber.on_nack(sequence)  # within the round trip: the first copy is on its way
    assert len(output.resent) == 1
    assert (subscriber.nacks, subscriber.retransmissions, subscriber.resends_skipped) == (2, 1, 1)


async def test_a_switch_continues_the_timeline_by_capture_time() -> None:
    first, output, _ = started("video")
    one = frame(90000, keyframe=True)
    one.captured = 500.0
    first.push(one)
    before = output.packets()[-1]
    second = Subscriber("video", 1 << 20, lambda: None)
    second.continue_from(first)
    second.start(output)  # type: ignore[arg-type]
    # Another layer's clock, captured 40 ms after the last frame sent: 3600 ticks on.
    other = frame(5_000_000, keyframe=True)
    other.captured = 500.04
    second.push(other)
    assert output.packets()[-1].timestamp == (before.timestamp + 3600) & 0xFFFFFFFF
    # A made layer's first keyframe can be of the very frame last sent: a tick on, not back.
    third = Subscriber("video", 1 << 20, lambda: None)
    third.continue_from(second)
    third.start(output)  # type: ignore[arg-type]
    again = frame(7, keyframe=True)
    again.captured = 500.04
    third.push(again)
    assert output.packets()[-1].timestamp == (before.timestamp + 3601) & 0xFFFFFFFF
    # Capture times a second or more apart are not one clock: a frame interval on.
    fourth = Subscriber("video", 1 << 20, lambda: None)
    fourth.continue_from(third)
    fourth.start(output)  # type: ignore[arg-type]
    far = frame(9, keyframe=True)
    far.captured = 9000.0
    fourth.push(far)
    assert output.packets()[-1].timestamp == (before.timestamp + 3601 + 3000) & 0xFFFFFFFF


async def test_padding_probes_are_padding_only_packets_in_the_stream() -> None:
    log = SendLog(clock=lambda: 5.0)
    video, output, _ = started("video")
    assert video.pad(1000) == 0  # no transport-cc: the viewer could not judge them
    output.send_log, output.transport_cc_id = log, 3
    assert video.pad(1000) == 0  # nothing sent yet: no timestamp to pad at
    video.push(frame(3000, keyframe=True))
    media = output.packets()[-1]
    assert video.pad(500) == 500
    padding = output.sent[1:]
    assert [len(p) for p in padding] == [20 + 224, 20 + 224, 20 + 52]
    for index, raw in enumerate(padding):
        packet = RtpPacket.parse(raw)
        assert raw[0] == 0xB0  # V=2, P, X
        assert packet.sequence_number == (media.sequence_number + 1 + index) & 0xFFFF
        assert packet.timestamp == media.timestamp and packet.ssrc == media.ssrc
        assert packet.payload == b"" and packet.marker == 0
        assert raw[-1] == len(raw) - 20  # the padding counts itself
    assert log.packets == 4  # every one numbered for transport-cc
    assert video.stats()["padding_bytes"] == 500
    assert video.bytes_sent == len(b"f3000.0")  # padding is no payload (RTCP's octets)
    video.push(frame(6000))  # the next frame goes on after the padding's numbers
    assert output.packets()[-1].sequence_number == (media.sequence_number + 4) & 0xFFFF


def l1t3(number: int) -> int:
    """The temporal layer of frame ``number`` in VP8's L1T3 pattern: 0, 2, 1, 2, ..."""
    return (0, 2, 1, 2)[number % 4]


def vp8_frame(number: int, keyframe: bool = False) -> OutgoingFrame:
    """A VP8 frame as aiortc's packetizer writes it: picture ID ``number``, and a TID."""
    descriptor = bytes((0x90, 0xA0, 0x80 | (number >> 8) & 0x7F, number & 0xFF, l1t3(number) << 6))
    payload = descriptor + (b"\x00" if keyframe else b"\x01") + b"frame"
    return OutgoingFrame(
        payload[5:], [payload], number * 3000, keyframe, len(payload), 7, temporal_id=l1t3(number)
    )


async def test_a_frame_rate_cap_leaves_out_the_temporal_layers_above_it() -> None:
    video, output, _ = started("video")
    video.vp8 = True
    video.max_fps = 15  # of a 30 fps L1T3 source: layers 0 and 1
    for number in range(64):
        video.push(vp8_frame(number, keyframe=number == 0))
    sent = [vp8_picture_id(p.payload) for p in output.packets()]
    tids = [p.payload[4] >> 6 for p in output.packets()]
    # The first frames go out whole (too few to judge), then TID 2 is left out...
    assert 2 not in tids[-20:] and {0, 1} <= set(tids[-20:])
    assert video.temporal_drops > 20
    # ...and the picture IDs the viewer sees have no gap.
    assert sent == list(range(sent[0], sent[0] + len(sent)))
    video.max_fps = None  # lifted: everything again
    before = len(output.sent)
    for number in range(64, 72):
        video.push(vp8_frame(number))
    assert len(output.sent) - before == 8


async def test_without_temporal_layers_a_frame_rate_cap_leaves_nothing_out() -> None:
    video, output, _ = started("video")
    video.max_fps = 5
    video.push(frame(0, keyframe=True))
    for number in range(1, 40):
        video.push(frame(number * 3000))
    assert len(output.sent) == 40 and video.temporal_drops == 0
