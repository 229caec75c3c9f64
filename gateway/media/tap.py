"""The one place that touches aiortc's private internals (pinned to aiortc 1.16.x).

aiortc has no public hook for encoded frames on the receive side, and it turns a
viewer's PLI/FIR into a flag for an encoder that forwarded packets never meet.
Everything that reaches past its public API lives here, with its own tests, so a
version bump has one file to re-check.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from typing import Any, Protocol

from aiortc import (
    RTCCertificate,
    RTCDtlsTransport,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
)
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import (
    RTCRtcpFeedback,
    RTCRtpHeaderExtensionParameters,
    RTCRtpSendParameters,
)
from aiortc.rtp import (
    RTCP_PSFB_APP,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpSrPacket,
    RtpPacket,
    pack_remb_fci,
    unpack_remb_fci,
)

from .assembler import FrameAssembler
from .congestion import TRANSPORT_CC_URI
from .frames import EncodedFrame
from .nack import NackPolicy
from .send_log import SendLog


class LayerSink(Protocol):
    """Where a simulcast receiver's packets go (media/layers.py's LayerRouter)."""

    def add(self, packet: RtpPacket, rid: str | None, data: bytes, arrival_ms: int) -> None: ...

    def knows(self, ssrc: int) -> bool: ...

    def learn_rtx(self, rtx_ssrc: int, repaired_rid: str) -> None: ...

    def repaired_ssrc(self, rtx_ssrc: int) -> int | None: ...

    def sender_report(self, ssrc: int, ntp_timestamp: int, rtp_timestamp: int) -> None: ...


logger = logging.getLogger(__name__)

FrameSink = Callable[[list[EncodedFrame]], None]

# Name-mangled private attributes of RTCRtpReceiver in aiortc 1.16.
_JITTER_BUFFER_ATTR = "_RTCRtpReceiver__jitter_buffer"
_DECODER_QUEUE_ATTR = "_RTCRtpReceiver__decoder_queue"


class _CountingQueue:
    """Wraps the receiver's decoder queue to count frames that reach aiortc's decoder.

    The tap hands aiortc nothing to decode, so this stays 0 on the packet path; it
    is measured rather than assumed, so an aiortc change that reroutes frames to
    the decoder shows up in the stats and the tests.
    """

    def __init__(self, inner: queue.Queue[Any]) -> None:
        self._inner = inner
        self.frames = 0

    def put(self, item: Any) -> None:
        if item is not None:
            self.frames += 1
        self._inner.put(item)

    def get(self) -> Any:
        return self._inner.get()


class _TapBuffer:
    """Stands in for the receiver's jitter buffer.

    aiortc calls ``add(packet)`` on the event loop for every depayloaded RTP packet
    (after SRTP, RTX unwrapping and NACK bookkeeping). Frames go to our sink as soon
    as they are complete; aiortc's decoder thread receives nothing, so nothing is
    decoded. An exception here would kill the whole transport, so none escapes.
    """

    capacity = 0

    def __init__(self, assembler: FrameAssembler, sink: FrameSink) -> None:
        self._assembler = assembler
        self._sink = sink
        self.errors = 0

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        try:
            data: bytes = getattr(packet, "_data", b"")
            frames = self._assembler.add(packet, data, int(time.monotonic() * 1000))
            if frames:
                self._sink(frames)
        except Exception:
            self.errors += 1
            logger.exception("encoded-frame tap failed on an RTP packet")
        return False, None


class _LayerTapBuffer:
    """The jitter buffer's seat for a simulcast receiver: every layer's packets go to the
    LayerRouter, with the rid aiortc parsed from the header extension (if the packet had
    one), and are reassembled per layer there."""

    capacity = 0

    def __init__(self, router: LayerSink) -> None:
        self._router = router
        self.errors = 0

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        try:
            data: bytes = getattr(packet, "_data", b"")
            rid = packet.extensions.rtp_stream_id
            self._router.add(packet, rid, data, int(time.monotonic() * 1000))
        except Exception:
            self.errors += 1
            logger.exception("simulcast tap failed on an RTP packet")
        return False, None


class _LayerRtx(dict[int, int]):
    """The receiver's RTX SSRC -> media SSRC map, answered from the LayerRouter: simulcast
    RTX streams are named by the repaired-rid extension, not by a=ssrc-group in SDP."""

    def __init__(self, router: LayerSink) -> None:
        super().__init__()
        self._router = router

    def get(self, key: int, default: Any = None) -> Any:
        ssrc = self._router.repaired_ssrc(key)
        return default if ssrc is None else ssrc

    def __contains__(self, key: object) -> bool:
        return isinstance(key, int) and self._router.repaired_ssrc(key) is not None


def tap_layers(receiver: RTCRtpReceiver, router: LayerSink) -> None:
    """Route a simulcast receiver's packets to ``router`` (per layer) instead of its one
    jitter buffer and decoder, and its RTX by repaired rid. Before the receiver starts."""
    for attr in (_JITTER_BUFFER_ATTR, _DECODER_QUEUE_ATTR, _RTX_SSRC_ATTR):
        if not hasattr(receiver, attr):
            raise RuntimeError(f"aiortc internals changed: RTCRtpReceiver has no {attr}")
    setattr(receiver, _JITTER_BUFFER_ATTR, _LayerTapBuffer(router))
    setattr(receiver, _DECODER_QUEUE_ATTR, _CountingQueue(getattr(receiver, _DECODER_QUEUE_ATTR)))
    setattr(receiver, _RTX_SSRC_ATTR, _LayerRtx(router))
    original = receiver._handle_rtp_packet

    async def handle_rtp_packet(packet: RtpPacket, arrival_time_ms: int) -> None:
        repaired = packet.extensions.repaired_rtp_stream_id
        if repaired is not None and not router.knows(packet.ssrc):
            router.learn_rtx(packet.ssrc, repaired)
        await original(packet, arrival_time_ms)

    receiver._handle_rtp_packet = handle_rtp_packet  # type: ignore[method-assign]
    original_rtcp = receiver._handle_rtcp_packet

    async def handle_rtcp_packet(packet: AnyRtcpPacket) -> None:
        # Each layer's sender reports: when its frames were captured, on the one clock
        # the layers share (what aligns their timestamps at a switch).
        if isinstance(packet, RtcpSrPacket):
            info = packet.sender_info
            router.sender_report(packet.ssrc, info.ntp_timestamp, info.rtp_timestamp)
        await original_rtcp(packet)

    receiver._handle_rtcp_packet = handle_rtcp_packet  # type: ignore[method-assign]


def tap_receiver(receiver: RTCRtpReceiver, assembler: FrameAssembler, sink: FrameSink) -> None:
    """Route a receiver's complete encoded frames to ``sink`` instead of its decoder.

    Must be called before the receiver starts (on the peer connection's ``track``
    event, which aiortc fires during setRemoteDescription).
    """
    for attr in (_JITTER_BUFFER_ATTR, _DECODER_QUEUE_ATTR):
        if not hasattr(receiver, attr):
            raise RuntimeError(f"aiortc internals changed: RTCRtpReceiver has no {attr}")
    setattr(receiver, _JITTER_BUFFER_ATTR, _TapBuffer(assembler, sink))
    setattr(receiver, _DECODER_QUEUE_ATTR, _CountingQueue(getattr(receiver, _DECODER_QUEUE_ATTR)))


def tap_errors(receiver: RTCRtpReceiver) -> int:
    buffer = getattr(receiver, _JITTER_BUFFER_ATTR, None)
    return buffer.errors if isinstance(buffer, _TapBuffer) else 0


def frames_decoded(receiver: RTCRtpReceiver) -> int:
    """Frames this receiver passed to aiortc's decoder thread."""
    counter = getattr(receiver, _DECODER_QUEUE_ATTR, None)
    return counter.frames if isinstance(counter, _CountingQueue) else 0


