"""Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01).

A browser's send-side bandwidth estimator (libwebrtc's GoogCC) needs, for every RTP packet
it sent, the time it arrived here. Publishers number their packets across the whole
transport (a header extension); the :class:`FeedbackRecorder` keeps each number's arrival
time and turns them into RTCP transport feedback packets (RTPFB, FMT=15), written as
libwebrtc writes them. :func:`parse_feedback` reads them back (tests, diagnostics).
Nothing here touches aiortc or the event loop.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

TRANSPORT_CC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
RTCP_RTPFB = 205
FMT_TRANSPORT_CC = 15

# Packet status symbols.
NOT_RECEIVED, SMALL_DELTA, LARGE_DELTA = 0, 1, 2

TICK_US = 250  # receive deltas count quarter milliseconds
REFERENCE_TICK_US = 64_000  # the reference time counts 64 ms
REFERENCE_WRAP = 1 << 24  # ...in 24 bits
MAX_RUN = (1 << 13) - 1  # a run-length chunk's 13-bit length
# Received packets per feedback packet: at most ~6 bytes each (delta and status chunks),
# so a packet stays well inside one datagram; a longer span is split.
MAX_DELTAS = 150
# Arrivals are kept this long after being reported, so that a late (reordered) packet
# can be reported together with its neighbours again, as libwebrtc does.
HISTORY_US = 500_000
# A window larger than this (a sequence jump, a long outage) restarts at the newest packet.
MAX_WINDOW = 1 << 14


def transport_sequence_number(rtp: bytes, extension_id: int) -> int | None:
    """The transport-wide sequence number in a raw RTP packet, or None.

    Reads the header extension directly (one-byte and two-byte forms, RFC 8285): cheaper
    than parsing the whole packet, and it runs for every packet the publisher sends.
    """
    if len(rtp) < 12 or not rtp[0] & 0x10:
        return None
    start = 12 + 4 * (rtp[0] & 0x0F)
    if len(rtp) < start + 4:
        return None
    profile, words = struct.unpack_from("!HH", rtp, start)
    pos, end = start + 4, start + 4 + 4 * words
    if end > len(rtp):
        return None
    if profile == 0xBEDE:
        while pos < end:
            byte = rtp[pos]
            if byte == 0:  # padding
                pos += 1
                continue
            ext_id, length = byte >> 4, (byte & 0x0F) + 1
            if ext_id == 15:  # reserved: stop
                return None
            if ext_id == extension_id:
                return struct.unpack_from("!H", rtp, pos + 1)[0] if length == 2 else None
            pos += 1 + length
    elif profile & 0xFFF0 == 0x1000:
        while pos + 1 < end:
            ext_id = rtp[pos]
            if ext_id == 0:
                pos += 1
                continue
            length = rtp[pos + 1]
            if ext_id == extension_id:
                return struct.unpack_from("!H", rtp, pos + 2)[0] if length == 2 else None
            pos += 2 + length
    return None


def encode_feedback(
    sender_ssrc: int,
    media_ssrc: int,
    base_seq: int,
    reference_ticks: int,
    fb_count: int,
    statuses: list[int],
    deltas: list[int],
) -> bytes:
    """One RTCP transport feedback packet.

    ``statuses`` has a symbol per sequence number from ``base_seq``; ``deltas`` has, per
    received packet in sequence order, its receive delta in 250 µs ticks (1 byte for
    SMALL_DELTA, 2 signed bytes for LARGE_DELTA). Padded to 32 bits with the RTCP padding
    bit and a count in the last byte, as libwebrtc does.
    """
    body = bytearray(
        struct.pack(
            "!IIHHI",
            sender_ssrc,
            media_ssrc,
            base_seq & 0xFFFF,
            len(statuses),
            (reference_ticks % REFERENCE_WRAP) << 8 | (fb_count & 0xFF),
        )
    )
    for chunk in _chunks(statuses):
        body += struct.pack("!H", chunk)
    received = [s for s in statuses if s != NOT_RECEIVED]
    if len(received) != len(deltas):
        raise ValueError("one receive delta per received packet")
    for status, delta in zip(received, deltas, strict=True):
        body += struct.pack("!B" if status == SMALL_DELTA else "!h", delta)
    padding = -len(body) % 4
    if padding:
        body += bytes(padding - 1) + bytes([padding])
    first = 0x80 | (0x20 if padding else 0) | FMT_TRANSPORT_CC
    return struct.pack("!BBH", first, RTCP_RTPFB, len(body) // 4) + bytes(body)


def _chunks(statuses: list[int]) -> list[int]:
    """Packet status chunks: runs where they pay, else 14 one-bit or 7 two-bit symbols."""
    chunks: list[int] = []
    i, total = 0, len(statuses)
    while i < total:
        run = 1
        while i + run < total and run < MAX_RUN and statuses[i + run] == statuses[i]:
            run += 1
        if run >= 14 or i + run == total:
            chunks.append(statuses[i] << 13 | run)
            i += run
            continue
        window = statuses[i : i + 14]
        if LARGE_DELTA not in window:
            symbols = window + [NOT_RECEIVED] * (14 - len(window))
            chunks.append(0x8000 | sum(s << (13 - k) for k, s in enumerate(symbols)))
            i += 14
        else:
            symbols = statuses[i : i + 7]
            symbols += [NOT_RECEIVED] * (7 - len(symbols))
            chunks.append(0xC000 | sum(s << (12 - 2 * k) for k, s in enumerate(symbols)))
            i += 7
    return chunks


@dataclass
class Feedback:
    """A parsed transport feedback packet."""

    sender_ssrc: int
    media_ssrc: int
    base_seq: int
    reference_ticks: int
    fb_count: int
    statuses: list[int]
    deltas: list[int] = field(default_factory=list)

    def arrivals(self) -> dict[int, int]:
        """Received sequence numbers (16-bit) -> arrival time in µs since reference 0."""
        out: dict[int, int] = {}
        time_us = self.reference_ticks * REFERENCE_TICK_US
        received = (i for i, s in enumerate(self.statuses) if s != NOT_RECEIVED)
        for index, delta in zip(received, self.deltas, strict=True):
            time_us += delta * TICK_US
            out[(self.base_seq + index) & 0xFFFF] = time_us
        return out


def parse_feedback(packet: bytes) -> Feedback:
    """Strictly parse one RTCP transport feedback packet; ValueError if malformed."""
    if len(packet) < 20:
        raise ValueError("shorter than a transport feedback packet")
    first, packet_type, words = struct.unpack_from("!BBH", packet)
    if first >> 6 != 2 or packet_type != RTCP_RTPFB or first & 0x1F != FMT_TRANSPORT_CC:
        raise ValueError("not an RTCP transport feedback packet (RTPFB, FMT=15)")
    end = 4 + 4 * words
    if end != len(packet):
        raise ValueError(f"length field says {end} bytes, the packet has {len(packet)}")
    if first & 0x20:
        padding = packet[end - 1]
        if not 0 < padding <= end - 20:
            raise ValueError("invalid padding count")
        end -= padding
    sender, media, base, count, ref_and_count = struct.unpack_from("!IIHHI", packet, 4)
    if count == 0:
        raise ValueError("no packet status")
    statuses: list[int] = []
    pos = 20
    while len(statuses) < count:
        if pos + 2 > end:
            raise ValueError("truncated packet status chunks")
        (chunk,) = struct.unpack_from("!H", packet, pos)
        pos += 2
        left = count - len(statuses)
        if not chunk & 0x8000:
            statuses += [chunk >> 13 & 0x03] * min(chunk & MAX_RUN, left)
        elif not chunk & 0x4000:
            statuses += [chunk >> (13 - k) & 1 for k in range(min(14, left))]
        else:
            statuses += [chunk >> (12 - 2 * k) & 0x03 for k in range(min(7, left))]
    deltas: list[int] = []
    for status in statuses:
        if status == NOT_RECEIVED:
            continue
        if status == SMALL_DELTA:
            if pos + 1 > end:
                raise ValueError("truncated receive deltas")
            deltas.append(packet[pos])
            pos += 1
        elif status == LARGE_DELTA:
            if pos + 2 > end:
                raise ValueError("truncated receive deltas")
            deltas.append(struct.unpack_from("!h", packet, pos)[0])
            pos += 2
        else:
            raise ValueError("reserved packet status symbol")
    if any(packet[pos:end]):
        raise ValueError("trailing bytes after the receive deltas")
    return Feedback(sender, media, base, ref_and_count >> 8, ref_and_count & 0xFF, statuses, deltas)


class FeedbackRecorder:
    """Arrival times by transport-wide sequence number, reported as feedback.

    ``record`` runs for every RTP packet of the transport; ``feedback`` (every 50-100 ms)
    returns the packets that report every sequence number from the first one not yet
    reported up to the newest: the ones that arrived with their arrival times, the others
    as lost. If a packet arrives after it was reported lost, the next feedback reports
    again from it (libwebrtc's receiver does the same).
    """

    def __init__(self) -> None:
        self._arrivals: dict[int, int] = {}  # unwrapped sequence number -> arrival µs
        self._last: int | None = None  # last unwrapped sequence number, for unwrapping
        self._newest = 0  # highest sequence number received
        self._next = 0  # first sequence number not yet reported
        self._floor = 0  # below it, arrivals may have been forgotten
        self._fb_count = 0
        self.recorded = 0
        self.duplicates = 0
        self.too_late = 0
        self.packets_sent = 0

    def record(self, seq: int, arrival_us: int) -> None:
        if self._last is None:
            unwrapped = self._newest = self._next = self._floor = seq
        else:
            diff = (seq - self._last) & 0xFFFF
            unwrapped = self._last + (diff - 0x10000 if diff >= 0x8000 else diff)
        self._last = unwrapped
        if unwrapped in self._arrivals:
            self.duplicates += 1
            return
        if unwrapped < self._floor:
            self.too_late += 1
            return
        self.recorded += 1
        self._arrivals[unwrapped] = arrival_us
        self._next = min(self._next, unwrapped)
        if unwrapped > self._newest:
            self._newest = unwrapped
            if unwrapped - self._next > MAX_WINDOW:
                # After a long outage or a jump, report from the newest packets only.
                self._next = min(s for s in self._arrivals if s >= unwrapped - MAX_WINDOW)

    def feedback(self, sender_ssrc: int, media_ssrc: int) -> list[bytes]:
        """Feedback packets for everything not yet reported (maybe none)."""
        packets: list[bytes] = []
        while self._next <= self._newest and self._last is not None:
            packets.append(self._build(sender_ssrc, media_ssrc))
        self._forget()
        self.packets_sent += len(packets)
        return packets

    def _build(self, sender_ssrc: int, media_ssrc: int) -> bytes:
        """One packet from ``self._next``, as far as it reaches; advances ``self._next``."""
        arrivals = self._arrivals
        base = self._next
        first = next(arrivals[s] for s in range(base, self._newest + 1) if s in arrivals)
        reference = first // REFERENCE_TICK_US
        last_us = reference * REFERENCE_TICK_US
        statuses: list[int] = []
        deltas: list[int] = []
        seq = base
        while seq <= self._newest:
            arrival = arrivals.get(seq)
            if arrival is None:
                statuses.append(NOT_RECEIVED)
            else:
                # Deltas accumulate the rounded values, so that rounding never drifts.
                delta = (arrival - last_us + TICK_US // 2) // TICK_US
                if deltas and (not -0x8000 <= delta <= 0x7FFF or len(deltas) == MAX_DELTAS):
                    break  # the next packet starts here, with its own reference time
                symbol = SMALL_DELTA if 0 <= delta <= 0xFF else LARGE_DELTA
                statuses.append(symbol)
                deltas.append(delta)
                last_us += delta * TICK_US
            seq += 1
        self._next = seq
        packet = encode_feedback(
            sender_ssrc, media_ssrc, base, reference, self._fb_count, statuses, deltas
        )
        self._fb_count = (self._fb_count + 1) & 0xFF
        return packet

    def _forget(self) -> None:
        """Drops arrivals (all reported by now) older than HISTORY_US before the newest."""
        if not self._arrivals:
            return
        # Insertion order is arrival order: the newest is last, the oldest come first.
        cutoff = next(reversed(self._arrivals.values())) - HISTORY_US
        while self._arrivals:
            seq, arrival = next(iter(self._arrivals.items()))
            if arrival >= cutoff:
                break
            del self._arrivals[seq]
            self._floor = max(self._floor, seq + 1)
