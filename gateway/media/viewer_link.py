"""What one viewer's link carries: its RTCP read for transport-cc feedback, receiver
reports and REMB, and turned into a bandwidth estimate (media/bandwidth.py)."""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable
from typing import Any

from aiortc import RTCDtlsTransport
from aiortc.rtp import unpack_remb_fci

from . import tap
from .bandwidth import BandwidthEstimate
from .congestion import FMT_TRANSPORT_CC, RTCP_RTPFB, parse_feedback
from .send_log import SendLog

logger = logging.getLogger(__name__)

RTCP_SR, RTCP_RR, RTCP_PSFB = 200, 201, 206
FMT_REMB = 15  # PSFB application layer feedback (REMB)
# While transport-cc feedback comes, receiver reports' loss is not used: the feedback says
# the same per packet, ten times as often.
FEEDBACK_FRESH_S = 2.0
START_BPS = 10_000_000  # until told otherwise, a link carries what is sent
FLOOR_BPS = 30_000  # never estimated below this: audio and RTCP must get through


class ViewerLink:
    """One viewer peer connection's link: numbers what it sends once transport-cc is
    negotiated (``send_log``), reads every RTCP datagram it receives, and keeps the
    ``estimate``. ``sent_bytes`` is everything sent to it so far (the rate receiver
    reports' loss is taken from)."""

    def __init__(
        self, sent_bytes: Callable[[], int], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._sent_bytes = sent_bytes
        self.estimate = BandwidthEstimate(START_BPS, FLOOR_BPS, START_BPS, clock)
        self.send_log: SendLog | None = None
        self._ssrcs: set[int] = set()
        self._transport: RTCDtlsTransport | None = None
        self._feedback_at: float | None = None
        self._report_at = clock()
        self._report_bytes = 0
        self.feedbacks = 0
        self.receiver_reports = 0
        self.malformed = 0

    def add_output(self, output: tap.RtpOutput, transport_cc_id: int | None) -> None:
        """A sender of this viewer started: read its transport's RTCP (once), number its
        packets if the viewer takes transport-cc on its m-line."""
        self._ssrcs.add(output.ssrc)
        if self._transport is None:
            self._transport = output.transport
            tap.on_rtcp_received(output.transport, self.on_rtcp)
        if transport_cc_id is not None:
            if self.send_log is None:
                self.send_log = SendLog(self._clock)
            output.send_log = self.send_log
            output.transport_cc_id = transport_cc_id

    def on_rtcp(self, data: bytes) -> bytes:
        """One RTCP datagram: reads what matters here, returns it without the transport-cc
        feedback (see tap.on_rtcp_received)."""
        kept = bytearray()
        pos, size = 0, len(data)
        while pos + 4 <= size:
            first, packet_type, words = struct.unpack_from("!BBH", data, pos)
            end = pos + 4 + 4 * words
            if first >> 6 != 2 or end > size:
                self.malformed += 1
                kept += data[pos:]
                break
            packet = data[pos:end]
            fmt = first & 0x1F
            if packet_type == RTCP_RTPFB and fmt == FMT_TRANSPORT_CC:
                self._on_feedback(packet)
            else:
                if packet_type in (RTCP_RR, RTCP_SR):
                    self._on_report(packet, fmt, packet_type == RTCP_SR)
                elif packet_type == RTCP_PSFB and fmt == FMT_REMB:
                    self._on_remb(packet)
                kept += packet
            pos = end
        if pos < size and size - pos < 4:  # a tail too short for a header
            self.malformed += 1
            kept += data[pos:]
        return bytes(kept)

    def _on_feedback(self, packet: bytes) -> None:
        log = self.send_log
        if log is None:
            return
        try:
            feedback = parse_feedback(packet)
        except ValueError:
            self.malformed += 1
            return
        self.feedbacks += 1
        self._feedback_at = self._clock()
        summary = log.read(feedback)
        self.estimate.on_transport_feedback(
            summary.received, summary.lost, summary.received_bytes, summary.delays
        )

    def _on_report(self, packet: bytes, count: int, sender_report: bool) -> None:
        now = self._clock()
        start = 8 + (20 if sender_report else 0)
        worst: float | None = None
        for index in range(count):
            block = start + 24 * index
            if block + 24 > len(packet):
                self.malformed += 1
                break
            ssrc = int.from_bytes(packet[block : block + 4], "big")
            if ssrc in self._ssrcs:
                fraction = packet[block + 4] / 256
                worst = fraction if worst is None else max(worst, fraction)
        if worst is None:
            return
        self.receiver_reports += 1
        sent = self._sent_bytes()
        elapsed = now - self._report_at
        rate = (sent - self._report_bytes) * 8 / elapsed if elapsed > 0 else 0.0
        self._report_at, self._report_bytes = now, sent
        fresh = self._feedback_at is not None and now - self._feedback_at < FEEDBACK_FRESH_S
        if not fresh and elapsed > 0.2:
            self.estimate.on_receiver_report(worst, rate * (1 - worst))

    def _on_remb(self, packet: bytes) -> None:
        try:
            bitrate, ssrcs = unpack_remb_fci(packet[12:])
        except (ValueError, struct.error):
            self.malformed += 1
            return
        if self._ssrcs.intersection(ssrcs):
            self.estimate.on_remb(bitrate)

    def stats(self) -> dict[str, Any]:
        estimate = self.estimate
        return {
            "estimate_bps": int(estimate.bps),
            "transport_cc": self.send_log is not None,
            "feedback_received": self.feedbacks,
            "receiver_reports": self.receiver_reports,
            "loss": round(estimate.loss, 4),
            "received_bps": int(estimate.received_bps),
            "queue_ms": round(estimate.queue_s * 1000, 1),
            "remb_bps": int(estimate.remb_bps) if estimate.remb_bps is not None else None,
            "cuts": estimate.cuts,
            "overuses": estimate.overuses,
        }