async def send_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> None:
    """Ask the remote sender of ``media_ssrc`` for a keyframe (RTCP PLI)."""
    await receiver._send_rtcp_pli(media_ssrc)


class RtpOutput:
    """Writes finished RTP packets for one sender: SRTP-protect, then one ``sendto``.

    aiortc's own send loop costs a task wake-up per frame and ~28 µs of Python per
    packet for each viewer; a forwarded packet needs only a header, SRTP and a
    syscall, done here synchronously for every viewer in the publisher's callback.
    """

    def __init__(self, sender: RTCRtpSender, payload_type: int) -> None:
        self._sender = sender
        self._dtls = sender.transport
        self.ssrc: int = sender._ssrc
        self.payload_type = payload_type
        # Resolved once, not per packet: aiortc starts a sender only after DTLS is up,
        # when the SRTP session and the ICE connection exist for good.
        self._protect = self._dtls._tx_srtp.protect
        self._ice = self._dtls.transport._connection
        self._connected = self._dtls.state == "connected"
        self._dtls.on("statechange", self._dtls_state_changed)
        self.bytes_sent = 0  # SRTP bytes handed to the socket (retransmissions included)
        self.packets_sent = 0
        # Set once the viewer negotiated transport-cc on this m-line: packets then carry
        # the transport-wide sequence number (extension id transport_cc_id) it numbers.
        self.send_log: SendLog | None = None
        self.transport_cc_id = 0

    @property
    def transport(self) -> RTCDtlsTransport:
        return self._dtls

    @property
    def round_trip_s(self) -> float | None:
        """The round-trip time aiortc's sender measured from the viewer's receiver
        reports (None before the first)."""
        rtt: float | None = getattr(self._sender, "_RTCRtpSender__rtt", None)
        return rtt

    def _dtls_state_changed(self) -> None:
        self._connected = self._dtls.state == "connected"

    def send(self, packet: bytes) -> bytes | None:
        """Protect and send one RTP packet; returns the protected bytes (for NACKs)."""
        if not self._connected:
            return None
        protected: bytes = self._protect(packet)
        self.resend(protected)
        return protected

    def resend(self, protected: bytes) -> None:
        pair = self._ice._nominated.get(1)
        if pair is not None and pair.protocol.transport is not None:
            pair.protocol.transport.sendto(protected, pair.remote_addr)
            self.bytes_sent += len(protected)
            self.packets_sent += 1

    def backlog(self) -> int:
        """Bytes queued in user space because the socket would block."""
        pair = self._ice._nominated.get(1)
        if pair is None or pair.protocol.transport is None:
            return 0
        # Selector datagram transports buffer in user space on EAGAIN.
        size = getattr(pair.protocol.transport, "get_write_buffer_size", None)
        return int(size()) if size is not None else 0

    def report(self, ntp_time: int, rtp_timestamp: int, packets: int, octets: int) -> None:
        """Feed aiortc's RTCP sender reports (lip sync, RTT) with what we sent."""
        sender = self._sender
        setattr(sender, "_RTCRtpSender__ntp_timestamp", ntp_time)  # noqa: B010
        setattr(sender, "_RTCRtpSender__rtp_timestamp", rtp_timestamp)  # noqa: B010
        setattr(sender, "_RTCRtpSender__packet_count", packets)  # noqa: B010
        setattr(sender, "_RTCRtpSender__octet_count", octets)  # noqa: B010


