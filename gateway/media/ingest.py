"""Publisher ingest policy: transport-cc feedback, the bitrate bounds, and ingest stats."""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
from typing import TYPE_CHECKING, Any

from aiortc import RTCDtlsTransport, RTCRtpReceiver, RTCRtpTransceiver
from aiortc.sdp import MediaDescription

from . import tap
from .congestion import TRANSPORT_CC_URI, FeedbackRecorder, transport_sequence_number

if TYPE_CHECKING:
    from aiortc.sdp import SessionDescription

    from ..config import IngestSettings
    from .publisher import Publisher

logger = logging.getLogger(__name__)

SAMPLE_INTERVAL_S = 1.0  # stats windows, and how often the REMB cap is repeated


class _Transport:
    """One transport a publisher sends on: its arrival record and what we told it."""

    def __init__(self, transceiver: RTCRtpTransceiver) -> None:
        self.receiver = transceiver.receiver
        self.extension_id: int | None = None
        self.recorder: FeedbackRecorder | None = None
        self.video_payload_types: set[int] = set()
        self.media_ssrc = 0  # the publisher's video SSRC, named in feedback packets
        self.bytes = 0
        self.remb_bps: int | None = None  # the last REMB sent, ours or aiortc's
        self.remb_sent = 0
        self.remb_cap = False  # True: we send the REMB (the configured maximum)
        self.bitrate_bps = 0
        self._sampled = (time.monotonic(), 0)

    def use_transport_cc(self, extension_id: int) -> None:
        self.extension_id = extension_id
        if self.recorder is None:
            self.recorder = FeedbackRecorder()

    def on_rtp(self, rtp: bytes) -> None:
        """Every RTP packet of the transport, on the event loop, before aiortc routes it."""
        arrival_us = time.monotonic_ns() // 1000
        self.bytes += len(rtp)
        if len(rtp) >= 12 and rtp[1] & 0x7F in self.video_payload_types:
            self.media_ssrc = int.from_bytes(rtp[8:12], "big")
        if self.recorder is not None and self.extension_id is not None:
            seq = transport_sequence_number(rtp, self.extension_id)
            if seq is not None:
                self.recorder.record(seq, arrival_us)

    def on_aiortc_remb(self, bitrate: int) -> None:
        self.remb_bps = bitrate
        self.remb_sent += 1

    async def send_feedback(self) -> None:
        sender_ssrc = tap.rtcp_ssrc(self.receiver)
        if self.recorder is None or sender_ssrc is None:
            return
        for packet in self.recorder.feedback(sender_ssrc, self.media_ssrc):
            await tap.send_rtcp(self.receiver, packet)

    async def send_remb_cap(self, bitrate: int) -> None:
        if self.remb_cap and self.media_ssrc:
            await tap.send_remb(self.receiver, bitrate, [self.media_ssrc])
            self.remb_bps = bitrate
            self.remb_sent += 1

    def sample(self, now: float) -> None:
        then, count = self._sampled
        self.bitrate_bps = int((self.bytes - count) * 8 / max(now - then, 1e-3))
        self._sampled = (now, self.bytes)

    def stats(self) -> dict[str, Any]:
        recorder = self.recorder
        return {
            "transport_cc": recorder is not None,
            "estimate_bps": self.remb_bps,
            "remb_sent": self.remb_sent,
            "feedback_sent": recorder.packets_sent if recorder else 0,
            "transport_bitrate_bps": self.bitrate_bps,
        }


