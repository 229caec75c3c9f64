"""ViewerLink.on_rtcp: transport-cc taken out, reports and REMB read into the estimate."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from aiortc.rtp import (
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    pack_remb_fci,
)

from gateway.media.bandwidth import WINDOW_S
from gateway.media.congestion import NOT_RECEIVED, SMALL_DELTA, encode_feedback
from gateway.media.send_log import SendLog
from gateway.media.viewer_link import FEEDBACK_FRESH_S, START_BPS, ViewerLink
from tests.support.fake_clock import Clock

VIDEO, AUDIO, OTHER, VIEWER = 0x1111, 0x2222, 0x9999, 0x4242
BYE = bytes.fromhex("81cb000100004242")
NACK = struct.pack("!BBHIIHH", 0x81, 205, 3, VIEWER, VIDEO, 17, 0)  # RTPFB FMT 1: kept


class Link:
    def __init__(self, transport_cc: bool = True) -> None:
        self.clock = Clock()
        self.sent = [0]
        self.link = ViewerLink(lambda: self.sent[-1], self.clock)
        # add_output needs a real aiortc RtpOutput and DTLS transport; a unit test sets up
        # by hand what it would: the senders' SSRCs and, with transport-cc, the send log.
        self.link._ssrcs.update((VIDEO, AUDIO))
        if transport_cc:
            self.link.send_log = SendLog(self.clock)


def block(ssrc: int, fraction: int) -> RtcpReceiverInfo:
    return RtcpReceiverInfo(ssrc, fraction, 3, 1000, 20, 0, 0)


def rr(*blocks: RtcpReceiverInfo) -> bytes:
    return bytes(RtcpRrPacket(ssrc=VIEWER, reports=list(blocks)))


def sr(*blocks: RtcpReceiverInfo) -> bytes:
    info = RtcpSenderInfo(ntp_timestamp=1 << 40, rtp_timestamp=9, packet_count=5, octet_count=99)
    return bytes(RtcpSrPacket(ssrc=VIEWER, sender_info=info, reports=list(blocks)))


def remb(bitrate: int, ssrcs: list[int]) -> bytes:
    fci = pack_remb_fci(bitrate, ssrcs)
    return bytes(RtcpPsfbPacket(fmt=15, ssrc=VIEWER, media_ssrc=0, fci=fci))


def tcc(statuses: list[int], base: int = 0) -> bytes:
    deltas = [4] * sum(1 for s in statuses if s != NOT_RECEIVED)
    return encode_feedback(VIEWER, VIDEO, base, 0, 0, statuses, deltas)


def test_transport_cc_is_taken_out_and_the_rest_kept_byte_for_byte() -> None:
    t = Link()
    kept = [rr(block(VIDEO, 0)), NACK, remb(5_000_000, [VIDEO]), BYE]
    data = kept[0] + tcc([SMALL_DELTA]) + b"".join(kept[1:]) + tcc([SMALL_DELTA] * 3, base=1)
    assert t.link.on_rtcp(data) == b"".join(kept)
    assert (t.link.feedbacks, t.link.malformed) == (2, 0)


def test_feedback_is_read_against_the_send_log() -> None:
    t = Link()
    assert t.link.send_log is not None
    for _ in range(20):
        t.link.send_log.stamp(1000)
    t.clock.advance(WINDOW_S)
    t.link.on_rtcp(tcc([SMALL_DELTA] * 15 + [NOT_RECEIVED] * 5))
    estimate = t.link.estimate
    # 5 lost of 20; 15 kB got through in the 0.5 s window: 240 kbps.
    assert (estimate.loss, estimate.received_bps) == (0.25, 240_000)
    assert estimate.bps == START_BPS * (1 - 0.25 / 2)
    assert t.link.send_log.feedbacks == 1


def test_without_a_send_log_feedback_is_dropped_unread() -> None:
    t = Link(transport_cc=False)
    assert t.link.on_rtcp(tcc([SMALL_DELTA]) + BYE) == BYE
    assert (t.link.feedbacks, t.link.malformed) == (0, 0)


@pytest.mark.parametrize("report", [rr, sr])
def test_a_report_on_its_ssrcs_feeds_the_loss(report: Callable[..., bytes]) -> None:
    t = Link()
    t.clock.advance(1.0)
    t.sent.append(125_000)  # 1 Mbps sent over the second
    # 64/256 lost on video (the worst of its SSRCs), another SSRC's 200/256 ignored.
    data = report(block(AUDIO, 10), block(VIDEO, 64), block(OTHER, 200))
    assert t.link.on_rtcp(data) == data
    assert t.link.receiver_reports == 1
    # 1 Mbps sent less the 25% lost got through.
    assert (t.link.estimate.loss, t.link.estimate.received_bps) == (0.25, 750_000)
    assert t.link.estimate.bps == START_BPS * (1 - 0.25 / 2)


def test_a_report_on_other_ssrcs_only_is_ignored() -> None:
    t = Link()
    t.clock.advance(1.0)
    t.link.on_rtcp(rr(block(OTHER, 200)) + sr(block(OTHER, 128)))
    assert t.link.receiver_reports == 0
    assert (t.link.estimate.loss, t.link.estimate.bps) == (0.0, START_BPS)


def test_reports_are_not_used_while_transport_cc_feedback_is_fresh() -> None:
    t = Link()
    t.clock.advance(0.1)
    t.link.on_rtcp(tcc([SMALL_DELTA]))  # inside its window: not judged yet
    t.clock.advance(0.9)
    t.sent.append(125_000)
    t.link.on_rtcp(rr(block(VIDEO, 64)))
    assert t.link.receiver_reports == 1
    assert (t.link.estimate.loss, t.link.estimate.bps) == (0.0, START_BPS)
    t.clock.advance(FEEDBACK_FRESH_S + 0.1 - 0.9)  # 1.2 s after the last report
    t.sent.append(125_000 + 150_000)
    t.link.on_rtcp(rr(block(VIDEO, 64)))
    assert t.link.estimate.loss == 0.25
    assert t.link.estimate.received_bps == pytest.approx(750_000)


def test_a_report_right_after_the_last_is_not_judged() -> None:
    t = Link()
    t.clock.advance(0.15)  # within 0.2 s: too short a span to take a rate from
    t.link.on_rtcp(rr(block(VIDEO, 128)))
    assert t.link.receiver_reports == 1
    assert (t.link.estimate.loss, t.link.estimate.cuts) == (0.0, 0)


def test_a_remb_naming_its_ssrcs_caps_the_estimate() -> None:
    t = Link()
    t.link.on_rtcp(remb(300_000, [OTHER]))
    assert (t.link.estimate.remb_bps, t.link.estimate.bps) == (None, START_BPS)
    t.link.on_rtcp(remb(300_000, [OTHER, AUDIO]))
    assert (t.link.estimate.remb_bps, t.link.estimate.bps) == (300_000, 300_000)


def test_a_truncated_report_still_counts_its_whole_blocks() -> None:
    t = Link()
    t.clock.advance(1.0)
    whole = rr(block(VIDEO, 64), block(AUDIO, 0))
    data = bytes([whole[0], whole[1]]) + struct.pack("!H", 7) + whole[4:32]  # 1 of 2 blocks
    assert t.link.on_rtcp(data) == data
    assert (t.link.malformed, t.link.receiver_reports, t.link.estimate.loss) == (1, 1, 0.25)


BAD_TCC = bytearray(tcc([SMALL_DELTA]))
BAD_TCC[14:16] = b"\x00\x00"  # no packet status


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (BYE + b"\x41\xc9\x00\x01abcd", BYE + b"\x41\xc9\x00\x01abcd"),  # version 1
        (BYE + b"\x81\xc9\x00\x07abcdefgh", BYE + b"\x81\xc9\x00\x07abcdefgh"),  # too long
        (bytes(BAD_TCC) + BYE, BYE),
        (bytes(RtcpPsfbPacket(fmt=15, ssrc=1, media_ssrc=0, fci=b"XXXX\0\0\0\0")),) * 2,
    ],
)
def test_malformed_input_is_counted_and_never_raises(data: bytes, expected: bytes) -> None:
    t = Link()
    assert t.link.on_rtcp(data) == expected
    assert t.link.malformed == 1
    assert t.link.estimate.bps == START_BPS


def test_a_remb_claiming_more_ssrcs_than_it_carries_is_malformed() -> None:
    t = Link()
    fci = bytearray(pack_remb_fci(300_000, [VIDEO]))
    fci[4] = 2  # says two SSRCs, carries one
    data = bytes(RtcpPsfbPacket(fmt=15, ssrc=1, media_ssrc=0, fci=bytes(fci)))
    assert t.link.on_rtcp(data) == data
    assert t.link.malformed == 1
    assert t.link.estimate.remb_bps is None


def test_a_tail_too_short_for_a_header_is_kept_and_counted() -> None:
    t = Link()
    data = rr(block(VIDEO, 0)) + b"\x80\x00"
    assert t.link.on_rtcp(data) == data
    assert t.link.malformed == 1
