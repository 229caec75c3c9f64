"""Simulcast layers: packets split by rid then learned SSRC, each layer reassembled alone,
and the default track following the best flowing layer with a continuous timeline."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.media.frames import EncodedFrame
from gateway.media.layers import STALE_S, BestLayerFeed, LayerFeed, LayerRouter


@dataclass
class Packet:
    sequence_number: int
    timestamp: int
    marker: int
    ssrc: int
    payload: bytes
    rid: str | None = None


def vp8(keyframe: bool, width: int = 0, height: int = 0) -> bytes:
    if not keyframe:
        return b"\x01" + b"\x00" * 20
    return b"\x00\x00\x00\x9d\x01\x2a" + width.to_bytes(2, "little") + height.to_bytes(2, "little")


class Layer:
    """One simulcast encoding as a sender numbers it: its own SSRC, sequence and clock."""

    def __init__(self, rid: str, ssrc: int, size: tuple[int, int], timestamp: int) -> None:
        self.rid, self.ssrc, self.size = rid, ssrc, size
        self.seq, self.timestamp, self.sent = 100, timestamp, 0

    def frame(self, keyframe: bool = False) -> tuple[Packet, bytes]:
        data = vp8(keyframe, *self.size)
        # Like Chromium: only the first packets of an SSRC name the rid.
        packet = Packet(
            self.seq,
            self.timestamp,
            1,
            self.ssrc,
            b"\x10" + data,
            self.rid if self.sent < 3 else None,
        )
        self.seq += 1
        self.timestamp += 3000
        self.sent += 1
        return packet, data


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def send(router: LayerRouter, layer: Layer, keyframe: bool = False) -> None:
    packet, data = layer.frame(keyframe)
    router.add(packet, packet.rid, data, 0)


def test_packets_are_routed_by_rid_then_by_the_ssrc_it_named() -> None:
    router = LayerRouter("VP8", ("q", "h"))
    got: dict[str, list[EncodedFrame]] = {"q": [], "h": []}
    for rid in got:
        LayerFeed(router, rid, lambda ssrc: None).start(got[rid].extend)
    q, h = Layer("q", 11, (160, 120), 1000), Layer("h", 22, (320, 240), 5000)
    for index in range(6):
        send(router, q, keyframe=index == 0)
        send(router, h, keyframe=index == 0)
    assert [f.ssrc for f in got["q"]] == [11] * 6 and [f.ssrc for f in got["h"]] == [22] * 6
    assert (router.resolution("q"), router.resolution("h")) == ((160, 120), (320, 240))
    assert (router.ssrc("q"), router.ssrc("h")) == (11, 22)
    # An SSRC no rid named, and a rid the offer did not list, go nowhere (counted).
    router.add(Packet(1, 1, 1, 99, b"\x10" + vp8(True, 8, 8)), None, vp8(True, 8, 8), 0)
    router.add(Packet(1, 1, 1, 98, b"\x10" + vp8(True, 8, 8)), "x", vp8(True, 8, 8), 0)
    assert (router.unrouted, router.unknown_rid) == (1, 1)


def test_a_rid_on_a_new_ssrc_is_learned_again() -> None:
    router = LayerRouter("VP8", ("q",))
    got: list[EncodedFrame] = []
    router.subscribe("q", got.extend)
    first = Layer("q", 11, (160, 120), 0)
    send(router, first, keyframe=True)
    restarted = Layer("q", 33, (160, 120), 0)  # the encoder restarted on a new SSRC
    send(router, restarted, keyframe=True)
    assert router.ssrc("q") == 33 and [f.ssrc for f in got] == [11, 33]
    assert not router.knows(11) and router.knows(33)


def test_rtx_of_a_layer_maps_to_its_media_ssrc() -> None:
    router = LayerRouter("VP8", ("q", "h"))
    router.learn_rtx(77, "h")
    router.learn_rtx(78, "nope")  # not a layer: ignored
    assert router.repaired_ssrc(77) is None  # h's media SSRC not known yet
    send(router, Layer("h", 22, (320, 240), 0), keyframe=True)
    assert router.repaired_ssrc(77) == 22 and router.repaired_ssrc(78) is None


def test_the_default_track_follows_the_best_layer_at_its_keyframe() -> None:
    clock = Clock()
    router = LayerRouter("VP8", ("q", "h"), clock=clock)
    plis: list[int] = []
    best = BestLayerFeed(router, plis.append, clock=clock)
    out: list[EncodedFrame] = []
    best.start(out.extend)
    q, h = Layer("q", 11, (160, 120), 1000), Layer("h", 22, (320, 240), 777_000)
    send(router, q, keyframe=True)  # only q flows: followed at once
    send(router, q)
    assert best.current == "q" and [f.ssrc for f in out] == [11, 11]
    # h starts: it is better once its keyframe shows its size; a keyframe is asked of it.
    send(router, h, keyframe=True)
    assert best.current == "h" and out[-1].ssrc == 22 and out[-1].discontinuity
    # The timeline goes on: no jump to h's own clock.
    assert 0 < out[-1].timestamp - out[1].timestamp < 90000
    send(router, q)  # q's frames are no longer the track's
    send(router, h)
    assert [f.ssrc for f in out[-2:]] == [22, 22] and best.switches == 1
    # h stops: after STALE_S q is the best that flows; its next keyframe is asked for.
    clock.now += STALE_S + 0.1
    plis.clear()
    send(router, q)
    assert plis == [11] and best.current == "h"
    send(router, q, keyframe=True)
    assert best.current == "q" and out[-1].ssrc == 11 and best.switches == 2
    # A keyframe request of the track goes to the layer it follows.
    plis.clear()
    best.request_keyframe(22)
    assert plis == [11]


def test_frames_given_to_the_default_track_are_copies() -> None:
    clock = Clock()
    router = LayerRouter("VP8", ("q",), clock=clock)
    layer_frames: list[EncodedFrame] = []
    router.subscribe("q", layer_frames.extend)
    best = BestLayerFeed(router, lambda ssrc: None, clock=clock)
    out: list[EncodedFrame] = []
    best.start(out.extend)
    send(router, Layer("q", 11, (160, 120), 1000), keyframe=True)
    assert layer_frames[0].timestamp == 1000 and out[0] is not layer_frames[0]


def test_sender_reports_give_each_layers_frames_a_capture_time_on_one_clock() -> None:
    router = LayerRouter("VP8", ("q", "h"))
    frames: dict[str, list[EncodedFrame]] = {"q": [], "h": []}
    for rid in frames:
        router.subscribe(rid, frames[rid].extend)
    # Two clocks far apart, h's about to wrap past 2**32.
    q, h = Layer("q", 11, (160, 120), 1000), Layer("h", 22, (320, 240), 0xFFFFF000)
    send(router, q, keyframe=True)
    send(router, h, keyframe=True)
    assert frames["q"][0].captured is None  # no report yet
    ntp = 3_900_000_000.5
    # At NTP time `ntp` q's clock read 4000 and h's 0xFFFFFFFF (their next frames' stamps).
    router.sender_report(11, int(ntp * 2**32), 4000)
    router.sender_report(22, int(ntp * 2**32), 0xFFFFF000 + 3000)
    router.sender_report(99, int(ntp * 2**32), 0)  # an SSRC no layer has: ignored
    send(router, q)
    send(router, h)  # its timestamp is 0xFFFFF000 + 3000, not yet wrapped
    send(router, h)  # wrapped: 0x00000BB8 - 0x1000
    assert abs(frames["q"][-1].captured - ntp) < 1e-6  # type: ignore[operator]
    assert abs(frames["h"][-2].captured - ntp) < 1e-6  # type: ignore[operator]
    assert abs(frames["h"][-1].captured - (ntp + 3000 / 90000)) < 1e-6  # type: ignore[operator]


def test_the_default_track_continues_by_capture_time_across_a_switch() -> None:
    clock = Clock()
    router = LayerRouter("VP8", ("q", "h"), clock=clock)
    best = BestLayerFeed(router, lambda ssrc: None, clock=clock)
    out: list[EncodedFrame] = []
    best.start(out.extend)
    q, h = Layer("q", 11, (160, 120), 1000), Layer("h", 22, (320, 240), 777_000)
    router.sender_report(11, 0, 0)  # before any packet: not known yet, ignored
    send(router, q, keyframe=True)
    send(router, h, keyframe=True)  # its SSRC learned; h now followed (no report: wall clock)
    send(router, q)
    router.sender_report(11, 1000 * 2**32, 1000)  # q's frame 1000 captured at 1000 s
    router.sender_report(22, 1000 * 2**32, 777_000 - 4500)  # h's is 50 ms ahead of q's
    # Back to q (h stale), then h again: each switch continues by the capture times.
    clock.now += STALE_S + 0.1
    send(router, q, keyframe=True)
    assert best.current == "q"
    last = out[-1]
    clock.now += 5.0  # a wall-clock stall in between must not matter
    send(router, h, keyframe=True)
    assert best.current == "h"
    # q's last frame out (its 3rd, ts 7000) was captured at 1000 + 6000/90000 s; h's
    # keyframe (its 2nd, ts 780000) at 1000 + 7500/90000 s: 1500 ticks later, whatever
    # the wall clock did.
    assert out[-1].timestamp - last.timestamp == 1500