class _Meter:
    """Windowed ingest numbers of one published track, sampled every second."""

    def __init__(
        self, publisher: Publisher, receiver: RTCRtpReceiver, transport: _Transport
    ) -> None:
        self.publisher = publisher
        self.receiver = receiver
        self.transport = transport
        self._last: tuple[float, int, int, int, int] | None = None
        self.values: dict[str, Any] = {
            "received_bps": 0,
            "fps": 0.0,
            "packets_lost": 0,
            "loss": 0.0,
            "jitter_ms": 0.0,
        }

    def sample(self, now: float) -> None:
        publisher = self.publisher
        received, lost, jitter = tap.receive_statistics(self.receiver)
        current = (now, publisher.frames_in, publisher.bytes_in, received, lost)
        if self._last is not None:
            then, frames, size, received_before, lost_before = self._last
            elapsed = max(now - then, 1e-3)
            expected = (received - received_before) + (lost - lost_before)
            self.values = {
                "received_bps": int((publisher.bytes_in - size) * 8 / elapsed),
                "fps": round((publisher.frames_in - frames) / elapsed, 1),
                "packets_lost": lost,
                "loss": round(max(lost - lost_before, 0) / expected, 4) if expected > 0 else 0.0,
                "jitter_ms": round(jitter * 1000, 2),
            }
        self._last = current

    def stats(self) -> dict[str, Any]:
        return {**self.values, **self.transport.stats()}


class _Track:
    """A published track's transceiver and what was decided for it."""

    def __init__(self, transceiver: RTCRtpTransceiver, kind: str, meter: _Meter) -> None:
        self.transceiver = transceiver
        self.kind = kind
        self.meter = meter
        self.configured = False


class IngestControl:
    """The ingest policy of one session's published tracks.

    - transport-cc: when enabled and offered, the answer accepts the transport-wide-cc
      header extension and ``transport-cc`` feedback; every RTP packet's arrival is
      recorded and feedback goes back every ``feedback_interval_ms``. The browser's own
      estimator then sets its bitrate. aiortc's REMB (from its abs-send-time estimate,
      which keeps a 720p Chromium publisher at a few hundred kbps) is switched off; a REMB
      of the configured maximum is sent instead, each second, as a cap.
    - Without transport-cc (disabled, or not offered) aiortc's REMB stays as it is.
    - Bounds: ``b=AS``/``b=TIAS`` of the maximum on the published video sections of the
      answer (the browser's encoder and estimator stay under it), and
      ``x-google-min-bitrate`` for the minimum (libwebrtc's estimator stays above it).
    """

    def __init__(self, settings: IngestSettings, room: str) -> None:
        self._settings = settings
        self.max_kbps, self.min_kbps = bitrate_bounds(settings, room)
        self._tracks: list[_Track] = []
        self._transports: dict[int, _Transport] = {}
        self._task: asyncio.Task[None] | None = None
        self.closed = False

    def attach(self, transceiver: RTCRtpTransceiver, publisher: Publisher) -> None:
        """A newly published track (the ``track`` event, during setRemoteDescription)."""
        if self.closed:
            return
        meter = _Meter(publisher, transceiver.receiver, self._transport(transceiver))
        publisher.ingest_stats = meter.stats
        self._tracks.append(_Track(transceiver, publisher.kind, meter))
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    def negotiate(self, offer: SessionDescription) -> None:
        """Applies the policy to an offer, between setRemoteDescription and createAnswer.

        Every offer, first or renegotiation: aiortc renegotiates every transceiver's
        codecs and header extensions from scratch each time.
        """
        for track in self._tracks:
            transceiver = track.transceiver
            media = next((m for m in offer.media if m.rtp.muxId == transceiver.mid), None)
            if media is None or media.port == 0:
                continue
            extension_id = transport_cc_extension(media)
            offered_cc = transport_cc_payload_types(media)
            transport = self._transport(transceiver)
            feedback = self._settings.transport_cc and extension_id is not None and bool(offered_cc)
            if feedback and extension_id is not None:
                tap.accept_transport_cc(transceiver, extension_id, offered_cc)
                transport.use_transport_cc(extension_id)
            if track.kind == "video" and self.min_kbps:
                tap.add_codec_parameters(transceiver, {"x-google-min-bitrate": self.min_kbps})
            if track.kind == "video" and not track.configured:
                track.configured = True
                transport.video_payload_types.update(
                    c.payloadType
                    for c in media.rtp.codecs
                    if c.payloadType is not None and c.name.lower() != "rtx"
                )
                if feedback:
                    tap.disable_remb_estimate(transceiver.receiver)
                    transport.remb_cap = bool(self.max_kbps) and (
                        "goog-remb" in tap.negotiated_feedback(transceiver)
                    )
                else:
                    tap.on_remb_sent(transceiver.receiver, transport.on_aiortc_remb)

    def _transport(self, transceiver: RTCRtpTransceiver) -> _Transport:
        """The state of the transceiver's transport (shared by bundled tracks)."""
        dtls: RTCDtlsTransport = transceiver.receiver.transport
        found = self._transports.get(id(dtls))
        if found is None:
            found = _Transport(transceiver)
            tap.on_rtp_received(dtls, found.on_rtp)
            self._transports[id(dtls)] = found
        return found

    def shape_answer(self, answer: str) -> str:
        """Adds the bitrate maximum to the answer's published video sections."""
        mids = {t.transceiver.mid for t in self._tracks if t.kind == "video"}
        if not self.max_kbps or not mids:
            return answer
        return with_bandwidth(answer, {m for m in mids if m is not None}, self.max_kbps)

    async def _run(self) -> None:
        settings = self._settings
        next_sample = time.monotonic()
        while True:
            feedback = any(t.recorder is not None for t in self._transports.values())
            await asyncio.sleep(
                settings.feedback_interval_ms / 1000 if feedback else SAMPLE_INTERVAL_S
            )
            try:
                transports = list(self._transports.values())
                for transport in transports:
                    await transport.send_feedback()
                now = time.monotonic()
                if now >= next_sample:
                    next_sample = now + SAMPLE_INTERVAL_S
                    for transport in transports:
                        transport.sample(now)
                        await transport.send_remb_cap(self.max_kbps * 1000)
                    for track in self._tracks:
                        track.meter.sample(now)
            except Exception:
                logger.exception("ingest feedback failed")

    def close(self) -> None:
        self.closed = True
        if self._task is not None:
            self._task.cancel()
            self._task = None


