"""Checks SDP offers before they reach aiortc, and edits candidate lines."""

from __future__ import annotations

import ipaddress
import re

from aiortc.sdp import SessionDescription

from ..errors import GatewayError, bad_request
from .candidates import check_candidate

_MEDIA_KINDS = ("audio", "video")
_CANDIDATE_LINE = re.compile(r"^a=candidate:(\S+) (\d) (\S+) (\d+) (\S+) (\d+) typ (\S+)(.*)$")


def parse_offer(
    sdp: str, *, want: str, max_m_lines: int = 16, max_candidates: int = 64
) -> SessionDescription:
    """Parse and sanity-check an offer. ``want`` is "send" (publish), "recv" (watch) or
    "any" (a renegotiation, whose m-lines may all be inactive)."""
    if not sdp.strip():
        raise bad_request("the SDP offer is empty", "invalid-sdp")
    if not sdp.lstrip().startswith("v=0"):
        raise bad_request("the body is not an SDP offer (it must start with v=0)", "invalid-sdp")
    # Counted before parsing: every m-line becomes a transceiver (500 cost 0.9 s and 55 MB).
    lines = sdp.splitlines()
    m_lines = sum(1 for line in lines if line.startswith("m="))
    if m_lines > max_m_lines:
        raise bad_request(
            f"the offer has {m_lines} media sections; at most {max_m_lines} are accepted",
            "too-many-m-lines",
        )
    candidates = sum(1 for line in lines if line.startswith("a=candidate:"))
    if candidates > max_candidates:
        raise bad_request(
            f"the offer has {candidates} candidates; at most {max_candidates} are accepted",
            "too-many-candidates",
        )
    try:
        description = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises many kinds on malformed input
        raise bad_request(f"the SDP offer cannot be parsed: {exc}", "invalid-sdp") from exc
    _unreject_bundle_only(description, lines)
    media = [m for m in description.media if m.kind in _MEDIA_KINDS]
    if want == "any" and not media and description.media:
        media_or_data = description.media  # data channels only (chat)
    elif not media:
        raise bad_request("the SDP offer has no audio or video section", "invalid-sdp")
    else:
        media_or_data = media
    for m in description.media:
        for candidate in m.ice_candidates:
            if not candidate.ip.endswith(".local"):
                check_candidate(candidate)
    for m in media_or_data:
        if m.ice is None or not m.ice.usernameFragment or not m.ice.password:
            raise bad_request(
                "the SDP offer lacks ICE credentials (ice-ufrag/ice-pwd)", "invalid-sdp"
            )
        if m.dtls is None or not m.dtls.fingerprints:
            raise bad_request("the SDP offer lacks a DTLS fingerprint: not WebRTC", "invalid-sdp")
        if m.kind in _MEDIA_KINDS and not m.profile.startswith("UDP/TLS/RTP/SAVP"):
            raise bad_request(f"media profile {m.profile} is not WebRTC's", "invalid-sdp")
    mids = [m.rtp.muxId for m in description.media]
    if not all(mids) or len(set(mids)) != len(mids):
        # A session keys what it publishes and receives by mid (RFC 8843 9.2: unique).
        raise bad_request("every media section needs its own a=mid", "invalid-sdp")
    used = [m.rtp.muxId for m in description.media if m.port != 0]
    bundles = [g.items for g in description.group if g.semantic == "BUNDLE"]
    if len(used) > 1 and not any(set(used) <= set(items) for items in bundles):
        raise GatewayError(
            422,
            "bundle-required",
            "offers with several media sections must bundle them all (a=group:BUNDLE)",
        )
    if want == "any":
        return description
    directions = {m.direction or "sendrecv" for m in media if m.port != 0}
    allowed = {"send": {"sendonly", "sendrecv"}, "recv": {"recvonly", "sendrecv"}}[want]
    if not directions & allowed:
        verb = "publish (sendonly)" if want == "send" else "watch (recvonly)"
        raise GatewayError(
            422,
            "wrong-direction",
            f"the offer's media directions {sorted(directions)} cannot {verb}",
        )
    return description


def _unreject_bundle_only(description: SessionDescription, lines: list[str]) -> None:
    """Give bundle-only m-lines (RFC 8843: port 0 and ``a=bundle-only``, as GStreamer
    offers them) their BUNDLE group's port, so they count as media and not as rejected.

    aiortc's parser drops the attribute; without it a port of 0 means rejected. One
    outside any BUNDLE group stays rejected: it has no transport to share.
    """
    flagged = _bundle_only_mids(lines)
    if not flagged:
        return
    for group in description.group:
        if group.semantic != "BUNDLE":
            continue
        members = [m for m in description.media if m.rtp.muxId in group.items]
        tag = next((m for m in members if m.port != 0), None)
        if tag is None:
            continue
        for m in members:
            if m.port == 0 and m.rtp.muxId in flagged:
                m.port = tag.port