def attach_sender(
    sender: RTCRtpSender,
    on_start: Callable[[RtpOutput], None],
    on_keyframe_request: Callable[[], None],
    on_nack: Callable[[int], None],
) -> None:
    """Take over a sender's media: aiortc keeps negotiation, RTCP and SSRCs.

    ``on_start`` runs once DTLS is up and aiortc starts the sender, with the
    negotiated payload type. A viewer's PLI/FIR, which aiortc would turn into a
    flag for an encoder that forwarded packets never meet, goes to
    ``on_keyframe_request``; its NACKs go to ``on_nack`` (we keep the history).
    """
    for attr in ("send", "_send_keyframe", "_retransmit", "_ssrc"):
        if not hasattr(sender, attr):
            raise RuntimeError(f"aiortc internals changed: RTCRtpSender has no {attr}")
    original_send = sender.send

    async def send(parameters: RTCRtpSendParameters) -> None:
        await original_send(parameters)
        payload_type = parameters.codecs[0].payloadType
        assert payload_type is not None
        on_start(RtpOutput(sender, payload_type))

    async def retransmit(sequence_number: int) -> None:
        on_nack(sequence_number)

    sender.send = send  # type: ignore[method-assign]
    sender._send_keyframe = on_keyframe_request  # type: ignore[method-assign]
    sender._retransmit = retransmit  # type: ignore[method-assign]


def packetizer(codec: str) -> Callable[[bytes], list[bytes]]:
    """Splits one encoded frame into RTP payloads with aiortc's packetizers."""
    if codec == "VP8":
        picture_id = 0

        def vp8(data: bytes) -> list[bytes]:
            nonlocal picture_id
            payloads: list[bytes] = Vp8Encoder._packetize(data, picture_id)
            picture_id = (picture_id + 1) % (1 << 15)
            return payloads

        return vp8
    if codec == "H264":
        return lambda data: H264Encoder._packetize(H264Encoder._split_bitstream(data))
    return lambda data: [data]


# --- Publisher ingest: transport-cc negotiation, the RTP arrival hook, RTCP out -------------
# (media/ingest.py decides; these only reach into aiortc.)