def bitrate_bounds(settings: IngestSettings, room: str) -> tuple[int, int]:
    """(maximum, minimum) kbps for a room: its first matching pattern, else the defaults."""
    for bounds in settings.rooms:
        if fnmatch.fnmatchcase(room, bounds.room):
            return bounds.max_bitrate_kbps, bounds.min_bitrate_kbps
    return settings.max_bitrate_kbps, settings.min_bitrate_kbps


def with_bandwidth(sdp: str, mids: set[str], kbps: int) -> str:
    """``b=AS`` (kbps) and ``b=TIAS`` (bps) lines in the media sections of ``mids``."""
    sections: list[list[str]] = [[]]
    for line in sdp.splitlines():
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    out = sections[0]
    for section in sections[1:]:
        if any(line.startswith("a=mid:") and line[6:] in mids for line in section):
            # Ours replaces any bandwidth line; b= goes after c= (RFC 8866 order).
            section = [line for line in section if not line.startswith("b=")]
            at = next((i + 1 for i, line in enumerate(section) if line.startswith("c=")), 1)
            section[at:at] = [f"b=AS:{kbps}", f"b=TIAS:{kbps * 1000}"]
        out += section
    return "\r\n".join(out) + "\r\n"


def transport_cc_extension(m: MediaDescription) -> int | None:
    """The id an m-line's offer gives the transport-wide-cc header extension, if any."""
    return next((int(e.id) for e in m.rtp.headerExtensions if e.uri == TRANSPORT_CC_URI), None)


def transport_cc_payload_types(m: MediaDescription) -> set[int]:
    """The payload types an m-line's offer takes ``transport-cc`` feedback on."""
    return {
        c.payloadType
        for c in m.rtp.codecs
        if c.payloadType is not None and any(f.type == "transport-cc" for f in c.rtcpFeedback)
    }