def _bundle_only_mids(lines: list[str]) -> set[str]:
    """Mids of the m-sections marked ``a=bundle-only``."""
    found: set[str] = set()
    mid: str | None = None
    flagged = False
    for line in [*lines, "m="]:
        if line.startswith("m="):
            if flagged and mid is not None:
                found.add(mid)
            mid, flagged = None, False
        elif line.startswith("a=mid:"):
            mid = line[6:].strip()
        elif line.strip() == "a=bundle-only":
            flagged = True
    return found


def offered_codecs(description: SessionDescription, kind: str) -> list[str]:
    names: list[str] = []
    for m in description.media:
        if m.kind == kind:
            names.extend(c.name for c in m.rtp.codecs if c.name not in names)
    return names


def strip_mdns_candidates(sdp: str) -> str:
    """Drop ``<uuid>.local`` candidates: the browser's address is learned from its
    STUN checks instead (peer-reflexive), so we never resolve mDNS names."""
    return (
        "\r\n".join(
            line
            for line in sdp.splitlines()
            if not (line.startswith("a=candidate:") and _candidate_host(line).endswith(".local"))
        )
        + "\r\n"
    )


def strip_candidates(sdp: str) -> str:
    """Remove candidate lines (they are sent separately, trickled)."""
    return (
        "\r\n".join(
            line
            for line in sdp.splitlines()
            if not line.startswith("a=candidate:") and line != "a=end-of-candidates"
        )
        + "\r\n"
    )


def candidate_lines(sdp: str) -> list[tuple[int, str, str]]:
    """(m-line index, mid, candidate attribute without 'a=') for each candidate."""
    found: list[tuple[int, str, str]] = []
    index, mid = -1, ""
    for line in sdp.splitlines():
        if line.startswith("m="):
            index += 1
            mid = ""
        elif line.startswith("a=mid:"):
            mid = line[6:].strip()
        elif line.startswith("a=candidate:") and index >= 0:
            found.append((index, mid, line[2:]))
    return found


def candidates_once(sdp: str) -> str:
    """Each candidate once: in a BUNDLE group only its first (tag) m-section lists the
    shared transport's candidates (RFC 8843, JSEP), and no section repeats a line.

    Listed in every bundled section, a peer with one ICE agent for the group (GStreamer's
    webrtcbin) adds each candidate again and checks every pair twice.
    """
    lines = sdp.splitlines()
    secondary: set[str] = set()  # mids that use another section's transport
    for line in lines:
        if line.startswith("a=group:BUNDLE "):
            secondary.update(line.split()[2:])
    out: list[str] = []
    seen: set[str] = set()
    mid: str | None = None
    held: list[str] = []  # a section's candidate lines, until its mid is known
    for line in [*lines, "m="]:
        if line.startswith("m="):
            if mid not in secondary:
                out.extend(held)
            held, seen, mid = [], set(), None
        elif line.startswith("a=mid:"):
            mid = line[6:].strip()
        elif line.startswith("a=candidate:") or line == "a=end-of-candidates":
            if line not in seen:
                seen.add(line)
                held.append(line)
            continue
        out.append(line)
    return "\r\n".join(out[:-1]) + "\r\n"


def announce_address(sdp: str, address: str) -> str:
    """Add a copy of every host candidate at the announced (1:1 NAT) address."""
    out: list[str] = []
    for line in sdp.splitlines():
        out.append(line)
        match = _CANDIDATE_LINE.match(line)
        # Only a private IPv4 address sits behind a 1:1 NAT; loopback and IPv6 do not map.
        if match and match.group(7) == "host" and _behind_nat(match.group(5), address):
            foundation, component, transport, priority, _, port, _, rest = match.groups()
            # Slightly higher priority: the public address is the one remote peers reach.
            out.append(
                f"a=candidate:{foundation}a {component} {transport} {int(priority) + 1} "
                f"{address} {port} typ host{rest}"
            )
    return "\r\n".join(out) + "\r\n"


def _behind_nat(host: str, announced: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.version == 4 and not ip.is_loopback and host != announced


def _candidate_host(line: str) -> str:
    parts = line.split()
    return parts[4] if len(parts) > 4 else ""
