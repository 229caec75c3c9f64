"""SenderSlot: one sending transceiver, routed to whichever Subscriber feeds it now."""

from __future__ import annotations

import asyncio

import pytest
from aiortc.mediastreams import MediaStreamError

from gateway.media import tap
from gateway.media.frames import OutgoingFrame, vp8_picture_id
from gateway.media.sender_slot import SenderSlot
from gateway.media.subscriber import Subscriber

from .test_subscriber import FakeOutput, Requests, frame


async def test_subscriber_starts_when_the_sender_starts_and_only_once() -> None:
    slot = SenderSlot("video")
    requests = Requests()
    subscriber = Subscriber("video", 1 << 20, requests)
    slot.assign(subscriber)
    subscriber.push(frame(0, keyframe=True))
    assert subscriber.frames_sent == 0  # not started: no transport yet
    output = FakeOutput()
    slot._started(output)  # type: ignore[arg-type]
    slot._started(FakeOutput())  # type: ignore[arg-type]  # aiortc re-sends on renegotiation
    assert requests.count == 1
    subscriber.push(frame(0, keyframe=True))
    assert len(output.sent) == 1


async def test_switching_tracks_stops_the_old_subscriber_and_continues_the_stream() -> None:
    slot = SenderSlot("video")
    output = FakeOutput()
    slot._started(output)  # type: ignore[arg-type]
    first = Subscriber("video", 1 << 20, lambda: None)
    slot.assign(first)
    first.push(frame(9000, keyframe=True))
    second_requests = Requests()
    second = Subscriber("video", 1 << 20, second_requests)
    slot.assign(second)
    assert first.stopped and not second.stopped
    assert second_requests.count == 1  # a keyframe for the new track
    second.push(frame(777_000, keyframe=True))
    a, b = output.packets()
    assert b.sequence_number == (a.sequence_number + 1) & 0xFFFF
    assert b.timestamp == (a.timestamp + 3000) & 0xFFFFFFFF


async def test_pli_and_nack_go_to_the_current_subscriber() -> None:
    slot = SenderSlot("video")
    output = FakeOutput()
    slot._started(output)  # type: ignore[arg-type]
    slot._keyframe_request()  # nothing assigned: ignored
    subscriber = Subscriber("video", 1 << 20, lambda: None)
    slot.assign(subscriber)
    slot._keyframe_request()
    assert subscriber.keyframe_requests == 1
    subscriber.push(frame(0, keyframe=True))
    slot._nack(output.packets()[0].sequence_number)
    assert subscriber.retransmissions == 1


async def test_close_stops_the_subscriber_and_ends_aiortcs_send_loop() -> None:
    slot = SenderSlot("audio")
    subscriber = Subscriber("audio", 1 << 20, lambda: None)
    slot.assign(subscriber)
    waiting = asyncio.ensure_future(slot.track.recv())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    slot.close()
    assert subscriber.stopped and slot.subscriber is None
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(waiting, 1)
    assert slot.track.readyState == "ended"


async def test_a_slot_left_idle_still_continues_the_sequence() -> None:
    slot = SenderSlot("video")
    output = FakeOutput()
    slot._started(output)  # type: ignore[arg-type]
    first = Subscriber("video", 1 << 20, lambda: None)
    slot.assign(first)
    first.push(frame(0, keyframe=True))
    slot.assign(None)  # unsubscribed: the transceiver idles
    again = Subscriber("video", 1 << 20, lambda: None)
    slot.assign(again)
    again.push(frame(42, keyframe=True))
    a, b = output.packets()
    # SRTP would refuse a sequence number behind the last one it protected.
    assert b.sequence_number == (a.sequence_number + 1) & 0xFFFF


async def test_a_switch_keeps_the_current_subscriber_until_the_new_one_has_a_keyframe() -> None:
    slot = SenderSlot("video")
    output = FakeOutput()
    slot._started(output)  # type: ignore[arg-type]
    low = Subscriber("video", 1 << 20, lambda: None)
    slot.assign(low)
    low.push(frame(9000, keyframe=True))
    high_requests = Requests()
    high = Subscriber("video", 1 << 20, high_requests)
    slot.switch(high)
    assert high_requests.count == 1 and slot.standby is high  # a keyframe asked of it
    low.push(frame(12000))  # the current one goes on meanwhile: no gap
    high.push(frame(555_000))  # a delta of the new layer: nothing yet
    assert len(output.sent) == 2 and slot.subscriber is low and not low.stopped
    high.push(frame(558_000, keyframe=True))  # its keyframe: it takes over with it
    low.push(frame(15000))  # the old one is stopped
    assert slot.subscriber is high and low.stopped and slot.standby is None
    packets = output.packets()
    assert len(packets) == 3
    assert [p.sequence_number - packets[0].sequence_number for p in packets] == [0, 1, 2]
    assert packets[2].timestamp == (packets[1].timestamp + 3000) & 0xFFFFFFFF
    # A switch that is taken back before its keyframe: the standby ends, nothing changes.
    other = Subscriber("video", 1 << 20, lambda: None)
    slot.switch(other)
    slot.assign(slot.subscriber)
    assert other.stopped and slot.standby is None and slot.subscriber is high


async def test_a_switch_before_anything_is_sent_is_at_once() -> None:
    slot = SenderSlot("video")
    first = Subscriber("video", 1 << 20, lambda: None)
    slot.switch(first)  # no transport yet, nothing current
    assert slot.subscriber is first and slot.standby is None


def vp8_frames(packetize: object, timestamp: int, count: int) -> list[OutgoingFrame]:
    """VP8 frames as a Publisher makes them: its own packetizer, its own picture IDs."""
    out = []
    for index in range(count):
        data = (b"\x00" if index == 0 else b"\x01") + bytes(3000)  # a keyframe, then deltas
        payloads = packetize(data)  # type: ignore[operator]
        out.append(OutgoingFrame(data, payloads, timestamp + 3000 * index, index == 0, 3001, 0))
    return out


async def test_vp8_picture_ids_go_on_across_a_switch() -> None:
    slot = SenderSlot("video")
    output = FakeOutput()
    slot._started(output)  # type: ignore[arg-type]
    low, high = (Subscriber("video", 1 << 20, lambda: None) for _ in range(2))
    low.vp8 = high.vp8 = True
    slot.assign(low)
    low_packetizer, high_packetizer = tap.packetizer("VP8"), tap.packetizer("VP8")
    for _ in range(500):  # the high layer's own count is far from the low one's
        high_packetizer(b"\x01" + bytes(10))
    for f in vp8_frames(low_packetizer, 0, 3):
        low.push(f)
    slot.switch(high)
    for f in vp8_frames(high_packetizer, 90000, 3):
        high.push(f)
    ids = []
    for packet in output.packets():
        picture_id = vp8_picture_id(packet.payload)
        if not ids or ids[-1] != picture_id:
            ids.append(picture_id)
    assert ids == [0, 1, 2, 3, 4, 5]
    # Every packet of a frame carries its frame's ID; the payload past it is untouched.
    assert (
        output.packets()[-1].payload[4:]
        == vp8_frames(tap.packetizer("VP8"), 0, 3)[2].payloads[-1][4:]
    )