_REMB_ESTIMATOR_ATTR = "_RTCRtpReceiver__remote_bitrate_estimator"
_REMOTE_STREAMS_ATTR = "_RTCRtpReceiver__remote_streams"
_RTX_SSRC_ATTR = "_RTCRtpReceiver__rtx_ssrc"
_RTCP_SSRC_ATTR = "_RTCRtpReceiver__rtcp_ssrc"


def negotiated_feedback(transceiver: RTCRtpTransceiver) -> set[str]:
    """RTCP feedback types negotiated for the transceiver's main codec (after the offer)."""
    codecs = transceiver._codecs
    return {f.type for f in codecs[0].rtcpFeedback} if codecs else set()


def accept_header_extension(transceiver: RTCRtpTransceiver, extension_id: int, uri: str) -> None:
    """Answer (and parse) an offered header extension aiortc does not list, such as the
    rid extensions of simulcast; called between setRemoteDescription and createAnswer."""
    if not hasattr(transceiver, "_headerExtensions"):
        raise RuntimeError("aiortc internals changed: RTCRtpTransceiver has no _headerExtensions")
    extensions: list[RTCRtpHeaderExtensionParameters] = transceiver._headerExtensions
    if not any(e.uri == uri for e in extensions):
        extensions.append(RTCRtpHeaderExtensionParameters(id=extension_id, uri=uri))


def accept_transport_cc(
    transceiver: RTCRtpTransceiver, extension_id: int, payload_types: set[int]
) -> None:
    """Answer an offer's transport-wide-cc header extension and ``transport-cc`` feedback.

    aiortc lists neither, so its negotiation drops them. Called between
    setRemoteDescription and createAnswer (from the ``track`` event): the answer and the
    receiver's header extension map are built from these per-transceiver lists, so
    viewers' transceivers and every other peer connection are unaffected.
    """
    for attr in ("_codecs", "_headerExtensions"):
        if not hasattr(transceiver, attr):
            raise RuntimeError(f"aiortc internals changed: RTCRtpTransceiver has no {attr}")
    extensions: list[RTCRtpHeaderExtensionParameters] = transceiver._headerExtensions
    if not any(e.uri == TRANSPORT_CC_URI for e in extensions):
        extensions.append(RTCRtpHeaderExtensionParameters(id=extension_id, uri=TRANSPORT_CC_URI))
    for codec in transceiver._codecs:
        if codec.payloadType in payload_types and codec.name.lower() != "rtx":
            if not any(f.type == "transport-cc" for f in codec.rtcpFeedback):
                codec.rtcpFeedback.append(RTCRtcpFeedback(type="transport-cc"))


def add_codec_parameters(transceiver: RTCRtpTransceiver, parameters: dict[str, int]) -> None:
    """Adds fmtp parameters to the answer's codecs (e.g. x-google-min-bitrate)."""
    for codec in transceiver._codecs:
        if codec.name.lower() != "rtx":
            codec.parameters.update(parameters)


def on_rtp_received(transport: RTCDtlsTransport, callback: Callable[[bytes], None]) -> None:
    """Calls ``callback(rtp)`` for every RTP packet the transport receives (after SRTP).

    This is before aiortc routes packets to receivers, so it sees every SSRC of the
    transport: media, RTX and padding-only bandwidth probes, even ones no receiver
    takes. An exception escaping here would kill the transport, so none does.
    """
    original = getattr(transport, "_handle_rtp_data", None)
    if original is None:
        raise RuntimeError("aiortc internals changed: RTCDtlsTransport has no _handle_rtp_data")

    async def handle_rtp_data(data: bytes, arrival_time_ms: int) -> None:
        try:
            callback(data)
        except Exception:
            logger.exception("RTP arrival hook failed")
        await original(data, arrival_time_ms=arrival_time_ms)

    transport._handle_rtp_data = handle_rtp_data  # type: ignore[method-assign]


def on_rtcp_received(transport: RTCDtlsTransport, callback: Callable[[bytes], bytes]) -> None:
    """Hands every RTCP datagram the transport receives (after SRTCP) to ``callback``
    first; aiortc gets what it returns (b"": nothing).

    A viewer's transport-cc feedback is read here, from the raw bytes: aiortc's parser
    reads it as a NACK and, when its padding leaves a length that is not a multiple of
    four, rejects the whole compound packet, NACKs and PLIs with it. The callback takes
    the feedback out. An exception escaping here would kill the transport, so none does.
    """
    original = getattr(transport, "_handle_rtcp_data", None)
    if original is None:
        raise RuntimeError("aiortc internals changed: RTCDtlsTransport has no _handle_rtcp_data")

    async def handle_rtcp_data(data: bytes) -> None:
        try:
            data = callback(data)
        except Exception:
            logger.exception("RTCP arrival hook failed")
        if data:
            await original(data)

    transport._handle_rtcp_data = handle_rtcp_data  # type: ignore[method-assign]


def disable_remb_estimate(receiver: RTCRtpReceiver) -> None:
    """Stops aiortc sending REMB from its abs-send-time estimate (ours replaces it)."""
    if not hasattr(receiver, _REMB_ESTIMATOR_ATTR):
        raise RuntimeError(
            f"aiortc internals changed: RTCRtpReceiver has no {_REMB_ESTIMATOR_ATTR}"
        )
    setattr(receiver, _REMB_ESTIMATOR_ATTR, None)


def on_remb_sent(receiver: RTCRtpReceiver, callback: Callable[[int], None]) -> None:
    """Calls ``callback(bitrate)`` whenever aiortc's receiver sends a REMB (its estimate)."""
    original = receiver._send_rtcp

    async def send_rtcp(packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                callback(unpack_remb_fci(packet.fci)[0])
            except Exception:
                logger.exception("REMB observer failed")
        await original(packet)

    receiver._send_rtcp = send_rtcp  # type: ignore[method-assign]


def rtcp_ssrc(receiver: RTCRtpReceiver) -> int | None:
    """The SSRC this side's RTCP is sent with."""
    ssrc: int | None = getattr(receiver, _RTCP_SSRC_ATTR, None)
    return ssrc


async def send_rtcp(receiver: RTCRtpReceiver, packet: bytes) -> None:
    """Sends one serialized RTCP packet on the receiver's transport (SRTCP-protected)."""
    try:
        await receiver.transport._send_rtp(packet)
    except ConnectionError:
        pass  # not (or no longer) connected


async def send_remb(receiver: RTCRtpReceiver, bitrate: int, ssrcs: list[int]) -> None:
    """Sends a REMB (Receiver Estimated Maximum Bitrate) of ``bitrate`` bps for ``ssrcs``."""
    ssrc = rtcp_ssrc(receiver)
    if ssrc is not None:
        packet = RtcpPsfbPacket(
            fmt=RTCP_PSFB_APP, ssrc=ssrc, media_ssrc=0, fci=pack_remb_fci(bitrate, ssrcs)
        )
        await send_rtcp(receiver, bytes(packet))


def receive_statistics(receiver: RTCRtpReceiver) -> tuple[int, int, float]:
    """(packets received, packets lost, interarrival jitter in seconds) of the media SSRCs.

    From aiortc's RTCP receiver statistics; retransmissions (RTX SSRCs) are left out, so
    "lost" counts packets missing before any NACK retransmission.
    """
    streams: dict[int, Any] = getattr(receiver, _REMOTE_STREAMS_ATTR, {})
    rtx: dict[int, int] = getattr(receiver, _RTX_SSRC_ATTR, {})
    received = lost = 0
    jitter = 0.0
    for ssrc, stream in list(streams.items()):
        if ssrc in rtx or stream.max_seq is None:
            continue
        received += stream.packets_received
        lost += max(stream.packets_expected - stream.packets_received, 0)
        jitter = max(jitter, stream.jitter / stream._clockrate)
    return received, lost, jitter


class NackCount:
    """NACKs aiortc's receiver sent to the publisher: RTCP packets, and the sequence numbers
    they listed (aiortc lists every still-missing one again in each, so repeats count)."""

    def __init__(self) -> None:
        self.packets = 0
        self.sequence_numbers = 0


def count_nacks(receiver: RTCRtpReceiver) -> NackCount:
    """Counts the NACKs ``receiver`` sends from now on (aiortc has no counter of its own)."""
    original = getattr(receiver, "_send_rtcp_nack", None)
    if original is None:
        raise RuntimeError("aiortc internals changed: RTCRtpReceiver has no _send_rtcp_nack")
    count = NackCount()

    async def send_rtcp_nack(media_ssrc: int, lost: list[int]) -> None:
        count.packets += 1
        count.sequence_numbers += len(lost)
        await original(media_ssrc, lost)

    receiver._send_rtcp_nack = send_rtcp_nack  # type: ignore[method-assign]
    return count


_NACK_GENERATOR_ATTR = "_RTCRtpReceiver__nack_generator"


def replace_nack_generator(receiver: RTCRtpReceiver, generator: NackPolicy) -> None:
    """Make ``generator`` decide which packets a video receiver NACKs, and when.

    aiortc calls its ``add(packet)`` for every media packet (RTX unwrapped) and, when it
    returns True, sends one NACK listing its ``missing``. Call before packets arrive.
    """
    if getattr(receiver, _NACK_GENERATOR_ATTR, None) is None:
        raise RuntimeError(
            f"aiortc internals changed: RTCRtpReceiver has no {_NACK_GENERATOR_ATTR}"
        )
    setattr(receiver, _NACK_GENERATOR_ATTR, generator)


def retransmissions_received(receiver: RTCRtpReceiver) -> int:
    """RTX packets (retransmissions on the publisher's RTX SSRCs) the receiver got."""
    streams: dict[int, Any] = getattr(receiver, _REMOTE_STREAMS_ATTR, {})
    rtx: dict[int, int] = getattr(receiver, _RTX_SSRC_ATTR, {})
    return sum(int(s.packets_received) for ssrc, s in list(streams.items()) if ssrc in rtx)


# --- DTLS: peers with RSA certificates ---------------------------------------------------------

_CERTIFICATES_ATTR = "_RTCPeerConnection__certificates"
# aiortc offers ECDHE-ECDSA suites only. As DTLS server that matches its own ECDSA
# certificate, but as client it leaves a server with an RSA certificate (GStreamer's
# webrtcbin, many embedded stacks) nothing to choose: "no shared cipher". The RSA
# suites matter only in the client role: a server picks suites its own key can sign.
DTLS_CIPHERS = (
    b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    b"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    b"ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA"
)


class _InteropCertificate(RTCCertificate):
    """aiortc's certificate (same key, same fingerprint) with a cipher list RSA servers share."""

    def _create_ssl_context(self, srtp_profiles: list[Any]) -> Any:
        context = super()._create_ssl_context(srtp_profiles)
        context.set_cipher_list(DTLS_CIPHERS)
        return context


def accept_rsa_dtls_peers(pc: RTCPeerConnection) -> None:
    """Let ``pc`` complete DTLS with peers whose certificate is RSA, in both roles.

    Must be called before the first setRemoteDescription: aiortc builds each DTLS
    transport from these certificates when it first needs one.
    """
    certificates: list[RTCCertificate] | None = getattr(pc, _CERTIFICATES_ATTR, None)
    if not certificates or not hasattr(certificates[0], "_create_ssl_context"):
        raise RuntimeError(
            f"aiortc internals changed: RTCPeerConnection has no {_CERTIFICATES_ATTR}"
        )
    certificates[:] = [
        c if isinstance(c, _InteropCertificate) else _InteropCertificate(c._key, c._cert)
        for c in certificates
    ]


def selected_pair(pc: RTCPeerConnection) -> dict[str, Any] | None:
    """The candidate pair ICE nominated for ``pc``'s media (all of it is bundled), as
    WebRTC's getStats names it: each side's candidate type and address; None before ICE
    has nominated one. aiortc has no getSelectedCandidatePair: aioice holds the pair.
    """
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        connection = getattr(getattr(dtls, "transport", None), "_connection", None)
        nominated = getattr(connection, "_nominated", None)
        pair = nominated.get(1) if isinstance(nominated, dict) else None
        if pair is not None:
            local, remote = pair.local_candidate, pair.remote_candidate
            return {
                "local": {"type": local.type, "address": f"{local.host}:{local.port}"},
                "remote": {"type": remote.type, "address": f"{remote.host}:{remote.port}"},
            }
    return None


# --- liveness: datagrams received from a peer --------------------------------------------------

_RX_PACKETS_ATTR = "_RTCDtlsTransport__rx_packets"


def datagrams_received(pc: RTCPeerConnection) -> int:
    """DTLS, SRTP and SRTCP datagrams ``pc`` has received on all its transports (aiortc
    counts them for getStats; STUN stays below, in the ICE agent)."""
    transports = {id(t.receiver.transport): t.receiver.transport for t in pc.getTransceivers()}
    total = 0
    for transport in transports.values():
        count = getattr(transport, _RX_PACKETS_ATTR, None)
        if not isinstance(count, int):
            raise RuntimeError(
                f"aiortc internals changed: RTCDtlsTransport has no {_RX_PACKETS_ATTR}"
            )
        total += count
    return total
